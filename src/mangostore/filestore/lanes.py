"""A lane: calls run one at a time, in order, in a thread of its own.

A put hashes the whole file in one lane and seals and writes chunks in another while
the calling thread reads and chunks the source; a stream hashes what it returned in
one. The work in lanes (SHA-256, zstd, AES-GCM, file writes) releases the GIL, so the
lanes use the machine's other cores. At most ``depth`` calls wait in a lane, which
bounds the chunks held in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["Lane"]


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

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        """Queue ``call(*args)``; first waits while ``depth`` calls are queued.

        Raises:
            Exception: what an earlier call raised.
        """
        while len(self._queue) >= self._depth:
            self._queue.popleft().result()
        self._queue.append(self._pool.submit(call, *args))

    def drain(self) -> None:
        """Wait for every queued call; raise the first error one of them raised."""
        while self._queue:
            self._queue.popleft().result()

    def close(self) -> None:
        """Wait for the queued calls (ignoring their errors) and stop the thread."""
        for future in self._queue:
            future.cancel()
        self._queue.clear()
        self._pool.shutdown(wait=True)
