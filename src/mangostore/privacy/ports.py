"""What the privacy parts use of the database, as protocols.

The parts are typed against these protocols, not against
:class:`mangostore.Database`: the database module imports the privacy service, so
importing it back (even only for type checking) would put every part in an import
cycle with it. :class:`mangostore.Database` conforms; the type checker verifies it
where the database builds its :class:`~mangostore.privacy.PrivacyService`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mangostore.backup.service import BackupService
    from mangostore.clock import Clock
    from mangostore.engine.store import Store
    from mangostore.filestore import FileService
    from mangostore.keys.keyring import Keyring
    from mangostore.repos.users import UserRepository
    from mangostore.security.audit.log import AuditLog

__all__ = [
    "ArchiveDatabase",
    "ErasureDatabase",
    "ExportDatabase",
    "PrivacyDatabase",
    "RetentionDatabase",
    "StoredDatabase",
]


class StoredDatabase(Protocol):
    """A database with its store: transactions, snapshots, the field cipher."""

    @property
    def store(self) -> Store:
        """The connections and what every service needs from them."""
        ...


class ArchiveDatabase(Protocol):
    """What the archive files use: where the database is, and its keyring."""

    @property
    def path(self) -> str:
        """The database file's path (``:memory:`` for an in-memory database)."""
        ...

    @property
    def keyring(self) -> Keyring | None:
        """The keyring; ``None`` for a database opened without a passphrase."""
        ...


class ErasureDatabase(ArchiveDatabase, StoredDatabase, Protocol):
    """What erasure uses: path, keyring, store, the audit log and WAL checkpoints."""

    @property
    def audit(self) -> AuditLog:
        """The audit log, which records the erasure."""
        ...

    def checkpoint(self, *, truncate: bool = False) -> bool:
        """Copy the WAL into the database file; ``True`` when all of it was copied."""
        ...

    @property
    def files(self) -> FileService:
        """The file store, whose chunks of the user go too."""
        ...

    @property
    def backup(self) -> BackupService:
        """Backups, whose key blocks are rewritten without the user's keys."""
        ...


class ExportDatabase(StoredDatabase, Protocol):
    """What export uses: store, clock, schema version, users and the audit log.

    It also reads each table's repository by name (``getattr(db, table)``).
    """

    @property
    def clock(self) -> Clock:
        """Where every timestamp comes from."""
        ...

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        ...

    @property
    def users(self) -> UserRepository:
        """The ``users`` table."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit log, whose events of the user are exported."""
        ...


class RetentionDatabase(ArchiveDatabase, StoredDatabase, Protocol):
    """What retention uses: path, keyring, store, clock and the audit log.

    It also calls ``db.notify.apply_retention`` when the database has it.
    """

    @property
    def clock(self) -> Clock:
        """Where every timestamp comes from."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit log, which anchors the chain past deleted events."""
        ...


class PrivacyDatabase(ErasureDatabase, ExportDatabase, RetentionDatabase, Protocol):
    """What :class:`~mangostore.privacy.PrivacyService` uses: all of the above."""
