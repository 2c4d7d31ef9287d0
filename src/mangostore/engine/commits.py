"""Noticing commits to the database, by this process or any other, through SQLite alone.

The query cache and the permission cache must never answer from data that a commit
has since changed, yet their hits must stay cheap. A :class:`CommitWatch` answers
"what is the commit count now?" so that a caller can compare it with the count it
saw last:

- a file database: :class:`DataVersionWatch` asks ``PRAGMA data_version`` of a
  connection of its own that never writes. SQLite changes that value whenever
  *another* connection (this process's writer, or any connection of any other
  process) has committed since the connection last looked; it costs one statement
  (about 2 µs) and SQLite's own locks.
- an in-memory database: only its single writer connection can write, so
  :class:`ChangesWatch` reads that connection's ``total_changes``.

Nothing here opens, maps or locks the database, WAL or ``-shm`` files itself. Doing
so is how a process corrupts SQLite's locking: on POSIX, closing *any* descriptor of
a file drops every lock the process holds on it, and a mapping of ``-shm`` faults
(SIGBUS) when SQLite truncates that file (https://sqlite.org/howtocorrupt.html, 2.2).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from mangostore.engine.pragmas import Connection


@runtime_checkable
class CommitWatch(Protocol):
    """Counts commits: the value moves after every commit (and may move more often)."""

    def version(self) -> int | None:
        """Return the current count, or ``None`` when it cannot be read (closed, or
        SQLite failed): callers then treat the data as possibly changed."""
        ...

    def close(self) -> None:
        """Release what the watch holds; later calls to :meth:`version` return ``None``."""
        ...


class DataVersionWatch:
    """``PRAGMA data_version`` on a dedicated connection that never writes.

    Because the connection never commits, every commit anywhere (this process's
    writer included) moves its value. The connection is opened on first use and
    shared by threads behind a lock; one statement is all each call runs.

    Args:
        connect: opens the connection (keyed, read-only); called once, lazily.
    """

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self._cursor: Any = None
        self._closed = False
        self._lock = threading.Lock()

    def version(self) -> int | None:
        """Return ``PRAGMA data_version`` of the watch's connection, or ``None``."""
        with self._lock:
            if self._closed:
                return None
            try:
                cursor = self._cursor
                if cursor is None:
                    self._conn = self._connect()
                    # One cursor, reused: this runs on every cache hit.
                    cursor = self._cursor = self._conn.cursor()
                cursor.execute("PRAGMA data_version")
                return int(cursor.fetchone()[0])
            except Exception:
                # A failure here is reported by the read that follows, which consults
                # the database itself; the watch only says "cannot tell".
                self._drop()
                return None

    def close(self) -> None:
        """Close the connection; later calls return ``None``."""
        with self._lock:
            self._closed = True
            self._drop()

    def _drop(self) -> None:
        self._cursor = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class ChangesWatch:
    """The writer connection's ``total_changes``, for an in-memory database.

    Correct only when that connection is the only one that can write. Rolled-back
    changes count too, which only costs the caller a re-check.
    """

    def __init__(self, total_changes: Callable[[], int]) -> None:
        self._total_changes = total_changes
        self._closed = False

    def version(self) -> int | None:
        """Return the rows the writer changed so far, or ``None`` once closed."""
        if self._closed:
            return None
        try:
            return self._total_changes()
        except Exception:  # the connection is closed: let the caller find out
            return None

    def close(self) -> None:
        """Stop answering."""
        self._closed = True
