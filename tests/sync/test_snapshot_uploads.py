"""Snapshot uploads through ``db.sync``, on an in-process relay that keeps snapshots:
what a sync that finds one due does, what a failed upload leaves in status, and which
changes a device must push before its snapshot is read."""

from __future__ import annotations

from typing import Any

import pytest
from tests.sync_helpers import Devices

import mangostore
from mangostore.errors import SyncTransportError
from mangostore.sync import Batch, MemoryRelay, Pulled
from mangostore.sync.changes import has_unpushed
from mangostore.sync.snapshots import Snapshot, read_snapshot


class SnapshotRelay:
    """A relay that keeps the uploaded snapshot parts beside ``relay``'s batches (it
    offers none to start from); with ``failing``, every upload of a part fails."""

    def __init__(self, relay: MemoryRelay, *, failing: bool = False) -> None:
        self.relay = relay
        self.failing = failing
        #: Each uploaded part: (snapshot id, part, cursor, schema version, last, body).
        self.parts: list[tuple[str, int, int, int, bool, bytes]] = []

    def push(self, batch: Batch) -> int:
        return self.relay.push(batch)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        return self.relay.pull(vault_id, after, limit)

    def latest_snapshot(self) -> dict[str, Any] | None:
        return None

    def snapshot_part(self, snapshot_id: str, part: int) -> bytes:
        return next(p[5] for p in self.parts if p[:2] == (snapshot_id, part))

    def put_snapshot_part(
        self,
        snapshot_id: str,
        part: int,
        *,
        cursor: int,
        schema_version: int,
        last: bool,
        body: bytes,
    ) -> bool:
        if self.failing:
            raise SyncTransportError("the relay refused the snapshot")
        self.parts.append((snapshot_id, part, cursor, schema_version, last, body))
        return last


@pytest.fixture
def every_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot is due at every sync that moved the cursor."""
    monkeypatch.setattr("mangostore.sync.service.SNAPSHOT_EVERY", 1)


def _erasures_in(db: mangostore.Database, relay: SnapshotRelay) -> list[str]:
    """The users the first part of the last snapshot uploaded holds as erased."""
    snapshot_id = relay.parts[-1][0]
    _, _, cursor, version, last, body = next(p for p in relay.parts if p[0] == snapshot_id)
    snapshot = Snapshot(db.sync.vault_id, snapshot_id, cursor, version)
    key = db.keyring.subkey("sync")  # type: ignore[union-attr]
    return [u for u, _ in snapshot.open_part(key, 0, last, body).body.erasures]


@pytest.mark.usefixtures("every_sync")
def test_a_snapshot_upload_that_fails_is_recorded_in_status_and_raised(
    devices: Devices, relay: MemoryRelay
) -> None:
    (a,) = devices(1)
    a.sync.connect(SnapshotRelay(relay, failing=True))
    a.users.create(username="alice")
    with pytest.raises(SyncTransportError, match="refused the snapshot"):
        a.sync.sync()
    assert "refused the snapshot" in (a.sync.status().last_error or "")
    assert a.sync.status().pending_changes == 0  # the push before it went through


@pytest.mark.usefixtures("every_sync")
def test_a_sync_that_uploads_a_snapshot_pulls_once(
    devices: Devices, relay: MemoryRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = devices(1)
    snapshots = SnapshotRelay(relay)
    a.sync.connect(snapshots)
    a.users.create(username="alice")
    pulls: list[int] = []
    pull = a.sync.pull

    def counted(**options: Any) -> Any:
        pulls.append(1)
        return pull(**options)

    monkeypatch.setattr(a.sync, "pull", counted)
    a.sync.sync()
    assert [p[2] for p in snapshots.parts] == [a.sync.status().cursor]
    assert len(pulls) == 1


def test_an_erasure_only_the_keyring_holds_is_pushed_before_a_snapshot(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    snapshots = SnapshotRelay(relay)
    a.sync.connect(snapshots)
    a.sync.sync()
    keyring = a.keyring
    assert keyring is not None
    # An erasure the keyring alone holds (a user with no row here; an erasure also
    # changes rows, which are pending on their own): a push notes it as one to send.
    keyring.destroy_user_keys("u-gone")
    with a.store.reading() as conn:
        assert not conn.execute("SELECT 1 FROM sync_erasures").fetchall()
        assert not conn.execute("SELECT 1 FROM sync_rows WHERE seq IS NOT NULL").fetchall()
        assert has_unpushed(conn, keyring.erased_users())
    assert read_snapshot(a.store, a.sync.vault_id, a.schema_version, []) is None

    a.sync.upload_snapshot()
    assert _erasures_in(a, snapshots) == ["u-gone"]
    with a.store.reading() as conn:
        assert not has_unpushed(conn, keyring.erased_users())
    b.sync.sync()  # the erasure went to the relay too, not only into the snapshot
    assert "u-gone" in (b.keyring.erased_users() if b.keyring is not None else [])


def test_the_pending_probe_sees_rows_and_erasures_not_pushed(devices: Devices) -> None:
    (a,) = devices(1)
    a.sync.sync()

    def pending(erased: list[str]) -> bool:
        with a.store.reading() as conn:
            return has_unpushed(conn, erased)

    assert not pending([])
    assert pending(["u-gone"])  # erased here and not noted by a push yet
    a.users.create(username="alice")
    assert pending([])
    a.sync.push()
    assert not pending([])
    a.execute("INSERT INTO sync_erasures (user_id, erased_at, pushed) VALUES ('u-gone', 1, 0)")
    assert pending([])  # noted, not pushed
    a.execute("UPDATE sync_erasures SET pushed = 1")
    assert not pending(["u-gone"])
