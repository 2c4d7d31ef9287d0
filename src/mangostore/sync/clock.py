"""The hybrid logical clock of a device, and the switch that turns change capture off.

A timestamp is one 64-bit integer: the top 48 bits are epoch milliseconds, the low
16 bits a counter that orders events within one millisecond. Ties between devices are
broken by the device id, which travels beside the timestamp rather than inside it, so
the integer sorts and indexes as it is.

The clock never goes backwards: each tick is above the last one even when the wall
clock jumps back, and receiving a remote timestamp moves it forward. A remote
timestamp more than :data:`MAX_AHEAD_MS` ahead of the local wall clock is accepted
(the value it carries still merges by it), but the local clock only moves to the wall
clock plus that bound: one device with a clock a day fast must not make every later
edit of every other device look old. The largest such gap seen is kept for
``db.sync.status()``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from mangostore.clock import Clock

__all__ = ["COUNTER_BITS", "MAX_AHEAD_MS", "CaptureState", "HybridClock", "pack", "unpack"]

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
#: How far ahead of the local wall clock a received timestamp may move the local clock.
MAX_AHEAD_MS = 60_000


def pack(ms: int, counter: int = 0) -> int:
    """Join epoch milliseconds and a counter into one timestamp."""
    return (ms << COUNTER_BITS) | (counter & _COUNTER_MASK)


def unpack(hlc: int) -> tuple[int, int]:
    """Split a timestamp into (epoch milliseconds, counter)."""
    return hlc >> COUNTER_BITS, hlc & _COUNTER_MASK


@dataclass(frozen=True, slots=True)
class ClockReading:
    """What the clock knows about itself, for status."""

    #: The last timestamp issued or received (after clamping).
    last: int
    #: The largest amount (ms) by which a received timestamp was ahead of the wall clock.
    max_ahead_ms: int


class HybridClock:
    """A thread-safe hybrid logical clock seeded from the persisted last timestamp."""

    def __init__(self, wall: Clock, last: int = 0) -> None:
        self._wall = wall
        self._last = last
        self._max_ahead_ms = 0
        self._lock = threading.Lock()

    def tick(self) -> int:
        """Return a new timestamp, above every one issued or received before."""
        with self._lock:
            now = pack(self._wall.now_ms())
            self._last = now if now > self._last else self._last + 1
            return self._last

    def receive(self, remote: int) -> None:
        """Move the clock past a timestamp received from another device.

        A timestamp more than :data:`MAX_AHEAD_MS` ahead of the wall clock moves the
        clock only that far, and the gap is remembered for status.
        """
        with self._lock:
            wall_ms = self._wall.now_ms()
            ahead = (remote >> COUNTER_BITS) - wall_ms
            if ahead > MAX_AHEAD_MS:
                self._max_ahead_ms = max(self._max_ahead_ms, ahead)
                remote = pack(wall_ms + MAX_AHEAD_MS)
            if remote > self._last:
                self._last = remote

    def advance_to(self, last: int) -> None:
        """Make sure the next tick is above ``last`` (a timestamp persisted earlier)."""
        with self._lock:
            self._last = max(self._last, last)

    def reading(self) -> ClockReading:
        """The last timestamp and the largest remote gap seen."""
        with self._lock:
            return ClockReading(self._last, self._max_ahead_ms)


class CaptureState:
    """What the capture triggers ask the process: the clock, and whether to record.

    Registered on the writer connection as two SQL functions, ``mango_sync_tick()``
    and ``mango_sync_on()``. Capture is switched off only while the sync engine
    applies remote changes, under the writer lock, so no other write of this process
    can run while it is off: changes that arrive are not echoed back as local ones.
    """

    def __init__(self, wall: Clock) -> None:
        self.clock = HybridClock(wall)
        self._applying = False

    @property
    def applying(self) -> bool:
        """Whether remote changes are being applied (capture is off)."""
        return self._applying

    def set_applying(self, applying: bool) -> None:
        """Switch capture off (``True``) while remote changes are applied, and on again."""
        self._applying = applying

    def register(self, conn: object) -> None:
        """Create the SQL functions the capture triggers call on ``conn``."""
        create = conn.create_function  # type: ignore[attr-defined]
        create("mango_sync_tick", 0, self.clock.tick)
        create("mango_sync_on", 0, self._capture_on)

    def _capture_on(self) -> int:
        return 0 if self._applying else 1
