"""A sync server process pushing into one vault from several threads (run by
``test_store_concurrency.py``).

``python relay_push_worker.py KIND LOCATION VAULT PLAN``: KIND is ``sqlite`` (LOCATION
a file) or ``postgres`` (LOCATION a DSN). PLAN is a JSON list, one entry per thread,
of the ``[device, number]`` pairs that thread pushes, in order.

The worker opens the store, prints ``ready``, waits for a line on stdin so that every
process starts at once, runs its threads, and prints one JSON list of
``[device, number, cursor]``, one per push.
"""

from __future__ import annotations

import json
import sys
import threading

from mangostore.sync.server.sql_store import SqlRelayStore

NOW = 1_700_000_000_000


def open_store(kind: str, location: str) -> SqlRelayStore:
    """The store of the test, opened from this process."""
    if kind == "sqlite":
        from mangostore.sync.server.sqlite_store import SqliteRelayStore

        return SqliteRelayStore(location)
    from mangostore.sync.server.pg_store import PostgresRelayStore

    return PostgresRelayStore(location)


def body_of(device: str, number: int) -> bytes:
    """What a test pushes as the body of (device, number)."""
    return f"{device}/{number}".encode()


def push_all(
    store: SqlRelayStore, vault_id: str, plan: list[list[tuple[str, int]]], start: threading.Event
) -> list[tuple[str, int, int]]:
    """Push every thread's pairs from a thread each once ``start`` is set; return what
    each push answered. A push that raises is reported by raising here."""
    answers: list[tuple[str, int, int]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(pairs: list[tuple[str, int]]) -> None:
        start.wait()
        try:
            for device, number in pairs:
                cursor = store.push(vault_id, device, number, 1, body_of(device, number), NOW)
                with lock:
                    answers.append((device, number, cursor))
        except BaseException as exc:  # handed to the caller, which raises it
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=run, args=(pairs,)) for pairs in plan]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return answers


def main(kind: str, location: str, vault_id: str, plan_json: str) -> None:
    """Open, say ``ready``, wait for the go line, push, print the answers."""
    plan = [[(str(d), int(n)) for d, n in pairs] for pairs in json.loads(plan_json)]
    store = open_store(kind, location)
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        answers = push_all(store, vault_id, plan, threading.Event())
    finally:
        store.close()
    print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
