"""A lane: calls run one at a time, in order, in a thread of its own.

A put reads and cuts the source in the calling thread and hands each chunk to lanes:
one hashes the whole file, one names the chunks (a keyed hash), two seal and write
them. A stream hashes the chunks it opened in one. The work in lanes (SHA-256, zstd,
file writes) releases the GIL, so the lanes use the machine's other cores. At most
``depth`` calls wait in a lane, which bounds the chunks held in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["Lane"]

_T = TypeVar("_T")


class Lane:
    """Runs submitted calls in order in one thread; :meth:`drain` waits for them all.

    Args:
        name: the thread's name prefix.
        depth: calls allowed to wait; :meth:`submit` blocks past it.
    """

    def __init__(self, name: str, depth: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queue: deque[Future[Any]] = deque()
        self._depth = depth

    def __repr__(self) -> str:
        return f"<Lane {len(self._queue)} waiting>"

    def submit(self, call: Callable[..., _T], *args: Any) -> Future[_T]:
        """Queue ``call(*args)`` and return its future; first waits while ``depth``
        calls are queued.

        Raises:
            Exception: what an earlier call raised.
        """
        while self._queue and (len(self._queue) >= self._depth or self._queue[0].done()):
            self._queue.popleft().result()
        future = self._pool.submit(call, *args)
        self._queue.append(future)
        return future

    def drain(self) -> None:
        """Wait for every queued call; raise the first error one of them raised."""
        while self._queue:
            self._queue.popleft().result()

    def close(self) -> None:
        """Drop the calls not yet started, wait for the running one (ignoring errors)
        and stop the thread."""
        for future in self._queue:
            future.cancel()
        self._queue.clear()
        self._pool.shutdown(wait=True)
