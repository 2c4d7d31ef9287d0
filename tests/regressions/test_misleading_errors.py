"""Errors that named the wrong problem, or none.

- ``open()`` of an unencrypted SQLite file with a passphrase said the keyring was missing;
- the command line on a 0-byte file suggested ``create=True``, an argument of the API;
- ``mangostore status`` exited 0 on a database with a zeroed page;
- a failed create left ``<db>.keyring.lock`` behind;
- a lone surrogate in a passphrase raised ``UnicodeEncodeError``;
- a keyring path that is a directory raised ``IsADirectoryError``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlcipher3
from click.testing import CliRunner
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli
from mangostore.errors import ConfigurationError, KeyringError, NotADatabaseError
from mangostore.keys.keyring import keyring_path, lock_path


def test_plain_sqlite_opened_with_a_passphrase_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plain.sqlite"
    conn = sqlcipher3.connect(str(path))
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(NotADatabaseError, match="unencrypted SQLite database"):
        mangostore.open(path, PASSPHRASE, create=False)
    assert not keyring_path(path).exists()


def test_cli_on_an_empty_file_suggests_init(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    result = CliRunner().invoke(cli, ["status", str(path)], env={"MANGOSTORE_PASSPHRASE": "x"})
    assert result.exit_code == 1
    assert f"mangostore init {path}" in result.output
    assert "create=True" not in result.output
    with pytest.raises(NotADatabaseError, match=r"is empty \(0 bytes\)"):
        mangostore.open(path, PASSPHRASE, create=False)


def test_status_fails_on_a_zeroed_page(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, PASSPHRASE, settings=fast_settings).db as db:
        db.users.create_many(
            [{"username": f"user{i}", "email": f"{i}@" + "x" * 200} for i in range(300)]
        )
        db.checkpoint(truncate=True)
        page_size = int(db.query("PRAGMA page_size")[0][0])
        # The users table's root page: damage that a check must find, whatever other
        # tables the schema holds and wherever they lie.
        root = int(db.query("SELECT rootpage FROM sqlite_schema WHERE name = 'users'")[0][0])
    with open(db_path, "r+b") as handle:  # the database is closed: no lock to lose
        handle.seek(page_size * (root - 1))
        handle.write(b"\0" * page_size)
    env = {"MANGOSTORE_PASSPHRASE": PASSPHRASE}
    result = CliRunner().invoke(cli, ["status", str(db_path)], env=env)
    assert result.exit_code == 1, result.output
    assert "damaged" in result.output
    with mangostore.open(db_path, PASSPHRASE, create=False) as db:
        assert db.check_integrity() != []
        assert db.status().problems is None  # not asked to check
    skipped = CliRunner().invoke(cli, ["status", str(db_path), "--no-check"], env=env)
    assert skipped.exit_code == 0


def test_a_failed_create_leaves_no_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with pytest.raises(ConfigurationError):
        mangostore.create(path, "x\ud800y")
    assert sorted(os.listdir(tmp_path)) == []
    # A failure after the keyring was written takes its lock file along too.
    path.with_name("new.db-journal").mkdir()  # opening then fails (interrupted copy)
    with pytest.raises(NotADatabaseError):
        mangostore.create(path, PASSPHRASE)
    assert not lock_path(keyring_path(path)).exists()


def test_a_lone_surrogate_in_a_passphrase_is_a_typed_error(
    db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(db_path, PASSPHRASE, settings=fast_settings).db as db:
        with pytest.raises(ConfigurationError, match="lone surrogate"):
            db.change_passphrase(PASSPHRASE, "new \udc80 one")
        with pytest.raises(ConfigurationError, match="lone surrogate"):
            db.change_passphrase("old \udc80 one", "new one")
    with pytest.raises(ConfigurationError, match="lone surrogate"):
        mangostore.open(db_path, "\ud83d", create=False)
    mangostore.open(db_path, PASSPHRASE, create=False).close()


def test_a_keyring_that_is_a_directory_is_a_typed_error(
    tmp_path: Path, fast_settings: Settings
) -> None:
    path = tmp_path / "dir.db"
    mangostore.create(path, PASSPHRASE, settings=fast_settings).db.close()
    ring = keyring_path(path)
    ring.unlink()
    ring.mkdir()
    with pytest.raises(KeyringError, match="is a directory"):
        mangostore.open(path, PASSPHRASE, create=False)
