"""Record ids: UUIDv7 text, time-ordered so they index well, and made on any device."""

from __future__ import annotations

import uuid6

__all__ = ["new_id"]


def new_id() -> str:
    """Return a new UUIDv7 as text."""
    return str(uuid6.uuid7())
