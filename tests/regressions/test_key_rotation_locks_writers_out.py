"""Phase 1 of key rotation was one write transaction that rewrote and fsynced the
keyring once per user: its cost grew with the square of the users, another process's
writes failed with DatabaseLockedError meanwhile, and every killed run left all its
new keys in the keyring, unused, forever.

Now the keyring is written once per batch of users, each batch its own transaction,
and keys that no row names are removed when a rotation starts.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.keys.field_cipher import field_cipher_for
from mangostore.keys.keyring import DataKeyEntry
from mangostore.keys.rotation import USERS_PER_BATCH, rotate_field_keys

NOW = 1_700_000_000_000


def seed(db: mangostore.Database, users: int) -> list[str]:
    """Users with one encrypted value each, keys made in batches."""
    ids = [str(uuid.uuid4()) for _ in range(users)]
    with db.transaction():
        for user_id in ids:
            db.execute(
                "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (user_id, f"u-{user_id}", NOW, NOW),
            )
            db.users.update(user_id, security_profile={"id": user_id})
    return ids


def test_the_keyring_is_written_once_per_batch(
    encrypted_db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = USERS_PER_BATCH * 2 + 7
    ids = seed(encrypted_db, users)
    keyring = encrypted_db.keyring
    assert keyring is not None
    writes: list[int] = []
    original = keyring.put_data_keys

    def counting(entries: list[DataKeyEntry]) -> None:
        writes.append(len(entries))
        original(entries)

    monkeypatch.setattr(keyring, "put_data_keys", counting)
    report = rotate_field_keys(encrypted_db)
    assert writes == [USERS_PER_BATCH, USERS_PER_BATCH, 7]
    assert report.keys_created == report.keys_retired == users
    assert report.values_reencrypted == users
    assert encrypted_db.users.get(ids[-1]).security_profile == {"id": ids[-1]}


def test_keys_of_a_batch_that_never_committed_are_removed(
    encrypted_db: mangostore.Database,
) -> None:
    ids = seed(encrypted_db, 5)
    cipher = field_cipher_for(encrypted_db)
    keyring = encrypted_db.keyring
    assert cipher is not None
    assert keyring is not None

    class Killed(Exception):
        pass

    def killed_batch() -> None:
        """What a killed or failed batch leaves: keys stored, their rows rolled back."""
        with encrypted_db.store.transaction() as conn:
            cipher.rotate_user_keys(conn, ids)
            raise Killed

    with pytest.raises(Killed):
        killed_batch()
    assert len(keyring.data_keys()) == 10
    rotate_field_keys(encrypted_db)
    named = {row[0] for row in encrypted_db.query("SELECT id FROM field_keys")}
    assert {entry.key_id for entry in keyring.data_keys()} == named
    assert len(named) == 10  # five retired, five primary


WRITER = """
import sys, mangostore
db = mangostore.open(sys.argv[1], sys.argv[2], create=False)
db.execute("CREATE TABLE IF NOT EXISTS during (n INTEGER)")
print("READY", flush=True)
n = 0
while sys.stdin.readline().strip() == "write":
    db.execute("INSERT INTO during VALUES (?)", (n,))
    n += 1
    print("OK", flush=True)
db.close()
"""


def test_another_process_writes_between_batches(db_path: Path, fast_settings: Settings) -> None:
    """The rotation's progress callback runs between batches; the other process writes
    there, each write committing while the rotation is still under way."""
    with mangostore.create(db_path, PASSPHRASE, settings=fast_settings).db as db:
        seed(db, USERS_PER_BATCH * 3)
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), PASSPHRASE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdin is not None
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "READY"
            answers: list[str] = []

            def write_now(done: int, total: int | None, stage: str) -> None:
                child.stdin.write("write\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
                answers.append(child.stdout.readline().strip())  # type: ignore[union-attr]

            report = rotate_field_keys(db, batch_size=100, progress=write_now)
            child.stdin.write("stop\n")
            child.stdin.flush()
            assert child.wait(timeout=30) == 0
        assert answers
        assert set(answers) == {"OK"}
        assert report.values_reencrypted == USERS_PER_BATCH * 3
        assert db.query("SELECT count(*) FROM during")[0][0] == len(answers)
