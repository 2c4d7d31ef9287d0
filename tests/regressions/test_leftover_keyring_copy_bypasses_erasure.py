"""A killed passphrase change left a complete copy of the keyring beside the database.

The copy (``.keyring-XXXXXXXX``) opened the current database with the old passphrase and
still held the keys of users erased since. Now a keyring copy is named after its
keyring, every open removes leftovers of a killed writer, and erasure removes (and
reports) any it finds.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import WrongPassphraseError
from mangostore.keys.keyring import keyring_path

SETTINGS = Settings(kdf=FAST_KDF)

CHANGER = """
import sys, mangostore
db = mangostore.open(sys.argv[1], sys.argv[2], create=False)
print("CHANGING", flush=True)
old, new = sys.argv[2], sys.argv[3]
while True:
    db.change_passphrase(old, new)
    old, new = new, old
"""


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".tmp-" in p.name or p.name.startswith(".keyring-")]


@pytest.mark.slow
def test_killed_passphrase_changes_leave_no_keyring_copy(db_path: Path) -> None:
    mangostore.create(db_path, PASSPHRASE, settings=SETTINGS).db.close()
    current, other = PASSPHRASE, "another passphrase entirely"
    for _ in range(8):
        with subprocess.Popen(
            [sys.executable, "-c", CHANGER, str(db_path), current, other],
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "CHANGING"
            time.sleep(random.uniform(0, 0.3))
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        # Whichever passphrase the keyring was left under opens it, and the open
        # removes whatever copy the killed writer left.
        for phrase in (current, other):
            try:
                mangostore.open(db_path, phrase, create=False).close()
            except WrongPassphraseError:
                continue
            if phrase != current:
                current, other = other, current
            break
        else:
            pytest.fail("neither passphrase opens the database")
        assert _leftovers(db_path.parent) == []


def test_open_and_erasure_remove_keyring_copies(db_path: Path) -> None:
    with mangostore.create(db_path, PASSPHRASE, settings=SETTINGS).db as db:
        ann = db.users.create(username="ann", security_profile={"pin": "1234"}).id
    ring = keyring_path(db_path)
    current = Path(f"{ring}.tmp-k1lled01")
    legacy = db_path.parent / ".keyring-k1lled02"
    foreign = db_path.parent / ".keyring-0therdb0"
    shutil.copyfile(ring, current)
    shutil.copyfile(ring, legacy)
    foreign.write_text('{"vault_id": "someone else"}')
    with mangostore.open(db_path, PASSPHRASE, create=False) as db:
        assert not current.exists()
        assert not legacy.exists()
        assert foreign.exists()  # another database's file is not ours to delete
        shutil.copyfile(ring, current)  # a copy made while the database is open
        report = db.privacy.erase_user(ann)
        assert report.keyring_copies_removed == (current,)
        assert not current.exists()
