"""Regressions of snapshots found by the convergence test through the server
(``test_server_convergence.py``), with the smallest example that showed each.

A snapshot used to be read after a pull only, so it held the rows its device had not
pushed yet. A device that started from it could make a child of such a row (a memory
of a user) and push it before the row's own device pushed the row: the other devices
took the child for one whose parent was deleted elsewhere and dropped it as an orphan,
while the devices that had the parent kept it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.sync.server.api_helpers import URL, Server, new_device
from tests.sync.test_convergence import logical_content

import mangostore
from mangostore import Settings
from mangostore.errors import UnsettledSnapshotError
from mangostore.sync.snapshots import SETTLE_ROUNDS, read_settled

SETTINGS = Settings(kdf=FAST_KDF)


@pytest.fixture
def three(sqlite_server: Server) -> Iterator[list[mangostore.Database]]:
    """Three in-memory devices of one vault, attached to ``sqlite_server``."""
    first = new_device()
    first.sync.attach(URL, client=sqlite_server.client)
    made = [first]
    for _ in range(2):
        other = first.sync.new_device(":memory:", PASSPHRASE, settings=SETTINGS)[0]
        other.sync.connect(sqlite_server.transport(other))
        made.append(other)
    yield made
    for db in made:
        db.close()


def _converge(dbs: list[mangostore.Database]) -> None:
    for _round in range(4):
        for db in dbs:
            db.sync.sync()


def test_a_child_of_a_row_a_snapshot_held_before_the_relay_was_dropped_as_an_orphan(
    three: list[mangostore.Database],
) -> None:
    first, second, third = three
    second.users.create(username="bob")
    second.sync.sync()  # the relay holds a batch, so a snapshot has a cursor past 0
    ann = first.users.create(username="ann")  # not pushed before the snapshot
    first.sync.upload_snapshot()
    third.sync.sync()  # starts from the snapshot: ann is there
    memory = third.memory.remember(ann.id, "editor", 3)
    third.sync.sync()  # the memory reaches the relay: ann must be there before it
    second.sync.sync()
    _converge(three)

    contents = [logical_content(db) for db in three]
    assert contents[1] == contents[0]
    assert contents[2] == contents[0]
    for db in three:
        assert db.query("SELECT id FROM ai_memory", use_cache=False)[0][0] == memory.id
        assert not db.sync.conflicts()


def test_a_snapshot_sends_the_changes_of_its_device_first(
    three: list[mangostore.Database],
) -> None:
    first, second, _ = three
    first.users.create(username="ann")
    assert first.sync.status().pending_changes > 0
    cursor = first.sync.upload_snapshot()
    assert first.sync.status().pending_changes == 0
    assert cursor == first.sync.status().cursor
    second.sync.pull()
    assert [u.username for u in second.users.list()] == ["ann"]


def test_a_device_that_keeps_writing_uploads_no_snapshot(
    three: list[mangostore.Database],
) -> None:
    first = three[0]
    user = first.users.create(username="ann")
    rounds = []

    def push_then_write() -> None:
        first.sync.push()
        rounds.append(first.users.update(user.id, email=f"ann{len(rounds)}@example.org"))

    with pytest.raises(UnsettledSnapshotError, match="not yet sent"):
        read_settled(
            first.store, first.sync.vault_id, first.schema_version, push_then_write, first.sync.pull
        )
    assert len(rounds) == SETTLE_ROUNDS
