"""One encrypted cell rewritten as TEXT made every read of its table fail.

Someone editing a plain-pages database with the sqlite3 tool can turn an envelope into
TEXT that is not valid UTF-8; the driver then raised for the whole result, with the
envelope's bytes in the message, and key rotation stopped. Now only that value is
refused, as tampered, and no message shows its bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlcipher3
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.engine.connection import UndecodableText
from mangostore.errors import TamperedDataError
from mangostore.keys.rotation import rotate_field_keys
from mangostore.records import Unreadable


def test_damaged_cell_breaks_only_its_row(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, PASSPHRASE, encrypted=False, settings=fast_settings).db as db:
        ann = db.users.create(username="ann", security_profile={"mfa": True}).id
        bob = db.users.create(username="bob", security_profile={"mfa": False}).id
    raw = sqlcipher3.connect(str(db_path))
    original = raw.execute("SELECT security_profile FROM users WHERE id = ?", (ann,)).fetchone()[0]
    raw.execute(
        "UPDATE users SET security_profile = CAST(security_profile AS TEXT) WHERE id = ?", (ann,)
    )
    raw.commit()
    raw.close()

    with mangostore.open(db_path, PASSPHRASE, create=False) as db:
        assert db.users.get(bob).security_profile == {"mfa": False}
        with pytest.raises(TamperedDataError) as caught:
            _ = db.users.get(ann).security_profile
        assert original.hex() not in str(caught.value)
        listed = {user.username: user for user in db.users.list()}
        assert listed["bob"].security_profile == {"mfa": False}
        unreadable = listed["ann"].security_profile
        assert isinstance(unreadable, Unreadable)
        assert not unreadable
        assert repr(unreadable) == "<unreadable>"
        assert ann in unreadable.reason
        assert original.hex() not in unreadable.reason
        rows = db.query("SELECT id, security_profile FROM users ORDER BY username")
        damaged = rows[0]["security_profile"]
        assert isinstance(damaged, UndecodableText)
        assert repr(damaged) == f"<undecodable text, {len(original)} bytes>"
        assert str(damaged) == repr(damaged)
        report = rotate_field_keys(db)
        assert [ref.row_id for ref in report.unreadable] == [ann]
        assert report.values_reencrypted == 1  # bob's value
        assert db.users.get(bob).security_profile == {"mfa": False}
