"""Per-user data keys: made on first use, kept in the keyring (never in the file), rotated
at the use limit, and destroyed for erasure."""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.errors import KeyManagementError, TamperedDataError, UnknownColumnError
from mangostore.keys import field_cipher
from mangostore.keys.envelope import parse_header
from mangostore.keys.field_cipher import (
    FieldCipher,
    field_cipher_for,
    unwrap_data_key,
    wrap_data_key,
)
from mangostore.keys.keyring import DataKeyEntry, keyring_path

NOW = 1_700_000_000_000
PROFILE = ("users", "security_profile")
SECRET = b'{"totp_seed":"ORSXG5A-a-very-secret-seed"}'


@pytest.fixture(params=["memory_db", "encrypted_db"])
def keyed_db(request: pytest.FixtureRequest) -> mangostore.Database:
    """A database with a keyring: in memory, then file-backed with encrypted pages."""
    db: mangostore.Database = request.getfixturevalue(request.param)
    return db


def cipher_of(db: mangostore.Database) -> FieldCipher:
    cipher = field_cipher_for(db)
    assert cipher is not None
    return cipher


def add_user(db: mangostore.Database, user_id: str | None = None) -> str:
    user_id = user_id or str(uuid.uuid4())
    db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (user_id, f"user-{user_id}", NOW, NOW),
    )
    return user_id


def store_profile(db: mangostore.Database, user_id: str, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` into the user's security_profile, as a repository would."""
    cipher = cipher_of(db)
    with db.store.transaction() as conn:
        blob = cipher.encrypt(conn, *PROFILE, user_id, user_id, plaintext)
        conn.execute("UPDATE users SET security_profile = ? WHERE id = ?", (blob, user_id))
    return blob


def read_profile(db: mangostore.Database, user_id: str) -> bytes:
    stored = db.query("SELECT security_profile FROM users WHERE id = ?", (user_id,))[0][0]
    return cipher_of(db).decrypt(*PROFILE, user_id, user_id, stored)


def encrypt_once(db: mangostore.Database, user_id: str, plaintext: bytes = SECRET) -> bytes:
    with db.store.transaction() as conn:
        return cipher_of(db).encrypt(conn, *PROFILE, user_id, user_id, plaintext)


# -- attaching to a database ---------------------------------------------------------------


def test_a_database_without_keyring_has_no_cipher(plain_db: mangostore.Database) -> None:
    assert field_cipher_for(plain_db) is None


def test_the_cipher_is_made_once_per_database(
    memory_db: mangostore.Database, fast_settings: Settings
) -> None:
    assert field_cipher_for(memory_db) is field_cipher_for(memory_db)
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=fast_settings) as other:
        assert field_cipher_for(other) is not field_cipher_for(memory_db)
        assert cipher_of(other).vault_id != cipher_of(memory_db).vault_id


def test_the_repr_shows_no_key(memory_db: mangostore.Database) -> None:
    user = add_user(memory_db)
    encrypt_once(memory_db, user)
    cipher = cipher_of(memory_db)
    (key,) = [key for _, key in cipher._keys.values()]
    assert key.hex() not in repr(cipher)
    assert "1 keys cached" in repr(cipher)


# -- keys made on first use ----------------------------------------------------------------


def test_the_first_encryption_makes_a_primary_key_in_the_keyring(
    keyed_db: mangostore.Database,
) -> None:
    cipher = cipher_of(keyed_db)
    user = add_user(keyed_db)
    assert cipher.list_keys(user) == []
    blob = store_profile(keyed_db, user, SECRET)
    (info,) = cipher.list_keys(user)
    assert info.status == "primary"
    assert info.encryption_count == 1
    assert info.retired_at is None
    assert info.destroyed_at is None
    assert parse_header(blob)[2] == uuid.UUID(info.id)
    assert keyed_db.keyring is not None
    entry = keyed_db.keyring.get_data_key(info.id)
    assert entry is not None
    assert entry.user_id == user
    assert read_profile(keyed_db, user) == SECRET


def test_key_times_come_from_the_database_clock(fast_settings: Settings) -> None:
    clock = ManualClock(NOW)
    db = mangostore.open(":memory:", passphrase=PASSPHRASE, settings=fast_settings, clock=clock)
    try:
        user = add_user(db)
        store_profile(db, user, SECRET)
        (info,) = cipher_of(db).list_keys(user)
        assert info.created_at == NOW
        clock.advance(5_000)
        with db.store.transaction() as conn:
            cipher_of(db).destroy_user_keys(conn, user)
        (info,) = cipher_of(db).list_keys(user)
        assert info.destroyed_at == NOW + 5_000
    finally:
        db.close()


def test_the_same_key_seals_later_values_and_counts_them(keyed_db: mangostore.Database) -> None:
    cipher = cipher_of(keyed_db)
    user = add_user(keyed_db)
    blobs = [encrypt_once(keyed_db, user, bytes([i])) for i in range(5)]
    assert len({parse_header(b)[2] for b in blobs}) == 1
    (info,) = cipher.list_keys(user)
    assert info.encryption_count == 5


def test_each_user_gets_their_own_key(keyed_db: mangostore.Database) -> None:
    alice, bob = add_user(keyed_db), add_user(keyed_db)
    a, b = encrypt_once(keyed_db, alice), encrypt_once(keyed_db, bob)
    assert parse_header(a)[2] != parse_header(b)[2]
    with pytest.raises(TamperedDataError):
        cipher_of(keyed_db).decrypt(*PROFILE, alice, bob, a)


def test_the_key_is_in_the_keyring_before_its_row_exists(
    memory_db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = memory_db.keyring
    assert keyring is not None
    seen: list[int] = []
    original = keyring.put_data_keys

    def spy(entries: list[DataKeyEntry]) -> None:
        for entry in entries:
            rows = memory_db.query("SELECT count(*) FROM field_keys WHERE id = ?", (entry.key_id,))
            seen.append(rows[0][0])
        original(entries)

    monkeypatch.setattr(keyring, "put_data_keys", spy)
    encrypt_once(memory_db, add_user(memory_db))
    assert seen == [0]


def test_a_rolled_back_encryption_leaves_no_key_row_and_no_count(
    memory_db: mangostore.Database,
) -> None:
    cipher = cipher_of(memory_db)
    user = add_user(memory_db)

    def encrypt_then_fail() -> None:
        with memory_db.store.transaction() as conn:
            cipher.encrypt(conn, *PROFILE, user, user, SECRET)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        encrypt_then_fail()
    assert cipher.list_keys(user) == []
    encrypt_once(memory_db, user)
    (info,) = cipher.list_keys(user)
    assert info.encryption_count == 1


def test_encrypt_needs_the_write_transaction(memory_db: mangostore.Database) -> None:
    cipher = cipher_of(memory_db)
    user = add_user(memory_db)
    with pytest.raises(RuntimeError, match="write transaction"):
        cipher.encrypt(memory_db.store.writer.connection, *PROFILE, user, user, SECRET)


@pytest.mark.parametrize(
    ("table", "column"), [("users", "username"), ("command_history", "output"), ("nope", "x")]
)
def test_only_sensitive_columns_are_encrypted(
    memory_db: mangostore.Database, table: str, column: str
) -> None:
    cipher = cipher_of(memory_db)
    with pytest.raises(UnknownColumnError), memory_db.store.transaction() as conn:
        cipher.encrypt(conn, table, column, "r", "u", b"x")
    with pytest.raises(UnknownColumnError):
        cipher.decrypt(table, column, "r", "u", b"x" * 64)


def test_every_plaintext_survives_encrypt_and_decrypt(memory_db: mangostore.Database) -> None:
    cipher = cipher_of(memory_db)
    user = add_user(memory_db)

    @hypothesis_settings(max_examples=50)
    @given(plaintext=st.binary(max_size=2048), row_id=st.text())
    def check(plaintext: bytes, row_id: str) -> None:
        with memory_db.store.transaction() as conn:
            blob = cipher.encrypt(conn, "projects", "security_config", row_id, user, plaintext)
        assert cipher.decrypt("projects", "security_config", row_id, user, blob) == plaintext

    check()


# -- where the keys are (and are not) ------------------------------------------------------


def test_no_data_key_is_in_the_database_file(tmp_path: Path, fast_settings: Settings) -> None:
    # Plain pages (fields still encrypted), so the file's bytes can be searched.
    path = tmp_path / "plain-pages.db"
    with mangostore.create(
        path, passphrase=PASSPHRASE, encrypted=False, settings=fast_settings
    ).db as db:
        user = add_user(db)
        blob = store_profile(db, user, SECRET)
        assert db.keyring is not None
        (entry,) = db.keyring.data_keys()
        key = unwrap_data_key(db.keyring.subkey("field"), db.keyring.vault_id, entry)
        assert key is not None
    raw = path.read_bytes()
    wal = Path(f"{path}-wal")
    if wal.exists():
        raw += wal.read_bytes()
    # The search works: the envelope and the key's metadata row are there in the clear...
    assert blob in raw
    assert entry.key_id.encode() in raw
    assert SECRET not in raw
    # ...but neither the key nor its wrapped form is.
    assert key not in raw
    assert entry.wrapped not in raw
    assert entry.wrapped[12:] not in raw
    assert key.hex().encode() not in raw


def test_the_keys_survive_reopening(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        user = add_user(db)
        store_profile(db, user, SECRET)
        encrypt_once(db, user)
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db:
        assert read_profile(db, user) == SECRET
        (info,) = cipher_of(db).list_keys(user)
        assert info.encryption_count == 2
        encrypt_once(db, user)
        assert cipher_of(db).list_keys(user)[0].encryption_count == 3


def test_wrapping_binds_the_vault_key_id_and_user() -> None:
    field_key, data_key = b"f" * 32, b"d" * 32
    wrapped = wrap_data_key(field_key, "vault", "key-1", "alice", data_key)
    good = DataKeyEntry("key-1", "alice", wrapped)
    assert unwrap_data_key(field_key, "vault", good) == data_key
    assert unwrap_data_key(field_key, "other-vault", good) is None
    assert unwrap_data_key(b"g" * 32, "vault", good) is None
    assert unwrap_data_key(field_key, "vault", DataKeyEntry("key-2", "alice", wrapped)) is None
    assert unwrap_data_key(field_key, "vault", DataKeyEntry("key-1", "bob", wrapped)) is None
    assert unwrap_data_key(field_key, "vault", DataKeyEntry("key-1", "alice", wrapped[:-1])) is None


def test_a_key_is_unwrapped_again_after_the_cache_is_dropped(
    keyed_db: mangostore.Database,
) -> None:
    user = add_user(keyed_db)
    store_profile(keyed_db, user, SECRET)
    cipher = cipher_of(keyed_db)
    cipher.forget_cached_keys()
    assert cipher._keys == {}
    assert read_profile(keyed_db, user) == SECRET


# -- the use limit ---------------------------------------------------------------------------


def test_a_key_is_replaced_when_it_reaches_the_use_limit(
    keyed_db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(field_cipher, "MAX_ENCRYPTIONS_PER_KEY", 3)
    cipher = cipher_of(keyed_db)
    user = add_user(keyed_db)
    blobs = [encrypt_once(keyed_db, user, bytes([i])) for i in range(7)]
    keys = cipher.list_keys(user)
    assert [(k.status, k.encryption_count) for k in keys] == [
        ("retired", 3),
        ("retired", 3),
        ("primary", 1),
    ]
    assert all(k.retired_at is not None for k in keys[:2])
    ids = [parse_header(b)[2] for b in blobs]
    assert ids == [uuid.UUID(keys[i // 3].id) for i in range(7)]
    for i, blob in enumerate(blobs):
        assert cipher.decrypt(*PROFILE, user, user, blob) == bytes([i])


def test_the_default_limit_is_far_below_the_nonce_bound() -> None:
    assert field_cipher.MAX_ENCRYPTIONS_PER_KEY <= 2**32 // 8


# -- destruction ---------------------------------------------------------------------------


def test_destroying_a_users_keys_makes_their_values_unreadable(
    keyed_db: mangostore.Database,
) -> None:
    cipher = cipher_of(keyed_db)
    alice, bob = add_user(keyed_db), add_user(keyed_db)
    store_profile(keyed_db, alice, SECRET)
    store_profile(keyed_db, bob, b"bob's")
    (info,) = cipher.list_keys(alice)
    with keyed_db.store.transaction() as conn:
        gone = cipher.destroy_user_keys(conn, alice)
    assert gone == [info.id]
    with pytest.raises(TamperedDataError) as caught:
        read_profile(keyed_db, alice)
    assert SECRET.decode() not in str(caught.value)
    (after,) = cipher.list_keys(alice)
    assert after.status == "destroyed"
    assert after.destroyed_at is not None
    assert keyed_db.keyring is not None
    assert keyed_db.keyring.get_data_key(info.id) is None
    assert alice in keyed_db.keyring.erased_users()
    assert read_profile(keyed_db, bob) == b"bob's"


def test_no_new_key_is_made_for_an_erased_user(memory_db: mangostore.Database) -> None:
    cipher = cipher_of(memory_db)
    user = add_user(memory_db)
    encrypt_once(memory_db, user)
    with memory_db.store.transaction() as conn:
        cipher.destroy_user_keys(conn, user)
    with pytest.raises(KeyManagementError, match="erased"):
        encrypt_once(memory_db, user)


def test_keys_destroyed_behind_the_ciphers_back_are_not_used(
    memory_db: mangostore.Database,
) -> None:
    # Another process destroyed the keys: the keyring no longer has them, the cache is
    # cold, and the metadata row still says primary.
    cipher = cipher_of(memory_db)
    user = add_user(memory_db)
    blob = encrypt_once(memory_db, user)
    assert memory_db.keyring is not None
    memory_db.keyring.destroy_user_keys(user)
    cipher.forget_cached_keys()
    with pytest.raises(TamperedDataError):
        cipher.decrypt(*PROFILE, user, user, blob)
    with pytest.raises(KeyManagementError, match="erased"):
        encrypt_once(memory_db, user)


def test_a_primary_key_missing_from_the_keyring_is_replaced(
    memory_db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older keyring beside this file: the row says primary, the key block lacks it.
    cipher = cipher_of(memory_db)
    user = add_user(memory_db)
    encrypt_once(memory_db, user)
    (lost,) = cipher.list_keys(user)
    keyring = memory_db.keyring
    assert keyring is not None
    original = keyring.get_data_key

    def without_lost(key_id: str) -> DataKeyEntry | None:
        return None if key_id == lost.id else original(key_id)

    monkeypatch.setattr(keyring, "get_data_key", without_lost)
    cipher.forget_cached_keys()
    blob = encrypt_once(memory_db, user)
    old, new = cipher.list_keys(user)
    assert (old.id, old.status) == (lost.id, "destroyed")
    assert new.status == "primary"
    assert parse_header(blob)[2] == uuid.UUID(new.id)
    assert cipher.decrypt(*PROFILE, user, user, blob) == SECRET


def test_destruction_reaches_a_copy_of_the_database_file(
    db_path: Path, fast_settings: Settings, tmp_path: Path
) -> None:
    copy = tmp_path / "copy" / "vault.db"
    copy.parent.mkdir()
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        user = add_user(db)
        blob = store_profile(db, user, SECRET)
    shutil.copy(db_path, copy)  # e.g. a backup taken before the erasure
    with (
        mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db,
        db.store.transaction() as conn,
    ):
        cipher_of(db).destroy_user_keys(conn, user)
    # The old file next to today's keyring: the ciphertext it holds no longer opens...
    shutil.copy(keyring_path(db_path), keyring_path(copy))
    with mangostore.open(copy, passphrase=PASSPHRASE, settings=fast_settings) as old:
        with pytest.raises(TamperedDataError):
            cipher_of(old).decrypt(*PROFILE, user, user, blob)
        # ...and opening re-applied the erasure the keyring remembers: the copy's key
        # record is destroyed and the user's rows are gone from the copy too.
        (info,) = cipher_of(old).list_keys(user)
        assert info.status == "destroyed"
        assert old.query("SELECT count(*) FROM users WHERE id = ?", (user,))[0][0] == 0


# -- threads -------------------------------------------------------------------------------


def test_threads_sealing_for_a_new_user_make_exactly_one_key(
    keyed_db: mangostore.Database,
) -> None:
    cipher = cipher_of(keyed_db)
    user = add_user(keyed_db)
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    blobs: list[bytes] = []
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            with keyed_db.store.transaction() as conn:
                blobs.append(cipher.encrypt(conn, *PROFILE, user, user, bytes([i])))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    (info,) = cipher.list_keys(user)
    assert info.status == "primary"
    assert info.encryption_count == threads_count
    assert {parse_header(b)[2] for b in blobs} == {uuid.UUID(info.id)}
    assert keyed_db.keyring is not None
    assert [e.key_id for e in keyed_db.keyring.data_keys()] == [info.id]


def test_threads_decrypting_while_the_cache_is_dropped_all_succeed(
    encrypted_db: mangostore.Database,
) -> None:
    cipher = cipher_of(encrypted_db)
    users = [add_user(encrypted_db) for _ in range(4)]
    blobs = {u: encrypt_once(encrypted_db, u, u.encode()) for u in users}
    failures: list[BaseException] = []

    def read(user: str) -> None:
        try:
            for _ in range(200):
                assert cipher.decrypt(*PROFILE, user, user, blobs[user]) == user.encode()
        except BaseException as exc:
            failures.append(exc)

    def drop() -> None:
        for _ in range(200):
            cipher.forget_cached_keys()

    threads = [threading.Thread(target=read, args=(u,)) for u in users]
    threads.append(threading.Thread(target=drop))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
