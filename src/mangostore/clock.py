"""Where mangostore reads the time, and what it accepts as a time.

The clock: an interface, the system clock, and a manual test double. The inputs: every
public parameter that takes a moment (``as_of``, ``now``, ``at``, ``expires_at``...)
goes through :func:`epoch_ms`, and every one that takes a length of time (``ttl``,
``keep_ms``...) through :func:`duration_ms`, so all of them accept the same types and
refuse the same mistakes with the same message (see docs/api-conventions.md).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Final, Protocol, TypeAlias, overload, runtime_checkable

from mangostore.errors import InvalidValueError

__all__ = [
    "Clock",
    "Duration",
    "Instant",
    "ManualClock",
    "SystemClock",
    "duration_ms",
    "epoch_ms",
]

#: A moment: epoch milliseconds, or a timezone-aware ``datetime``.
Instant: TypeAlias = int | dt.datetime
#: A length of time: milliseconds, or a ``timedelta``.
Duration: TypeAlias = int | dt.timedelta

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)
#: SQLite stores 64-bit integers: a larger value could not be bound.
_INT64_MAX: Final = 2**63 - 1


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


@overload
def epoch_ms(value: Instant, field: str) -> int: ...
@overload
def epoch_ms(value: Instant | None, field: str) -> int | None: ...
def epoch_ms(value: Instant | None, field: str) -> int | None:
    """Return a moment as integer epoch milliseconds (``None`` stays ``None``).

    An ``int`` is taken as epoch milliseconds already; a timezone-aware ``datetime``
    is converted exactly (microseconds rounded down to the millisecond).

    Args:
        value: the moment given to a public parameter.
        field: that parameter's name, reported as the error's ``field``.

    Raises:
        InvalidValueError: ``value`` is a naive ``datetime`` (it could be local time or
            UTC, and a wrong guess would shift the moment by hours without a sound), or
            of another type (``bool``, ``float``, ``str``, ``date``), or an integer that
            does not fit in 64 bits.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.utcoffset() is None:
            raise InvalidValueError(
                f"{field} is a naive datetime (no time zone), which could mean local time or "
                "UTC: give an aware one, e.g. datetime.now(datetime.UTC) or "
                "value.replace(tzinfo=datetime.UTC), or epoch milliseconds",
                field=field,
            )
        return (value - _EPOCH) // _MS
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > _INT64_MAX:
            raise InvalidValueError(f"{field} is out of range: {value}", field=field)
        return value
    raise InvalidValueError(
        f"{field} must be a time: epoch milliseconds (an int) or a timezone-aware datetime; "
        f"got {_kind(value)}",
        field=field,
    )


@overload
def duration_ms(value: Duration, field: str, *, minimum: int = 0) -> int: ...
@overload
def duration_ms(value: Duration | None, field: str, *, minimum: int = 0) -> int | None: ...
def duration_ms(value: Duration | None, field: str, *, minimum: int = 0) -> int | None:
    """Return a length of time in integer milliseconds (``None`` stays ``None``).

    An ``int`` is taken as milliseconds; a ``timedelta`` is converted exactly
    (microseconds rounded down to the millisecond).

    Args:
        value: the duration given to a public parameter.
        field: that parameter's name, reported as the error's ``field``.
        minimum: the shortest duration accepted, in milliseconds (``1``: positive).

    Raises:
        InvalidValueError: ``value`` is of another type (``bool``, ``float``, ``str``),
            shorter than ``minimum``, or does not fit in 64 bits.
    """
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        ms = value // _MS
    elif isinstance(value, int) and not isinstance(value, bool):
        ms = value
    else:
        raise InvalidValueError(
            f"{field} must be a duration: milliseconds (an int) or a timedelta; got {_kind(value)}",
            field=field,
        )
    if ms < minimum:
        least = {0: "not be negative", 1: "be positive"}.get(minimum, f"be at least {minimum} ms")
        raise InvalidValueError(f"{field} must {least}; got {ms} ms", field=field)
    if ms > _INT64_MAX:
        raise InvalidValueError(f"{field} is out of range: {ms} ms", field=field)
    return ms


def _kind(value: Any) -> str:
    """Name what was given without quoting it (it may be long, or a secret)."""
    return f"a {type(value).__name__}"
