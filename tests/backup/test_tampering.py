"""Every damaged, missing, reordered or foreign object is named, and refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.backup.conftest import SETTINGS, fill
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import Manifest, stream
from mangostore.backup.policy import BackupPolicy
from mangostore.errors import BackupCorruptError


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 2 KiB and parts of one chunk, so a backup has many of both."""
    monkeypatch.setattr(stream, "CHUNK_BYTES", 2048)


@pytest.fixture
def backed_up(
    vault: mangostore.Database, folder: Path, small_chunks: None
) -> tuple[mangostore.Database, Manifest]:
    fill(vault, users=2, commands=300)
    vault.backup.configure(BackupPolicy(part_bytes=1))
    made = vault.backup.create(folder)
    assert len(made.objects_of("data")) > 3
    return vault, made


def _refused(db: mangostore.Database, folder: Path, target: Path, name: str) -> None:
    """Verify names ``name``; a restore refuses with it and leaves nothing behind."""
    report = db.backup.verify(folder)
    assert not report.ok, report
    assert report.bad_object == name, report
    with pytest.raises(BackupCorruptError) as caught:
        db.backup.restore(target, passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    assert caught.value.object_name == name
    assert list(target.parent.glob(target.name + "*")) == []
    assert [p for p in target.parent.iterdir() if "restoring" in p.name] == []


def test_a_sound_backup_verifies(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path
) -> None:
    db, made = backed_up
    report = db.backup.verify(folder)
    assert report.ok
    assert report.objects_checked == len(made.objects)


def test_a_flipped_byte_is_named(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path, tmp_path: Path
) -> None:
    db, made = backed_up
    name = made.objects_of("data")[2].name
    path = folder / name
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))
    _refused(db, folder, tmp_path / "r.db", name)


def test_a_truncated_object_is_named(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path, tmp_path: Path
) -> None:
    db, made = backed_up
    name = made.objects_of("data")[-1].name
    path = folder / name
    path.write_bytes(path.read_bytes()[:-10])
    _refused(db, folder, tmp_path / "r.db", name)


def test_reordered_objects_are_named(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path, tmp_path: Path
) -> None:
    db, made = backed_up
    first, second = (folder / o.name for o in made.objects_of("data")[:2])
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    _refused(db, folder, tmp_path / "r.db", made.objects_of("data")[0].name)


def test_a_missing_object_is_named(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path, tmp_path: Path
) -> None:
    db, made = backed_up
    name = made.objects_of("data")[1].name
    (folder / name).unlink()
    _refused(db, folder, tmp_path / "r.db", name)


def test_an_object_swapped_between_two_backups_is_named(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path, tmp_path: Path
) -> None:
    db, made = backed_up
    other = db.backup.create(folder, kind="full")
    ours, theirs = made.objects_of("keys")[0].name, other.objects_of("keys")[0].name
    (folder / theirs).write_bytes((folder / ours).read_bytes())
    report = db.backup.verify(folder, other.id)
    assert not report.ok
    assert report.bad_object == theirs


def test_a_stream_cut_at_a_part_boundary_is_reported_as_truncated(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path
) -> None:
    db, made = backed_up
    from mangostore.backup.manifest import data_key
    from mangostore.backup.stream import StreamReader

    key = data_key(db.store.keyring.subkey("backup"), made.id)  # type: ignore[union-attr]
    parts = made.objects_of("data")[:-1]
    reader = StreamReader(db.backup.destination(folder), made.id, "data", key, parts)
    with pytest.raises(BackupCorruptError, match="truncated") as caught:
        list(reader.chunks())
    assert caught.value.object_name == parts[-1].name


def test_an_edited_manifest_fails_its_signature(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    made = vault.backup.create(folder)
    name = f"manifests/{made.id}.json"
    path = folder / name
    path.write_text(path.read_text().replace('"depth": 0', '"depth": 1'))
    catalog = vault.backup.list(folder)
    assert catalog.backups == []
    assert catalog.problems[0][0] == name
    with pytest.raises(BackupCorruptError, match="signature") as caught:
        vault.backup.restore(tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, backup_id=made.id)
    assert caught.value.object_name == name


def test_a_backup_of_another_vault_is_refused(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    with mangostore.create(tmp_path / "other.db", passphrase=PASSPHRASE, settings=SETTINGS) as (
        other,
        _,
    ):
        foreign = other.backup.create(folder)
    name = f"manifests/{foreign.id}.json"
    catalog = vault.backup.list(folder)
    assert catalog.backups == []
    assert catalog.problems[0][0] == name
    assert "another vault" in str(catalog.problems[0][1])
    with pytest.raises(BackupCorruptError, match="another vault"):
        vault.backup.restore(
            tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, backup_id=foreign.id
        )
    assert not (tmp_path / "r.db").exists()


def test_objects_hold_no_plaintext(vault: mangostore.Database, folder: Path) -> None:
    vault.backup.create(folder)
    for path in folder.rglob("objects/**/*"):
        if path.is_file():
            blob = path.read_bytes()
            assert b"example.org" not in blob
            assert b"git push" not in blob


def test_a_damaged_index_makes_the_next_automatic_backup_a_full_one(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path, tmp_path: Path
) -> None:
    db, made = backed_up
    path = folder / made.objects_of("index")[-1].name
    path.write_bytes(path.read_bytes()[:-10])
    db.users.create(username="after the damage")
    with pytest.raises(BackupCorruptError, match="make a full backup"):
        db.backup.create(folder, kind="incremental")
    again = db.backup.create(folder)  # auto: the parent's index is needed no more
    assert again.kind == "full"
    assert db.backup.verify(folder).ok
    target = tmp_path / "r.db"
    db.backup.restore(target, passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    with mangostore.open(target, passphrase=PASSPHRASE, settings=SETTINGS) as restored:
        assert restored.users.exists(username="after the damage")


def test_a_flipped_byte_in_an_incremental_is_named(
    backed_up: tuple[mangostore.Database, Manifest], folder: Path, tmp_path: Path
) -> None:
    db, _ = backed_up
    commands = db.command_history.list(limit=40)
    for command in commands[:20]:  # removed rows: the incremental carries E records
        db.command_history.delete(command.id)
    for command in commands[20:]:
        db.command_history.update(command.id, exit_code=7)
    made = db.backup.create(folder)
    assert made.kind == "incremental"
    assert made.deleted_rows >= 20
    name = made.objects_of("data")[0].name
    path = folder / name
    data = bytearray(path.read_bytes())
    data[-20] ^= 1
    path.write_bytes(bytes(data))
    _refused(db, folder, tmp_path / "r.db", name)
