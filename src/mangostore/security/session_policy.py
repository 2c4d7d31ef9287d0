"""Session security levels and lifetimes (:class:`SessionPolicy`).

A session ends when it has been idle for its level's idle timeout, or at its absolute
expiry, whichever comes first. See docs/authentication.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from mangostore.errors import ConfigurationError, InvalidValueError
from mangostore.security.conditions import SECURITY_LEVELS

__all__ = [
    "ABSOLUTE_TIMEOUT",
    "DAY_MS",
    "EXPIRY_REASONS",
    "HOUR_MS",
    "IDLE_TIMEOUT",
    "LEVEL_RANK",
    "MINUTE_MS",
    "Lifetime",
    "SecurityLevel",
    "SessionPolicy",
    "check_level",
    "check_reason",
]

SecurityLevel = Literal["low", "standard", "high"]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS

#: ``revoked_reason`` of a session that ended by timing out (it was not revoked).
IDLE_TIMEOUT: Final = "idle_timeout"
ABSOLUTE_TIMEOUT: Final = "absolute_timeout"
EXPIRY_REASONS: Final = frozenset({IDLE_TIMEOUT, ABSOLUTE_TIMEOUT})
_MAX_REASON_CHARS: Final = 200

#: Security levels in increasing order of strength: ``low`` 0, ``standard`` 1, ``high`` 2.
LEVEL_RANK: Final = {level: rank for rank, level in enumerate(SECURITY_LEVELS)}


@dataclass(frozen=True, slots=True)
class Lifetime:
    """How long a session of one security level may live, in milliseconds."""

    #: The session ends once this long has passed since its last recorded activity.
    idle_ms: int
    #: The session ends this long after it was issued, however active.
    absolute_ms: int


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Session lifetimes per security level, and how often activity is written.

    Defaults: ``low`` 24 h idle / 30 days absolute, ``standard`` 30 min / 12 h,
    ``high`` 5 min / 1 h.
    """

    low: Lifetime = Lifetime(idle_ms=24 * HOUR_MS, absolute_ms=30 * DAY_MS)
    standard: Lifetime = Lifetime(idle_ms=30 * MINUTE_MS, absolute_ms=12 * HOUR_MS)
    high: Lifetime = Lifetime(idle_ms=5 * MINUTE_MS, absolute_ms=HOUR_MS)
    #: ``last_activity`` is written at most this often per session (a write per
    #: request would make every validation a write transaction); the idle timeout
    #: counts from the last *written* activity, so a session may end up to this much
    #: earlier than its last use plus the idle timeout.
    activity_write_interval_ms: int = MINUTE_MS
    #: How far the clock may be behind a session's creation before the session is
    #: refused (clocks are corrected backwards; beyond this, something is wrong).
    max_clock_skew_ms: int = 5 * MINUTE_MS
    #: Repeats of the same noisy audit event (unknown tokens, replays of one revoked
    #: session) within this interval are counted, not written one by one.
    audit_repeat_interval_ms: int = MINUTE_MS

    def __post_init__(self) -> None:
        for level in SECURITY_LEVELS:
            life = getattr(self, level)
            if not isinstance(life, Lifetime) or not 0 < life.idle_ms <= life.absolute_ms:
                raise ConfigurationError(
                    f"SessionPolicy.{level} needs 0 < idle_ms <= absolute_ms (milliseconds)"
                )
        shortest = min(getattr(self, level).idle_ms for level in SECURITY_LEVELS)
        if not 0 <= self.activity_write_interval_ms < shortest:
            raise ConfigurationError(
                "SessionPolicy.activity_write_interval_ms must be below the shortest idle timeout"
            )
        for name in ("max_clock_skew_ms", "audit_repeat_interval_ms"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"SessionPolicy.{name} must not be negative")

    def lifetime(self, level: str) -> Lifetime:
        """Return the lifetime of ``level`` (``low``, ``standard`` or ``high``).

        Raises:
            InvalidValueError: ``level`` is not a security level.
        """
        life: Lifetime = getattr(self, check_level(level))
        return life


def check_level(level: Any) -> str:
    """Return ``level`` if it is a security level.

    Raises:
        InvalidValueError: it is not ``low``, ``standard`` or ``high``.
    """
    if level not in LEVEL_RANK:
        raise InvalidValueError(
            f"security_level must be one of {', '.join(SECURITY_LEVELS)}; got {level!r}",
            field="security_level",
        )
    return str(level)


def check_reason(reason: Any) -> str:
    """Return ``reason`` if it may be stored as a revoked session's ``revoked_reason``.

    Raises:
        InvalidValueError: it is empty, longer than 200 characters, or one of the
            reasons reserved for sessions that timed out.
    """
    if not isinstance(reason, str) or not 0 < len(reason) <= _MAX_REASON_CHARS:
        raise InvalidValueError(
            f"reason must be a string of 1 to {_MAX_REASON_CHARS} characters", field="reason"
        )
    if reason in EXPIRY_REASONS:
        raise InvalidValueError(
            f"{reason!r} is reserved for sessions that timed out", field="reason"
        )
    return reason
