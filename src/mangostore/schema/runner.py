"""Applies numbered migrations in one transaction, checksummed and recorded.

Migration files are ``migrations/NNNN_name.sql`` with two sections, introduced by
the lines ``-- migrate:up`` and ``-- migrate:down``. A run applies every pending
migration (or every down-migration above the target) in a single transaction, so a
failure anywhere leaves the schema and data exactly as they were.

A down section may name triggers made at run time rather than by the migration (on
whatever tables the database has, so no fixed list can drop them) with lines
``-- migrate:drop-triggers PREFIX``: before its statements run, every trigger whose name
begins with ``PREFIX`` is dropped.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import sqlcipher3

from mangostore.clock import Clock, SystemClock
from mangostore.engine.connection import driver_errors, is_driver_error, is_transaction_control
from mangostore.engine.pragmas import Connection
from mangostore.engine.writer import Writer
from mangostore.errors import (
    MigrationChecksumError,
    MigrationError,
    SchemaTooNewError,
)
from mangostore.schema.introspect import drop_triggers, has_table

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_UP = "-- migrate:up"
_DOWN = "-- migrate:down"
_DROP_TRIGGERS = re.compile(r"^-- migrate:drop-triggers ([A-Za-z0-9_]+)$", re.MULTILINE)

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: SQL to go up, SQL to come back down, and the file's checksum."""

    version: int
    name: str
    up: str
    down: str
    checksum: str

    @property
    def trigger_prefixes(self) -> tuple[str, ...]:
        """The prefixes of the run-time triggers its down section drops first."""
        return tuple(_DROP_TRIGGERS.findall(self.down))

    @classmethod
    def parse(cls, file_name: str, text: str) -> Migration:
        """Build a migration from a file's name and contents.

        Raises:
            MigrationError: the name or the section markers are malformed.
        """
        match = _FILE_NAME.match(file_name)
        if match is None:
            raise MigrationError(f"migration file name {file_name!r} is not NNNN_name.sql")
        if text.count(_UP) != 1 or text.count(_DOWN) != 1 or text.index(_UP) > text.index(_DOWN):
            raise MigrationError(
                f"{file_name} must contain one '{_UP}' line followed by one '{_DOWN}' line"
            )
        # The same file checked out with CRLF line endings must keep its checksum.
        text = text.replace("\r\n", "\n")
        up, down = text.split(_UP, 1)[1].split(_DOWN, 1)
        return cls(
            version=int(match.group(1)),
            name=match.group(2),
            up=up,
            down=down,
            checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        )


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (trigger bodies stay whole).

    Semicolons inside strings, quoted names and comments do not end a statement,
    nor do those inside ``CREATE TRIGGER ... BEGIN ... END``; several statements
    may share a line. ``executescript`` is not used because the driver commits
    before running it, which would break the single-transaction promise.

    Raises:
        MigrationError: the script ends in the middle of a statement.
    """
    return list(_split(sql))


# Every new database applies the same scripts: they are split once per process.
@functools.lru_cache(maxsize=128)
def _split(sql: str) -> tuple[str, ...]:
    statements: list[str] = []
    start = 0
    for end in _semicolons(sql):
        chunk = sql[start : end + 1]
        # complete_statement knows that a trigger body's semicolons end nothing.
        if sqlcipher3.complete_statement(chunk):
            if _has_code(chunk):
                statements.append(chunk.strip())
            start = end + 1
    rest = sql[start:]
    if _has_code(rest):
        raise MigrationError(f"incomplete SQL statement at the end of a migration: {rest[:80]!r}")
    return tuple(statements)


_CLOSING_QUOTE = {"'": "'", '"': '"', "`": "`", "[": "]"}


def _scan(sql: str) -> Iterator[tuple[int, bool]]:
    """Yield ``(index, is_semicolon)`` for the code of ``sql``: comments are skipped,
    and a string or quoted name is yielded once, at its opening quote."""
    i, n = 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif sql[i] in _CLOSING_QUOTE:
            yield i, False
            i = _after_quoted(sql, i)
        else:
            yield i, sql[i] == ";"
            i += 1


def _after_quoted(sql: str, i: int) -> int:
    """Return the index just past the string or quoted name that opens at ``i``."""
    closer = _CLOSING_QUOTE[sql[i]]
    j = i + 1
    while True:
        k = sql.find(closer, j)
        if k < 0:
            return len(sql)
        if closer != "]" and sql.startswith(closer * 2, k):
            j = k + 2  # a doubled quote stands for itself
            continue
        return k + 1


def _semicolons(sql: str) -> list[int]:
    return [i for i, semicolon in _scan(sql) if semicolon]


def _has_code(sql: str) -> bool:
    """Tell whether ``sql`` holds anything but whitespace, comments and semicolons."""
    return any(not semicolon and not sql[i].isspace() for i, semicolon in _scan(sql))


def load_migrations(directory: Traversable | Path | None = None) -> list[Migration]:
    """Read every migration in ``directory`` (default: the package's own), sorted by version.

    Raises:
        MigrationError: two files share a version, or a file is malformed.
    """
    folder = directory if directory is not None else resources.files(__package__) / "migrations"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        migration = Migration.parse(entry.name, entry.read_text(encoding="utf-8"))
        if migration.version in found:
            raise MigrationError(f"two migrations have version {migration.version}")
        found[migration.version] = migration
    return [found[v] for v in sorted(found)]


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: int
    duration_ms: int


class MigrationRunner:
    """Brings a database to a target schema version through the writer."""

    def __init__(
        self, writer: Writer, migrations: Iterable[Migration], clock: Clock | None = None
    ) -> None:
        self._writer = writer
        self._clock: Clock = clock or SystemClock()
        self._migrations = sorted(migrations, key=lambda m: m.version)
        self._by_version = {m.version: m for m in self._migrations}

    @property
    def latest(self) -> int:
        """The newest version this code knows."""
        return self._migrations[-1].version if self._migrations else 0

    def applied(self) -> list[AppliedMigration]:
        """Return the recorded migrations, oldest first (empty for a new database).

        A read, not a write transaction: opening a database while another process
        holds a long write transaction must not wait for it.
        """
        with self._writer.read_connection() as conn:
            return _read_ledger(conn)

    def current_version(self) -> int:
        """Return the highest applied version, 0 for a new database."""
        return _version_of(self.applied())

    def verify(self) -> None:
        """Refuse a database that is newer than this code or whose history was edited.

        Raises:
            SchemaTooNewError: a version above :attr:`latest` was applied.
            MigrationChecksumError: an applied migration's file changed since.
            MigrationError: the recorded history does not match this code's
                migrations (one is unknown, or one below the current version is missing).
        """
        self._check_history(self.applied())

    def _check_history(self, applied: list[AppliedMigration]) -> None:
        for record in applied:
            self._check_record(record)
        recorded = {record.version for record in applied}
        current = _version_of(applied)
        for migration in self._migrations:
            if migration.version < current and migration.version not in recorded:
                raise MigrationError(
                    f"migration {migration.version} ({migration.name}) was never applied, "
                    f"yet the database is at version {current}; migrations must only be "
                    "added after the newest one"
                )

    def _check_record(self, record: AppliedMigration) -> None:
        known = self._by_version.get(record.version)
        if known is None and record.version > self.latest:
            raise SchemaTooNewError(
                f"the database has schema version {record.version} ({record.name}), newer "
                f"than this mangostore knows ({self.latest}); upgrade mangostore to open it"
            )
        if known is None:
            raise MigrationError(
                f"the database records migration {record.version} ({record.name}), which "
                "this mangostore does not have; it was made by another build of mangostore"
            )
        if known.checksum != record.checksum:
            raise MigrationChecksumError(
                f"migration {record.version} ({record.name}) was changed after it was "
                "applied to this database; restore the original migration file"
            )

    def migrate(
        self,
        to: int | None = None,
        *,
        before: Callable[[int, int], None] | None = None,
    ) -> list[int]:
        """Move the schema to version ``to`` (default: latest), up or down.

        ``before(current, target)`` runs first when there is work to do (the caller
        makes its backup copy there, outside any transaction). The history is then
        read again under the write lock, so a process that migrated in between is
        seen, not repeated. Returns the versions applied or reverted.

        Raises:
            MigrationError: a step failed; the database is as it was before the call.
            SchemaTooNewError, MigrationChecksumError: see :meth:`verify`.
        """
        self.verify()
        target = self._target(to)
        current = self.current_version()
        if target == current:
            return []
        if before is not None:
            before(current, target)
        with self._writer.transaction() as conn:
            applied = _read_ledger(conn)
            self._check_history(applied)
            current = _version_of(applied)
            steps = self._steps(current, target)
            with driver_errors("preparing to migrate"):
                # Deferred checks let a step drop or rebuild tables that reference
                # each other; the foreign_key_check below still refuses a broken result.
                conn.execute("PRAGMA defer_foreign_keys = ON")
                conn.execute(_CREATE_LEDGER)
            for migration in steps:
                self._run(conn, migration, up=target > current)
            _check_foreign_keys(conn, target)
        return [m.version for m in steps]

    def _target(self, to: int | None) -> int:
        target = self.latest if to is None else to
        if target != 0 and target not in self._by_version:
            raise MigrationError(f"there is no migration {target}; versions are 0..{self.latest}")
        return target

    def _steps(self, current: int, target: int) -> list[Migration]:
        """The migrations to apply (ascending) or revert (descending) from current to target."""
        if target >= current:
            return [m for m in self._migrations if current < m.version <= target]
        return [m for m in reversed(self._migrations) if target < m.version <= current]

    def _run(self, conn: Connection, migration: Migration, *, up: bool) -> None:
        """Run one migration's statements and update the ledger, naming it in any error."""
        started = time.perf_counter()
        label = f"migration {migration.version} ({migration.name}) {'up' if up else 'down'}"
        try:
            if not up and migration.trigger_prefixes:
                drop_triggers(conn, migration.trigger_prefixes)
            for statement in split_statements(migration.up if up else migration.down):
                if is_transaction_control(statement):
                    raise MigrationError(
                        f"it contains {statement.split()[0]!r}, but migrations run inside "
                        "one transaction that the runner begins and ends"
                    )
                conn.execute(statement)
            _record(conn, migration, up=up, started=started, now=self._clock.now_ms())
        except Exception as exc:
            if is_driver_error(exc) or isinstance(exc, MigrationError):
                raise MigrationError(
                    f"{label} failed: {exc}; the database was left as it was"
                ) from exc
            raise


def _record(conn: Connection, migration: Migration, *, up: bool, started: float, now: int) -> None:
    """Add (up) or remove (down) the migration's row of ``schema_migrations``."""
    if not up:
        conn.execute("DELETE FROM schema_migrations WHERE version = ?", (migration.version,))
        return
    conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at, duration_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            migration.version,
            migration.name,
            migration.checksum,
            now,
            round((time.perf_counter() - started) * 1000),
        ),
    )


def _check_foreign_keys(conn: Connection, target: int) -> None:
    """Refuse a migrated schema whose rows point at rows that no longer exist."""
    with driver_errors("checking foreign keys after migrating"):
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise MigrationError(
            f"migrating to {target} would leave {len(broken)} rows with dangling "
            f"foreign keys (first in table {broken[0][0]}); nothing was changed"
        )


def _read_ledger(conn: Connection) -> list[AppliedMigration]:
    """Return the rows of ``schema_migrations``, oldest first; none for a new database."""
    with driver_errors("reading schema_migrations"):
        if not _has_ledger(conn):
            return []
        rows = conn.execute(
            "SELECT version, name, checksum, applied_at, duration_ms "
            "FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [AppliedMigration(*tuple(row)) for row in rows]


def _version_of(applied: list[AppliedMigration]) -> int:
    return applied[-1].version if applied else 0


def _has_ledger(conn: Connection) -> bool:
    return has_table(conn, "schema_migrations")
