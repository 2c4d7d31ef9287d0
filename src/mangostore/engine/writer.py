"""The single writer connection, its lock, and transactions with savepoints."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Protocol, TypeVar

import sqlcipher3

from mangostore.engine.connection import driver_errors, is_driver_error, translate_error
from mangostore.engine.pragmas import Connection
from mangostore.engine.turnstile import Turnstile
from mangostore.errors import DatabaseClosedError, DatabaseError, DatabaseLockedError

T = TypeVar("T")

#: The driver's own execute: savepoints are the writer's bookkeeping, not statements of
#: the application, so the monitor does not time them (nor shows them to the query
#: cache, which learns nothing from them).
_execute = sqlcipher3.Connection.execute


class TransactionHooks(Protocol):
    """Told about every outermost transaction (the query cache's invalidation).

    Called with the write lock held; ``committed`` runs after COMMIT and before the
    transaction's block returns.
    """

    def begun(self, conn: Connection) -> None:
        """After ``BEGIN IMMEDIATE``."""

    def committed(self) -> None:
        """After a successful ``COMMIT``."""

    def rolled_back(self) -> None:
        """After the transaction was rolled back (or failed to begin or commit)."""


class TransactionListener(Protocol):
    """Keeps state for the length of one transaction (the field cipher's key uses).

    Every method is called by the thread holding the transaction, with the write lock
    held; none of them may end the transaction.
    """

    def before_commit(self, conn: Connection) -> None:
        """Last writes of the transaction, run just before ``COMMIT``; raising rolls
        the transaction back."""

    def savepoint_rolled_back(self) -> None:
        """A savepoint was rolled back: writes made inside it are gone."""

    def ended(self, committed: bool) -> None:
        """The outermost transaction committed (``True``) or rolled back (``False``)."""


class Writer:
    """Owns the one connection that writes; serialises writers across threads.

    SQLite allows one writer at a time. Taking our own lock first means threads of
    this process queue in order instead of spinning on SQLITE_BUSY; a
    :class:`~mangostore.engine.turnstile.Turnstile` makes the writers of several
    processes take turns; ``BEGIN IMMEDIATE`` then takes SQLite's write lock up front,
    so a transaction never fails half-way because another process started writing
    first.
    """

    def __init__(
        self, conn: Connection, *, busy_timeout_ms: int, turnstile: Turnstile | None = None
    ) -> None:
        self._conn: Connection | None = conn
        self._turnstile = turnstile
        self._lock = threading.RLock()
        self._timeout_s = busy_timeout_ms / 1000
        self._depth = 0
        self._owner: int | None = None
        #: Told about each outermost transaction; set once, before first use.
        self.hooks: TransactionHooks | None = None
        self._listeners: tuple[TransactionListener, ...] = ()

    @property
    def connection(self) -> Connection:
        """The writer connection; only valid for the thread holding a transaction."""
        if self._conn is None:
            raise DatabaseClosedError("the database is closed; open it again to use it")
        return self._conn

    def owned_by_current_thread(self) -> bool:
        """Tell whether the calling thread is inside a transaction."""
        return self._owner == threading.get_ident() and self._depth > 0

    def add_listener(self, listener: TransactionListener) -> None:
        """Tell ``listener`` about every transaction from now on (see
        :class:`TransactionListener`)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def joined(self) -> Connection | None:
        """Return the connection of the calling thread's transaction, or ``None``.

        For a write that is one statement, atomic on its own, and so needs no
        savepoint of its own: it runs straight on the transaction's connection. The
        transaction must still be open: a statement run after SQLite ended it would
        commit on its own.

        Raises:
            DatabaseClosedError: the database was closed inside the transaction.
            DatabaseError: SQLite ended the transaction inside the block.
        """
        if self._owner != threading.get_ident() or not self._depth:
            return None
        conn = self.connection
        self._check_alive(conn)
        return conn

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """Run the block in a transaction; nested calls become savepoints.

        An exception rolls back the transaction (or just the savepoint) and is
        re-raised; leaving the outermost block normally commits. A driver error raised
        in the block (by any service running its own statements) leaves as a
        mangostore error, after the rollback.

        Raises:
            DatabaseLockedError: the lock was not obtained within the busy timeout.
            DatabaseClosedError: the database was closed (also when it was closed
                inside the block: nothing of the block was committed).
            DatabaseError: SQLite ended the transaction inside the block (after an
                ``ON CONFLICT ROLLBACK``, ``RAISE(ROLLBACK)`` or a full disk); nothing
                of the block was committed.
            ConstraintError: a deferred foreign key was still broken at COMMIT.
        """
        return _Transaction(self)

    @contextlib.contextmanager
    def idle_connection(self) -> Iterator[Connection]:
        """Hold the write lock without opening a transaction, and lend the connection.

        For the backup API, which cannot copy from a connection that is inside a
        write transaction (it reports SQLITE_LOCKED, forever).

        Raises:
            DatabaseLockedError: the lock was not obtained within the busy timeout.
            DatabaseError: the calling thread is inside a transaction.
            DatabaseClosedError: the database was closed.
        """
        self._acquire()
        try:
            if self._depth:
                raise DatabaseError(
                    "this cannot run inside a transaction; call it outside db.transaction()"
                )
            yield self.connection
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """Lend the writer connection for reading.

        Inside the calling thread's transaction, the transaction's connection (its own
        uncommitted writes are seen). Otherwise the thread lock is held while the block
        runs, but no transaction is begun: each statement reads the latest commit and
        takes none of SQLite's write locks, so another process's long write
        transaction does not make this wait.

        Raises:
            DatabaseLockedError: another thread held the lock past the busy timeout.
            DatabaseClosedError: the database was closed.
        """
        if self.owned_by_current_thread():
            yield self.connection
            return
        self._acquire()
        try:
            yield self.connection
        finally:
            self._lock.release()

    def run_if_idle(self, fn: Callable[[Connection], T]) -> T | None:
        """Run ``fn`` on the writer connection if no transaction holds it right now.

        Never waits: returns ``None`` when another thread (or this one) is inside a
        transaction, or the database is closed.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._depth or self._conn is None:
                return None
            return fn(self._conn)
        finally:
            self._lock.release()

    def _acquire(self) -> None:
        if not self._lock.acquire(timeout=self._timeout_s):
            raise DatabaseLockedError(
                f"waited {self._timeout_s * 1000:.0f} ms (the busy timeout) for another "
                "thread of this process to finish its write transaction; retry later or "
                "raise Settings.busy_timeout_ms"
            )

    def _begin(self, conn: Connection) -> None:
        """``BEGIN IMMEDIATE``, naming how long it waited when another process held the lock."""
        started = time.monotonic()
        turnstile = self._turnstile
        if turnstile is not None and not turnstile.enter(self._timeout_s):
            raise DatabaseLockedError(
                f"starting a write transaction waited {self._timeout_s * 1000:.0f} ms (the "
                "busy timeout) behind other processes' writers; nothing was written: retry "
                "later or raise Settings.busy_timeout_ms"
            )
        try:
            with driver_errors("starting a write transaction"):
                conn.execute("BEGIN IMMEDIATE")
        except DatabaseLockedError as exc:
            waited_ms = (time.monotonic() - started) * 1000
            raise DatabaseLockedError(
                f"starting a write transaction waited {waited_ms:.0f} ms (busy timeout "
                f"{self._timeout_s * 1000:.0f} ms) for another process's write "
                "transaction; nothing was written: retry later or raise "
                "Settings.busy_timeout_ms"
            ) from (exc.__cause__ or exc)
        finally:
            if turnstile is not None:
                turnstile.leave()

    def _open_outer(self, conn: Connection) -> None:
        self._begin(conn)
        self._owner = threading.get_ident()
        self._depth = 1
        hooks = self.hooks
        if hooks is not None:
            try:
                hooks.begun(conn)
            except BaseException:
                self._close_outer(conn, failed=True)
                raise

    def _close_outer(self, conn: Connection, *, failed: bool) -> None:
        """Commit (or roll back, when the block ``failed``) and tell hooks and listeners."""
        hooks = self.hooks
        try:
            if failed:
                self._abandon(conn)
                return
            try:
                self._commit(conn)
            except BaseException:
                # SQLite keeps the transaction open after a failed COMMIT (deferred
                # foreign keys, SQLITE_BUSY), and it must not leak into the next one.
                self._abandon(conn)
                raise
            # Once COMMIT succeeded, nothing may report a rollback.
            for listener in self._listeners:
                listener.ended(True)
            if hooks is not None:
                hooks.committed()
        finally:
            self._depth = 0
            self._owner = None

    def _abandon(self, conn: Connection) -> None:
        self._rollback(conn)
        for listener in self._listeners:
            listener.ended(False)
        if self.hooks is not None:
            self.hooks.rolled_back()

    def _commit(self, conn: Connection) -> None:
        # Checked first: the listeners' last writes must not run, and commit on their
        # own, after SQLite ended the transaction.
        self._check_alive(conn)
        for listener in self._listeners:
            listener.before_commit(conn)
        with driver_errors("committing"):
            conn.execute("COMMIT")

    def _open_savepoint(self, conn: Connection) -> str:
        # A SAVEPOINT outside a transaction would start a new one, whose writes
        # would then commit at RELEASE, on their own: refuse instead.
        self._check_alive(conn)
        name = f"mango_sp_{self._depth}"
        with driver_errors("starting a savepoint"):
            _execute(conn, f"SAVEPOINT {name}")
        self._depth += 1
        return name

    def _close_savepoint(self, conn: Connection, name: str, *, failed: bool) -> None:
        """Release the savepoint, or roll back to it when the block ``failed``."""
        try:
            if failed:
                self._rollback_to(conn, name)
                return
            try:
                with driver_errors("releasing a savepoint"):
                    _execute(conn, f"RELEASE {name}")
            except BaseException:
                self._rollback_to(conn, name)
                raise
        finally:
            self._depth -= 1

    def _check_alive(self, conn: Connection) -> None:
        """Refuse to go on with a transaction that is no longer open."""
        if self._conn is None:
            raise DatabaseClosedError(
                "the database was closed inside a transaction; nothing of it was committed"
            )
        if not conn.in_transaction:
            raise DatabaseError(
                "the transaction was rolled back by SQLite inside the block (ON CONFLICT "
                "ROLLBACK, RAISE(ROLLBACK), a full disk) or ended by a COMMIT or ROLLBACK "
                "statement; nothing more is written in it: retry the whole block"
            )

    def _rollback_to(self, conn: Connection, name: str) -> None:
        """Undo a savepoint; if that fails, undo the whole transaction.

        The caller re-raises the block's own exception. Were the savepoint left in
        place, the outer block could commit the failed part.
        """
        for listener in self._listeners:
            listener.savepoint_rolled_back()
        if self._conn is None or not conn.in_transaction:
            return  # already gone: the outer block reports it
        try:
            _execute(conn, f"ROLLBACK TO {name}")
            _execute(conn, f"RELEASE {name}")
        except Exception:
            self._rollback(conn)

    @staticmethod
    def _rollback(conn: Connection) -> None:
        """Roll back if a transaction is open; never raises (the caller has an error to report)."""
        # SQLite may already have rolled back (e.g. after SQLITE_FULL), or the
        # connection may be closed: either way there is nothing left to undo.
        with contextlib.suppress(Exception):
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the writer connection, waiting for a running transaction to finish.

        Closed by the thread inside a transaction, the transaction is lost (SQLite
        rolls it back) and leaving its block raises :class:`DatabaseClosedError`.
        """
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._turnstile is not None:
                self._turnstile.close()


class _Transaction:
    """What :meth:`Writer.transaction` returns: a class rather than a generator, as every
    write goes through it (entering and leaving cost a few attribute lookups).

    Entering takes the writer's lock and begins the transaction (or a savepoint of the
    one the thread holds); leaving commits or releases it, or rolls back when the block
    raised, then gives the lock back. A driver error leaves as a mangostore error.
    """

    __slots__ = ("_conn", "_savepoint", "_writer")

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._savepoint: str | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> Connection:
        writer = self._writer
        writer._acquire()
        try:
            conn = writer.connection
            if writer._depth == 0:
                writer._open_outer(conn)
            else:
                self._savepoint = writer._open_savepoint(conn)
        except BaseException as exc:
            writer._lock.release()
            if is_driver_error(exc):
                translate_error(exc)
            raise
        self._conn = conn
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        writer = self._writer
        failed = exc is not None
        try:
            if self._savepoint is None:
                writer._close_outer(self._conn, failed=failed)
            else:
                writer._close_savepoint(self._conn, self._savepoint, failed=failed)
        except BaseException as raised:
            if is_driver_error(raised):
                translate_error(raised)
            raise
        finally:
            writer._lock.release()
        if exc is not None and is_driver_error(exc):
            translate_error(exc)  # raised from the block: leaves translated, as its cause
