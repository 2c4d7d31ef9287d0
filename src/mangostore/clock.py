"""Where mangostore reads the time: an interface, the system clock, and a manual test double."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of the current time in integer epoch milliseconds (the design's unit)."""

    def now_ms(self) -> int:
        """Return the current time in epoch milliseconds."""
        ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        """Return the current time in epoch milliseconds."""
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; for tests of expiry, TTLs and schedules."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """Return the time the clock was set to."""
        with self._lock:
            return self._now

    def set(self, now_ms: int) -> None:
        """Set the time (it may move backwards, as a real clock sometimes does)."""
        with self._lock:
            self._now = now_ms

    def advance(self, ms: int) -> int:
        """Move the clock forward by ``ms`` and return the new time."""
        with self._lock:
            self._now += ms
            return self._now
