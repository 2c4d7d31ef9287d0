"""The Store: the connections of one database, and the one seam every service uses.

A service needs a handful of things from the database it serves: a write
transaction that hands it the connection (joining the caller's transaction, as a
savepoint, when there is one), reads that see the caller's uncommitted writes when it
is inside a transaction, a snapshot in which several reads agree, the query cache, an
"is it still open?" check, the clock, the settings, the keyring and the field cipher.
:class:`Store` owns all of them and offers exactly that, publicly;
:class:`StoreProtocol` is the same surface for test doubles. Services receive the
store (as ``db.store``) and never reach into the :class:`~mangostore.Database`
facade's private parts.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from mangostore.clock import Clock
from mangostore.engine.commits import CommitWatch
from mangostore.engine.connection import Row, driver_errors
from mangostore.engine.fulltext import refresh_fulltext
from mangostore.engine.pool import PoolStats, ReaderPool
from mangostore.engine.pragmas import Connection
from mangostore.engine.writer import Writer
from mangostore.errors import DatabaseClosedError, DatabaseError
from mangostore.keys.field_cipher import FieldCipher
from mangostore.keys.keyring import Keyring
from mangostore.monitor.instruments import Instruments
from mangostore.settings import Settings
from mangostore.sync.clock import CaptureState

__all__ = ["MEMORY", "Params", "Store", "StoreProtocol"]

MEMORY = ":memory:"
Params = Sequence[Any] | dict[str, Any]

T = TypeVar("T")


@runtime_checkable
class StoreProtocol(Protocol):
    """What services use of a :class:`Store`; implement it for a test double."""

    path: str
    settings: Settings
    clock: Clock
    keyring: Keyring | None

    def check_open(self) -> None:
        """Raise :class:`DatabaseClosedError` once the database is closed."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction yielding its connection; nested ones are savepoints."""
        ...

    def in_transaction(self) -> bool:
        """Whether the calling thread is inside a write transaction."""
        ...

    def reading(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection to read on (the transaction's own, inside one)."""
        ...

    def snapshot(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection inside one read transaction, so several reads agree."""
        ...

    def snapshot_after(
        self, write: Callable[[Connection], T]
    ) -> contextlib.AbstractContextManager[tuple[Connection, T]]:
        """A read transaction that starts exactly as ``write``'s transaction commits."""
        ...

    def rows(
        self, sql: str, params: Params, use_cache: bool | None = None, context: str = ""
    ) -> list[Row]:
        """The rows of a read, through the query cache unless told not to."""
        ...


class Store:
    """The writer, the reader pool, the commit watch, the caches and the keys of one
    database. Made by :func:`mangostore.open`; reached as ``db.store``.

    Thread-safe: reads run on pooled reader connections in parallel; writes queue for
    the single writer connection.
    """

    def __init__(
        self,
        path: str,
        *,
        writer: Writer,
        pool: ReaderPool | None,
        commits: CommitWatch,
        long_reader: Callable[[], Connection] | None = None,
        instruments: Instruments,
        settings: Settings,
        clock: Clock,
        keyring: Keyring | None,
        capture: CaptureState | None = None,
    ) -> None:
        #: The database file (``":memory:"`` for an in-memory database).
        self.path = path
        #: The single writer connection and its lock (for the engine's own use:
        #: backups, migrations; services use :meth:`transaction`).
        self.writer = writer
        #: The reader connections (``None`` for an in-memory database).
        self.pool = pool
        self._long_reader = long_reader
        #: Counts commits by any connection of any process.
        self.commits = commits
        #: The caches and the statement monitor.
        self.instruments = instruments
        self.settings = settings
        #: Where every timestamp this database writes comes from.
        self.clock = clock
        #: The unlocked keyring, or ``None`` for a database opened without a passphrase.
        self.keyring = keyring
        #: The sync clock and the switch of change capture (registered on the writer).
        self.capture = capture if capture is not None else CaptureState(clock)
        #: Makes a new database of this one's vault (``create_database`` with
        #: ``vault_of``); set by the opening code, which sits above the services.
        self.make_device: Callable[..., Any] | None = None
        self._closed = False
        self._close_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<mangostore Store {self.path!r}{' closed' if self._closed else ''}>"

    # -- state ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def check_open(self) -> None:
        """Raise if the database was closed.

        Raises:
            DatabaseClosedError: it was.
        """
        if self._closed:
            raise DatabaseClosedError("the database is closed; open it again to use it")

    @functools.cached_property
    def field_cipher(self) -> FieldCipher | None:
        """Encrypts and decrypts sensitive fields; ``None`` without a keyring (sensitive
        columns are then stored as plaintext)."""
        if self.keyring is None:
            return None
        return FieldCipher(self.keyring, self.writer, self.clock)

    def pool_stats(self) -> PoolStats | None:
        """How many reader connections are open, idle and in use (``None`` in memory)."""
        return self.pool.stats() if self.pool is not None else None

    # -- transactions and reads -----------------------------------------------------------

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """Run the block in a write transaction and lend its connection.

        Inside the calling thread's transaction the block becomes a savepoint of it.
        An exception rolls the block back and is re-raised.

        Raises:
            DatabaseClosedError: the database is closed.
            DatabaseLockedError: another writer held the lock past the busy timeout.
        """
        self.check_open()
        return self.writer.transaction()

    def in_transaction(self) -> bool:
        """Whether the calling thread is inside :meth:`transaction`."""
        return self.writer.owned_by_current_thread()

    def joined_transaction(self) -> Connection | None:
        """Return the connection of the calling thread's transaction, or ``None``.

        For a write that is one statement: a statement is atomic on its own, so inside
        a transaction it needs no savepoint, and this skips the one :meth:`transaction`
        would make. Several statements that must succeed or fail together still go
        through :meth:`transaction`.

        Raises:
            DatabaseClosedError: the database is closed.
            DatabaseError: SQLite ended the transaction inside the block (see
                :meth:`~mangostore.engine.writer.Writer.transaction`).
        """
        self.check_open()
        return self.writer.joined()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """Lend a connection to read on.

        Inside a transaction, the transaction's own connection (a read must see its own
        uncommitted writes); in memory, the writer (no other connection could see the
        data); otherwise a pooled reader. Driver errors leave as mangostore errors.
        """
        if self.pool is None or self.writer.owned_by_current_thread():
            with self.writer.read_connection() as conn, driver_errors():
                yield conn
        else:
            with self.pool.reader() as conn, driver_errors():
                yield conn

    @contextlib.contextmanager
    def checking(self) -> Iterator[Connection]:
        """Lend a reading connection ready for ``PRAGMA integrity_check``.

        FTS5's integrity check trusts the connection's cached index structure, which
        may predate another connection's commit: it is refreshed first, in the same
        read transaction as the check (:mod:`mangostore.engine.fulltext`).
        """
        # One read transaction for the refresh and the check: a commit by another
        # process between the two would leave the refreshed structure behind the
        # pages the check reads, and the check would report damage that is not there.
        with self.snapshot() as conn:
            refresh_fulltext(conn)
            yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Lend a connection inside one read transaction, so several reads agree."""
        with self.reading() as conn:
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

    @contextlib.contextmanager
    def snapshot_after(self, write: Callable[[Connection], T]) -> Iterator[tuple[Connection, T]]:
        """Run ``write`` in a write transaction, and lend a connection inside a read
        transaction that sees everything committed before it and nothing after: the
        read starts while the write lock is still held (so no other commit comes
        between) and before ``write``'s own changes commit. Yields the connection and
        what ``write`` returned. The connection is made for this read and closed after
        it (not a pooled one: see :meth:`_reader_for_long_read`).

        In memory there is no second connection: the block then runs inside the write
        transaction, and other writers wait for it.

        Raises:
            DatabaseError: the calling thread is inside a transaction already.
            DatabaseLockedError: another writer held the lock past the busy timeout.
        """
        self.check_open()
        if self.writer.owned_by_current_thread():
            raise DatabaseError("snapshot_after cannot run inside a transaction")
        if self.pool is None:
            with self.transaction() as conn:
                yield conn, write(conn)
            return
        with self._reader_for_long_read() as conn, driver_errors():
            with self.transaction() as writer:
                value = write(writer)
                conn.execute("BEGIN")
                # The read transaction takes its snapshot at its first read.
                conn.execute("PRAGMA user_version").fetchone()
            try:
                yield conn, value
            finally:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def _reader_for_long_read(self) -> Iterator[Connection]:
        """A connection of its own, closed after the block, that keeps no prepared
        statement. The prepared statements a pooled connection keeps hold SQLite's
        per-connection small-allocation memory (lookaside), so a scan of every row
        on one runs about 40% slower (a backup measured 3.1 s against 2.0 s over
        256 MB); a new connection costs a few milliseconds."""
        if self._long_reader is None:
            assert self.pool is not None
            with self.pool.reader() as conn:
                yield conn
            return
        conn = self._long_reader()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def idle_connection(self) -> Iterator[Connection]:
        """Hold the writer with no transaction open (VACUUM, checkpoints, the backup API).

        Raises:
            DatabaseError: the calling thread is inside a transaction.
            DatabaseLockedError: another writer held the lock past the busy timeout.
        """
        self.check_open()
        with self.writer.idle_connection() as conn:
            yield conn

    def rows(
        self, sql: str, params: Params, use_cache: bool | None = None, context: str = ""
    ) -> list[Row]:
        """Return the rows of a read, through the query cache unless told not to.

        ``use_cache`` ``None`` follows ``Settings.cache_queries``; ``context`` names
        the reader in errors and statistics (a table, a service).
        """
        return self.instruments.rows(self.reading, sql, params, use_cache, context)

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection and drop unwrapped keys; later use raises
        :class:`DatabaseClosedError`. Calling it again does nothing."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        cipher = self.__dict__.get("field_cipher")
        if cipher is not None:
            cipher.forget_cached_keys()  # unwrapped data keys leave memory with the database
        self.instruments.close()
        if self.pool is not None:
            self.pool.close()
        self.commits.close()
        self.writer.close()
