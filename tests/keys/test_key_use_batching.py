"""Key lookups and key-use accounting off the per-value path: the owner's primary key
is read once per transaction, its uses are written once per key at commit, and the
nonce-use limit still holds exactly, rollbacks included (counted, the safe direction)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import ConstraintError, KeyManagementError
from mangostore.keys import field_cipher
from mangostore.keys.envelope import parse_header
from mangostore.keys.field_cipher import FieldCipher, field_cipher_for
from mangostore.keys.key_uses import KeyUses

NOW = 1_700_000_000_000
PROFILE = ("users", "security_profile")
SECRET = b'{"totp_seed":"a-very-secret-seed"}'

pytestmark = pytest.mark.database("memory_db", "encrypted_db")


def cipher_of(db: mangostore.Database) -> FieldCipher:
    cipher = field_cipher_for(db)
    assert cipher is not None
    return cipher


def add_user(db: mangostore.Database) -> str:
    user_id = str(uuid.uuid4())
    db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (user_id, f"user-{user_id}", NOW, NOW),
    )
    return user_id


def seal(db: mangostore.Database, user: str, plaintext: bytes = SECRET) -> bytes:
    """One value, in the caller's transaction (or its own)."""
    with db.store.transaction() as conn:
        return cipher_of(db).encrypt(conn, *PROFILE, user, user, plaintext)


def stored_count(db: mangostore.Database, key_id: str) -> int:
    """``field_keys.encryption_count`` as committed, read past the cipher."""
    return int(db.query("SELECT encryption_count FROM field_keys WHERE id = ?", (key_id,))[0][0])


def seal_then_fail(db: mangostore.Database, user: str, values: int) -> None:
    """Seal ``values`` values in a transaction that then rolls back."""
    with db.transaction():
        for _ in range(values):
            seal(db, user)
        raise RuntimeError("rolled back after nonces were drawn")


@contextmanager
def statements(db: mangostore.Database) -> Iterator[list[str]]:
    """Every statement the writer connection runs inside the block."""
    seen: list[str] = []
    conn = db.store.writer.connection
    conn.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def test_many_values_in_one_transaction_read_the_key_once_and_count_once(
    db: mangostore.Database,
) -> None:
    user = add_user(db)
    with statements(db) as seen, db.transaction():
        blobs = [seal(db, user, bytes([i])) for i in range(25)]
    reads = [s for s in seen if "FROM field_keys" in s]
    counts = [s for s in seen if s.startswith("UPDATE field_keys SET encryption_count")]
    assert len(reads) == 1  # the user had no key: looked for once, then made
    assert len(counts) == 1
    (key,) = cipher_of(db).list_keys(user)
    assert stored_count(db, key.id) == 25
    with statements(db) as seen, db.transaction():
        blobs += [seal(db, user, bytes([i])) for i in range(25, 26)]
    # Kept from the last transaction: nobody else has committed since.
    assert [s for s in seen if "FROM field_keys" in s] == []
    assert {parse_header(b)[2] for b in blobs} == {uuid.UUID(key.id)}
    assert stored_count(db, key.id) == 26


def test_the_count_is_written_in_the_committing_transaction(db: mangostore.Database) -> None:
    user = add_user(db)
    seal(db, user)
    (key,) = cipher_of(db).list_keys(user)
    with db.transaction():
        seal(db, user)
        seal(db, user)
        # Not yet written, but counted: list_keys includes what the commit will add.
        assert cipher_of(db).list_keys(user)[0].encryption_count == 3
    assert stored_count(db, key.id) == 3


def test_the_limit_holds_exactly_inside_one_transaction(
    db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(field_cipher, "MAX_ENCRYPTIONS_PER_KEY", 3)
    user = add_user(db)
    with db.transaction():
        blobs = [seal(db, user, bytes([i])) for i in range(7)]
    keys = cipher_of(db).list_keys(user)
    assert [(k.status, k.encryption_count) for k in keys] == [
        ("retired", 3),
        ("retired", 3),
        ("primary", 1),
    ]
    assert [parse_header(b)[2] for b in blobs] == [uuid.UUID(keys[i // 3].id) for i in range(7)]
    for i, blob in enumerate(blobs):
        assert cipher_of(db).decrypt(*PROFILE, user, user, blob) == bytes([i])


def test_uses_of_a_rolled_back_transaction_are_counted_at_the_next_commit(
    db: mangostore.Database,
) -> None:
    user = add_user(db)
    seal(db, user)
    (key,) = cipher_of(db).list_keys(user)
    with pytest.raises(RuntimeError, match="rolled back"):
        seal_then_fail(db, user, 2)
    assert stored_count(db, key.id) == 1  # the rolled-back transaction wrote nothing...
    assert cipher_of(db).list_keys(user)[0].encryption_count == 3  # ...its uses are kept
    seal(db, user)
    assert stored_count(db, key.id) == 4


def test_rolled_back_uses_count_against_the_limit(
    db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(field_cipher, "MAX_ENCRYPTIONS_PER_KEY", 3)
    user = add_user(db)
    first = seal(db, user)
    with pytest.raises(RuntimeError, match="rolled back"):
        seal_then_fail(db, user, 1)
    second = seal(db, user)  # the key's third use: two stored, one rolled back
    third = seal(db, user)  # over the limit: a new key
    assert parse_header(first)[2] == parse_header(second)[2] != parse_header(third)[2]
    old, new = cipher_of(db).list_keys(user)
    assert (old.status, old.encryption_count) == ("retired", 3)
    assert (new.status, new.encryption_count) == ("primary", 1)


def test_a_failed_commit_keeps_the_uses(db: mangostore.Database) -> None:
    user = add_user(db)
    seal(db, user)
    (key,) = cipher_of(db).list_keys(user)

    def seal_then_fail_to_commit() -> None:
        with db.store.transaction() as conn:
            conn.execute("PRAGMA defer_foreign_keys = ON")
            seal(db, user)
            # Broken until COMMIT, which then fails and rolls everything back.
            conn.execute(
                "INSERT INTO projects (id, user_id, name, path, created_at, updated_at) "
                "VALUES ('p', 'nobody', 'n', '/p', 0, 0)"
            )

    with pytest.raises(ConstraintError):
        seal_then_fail_to_commit()
    assert stored_count(db, key.id) == 1
    seal(db, user)
    assert stored_count(db, key.id) == 3


def test_a_key_made_in_a_rolled_back_savepoint_is_not_used_afterwards(
    db: mangostore.Database,
) -> None:
    user = add_user(db)
    lost: list[bytes] = []

    def seal_in_a_failing_savepoint() -> None:
        with db.transaction():
            lost.append(seal(db, user))  # makes the user's first key, in the savepoint
            raise RuntimeError("the savepoint rolls back, and the key's row with it")

    with db.transaction():
        with pytest.raises(RuntimeError, match="savepoint"):
            seal_in_a_failing_savepoint()
        kept = seal(db, user)
    assert parse_header(lost[0])[2] != parse_header(kept)[2]
    (key,) = cipher_of(db).list_keys(user)
    assert uuid.UUID(key.id) == parse_header(kept)[2]
    assert (key.status, key.encryption_count) == ("primary", 1)
    assert cipher_of(db).decrypt(*PROFILE, user, user, kept) == SECRET


def test_destroying_the_keys_in_the_transaction_drops_the_cached_key(
    db: mangostore.Database,
) -> None:
    user = add_user(db)
    with db.store.transaction() as conn:
        seal(db, user)
        cipher_of(db).destroy_user_keys(conn, user)
        with pytest.raises(KeyManagementError, match="erased"):
            seal(db, user)
    (key,) = cipher_of(db).list_keys(user)
    assert key.status == "destroyed"


def test_a_rotation_in_the_transaction_moves_later_values_to_the_new_key(
    db: mangostore.Database,
) -> None:
    user = add_user(db)
    with db.store.transaction() as conn:
        before = seal(db, user)
        (new,) = cipher_of(db).rotate_user_keys(conn, [user])
        after = seal(db, user)
    assert parse_header(before)[2] != new == parse_header(after)[2]
    old, current = cipher_of(db).list_keys(user)
    assert (old.status, old.encryption_count) == ("retired", 1)
    assert (current.status, current.encryption_count) == ("primary", 1)


@pytest.mark.database("encrypted_db")
def test_a_key_changed_by_another_connection_is_read_again(
    db: mangostore.Database, fast_settings: Settings
) -> None:
    # Another process (here another open of the same file) retires the key: its commit
    # moves the writer's data_version, and the next transaction reads the key again.
    user = add_user(db)
    first = seal(db, user)
    (key,) = cipher_of(db).list_keys(user)
    with mangostore.open(db.store.path, PASSPHRASE, settings=fast_settings) as other:
        other.execute("UPDATE field_keys SET status = 'retired' WHERE id = ?", (key.id,))
    second = seal(db, user)
    assert parse_header(first)[2] != parse_header(second)[2]
    old, new = cipher_of(db).list_keys(user)
    assert (old.id, old.status, new.status) == (key.id, "retired", "primary")


def test_a_schema_change_makes_the_key_be_read_again(db: mangostore.Database) -> None:
    user = add_user(db)
    seal(db, user)
    db.execute("CREATE TABLE unrelated (x)")
    with statements(db) as seen:
        seal(db, user)
    assert len([s for s in seen if "FROM field_keys" in s]) == 1


def test_a_rollback_forgets_the_kept_keys(db: mangostore.Database) -> None:
    user = add_user(db)
    seal(db, user)
    with pytest.raises(RuntimeError, match="rolled back"):
        seal_then_fail(db, user, 1)
    with statements(db) as seen:
        seal(db, user)
    assert len([s for s in seen if "FROM field_keys" in s]) == 1


def test_the_ledger_shows_no_key(db: mangostore.Database) -> None:
    user = add_user(db)
    with db.transaction():
        seal(db, user)
        cipher = cipher_of(db)
        ready = cipher.key_ready(user)
    assert ready
    key_bytes = [key for _, key in cipher._keys.values()]
    for shown in (repr(cipher), repr(KeyUses(cipher._lock, lambda: 1))):
        for key in key_bytes:
            assert key.hex() not in shown
            assert repr(key) not in shown


def test_key_ready_says_when_sealing_writes_nothing(
    db: mangostore.Database,
) -> None:
    user = add_user(db)
    seal(db, user)
    assert not cipher_of(db).key_ready(user)  # outside a transaction: never
    with db.transaction():
        assert cipher_of(db).key_ready(user)  # kept since the seal above
        assert not cipher_of(db).key_ready(add_user(db))  # a user without a key
    with pytest.raises(RuntimeError, match="rolled back"):
        seal_then_fail(db, user, 1)
    with db.transaction():
        assert not cipher_of(db).key_ready(user)  # forgotten with the rollback
        seal(db, user)
        assert cipher_of(db).key_ready(user)
