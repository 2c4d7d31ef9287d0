"""Fixtures for sync: a relay and devices of one vault connected to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import mangostore
from mangostore import Settings
from mangostore.sync import MemoryRelay
from tests.conftest import PASSPHRASE

Devices = Callable[[int], list[mangostore.Database]]


@pytest.fixture
def relay() -> MemoryRelay:
    """An in-process relay that keeps only sealed batches."""
    return MemoryRelay()


@pytest.fixture
def devices(relay: MemoryRelay, fast_settings: Settings) -> Iterator[Devices]:
    """``devices(n)``: n in-memory databases of one vault, sync enabled, on ``relay``.

    The first is made with ``mangostore.create``; the others join its vault with
    ``db.sync.new_device``.
    """
    made: list[mangostore.Database] = []

    def make(count: int) -> list[mangostore.Database]:
        first, _ = mangostore.create(":memory:", passphrase=PASSPHRASE, settings=fast_settings)
        first.sync.enable(relay)
        made.append(first)
        group = [first]
        for _ in range(count - 1):
            other, _ = first.sync.new_device(":memory:", PASSPHRASE, settings=fast_settings)
            other.sync.connect(relay)
            made.append(other)
            group.append(other)
        return group

    yield make
    for db in made:
        db.close()


def sync_all(group: list[mangostore.Database], rounds: int = 2) -> None:
    """Sync every device, ``rounds`` times over, so every change reaches every device."""
    for _ in range(rounds):
        for db in group:
            db.sync.sync()
