"""The sync server's default store: one SQLite file (WAL), from the standard library.

The file holds only what :mod:`~mangostore.sync.server.store` lists, so it needs no
encryption of its own. Each thread has its own connection; writes take SQLite's write
lock at once (``BEGIN IMMEDIATE``), which orders the pushes of every vault, also
between several server processes on one file.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from mangostore.errors import ConfigurationError
from mangostore.sync.server.sql_store import SqlRelayStore, ddl

__all__ = ["SqliteRelayStore"]

_BUSY_TIMEOUT_MS = 30_000


class SqliteRelayStore(SqlRelayStore):
    """A relay store in the SQLite file at ``path`` (made if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigurationError(
                f"the folder of the sync store {self.path} does not exist; create it first"
            )
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self.transaction() as conn:
            for statement in ddl("BLOB", "INTEGER"):
                conn.execute(statement)

    def __repr__(self) -> str:
        return f"<mangostore SqliteRelayStore {self.path}>"

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as exc:
                raise ConfigurationError(
                    f"the sync store {self.path} cannot be opened ({exc}); is it a "
                    "mangostore sync store?"
                ) from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """This thread's connection in a transaction, committed when the block ends;
        a writing one takes the write lock at once (no upgrade deadlock)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
