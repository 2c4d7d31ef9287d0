"""Opening, creating and unlocking databases, and every way that can go wrong.

Each failure must raise its own error class with a message that says what to do,
must never show a key or the passphrase, and must leave the files it found exactly
as they were.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import (
    ConfigurationError,
    DatabaseClosedError,
    KeyringCorruptError,
    KeyringError,
    KeyringMissingError,
    MangoError,
    NotADatabaseError,
    SchemaTooNewError,
    WrongPassphraseError,
)
from mangostore.keys import kdf as kdf_module
from mangostore.keys.keyring import Keyring, keyring_path
from mangostore.keys.subkeys import PURPOSES

NEW_PASSPHRASE = "a completely different passphrase"


def file_hashes(folder: Path) -> dict[str, str]:
    """Name and SHA-256 of every file in ``folder`` (lock files aside, which hold nothing)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.endswith(".lock")
    }


def secret_forms(ring: Keyring, *extra: str) -> list[str]:
    """Every text form in which a key of ``ring`` (or an ``extra`` secret) could leak."""
    keys = [ring._master, *(ring.subkey(p) for p in PURPOSES)]
    forms = [*extra]
    for key in keys:
        forms += [key.hex(), key.hex().upper(), base64.b64encode(key).decode(), repr(key)]
    return forms


def exception_texts(exc: BaseException) -> str:
    """The messages and reprs of ``exc`` and every exception chained to it."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


@pytest.fixture
def closed_db(db_path: Path, fast_settings: Settings) -> tuple[Path, str, bytes]:
    """A created and closed encrypted database holding one user.

    Returns its path, its recovery key and its master key.
    """
    created = mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings)
    with created as (db, recovery):
        assert recovery is not None
        assert db.keyring is not None
        master = db.keyring._master
        db.execute(
            "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
            ("u1", "alice", 1, 1),
        )
    return db_path, recovery, master


def reopen(path: Path, settings: Settings, **kwargs: Any) -> mangostore.Database:
    """Open an existing database with the fast KDF settings."""
    return mangostore.open(path, settings=settings, create=False, **kwargs)


def expect_refusal(
    folder: Path, error: type[MangoError], call: Callable[[], object], match: str | None = None
) -> MangoError:
    """Run ``call``, expect ``error``, and check no file in ``folder`` appeared or changed."""
    before = file_hashes(folder)
    with pytest.raises(error, match=match) as info:
        call()
    assert file_hashes(folder) == before
    return info.value


# -- asking for encryption --------------------------------------------------------------


@pytest.mark.parametrize("target", ["file", ":memory:"])
def test_no_passphrase_and_no_encrypted_false_is_refused(target: str, db_path: Path) -> None:
    path = db_path if target == "file" else ":memory:"
    with pytest.raises(ConfigurationError, match="encrypted=False"):
        mangostore.open(path)
    with pytest.raises(ConfigurationError):
        mangostore.open(path, encrypted=True)
    assert list(db_path.parent.iterdir()) == []


def test_plain_database_only_when_asked_by_name(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False).db as db:
        assert db.page_encryption is False
        assert db.keyring is None
        assert db.take_recovery_key() is None
        with pytest.raises(ConfigurationError, match="without a passphrase"):
            db.change_passphrase(PASSPHRASE, NEW_PASSPHRASE)
    assert db_path.read_bytes().startswith(b"SQLite format 3\x00")
    assert not keyring_path(db_path).exists()
    with mangostore.open(db_path, encrypted=False) as db:
        assert db.schema_version > 0


def test_encrypted_database_round_trip(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, _, master = closed_db
    assert not path.read_bytes().startswith(b"SQLite format 3")
    with reopen(path, fast_settings, passphrase=PASSPHRASE) as db:
        assert db.page_encryption is True
        assert db.take_recovery_key() is None  # only the creating call shows it
        assert db.keyring is not None
        assert db.keyring._master == master
        assert [tuple(r) for r in db.query("SELECT id, username FROM users")] == [("u1", "alice")]
    with pytest.raises(DatabaseClosedError):
        db.query("SELECT 1")


def test_create_false_on_missing_file(db_path: Path) -> None:
    with pytest.raises(NotADatabaseError, match="create=True"):
        mangostore.open(db_path, passphrase=PASSPHRASE, create=False)
    assert list(db_path.parent.iterdir()) == []


def test_empty_passphrase_creates_nothing(db_path: Path, fast_settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="non-empty"):
        mangostore.create(db_path, passphrase="", settings=fast_settings)
    assert [p.name for p in db_path.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_encrypted_db_opened_as_plain_gets_a_hint(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, _, _ = closed_db
    err = expect_refusal(
        path.parent, NotADatabaseError, lambda: mangostore.open(path, encrypted=False)
    )
    assert "passphrase" in str(err)


def test_encrypted_db_opened_as_plain_without_keyring_gets_a_hint(
    closed_db: tuple[Path, str, bytes],
) -> None:
    path, _, _ = closed_db
    keyring_path(path).rename(path.parent / "elsewhere.keyring")
    err = expect_refusal(
        path.parent, NotADatabaseError, lambda: mangostore.open(path, encrypted=False)
    )
    assert "passphrase" in str(err)


def test_plain_pages_with_passphrase_keep_a_keyring(db_path: Path, fast_settings: Settings) -> None:
    """Plain pages plus a passphrase: the file is readable SQLite, the keyring exists."""
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, encrypted=False, settings=fast_settings
    ) as (db, recovery):
        assert db.page_encryption is False
        assert db.keyring is not None
        assert db.keyring.page_encryption is False
        assert recovery is not None
    assert db_path.read_bytes().startswith(b"SQLite format 3\x00")
    assert json.loads(keyring_path(db_path).read_text())["page_encryption"] is False
    expect_refusal(
        db_path.parent,
        WrongPassphraseError,
        lambda: reopen(db_path, fast_settings, passphrase="nope", encrypted=False),
    )
    expect_refusal(
        db_path.parent, NotADatabaseError, lambda: mangostore.open(db_path, encrypted=False)
    )
    # The keyring, not the flag, says how the pages are stored.
    for encrypted in (False, True):
        with reopen(db_path, fast_settings, passphrase=PASSPHRASE, encrypted=encrypted) as db:
            assert db.page_encryption is False


# -- wrong secrets ----------------------------------------------------------------------


def test_wrong_passphrase(closed_db: tuple[Path, str, bytes], fast_settings: Settings) -> None:
    path, _, _ = closed_db
    err = expect_refusal(
        path.parent,
        WrongPassphraseError,
        lambda: reopen(path, fast_settings, passphrase="correct horse battery stapler"),
        match="wrong passphrase",
    )
    assert "recovery key" in str(err)  # says what to do next
    assert "correct horse" not in str(err)


def test_keyring_of_another_database(
    closed_db: tuple[Path, str, bytes], tmp_path: Path, fast_settings: Settings
) -> None:
    path, _, _ = closed_db
    other = tmp_path / "other" / "other.db"
    other.parent.mkdir()
    mangostore.create(other, passphrase=NEW_PASSPHRASE, settings=fast_settings).db.close()
    shutil.copy(keyring_path(other), keyring_path(path))
    err = expect_refusal(
        path.parent,
        NotADatabaseError,
        lambda: reopen(path, fast_settings, passphrase=NEW_PASSPHRASE),
    )
    assert "another keyring" in str(err)


# -- files that are not mangostore databases --------------------------------------------


def test_random_bytes_are_not_a_database(
    db_path: Path, closed_db: tuple[Path, str, bytes], tmp_path: Path, fast_settings: Settings
) -> None:
    folder = tmp_path / "random"
    folder.mkdir()
    junk = folder / "junk.db"
    junk.write_bytes(os.urandom(64 * 1024))
    expect_refusal(folder, NotADatabaseError, lambda: mangostore.open(junk, encrypted=False))
    # With a (real) keyring beside it the page key does not decrypt it either.
    shutil.copy(keyring_path(db_path), keyring_path(junk))
    expect_refusal(
        folder, NotADatabaseError, lambda: reopen(junk, fast_settings, passphrase=PASSPHRASE)
    )


@pytest.mark.parametrize("size", [10, 100, 4096, 8192])
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_truncated_database_is_not_a_database(
    encrypted: bool, size: int, tmp_path: Path, fast_settings: Settings
) -> None:
    source = tmp_path / "source" / "full.db"
    source.parent.mkdir()
    secret = {"passphrase": PASSPHRASE} if encrypted else {"encrypted": False}
    created = mangostore.create(source, settings=fast_settings, **secret)  # type: ignore[arg-type]
    with created.db as db:
        db.execute(
            "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u', 'x', 1, 1)"
        )
    folder = tmp_path / "cut"
    folder.mkdir()
    cut = folder / "cut.db"
    cut.write_bytes(source.read_bytes()[:size])
    if encrypted:
        shutil.copy(keyring_path(source), keyring_path(cut))
    expect_refusal(folder, NotADatabaseError, lambda: reopen(cut, fast_settings, **secret))


def make_foreign_db(path: Path) -> None:
    """Write an SQLite database made by some other program."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()


def foreign_tables(path: Path) -> list[str]:
    """The names in ``sqlite_master`` of a plain SQLite file."""
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    finally:
        conn.close()


def test_foreign_sqlite_database_is_refused(tmp_path: Path, fast_settings: Settings) -> None:
    foreign = tmp_path / "theirs.db"
    make_foreign_db(foreign)
    with pytest.raises(NotADatabaseError, match="schema_migrations"):
        mangostore.open(foreign, encrypted=False)
    # With a passphrase there is no keyring for it: refused, and no keyring is made.
    with pytest.raises((NotADatabaseError, KeyringMissingError)):
        mangostore.open(foreign, passphrase=PASSPHRASE, settings=fast_settings)
    assert not keyring_path(foreign).exists()
    # A plain-pages keyring beside it unlocks, but the file is still not ours.
    Keyring.create(keyring_path(foreign), PASSPHRASE, FAST_KDF, page_encryption=False)
    with pytest.raises(NotADatabaseError, match="schema_migrations"):
        reopen(foreign, fast_settings, passphrase=PASSPHRASE, encrypted=False)
    assert foreign_tables(foreign) == ["notes"]
    assert keyring_path(foreign).exists()


def test_foreign_sqlite_database_bytes_are_unchanged(tmp_path: Path) -> None:
    foreign = tmp_path / "theirs.db"
    make_foreign_db(foreign)
    expect_refusal(tmp_path, NotADatabaseError, lambda: mangostore.open(foreign, encrypted=False))


# -- keyring problems -------------------------------------------------------------------


def test_missing_keyring(closed_db: tuple[Path, str, bytes], fast_settings: Settings) -> None:
    path, recovery, _ = closed_db
    keyring_path(path).unlink()
    err = expect_refusal(
        path.parent, KeyringMissingError, lambda: reopen(path, fast_settings, passphrase=PASSPHRASE)
    )
    assert ".keyring" in str(err)
    expect_refusal(
        path.parent, KeyringMissingError, lambda: reopen(path, fast_settings, recovery_key=recovery)
    )


def _edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    """Turn an edit of the parsed keyring into an edit of its bytes."""

    def edit(raw: bytes) -> bytes:
        """Apply the edit to ``raw`` and serialise the result."""
        doc = json.loads(raw)
        fn(doc)
        return json.dumps(doc).encode()

    return edit


def _flip_b64(text: str) -> str:
    """Change one character in the middle of base64 text to another valid one."""
    i = len(text) // 2
    return text[:i] + ("B" if text[i] != "B" else "C") + text[i + 1 :]


KEYRING_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated JSON": lambda raw: raw[: len(raw) // 2],
    "not JSON": lambda raw: b"PK\x03\x04 this is a zip file, not a keyring",
    "huge file": lambda raw: b" " * (17 * 1024 * 1024) + raw,
    "flipped salt": _edit(lambda d: d["kdf"].update(salt=_flip_b64(d["kdf"]["salt"]))),
    "flipped passphrase slot": _edit(
        lambda d: d["master"].update(passphrase=_flip_b64(d["master"]["passphrase"]))
    ),
    "flipped mac": _edit(lambda d: d.update(mac=_flip_b64(d["mac"]))),
    "edited vault_id": _edit(lambda d: d.update(vault_id="11111111-1111-4111-8111-111111111111")),
    "edited erased_users": _edit(lambda d: d["erased_users"].append("u1")),
    "format version 2": _edit(lambda d: d.update(version=2)),
    "memory_kib=1": _edit(lambda d: d["kdf"].update(memory_kib=1)),
    "memory_kib=10**9": _edit(lambda d: d["kdf"].update(memory_kib=10**9)),
}


@pytest.mark.parametrize("damage", list(KEYRING_DAMAGE), ids=str)
def test_damaged_keyring_is_refused_and_kept(
    damage: str,
    closed_db: tuple[Path, str, bytes],
    fast_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _, master = closed_db
    ring = keyring_path(path)
    ring.write_bytes(KEYRING_DAMAGE[damage](ring.read_bytes()))

    def refuse(**_: Any) -> bytes:
        """Stand in for Argon2id and fail."""
        raise AssertionError("Argon2id ran on a damaged keyring")

    monkeypatch.setattr(kdf_module, "hash_secret_raw", refuse)
    err = expect_refusal(
        path.parent, KeyringCorruptError, lambda: reopen(path, fast_settings, passphrase=PASSPHRASE)
    )
    assert "restore" in str(err) or "upgrade" in str(err)
    assert master.hex() not in exception_texts(err)


def test_stale_keyring_is_not_overwritten(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, recovery, _ = closed_db
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for passphrase in (PASSPHRASE, NEW_PASSPHRASE):
        err = expect_refusal(
            path.parent,
            KeyringError,
            lambda p=passphrase: mangostore.create(path, passphrase=p, settings=fast_settings),
            match="stale keyring",
        )
        assert not isinstance(err, KeyringMissingError | KeyringCorruptError)
    assert not path.exists()
    # The keyring still unlocks: whoever restores the database can open it.
    assert Keyring.unlock(keyring_path(path), recovery_key=recovery)
    expect_refusal(
        path.parent,
        NotADatabaseError,
        lambda: reopen(path, fast_settings, passphrase=PASSPHRASE),
        match="no database",
    )


def test_schema_newer_than_code(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, _, _ = closed_db
    with reopen(path, fast_settings, passphrase=PASSPHRASE) as db:
        db.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at, duration_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (999, "from_the_future", "0" * 64, 1, 0),
        )
    for migrate in (True, False):
        err = expect_refusal(
            path.parent,
            SchemaTooNewError,
            lambda m=migrate: reopen(path, fast_settings, passphrase=PASSPHRASE, migrate=m),
        )
        assert "999" in str(err)
        assert "upgrade mangostore" in str(err)


# -- the recovery key -------------------------------------------------------------------


def test_recovery_key_is_shown_once(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings, create=True) as db:
        first = db.take_recovery_key()
        assert first is not None
        assert len(first.replace("-", "")) == 52
        assert db.take_recovery_key() is None
        assert first not in repr(db)
    assert first not in keyring_path(db_path).read_text()


def test_recovery_key_unlocks_and_resets_the_passphrase(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, recovery, master = closed_db
    typed = recovery.lower().replace("-", " ")
    with reopen(path, fast_settings, recovery_key=typed) as db:
        assert db.keyring is not None
        assert db.keyring._master == master
        assert db.take_recovery_key() is None
        assert db.query("SELECT username FROM users")[0][0] == "alice"
        db.keyring.reset_passphrase(NEW_PASSPHRASE)
    expect_refusal(
        path.parent,
        WrongPassphraseError,
        lambda: reopen(path, fast_settings, passphrase=PASSPHRASE),
    )
    with reopen(path, fast_settings, passphrase=NEW_PASSPHRASE) as db:
        assert db.query("SELECT username FROM users")[0][0] == "alice"
    with reopen(path, fast_settings, recovery_key=recovery) as db:  # still works
        assert db.schema_version > 0


@pytest.mark.parametrize(
    "key",
    [
        "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA",  # well-formed, wrong
        "not a recovery key",
        "",
        PASSPHRASE,
    ],
)
def test_wrong_recovery_key(
    key: str, closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, _, _ = closed_db
    err = expect_refusal(
        path.parent, WrongPassphraseError, lambda: reopen(path, fast_settings, recovery_key=key)
    )
    assert "recovery key" in str(err)
    if key:
        assert key not in str(err)


def test_recovery_key_cannot_create(db_path: Path, fast_settings: Settings) -> None:
    key = "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA"
    with pytest.raises(ConfigurationError, match="existing database"):
        mangostore.open(db_path, recovery_key=key, settings=fast_settings, create=True)
    assert list(db_path.parent.iterdir()) == []


# -- changing the passphrase ------------------------------------------------------------


def test_change_passphrase_rewraps_without_touching_the_data(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, recovery, _ = closed_db
    db_before = hashlib.sha256(path.read_bytes()).hexdigest()
    keyring_before = keyring_path(path).read_bytes()
    with reopen(path, fast_settings, passphrase=PASSPHRASE) as db:
        db.change_passphrase(PASSPHRASE, NEW_PASSPHRASE)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == db_before
    assert keyring_path(path).read_bytes() != keyring_before
    expect_refusal(
        path.parent,
        WrongPassphraseError,
        lambda: reopen(path, fast_settings, passphrase=PASSPHRASE),
    )
    with reopen(path, fast_settings, passphrase=NEW_PASSPHRASE) as db:
        assert db.query("SELECT username FROM users")[0][0] == "alice"
    with reopen(path, fast_settings, recovery_key=recovery) as db:
        assert db.query("SELECT username FROM users")[0][0] == "alice"


def test_change_passphrase_with_wrong_old_changes_nothing(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, _, _ = closed_db
    with reopen(path, fast_settings, passphrase=PASSPHRASE) as db:
        before = file_hashes(path.parent)
        with pytest.raises(WrongPassphraseError, match="nothing was changed") as info:
            db.change_passphrase("not the passphrase", NEW_PASSPHRASE)
        assert NEW_PASSPHRASE not in str(info.value)
        assert "not the passphrase" not in str(info.value)
        with pytest.raises(ConfigurationError):
            db.change_passphrase(PASSPHRASE, "")
        assert file_hashes(path.parent) == before
    with reopen(path, fast_settings, passphrase=PASSPHRASE) as db:
        assert db.schema_version > 0


def test_change_passphrase_then_change_back(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, _, _ = closed_db
    with reopen(path, fast_settings, passphrase=PASSPHRASE) as db:
        db.change_passphrase(PASSPHRASE, NEW_PASSPHRASE)
        with pytest.raises(WrongPassphraseError):
            db.change_passphrase(PASSPHRASE, "third")
        db.change_passphrase(NEW_PASSPHRASE, PASSPHRASE)
    reopen(path, fast_settings, passphrase=PASSPHRASE).close()


# -- secrets never shown ----------------------------------------------------------------


def test_no_error_or_repr_shows_a_secret(
    closed_db: tuple[Path, str, bytes], fast_settings: Settings
) -> None:
    path, recovery, _ = closed_db
    with reopen(path, fast_settings, passphrase=PASSPHRASE) as db:
        assert db.keyring is not None
        secrets = secret_forms(db.keyring, PASSPHRASE, recovery, recovery.replace("-", ""))
        shown = [repr(db), repr(db.keyring), str(db.status()), repr(db.status())]
        errors: list[BaseException] = []
        for attempt in (
            lambda: db.change_passphrase(PASSPHRASE + "x", NEW_PASSPHRASE),
            lambda: db.change_passphrase(PASSPHRASE, ""),
            lambda: db.query("SELECT * FROM no_such_table"),
            lambda: db.execute("INSERT INTO users (id) VALUES ('u2')"),
        ):
            with pytest.raises(MangoError) as info:
                attempt()
            errors.append(info.value)
    shown.append(repr(db))
    for attempt in (
        lambda: reopen(path, fast_settings, passphrase=PASSPHRASE + "x"),
        lambda: reopen(
            path, fast_settings, recovery_key=("B" if recovery[0] != "B" else "C") + recovery[1:]
        ),
        lambda: reopen(path, fast_settings, recovery_key=recovery[:-5]),
        lambda: mangostore.open(path, encrypted=False),
        lambda: mangostore.open(path),
    ):
        with pytest.raises(MangoError) as info:
            attempt()
        errors.append(info.value)
    keyring_path(path).write_text("{")
    with pytest.raises(MangoError) as info:
        reopen(path, fast_settings, passphrase=PASSPHRASE)
    errors.append(info.value)
    text = "\n".join(shown + [exception_texts(e) for e in errors])
    for secret in secrets:
        assert secret not in text
