"""The single writer connection, its lock, and transactions with savepoints."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from mangostore.engine.connection import driver_errors, is_driver_error, translate_error
from mangostore.engine.pragmas import Connection
from mangostore.errors import DatabaseClosedError, DatabaseLockedError


class Writer:
    """Owns the one connection that writes; serialises writers across threads.

    SQLite allows one writer at a time. Taking our own lock first means threads of
    this process queue in order instead of spinning on SQLITE_BUSY; ``BEGIN
    IMMEDIATE`` then takes SQLite's write lock up front, so a transaction never fails
    half-way because another process started writing first.
    """

    def __init__(self, conn: Connection, *, busy_timeout_ms: int) -> None:
        self._conn: Connection | None = conn
        self._lock = threading.RLock()
        self._timeout_s = busy_timeout_ms / 1000
        self._depth = 0
        self._owner: int | None = None

    @property
    def connection(self) -> Connection:
        """The writer connection; only valid for the thread holding a transaction."""
        if self._conn is None:
            raise DatabaseClosedError("the database is closed; open it again to use it")
        return self._conn

    def owned_by_current_thread(self) -> bool:
        """Tell whether the calling thread is inside a transaction."""
        return self._owner == threading.get_ident() and self._depth > 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Run the block in a transaction; nested calls become savepoints.

        An exception rolls back the transaction (or just the savepoint) and is
        re-raised; leaving the outermost block normally commits.

        Raises:
            DatabaseLockedError: the lock was not obtained within the busy timeout.
            DatabaseClosedError: the database was closed.
        """
        if not self._lock.acquire(timeout=self._timeout_s):
            raise DatabaseLockedError(
                "another thread held the write lock past the busy timeout; retry later or "
                "raise Settings.busy_timeout_ms"
            )
        try:
            conn = self.connection
            if self._depth == 0:
                yield from self._outer(conn)
            else:
                yield from self._savepoint(conn)
        finally:
            self._lock.release()

    def _outer(self, conn: Connection) -> Iterator[Connection]:
        with driver_errors("starting a write transaction"):
            conn.execute("BEGIN IMMEDIATE")
        self._owner = threading.get_ident()
        self._depth = 1
        try:
            yield conn
        except BaseException:
            self._rollback(conn)
            raise
        else:
            try:
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback(conn)
                if is_driver_error(exc):
                    translate_error(exc, "committing")
                raise
        finally:
            self._depth = 0
            self._owner = None

    def _savepoint(self, conn: Connection) -> Iterator[Connection]:
        name = f"mango_sp_{self._depth}"
        with driver_errors("starting a savepoint"):
            conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield conn
        except BaseException:
            with driver_errors("rolling back a savepoint"):
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        else:
            with driver_errors("releasing a savepoint"):
                conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    @staticmethod
    def _rollback(conn: Connection) -> None:
        # SQLite may already have rolled back (e.g. after SQLITE_FULL); that is fine.
        if conn.in_transaction:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the writer connection, waiting for a running transaction to finish."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
