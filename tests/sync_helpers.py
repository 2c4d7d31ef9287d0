"""Helpers of the sync tests: the ``devices`` fixture's type and a full sync round.

The ``relay`` and ``devices`` fixtures live in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable

import mangostore

Devices = Callable[[int], list[mangostore.Database]]


def sync_all(group: list[mangostore.Database], rounds: int = 2) -> None:
    """Sync every device, ``rounds`` times over, so every change reaches every device."""
    for _ in range(rounds):
        for db in group:
            db.sync.sync()
