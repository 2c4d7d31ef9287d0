"""Sync benchmarks: what change capture costs a write, how fast changes travel and
apply, and the bytes of bookkeeping a synced row carries.

Every figure is measured on encrypted files in a temporary folder (cheapest KDF, for
setup only), next to a baseline measured in the same run:

- ``sync capture: ...``: the same writes to a database with sync enabled (the capture
  triggers ``db.sync.enable()`` makes) and to one without, each case against its twin
  without capture: ``create_many`` of 1,000 projects and of 1,000 commands, 1,000
  ``db.execute`` INSERTs in one ``db.transaction()``, ``db.users.create`` and one
  ``db.execute`` INSERT in their own transactions, and one column of 1,000 projects
  updated in one transaction, or of one in its own. The raw engine writes the same
  batches (``executemany`` on a ``sqlcipher3`` connection keyed with the page key, the
  capture functions registered on it for the synced file): the triggers' own cost, with
  no library code around them. Projects have no triggers of their own; commands have
  six (full-text and trigram indexes, weekly totals). Goal: at most 1.5 times the same
  inserts without capture.
- ``sync apply, N commands|projects, new devices``: on two new devices of one vault,
  device A writes ``Config.rows`` rows through its repository (not timed), then
  ``a.sync.push()`` and ``b.sync.pull()`` through a :class:`MemoryRelay` are timed, and
  their sum is the end-to-end time. Baselines: the raw engine inserting the same rows
  (read back from device A) into a new database without sync, with one
  ``executemany`` (for commands also with the table's own triggers dropped), and with
  multi-row INSERTs (``sync apply, N ..., against multi-row INSERTs``), the statements
  a pull itself sends. Goals at 10,000 changes: the pull applies 20,000 changes a
  second or more; push and pull together take under a second.
- ``sync apply, N commands, device holding 10 N``: the same pull into a device that
  already holds ten times as many commands (loaded through the raw engine with capture
  off), against the pulls into new devices above, and against the raw engine's
  multi-row INSERTs of as many commands into a database holding as many.

Run as a script it measures the bookkeeping instead:
``python -m bench.bench_sync --metadata N`` inserts N commands on a synced database,
changes three columns of each, pushes, and reports the bytes of ``sync_rows``,
``sync_cells``, ``sync_counters`` and the index of pending changes per row after each
step, and how much more the synced file grew than the same writes grew a file without
sync.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import uuid6

import mangostore
from bench.harness import Config, Measurement, Suite, measure_seconds, raw_connection
from mangostore import KdfParams, Settings
from mangostore.clock import SystemClock
from mangostore.repos.batch import insert_sql
from mangostore.sql import execute_rows, quote_identifier, repeated_rows
from mangostore.sync import MemoryRelay
from mangostore.sync.clock import CaptureState

PASSPHRASE: Final = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts: setup only.
FAST_KDF: Final = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
SETTINGS: Final = Settings(kdf=FAST_KDF)
#: Rows a batch insert or update writes, in one transaction.
BATCH: Final = 1_000
#: Most timed rounds of the apply groups (each round syncs ``Config.rows`` changes).
APPLY_ROUNDS: Final = 5
#: The device pulled into holds this many times ``Config.rows`` commands already; and
#: the most timed rounds of that group.
LARGER: Final = 10
LARGER_ROUNDS: Final = 3
#: The bookkeeping tables, and the index of pending changes.
META: Final = ("sync_rows", "sync_cells", "sync_counters", "idx_sync_rows_pending")
#: The steps after which the bookkeeping is measured.
STEPS: Final = ("after inserts", "after updates", "after push")
COMMAND_COLUMNS: Final = ("id", "user_id", "command", "exit_code", "working_directory", "timestamp")
PROJECT_COLUMNS: Final = ("id", "user_id", "name", "path", "type", "metadata")
INSERT_COMMAND: Final = (
    f"INSERT INTO command_history ({', '.join(COMMAND_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"
)
# The repository stamps created_at and updated_at; the bare insert writes them too.
INSERT_PROJECT: Final = (
    f"INSERT INTO projects ({', '.join(PROJECT_COLUMNS)}, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_PROJECT: Final = "UPDATE projects SET last_accessed = ? WHERE id = ?"
INSERT_USER: Final = "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, 0, 0)"


def run(config: Config) -> list[Measurement]:
    """Time capture, apply and end to end on new databases in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        folder = Path(tmp)
        results = _bench_capture(config, folder)
        results += _bench_apply(config, folder)
    return results


# -- data -------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _command_rows(user_id: str, count: int) -> list[tuple[Any, ...]]:
    """Make ``count`` new command-history rows (``COMMAND_COLUMNS``)."""
    now = _now_ms()
    return [
        (str(uuid6.uuid7()), user_id, f"git commit -m 'change {n}'", n % 3, "/home/me/src", now + n)
        for n in range(count)
    ]


def _project_rows(user_id: str, count: int) -> list[tuple[Any, ...]]:
    """Make ``count`` new projects rows (``PROJECT_COLUMNS``), each with a unique path."""
    rows = []
    for n in range(count):
        row_id = str(uuid6.uuid7())
        meta = f'{{"language":"python","stars":{n}}}'
        rows.append((row_id, user_id, f"project {n}", f"/home/me/src/{row_id}", "python", meta))
    return rows


def _as_dicts(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows of :func:`_command_rows` as the repository takes them."""
    return [dict(zip(COMMAND_COLUMNS, row, strict=True)) for row in rows]


def _project_dicts(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows of :func:`_project_rows` as the repository takes them (``metadata`` parsed)."""
    return [
        {**dict(zip(PROJECT_COLUMNS, row, strict=True)), "metadata": json.loads(row[-1])}
        for row in rows
    ]


def _stamped(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    now = _now_ms()
    return [(*row, now, now) for row in rows]


def _create(folder: Path, name: str) -> mangostore.Database:
    return mangostore.create(folder / name, passphrase=PASSPHRASE, settings=SETTINGS).db


def _raw_writer(db: mangostore.Database, *, capture: bool, applying: bool = False) -> Any:
    """A bare connection to ``db``'s file; with ``capture``, able to run its triggers
    (which record nothing if ``applying``, as while sync applies remote changes)."""
    assert db.keyring is not None
    conn = raw_connection(Path(db.path), db.keyring.subkey("page"), writer=True)
    if capture:
        state = CaptureState(SystemClock())
        state.set_applying(applying)
        state.register(conn)
    return conn


# -- capture ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Side:
    """One database of a capture pair, and what its cases need."""

    label: str
    db: mangostore.Database
    raw: Any
    user_id: str
    projects: list[str]


def _side(folder: Path, name: str, *, synced: bool, seed: int) -> _Side:
    db = _create(folder, name)
    if synced:
        db.sync.enable(MemoryRelay())
    user = db.users.create(username="ann").id
    rows = _project_rows(user, seed)
    db.projects.create_many(_project_dicts(rows))
    label = "sync enabled" if synced else "no sync"
    return _Side(label, db, _raw_writer(db, capture=synced), user, [r[0] for r in rows])


def _bench_capture(config: Config, folder: Path) -> list[Measurement]:
    batch = min(BATCH, config.rows)
    plain = _side(folder, "plain.db", synced=False, seed=config.rows)
    synced = _side(folder, "synced.db", synced=True, seed=config.rows)
    sides = (plain, synced)
    try:
        return (
            _capture_batch(config, sides, batch, "projects")
            + _capture_batch(config, sides, batch, "commands")
            + _capture_single(config, sides)
            + _capture_update(config, sides, batch)
        )
    finally:
        for side in sides:
            side.raw.close()
            side.db.close()


def _twins(
    suite: Suite,
    name: str,
    make: Callable[[_Side], Callable[[], object]],
    sides: tuple[_Side, _Side],
    *,
    number: int,
    baseline: str | None = None,
) -> None:
    """Add ``name`` on the database without sync, then with it, against the first."""
    plain, synced = sides
    first = f"{name}, {plain.label}"
    suite.add(first, make(plain), number=number, baseline=baseline)
    suite.add(f"{name}, {synced.label}", make(synced), number=number, baseline=first)


def _capture_batch(
    config: Config, sides: tuple[_Side, _Side], batch: int, kind: str
) -> list[Measurement]:
    suite = Suite(f"sync capture: insert {batch:,} {kind}, one transaction", config)
    number = 3
    total = config.total_calls(number)
    projects = kind == "projects"
    make_rows = _project_rows if projects else _command_rows
    insert = INSERT_PROJECT if projects else INSERT_COMMAND

    def batches(side: _Side) -> Iterator[list[tuple[Any, ...]]]:
        # Commands carry their own timestamp; projects get the repository's two.
        stamp = _stamped if projects else list
        return iter([stamp(make_rows(side.user_id, batch)) for _ in range(total)])

    def raw_insert(side: _Side) -> Callable[[], None]:
        parts = batches(side)

        def once() -> None:
            side.raw.execute("BEGIN IMMEDIATE")
            side.raw.executemany(insert, next(parts))
            side.raw.execute("COMMIT")

        return once

    def create_many(side: _Side) -> Callable[[], object]:
        repo = side.db.projects if projects else side.db.command_history
        dicts = _project_dicts if projects else _as_dicts
        parts = iter([dicts(make_rows(side.user_id, batch)) for _ in range(total)])
        return lambda: repo.create_many(next(parts))

    def execute_loop(side: _Side) -> Callable[[], None]:
        parts = batches(side)

        def once() -> None:
            with side.db.transaction():
                for row in next(parts):
                    side.db.execute(insert, row)

        return once

    raw = "sqlcipher3 executemany"
    _twins(suite, raw, raw_insert, sides, number=number)
    base = f"{raw}, {sides[0].label}"
    repo = "db.projects.create_many" if projects else "db.command_history.create_many"
    _twins(suite, repo, create_many, sides, number=number, baseline=base)
    if projects:
        _twins(suite, "db.execute INSERT loop", execute_loop, sides, number=number, baseline=base)
    return suite.run()


def _capture_single(config: Config, sides: tuple[_Side, _Side]) -> list[Measurement]:
    suite = Suite("sync capture: insert one row, own transaction", config)
    number = 200
    total = config.total_calls(number)

    def users(side: _Side) -> Callable[[], object]:
        names = iter([f"user-{uuid6.uuid7()}" for _ in range(total)])
        return lambda: side.db.users.create(username=next(names))

    def execute(side: _Side) -> Callable[[], object]:
        rows = iter(_stamped(_project_rows(side.user_id, total)))
        return lambda: side.db.execute(INSERT_PROJECT, next(rows))

    _twins(suite, "db.users.create", users, sides, number=number)
    _twins(suite, "db.execute INSERT INTO projects", execute, sides, number=number)
    return suite.run()


def _capture_update(config: Config, sides: tuple[_Side, _Side], batch: int) -> list[Measurement]:
    suite = Suite(f"sync capture: update one column of {batch:,} projects", config)
    number = 3
    values = itertools.count(_now_ms())

    def chunks(side: _Side) -> Iterator[list[str]]:
        ids = side.projects
        for start in itertools.cycle(range(0, len(ids) - batch + 1, batch)):
            yield ids[start : start + batch]

    def raw_update(side: _Side) -> Callable[[], None]:
        parts = chunks(side)

        def once() -> None:
            value = next(values)
            side.raw.execute("BEGIN IMMEDIATE")
            side.raw.executemany(UPDATE_PROJECT, [(value, i) for i in next(parts)])
            side.raw.execute("COMMIT")

        return once

    def execute_loop(side: _Side) -> Callable[[], None]:
        parts = chunks(side)

        def once() -> None:
            value = next(values)
            with side.db.transaction():
                for row_id in next(parts):
                    side.db.execute(UPDATE_PROJECT, (value, row_id))

        return once

    raw = "sqlcipher3 executemany UPDATE"
    _twins(suite, raw, raw_update, sides, number=number)
    base = f"{raw}, {sides[0].label}"
    _twins(suite, "db.execute UPDATE loop", execute_loop, sides, number=number, baseline=base)
    results = suite.run()

    single = Suite("sync capture: update one column, own transaction", config)

    def update(side: _Side) -> Callable[[], object]:
        ids = itertools.cycle(side.projects)
        return lambda: side.db.projects.update(next(ids), last_accessed=next(values))

    _twins(single, "db.projects.update", update, sides, number=200)
    return results + single.run()


# -- apply and end to end ---------------------------------------------------------------


def _bench_apply(config: Config, folder: Path) -> list[Measurement]:
    # Every round syncs Config.rows changes whatever the scale: a quick run does fewer.
    rounds = max(1, min(APPLY_ROUNDS, round(config.rounds * config.scale)))
    results: list[Measurement] = []
    fresh_pulls: list[float] = []
    for kind in ("commands", "projects"):
        names = ("raw", "multi", "bare", "push", "pull", "both")
        samples: dict[str, list[float]] = {k: [] for k in names}
        for round_ in range(config.warmup + rounds):
            timed = _apply_round(folder / f"{kind}-{round_}", kind, config.rows)
            if round_ >= config.warmup:
                for name, seconds in timed.items():
                    samples[name].append(seconds)
        group = f"sync apply, {config.rows:,} {kind}, new devices"
        base = measure_seconds(group, "sqlcipher3 executemany of the same rows", samples["raw"])
        multi = "sqlcipher3 multi-row INSERTs of the same rows"
        named = (("push", "a.sync.push()"), ("pull", "b.sync.pull()"), ("both", "push + pull"))
        results += [base, *(measure_seconds(group, n, samples[k], base) for k, n in named)]
        # The raw engine's fastest way (the one the pull itself takes), as a second
        # baseline: for commands, executemany flushes the full-text index at every row.
        fastest = f"sync apply, {config.rows:,} {kind}, against multi-row INSERTs"
        floor_multi = measure_seconds(fastest, multi, samples["multi"])
        pull = measure_seconds(fastest, "b.sync.pull()", samples["pull"], floor_multi)
        results += [floor_multi, pull]
        if samples["bare"]:  # what the table's own triggers cost the floor
            floor = f"sync apply, {config.rows:,} {kind}, the floor without triggers"
            full = measure_seconds(floor, base.name, samples["raw"])
            bare = "sqlcipher3 executemany, the table's triggers dropped"
            results += [full, measure_seconds(floor, bare, samples["bare"], full)]
        if kind == "commands":
            fresh_pulls = samples["pull"]
    return results + _apply_onto_larger(config, folder / "larger", rounds, fresh_pulls)


def _devices(folder: Path) -> tuple[mangostore.Database, mangostore.Database, str]:
    """Two new devices of one vault on a relay, and a user both have."""
    folder.mkdir()
    relay = MemoryRelay()
    a = _create(folder, "device-a.db")
    a.sync.enable(relay)
    b, _ = a.sync.new_device(folder / "device-b.db", PASSPHRASE, settings=SETTINGS)
    b.sync.connect(relay)
    user = a.users.create(username="ann").id
    a.sync.push()
    b.sync.pull()
    return a, b, user


def _fill(db: mangostore.Database, kind: str, user: str, count: int) -> str:
    """Write ``count`` new rows of ``kind`` through the repository; return the table."""
    if kind == "projects":
        db.projects.create_many(_project_dicts(_project_rows(user, count)))
        return "projects"
    db.command_history.create_many(_as_dicts(_command_rows(user, count)))
    return "command_history"


def _sync_once(a: mangostore.Database, b: mangostore.Database, count: int) -> dict[str, float]:
    """Push from ``a``, pull into ``b``; return the seconds of each and of both."""
    started = time.perf_counter()
    _, pushed = a.sync.push()
    pushed_at = time.perf_counter()
    _, counts = b.sync.pull()
    pulled_at = time.perf_counter()
    assert pushed == count, pushed
    assert counts.applied == count, counts
    return {"push": pushed_at - started, "pull": pulled_at - pushed_at, "both": pulled_at - started}


def _apply_round(folder: Path, kind: str, count: int) -> dict[str, float]:
    """One round on new devices: the raw floor (for commands also without the table's
    own triggers), then push and pull of ``count`` rows."""
    a, b, user = _devices(folder)
    try:
        table = _fill(a, kind, user, count)
        # The rows exactly as device A holds them, for the raw engine to write.
        rows = [tuple(r) for r in a.query(f"SELECT * FROM {table}", use_cache=False)]
        floors = ("raw", "multi", "bare") if kind == "commands" else ("raw", "multi")
        timed = {name: _raw_insert(folder, name, table, user, rows) for name in floors}
        return {**timed, **_sync_once(a, b, count)}
    finally:
        for db in (a, b):
            db.close()


def _raw_insert(folder: Path, name: str, table: str, user: str, rows: list[Any]) -> float:
    """Seconds the raw engine takes to insert ``rows`` into ``table`` of a new database
    without sync, with one ``executemany``; for ``"multi"``, with multi-row INSERTs of
    as many rows as :func:`mangostore.sql.statement_sizes` allows (what a pull sends);
    for ``"bare"``, with ``executemany`` and the table's own triggers dropped first."""
    db = _create(folder, f"{name}.db")
    raw = _raw_writer(db, capture=False)
    try:
        raw.execute(INSERT_USER, (user, "ann"))
        triggers = "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?"
        for (trigger,) in raw.execute(triggers, (table,)).fetchall() if name == "bare" else []:
            raw.execute(f"DROP TRIGGER {quote_identifier(trigger)}")
        started = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        row = f"({', '.join('?' * len(rows[0]))})"
        if name == "multi":
            execute_rows(raw, lambda n: f"INSERT INTO {table} VALUES {repeated_rows(row, n)}", rows)
        else:
            raw.executemany(f"INSERT INTO {table} VALUES {row}", rows)
        raw.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        raw.close()
        db.close()


def _apply_onto_larger(
    config: Config, folder: Path, rounds: int, fresh_pulls: list[float]
) -> list[Measurement]:
    """Pulls of ``Config.rows`` commands into a device already holding ten times as many,
    against the pulls of as many commands into new devices (``fresh_pulls``), and
    against the raw engine inserting as many into a database holding as many.

    The older commands are loaded through the raw engine with capture off, as rows
    that arrived before, with multi-row statements as a pull writes them
    (``executemany`` would flush the full-text index at every row, leaving it in
    pieces); what is timed is the same pull as on new devices.
    """
    count, held = config.rows, LARGER * config.rows
    a, b, user = _devices(folder)
    raw = _raw_writer(b, capture=True, applying=True)
    bare_db = _create(folder, "raw-larger.db")
    bare = _raw_writer(bare_db, capture=False)
    bare.execute(INSERT_USER, (user, "ann"))
    insert = functools.partial(insert_sql, quote_identifier("command_history"), COMMAND_COLUMNS)
    pulls: list[float] = []
    raws: list[float] = []
    try:
        for writer in (raw, bare):
            for start in range(0, held, 10_000):
                writer.execute("BEGIN IMMEDIATE")
                execute_rows(writer, insert, _command_rows(user, min(10_000, held - start)))
                writer.execute("COMMIT")
        for round_ in range(config.warmup + min(rounds, LARGER_ROUNDS)):
            _fill(a, "commands", user, count)
            timed = _sync_once(a, b, count)
            rows = _command_rows(user, count)
            started = time.perf_counter()
            bare.execute("BEGIN IMMEDIATE")
            execute_rows(bare, insert, rows)
            bare.execute("COMMIT")
            if round_ >= config.warmup:
                pulls.append(timed["pull"])
                raws.append(time.perf_counter() - started)
    finally:
        for closing in (raw, bare, bare_db, a, b):
            closing.close()
    group = f"sync apply, {count:,} commands, device holding {held:,}"
    base = measure_seconds(group, "b.sync.pull(), new device", fresh_pulls)
    pulled = f"b.sync.pull(), device holding {held:,}"
    floor = f"sync apply, {count:,} commands, raw engine, database holding {held:,}"
    raw_base = measure_seconds(floor, f"sqlcipher3 multi-row INSERTs, holding {held:,}", raws)
    return [
        base,
        measure_seconds(group, pulled, pulls, base),
        raw_base,
        measure_seconds(floor, pulled, pulls, raw_base),
    ]


# -- bookkeeping size -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MetadataReport:
    """Bytes of sync bookkeeping per synced row: after inserts, after updates, pushed.

    ``sizes`` maps each step (:data:`STEPS`) to the bytes of the pages (``dbstat``'s
    ``pgsize``) of each of :data:`META` in a plain copy; ``growth`` maps each step to
    how many more bytes the synced file grew by than the same writes grew a file
    without sync.
    """

    rows: int
    sizes: dict[str, dict[str, int]]
    growth: dict[str, int]

    def per_row(self, step: str) -> float:
        """The bytes of the bookkeeping (every table and index) per row after ``step``."""
        return sum(self.sizes[step].values()) / self.rows


def measure_metadata(rows: int, directory: Path | None = None) -> MetadataReport:
    """Insert ``rows`` commands, change three columns of each, push; measure the bookkeeping.

    The bookkeeping tables are copied to a plain SQLite file (SQLCipher is built
    without ``dbstat``) and measured there with ``dbstat``; the copies are packed, as
    after a ``VACUUM``, and their pages have no room reserved for the cipher's IV and
    MAC (80 bytes of 4,096). The growth of the encrypted files themselves, synced
    against not, is measured by their pages in use.
    """
    with tempfile.TemporaryDirectory(prefix="mangostore-size-", dir=directory) as tmp:
        folder = Path(tmp)
        plain, synced = _create(folder, "plain.db"), _create(folder, "synced.db")
        sizes: dict[str, dict[str, int]] = {}
        growth: dict[str, int] = {}
        try:
            synced.sync.enable(MemoryRelay())
            user = synced.users.create(username="ann").id
            plain.execute(INSERT_USER, (user, "ann"))
            before = (_pages_bytes(plain), _pages_bytes(synced))

            def measure(step: str) -> None:
                sizes[step] = _meta_sizes(synced, folder / f"{step}.db")
                grown = (_pages_bytes(plain) - before[0], _pages_bytes(synced) - before[1])
                growth[step] = grown[1] - grown[0]

            commands = _command_rows(user, rows)
            for db in (plain, synced):
                db.command_history.create_many(_as_dicts(commands))
            measure(STEPS[0])
            for db in (plain, synced):
                with db.transaction():
                    for n, row in enumerate(commands):
                        db.execute(
                            "UPDATE command_history SET command = ?, exit_code = ?, "
                            "working_directory = ? WHERE id = ?",
                            (f"git commit --amend -m 'change {n}'", 127, "/home/me/work", row[0]),
                        )
            measure(STEPS[1])
            synced.sync.push()
            measure(STEPS[2])
        finally:
            plain.close()
            synced.close()
    return MetadataReport(rows, sizes, growth)


def _pages_bytes(db: mangostore.Database) -> int:
    """The bytes of the file's pages in use (free pages left out), WAL included."""
    with db.store.transaction() as conn:
        # int(): SQLCipher answers page_size as text.
        count, free, size = (
            int(conn.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "freelist_count", "page_size")
        )
    return (count - free) * size


def _meta_sizes(db: mangostore.Database, copy: Path) -> dict[str, int]:
    """Copy the bookkeeping tables to a plain file at ``copy``; return their bytes."""
    with db.store.transaction() as conn:
        sql = "SELECT name, sql FROM sqlite_master WHERE name IN (?, ?, ?, ?)"
        schema = {str(name): str(text) for name, text in conn.execute(sql, META)}
        contents = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in META[:3]}
    out = sqlite3.connect(copy)
    try:
        out.execute("PRAGMA page_size = 4096")
        for name in META:
            out.execute(schema[name])
        for table, rows in contents.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                out.executemany(f"INSERT INTO {table} VALUES ({marks})", sorted(map(tuple, rows)))
        out.commit()
        sql = "SELECT name, sum(pgsize) FROM dbstat WHERE name IN (?, ?, ?, ?) GROUP BY name"
        sizes = dict(out.execute(sql, META).fetchall())
    finally:
        out.close()
    return {name: int(sizes.get(name, 0)) for name in META}


def _main() -> None:
    parser = argparse.ArgumentParser(
        description="Bytes of sync bookkeeping per synced row; or, with --apply, only the "
        "apply benchmarks (new devices, then a device already holding ten times as many)."
    )
    parser.add_argument("--metadata", type=int, default=10_000, help="rows to insert")
    parser.add_argument("--apply", action="store_true", help="time applying changes only")
    parser.add_argument("--rounds", type=int, default=APPLY_ROUNDS, help="with --apply")
    args = parser.parse_args()
    if args.apply:
        from rich.console import Console

        from bench.__main__ import table

        config = Config(rounds=args.rounds, warmup=0)
        with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
            results = _bench_apply(config, Path(tmp))
        Console(width=160).print(table(results, "applying changes"))
        return
    report = measure_metadata(args.metadata)
    n = report.rows
    print(f"{n:,} commands on a synced database; bytes per row")
    print(f"{'':<26}" + "".join(f"{step:>18}" for step in STEPS))
    for name in META:
        print(f"{name:<26}" + "".join(f"{report.sizes[s][name] / n:>18.1f}" for s in STEPS))
    print(f"{'all':<26}" + "".join(f"{sum(report.sizes[s].values()) / n:>18.1f}" for s in STEPS))
    growth = "".join(f"{report.growth[s] / n:>18.1f}" for s in STEPS)
    print(f"{'file growth over no sync':<26}{growth}")


if __name__ == "__main__":
    _main()
