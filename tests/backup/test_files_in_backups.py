"""Backups carry the file store's chunks: restored files read back byte for byte,
incrementals store only new chunks, damaged chunk objects are named, erasure reaches
the chunks of old backups."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tests.backup.conftest import SETTINGS
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup.filechunks import ROLE, chunk_name
from mangostore.backup.keyblock import read_keyblock
from mangostore.backup.manifest import data_key
from mangostore.backup.policy import BackupPolicy
from mangostore.backup.stream import StreamReader
from mangostore.clock import ManualClock
from mangostore.errors import BackupCorruptError, NotFoundError
from mangostore.filestore.chunkcrypt import key_id_of

DAY_MS = 86_400_000
CANARY = b"secret-file-canary-"


def noise(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def users(db: mangostore.Database) -> tuple[str, str]:
    first, second = (u.id for u in db.users.list(order_by="created_at"))
    return first, second


def chunk_names(db: mangostore.Database, owner: str | None = None) -> set[str]:
    return {c.name for c in db.files.referenced_chunks() if owner in (None, c.owner)}


def restore(db: mangostore.Database, folder: Path, into: Path, **kw: str) -> mangostore.Database:
    db.backup.restore(into, passphrase=PASSPHRASE, to=folder, settings=SETTINGS, **kw)
    return mangostore.open(into, passphrase=PASSPHRASE, settings=SETTINGS)


def test_files_come_back_byte_for_byte(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    ann, bob = users(vault)
    big = noise(3 * 1024 * 1024, seed=1)
    small = CANARY * 1000
    f_big = vault.files.put(ann, big, name="big.bin")
    f_small = vault.files.put(bob, small, name="small.txt")
    before = chunk_names(vault)
    gone = vault.files.put(ann, noise(300_000, seed=9))
    gone_chunks = chunk_names(vault) - before
    vault.files.delete(gone.id)
    assert gone_chunks  # the deleted file had a chunk of its own

    made = vault.backup.create(folder, kind="full")
    held = {chunk_name(o) for o in made.objects_of(ROLE)}
    assert held == chunk_names(vault)  # exactly the chunks the snapshot's files use
    assert not held & gone_chunks
    assert vault.backup.verify(folder).ok

    with restore(vault, folder, tmp_path / "r.db") as db:
        assert db.files.read(f_big.id) == big
        assert db.files.read(f_small.id) == small
        with db.files.open(f_big.id) as stream:
            stream.seek(2_000_000)
            assert stream.read(1000) == big[2_000_000:2_001_000]
        assert db.files.check().ok
        with pytest.raises(NotFoundError):
            db.files.get(gone.id)
    # Neither the rows nor the chunks hold the canary in clear at the destination.
    for path in folder.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_bytes()


def test_an_incremental_stores_only_new_chunks(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    ann, bob = users(vault)
    first = noise(2 * 1024 * 1024, seed=2)
    f1 = vault.files.put(ann, first)
    full = vault.backup.create(folder, kind="full")
    full_chunks = {chunk_name(o) for o in full.objects_of(ROLE)}

    second = noise(1024 * 1024 + 12345, seed=3)
    f2 = vault.files.put(bob, second)
    f3 = vault.files.put(ann, first)  # the same bytes again: no new chunk
    new = chunk_names(vault) - full_chunks
    stored = sum(c.stored_size for c in vault.files.referenced_chunks() if c.name in new)
    inc = vault.backup.create(folder)
    assert inc.kind == "incremental"
    objects = inc.objects_of(ROLE)
    assert {chunk_name(o) for o in objects} == new
    assert len(objects) == len(new) == len(chunk_names(vault, bob))
    size = sum(o.size for o in objects)
    # Only the new chunks' sealed bytes, with a few hundred bytes of framing each.
    assert stored <= size <= stored + 512 * len(objects)

    # A third backup with no new file stores no chunk at all.
    vault.users.update(bob, email="bob@example.org")
    assert vault.backup.create(folder).objects_of(ROLE) == []

    assert vault.backup.verify(folder).ok
    with restore(vault, folder, tmp_path / "r.db") as db:
        assert db.files.read(f1.id) == first
        assert db.files.read(f2.id) == second
        assert db.files.read(f3.id) == first
    with restore(vault, folder, tmp_path / "old.db", backup_id=full.id) as db:
        assert db.files.read(f1.id) == first
        with pytest.raises(NotFoundError):
            db.files.get(f2.id)


@pytest.mark.parametrize("damage", ["flip", "missing"])
def test_a_damaged_chunk_object_is_named_and_refused(
    vault: mangostore.Database, folder: Path, tmp_path: Path, damage: str
) -> None:
    ann, _ = users(vault)
    vault.files.put(ann, noise(1024 * 1024, seed=4))
    full = vault.backup.create(folder, kind="full")
    vault.files.put(ann, b"a row change and a small file")
    vault.backup.create(folder)
    name = full.objects_of(ROLE)[0].name  # in the base: the newest backup needs it
    path = folder / name
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        path.unlink()
    report = vault.backup.verify(folder)
    assert not report.ok
    assert report.bad_object == name
    target = tmp_path / "r.db"
    with pytest.raises(BackupCorruptError) as caught:
        vault.backup.restore(target, passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    assert caught.value.object_name == name
    assert list(tmp_path.glob("r.db*")) == []
    assert [p for p in tmp_path.iterdir() if "restoring" in p.name] == []


def test_a_swapped_chunk_object_does_not_open(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    ann, bob = users(vault)
    vault.files.put(ann, noise(300_000, seed=5))
    vault.files.put(bob, noise(300_000, seed=6))
    made = vault.backup.create(folder)
    a, b = (folder / o.name for o in made.objects_of(ROLE))
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    report = vault.backup.verify(folder)
    assert not report.ok
    assert report.bad_object in {o.name for o in made.objects_of(ROLE)}


def test_an_erased_users_chunks_stay_sealed_in_old_backups(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    gone, kept = users(vault)
    f_gone = vault.files.put(gone, CANARY * 5000 + noise(600_000, seed=7))
    kept_bytes = noise(400_000, seed=8)
    f_kept = vault.files.put(kept, kept_bytes)
    erased_chunks = chunk_names(vault, gone)
    old = vault.backup.create(folder)
    vault.privacy.erase_user(gone)
    assert vault.backup.apply_erasures(folder) == [old.id]
    rewritten = vault.backup.list(folder).get(old.id)
    assert vault.backup.verify(folder, old.id).ok

    # The erased user's chunk objects are still there, but the key that sealed them
    # is in no key block: decrypting the backup layer yields a chunk nobody can open.
    destination = vault.backup.destination(folder)
    backup_key = vault.store.keyring.subkey("backup")  # type: ignore[union-attr]
    key = data_key(backup_key, old.id)
    block = read_keyblock(destination, rewritten, key)
    known = {entry.key_id for entry in block.entries}
    mine = [o for o in rewritten.objects_of(ROLE) if chunk_name(o) in erased_chunks]
    assert len(mine) == len(erased_chunks) > 0
    for obj in mine:
        reader = StreamReader(destination, old.id, f"chunk-{chunk_name(obj)}", key, [obj])
        sealed = reader.read().read()
        assert CANARY not in sealed
        assert str(key_id_of(sealed)) not in known

    with restore(vault, folder, tmp_path / "r.db", backup_id=old.id) as db:
        assert db.files.list(gone) == []
        with pytest.raises(NotFoundError):
            db.files.read(f_gone.id)
        for name in erased_chunks:
            assert db.files.sealed_chunk(gone, name) is None
        assert db.files.read(f_kept.id) == kept_bytes
        assert db.files.check().ok
    for path in folder.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_bytes()


def test_retention_keeps_the_chunks_a_kept_incremental_needs(
    tmp_path: Path, clock: ManualClock, folder: Path
) -> None:
    created = mangostore.create(
        tmp_path / "vault.db", passphrase=PASSPHRASE, settings=SETTINGS, clock=clock
    )
    with created.db as vault:
        ann = vault.users.create(username="ann").id
        old_bytes = noise(700_000, seed=10)
        f_old = vault.files.put(ann, old_bytes)
        old_chain = vault.backup.create(folder, kind="full")
        clock.advance(DAY_MS)
        vault.files.put(ann, b"day one")
        vault.backup.create(folder)
        clock.advance(20 * DAY_MS)
        base = vault.backup.create(folder, kind="full")
        clock.advance(15 * DAY_MS)
        f_new = vault.files.put(ann, noise(200_000, seed=11))
        inc = vault.backup.create(folder)
        assert inc.parent == base.id
        clock.advance(20 * DAY_MS)  # the new full backup is now 35 days old
        vault.backup.configure(BackupPolicy(retention_days=30))
        pruned = vault.backup.prune(folder)
        assert old_chain.id in pruned.deleted
        assert base.id in pruned.kept  # the kept incremental needs it, and its chunks
        for obj in base.objects_of(ROLE):
            assert (folder / obj.name).is_file()
        for obj in old_chain.objects_of(ROLE):
            assert not (folder / obj.name).exists()
        assert vault.backup.verify(folder).ok
        with restore(vault, folder, tmp_path / "r.db") as db:
            assert db.files.read(f_old.id) == old_bytes  # its chunk is in the base
            assert len(db.files.read(f_new.id)) == 200_000


def test_a_backup_keeps_chunk_files_from_being_swept(vault: mangostore.Database) -> None:
    ann, _ = users(vault)
    record = vault.files.put(ann, noise(300_000, seed=12))
    names = chunk_names(vault)
    with vault.files.holding_chunks():
        vault.files.delete(record.id)
        assert all(vault.files.sealed_chunk(ann, n) is not None for n in names)
    assert vault.files.sweep().chunks_removed >= 1
    assert all(vault.files.sealed_chunk(ann, n) is None for n in names)


def test_restore_refuses_an_existing_chunk_folder(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    ann, _ = users(vault)
    record = vault.files.put(ann, b"hello")
    vault.backup.create(folder)
    target = tmp_path / "r.db"
    leftover = tmp_path / "r.db.files"
    leftover.mkdir()
    with pytest.raises(mangostore.errors.BackupError, match="already exists"):
        vault.backup.restore(target, passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    vault.backup.restore(target, passphrase=PASSPHRASE, to=folder, settings=SETTINGS, force=True)
    with mangostore.open(target, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        assert db.files.read(record.id) == b"hello"


def test_a_backup_refuses_when_a_used_chunk_is_missing(
    vault: mangostore.Database, folder: Path
) -> None:
    ann, _ = users(vault)
    vault.files.put(ann, noise(300_000, seed=13))
    for path in (vault.files.folder / "v1").glob("*/*"):
        path.unlink()
    with pytest.raises(mangostore.errors.BackupError, match=r"db\.files\.check"):
        vault.backup.create(folder)
    assert vault.backup.list(folder).backups == []
    assert [p for p in folder.rglob("*") if p.is_file()] == []
