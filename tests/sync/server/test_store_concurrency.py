"""Concurrent pushes into one vault give every batch one cursor, with no gap, no
repeat and no batch lost: from many threads of one server process, and from two
server processes on one store (a SQLite file, or PostgreSQL). A snapshot part sent
twice at once is stored once.

Each plan repeats pairs on purpose: a thread pushes some of its own numbers twice,
and every fifth push is a pair that another thread (in the other process, when there
are two) pushes at the same step, as a device retrying after a lost answer through
another server would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.sync.server.conftest import StoreTarget
from tests.sync.server.relay_push_worker import body_of, push_all

from mangostore.errors import ValidationError
from mangostore.sync.server.sql_store import SqlRelayStore

pytestmark = pytest.mark.slow

VAULT = "vault-busy"
WORKER = Path(__file__).with_name("relay_push_worker.py")
#: Seconds a worker process may take before the test gives up on it.
WORKER_TIMEOUT_S = 120


def _plan(threads: int, per_thread: int) -> list[list[tuple[str, int]]]:
    """Per thread, the (device, number) pairs it pushes: mostly new numbers of its own
    device, every tenth push one it pushed already, and every fifth one a pair that
    the thread half the plan away pushes at the same step (a shared device's)."""
    plan: list[list[tuple[str, int]]] = []
    for t in range(threads):
        own, shared = f"dev{t}", f"shared{t % (threads // 2)}"
        pairs: list[tuple[str, int]] = []
        number = 0
        for i in range(per_thread):
            if i % 5 == 2:
                pairs.append((shared, i // 5 + 1))
            elif i % 10 == 4:
                pairs.append((own, number))
            else:
                number += 1
                pairs.append((own, number))
        plan.append(pairs)
    return plan


def _check(store: SqlRelayStore, answers: list[tuple[str, int, int]], pushes: int) -> None:
    """Every pair got one cursor, the cursors are 1..n, and the vault serves every
    distinct pair once, in cursor order, with its body."""
    assert len(answers) == pushes
    cursor_of: dict[tuple[str, int], int] = {}
    for device, number, cursor in answers:
        first = cursor_of.setdefault((device, number), cursor)
        assert cursor == first, f"({device}, {number}) got cursors {first} and {cursor}"
    n = len(cursor_of)
    assert sorted(cursor_of.values()) == list(range(1, n + 1))
    vault = store.vault(VAULT)
    assert vault is not None
    assert vault.last_cursor == n
    pulled = []
    after = 0
    while page := store.pull(VAULT, after, 64):
        pulled.extend(page)
        after = page[-1].cursor
    assert [b.cursor for b in pulled] == list(range(1, n + 1))
    assert {(b.device_id, b.number): b.cursor for b in pulled} == cursor_of
    assert all(b.body == body_of(b.device_id, b.number) for b in pulled)


def test_threads_pushing_at_once_get_gapless_cursors(relay_store: SqlRelayStore) -> None:
    relay_store.create_vault(VAULT, b"k" * 32, 1)
    plan = _plan(8, 50)
    answers = push_all(relay_store, VAULT, plan, threading.Event())
    _check(relay_store, answers, 8 * 50)
    assert len({(d, n) for d, n, _ in answers}) == 8 * 35 + 4 * 10


def test_two_server_processes_pushing_at_once_get_gapless_cursors(
    relay_target: StoreTarget, relay_store: SqlRelayStore
) -> None:
    relay_store.create_vault(VAULT, b"k" * 32, 1)
    plan = _plan(8, 50)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                relay_target.kind,
                relay_target.location,
                VAULT,
                json.dumps(plan[half * 4 : half * 4 + 4]),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for half in (0, 1)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline() != "ready\n":
                _, err = worker.communicate(timeout=WORKER_TIMEOUT_S)
                pytest.fail(f"a worker did not start:\n{err}")
        outputs = [worker.communicate("go\n", timeout=WORKER_TIMEOUT_S) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    answers: list[tuple[str, int, int]] = []
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, f"a worker failed:\n{err}"
        answers.extend((str(d), int(n), int(c)) for d, n, c in json.loads(out))
    _check(relay_store, answers, 8 * 50)
    # Each process pushed every shared pair: 8 devices' own pairs, 4 shared devices'.
    assert len({(d, n) for d, n, _ in answers}) == 8 * 35 + 4 * 10


def _upload_twice_at_once(
    store: SqlRelayStore, snapshot_id: str, cursor: int, part: int
) -> list[str]:
    """Put the same snapshot part from two threads at once; what each attempt gave."""
    outcomes: list[str] = []
    both = threading.Barrier(2)

    def upload() -> None:
        both.wait()
        try:
            store.put_snapshot_part(VAULT, snapshot_id, "dev0", cursor, 1, part, False, b"p", 1)
        except ValidationError:
            outcomes.append("refused")
        except Exception as exc:  # what escaped instead is the failure
            outcomes.append(f"{type(exc).__module__}.{type(exc).__name__}")
        else:
            outcomes.append("stored")

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def test_a_snapshot_part_uploaded_twice_at_once_is_stored_once(
    relay_store: SqlRelayStore,
) -> None:
    """A device retrying a part through a second server process while the first
    attempt is still running: one attempt stores it, the other is refused with
    ValidationError (never a driver error), and the upload goes on."""
    relay_store.create_vault(VAULT, b"k" * 32, 1)
    for number in range(1, 11):
        relay_store.push(VAULT, "dev0", number, 1, b"x", 1)
    # Each round's snapshot is at a later cursor, so each becomes the latest.
    for cursor in range(1, 11):
        snapshot_id = f"snap{cursor}"
        for part in (0, 1):
            outcomes = _upload_twice_at_once(relay_store, snapshot_id, cursor, part)
            assert outcomes == ["refused", "stored"], f"part {part}: {outcomes}"
        done = relay_store.put_snapshot_part(
            VAULT, snapshot_id, "dev0", cursor, 1, 2, True, b"p", 1
        )
        assert done is not None
        assert (done.cursor, done.parts, done.size) == (cursor, 3, 3)
