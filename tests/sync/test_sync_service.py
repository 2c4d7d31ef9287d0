"""``db.sync``: setting up, status, failures, held batches, scheduling, compaction."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE
from tests.sync_helpers import Devices, sync_all

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import (
    ConfigurationError,
    NotFoundError,
    SyncError,
    SyncTransportError,
    TamperedDataError,
    ValidationError,
)
from mangostore.sync import Batch, MemoryRelay, Pulled


class FlakyRelay:
    """A relay that fails the next ``failures`` calls."""

    def __init__(self, relay: MemoryRelay, failures: int) -> None:
        self.relay = relay
        self.failures = failures
        self.calls = 0

    def push(self, batch: Batch) -> int:
        self._maybe_fail()
        return self.relay.push(batch)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        self._maybe_fail()
        return self.relay.pull(vault_id, after, limit)

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise SyncTransportError("the relay is down")


class TamperingRelay:
    """A relay that serves every batch with the last bit of its body flipped."""

    def __init__(self, relay: MemoryRelay) -> None:
        self.relay = relay

    def push(self, batch: Batch) -> int:
        return self.relay.push(batch)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        return [
            dataclasses.replace(
                p,
                batch=dataclasses.replace(
                    p.batch, body=p.batch.body[:-1] + bytes([p.batch.body[-1] ^ 1])
                ),
            )
            for p in self.relay.pull(vault_id, after, limit)
        ]


def test_status_of_a_new_database_names_its_device_and_says_sync_is_off(
    memory_db: mangostore.Database,
) -> None:
    status = memory_db.sync.status()
    assert len(status.device_id) == 32
    assert status.vault_id == memory_db.keyring.vault_id  # type: ignore[union-attr]
    assert (status.enabled, status.pending_changes, status.cursor) == (False, 0, 0)


def test_writes_before_sync_is_enabled_are_sent_by_the_first_push(
    memory_db: mangostore.Database, relay: MemoryRelay, fast_settings: mangostore.Settings
) -> None:
    user = memory_db.users.create(username="alice")
    assert memory_db.sync.enable(relay) == 1
    assert memory_db.sync.status().pending_changes == 1
    other, _ = memory_db.sync.new_device(":memory:", PASSPHRASE, settings=fast_settings)
    other.sync.connect(relay)
    sync_all([memory_db, other])
    assert other.users.get(user.id).username == "alice"
    other.close()


def test_sync_needs_enabling_a_relay_and_a_keyring(
    memory_db: mangostore.Database, plain_db: mangostore.Database, relay: MemoryRelay
) -> None:
    with pytest.raises(SyncError, match="not enabled"):
        memory_db.sync.sync()
    memory_db.sync.enable()
    with pytest.raises(SyncError, match="no relay"):
        memory_db.sync.sync()
    with pytest.raises(ConfigurationError, match="encrypted database"):
        plain_db.sync.enable(relay)
    with pytest.raises(ValidationError):
        memory_db.sync.connect(object())  # type: ignore[arg-type]


def test_a_relay_that_fails_loses_nothing(devices: Devices, relay: MemoryRelay) -> None:
    a, b = devices(2)
    flaky = FlakyRelay(relay, failures=1)
    a.sync.connect(flaky)
    user = a.users.create(username="alice")
    with pytest.raises(SyncTransportError):
        a.sync.sync()
    assert a.sync.status().pending_changes == 1
    assert "relay is down" in (a.sync.status().last_error or "")
    sync_all([a, b])
    assert b.users.get(user.id).username == "alice"
    assert a.sync.status().last_error is None


def test_the_same_batch_applied_twice_changes_nothing(devices: Devices, relay: MemoryRelay) -> None:
    a, b = devices(2)
    a.users.create(username="alice")
    a.sync.sync()
    batch = relay.pull(a.sync.vault_id, 0, 10)[-1].batch
    assert relay.push(batch) == relay.push(dataclasses.replace(batch))  # same number: one copy
    b.sync.sync()
    before = b.query("SELECT * FROM users")
    b.execute("UPDATE sync_device SET pulled_cursor = 0")  # as if the cursor was lost
    b.sync.sync()
    assert [tuple(r) for r in b.query("SELECT * FROM users")] == [tuple(r) for r in before]
    assert b.sync.status().pending_changes == 0  # nothing echoed back as a local change


def test_a_tampered_batch_stops_the_pull_before_it(devices: Devices, relay: MemoryRelay) -> None:
    a, b = devices(2)
    a.users.create(username="alice")
    a.sync.sync()
    b.sync.connect(TamperingRelay(relay))  # what a relay whose storage was changed serves
    with pytest.raises(TamperedDataError):
        b.sync.sync()
    status = b.sync.status()
    assert status.cursor == 0  # still before the batch that failed
    assert "failed authentication" in (status.last_error or "")
    assert b.users.count() == 0


def test_batches_from_a_newer_schema_wait_for_the_migration(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    a.sync.sync()
    newer = [dataclasses.replace(p.batch) for p in relay.pull(a.sync.vault_id, 0, 10)]
    # Re-seal a's batch as if a ran a newer schema: b must hold it, not apply it.
    from mangostore.sync.batches import open_batch, seal_batch
    from mangostore.sync.changes import encode_state

    key = a.keyring.subkey("sync")  # type: ignore[union-attr]
    body = open_batch(key, newer[-1])
    future = seal_batch(
        key,
        vault_id=newer[-1].vault_id,
        device_id=newer[-1].device_id,
        number=99,
        schema_version=b.schema_version + 1,
        states=[encode_state(s) for s in body.states],
        erasures=[],
        keys=body.keys,
        ack=0,
    )
    a.users.delete(user.id)
    a.sync.sync()
    relay.push(future)  # after the delete in the relay's order, but from a newer schema
    b.sync.sync()
    assert b.sync.status().held_batches == 1
    assert b.users.count() == 0
    # Once this device runs that schema, the held batch is applied (and its older
    # state of the user loses to the delete it already has).
    b.execute("UPDATE sync_inbox SET schema_version = ?", (b.schema_version,))
    assert b.sync.apply_held() == 1
    assert b.sync.status().held_batches == 0
    assert b.users.count() == 0


def test_the_scheduler_syncs_after_a_write_and_stops_on_close(
    devices: Devices, fast_settings: mangostore.Settings
) -> None:
    a, b = devices(2)
    b.sync.start(interval_s=3600, after_write_s=0.1)
    assert b.sync.status().scheduled
    user = b.users.create(username="from-b")
    deadline = time.monotonic() + 120  # generous: CI machines can be busy
    while time.monotonic() < deadline and b.sync.status().pending_changes:
        time.sleep(0.05)
    a.sync.sync()
    assert a.users.get(user.id).username == "from-b"
    b.sync.stop()
    assert not b.sync.status().scheduled


def test_tombstones_go_once_every_device_has_seen_them(devices: Devices) -> None:
    a, b = devices(2)
    user = a.users.create(username="alice")
    project = a.projects.create(user_id=user.id, name="m", path="/m")
    sync_all([a, b])
    a.projects.update(project.id, display_name="M")
    sync_all([a, b])
    a.projects.delete(project.id)
    sync_all([a, b], rounds=3)
    for db in (a, b):
        assert (
            db.query("SELECT count(*) FROM sync_rows WHERE tbl = 'projects'", use_cache=False)[0][0]
            == 0
        )
        assert db.query("SELECT count(*) FROM sync_cells", use_cache=False)[0][0] == 0


def test_a_device_that_never_acknowledges_holds_compaction_until_forgotten(
    devices: Devices,
) -> None:
    a, b, c = devices(3)
    user = a.users.create(username="alice")
    project = a.projects.create(user_id=user.id, name="m", path="/m")
    sync_all([a, b, c])
    a.projects.delete(project.id)
    sync_all([a, b])  # c is away
    sync_all([a, b])
    assert a.query("SELECT count(*) FROM sync_rows WHERE dead = 1", use_cache=False)[0][0] == 1
    assert a.sync.forget_device(c.sync.device_id)
    a.sync.compact()
    assert a.query("SELECT count(*) FROM sync_rows WHERE dead = 1", use_cache=False)[0][0] == 0


def test_conflicts_can_only_be_resolved_once_and_by_a_known_choice(devices: Devices) -> None:
    (a,) = devices(1)
    with pytest.raises(NotFoundError, match="no open sync conflict"):
        a.sync.resolve("nope")
    with pytest.raises(ValidationError):
        a.sync.resolve("nope", choose="mine")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a synced table"):
        a.sync.set_strategy("user_sessions", "user_agent", "manual")
    with pytest.raises(ValidationError, match="no column"):
        a.sync.set_strategy("projects", "no_such_column; DROP TABLE users", "manual")


def test_capture_follows_a_migration_that_changes_a_synced_table(devices: Devices) -> None:
    (a,) = devices(1)
    user = a.users.create(username="alice")
    a.sync.sync()
    a.execute("ALTER TABLE users ADD COLUMN nickname TEXT")  # what a migration may do
    assert a.sync.refresh_capture()
    assert not a.sync.refresh_capture()
    a.execute("UPDATE users SET nickname = 'al' WHERE id = ?", (user.id,))
    assert a.sync.status().pending_changes == 1
    cells = a.query("SELECT col FROM sync_cells WHERE pk = ?", (user.id,), use_cache=False)
    assert [r[0] for r in cells] == ["nickname"]


def test_the_clock_survives_a_restart_with_the_wall_clock_set_back(
    tmp_path: Path, fast_settings: mangostore.Settings, relay: MemoryRelay
) -> None:
    path = tmp_path / "laptop.db"
    wall = ManualClock(1_800_000_000_000)
    db, _ = mangostore.create(path, passphrase=PASSPHRASE, settings=fast_settings, clock=wall)
    db.sync.enable(relay)
    user = db.users.create(username="alice")
    db.users.update(user.id, email="before@example.org")  # pending, never pushed
    before = db.sync.status().clock
    db.close()
    wall.set(1_800_000_000_000 - 3_600_000)  # an hour back
    db = mangostore.open(path, passphrase=PASSPHRASE, settings=fast_settings, clock=wall)
    try:
        assert db.sync.status().clock >= before
        other = db.users.create(username="bob")
        life = db.query("SELECT life FROM sync_rows WHERE pk = ?", (other.id,), use_cache=False)[0][
            0
        ]
        assert life > before
    finally:
        db.close()
