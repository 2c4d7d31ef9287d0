"""Stored files in a user's export and erasure; rows deleted with their user."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tests.files.conftest import Vault, chunk_files, noise

from mangostore.errors import NotFoundError, TamperedDataError
from mangostore.filestore.chunkcrypt import key_id_of
from mangostore.filestore.owner_keys import OwnerKeys
from mangostore.privacy import verify_export

MiB = 1024 * 1024


def test_files_are_in_the_users_export(vault: Vault, tmp_path: Path) -> None:
    data = noise(3 * MiB, seed=1)
    record = vault.db.files.put(vault.ann, data, name="sample.wav", metadata={"take": 1})
    vault.db.files.put(vault.bob, b"bob's own")
    manifest = vault.db.privacy.export_user(vault.ann, tmp_path / "export")
    content = tmp_path / "export" / f"file-{record.id}"
    assert content.read_bytes() == data
    entry = next(f for f in manifest.files if f.table == "file_contents")
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    rows = (tmp_path / "export" / "files.jsonl").read_text().splitlines()
    assert [json.loads(r)["name"] for r in rows] == ["sample.wav"]
    assert verify_export(tmp_path / "export") == []
    content.write_bytes(data[:-1])
    assert verify_export(tmp_path / "export") == [content.name]


def test_erasure_deletes_the_users_chunks_and_rows(vault: Vault) -> None:
    ann_file = vault.db.files.put(vault.ann, noise(2 * MiB, seed=2))
    bob_file = vault.db.files.put(vault.bob, noise(2 * MiB, seed=3))
    bob_chunks = set(chunk_files(vault.db))
    bob_tag = vault.db.files.chunks.owner_tag(vault.bob)
    ann_chunks = {p for p in bob_chunks if p.parent.name != bob_tag}
    assert ann_chunks
    copy = next(iter(ann_chunks)).read_bytes()
    vault.db.privacy.erase_user(vault.ann)
    for table in ("files", "file_chunks"):
        rows = vault.db.query(f"SELECT count(*) AS n FROM {table} WHERE user_id = ?", [vault.ann])
        assert rows[0]["n"] == 0
    assert set(chunk_files(vault.db)) == bob_chunks - ann_chunks
    with pytest.raises(NotFoundError):
        vault.db.files.get(ann_file.id)
    with pytest.raises(NotFoundError):
        vault.db.files.put(vault.ann, b"after erasure")
    # A copy of one of the chunks (an old backup) is unreadable: the key is destroyed.
    with pytest.raises(TamperedDataError):
        OwnerKeys(vault.db.store).opening_key(key_id_of(copy), vault.ann)
    assert vault.db.files.read(bob_file.id) == noise(2 * MiB, seed=3)
    assert vault.db.files.check().ok


def test_deleting_a_user_deletes_their_files_and_the_sweep_their_chunks(vault: Vault) -> None:
    vault.db.files.put(vault.bob, noise(MiB, seed=4))
    kept = set(chunk_files(vault.db))
    vault.db.files.put(vault.ann, noise(2 * MiB, seed=5))
    vault.db.users.delete(vault.ann)
    rows = vault.db.query("SELECT count(*) AS n FROM files WHERE user_id = ?", [vault.ann])
    assert rows[0]["n"] == 0
    report = vault.db.files.check()
    assert report.ok
    assert report.sweep.orphans_removed >= 1
    assert set(chunk_files(vault.db)) == kept


def test_maintenance_sweeps_the_chunks_of_a_deleted_users_files(vault: Vault) -> None:
    vault.db.files.put(vault.bob, noise(MiB, seed=6))
    kept = set(chunk_files(vault.db))
    vault.db.files.put(vault.ann, noise(2 * MiB, seed=7))
    vault.db.users.delete(vault.ann)
    report = vault.db.maintenance()
    assert report.ok, report.failures
    assert report.files is not None
    assert report.files.orphans_removed >= 1
    assert set(chunk_files(vault.db)) == kept
    assert vault.db.files.check().ok
