"""User names were not normalised: NFC and NFD spellings of one name were two users.

The NFD spelling could not log in to the NFC account (passwords were normalised, names
were not), and names with zero-width characters, soft hyphens, NUL, fullwidth letters or
letters of another script that look like an existing name's were accepted. Now a name is
stored in NFC; its identity (NFKC and case folding, RFC 8265) and its look (the Unicode
TS #39 skeleton) are kept under UNIQUE indexes in ``user_name_keys``; invisible and
control characters, white space at either end and mixed scripts are refused.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import (
    AccountLockedError,
    AuthenticationError,
    InvalidValueError,
    UniqueConstraintError,
)

PASSWORD = "correct horse battery"
NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")

pytestmark = pytest.mark.database("auth_db")


def users(db: mangostore.Database) -> int:
    return int(db.query("SELECT count(*) FROM users")[0][0])


def test_nfd_spelling_is_the_nfc_user(db: mangostore.Database) -> None:
    jose = db.auth.create_user_with_password(NFD, PASSWORD)
    assert jose.username == NFC  # stored in NFC
    assert db.users.get(jose.id).username == NFC
    with pytest.raises(UniqueConstraintError) as caught:
        db.users.create(username=NFC)
    assert caught.value.field == "username"
    assert db.auth.login(NFD, PASSWORD).user.id == jose.id
    assert db.auth.login(NFC, PASSWORD).user.id == jose.id
    assert db.users.get_by_username(NFD) == db.users.get_by_username(NFC)


@pytest.mark.parametrize("spelling", ["ANN", "Ann", "\uff41\uff4e\uff4e", "\uff21nn"])
def test_case_and_width_spellings_are_one_user(db: mangostore.Database, spelling: str) -> None:
    ann = db.auth.create_user_with_password("ann", PASSWORD)
    with pytest.raises(UniqueConstraintError, match="taken") as caught:
        db.users.create(username=spelling)
    assert caught.value.field == "username"
    assert db.auth.login(spelling, PASSWORD).user.id == ann.id
    assert users(db) == 1


@pytest.mark.parametrize(
    ("taken", "look_alike"),
    [
        ("scope", "\u0455\u0441\u043e\u0440\u0435"),  # every letter Cyrillic
        ("bill", "biII"),  # capital I for small l
        ("modern", "rnodern"),  # r n for m
        ("user1", "userl"),  # small l for digit one
        ("bob", "b0b"),  # digit zero for o
    ],
)
def test_a_look_alike_of_a_taken_name_is_refused(
    db: mangostore.Database, taken: str, look_alike: str
) -> None:
    db.users.create(username=taken)
    with pytest.raises(UniqueConstraintError, match="looks like") as caught:
        db.users.create(username=look_alike)
    assert caught.value.field == "username"
    other = db.users.create(username="somebody")
    with pytest.raises(UniqueConstraintError):
        db.users.update(other.id, username=look_alike)
    assert db.users.get(other.id).username == "somebody"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("p\u0430ypal", id="latin-with-cyrillic-a"),
        pytest.param("\u03c1aypal", id="latin-with-greek-rho"),
        pytest.param("bob\u0663", id="latin-with-arabic-digit"),
        pytest.param("a\u200bnn", id="zero-width-space"),
        pytest.param("a\u00adnn", id="soft-hyphen"),
        pytest.param("a\u200dnn", id="zero-width-joiner"),
        pytest.param("ann\u202e", id="bidi-override"),
        pytest.param("a\x00nn", id="nul"),
        pytest.param("a\x1bnn", id="escape"),
        pytest.param("a\u2028nn", id="line-separator"),
        pytest.param("a\u2029nn", id="paragraph-separator"),
        pytest.param("a\ue000nn", id="private-use"),
        pytest.param("a\U000e0001nn", id="tag"),
        pytest.param("a\u3164nn", id="hangul-filler"),
        pytest.param("ann\ufe0f", id="variation-selector"),
        pytest.param(" ann", id="leading-space"),
        pytest.param("ann\u3000", id="trailing-ideographic-space"),
        pytest.param("", id="empty"),
        pytest.param("a\ud800nn", id="lone-surrogate"),
    ],
)
def test_a_name_breaking_the_rules_is_refused(db: mangostore.Database, name: str) -> None:
    for create in (
        lambda: db.users.create(username=name),
        lambda: db.auth.create_user_with_password(name, PASSWORD),
    ):
        with pytest.raises(InvalidValueError) as caught:
            create()
        assert caught.value.field == "username"
    ann = db.users.create(username="ann")
    with pytest.raises(InvalidValueError):
        db.users.update(ann.id, username=name)
    assert [u.username for u in db.users.list()] == ["ann"]


@pytest.mark.parametrize(
    "name", ["Ada Lovelace", "山田太郎", "Tanaka 太郎", "김민수", "Ελένη", "Пётр", "o'neil_2"]
)
def test_names_in_one_script_are_accepted(db: mangostore.Database, name: str) -> None:
    assert db.users.create(username=name).username == name
    assert db.users.get_by_username(name.upper()) is not None


def test_a_rename_moves_the_name_and_frees_the_old_one(db: mangostore.Database) -> None:
    ann = db.users.create(username="ann")
    assert db.users.update(ann.id, username="ANN").username == "ANN"  # its own name
    db.users.update(ann.id, username="anna")
    assert db.users.get_by_username("ANNA") is not None
    assert db.users.get_by_username("ann") is None
    assert db.users.create(username="Ann").username == "Ann"


def test_failures_of_every_spelling_share_one_lock(db: mangostore.Database) -> None:
    db.auth.create_user_with_password(NFC, PASSWORD)
    for spelling in (NFC, NFD, "JOSÉ", "josé"):
        with pytest.raises(AuthenticationError):
            db.auth.login(spelling, "wrong password")
    with pytest.raises(AccountLockedError):
        db.auth.login("JOSE\u0301", "wrong password")
    with pytest.raises(AccountLockedError):
        db.auth.login(NFD, PASSWORD)


def test_the_key_holds_against_writes_around_the_repository(db: mangostore.Database) -> None:
    ann = db.users.create(username="ann")
    (key,) = db.query("SELECT name_key FROM user_name_keys WHERE user_id = ?", (ann.id,))[0]
    assert key == "ann"
    # Another process writing the same key directly is stopped by the UNIQUE index.
    db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES ('raw', 'ANN', 1, 1)"
    )
    with pytest.raises(UniqueConstraintError):
        db.execute("UPDATE user_name_keys SET name_key = 'ann' WHERE user_id = 'raw'")
    # The raw row stays pending: found by its exact name, given a marked key on the
    # next write, and never blocking or replacing the first holder.
    assert db.users.get_by_username("ANN").id == "raw"
    assert db.users.get_by_username("Ann").id == ann.id
    db.users.create(username="zed")
    marked = db.query("SELECT name_key FROM user_name_keys WHERE user_id = 'raw'")[0][0]
    assert marked == "ann\x00raw"
    with pytest.raises(UniqueConstraintError):
        db.users.create(username="aNN")


def test_a_user_written_with_raw_sql_is_found_and_protected(db: mangostore.Database) -> None:
    db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES ('raw', ?, 1, 1)",
        (NFD,),
    )
    assert db.users.get_by_username("JOSÉ").id == "raw"  # pending: compared in Python
    with pytest.raises(UniqueConstraintError):
        db.users.create(username=NFC)  # fills the pending key first
    assert db.users.get_by_username("josé").id == "raw"


def _legacy(db_path: Path, settings: Settings, names: list[tuple[str, str, int]]) -> None:
    """A database at schema 12 (before the keys) holding users with these names."""
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=settings, migrate=False
    ).db as db:
        db.migrate(to=12)
        for user_id, name, created in names:
            db.execute(
                "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (user_id, name, created, created),
            )


def test_colliding_names_of_an_existing_database_survive_the_migration(
    db_path: Path, fast_settings: Settings
) -> None:
    _legacy(
        db_path,
        fast_settings,
        [("young", "ann", 2), ("old", "Ann", 1), ("bill", "bill", 3), ("biII", "biII", 4)],
    )
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db:
        assert db.schema_version >= 13
        pending = db.query("SELECT count(*) FROM user_name_keys WHERE name_key IS NULL")
        assert pending[0][0] == 4
        # Every account is still found: the exact name first, then the identity.
        assert db.users.get_by_username("ann").id == "young"
        assert db.users.get_by_username("Ann").id == "old"
        assert db.users.get_by_username("ANN").id == "old"
        assert db.users.get_by_username("biII").id == "biII"
        db.users.create(username="zed")  # fills the keys, oldest user first
        keys: dict[str, Any] = {
            r[0]: (r[1], r[2])
            for r in db.query("SELECT user_id, name_key, skeleton FROM user_name_keys")
        }
        assert keys["old"] == ("ann", "ann")
        assert keys["young"] == ("ann\x00young", "ann\x00young")
        assert keys["bill"] == ("bill", "bill")
        assert keys["biII"] == ("biii", "bill\x00biII")
        assert db.users.get_by_username("ANN").id == "old"
        assert db.users.get_by_username("ann").id == "young"
        for name in ("aNN", "BILL", "bi11"):
            with pytest.raises(UniqueConstraintError):
                db.users.create(username=name)
        # A later user can be renamed to a free name, which gives it a plain key.
        db.users.update("young", username="annie")
        assert db.users.get_by_username("ANNIE").id == "young"
        # Down and up again: the keys are made again, as pending.
        db.migrate(to=12)
        assert not db.query("SELECT 1 FROM sqlite_master WHERE name = 'user_name_keys'")
        db.migrate()
        assert db.users.get_by_username("ANNIE").id == "young"


def test_the_keys_have_unique_indexes(db: mangostore.Database) -> None:
    rows = db.query(
        'SELECT name, "unique" FROM pragma_index_list(?) WHERE origin = ?',
        ("user_name_keys", "c"),
    )
    assert {(r[0], r[1]) for r in rows} == {
        ("idx_user_name_keys_name_key", 1),
        ("idx_user_name_keys_skeleton", 1),
    }


def test_a_database_below_the_keys_still_takes_users(
    db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=fast_settings, migrate=False
    ).db as db:
        db.migrate(to=12)
        jose = db.users.create(username=NFD)
        assert jose.username == NFC  # the rules hold; the keys come with migration 13
        assert db.users.get_by_username(NFC) == jose
        with pytest.raises(InvalidValueError):
            db.users.create(username="a\u200bb")
        db.migrate()
        assert db.users.get_by_username("JOSÉ") == db.users.get(jose.id)
        with pytest.raises(UniqueConstraintError):
            db.users.create(username="jose\u0301")
