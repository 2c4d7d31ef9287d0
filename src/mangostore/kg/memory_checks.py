"""What a memory may hold, and the checks ``db.memory`` runs on its arguments.

Every check raises :class:`~mangostore.errors.InvalidValueError` naming the argument,
before anything is read or written, so a bad call leaves no partial work behind.
"""

from __future__ import annotations

import math
from typing import Any

from mangostore.clock import Duration, duration_ms
from mangostore.errors import InvalidValueError

__all__ = [
    "KEY_MAX_CHARS",
    "MEMORY_TYPES",
    "SOURCES",
    "check_choice",
    "check_confidence",
    "check_key",
    "is_int",
    "is_number",
    "sql_limit",
    "ttl_ms",
]

#: The kinds of memory the schema allows.
MEMORY_TYPES: tuple[str, ...] = ("fact", "preference", "skill", "context")
#: Where a memory may come from.
SOURCES: tuple[str, ...] = ("user_input", "inference", "observation")
#: Longest key accepted, in characters.
KEY_MAX_CHARS = 512


def is_int(value: Any) -> bool:
    """Tell whether ``value`` is an integer (``bool`` is not one here, though Python says so)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Tell whether ``value`` is a finite ``int`` or ``float`` (not a ``bool``)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_key(key: Any) -> None:
    """Refuse a key that is not a non-empty string of at most :data:`KEY_MAX_CHARS` characters.

    Raises:
        InvalidValueError: with ``field="key"``.
    """
    if not isinstance(key, str) or not key.strip():
        raise InvalidValueError("key must be a non-empty string", field="key")
    if len(key) > KEY_MAX_CHARS:
        raise InvalidValueError(f"key must be at most {KEY_MAX_CHARS} characters long", field="key")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Refuse ``value`` unless it is one of ``choices``.

    Args:
        name: the argument's name, reported as the error's ``field``.
        value: what was given.
        choices: the strings allowed.

    Raises:
        InvalidValueError: ``value`` is not one of them.
    """
    if value not in choices or not isinstance(value, str):
        raise InvalidValueError(
            f"{name} must be one of {', '.join(choices)}; got {value!r}", field=name
        )


def check_confidence(value: Any) -> float:
    """Return a confidence as a float.

    Raises:
        InvalidValueError: ``value`` is not a number from 0 to 1.
    """
    if not is_number(value) or not 0 <= value <= 1:
        raise InvalidValueError(
            f"confidence must be a number from 0 to 1; got {value!r}", field="confidence"
        )
    return float(value)


def ttl_ms(ttl: Duration | None) -> int | None:
    """Return a time-to-live in milliseconds (``None`` stays ``None``).

    Raises:
        InvalidValueError: ``ttl`` is not a positive duration (see
            :func:`mangostore.clock.duration_ms`).
    """
    return duration_ms(ttl, "ttl", minimum=1)


def sql_limit(limit: int | None) -> int:
    """Return ``limit`` as the value of an SQL ``LIMIT ?``: ``-1`` (no limit) for ``None``.

    Raises:
        InvalidValueError: ``limit`` is not a positive integer.
    """
    if limit is None:
        return -1  # SQLite: no limit
    if not is_int(limit) or limit < 1:
        raise InvalidValueError("limit must be a positive integer", field="limit")
    return limit
