"""Sync server benchmarks: two devices through a real ``mangostore serve-sync`` on
loopback, server ingest from eight devices at once, and a new device joining a vault
from a snapshot against replaying its whole history.

Every server is the real command (uvicorn and all) in a process of its own on
127.0.0.1; devices are encrypted files in a temporary folder with the cheapest
Argon2id parameters mangostore accepts (19 MiB, 2 iterations), so key derivation
does not dominate the figures. Each figure is a median over rounds, next to a
baseline measured in the same run:

- ``sync server, N commands, two devices``: device A writes ``Config.rows`` commands
  (not timed), then ``a.sync.sync()`` (push; it also pulls its own batches back) and
  ``b.sync.sync()`` (pull and apply) are timed, on new devices each round, over the
  server with its SQLite store. Baseline: the same two calls through a
  :class:`~mangostore.sync.MemoryRelay` in the process, so the ratio is what HTTP and
  the server cost. Goal at 10,000 changes: under 2 s end to end.
- ``sync server ingest, 8 devices, S s windows``: eight threads, each an
  :class:`~mangostore.sync.http.HttpTransport` of another device of one vault, push
  batches sealed beforehand (100 command states each, sealed with
  :func:`~mangostore.sync.batches.seal_batch` under a random key) as fast as they can
  for S seconds, in several windows. Per store: the push latency (median, p95, max
  over every push) and the time per stored batch over all devices (1 / batches a
  second, median over windows). On the SQLite store (the baseline), and on
  PostgreSQL (``MANGOSTORE_TEST_PG_DSN``, a schema of its own, dropped after) with one
  and with two server processes (devices split between them). Without the variable
  the PostgreSQL cases are left out with a printed note.
- ``sync server join, N rows``: device A writes N commands, updates every one twice
  (each pass pushed on its own, so the history holds three states a row), then a tail
  of 1,000 updates. A new device joins (:func:`~mangostore.sync.joining.join` with
  ``sync=False``, then ``db.sync.bootstrap()`` and ``db.sync.pull()``, no warm-up
  round) by replaying the whole history (no snapshot on the server: the baseline);
  then A pulls, uploads a snapshot (``db.sync.upload_snapshot()``) and pushes another
  1,000 updates, and new devices join from the snapshot plus that tail.

``python -m bench sync_server`` runs it with the others; ``python -m bench.bench_sync_server``
runs it alone, with ``--rows`` (the join's vault), ``--changes``, ``--seconds`` and
``--rounds`` to scale it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import uuid6

import mangostore
from bench.harness import Config, Measurement, measure_seconds
from mangostore import KdfParams, Settings
from mangostore.sync import MemoryRelay
from mangostore.sync.batches import Batch, open_batch, seal_batch
from mangostore.sync.changes import encode_state
from mangostore.sync.http import HttpTransport
from mangostore.sync.identity import VaultSigner
from mangostore.sync.joining import join
from mangostore.testing.sync_server import SyncServerProcess

PASSPHRASE: Final = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts, as the tests use.
SETTINGS: Final = Settings(kdf=KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1))
PG_DSN_ENV: Final = "MANGOSTORE_TEST_PG_DSN"
#: Most timed rounds of the two-device case, and of each join.
SYNC_ROUNDS: Final = 5
JOIN_ROUNDS: Final = 3
#: Rows of the joined vault at scale 1, and the updates of each tail.
JOIN_ROWS: Final = 100_000
JOIN_TAIL: Final = 1_000
#: Devices pushing at once, seconds of each window, windows per store.
DEVICES: Final = 8
SECONDS: Final = 5.0
WINDOWS: Final = 3
#: Batches sealed per device and second of a window: more than a device can push.
SEAL_RATE: Final = 150
START_TIMEOUT_S: Final = 60.0
#: The three parts, as ``--parts`` names them.
PARTS: Final = ("two", "ingest", "join")


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """How much each part does: changes of the two-device case, rows of the joined
    vault, seconds and windows of ingest, rounds; ``pg_dsn`` empty leaves PostgreSQL out."""

    changes: int
    join_rows: int
    seconds: float
    windows: int
    sync_rounds: int
    join_rounds: int
    warmup: int
    pg_dsn: str

    @classmethod
    def from_config(cls, config: Config) -> Plan:
        """The plan for a harness config (smoke: tiny sizes, quick: a fifth)."""
        rounds = max(1, min(SYNC_ROUNDS, round(config.rounds * config.scale)))
        return cls(
            changes=config.rows,
            join_rows=max(50, round(JOIN_ROWS * config.scale)),
            seconds=max(0.3, SECONDS * min(1.0, config.scale * 5)),
            windows=max(1, min(WINDOWS, rounds)),
            sync_rounds=rounds,
            join_rounds=max(1, min(JOIN_ROUNDS, rounds)),
            warmup=min(1, config.warmup),
            pg_dsn=os.environ.get(PG_DSN_ENV, ""),
        )


def run(config: Config) -> list[Measurement]:
    """Run the three parts at the sizes ``config`` asks for."""
    return measure(Plan.from_config(config))


def measure(plan: Plan, parts: tuple[str, ...] = PARTS) -> list[Measurement]:
    """Run ``parts`` of :data:`PARTS` with ``plan`` in a temporary folder; return every figure."""
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-server-") as tmp:
        folder = Path(tmp)
        if "two" in parts:
            with SyncServerProcess(f"sqlite://{folder / 'relay.db'}") as server:
                results += bench_two_devices(plan, folder / "two", server.url)
        if "ingest" in parts:
            results += bench_ingest(plan, folder / "ingest")
        if "join" in parts:
            with SyncServerProcess(f"sqlite://{folder / 'join-relay.db'}") as server:
                results += bench_join(plan, folder / "join", server.url)
    return results


# -- servers ----------------------------------------------------------------------------


@contextlib.contextmanager
def pg_store(dsn: str) -> Iterator[str]:
    """A ``--store`` URL on a PostgreSQL schema of its own, dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"bench_relay_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            separator = "&" if "?" in dsn else "?"
            yield dsn + separator + "options=" + quote(f"-csearch_path={schema}")
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# -- data -------------------------------------------------------------------------------


def _create(path: Path) -> mangostore.Database:
    return mangostore.create(path, passphrase=PASSPHRASE, settings=SETTINGS).db


def _commands(user_id: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    now = time.time_ns() // 1_000_000
    return [
        {
            "id": str(uuid6.uuid7()),
            "user_id": user_id,
            "command": f"git commit -m 'change {n}'",
            "exit_code": n % 3,
            "working_directory": "/home/me/src",
            "timestamp": now + n,
        }
        for n in range(start, start + count)
    ]


def _write_commands(db: mangostore.Database, user_id: str, count: int) -> None:
    for start in range(0, count, 10_000):
        db.command_history.create_many(_commands(user_id, min(10_000, count - start), start))


def _update_all(db: mangostore.Database, ids: list[str], tag: str) -> None:
    """Change one column of every row of ``ids``, 10,000 to a transaction."""
    for start in range(0, len(ids), 10_000):
        with db.transaction():
            for row_id in ids[start : start + 10_000]:
                db.execute(
                    "UPDATE command_history SET working_directory = ? WHERE id = ?",
                    (f"/home/me/{tag}", row_id),
                )


# -- two devices ------------------------------------------------------------------------


def bench_two_devices(plan: Plan, folder: Path, url: str) -> list[Measurement]:
    """Timed ``a.sync.sync()`` and ``b.sync.sync()`` of ``plan.changes`` commands,
    over the server and through a memory relay, on new devices each round."""
    folder.mkdir()
    samples: dict[str, list[float]] = {}
    for round_ in range(plan.warmup + plan.sync_rounds):
        for via in ("memory", "server"):
            timed = _sync_round(
                folder / f"{via}-{round_}", plan.changes, url if via == "server" else None
            )
            if round_ >= plan.warmup:
                for part, seconds in timed.items():
                    samples.setdefault(f"{via} {part}", []).append(seconds)
    group = f"sync server, {plan.changes:,} commands, two devices"
    names = {
        "push": "a.sync.sync() (push)",
        "pull": "b.sync.sync() (pull and apply)",
        "both": "both, end to end",
    }
    results: list[Measurement] = []
    for part, name in names.items():
        base = measure_seconds(group, f"{name}, MemoryRelay", samples[f"memory {part}"])
        results.append(base)
        results.append(
            measure_seconds(group, f"{name}, serve-sync", samples[f"server {part}"], base)
        )
    return results


def _sync_round(folder: Path, count: int, url: str | None) -> dict[str, float]:
    """Two new devices; A writes ``count`` commands; time A's sync, then B's."""
    folder.mkdir()
    a = _create(folder / "a.db")
    b: mangostore.Database | None = None
    try:
        if url is None:
            relay = MemoryRelay()
            a.sync.enable(relay)
            b, _ = a.sync.new_device(folder / "b.db", PASSPHRASE, settings=SETTINGS)
            b.sync.connect(relay)
        else:
            join_url = a.sync.attach(url)
            b = join(join_url, folder / "b.db", passphrase=PASSPHRASE, settings=SETTINGS).db
        user = a.users.create(username="ann").id
        a.sync.sync()
        b.sync.sync()
        _write_commands(a, user, count)
        started = time.perf_counter()
        pushed = a.sync.sync()
        pushed_at = time.perf_counter()
        pulled = b.sync.sync()
        done = time.perf_counter()
        assert pushed.pushed_changes == count, pushed
        assert pulled.applied == count, pulled
        return {"push": pushed_at - started, "pull": done - pushed_at, "both": done - started}
    finally:
        a.close()
        if b is not None:
            b.close()


# -- ingest -----------------------------------------------------------------------------


def bench_ingest(plan: Plan, folder: Path) -> list[Measurement]:
    """Eight devices pushing sealed batches for ``plan.seconds`` a window, per store."""
    folder.mkdir()
    template = template_states(folder / "template.db")
    group = f"sync server ingest, {DEVICES} devices, {plan.seconds:g} s windows"
    results: list[Measurement] = []
    with SyncServerProcess(f"sqlite://{folder / 'relay.db'}") as server:
        base = _ingest_store(plan, folder / "sqlite", [server.url], template)
    results += _ingest_figures(group, "SQLite store, 1 process", base, None)
    if not plan.pg_dsn:
        print(f"sync server ingest: PostgreSQL left out ({PG_DSN_ENV} is unset)", flush=True)
        return results
    for processes in (1, 2):
        with pg_store(plan.pg_dsn) as store, contextlib.ExitStack() as stack:
            servers = [stack.enter_context(SyncServerProcess(store)) for _ in range(processes)]
            timed = _ingest_store(
                plan, folder / f"pg{processes}", [s.url for s in servers], template
            )
        name = f"PostgreSQL store, {processes} process{'es' if processes > 1 else ''}"
        results += _ingest_figures(group, name, timed, base)
    return results


@dataclasses.dataclass(frozen=True, slots=True)
class Ingest:
    """One store's ingest: every push's seconds, and each window's seconds per batch."""

    latencies: list[float]
    per_batch: list[float]
    batches: int


def _ingest_figures(group: str, name: str, timed: Ingest, base: Ingest | None) -> list[Measurement]:
    """Two rows a store: time per stored batch (all devices), and push latency."""
    rate_base = latency_base = None
    if base is not None:
        rate_base = measure_seconds(
            group, "SQLite store, 1 process: time per batch", base.per_batch
        )
        latency_base = measure_seconds(
            group, "SQLite store, 1 process: push latency", base.latencies
        )
    return [
        measure_seconds(group, f"{name}: time per batch", timed.per_batch, rate_base),
        measure_seconds(group, f"{name}: push latency", timed.latencies, latency_base),
    ]


def template_states(path: Path) -> list[list[Any]]:
    """The encoded states of a real batch: 100 commands written on a device."""
    db = _create(path)
    try:
        relay = MemoryRelay()
        db.sync.enable(relay)
        db.command_history.create_many(_commands(db.users.create(username="ann").id, 100))
        db.sync.push()
        assert db.keyring is not None
        # The user and the 100 commands make two batches: take the full one.
        full = max(relay.pull(db.sync.vault_id, 0, 10), key=lambda p: len(p.batch.body))
        body = open_batch(db.keyring.subkey("sync"), full.batch)
        return [encode_state(state) for state in body.states]
    finally:
        db.close()


def _ingest_store(plan: Plan, folder: Path, urls: list[str], states: list[list[Any]]) -> Ingest:
    """Attach a vault, then ``plan.windows`` windows of eight devices pushing."""
    folder.mkdir()
    db = _create(folder / "vault.db")
    transports: list[HttpTransport] = []
    try:
        db.sync.attach(urls[0])
        assert db.keyring is not None
        signer = VaultSigner(db.keyring)
        vault, schema = db.sync.vault_id, db.schema_version
        key = os.urandom(32)
        for n in range(DEVICES):
            device = uuid.uuid4().hex
            transport = HttpTransport(
                urls[n % len(urls)], signer=signer, vault_id=vault, device_id=device
            )
            transport.authenticate()
            transports.append(transport)
        latencies: list[float] = []
        per_batch: list[float] = []
        pushed = 0
        numbers = [1] * DEVICES
        for window in range(plan.warmup + plan.windows):
            sealed = []
            for n, transport in enumerate(transports):
                count = round(SEAL_RATE * plan.seconds)
                sealed.append(
                    [
                        seal_batch(
                            key,
                            vault_id=vault,
                            device_id=transport.device_id,
                            number=numbers[n] + i,
                            schema_version=schema,
                            states=states,
                            erasures=[],
                            keys=[],
                            ack=0,
                        )
                        for i in range(count)
                    ]
                )
            times, elapsed = _window(transports, sealed, plan.seconds)
            numbers = [numbers[n] + len(t) for n, t in enumerate(times)]
            if window >= plan.warmup:
                done = sum(len(t) for t in times)
                latencies += [s for t in times for s in t]
                per_batch.append(elapsed / done)
                pushed += done
        return Ingest(latencies, per_batch, pushed)
    finally:
        for transport in transports:
            transport.close()
        db.close()


def _window(
    transports: list[HttpTransport], sealed: list[list[Batch]], seconds: float
) -> tuple[list[list[float]], float]:
    """Every transport pushes its batches in a thread until ``seconds`` pass; return
    each one's push times and the window's length (to the last answer)."""
    times: list[list[float]] = [[] for _ in transports]
    failures: list[BaseException] = []
    gate = threading.Barrier(len(transports) + 1)
    start = [0.0]

    def push(n: int) -> None:
        gate.wait()
        stop = start[0] + seconds
        clock = time.perf_counter
        try:
            for batch in sealed[n]:
                began = clock()
                if began >= stop:
                    return
                transports[n].push(batch)
                times[n].append(clock() - began)
            failures.append(RuntimeError("a device ran out of sealed batches: raise SEAL_RATE"))
        except BaseException as exc:  # raised again by the caller
            failures.append(exc)

    threads = [threading.Thread(target=push, args=(n,)) for n in range(len(transports))]
    for thread in threads:
        thread.start()
    start[0] = time.perf_counter()
    gate.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start[0]
    if failures:
        raise failures[0]
    return times, elapsed


# -- joining ----------------------------------------------------------------------------


def bench_join(plan: Plan, folder: Path, url: str) -> list[Measurement]:
    """A new device joining a vault of ``plan.join_rows`` rows: by replaying the whole
    history (baseline), then from a snapshot plus a tail of updates."""
    folder.mkdir()
    rows = plan.join_rows
    a = _create(folder / "a.db")
    try:
        join_url = a.sync.attach(url)
        user = a.users.create(username="ann").id
        _write_commands(a, user, rows)
        a.sync.push()  # push, never sync: sync would upload a snapshot on its own
        ids = [str(r[0]) for r in a.query("SELECT id FROM command_history", use_cache=False)]
        for tag in ("first", "second"):
            _update_all(a, ids, tag)
            a.sync.push()
        tail = min(JOIN_TAIL, rows)
        _update_all(a, ids[:tail], "tail one")
        a.sync.push()
        # No warm-up join: each lasts seconds on a new device, and A's pushes have
        # already warmed the server's store.
        replay = [
            _join_once(join_url, folder / f"replay-{n}.db", rows, snapshot=False)
            for n in range(plan.join_rounds)
        ]
        # The snapshot is taken at the cursor A has pulled up to: pull first, or it
        # would be a snapshot at cursor 0 that joining devices rightly skip.
        a.sync.pull()
        assert a.sync.upload_snapshot() is not None
        _update_all(a, ids[-tail:], "tail two")
        a.sync.push()
        snapshot = [
            _join_once(join_url, folder / f"snapshot-{n}.db", rows, snapshot=True)
            for n in range(plan.join_rounds)
        ]
    finally:
        a.close()
    group = f"sync server join, {rows:,} rows (each updated twice), {tail:,} changes of tail"
    base = measure_seconds(group, "join + pull, replaying the whole history", replay)
    return [
        base,
        measure_seconds(group, "join + pull, from a snapshot plus the tail", snapshot, base),
    ]


def _join_once(join_url: str, path: Path, rows: int, *, snapshot: bool) -> float:
    """Time a join (without its own sync, which may upload a snapshot), the snapshot
    (what ``pull`` starts a new device with; checked to be there or not) and a pull."""
    started = time.perf_counter()
    db = join(join_url, path, passphrase=PASSPHRASE, settings=SETTINGS, sync=False).db
    try:
        parts = db.sync.bootstrap()
        db.sync.pull()
        elapsed = time.perf_counter() - started
        assert (parts > 0) == snapshot, parts
        held = db.query("SELECT count(*) FROM command_history", use_cache=False)[0][0]
        assert held == rows, (held, rows)
        return elapsed
    finally:
        db.close()


# -- as a script ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the three parts alone and print one table."""
    from rich.console import Console

    from bench.__main__ import table

    full = Plan.from_config(Config())
    parser = argparse.ArgumentParser(description="Sync server benchmarks.")
    parser.add_argument("--rows", type=int, default=full.join_rows, help="rows of the joined vault")
    parser.add_argument("--changes", type=int, default=full.changes, help="two-device changes")
    parser.add_argument("--seconds", type=float, default=full.seconds, help="of an ingest window")
    parser.add_argument("--rounds", type=int, default=full.sync_rounds, help="two-device rounds")
    parser.add_argument(
        "--join-rounds", type=int, default=full.join_rounds, help="joins of each kind"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}"
    )
    args = parser.parse_args(argv)
    parts = tuple(p for p in args.parts.split(",") if p)
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts takes some of {', '.join(PARTS)}")
    plan = dataclasses.replace(
        full,
        join_rows=args.rows,
        changes=args.changes,
        seconds=args.seconds,
        sync_rounds=args.rounds,
        join_rounds=args.join_rounds,
    )
    started = time.perf_counter()
    results = measure(plan, parts)
    elapsed = time.perf_counter() - started
    console = Console(width=160)
    console.print(table(results, f"mangostore sync server benchmarks ({elapsed:.0f} s)"))
    for m in results:
        if m.name.endswith("time per batch"):
            console.print(f"{m.name}: {1e6 / m.median_us:,.0f} batches/s")
    console.print(f"load average (1 min) after the run: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
