"""A bounded pool of read-only connections, with an acquire timeout and idle expiry."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mangostore.engine.pragmas import Connection
from mangostore.errors import DatabaseClosedError, PoolTimeoutError


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool: connections open, idle, in use, and callers waiting."""

    open: int
    idle: int
    in_use: int
    waiting: int
    max_size: int


class ReaderPool:
    """Hands out reader connections; at most ``max_size`` are open at once.

    Connections are made lazily, reused most-recently-used first (warm page cache),
    and closed once idle for ``idle_timeout_s``: the pool looks for them on every
    acquire and release, and :meth:`sweep` closes them on demand. ``clock`` returns
    seconds; tests pass a fake one.
    """

    def __init__(
        self,
        factory: Callable[[], Connection],
        *,
        max_size: int,
        acquire_timeout_s: float,
        idle_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._max = max_size
        self._acquire_timeout_s = acquire_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._idle: list[tuple[Connection, float]] = []
        self._open = 0
        self._waiting = 0
        self._closed = False
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        """Lend a reader connection for the duration of the block.

        Raises:
            PoolTimeoutError: none became free within the acquire timeout.
            DatabaseClosedError: the pool was closed.
        """
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def _acquire(self) -> Connection:
        deadline = self._clock() + self._acquire_timeout_s
        with self._cond:
            while True:
                if self._closed:
                    raise DatabaseClosedError("the database is closed; open it again to use it")
                self._close_expired()
                if self._idle:
                    return self._idle.pop()[0]
                if self._open < self._max:
                    self._open += 1
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise PoolTimeoutError(
                        f"all {self._max} reader connections stayed busy for "
                        f"{self._acquire_timeout_s:g} s; raise Settings.pool_max_readers or "
                        "pool_acquire_timeout_ms, or shorten long reads"
                    )
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
        try:
            return self._factory()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _release(self, conn: Connection) -> None:
        healthy = _end_transaction(conn)
        with self._cond:
            if self._closed or not healthy:
                self._open -= 1
                _close_quietly(conn)
            else:
                self._idle.append((conn, self._clock()))
                self._close_expired()
            self._cond.notify()

    def _close_expired(self) -> None:
        """Close idle connections unused for the idle timeout; the caller holds the lock."""
        now = self._clock()
        keep = []
        for conn, last_used in self._idle:
            if now - last_used >= self._idle_timeout_s:
                _close_quietly(conn)
                self._open -= 1
            else:
                keep.append((conn, last_used))
        self._idle = keep

    def sweep(self) -> None:
        """Close connections idle past the timeout now, instead of at the next acquire."""
        with self._cond:
            self._close_expired()

    def stats(self) -> PoolStats:
        """Return how many connections are open, idle and in use."""
        with self._cond:
            idle = len(self._idle)
            return PoolStats(self._open, idle, self._open - idle, self._waiting, self._max)

    def close(self) -> None:
        """Close idle connections now and the lent ones as they come back."""
        with self._cond:
            self._closed = True
            for conn, _ in self._idle:
                _close_quietly(conn)
                self._open -= 1
            self._idle = []
            self._cond.notify_all()


def _end_transaction(conn: Connection) -> bool:
    """Roll back a transaction a caller left open (``BEGIN`` through ``query``).

    A reader kept inside a transaction would pin an old snapshot for every later
    caller. Returns ``False`` when the connection is unusable and must be closed.
    """
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except Exception:
        return False
    return True


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()
