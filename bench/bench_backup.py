"""Backup benchmarks: a full backup, an incremental one of 10,000 changes, a restore,
and the compression ratio, each next to a bare pipeline run in the same process.

The database is an encrypted file filled with ``--mb`` megabytes (default 32; the
design's goal is stated for 1024: ``python -m bench.bench_backup --mb 1024``) of
command-like text rows, written through the raw engine (setup, not timed).

- ``bare pipeline``: a plain script's page copy: the SQLite backup API copies the
  encrypted database to a temporary file (same page key), then its bytes go through
  zstd and AES-256-GCM in 1 MiB chunks. It copies encrypted pages, which do not
  compress (file/stored 1.0x), and an incremental backup cannot be made from it.
- ``bare rows pipeline``: a plain script doing the service's work without its
  bookkeeping: every table's rows read on a connection of its own inside one read
  transaction, rendered by SQLite as the same ``quote()`` literals (for a table
  with a rowid, joined by SQLite 1,000 rows at a time, as the service reads it), then the
  same zstd (level and worker threads of the backup policy) and AES-256-GCM in 1 MiB
  chunks into a file. No digests, no index, no manifest.
- ``backup full``: ``db.backup.create(kind="full")`` into a folder, against both.
  The three are timed in interleaved rounds (``--rounds``, default 3) after one
  untimed backup, so a change in the shared machine's load falls on each alike.
- ``backup incremental, 10,000 changes``: 10,000 rows updated, then
  ``db.backup.create()``, once a round (each on the one before); baseline: the full
  backup above. Its CPU time (every thread of the process) is reported too: on a busy
  machine the wall time also measures the other work.
- ``backup restore``: ``db.backup.restore`` of the full backup into a new file;
  baseline: decrypting and decompressing the bare pipeline's output to a file.
- ``insert with the change log``: 100,000 rows (the same text rows, one statement per
  transaction of 1,000) into a table whose writes the backup change log records,
  against the same inserts into an identical table without its triggers.
- ``incremental among commands``: a database of ``--commands`` (default 200,000)
  commands recorded through ``db.command_history`` (so with the trigram full-text
  index, which backups leave out and restores build again), a full backup, then 10,000
  randomly chosen commands updated and an incremental backup, and a restore of that
  chain (which builds the full-text index again).
- ``record commands with the change log``: ``db.command_history.create_many`` of 2,000
  commands (the schema's own indexes, full-text and statistics triggers included) in a
  database that has been backed up, against one that has not.
"""

from __future__ import annotations

import argparse
import os
import secrets
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import mangostore
from bench.harness import Config, Measurement, measure_seconds, print_seconds, raw_connection
from mangostore import KdfParams, Settings
from mangostore.backup import BackupPolicy, changelog
from mangostore.backup.snapshot import TablePlan, read_groups, read_literals, read_plan
from mangostore.sql import quote_identifier

PASSPHRASE: Final = "bench: correct horse battery staple"
SETTINGS: Final = Settings(kdf=KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1))
GROUP: Final = "backup"
_WORDS = [
    "git",
    "push",
    "commit",
    "status",
    "make",
    "test",
    "deploy",
    "origin",
    "main",
    "branch",
    "rebase",
    "merge",
    "log",
    "diff",
]


def _fill(db: mangostore.Database, megabytes: float) -> None:
    """Write about ``megabytes`` of text rows through the raw engine."""
    db.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, cmd TEXT, n INTEGER)")
    target = int(megabytes * 1024 * 1024)
    written, n = 0, 0
    rng = secrets.SystemRandom()
    while written < target:
        batch = []
        for _ in range(5000):
            text = " ".join(rng.choice(_WORDS) for _ in range(12)) + f" {rng.random()}"
            batch.append((text, n))
            written += len(text) + 16
            n += 1
        with db.store.transaction() as conn:
            conn.executemany("INSERT INTO bench_rows (cmd, n) VALUES (?, ?)", batch)


class _Bare:
    """The bare pipeline of a plain script: SQLite backup API, zstd, AES-256-GCM."""

    def __init__(self, db: mangostore.Database, tmp: Path) -> None:
        self._db = db
        self._tmp = tmp
        self._key = AESGCM.generate_key(bit_length=256)
        self.out = tmp / "bare.out"
        self.out_rows = tmp / "bare-rows.out"

    def backup(self) -> float:
        """Copy, compress and encrypt the database; return the seconds taken."""
        page_key = self._db.store.keyring.subkey("page")  # type: ignore[union-attr]
        started = time.perf_counter()
        copy_path = self._tmp / "bare-copy.db"
        source = raw_connection(Path(self._db.store.path), page_key)
        copy = raw_connection(copy_path, page_key)
        source.backup(copy)
        copy.close()
        source.close()
        aead = AESGCM(self._key)
        compressor = zstandard.ZstdCompressor(level=3).compressobj()
        with open(copy_path, "rb") as src, open(self.out, "wb") as dst:
            while block := src.read(1 << 20):
                self._seal(dst, aead, compressor.compress(block))
            self._seal(dst, aead, compressor.flush())
        seconds = time.perf_counter() - started
        os.unlink(copy_path)
        return seconds

    @staticmethod
    def _seal(dst: BinaryIO, aead: AESGCM, chunk: bytes) -> None:
        if chunk:
            nonce = os.urandom(12)
            sealed = nonce + aead.encrypt(nonce, chunk, None)
            dst.write(struct.pack(">I", len(sealed)) + sealed)

    def backup_rows(self, policy: BackupPolicy) -> float:
        """Read every table's rows as literals, compress and encrypt them; return the
        seconds taken."""
        started = time.perf_counter()
        aead = AESGCM(self._key)
        compressor = zstandard.ZstdCompressor(
            level=policy.zstd_level, threads=policy.zstd_threads
        ).compressobj()
        pending = bytearray()
        # A connection of the script's own, in one read transaction, keeping no
        # prepared statement (as the service's snapshot connection).
        page_key = self._db.store.keyring.subkey("page")  # type: ignore[union-attr]
        conn = raw_connection(Path(self._db.store.path), page_key, cached_statements=0)
        conn.execute("BEGIN")
        with open(self.out_rows, "wb") as dst:
            # The tables, row literals and groups of rows the service reads: a table
            # with a rowid 1,000 rows joined by SQLite at a time, after the last rowid
            # read; any other table one statement.
            for table in read_plan(conn).tables:
                for text in _literals(conn, table):
                    pending += compressor.compress(text)
                    while len(pending) >= 1 << 20:
                        self._seal(dst, aead, bytes(pending[: 1 << 20]))
                        del pending[: 1 << 20]
            pending += compressor.flush()
            self._seal(dst, aead, bytes(pending))
        conn.execute("COMMIT")
        conn.close()
        return time.perf_counter() - started

    def restore(self) -> float:
        """Decrypt and decompress the output into a file; return the seconds taken."""
        started = time.perf_counter()
        aead = AESGCM(self._key)
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        with open(self.out, "rb") as src, open(self._tmp / "bare-restored.db", "wb") as dst:
            while head := src.read(4):
                sealed = src.read(struct.unpack(">I", head)[0])
                dst.write(decompressor.decompress(aead.decrypt(sealed[:12], sealed[12:], None)))
        return time.perf_counter() - started


def _literals(conn: Any, table: TablePlan) -> Iterator[bytes]:
    """A table's rows as literals joined by ``,``, a batch at a time, read with the
    service's own readers: a table with a rowid in groups SQLite joins, any other a
    literal a row."""
    if table.by_rowid:
        for joined, _ in read_groups(conn, table, utf8=True):
            yield joined
        return
    sql = f"SELECT {table.literal_sql(utf8=True)} FROM {quote_identifier(table.name)}"
    for parts in read_literals(conn, sql, utf8=True):
        yield b",".join(parts)


def _insert_rounds(db: mangostore.Database, rounds: int) -> tuple[list[float], list[float]]:
    """Time inserts into a logged and an unlogged twin table (interleaved rounds)."""
    for name in ("bench_logged", "bench_unlogged"):
        db.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, cmd TEXT, n INTEGER)")
    with db.store.transaction() as conn:
        for statement in changelog.trigger_sql(conn, read_plan(conn).table("bench_logged")):
            conn.execute(statement)
    rows = [(" ".join(_WORDS[(n + k) % len(_WORDS)] for k in range(12)), n) for n in range(100_000)]
    timings: dict[str, list[float]] = {"bench_logged": [], "bench_unlogged": []}
    for _ in range(rounds):
        for name, times in timings.items():
            started = time.perf_counter()
            for start in range(0, len(rows), 1000):
                with db.store.transaction() as conn:
                    conn.executemany(
                        f"INSERT INTO {name} (cmd, n) VALUES (?, ?)", rows[start : start + 1000]
                    )
            times.append(time.perf_counter() - started)
    return timings["bench_logged"], timings["bench_unlogged"]


def _command_rounds(tmp: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Time ``create_many`` of commands in a backed-up and a fresh database."""
    dbs = {}
    for name in ("logged", "unlogged"):
        db = mangostore.create(tmp / f"{name}.db", passphrase=PASSPHRASE, settings=SETTINGS).db
        user = db.users.create(username="ann").id
        if name == "logged":
            db.backup.create(tmp / "commands-backup")  # installs the change log
        dbs[name] = (db, user)
    timings: dict[str, list[float]] = {"logged": [], "unlogged": []}
    try:
        for n in range(rounds):
            for name, (db, user) in dbs.items():
                items = [
                    {"user_id": user, "command": f"git commit -m 'change {n} {k}'", "exit_code": 0}
                    for k in range(2000)
                ]
                started = time.perf_counter()
                db.command_history.create_many(items)
                timings[name].append(time.perf_counter() - started)
    finally:
        for db, _ in dbs.values():
            db.close()
    return timings["logged"], timings["unlogged"]


def _commands_incremental(
    tmp: Path, commands: int, rounds: int
) -> tuple[float, list[float], float]:
    """The full backup's seconds, each incremental's after 10,000 scattered updates,
    and a restore of the last one, in a database of ``commands`` recorded commands."""
    db = mangostore.create(tmp / "commands.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    rng = secrets.SystemRandom()
    try:
        user = db.users.create(username="ann").id
        for start in range(0, commands, 5000):
            db.command_history.create_many(
                {
                    "user_id": user,
                    "command": " ".join(rng.choice(_WORDS) for _ in range(8)) + f" {start + k}",
                    "exit_code": 0,
                }
                for k in range(min(5000, commands - start))
            )
        db.checkpoint(truncate=True)
        started = time.perf_counter()
        db.backup.create(tmp / "commands-bk", kind="full")
        full_s = time.perf_counter() - started
        ids = [str(r[0]) for r in db.query("SELECT id FROM command_history")]
        inc_s = []
        for n in range(rounds):
            with db.store.transaction() as conn:
                conn.executemany(
                    "UPDATE command_history SET exit_code = ? WHERE id = ?",
                    [(n + 1, i) for i in rng.sample(ids, min(10_000, len(ids)))],
                )
            started = time.perf_counter()
            made = db.backup.create(tmp / "commands-bk")
            inc_s.append(time.perf_counter() - started)
            assert made.kind == "incremental"
        started = time.perf_counter()
        db.backup.restore(
            tmp / "commands-restored.db",
            passphrase=PASSPHRASE,
            to=tmp / "commands-bk",
            settings=SETTINGS,
        )
        restore_s = time.perf_counter() - started
    finally:
        db.close()
    return full_s, inc_s, restore_s


def run(
    config: Config, megabytes: float | None = None, commands_count: int | None = None
) -> list[Measurement]:
    """Time the full backup, an incremental one, a restore, and their bare twins."""
    mb = megabytes if megabytes is not None else max(1.0, 32 * min(1.0, config.rows / 10_000))
    if commands_count is None:
        commands_count = max(1000, int(200_000 * min(1.0, config.rows / 10_000)))
    rounds = max(1, min(3, config.rounds // 5))
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = mangostore.create(tmp / "bench.db", passphrase=PASSPHRASE, settings=SETTINGS).db
        try:
            _fill(db, mb)
            db.checkpoint(truncate=True)
            size_mb = Path(db.store.path).stat().st_size / 1e6
            bare = _Bare(db, tmp)
            db.backup.create(tmp / "warm-up", kind="full")  # imports, page cache
            bare_s, rows_s, full_s, stored, first = [], [], [], 0, ""
            # Interleaved rounds: a change in the machine's load falls on each alike.
            for n in range(rounds):
                bare_s.append(bare.backup())
                rows_s.append(bare.backup_rows(db.backup.policy))
                started = time.perf_counter()
                made = db.backup.create(tmp / f"full{n}", kind="full")
                full_s.append(time.perf_counter() - started)
                stored = made.stored_bytes
                first = first or made.id
            bare_bytes = bare.out.stat().st_size
            rows_bytes = bare.out_rows.stat().st_size
            changes = min(10_000, int(db.query("SELECT count(*) FROM bench_rows")[0][0]))
            inc_s, inc_cpu = [], []
            for _ in range(rounds):
                db.execute("UPDATE bench_rows SET n = n + 1 WHERE id <= ?", [changes])
                started, cpu = time.perf_counter(), time.process_time()
                inc = db.backup.create(tmp / "full0")
                inc_s.append(time.perf_counter() - started)
                inc_cpu.append(time.process_time() - cpu)
                assert inc.kind == "incremental"
            restore_s = []
            for n in range(rounds):
                started = time.perf_counter()
                db.backup.restore(
                    tmp / f"restored{n}.db",
                    passphrase=PASSPHRASE,
                    to=tmp / "full0",
                    backup_id=first,
                    settings=SETTINGS,
                )
                restore_s.append(time.perf_counter() - started)
            bare_restore_s = [bare.restore() for _ in range(rounds)]
            logged_s, unlogged_s = _insert_rounds(db, rounds)
            commands_logged_s, commands_s = _command_rounds(tmp, max(5, rounds))
            commands_full_s, commands_inc_s, commands_restore_s = _commands_incremental(
                tmp, commands_count, rounds
            )
        finally:
            db.close()
    ratio_ours = size_mb * 1e6 / max(stored, 1)
    ratio_bare = size_mb * 1e6 / max(bare_bytes, 1)
    base = measure_seconds(
        GROUP, f"bare pipeline, {size_mb:.0f} MB file (file/stored {ratio_bare:.1f}x)", bare_s
    )
    rows = measure_seconds(
        GROUP,
        f"bare rows pipeline (file/stored {size_mb * 1e6 / max(rows_bytes, 1):.1f}x)",
        rows_s,
    )
    full = measure_seconds(
        GROUP, f"backup full, {size_mb:.0f} MB file (file/stored {ratio_ours:.1f}x)", full_s, base
    )
    full_rows = measure_seconds(GROUP, "backup full, against the rows pipeline", full_s, rows)
    bare_restore = measure_seconds(GROUP, "bare pipeline restore", bare_restore_s)
    unlogged = measure_seconds(GROUP, "insert 100,000 rows, no change log", unlogged_s)
    commands = measure_seconds(GROUP, "record 2,000 commands, no change log", commands_s)
    commands_full = measure_seconds(
        GROUP, f"backup full, {commands_count:,} commands", [commands_full_s]
    )
    return [
        base,
        rows,
        full,
        full_rows,
        measure_seconds(GROUP, f"backup incremental, {changes:,} changes", inc_s, full),
        # CPU time of the process (every thread): what the incremental costs when the
        # shared machine's other work is set aside.
        measure_seconds(GROUP, f"backup incremental, {changes:,} changes, CPU time", inc_cpu),
        bare_restore,
        measure_seconds(GROUP, "backup restore (full)", restore_s, bare_restore),
        unlogged,
        measure_seconds(GROUP, "insert 100,000 rows, with the change log", logged_s, unlogged),
        commands,
        measure_seconds(
            GROUP, "record 2,000 commands, with the change log", commands_logged_s, commands
        ),
        commands_full,
        measure_seconds(
            GROUP,
            f"backup incremental, 10,000 of {commands_count:,} commands changed",
            commands_inc_s,
            commands_full,
        ),
        measure_seconds(
            GROUP,
            f"backup restore, {commands_count:,} commands (full-text index built again)",
            [commands_restore_s],
            commands_full,
        ),
    ]


def main() -> None:
    """``python -m bench.bench_backup [--mb N]``: print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=32.0, help="database size in MB")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each case")
    parser.add_argument(
        "--commands", type=int, default=200_000, help="commands in the full-text case"
    )
    args = parser.parse_args()
    print_seconds(lambda: run(Config(rounds=5 * args.rounds), args.mb, args.commands))


if __name__ == "__main__":
    main()
