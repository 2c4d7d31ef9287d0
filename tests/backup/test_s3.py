"""Backups to S3-compatible storage (moto's server on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.backup.conftest import SETTINGS
from tests.conftest import PASSPHRASE

import mangostore


def test_s3_round_trip(vault: mangostore.Database, bucket: str, tmp_path: Path) -> None:
    full = vault.backup.create(bucket)
    vault.command_history.record(vault.users.list()[0].id, "make test")
    inc = vault.backup.create(bucket)
    assert inc.parent == full.id
    assert [m.id for m in vault.backup.list(bucket).backups] == [full.id, inc.id]
    assert vault.backup.verify(bucket).ok
    vault.backup.restore(tmp_path / "r.db", passphrase=PASSPHRASE, to=bucket, settings=SETTINGS)
    with mangostore.open(tmp_path / "r.db", passphrase=PASSPHRASE) as restored:
        assert restored.command_history.count() == vault.command_history.count()


def test_an_interrupted_upload_leaves_nothing_that_looks_like_a_backup(
    vault: mangostore.Database, bucket: str
) -> None:
    class Stop(Exception):
        pass

    def fail(done: int, total: int | None, stage: str) -> None:
        if done > 0:
            raise Stop

    with pytest.raises(Stop):
        vault.backup.create(bucket, progress=fail)
    dest = vault.backup.destination(bucket)
    assert dest.names("manifests/") == []
    assert dest.names("objects/") == []
    assert vault.backup.list(bucket).backups == []
