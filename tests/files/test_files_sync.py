"""Stored files across devices: rows sync, chunks travel through the relay's blob
store and are fetched when a file is opened; erasure reaches the relay; rows that
refer to files own them."""

from __future__ import annotations

import io
from typing import Any

import pytest
from tests.files.conftest import noise
from tests.sync_helpers import Devices, sync_all

import mangostore
from mangostore.errors import (
    ConstraintError,
    FileUnavailableError,
    SyncTransportError,
    TamperedDataError,
)
from mangostore.filestore.remote import BlobRelay
from mangostore.sync import FolderRelay, MemoryRelay

CANARY = b"canary: the voice sample of alice, never in the relay in the clear " * 40


def _user(db: mangostore.Database, name: str = "alice") -> str:
    return db.users.create(username=name).id


def test_a_file_put_on_one_device_opens_on_another(devices: Devices, relay: MemoryRelay) -> None:
    a, b = devices(2)
    alice = _user(a)
    data = noise(300_000, seed=3) + CANARY
    stored = a.files.put(alice, data, name="sample.wav", metadata={"take": 1})
    sync_all([a, b])
    got = b.files.get(stored.id)
    assert (got.name, got.size, got.digest, got.metadata) == (
        "sample.wav",
        len(data),
        stored.digest,
        {"take": 1},
    )
    report = b.files.check(verify=True, repair=False)
    assert report.not_fetched == stored.chunk_count
    assert report.ok
    assert b.files.read(stored.id) == data  # fetched, authenticated, kept
    assert b.files.check(verify=True, repair=False).not_fetched == 0
    with b.files.open(stored.id) as stream:  # now from b's own folder
        stream.seek(150_000)
        assert stream.read(1000) == data[150_000:151_000]
    assert CANARY[:40] not in relay.stored_bytes()


def test_chunks_another_device_already_sent_are_not_sent_again(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    alice = _user(a)
    data = noise(200_000, seed=5)
    first = a.files.put(alice, data)
    sync_all([a, b])
    # b never fetched them: it seals and keeps its own copies, which the relay has.
    copy = b.files.put(alice, data, name="again")
    heard: list[tuple[int, int | None, str]] = []
    report = b.files.send_chunks(progress=lambda *args: heard.append(args))
    assert (report.sent, report.already_there) == (0, copy.chunk_count)
    assert heard[-1][0] == heard[-1][1]  # the bar ends full though nothing was sent
    assert {stage for _, _, stage in heard} == {"sending files"}
    assert b.files.read(first.id) == data


class RowsOnly:
    """A relay that carries batches but no chunks (an older relay)."""

    def __init__(self, inner: MemoryRelay) -> None:
        self.inner = inner

    def push(self, batch: Any) -> int:
        return self.inner.push(batch)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Any]:
        return self.inner.pull(vault_id, after, limit)


class Unreachable(MemoryRelay):
    """A relay whose blob store cannot be reached."""

    def get_blob(self, vault_id: str, name: str) -> bytes | None:
        raise SyncTransportError("connection refused")


class Forging(MemoryRelay):
    """A relay that hands out altered chunks."""

    def get_blob(self, vault_id: str, name: str) -> bytes | None:
        data = super().get_blob(vault_id, name)
        return None if data is None else data[:-1] + bytes([data[-1] ^ 1])


def test_a_file_whose_chunks_never_reached_the_relay_is_unavailable_not_lost(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    alice = _user(a)
    a.sync.connect(RowsOnly(relay))
    stored = a.files.put(alice, noise(50_000, seed=9))
    a.sync.sync()
    b.sync.sync()
    with pytest.raises(FileUnavailableError, match="does not hold it yet"):
        b.files.read(stored.id)
    b.sync.connect(RowsOnly(relay))
    with pytest.raises(FileUnavailableError, match="no relay that carries files"):
        b.files.read(stored.id)
    a.sync.connect(relay)  # a relay that carries files: the next round sends them
    a.sync.sync()
    b.sync.connect(relay)
    assert b.files.read(stored.id) == a.files.read(stored.id)


def test_an_unreachable_relay_is_reported_and_nothing_is_kept(devices: Devices) -> None:
    a, b = devices(2)
    alice = _user(a)
    stored = a.files.put(alice, noise(40_000, seed=2))
    sync_all([a, b])
    broken = Unreachable()
    b.sync.connect(broken)
    with pytest.raises(FileUnavailableError, match="could not be reached"):
        b.files.read(stored.id)
    assert b.files.check(verify=False, repair=False).not_fetched == stored.chunk_count


def test_an_altered_chunk_from_the_relay_is_refused_and_not_kept(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    alice = _user(a)
    stored = a.files.put(alice, noise(40_000, seed=4))
    sync_all([a, b])
    forging = Forging()
    forging.put_blob(relay_vault(a), *_one_blob(relay, a))
    b.sync.connect(forging)
    with pytest.raises(TamperedDataError):
        b.files.read(stored.id)
    assert b.files.check(verify=True, repair=False).not_fetched == stored.chunk_count


def relay_vault(db: mangostore.Database) -> str:
    return db.sync.vault_id


def _one_blob(relay: MemoryRelay, db: mangostore.Database) -> tuple[str, str, bytes]:
    """The one chunk ``relay`` holds for ``db``'s vault, as ``put_blob`` arguments."""
    (name,) = [n for n in _names_of(db) if relay.get_blob(db.sync.vault_id, n) is not None]
    data = relay.get_blob(db.sync.vault_id, name)
    assert data is not None
    return name, "0" * 32, data


def _names_of(db: mangostore.Database) -> list[str]:
    return [str(r[0]) for r in db.query("SELECT DISTINCT chunk FROM file_parts")]


def test_a_lost_chunk_is_fetched_back_from_the_relay(devices: Devices) -> None:
    a, b = devices(2)
    alice = _user(a)
    data = noise(30_000, seed=6)
    stored = a.files.put(alice, data)
    sync_all([a, b])
    for path in a.files.folder.rglob("*"):
        if path.is_file() and len(path.name) == 64:
            path.unlink()
    assert a.files.read(stored.id) == data
    assert a.files.check(verify=True, repair=False).ok


def test_deleting_a_file_reaches_every_device(devices: Devices) -> None:
    a, b = devices(2)
    alice = _user(a)
    stored = a.files.put(alice, noise(30_000, seed=7))
    sync_all([a, b])
    b.files.read(stored.id)
    a.files.delete(stored.id)
    sync_all([a, b])
    assert b.files.list(alice) == []
    b.files.sweep()
    assert not [p for p in b.files.folder.rglob("*") if p.is_file() and len(p.name) == 64]


def test_erasing_a_user_drops_their_chunks_from_the_relay(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    alice, bob = _user(a), _user(a, "bob")
    gone = a.files.put(alice, noise(30_000, seed=8) + CANARY)
    kept = a.files.put(bob, noise(30_000, seed=10))
    sync_all([a, b])
    b.files.read(gone.id)
    names = _names_of(a)
    a.privacy.erase_user(alice)
    sync_all([a, b])
    vault = a.sync.vault_id
    bobs = [str(r[0]) for r in a.query("SELECT chunk FROM file_parts WHERE file_id = ?", [kept.id])]
    assert sorted(relay.missing_blobs(vault, names)) == sorted(set(names) - set(bobs))
    assert b.files.list(alice) == []
    assert b.files.read(kept.id) == a.files.read(kept.id)
    assert CANARY[:40] not in relay.stored_bytes()


# -- rows that refer to files ------------------------------------------------------------


def test_a_voice_profile_owns_its_training_file(devices: Devices) -> None:
    (db,) = devices(1)
    alice = _user(db)
    sample = db.files.put(alice, noise(20_000, seed=11), name="samples.wav")
    profile = db.voice_profiles.create(user_id=alice, name="default", training_file_id=sample.id)
    assert db.voice_profiles.get(profile.id).training_file_id == sample.id
    db.voice_profiles.delete(profile.id)
    with pytest.raises(mangostore.errors.NotFoundError):
        db.files.get(sample.id)
    assert db.files.sweep().chunks_removed == sample.chunk_count


def test_a_file_two_rows_refer_to_stays_until_the_last_goes(devices: Devices) -> None:
    (db,) = devices(1)
    alice = _user(db)
    clip = db.files.put(alice, b"recording")
    first = db.command_history.create(user_id=alice, command="ls", recording_file_id=clip.id)
    second = db.command_history.create(user_id=alice, command="pwd", recording_file_id=clip.id)
    db.command_history.delete(first.id)
    assert db.files.get(clip.id).id == clip.id
    db.command_history.update(second.id, recording_file_id=None)  # replaced: released
    with pytest.raises(mangostore.errors.NotFoundError):
        db.files.get(clip.id)


def test_a_row_may_not_refer_to_another_users_file(devices: Devices) -> None:
    (db,) = devices(1)
    alice, bob = _user(db), _user(db, "bob")
    bobs = db.files.put(bob, b"bob's")
    with pytest.raises(ConstraintError, match="another user"):
        db.voice_profiles.create(user_id=alice, name="x", training_file_id=bobs.id)
    with pytest.raises(ConstraintError, match="another user"):
        db.command_history.create(user_id=alice, command="ls", recording_file_id=bobs.id)
    assert db.voice_profiles.list() == []
    assert db.files.get(bobs.id).user_id == bob


def test_a_profile_and_its_file_sync_together(devices: Devices) -> None:
    a, b = devices(2)
    alice = _user(a)
    data = noise(25_000, seed=12)
    sample = a.files.put(alice, data)
    profile = a.voice_profiles.create(user_id=alice, name="p", training_file_id=sample.id)
    sync_all([a, b])
    got = b.voice_profiles.get(profile.id)
    assert got.training_file_id == sample.id
    assert b.files.read(sample.id) == data
    b.voice_profiles.delete(profile.id)
    sync_all([a, b])
    with pytest.raises(mangostore.errors.NotFoundError):
        a.files.get(sample.id)


def test_streams_of_a_synced_file_fetch_only_what_they_read(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    alice = _user(a)
    data = noise(2_000_000, seed=13)
    stored = a.files.put(alice, io.BytesIO(data))
    assert stored.chunk_count > 2
    sync_all([a, b])
    with b.files.open(stored.id) as stream:
        stream.seek(len(data) - 10)
        assert stream.read() == data[-10:]
    assert b.files.check(verify=False, repair=False).not_fetched == stored.chunk_count - 1


# -- the blob contract every relay keeps -----------------------------------------------


@pytest.fixture(params=["memory", "folder"])
def blobs(request: pytest.FixtureRequest, tmp_path: Any) -> BlobRelay:
    if request.param == "memory":
        return MemoryRelay()
    return FolderRelay(tmp_path)


def test_relays_keep_chunks_once_and_drop_them_by_owner(blobs: BlobRelay) -> None:
    vault, a, b = "vault-1", "a" * 64, "b" * 64
    assert isinstance(blobs, BlobRelay)
    assert blobs.missing_blobs(vault, [a, b]) == [a, b]
    blobs.put_blob(vault, a, "1" * 32, b"first")
    blobs.put_blob(vault, a, "1" * 32, b"second copy")
    blobs.put_blob(vault, b, "2" * 32, b"other owner")
    assert blobs.get_blob(vault, a) == b"first"
    assert blobs.get_blob("vault-2", a) is None
    assert blobs.missing_blobs(vault, [a, b]) == []
    assert blobs.forget_blobs(vault, "1" * 32) == 1
    assert blobs.forget_blobs(vault, "1" * 32) == 0
    assert blobs.missing_blobs(vault, [a, b]) == [a]


def test_a_relay_folder_refuses_names_that_are_not_chunk_names(tmp_path: Any) -> None:
    relay = FolderRelay(tmp_path / "relay")
    with pytest.raises(SyncTransportError, match="missing"):
        relay.get_blob("vault-1", "a" * 64)
    (tmp_path / "relay").mkdir()
    for vault, name in (("../x", "a" * 64), ("vault-1", "../../etc/passwd"), ("v", "A" * 64)):
        with pytest.raises(SyncTransportError, match="not"):
            relay.put_blob(vault, name, "1" * 32, b"x")
    with pytest.raises(SyncTransportError, match="owner tag"):
        relay.put_blob("vault-1", "a" * 64, "../x", b"x")
    assert list((tmp_path / "relay").iterdir()) == []


# -- attachments -----------------------------------------------------------------------


def test_attachments_own_their_files_and_sync(devices: Devices) -> None:
    a, b = devices(2)
    alice, bob = _user(a), _user(a, "bob")
    talk = a.ai_conversations.create(user_id=alice)
    doc = a.files.put(alice, b"the design notes", name="notes.md")
    first = a.files.attachments.add(talk.id, doc.id)
    assert a.files.attachments.add(talk.id, doc.id) == first  # attaching again: the same
    assert first.to_dict()["file_id"] == doc.id
    sync_all([a, b])
    assert [x.file_id for x in b.files.attachments.list(talk.id)] == [doc.id]
    assert b.files.read(doc.id) == b"the design notes"
    b.ai_conversations.delete(talk.id)  # the attachment goes, and its file with it
    sync_all([a, b])
    with pytest.raises(mangostore.errors.NotFoundError):
        a.files.get(doc.id)
    bobs = a.files.put(bob, b"bob's")
    other = a.ai_conversations.create(user_id=alice)
    with pytest.raises(mangostore.errors.ValidationError, match="another user"):
        a.files.attachments.add(other.id, bobs.id)
    with pytest.raises(mangostore.errors.NotFoundError):
        a.files.attachments.add(other.id, "no-such-file")
    with pytest.raises(mangostore.errors.NotFoundError):
        a.files.attachments.add("no-such-talk", bobs.id)
    with pytest.raises(mangostore.errors.NotFoundError):
        a.files.attachments.remove("no-such-attachment")
    assert a.files.attachments.list(other.id) == []


def test_removing_an_attachment_removes_its_file(devices: Devices) -> None:
    (db,) = devices(1)
    alice = _user(db)
    talk = db.ai_conversations.create(user_id=alice)
    message = db.conversations.append(talk.id, "user", "see the file")
    doc = db.files.put(alice, b"attached")
    made = db.files.attachments.add(talk.id, doc.id, message_id=message.id)
    assert db.files.attachments.list(talk.id, message_id=message.id) == [made]
    db.files.attachments.remove(made.id)
    with pytest.raises(mangostore.errors.NotFoundError):
        db.files.get(doc.id)


def test_fetch_all_brings_every_chunk_here(devices: Devices) -> None:
    a, b = devices(2)
    alice = _user(a)
    big = a.files.put(alice, noise(1_500_000, seed=14))
    small = a.files.put(alice, b"small")
    sync_all([a, b])
    seen: list[tuple[int, int | None]] = []
    fetched = b.files.fetch_all(progress=lambda done, total, _stage: seen.append((done, total)))
    assert fetched == big.chunk_count + small.chunk_count
    assert seen[-1] == (fetched, fetched)
    assert b.files.check(verify=True, repair=False).not_fetched == 0
    assert b.files.fetch_all() == 0


def test_deleting_an_attached_file_takes_its_attachment(devices: Devices) -> None:
    (db,) = devices(1)
    alice = _user(db)
    talk = db.ai_conversations.create(user_id=alice)
    doc = db.files.put(alice, b"attached")
    db.files.attachments.add(talk.id, doc.id)
    db.files.delete(doc.id)
    assert db.files.attachments.list(talk.id) == []
    assert db.ai_conversations.get(talk.id).id == talk.id


def test_an_erasure_on_a_device_without_files_still_reaches_the_relay(
    devices: Devices, relay: MemoryRelay
) -> None:
    a, b = devices(2)
    alice = _user(a)
    stored = a.files.put(alice, noise(20_000, seed=15))
    sync_all([a, b])
    names = _names_of(a)
    b.privacy.erase_user(alice)  # b never held a chunk of alice's
    b.sync.sync()
    assert relay.missing_blobs(a.sync.vault_id, names) == names
    a.sync.sync()
    with pytest.raises(mangostore.errors.NotFoundError):
        a.files.get(stored.id)


def test_a_file_deleted_on_one_device_while_another_gives_it_to_a_profile(
    devices: Devices,
) -> None:
    a, b = devices(2)
    alice = _user(a)
    sample = a.files.put(alice, noise(20_000, seed=16))
    sync_all([a, b])
    a.files.delete(sample.id)
    profile = b.voice_profiles.create(user_id=alice, name="p", training_file_id=sample.id)
    sync_all([a, b])
    # The optional reference is cleared (docs/sync.md): the profile stays, the file
    # is gone on both devices, and no foreign key is broken.
    for db in (a, b):
        assert db.voice_profiles.get(profile.id).training_file_id is None
        assert db.files.list(alice) == []
        assert db.query("PRAGMA foreign_key_check") == []
