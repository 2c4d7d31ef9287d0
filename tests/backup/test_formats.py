"""Backups made in an older format still verify, restore, and lead to new backups."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from tests.backup.conftest import SETTINGS, logical
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import open_destination, restore_backup
from mangostore.backup.catalog import load_catalog
from mangostore.backup.manifest import VERSION, manifest_name, sign_manifest
from mangostore.errors import BackupCorruptError, BackupError
from mangostore.keys.keyring import Keyring

DATA = Path(__file__).parent / "data" / "v1"
#: The schema version of the database the fixture was made from: opening the restored
#: database applies later migrations, whose rows in ``schema_migrations`` the digest
#: leaves out.
FIXTURE_SCHEMA = 20


def _expected() -> dict[str, str]:
    lines = (DATA / "expected.txt").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines)


@pytest.fixture
def v1(tmp_path: Path) -> tuple[Path, Keyring]:
    """A copy of the version-1 backups and the unlocked keyring of their vault."""
    folder = tmp_path / "backups"
    shutil.copytree(DATA / "backups", folder)
    ring_path = tmp_path / "old.db.keyring"
    shutil.copy(DATA / "vault.keyring", ring_path)
    return folder, Keyring.unlock(ring_path, passphrase=PASSPHRASE)


def _restore(folder: Path, ring: Keyring, into: Path, **how: object) -> mangostore.Database:
    restore_backup(folder, ring, mangostore.create, into, PASSPHRASE, settings=SETTINGS, **how)
    return mangostore.open(into, passphrase=PASSPHRASE, settings=SETTINGS)


def test_version_1_chain_restores_exactly(v1: tuple[Path, Keyring], tmp_path: Path) -> None:
    folder, ring = v1
    with _restore(folder, ring, tmp_path / "r.db") as db:
        assert db.check_integrity(quick=False) == []
        content = logical(db)
        content["schema_migrations"] = [
            row for row in content["schema_migrations"] if row[0] <= FIXTURE_SCHEMA
        ]
        digest = hashlib.sha256(repr(sorted(content.items())).encode()).hexdigest()
        assert digest == _expected()["logical-sha256"]
        assert db.query("SELECT t FROM kinds WHERE id = 2")[0][0] == "changed"


def test_version_1_backups_verify(v1: tuple[Path, Keyring], tmp_path: Path) -> None:
    folder, ring = v1
    expected = _expected()
    with _restore(folder, ring, tmp_path / "r.db") as db:
        for backup_id in (expected["full"], expected["incremental"]):
            report = db.backup.verify(folder, backup_id)
            assert report.ok, report.problems
        listed = {m.id: m.format_version for m in db.backup.list(folder).backups}
        assert listed == {expected["full"]: 1, expected["incremental"]: 1}


def test_a_version_1_backup_is_not_built_on(v1: tuple[Path, Keyring], tmp_path: Path) -> None:
    folder, ring = v1
    with _restore(folder, ring, tmp_path / "r.db") as db:
        with pytest.raises(BackupError, match="older format"):
            db.backup.create(folder, kind="incremental")
        made = db.backup.create(folder)
        assert made.kind == "full"
        assert made.format_version == VERSION
        db.execute("UPDATE kinds SET n = 8 WHERE id = 1")
        inc = db.backup.create(folder)
        assert inc.kind == "incremental"
        assert inc.changed_rows >= 1
        snapshot = logical(db)
        # Every backup here, old and new, still verifies and restores.
        for manifest in db.backup.list(folder).backups:
            assert db.backup.verify(folder, manifest.id).ok
    with _restore(folder, ring, tmp_path / "r2.db") as again:
        assert logical(again) == snapshot


def test_erasure_rewrites_version_1_backups_in_their_format(
    v1: tuple[Path, Keyring], tmp_path: Path
) -> None:
    folder, ring = v1
    with _restore(folder, ring, tmp_path / "r.db") as db:
        gone = db.users.list(order_by="created_at")[0].id
        db.privacy.erase_user(gone)
        rewritten = db.backup.apply_erasures(folder)
        assert sorted(rewritten) == sorted(_expected()[k] for k in ("full", "incremental"))
        for manifest in db.backup.list(folder).backups:
            assert manifest.format_version == 1
            assert manifest.keys_version == 2
            assert db.backup.verify(folder, manifest.id).ok


def test_a_newer_format_is_refused_with_advice(v1: tuple[Path, Keyring]) -> None:
    folder, ring = v1
    backup_key = ring.subkey("backup")
    destination = open_destination(folder)
    full = load_catalog(destination, backup_key, ring.vault_id).get(_expected()["full"])
    newer = replace(full, format_version=99)
    (folder / manifest_name(full.id)).write_bytes(sign_manifest(newer, backup_key))
    catalog = load_catalog(destination, backup_key, ring.vault_id)
    assert [name for name, _ in catalog.problems] == [manifest_name(full.id)]
    assert "format version 99" in str(catalog.problems[0][1])
    assert "upgrade mangostore" in str(catalog.problems[0][1])
    with pytest.raises(BackupCorruptError):
        catalog.get(full.id)


def test_a_version_3_backup_is_read_and_not_built_on(tmp_path: Path) -> None:
    # Version 3 differs from 4 only in its manifest (no ``seq``): its readers refuse
    # a field they do not know, so a re-signed version 3 manifest stays without one.
    db = mangostore.create(tmp_path / "v.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    folder = tmp_path / "bk"
    made = db.backup.create(folder)
    ring = db.store.keyring
    assert ring is not None
    key = ring.subkey("backup")
    old = replace(made, format_version=3)
    (folder / manifest_name(made.id)).write_bytes(sign_manifest(old, key))
    assert "seq" not in json.loads((folder / manifest_name(made.id)).read_bytes())
    assert db.backup.list(folder).backups[0].format_version == 3
    assert db.backup.verify(folder, made.id).ok
    db.execute("UPDATE users SET email = 'x@example.org'")
    with pytest.raises(BackupError, match="older format"):
        db.backup.create(folder, kind="incremental")
    assert db.backup.create(folder).kind == "full"
    db.close()
