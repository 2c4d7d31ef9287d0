"""A backup that fails or dies after its cut of the change log: the changes it would
have held reach the next backup, and what it left behind is not taken for a backup."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tests.backup.conftest import logical, restored
from tests.backup.test_processes import worker_env
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import writing
from mangostore.errors import BackupDestinationError


def _write(db: mangostore.Database, tag: str) -> None:
    db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (tag, "new"))
    db.execute("UPDATE t SET v = ? WHERE id = 3", (tag,))
    db.execute("DELETE FROM t WHERE id = (SELECT min(id) FROM t WHERE k LIKE 'k%')")


@pytest.fixture
def table(vault: mangostore.Database) -> mangostore.Database:
    vault.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)")
    with vault.store.transaction() as conn:
        conn.executemany("INSERT INTO t (k, v) VALUES (?, ?)", [(f"k{n}", "x") for n in range(50)])
    return vault


def test_changes_cut_by_a_backup_that_failed_reach_the_next_one(
    table: mangostore.Database, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table.backup.create(folder)
    before = sorted(p.name for p in folder.rglob("*") if p.is_file())
    _write(table, "first")
    put = writing.put_bytes

    def refuse_manifests(destination: Any, name: str, data: bytes) -> None:
        if name.startswith("manifests/"):
            raise BackupDestinationError("the destination went away")
        put(destination, name, data)

    with monkeypatch.context() as patch:
        patch.setattr(writing, "put_bytes", refuse_manifests)
        with pytest.raises(BackupDestinationError):
            table.backup.create(folder)
    # The failed backup moved the log's epoch on; it removed its objects.
    listed = table.backup.list(folder)
    assert len(listed.backups) == 1
    assert not listed.problems
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == before
    _write(table, "second")
    made = table.backup.create(folder)
    assert made.kind == "incremental"
    assert table.backup.verify(folder).ok
    assert restored(table, folder, tmp_path / "r.db") == logical(table)
    table.close()


def test_changes_cut_by_a_backup_whose_process_died_reach_the_next_one(
    table: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    table.backup.create(folder)
    _write(table, "first")
    path = table.store.path
    table.close()
    # Another process starts an incremental backup and is killed once its data stream
    # is written (the cut committed), before its manifest.
    script = textwrap.dedent(
        f"""
        import os, signal
        import mangostore
        from mangostore.backup import writing
        put = writing.put_bytes
        def die(destination, name, data):
            if name.startswith("manifests/"):
                os.kill(os.getpid(), signal.SIGKILL)
            put(destination, name, data)
        writing.put_bytes = die
        db = mangostore.open({str(path)!r}, passphrase=os.environ["MANGOSTORE_PASSPHRASE"])
        db.backup.create({str(folder)!r})
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=worker_env(), capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr.decode()
    db = mangostore.open(path, passphrase=PASSPHRASE)
    try:
        # What the dead process wrote is listed by no manifest (prune removes it once
        # it is older than the grace period).
        listed = db.backup.list(folder)
        assert len(listed.backups) == 1
        assert not listed.problems
        _write(db, "second")
        made = db.backup.create(folder)
        assert made.kind == "incremental"
        assert db.backup.verify(folder).ok
        assert restored(db, folder, tmp_path / "r.db") == logical(db)
    finally:
        db.close()
