"""Erasing a user reaches every kept backup through its key block."""

from __future__ import annotations

from pathlib import Path

from tests.backup.conftest import SETTINGS
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup.keyblock import read_keyblock
from mangostore.backup.manifest import data_key


def test_erased_users_stay_unreadable_in_old_backups(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    gone, kept = (u.id for u in vault.users.list(order_by="created_at"))
    old = vault.backup.create(folder)
    before = old.keys_version
    vault.privacy.erase_user(gone)
    assert vault.backup.apply_erasures(folder) == [old.id]
    rewritten = vault.backup.list(folder).get(old.id)
    assert rewritten.keys_version == before + 1
    assert vault.backup.verify(folder, old.id).ok
    backup_key = vault.store.keyring.subkey("backup")  # type: ignore[union-attr]
    block = read_keyblock(folder_dest(vault, folder), rewritten, data_key(backup_key, old.id))
    assert gone in block.erased_users
    assert all(entry.user_id != gone for entry in block.entries)
    # A restore of the old backup yields none of the erased user's rows or fields.
    report = vault.backup.restore(
        tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, backup_id=old.id, settings=SETTINGS
    )
    assert report.erasures_reapplied == 1
    with mangostore.open(tmp_path / "r.db", passphrase=PASSPHRASE, settings=SETTINGS) as db:
        ids = {u.id for u in db.users.list()}
        assert gone not in ids
        assert kept in ids
        assert db.users.get(kept).security_profile["canary"].startswith("secret-canary")
        assert (
            db.query("SELECT count(*) AS n FROM command_history WHERE user_id = ?", [gone])[0]["n"]
            == 0
        )
    # No object of any backup holds a canary in plaintext.
    for path in folder.rglob("*"):
        if path.is_file():
            assert b"secret-canary" not in path.read_bytes()


def folder_dest(vault: mangostore.Database, folder: Path):  # type: ignore[no-untyped-def]
    return vault.backup.destination(folder)


def test_a_backup_made_after_an_erasure_lists_it(vault: mangostore.Database, folder: Path) -> None:
    gone = vault.users.list()[0].id
    vault.privacy.erase_user(gone)
    made = vault.backup.create(folder)
    backup_key = vault.store.keyring.subkey("backup")  # type: ignore[union-attr]
    block = read_keyblock(folder_dest(vault, folder), made, data_key(backup_key, made.id))
    assert block.erased_users == (gone,)
    assert vault.backup.apply_erasures(folder) == []


def test_an_erasure_rewrites_the_backups_at_the_saved_destination_at_once(
    vault: mangostore.Database, folder: Path
) -> None:
    gone = vault.users.list(order_by="created_at")[0].id
    vault.backup.save_destination(str(folder))
    old = vault.backup.create()
    report = vault.privacy.erase_user(gone)
    assert report.backups_rewritten == (old.id,)
    assert report.backups_not_reached is None
    assert vault.backup.list().get(old.id).keys_version == old.keys_version + 1


def test_an_erasure_stands_when_the_saved_destination_is_out_of_reach(
    vault: mangostore.Database, folder: Path
) -> None:
    gone = vault.users.list(order_by="created_at")[0].id
    blocker = folder / "not-a-folder"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the destination folder should be")
    vault.backup.save_destination(str(blocker / "backups"))
    report = vault.privacy.erase_user(gone)
    assert report.backups_rewritten == ()
    assert report.backups_not_reached
    assert gone not in {u.id for u in vault.users.list()}
