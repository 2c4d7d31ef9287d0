"""The Database facade: lifecycle, transactions, raw SQL, and the service attributes."""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from mangostore.engine.commits import CommitWatch
from mangostore.engine.connection import (
    Row,
    driver_errors,
    is_transaction_control,
    statement_context,
)
from mangostore.engine.fulltext import runs_integrity_check
from mangostore.engine.store import MEMORY, Params, Store
from mangostore.engine.writer import Writer
from mangostore.errors import (
    ConfigurationError,
    DatabaseError,
    QueryError,
    RecoveryKeyWarning,
)
from mangostore.inspection import Status, TableInfo, read_status
from mangostore.keys.kdf import KdfParams
from mangostore.keys.keyring import Keyring
from mangostore.notify.service import NotificationService
from mangostore.repos import RepositoryAccess
from mangostore.schema.copies import pre_migration_hook
from mangostore.schema.runner import MigrationRunner
from mangostore.settings import Settings

if TYPE_CHECKING:
    from mangostore.backup.service import BackupService
    from mangostore.cache import CacheManager
    from mangostore.clock import Instant
    from mangostore.filestore import FileService
    from mangostore.kg.conversations import ConversationService
    from mangostore.kg.graph import KnowledgeGraph
    from mangostore.kg.memory import MemoryService
    from mangostore.maintenance import MaintenanceReport
    from mangostore.monitor import Monitor, PerformanceReport
    from mangostore.privacy import PrivacyService, RetentionPolicy
    from mangostore.security.audit import AuditLog
    from mangostore.security.auth import AuthService
    from mangostore.security.permissions import PermissionService
    from mangostore.security.sessions import SessionService
    from mangostore.sync.service import SyncService

__all__ = ["MEMORY", "Database", "Params", "Status", "TableInfo"]


class Database(RepositoryAccess):
    """An open mangostore database, made by :func:`mangostore.create` or opened by
    :func:`mangostore.open`.

    Thread-safe: reads run on pooled reader connections in parallel; writes queue for
    the single writer connection.
    """

    def __init__(self, store: Store, *, runner: MigrationRunner, recovery_key: str | None) -> None:
        #: The connections and what every service needs from them (the seam services
        #: use; see docs/architecture.md).
        self.store = store
        #: Where every timestamp this database writes comes from.
        self.clock = store.clock
        self.settings = store.settings
        self._runner = runner
        self._recovery_key = recovery_key
        self._schema_version = runner.current_version()
        store.instruments.opened()

    def __repr__(self) -> str:
        state = "closed" if self.store.closed else f"schema v{self._schema_version}"
        return f"<mangostore.Database {self.store.path!r} {state}>"

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file (``":memory:"`` for an in-memory database)."""
        return self.store.path

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        return self._schema_version

    @property
    def page_encryption(self) -> bool:
        """Whether pages, WAL and indexes are encrypted by SQLCipher."""
        keyring = self.store.keyring
        return keyring is not None and keyring.page_encryption

    @property
    def commits(self) -> CommitWatch:
        """Counts commits to the file by any connection of any process.

        Its :meth:`~mangostore.engine.commits.CommitWatch.version` moves after every
        commit (this process's included): a service that caches what it read compares
        it with the value it saw last before trusting its cache.
        """
        return self.store.commits

    @property
    def keyring(self) -> Keyring | None:
        """The unlocked keyring, or ``None`` for a database opened without a passphrase."""
        return self.store.keyring

    def take_recovery_key(self) -> str | None:
        """Return the recovery key made when this database was created, once.

        The key is kept nowhere else: show it to the person and let them store it,
        apart from the passphrase. Returns ``None`` on every later call and for
        databases that were opened, not made. :func:`mangostore.create` takes it
        already and returns it.

        A file database made by ``mangostore.open(..., create=True)`` and closed
        before its key was taken (or discarded) warns with
        :class:`~mangostore.errors.RecoveryKeyWarning`.
        """
        key, self._recovery_key = self._recovery_key, None
        return key

    def discard_recovery_key(self) -> None:
        """Forget the recovery key made with this database, without looking at it.

        For a database that is meant to do without one (a cache, a test, a copy that
        can be made again): closing it no longer warns. Without the recovery key, a
        lost passphrase means the data is lost.
        """
        self._recovery_key = None

    def close(self) -> None:
        """Close every connection; further use raises :class:`DatabaseClosedError`.

        Warns with :class:`~mangostore.errors.RecoveryKeyWarning` when this file
        database was made here with a recovery key that was never taken (see
        :meth:`take_recovery_key`); the key is then gone.
        """
        self._close(stacklevel=3)

    def _close(self, *, stacklevel: int) -> None:
        if self.store.closed:
            return
        try:
            # Services that hold state settle it while the database can still write:
            # the knowledge graph's buffered access counts, the permission cache. Only
            # services already in use are touched.
            for name in ("sync", "kg", "access", "files"):
                service = self.__dict__.get(name)
                if service is not None:
                    service.close()
        finally:
            self.store.close()
            # Warned after closing, so that a warning turned into an error still
            # leaves the database closed. An in-memory database ends with its
            # process, and its key with it: nothing to lose.
            lost = self._recovery_key is not None and self.store.path != MEMORY
            self._recovery_key = None
            if lost:
                warnings.warn(_lost_key_message(self.store.path), RecoveryKeyWarning, stacklevel)

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(stacklevel=3)

    # -- transactions and raw SQL ----------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """Run the block in one transaction; nested blocks are savepoints.

        Everything written in the block is committed when it ends normally and rolled
        back if it raises. Reads inside the block see its own writes.

        Raises:
            DatabaseLockedError: another writer held the lock past the busy timeout.
        """
        with self.store.transaction():
            yield self

    def query(self, sql: str, params: Params = (), *, use_cache: bool | None = None) -> list[Row]:
        """Run a read-only statement and return its rows.

        Values must be passed as ``params`` (``?`` or ``:name`` placeholders), never
        formatted into ``sql``. Rows allow ``row["column"]`` and ``row[0]``.

        The result comes from the query cache when it holds it and is stored there
        otherwise; ``use_cache=False`` reads the database and leaves the cache alone
        (default: ``Settings.cache_queries``). A cached result is never stale: any
        commit that writes a table the statement reads drops it first. See
        docs/caching.md.

        Raises:
            QueryError: SQLite rejected the statement (or it tried to write, or to
                begin or end a transaction: use :meth:`transaction`).
        """
        store = self.store
        store.check_open()
        _refuse_transaction_control(sql)
        reading = store.checking if runs_integrity_check(sql) else store.reading
        return store.instruments.rows(reading, sql, params, use_cache)

    @property
    def cache(self) -> CacheManager:
        """The memory, disk and query cache tiers. See docs/caching.md."""
        return self.store.instruments.cache

    @property
    def monitor(self) -> Monitor | None:
        """Statement statistics (``None`` when ``Settings.monitor_queries`` is off)."""
        return self.store.instruments.monitor

    def performance_report(self) -> PerformanceReport:
        """Measure the database: statements, caches, disk, indexes, recommendations.

        Statement statistics are those of this process since the database was
        opened. See docs/caching.md ("Monitoring").
        """
        self.store.check_open()
        from mangostore.monitor.report import build_report

        return build_report(self)

    def vacuum(self) -> None:
        """Rebuild the file to return free pages to the file system (``VACUUM``).

        This is what the performance report's VACUUM recommendation asks for. It
        needs the writer to itself and cannot run inside :meth:`transaction`; cached
        query results are dropped, since a rebuild may renumber rowids.

        Raises:
            DatabaseError: called inside a transaction.
            DatabaseLockedError: another writer held the lock past the busy timeout.
        """
        with self.store.idle_connection() as conn, driver_errors("vacuuming"):
            conn.execute("VACUUM")
        self.cache.clear()

    def checkpoint(self, *, truncate: bool = False) -> bool:
        """Copy the WAL's committed pages into the database file (``PRAGMA wal_checkpoint``).

        SQLite checkpoints by itself as the WAL grows; call this to do it now, e.g.
        before copying the file. ``truncate=True`` also empties the WAL file, waiting
        (up to the busy timeout) for other processes' writers. Safe while other
        processes read and write: SQLite takes its own locks.

        Returns:
            ``True`` when the whole WAL was copied (and truncated, if asked);
            ``False`` when a reader, in this process or another, still used an older
            snapshot: try again once it has finished.

        Raises:
            DatabaseError: called inside a transaction.
            DatabaseLockedError: another writer held the lock past the busy timeout.
        """
        self.store.check_open()
        if self.store.path == MEMORY:
            return True
        mode = "TRUNCATE" if truncate else "PASSIVE"
        with self.store.idle_connection() as conn, driver_errors("checkpointing the WAL"):
            busy, wal_frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return not busy and wal_frames == copied

    def maintenance(
        self,
        now: Instant | None = None,
        *,
        policies: Sequence[RetentionPolicy] | None = None,
        archive_dir_path: str | os.PathLike[str] | None = None,
    ) -> MaintenanceReport:
        """Run every periodic job once (deliveries due, expiry sweeps, retention, stale
        sessions and login counts, read counts, a WAL checkpoint): schedule this call.

        ``now`` is epoch ms or an aware datetime (default: the clock); ``policies`` and
        ``archive_dir_path`` are as for ``db.privacy.apply_retention``. A failed job does
        not stop the others: its error is in the report's ``failures``. The jobs and why
        each is there: :mod:`mangostore.maintenance`.

        Raises:
            InvalidValueError: ``now`` is not a time.
            DatabaseError: called inside a transaction.
        """
        from mangostore.maintenance import run_maintenance

        return run_maintenance(self, now, policies=policies, archive_dir_path=archive_dir_path)

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one writing statement in the current transaction (or its own) and return rowcount.

        Raises:
            ConstraintError: a subclass naming the constraint that refused the write.
            QueryError: SQLite rejected the statement, or it begins or ends a
                transaction (use :meth:`transaction`).
        """
        _refuse_transaction_control(sql)
        with self.store.transaction() as conn, driver_errors(statement_context(sql)):
            return int(conn.execute(sql, params).rowcount)

    # -- schema ---------------------------------------------------------------------------

    def migrate(self, to: int | None = None) -> list[int]:
        """Move the schema to version ``to`` (default: the latest), making a backup first.

        Returns the versions applied (or reverted, when going down).

        Raises:
            MigrationError: a step failed and everything was rolled back.
        """
        store = self.store
        store.check_open()
        page_key = page_key_of(store.keyring)
        hook = pre_migration_backup(store.writer, store.path, page_key, self.settings)
        done = self._runner.migrate(to, before=hook)
        self._schema_version = self._runner.current_version()
        return done

    # -- keys -----------------------------------------------------------------------------

    def change_passphrase(self, old: str, new: str, *, kdf: KdfParams | None = None) -> None:
        """Rewrap the master key under a new passphrase; no data is re-encrypted.

        ``kdf`` sets new Argon2id parameters; by default the keyring keeps its current
        ones (which may be stronger than ``Settings.kdf``).

        Raises:
            WrongPassphraseError: ``old`` is wrong (nothing changes).
            ConfigurationError: the database has no keyring, ``new`` is empty, or
                ``kdf`` is outside the safe range.
        """
        self.store.check_open()
        keyring = self.store.keyring
        if keyring is None:
            raise ConfigurationError("this database was opened without a passphrase")
        keyring.change_passphrase(old, new, kdf)

    @functools.cached_property
    def notify(self) -> NotificationService:
        """Notifications: types, preferences, sending, delivery, lifecycle.

        See docs/notifications.md.
        """
        return NotificationService(self)

    @functools.cached_property
    def memory(self) -> MemoryService:
        """AI memory: remember, recall, history, forget, expiry sweep.

        See docs/memory.md.
        """
        from mangostore.kg.memory import MemoryService

        return MemoryService(self)

    @functools.cached_property
    def conversations(self) -> ConversationService:
        """AI conversations: create, append encrypted messages, read, archive, expire.

        See docs/memory.md.
        """
        from mangostore.kg.conversations import ConversationService

        return ConversationService(self)

    @functools.cached_property
    def privacy(self) -> PrivacyService:
        """Privacy: retention policies, export of a user's data, erasure of a user.

        See docs/privacy.md.
        """
        from mangostore.privacy import PrivacyService

        return PrivacyService(self)

    @functools.cached_property
    def audit(self) -> AuditLog:
        """The tamper-evident audit log over ``security_events``: append, resolve,
        verify, checkpoint.

        See docs/security.md.
        """
        from mangostore.security.audit import AuditLog

        return AuditLog(self)

    @functools.cached_property
    def auth(self) -> AuthService:
        """Passwords, login and logout, lock-out and step-up.

        See docs/authentication.md.
        """
        from mangostore.security.auth import AuthService

        return AuthService(self)

    @functools.cached_property
    def sessions(self) -> SessionService:
        """Login sessions: issue, validate, touch, revoke, step up (rows of
        ``db.user_sessions``).

        See docs/authentication.md.
        """
        from mangostore.security.sessions import SessionService

        return SessionService(self)

    @functools.cached_property
    def access(self) -> PermissionService:
        """Access control: grant, deny, revoke, check, require (rows of ``db.permissions``).

        See docs/authentication.md.
        """
        from mangostore.security.permissions import PermissionService

        return PermissionService(self)

    @functools.cached_property
    def kg(self) -> KnowledgeGraph:
        """The knowledge graph: entities, relations, observations, traversal, hybrid search.

        See docs/knowledge-graph.md. Call ``db.kg.close()`` before closing the database
        to write buffered access counts.
        """
        from mangostore.kg.graph import KnowledgeGraph

        return KnowledgeGraph(self)

    @functools.cached_property
    def sync(self) -> SyncService:
        """Multi-device sync: enable, sync, status, conflicts, background schedule.

        See docs/sync.md.
        """
        from mangostore.sync.service import SyncService

        return SyncService(self)

    @functools.cached_property
    def backup(self) -> BackupService:
        """Encrypted, verified backups: create, list, verify, restore, prune (docs/backup.md)."""
        from mangostore.backup.service import BackupService

        return BackupService(self.store, self.files)

    @functools.cached_property
    def files(self) -> FileService:
        """Encrypted file storage beside the database: put, open, list, delete, check
        (docs/files.md)."""
        from mangostore.filestore import FileService

        return FileService(self.store)

    # -- inspection -----------------------------------------------------------------------

    def status(self, *, check: bool = False) -> Status:
        """Describe the database: versions, sizes, encryption, row counts. Never a key.

        The row counts come from one read transaction, so they agree with each other.
        ``check=True`` also runs :meth:`check_integrity` (``quick``), which reads every
        page: its findings are ``Status.problems``.
        """
        self.store.check_open()
        return read_status(
            self.store,
            schema_version=self._schema_version,
            latest_version=self._runner.latest,
            page_encryption=self.page_encryption,
            problems=self.check_integrity() if check else None,
        )

    def check_integrity(self, *, quick: bool = True) -> list[str]:
        """Read every page and report damage; an empty list means none was found.

        ``quick`` runs ``PRAGMA quick_check`` (every page, every record, the full-text
        indexes), otherwise ``PRAGMA integrity_check``, which also compares every index
        with its table and takes longer. A page that cannot be read at all (zeroed,
        or failing SQLCipher's authentication) is reported, not raised.

        Returns:
            SQLite's descriptions of the problems found (at most 100).
        """
        self.store.check_open()
        pragma = "quick_check" if quick else "integrity_check"
        try:
            with self.store.checking() as conn:
                rows = conn.execute(f"PRAGMA {pragma}(100)").fetchall()
        except DatabaseError as exc:
            return [f"the file cannot be read: {exc}"]
        found = [str(row[0]) for row in rows]
        return [] if found == ["ok"] else found


def _lost_key_message(path: str) -> str:
    """What :class:`RecoveryKeyWarning` says: never the key itself."""
    return (
        f"the database {path} was created with a recovery key that was never taken, and "
        "mangostore keeps no copy of it: it is now lost, and a lost passphrase would mean "
        "lost data. Create databases with mangostore.create(...), which returns the key, "
        "or call db.take_recovery_key() before closing and store the key apart from the "
        "passphrase; call db.discard_recovery_key() for a database meant to do without one"
    )


def _refuse_transaction_control(sql: str) -> None:
    """Keep BEGIN, COMMIT and friends away from the connections the engine manages."""
    if is_transaction_control(sql):
        raise QueryError(
            "BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE are not run through query() or "
            "execute(): use 'with db.transaction():', which nests as savepoints"
        )


def page_key_of(keyring: Keyring | None) -> bytes | None:
    """The SQLCipher page key, or ``None`` when pages are not encrypted."""
    return keyring.subkey("page") if keyring is not None and keyring.page_encryption else None


def pre_migration_backup(
    writer: Writer, path: str, page_key: bytes | None, settings: Settings
) -> Callable[[int, int], None] | None:
    """Return the hook that copies the database before a migration changes it."""
    if path == MEMORY or not settings.backup_before_migrate:
        return None
    return pre_migration_hook(writer, path, page_key, settings.migration_copies_kept)
