"""Applies numbered migrations in one transaction, checksummed and recorded.

Migration files are ``migrations/NNNN_name.sql`` with two sections, introduced by
the lines ``-- migrate:up`` and ``-- migrate:down``. A run applies every pending
migration (or every down-migration above the target) in a single transaction, so a
failure anywhere leaves the schema and data exactly as they were.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import sqlcipher3

from mangostore.engine.connection import driver_errors, is_driver_error
from mangostore.engine.pragmas import Connection
from mangostore.engine.writer import Writer
from mangostore.errors import (
    MigrationChecksumError,
    MigrationError,
    SchemaTooNewError,
)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_UP = "-- migrate:up"
_DOWN = "-- migrate:down"

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

    ``executescript`` is not used because the driver commits before running it,
    which would break the single-transaction promise.
    """
    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlcipher3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        raise MigrationError(
            f"incomplete SQL statement at the end of a migration: {current[:80]!r}"
        )
    return statements


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

    def __init__(self, writer: Writer, migrations: Iterable[Migration]) -> None:
        self._writer = writer
        self._migrations = list(migrations)
        self._by_version = {m.version: m for m in self._migrations}

    @property
    def latest(self) -> int:
        """The newest version this code knows."""
        return self._migrations[-1].version if self._migrations else 0

    def applied(self) -> list[AppliedMigration]:
        """Return the recorded migrations, oldest first (empty for a new database)."""
        with self._writer.transaction() as conn:
            if not _has_ledger(conn):
                return []
            rows = conn.execute(
                "SELECT version, name, checksum, applied_at, duration_ms "
                "FROM schema_migrations ORDER BY version"
            ).fetchall()
        return [AppliedMigration(*tuple(row)) for row in rows]

    def current_version(self) -> int:
        """Return the highest applied version, 0 for a new database."""
        applied = self.applied()
        return applied[-1].version if applied else 0

    def verify(self) -> None:
        """Refuse a database that is newer than this code or whose history was edited.

        Raises:
            SchemaTooNewError: a version above :attr:`latest` was applied.
            MigrationChecksumError: an applied migration's file changed since.
        """
        for record in self.applied():
            known = self._by_version.get(record.version)
            if known is None:
                raise SchemaTooNewError(
                    f"the database has schema version {record.version} ({record.name}), newer "
                    f"than this mangostore knows ({self.latest}); upgrade mangostore to open it"
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
        makes its backup copy there). Returns the versions applied or reverted.

        Raises:
            MigrationError: a step failed; the database is as it was before the call.
            SchemaTooNewError, MigrationChecksumError: see :meth:`verify`.
        """
        self.verify()
        target = self.latest if to is None else to
        if target != 0 and target not in self._by_version:
            raise MigrationError(f"there is no migration {target}; versions are 0..{self.latest}")
        current = self.current_version()
        if target == current:
            return []
        if before is not None:
            before(current, target)
        if target > current:
            steps = [m for m in self._migrations if current < m.version <= target]
        else:
            steps = [m for m in reversed(self._migrations) if target < m.version <= current]
        with self._writer.transaction() as conn:
            # Deferred checks let a step drop or rebuild tables that reference each
            # other; the final foreign_key_check below still refuses a broken result.
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute(_CREATE_LEDGER)
            for migration in steps:
                self._run(conn, migration, up=target > current)
            with driver_errors("checking foreign keys after migrating"):
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise MigrationError(
                    f"migrating to {target} would leave {len(broken)} rows with dangling "
                    f"foreign keys (first in table {broken[0][0]}); nothing was changed"
                )
        return [m.version for m in steps]

    @staticmethod
    def _run(conn: Connection, migration: Migration, *, up: bool) -> None:
        started = time.perf_counter()
        label = f"migration {migration.version} ({migration.name}) {'up' if up else 'down'}"
        try:
            for statement in split_statements(migration.up if up else migration.down):
                conn.execute(statement)
        except Exception as exc:
            if is_driver_error(exc) or isinstance(exc, MigrationError):
                raise MigrationError(
                    f"{label} failed: {exc}; the database was left as it was"
                ) from exc
            raise
        if up:
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at, duration_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    migration.version,
                    migration.name,
                    migration.checksum,
                    int(time.time() * 1000),
                    round((time.perf_counter() - started) * 1000),
                ),
            )
        else:
            conn.execute("DELETE FROM schema_migrations WHERE version = ?", (migration.version,))


def _has_ledger(conn: Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    return row is not None
