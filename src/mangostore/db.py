"""The Database facade: lifecycle, transactions, raw SQL, and the service attributes."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mangostore.clock import Clock, SystemClock
from mangostore.engine.commits import ChangesWatch, CommitWatch, DataVersionWatch
from mangostore.engine.connection import (
    Row,
    connect,
    driver_errors,
    is_driver_error,
    is_transaction_control,
    statement_context,
)
from mangostore.engine.pool import PoolStats, ReaderPool
from mangostore.engine.pragmas import Connection, reader_setup, writer_setup
from mangostore.engine.writer import Writer
from mangostore.errors import (
    ConfigurationError,
    DatabaseClosedError,
    NotADatabaseError,
    QueryError,
)
from mangostore.keys.field_cipher import existing_field_cipher
from mangostore.keys.kdf import KdfParams
from mangostore.keys.keyring import Keyring, keyring_path
from mangostore.monitor.instruments import Instruments
from mangostore.notify.service import NotificationService
from mangostore.repos import RepositoryAccess
from mangostore.schema.runner import MigrationRunner, load_migrations
from mangostore.settings import Settings
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.cache import CacheManager
    from mangostore.kg.conversations import ConversationService
    from mangostore.kg.graph import KnowledgeGraph
    from mangostore.kg.memory import MemoryService
    from mangostore.monitor import Monitor, PerformanceReport
    from mangostore.privacy import PrivacyService
    from mangostore.security.audit import AuditLog
    from mangostore.security.auth import AuthService
    from mangostore.security.permissions import PermissionService
    from mangostore.security.sessions import SessionService

Params = Sequence[Any] | dict[str, Any]
MEMORY = ":memory:"


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A table and how many rows it holds (-1 when SQLite cannot count them, e.g. a
    virtual table whose module is not loaded)."""

    name: str
    rows: int


@dataclass(frozen=True, slots=True)
class Status:
    """What ``mangostore status`` shows: never a key."""

    path: str
    schema_version: int
    latest_version: int
    file_bytes: int
    wal_bytes: int
    page_encryption: bool
    field_encryption: bool
    keyring: dict[str, Any] | None
    tables: list[TableInfo]
    pool: PoolStats | None


class Database(RepositoryAccess):
    """An open mangostore database. Create it with :func:`mangostore.open`.

    Thread-safe: reads run on pooled reader connections in parallel; writes queue for
    the single writer connection.
    """

    def __init__(
        self,
        path: str,
        *,
        keyring: Keyring | None,
        writer: Writer,
        pool: ReaderPool | None,
        runner: MigrationRunner,
        settings: Settings,
        recovery_key: str | None,
        clock: Clock,
        commits: CommitWatch,
        instruments: Instruments | None = None,
    ) -> None:
        self._path = path
        #: Where every timestamp this database writes comes from.
        self.clock = clock
        self._keyring = keyring
        self._writer = writer
        self._pool = pool
        self._commits = commits
        self._runner = runner
        self.settings = settings
        self._recovery_key = recovery_key
        self._closed = False
        self._close_lock = threading.Lock()
        self._schema_version = runner.current_version()
        self._instruments = instruments or Instruments(path, settings, clock, keyring)
        self._instruments.opened()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"schema v{self._schema_version}"
        return f"<mangostore.Database {self._path!r} {state}>"

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file (``":memory:"`` for an in-memory database)."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        return self._schema_version

    @property
    def page_encryption(self) -> bool:
        """Whether pages, WAL and indexes are encrypted by SQLCipher."""
        return self._keyring is not None and self._keyring.page_encryption

    @property
    def commits(self) -> CommitWatch:
        """Counts commits to the file by any connection of any process.

        Its :meth:`~mangostore.engine.commits.CommitWatch.version` moves after every
        commit (this process's included): a service that caches what it read compares
        it with the value it saw last before trusting its cache.
        """
        return self._commits

    @property
    def keyring(self) -> Keyring | None:
        """The unlocked keyring, or ``None`` for a database opened without a passphrase."""
        return self._keyring

    def take_recovery_key(self) -> str | None:
        """Return the recovery key made when this database was created, once.

        The key is kept nowhere else: show it to the person and let them store it.
        Returns ``None`` on every later call and for databases that were opened, not made.
        """
        key, self._recovery_key = self._recovery_key, None
        return key

    def close(self) -> None:
        """Close every connection; further use raises :class:`DatabaseClosedError`."""
        with self._close_lock:
            if self._closed:
                return
            try:
                # Services that hold state settle it while the database can still
                # write: the knowledge graph's buffered access counts, the permission
                # cache's commit watch. Only services already in use are touched.
                for name in ("kg", "access"):
                    service = self.__dict__.get(name)
                    if service is not None:
                        service.close()
            finally:
                self._closed = True
                # Unwrapped data keys leave memory with the database.
                cipher = existing_field_cipher(self)
                if cipher is not None:
                    cipher.forget_cached_keys()
        self._instruments.close()
        if self._pool is not None:
            self._pool.close()
        self._commits.close()
        self._writer.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError("the database is closed; open it again to use it")

    # -- transactions and raw SQL ----------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """Run the block in one transaction; nested blocks are savepoints.

        Everything written in the block is committed when it ends normally and rolled
        back if it raises. Reads inside the block see its own writes.

        Raises:
            DatabaseLockedError: another writer held the lock past the busy timeout.
        """
        self._check_open()
        with self._writer.transaction():
            yield self

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        if self._writer.owned_by_current_thread() or self._pool is None:
            # Inside a transaction a read must see its own uncommitted writes; an
            # in-memory database has no second connection that could see it at all.
            with self._writer.read_connection() as conn, driver_errors():
                yield conn
        else:
            with self._pool.reader() as conn, driver_errors():
                yield conn

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
        self._check_open()
        _refuse_transaction_control(sql)
        return self._instruments.rows(self._reading, sql, params, use_cache)

    def _rows(
        self, sql: str, params: Params, use_cache: bool | None, context: str = ""
    ) -> list[Row]:
        """Run a read for a repository, through the query cache unless told not to."""
        return self._instruments.rows(self._reading, sql, params, use_cache, context)

    @property
    def cache(self) -> CacheManager:
        """The memory, disk and query cache tiers. See docs/caching.md."""
        return self._instruments.cache

    @property
    def monitor(self) -> Monitor | None:
        """Statement statistics (``None`` when ``Settings.monitor_queries`` is off)."""
        return self._instruments.monitor

    def performance_report(self) -> PerformanceReport:
        """Measure the database: statements, caches, disk, indexes, recommendations.

        Statement statistics are those of this process since the database was
        opened. See docs/caching.md ("Monitoring").
        """
        self._check_open()
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
        self._check_open()
        with self._writer.idle_connection() as conn, driver_errors("vacuuming"):
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
        self._check_open()
        if self._path == MEMORY:
            return True
        mode = "TRUNCATE" if truncate else "PASSIVE"
        with self._writer.idle_connection() as conn, driver_errors("checkpointing the WAL"):
            busy, wal_frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return not busy and wal_frames == copied

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one writing statement in the current transaction (or its own) and return rowcount.

        Raises:
            ConstraintError: a subclass naming the constraint that refused the write.
            QueryError: SQLite rejected the statement, or it begins or ends a
                transaction (use :meth:`transaction`).
        """
        self._check_open()
        _refuse_transaction_control(sql)
        with self._writer.transaction() as conn, driver_errors(statement_context(sql)):
            return int(conn.execute(sql, params).rowcount)

    # -- schema ---------------------------------------------------------------------------

    def migrate(self, to: int | None = None) -> list[int]:
        """Move the schema to version ``to`` (default: the latest), making a backup first.

        Returns the versions applied (or reverted, when going down).

        Raises:
            MigrationError: a step failed and everything was rolled back.
        """
        self._check_open()
        page_key = _page_key(self._keyring)
        hook = _pre_migration_backup(self._writer, self._path, page_key, self.settings)
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
        self._check_open()
        if self._keyring is None:
            raise ConfigurationError("this database was opened without a passphrase")
        self._keyring.change_passphrase(old, new, kdf)

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

    # -- inspection -----------------------------------------------------------------------

    def status(self) -> Status:
        """Describe the database: versions, sizes, encryption, row counts. Never a key.

        The row counts come from one read transaction, so they agree with each other.
        """
        self._check_open()
        with self._snapshot() as conn:
            tables = [TableInfo(name, _count_rows(conn, name)) for name in _table_names(conn)]
        file_bytes = wal_bytes = 0
        if self._path != MEMORY:
            file_bytes = _size(self._path)
            wal_bytes = _size(self._path + "-wal")
        return Status(
            path=self._path,
            schema_version=self._schema_version,
            latest_version=self._runner.latest,
            file_bytes=file_bytes,
            wal_bytes=wal_bytes,
            page_encryption=self.page_encryption,
            field_encryption=self._keyring is not None,
            keyring=self._keyring.describe() if self._keyring is not None else None,
            tables=tables,
            pool=self._pool.stats() if self._pool is not None else None,
        )

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """Lend a connection inside one read transaction, so several reads agree."""
        with self._reading() as conn:
            if conn.in_transaction:  # the writer, inside a transaction already
                yield conn
                return
            with driver_errors("starting a read"):
                conn.execute("BEGIN")
            try:
                yield conn
            finally:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")


def _refuse_transaction_control(sql: str) -> None:
    """Keep BEGIN, COMMIT and friends away from the connections the engine manages."""
    if is_transaction_control(sql):
        raise QueryError(
            "BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE are not run through query() or "
            "execute(): use 'with db.transaction():', which nests as savepoints"
        )


def _table_names(conn: Connection) -> list[str]:
    """Real and virtual tables of the main schema, without SQLite's and FTS shadow tables."""
    with driver_errors("listing tables"):
        rows = conn.execute(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' "
            "AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name"
        ).fetchall()
    return [str(row[0]) for row in rows]


def _count_rows(conn: Connection, table: str) -> int:
    """Count a table's rows; -1 when SQLite cannot (a virtual table's module is missing)."""
    try:
        return int(conn.execute(f"SELECT count(*) FROM {quote_identifier(table)}").fetchone()[0])
    except Exception as exc:
        if is_driver_error(exc):
            return -1
        raise


def _page_key(keyring: Keyring | None) -> bytes | None:
    """The SQLCipher page key, or ``None`` when pages are not encrypted."""
    return keyring.subkey("page") if keyring is not None and keyring.page_encryption else None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def backup_copy(writer: Writer, dest: str, page_key: bytes | None) -> None:
    """Copy the database, consistently, to ``dest`` with the SQLite backup API.

    The copy is encrypted with the same page key, so it opens with the same keyring.
    It is readable by its owner only from the start. The writer lock is held, but no
    transaction: the backup API cannot copy from a connection in a write transaction.

    Raises:
        DatabaseError: the copy failed (a partial new file is removed).
        DatabaseLockedError: the write lock was not obtained within the busy timeout.
    """
    created = _create_private_file(dest)
    try:
        target = connect(dest, page_key, [])
        try:
            with writer.idle_connection() as conn, driver_errors(f"copying the database to {dest}"):
                conn.backup(target)
        finally:
            target.close()
    except BaseException:
        if created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
        raise


def _create_private_file(path: str) -> bool:
    """Make ``path`` mode 0600 (creating it empty if missing); return whether it was created."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        os.chmod(path, 0o600)
        return False
    return True


def _unused_path(base: str) -> str:
    """Return ``base``, or ``base`` with a counter before ``.bak`` if it is taken."""
    candidate, counter = base, 1
    while os.path.exists(candidate):
        counter += 1
        candidate = base.removesuffix(".bak") + f"-{counter}.bak"
    return candidate


def _pre_migration_backup(
    writer: Writer, path: str, page_key: bytes | None, settings: Settings
) -> Callable[[int, int], None] | None:
    """Return the hook that copies the database before a migration changes it."""
    if path == MEMORY or not settings.backup_before_migrate:
        return None

    def before(current: int, target: int) -> None:
        if current:  # a brand-new database has nothing worth copying
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            dest = _unused_path(f"{path}.pre-v{current}-to-v{target}-{stamp}.bak")
            backup_copy(writer, dest, page_key)

    return before


def open_database(
    path: str | os.PathLike[str],
    passphrase: str | None = None,
    *,
    encrypted: bool = True,
    create: bool = True,
    recovery_key: str | None = None,
    settings: Settings | None = None,
    migrate: bool = True,
    clock: Clock | None = None,
) -> Database:
    """Open (or create) a mangostore database and bring its schema up to date.

    Args:
        path: the database file, or ``":memory:"``.
        passphrase: unlocks the keyring; required unless ``encrypted=False``.
        encrypted: ``False`` asks for plain pages. With a passphrase, sensitive fields
            are still encrypted; without one, nothing is.
        create: make the database (and its keyring) when the file does not exist.
        recovery_key: unlock with the recovery key instead of the passphrase.
        settings: tunables; see :class:`mangostore.Settings`.
        migrate: apply pending migrations (a backup copy is made first).
        clock: where timestamps come from (default: the system clock); tests pass a
            :class:`mangostore.clock.ManualClock`.

    Raises:
        ConfigurationError: no passphrase for an encrypted database, or bad settings.
        WrongPassphraseError, KeyringMissingError, KeyringCorruptError: key problems.
        NotADatabaseError: the file is not a mangostore database.
        SchemaTooNewError, MigrationChecksumError, MigrationError: schema problems.
    """
    settings = settings or Settings()
    path_str = os.fspath(path)
    memory = path_str == MEMORY
    unlocking = passphrase is not None or recovery_key is not None
    if encrypted and not unlocking:
        raise ConfigurationError(
            "a passphrase is needed to open an encrypted database; pass passphrase=..., "
            "or encrypted=False to ask for an unencrypted one"
        )
    exists = not memory and os.path.exists(path_str) and os.path.getsize(path_str) > 0
    if not memory and not exists and not create:
        raise NotADatabaseError(f"there is no database at {path_str}; pass create=True to make one")
    created_files: list[Path] = []
    keyring: Keyring | None = None
    recovery_text: str | None = None
    if unlocking:
        ring_path = None if memory else keyring_path(path_str)
        if ring_path is not None and exists:
            keyring = Keyring.unlock(ring_path, passphrase=passphrase, recovery_key=recovery_key)
        elif passphrase is None:
            raise ConfigurationError("a recovery key can only unlock an existing database")
        else:
            keyring, recovery_text = Keyring.create(
                ring_path, passphrase, settings.kdf, page_encryption=encrypted
            )
            if ring_path is not None:
                created_files.append(ring_path)
    elif exists and keyring_path(path_str).exists():
        raise NotADatabaseError(
            f"{path_str} has a keyring beside it, so it is encrypted: open it with its passphrase"
        )
    if not memory and not exists:
        created_files += [Path(path_str + suffix) for suffix in ("", "-wal", "-shm")]
    page_key = _page_key(keyring)
    writer_conn: Connection | None = None
    commits: CommitWatch | None = None
    pool: ReaderPool | None = None
    clock = clock or SystemClock()
    instruments = Instruments(path_str, settings, clock, keyring)
    try:
        # A foreign file is refused before the setup switches it to WAL.
        writer_conn = connect(
            path_str,
            page_key,
            writer_setup(settings.busy_timeout_ms),
            check=functools.partial(_check_is_mangostore, path=path_str) if exists else None,
            factory=instruments.factory,
        )
        writer = Writer(writer_conn, busy_timeout_ms=settings.busy_timeout_ms)
        commits = _commit_watch(path_str, page_key, settings, writer)
        instruments.attach_writer(writer, commits)
        if not memory:
            pool = ReaderPool(
                lambda: instruments.reader(
                    connect(
                        path_str,
                        page_key,
                        reader_setup(settings.busy_timeout_ms),
                        factory=instruments.factory,
                    )
                ),
                max_size=settings.pool_max_readers,
                acquire_timeout_s=settings.pool_acquire_timeout_ms / 1000,
                idle_timeout_s=settings.pool_idle_timeout_ms / 1000,
            )
        runner = MigrationRunner(writer, load_migrations(), clock)
        if migrate:
            runner.migrate(before=_pre_migration_backup(writer, path_str, page_key, settings))
        else:
            runner.verify()
        database = Database(
            path_str,
            keyring=keyring,
            writer=writer,
            pool=pool,
            runner=runner,
            settings=settings,
            recovery_key=recovery_text,
            clock=clock,
            commits=commits,
            instruments=instruments,
        )
        if keyring is not None and keyring.erased_users():
            # An older copy (or restored backup) may still hold erased users' rows.
            database.privacy.reapply_erasures()
        return database
    except BaseException:
        instruments.close()
        if pool is not None:
            pool.close()
        if commits is not None:
            commits.close()
        if writer_conn is not None:
            writer_conn.close()
        # A database that failed to come into being leaves nothing behind, least of
        # all a keyring that would block the next attempt.
        for leftover in created_files:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise


def _commit_watch(
    path: str, page_key: bytes | None, settings: Settings, writer: Writer
) -> CommitWatch:
    """The database's commit watch: ``data_version`` of a connection of its own for a
    file, the writer's change count for an in-memory database (nothing else can write)."""
    if path == MEMORY:
        connection = writer.connection
        return ChangesWatch(lambda: int(connection.total_changes))
    return DataVersionWatch(lambda: connect(path, page_key, reader_setup(settings.busy_timeout_ms)))


def _check_is_mangostore(conn: Connection, path: str) -> None:
    """Refuse an SQLite file that has tables but no ``schema_migrations``: not ours."""
    with driver_errors(path):
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "schema_migrations" not in tables:
        raise NotADatabaseError(
            f"{path} is an SQLite database but not a mangostore one (it has no "
            "schema_migrations table); refusing to add tables to it"
        )
