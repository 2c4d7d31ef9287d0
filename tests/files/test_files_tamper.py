"""Tampering with stored chunks: one generic error, nothing returned as if valid, and
check() naming what is missing or corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE
from tests.files.conftest import SETTINGS, Vault, chunk_files, noise

import mangostore
from mangostore.errors import TamperedDataError
from mangostore.filestore.chunking import MAX_CHUNK

MiB = 1024 * 1024


def stored(vault: Vault, size: int = 9 * MiB, seed: int = 1) -> tuple[str, bytes, list[Path]]:
    """Store a file for ann; return its id, bytes and chunk files (in file order)."""
    data = noise(size, seed=seed)
    record = vault.db.files.put(vault.ann, data)
    names = [
        r["chunk"]
        for r in vault.db.query(
            "SELECT chunk FROM file_parts WHERE file_id = ? ORDER BY seq", [record.id]
        )
    ]
    paths = {p.name: p for p in chunk_files(vault.db)}
    return record.id, data, [paths[n] for n in names]


def refused(vault: Vault, file_id: str) -> None:
    """Reading the file raises the one tamper error, by every route."""
    with pytest.raises(TamperedDataError, match="cannot be decrypted"):
        vault.db.files.read(file_id)
    with vault.db.files.open(file_id) as stream, pytest.raises(TamperedDataError):
        stream.read()


def test_a_flipped_bit_is_refused_and_checked(vault: Vault) -> None:
    file_id, _, paths = stored(vault)
    blob = bytearray(paths[1].read_bytes())
    blob[len(blob) // 2] ^= 0x01
    paths[1].write_bytes(bytes(blob))
    refused(vault, file_id)
    report = vault.db.files.check()
    assert not report.ok
    assert report.corrupt == (paths[1].name,)
    assert report.missing == ()
    assert report.damaged_files == (file_id,)
    quick = vault.db.files.check(verify=False)
    assert quick.corrupt == ()  # a quick check does not decrypt


def test_a_flipped_header_bit_is_refused(vault: Vault) -> None:
    file_id, _, paths = stored(vault, size=MiB)
    blob = bytearray(paths[0].read_bytes())
    blob[4] ^= 0x02  # an unknown flag
    paths[0].write_bytes(bytes(blob))
    refused(vault, file_id)
    blob[4] ^= 0x02
    blob[6] ^= 0x01  # the key id
    paths[0].write_bytes(bytes(blob))
    refused(vault, file_id)


@pytest.mark.parametrize("keep", [0, 20, 40, -1])
def test_a_truncated_chunk_is_refused(vault: Vault, keep: int) -> None:
    file_id, _, paths = stored(vault, size=2 * MiB)
    blob = paths[0].read_bytes()
    paths[0].write_bytes(blob[:keep] if keep >= 0 else blob[:-1])
    refused(vault, file_id)
    assert vault.db.files.check().corrupt == (paths[0].name,)


def test_swapped_chunks_are_refused(vault: Vault) -> None:
    file_id, _, paths = stored(vault)
    first, second = paths[0].read_bytes(), paths[1].read_bytes()
    paths[0].write_bytes(second)
    paths[1].write_bytes(first)
    refused(vault, file_id)
    assert set(vault.db.files.check().corrupt) == {paths[0].name, paths[1].name}


def test_a_missing_chunk_is_refused_and_reported(vault: Vault) -> None:
    file_id, data, paths = stored(vault)
    paths[2].unlink()
    refused(vault, file_id)
    # The chunks before it are still readable by seeking; none after is made up.
    with vault.db.files.open(file_id) as stream:
        assert stream.read(1000) == data[:1000]
    report = vault.db.files.check()
    assert report.missing == (paths[2].name,)
    assert report.damaged_files == (file_id,)


def test_a_chunk_moved_to_another_user_is_refused(vault: Vault) -> None:
    ann_id, _, ann_paths = stored(vault, size=MiB, seed=2)
    bob = vault.db.files.put(vault.bob, noise(MiB, seed=3))
    bob_paths = [p for p in chunk_files(vault.db) if p not in ann_paths]
    shutil.copyfile(ann_paths[0], bob_paths[0])
    refused(vault, bob.id)
    assert vault.db.files.read(ann_id)  # ann's own copy still reads


def test_reordered_chunks_of_equal_size_fail_the_whole_file_digest(vault: Vault) -> None:
    data = b"\1" * MAX_CHUNK + b"\2" * MAX_CHUNK
    record = vault.db.files.put(vault.ann, data)
    rows = vault.db.query(
        "SELECT seq, chunk FROM file_parts WHERE file_id = ? ORDER BY seq", [record.id]
    )
    assert len(rows) == 2
    with vault.db.transaction():
        for seq, chunk in ((0, rows[1]["chunk"]), (1, rows[0]["chunk"])):
            vault.db.execute(
                "UPDATE file_parts SET chunk = ? WHERE file_id = ? AND seq = ?",
                [chunk, record.id, seq],
            )
    # Every chunk is genuine, so only the whole-file check can tell: nothing of the
    # last chunk is returned. (This database's pages are encrypted and authenticated:
    # only a holder of the key could have changed the list, so a plain read does not
    # hash the file; asked to, it does, and an export always does.)
    with vault.db.files.open(record.id, check_digest=True) as stream:
        assert stream.read(MAX_CHUNK) == b"\2" * MAX_CHUNK
        with pytest.raises(TamperedDataError):
            stream.read(1)
    with pytest.raises(TamperedDataError):
        vault.db.files.export(record.id, vault.path.parent / "out.bin")
    assert not (vault.path.parent / "out.bin").exists()
    assert vault.db.files.read(record.id) == b"\2" * MAX_CHUNK + b"\1" * MAX_CHUNK


def test_where_pages_are_not_encrypted_every_full_read_checks_the_digest(
    tmp_path: Path,
) -> None:
    db = mangostore.create(
        tmp_path / "plain.db", passphrase=PASSPHRASE, settings=SETTINGS, encrypted=False
    ).db
    with db:
        ann = db.users.create(username="ann").id
        record = db.files.put(ann, b"\1" * MAX_CHUNK + b"\2" * MAX_CHUNK)
        rows = db.query(
            "SELECT seq, chunk FROM file_parts WHERE file_id = ? ORDER BY seq", [record.id]
        )
        with db.transaction():
            for seq, chunk in ((0, rows[1]["chunk"]), (1, rows[0]["chunk"])):
                db.execute(
                    "UPDATE file_parts SET chunk = ? WHERE file_id = ? AND seq = ?",
                    [chunk, record.id, seq],
                )
        with pytest.raises(TamperedDataError):
            db.files.read(record.id)


def test_a_chunk_list_that_does_not_add_up_is_refused(vault: Vault) -> None:
    file_id, _, _ = stored(vault, size=3 * MiB)
    vault.db.execute("DELETE FROM file_parts WHERE file_id = ? AND seq = 1", [file_id])
    with pytest.raises(TamperedDataError):
        vault.db.files.open(file_id)
    assert vault.db.files.check().damaged_files == (file_id,)


def test_an_export_of_a_tampered_file_leaves_nothing(vault: Vault, tmp_path: Path) -> None:
    file_id, _, paths = stored(vault)
    paths[-1].write_bytes(paths[-1].read_bytes()[:-3])
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "out.bin"
    with pytest.raises(TamperedDataError):
        vault.db.files.export(file_id, target)
    assert list(target.parent.iterdir()) == []


def test_an_export_of_a_tampered_file_leaves_nothing_behind(vault: Vault, tmp_path: Path) -> None:
    file_id, _, paths = stored(vault)
    blob = bytearray(paths[-1].read_bytes())
    blob[-1] ^= 0x01  # the last chunk: earlier ones were already written out
    paths[-1].write_bytes(bytes(blob))
    out = tmp_path / "out"
    out.mkdir()
    target = out / "exported.bin"
    with pytest.raises(TamperedDataError):
        vault.db.files.export(file_id, target)
    assert list(out.iterdir()) == []  # no target, no temporary file
