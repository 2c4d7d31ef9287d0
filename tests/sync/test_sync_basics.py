"""Sync between devices of one vault: the round trip, and what the relay sees."""

from __future__ import annotations

from tests.sync_helpers import Devices, sync_all


def test_a_user_made_on_one_device_reaches_the_other(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice", email="alice@example.org")
    sync_all([a, b])
    got = b.users.get(user.id)
    assert got.username == "alice"
    assert got.email == "alice@example.org"
