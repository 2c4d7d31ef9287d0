"""Writers of several processes take turns at the database's write lock.

SQLite's busy handler does not queue: a writer that finds the lock taken sleeps (1 ms,
then 2, 5, ... up to 100 ms at a time) and tries again, while the process holding the
lock can commit and take it again within microseconds. Two processes that write in a
loop then split the writes unevenly, and one of them can wait out its whole busy
timeout and fail although the database is never held for long.

A :class:`Turnstile` is a file of its own beside the database (``<database>.turnstile``;
never SQLite's database, WAL or ``-shm`` files) on which a writer takes an ``flock``
before ``BEGIN IMMEDIATE`` and releases it as soon as the write lock is held. While one
process writes, the next one waits at the turnstile and then first in line for the
write lock, so the writer that just committed queues behind it instead of taking the
lock again. Python has no timed ``flock``: the turnstile is polled, at most 2 ms apart,
which is finer than SQLite's own retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Final

#: The longest sleep between two attempts to pass the turnstile (seconds).
_MAX_POLL_S: Final = 0.002


def turnstile_path(database_path: str) -> str:
    """Return where the turnstile of the database at ``database_path`` lives."""
    return database_path + ".turnstile"


class Turnstile:
    """An ``flock`` on a file of its own that writers pass one at a time.

    Args:
        path: the turnstile file (made, mode 0600, when missing).

    Raises:
        OSError: the file cannot be opened or made (the caller goes without).
    """

    def __init__(self, path: str) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def enter(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` to pass; return whether it was passed."""
        fd = self._fd
        if fd is None:
            return True  # closed: nothing to take turns at
        deadline = time.monotonic() + timeout_s
        pause = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
            time.sleep(pause)
            pause = min(pause * 2, _MAX_POLL_S)

    def leave(self) -> None:
        """Let the next writer through."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (which also lets any waiter through)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
