"""Making a database is asked for by name, and its recovery key is hard to lose.

``mangostore.create`` makes a new database and returns its recovery key; it refuses a
path that already holds a file. ``mangostore.open`` refuses a missing path (a mistyped
one used to become a new, empty database) unless ``create=True`` asks for one. A file
database made by ``open`` and closed before its recovery key was taken or discarded
warns with ``RecoveryKeyWarning``, which never shows the key.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import (
    DatabaseClosedError,
    DatabaseExistsError,
    NotADatabaseError,
    RecoveryKeyWarning,
)
from mangostore.keys.keyring import Keyring, keyring_path


def folder_state(folder: Path) -> dict[str, str]:
    """Name and SHA-256 of every file in ``folder``."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture
def made_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every recovery key a keyring is made with from now on, to look for in warnings."""
    made: list[str] = []
    create = Keyring.create

    def recording(*args: Any, **kwargs: Any) -> tuple[Keyring, str]:
        ring, key = create(*args, **kwargs)
        made.append(key)
        return ring, key

    monkeypatch.setattr(Keyring, "create", recording)
    return made


@pytest.fixture
def no_key_warning() -> Iterator[None]:
    """Turn a RecoveryKeyWarning into an error for the test's whole body."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecoveryKeyWarning)
        yield


# -- create ----------------------------------------------------------------------------


def test_create_returns_the_database_and_its_recovery_key(
    db_path: Path, fast_settings: Settings, no_key_warning: None
) -> None:
    db, recovery_key = mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings)
    assert recovery_key is not None
    assert len(recovery_key.replace("-", "")) == 52
    assert db.take_recovery_key() is None  # create handed it over already
    db.users.create(username="ann")
    db.close()  # and so closing does not warn
    with mangostore.open(db_path, recovery_key=recovery_key, settings=fast_settings) as again:
        assert again.users.get_by_username("ann") is not None


def test_created_is_a_context_manager_that_closes_and_hides_the_key(
    db_path: Path, fast_settings: Settings, no_key_warning: None
) -> None:
    with mangostore.create(db_path, PASSPHRASE, settings=fast_settings) as created:
        db, recovery_key = created
        assert created.db is db
        assert recovery_key is not None
        assert recovery_key not in repr(created)
        assert recovery_key not in str(created)
        assert "recovery_key=<hidden>" in repr(created)
    with pytest.raises(DatabaseClosedError):
        db.query("SELECT 1")


def test_created_closes_the_database_when_the_block_raises(
    db_path: Path, fast_settings: Settings
) -> None:
    with (
        pytest.raises(RuntimeError),
        mangostore.create(db_path, PASSPHRASE, settings=fast_settings) as (db, _key),
    ):
        raise RuntimeError("the application failed")
    with pytest.raises(DatabaseClosedError):
        db.query("SELECT 1")


def test_create_without_a_keyring_has_no_recovery_key(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False) as created:
        assert created.recovery_key is None
        assert repr(created).endswith("recovery_key=None)")
    assert not keyring_path(db_path).exists()


def test_create_in_memory_is_always_new(fast_settings: Settings) -> None:
    for _ in range(2):
        with mangostore.create(":memory:", PASSPHRASE, settings=fast_settings) as (db, key):
            assert key is not None
            assert db.users.count() == 0


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_create_refuses_a_path_that_holds_a_database(
    encrypted: bool, db_path: Path, fast_settings: Settings
) -> None:
    secret: dict[str, Any] = {"passphrase": PASSPHRASE} if encrypted else {"encrypted": False}
    with mangostore.create(db_path, settings=fast_settings, **secret).db as db:
        db.users.create(username="ann")
    before = folder_state(db_path.parent)
    with pytest.raises(DatabaseExistsError) as info:
        mangostore.create(db_path, settings=fast_settings, **secret)
    message = str(info.value)
    assert str(db_path) in message
    assert "mangostore.open(" in message  # says what to do instead
    assert folder_state(db_path.parent) == before
    with mangostore.open(db_path, settings=fast_settings, **secret) as db:
        assert db.users.count() == 1


def test_create_refuses_any_other_file_and_leaves_it_alone(
    tmp_path: Path, fast_settings: Settings
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, but mine")
    with pytest.raises(DatabaseExistsError, match="already exists"):
        mangostore.create(notes, PASSPHRASE, settings=fast_settings)
    assert notes.read_text() == "not a database, but mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_create_takes_an_empty_file(db_path: Path, fast_settings: Settings) -> None:
    db_path.touch()  # what a temporary-file call leaves: no database in it
    with mangostore.create(db_path, PASSPHRASE, settings=fast_settings) as (db, key):
        assert key is not None
        assert db.schema_version > 0


# -- open no longer creates ------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [{"passphrase": PASSPHRASE}, {"encrypted": False}],
    ids=["encrypted", "plain"],
)
def test_open_of_a_missing_path_says_how_to_create_and_makes_nothing(
    secret: dict[str, Any], tmp_path: Path, fast_settings: Settings
) -> None:
    mistyped = tmp_path / "vualt.db"
    with pytest.raises(NotADatabaseError) as info:
        mangostore.open(mistyped, settings=fast_settings, **secret)
    message = str(info.value)
    assert str(mistyped) in message
    assert "does not exist" in message
    assert "mangostore.create(" in message
    assert "create=True" in message
    assert list(tmp_path.iterdir()) == []


def test_open_of_a_missing_folder_makes_nothing(tmp_path: Path, fast_settings: Settings) -> None:
    with pytest.raises(NotADatabaseError, match="does not exist"):
        mangostore.open(tmp_path / "nowhere" / "vault.db", PASSPHRASE, settings=fast_settings)
    assert list(tmp_path.iterdir()) == []


def test_open_with_create_is_open_or_create(
    db_path: Path, fast_settings: Settings, no_key_warning: None
) -> None:
    with mangostore.open(db_path, PASSPHRASE, settings=fast_settings, create=True) as db:
        assert db.take_recovery_key() is not None
        db.users.create(username="ann")
    with mangostore.open(db_path, PASSPHRASE, settings=fast_settings, create=True) as db:
        assert db.users.count() == 1  # opened, not made again
        assert db.take_recovery_key() is None


def test_in_memory_databases_open_as_before(fast_settings: Settings) -> None:
    with mangostore.open(":memory:", encrypted=False) as db:
        assert db.schema_version > 0
    with mangostore.open(":memory:", PASSPHRASE, settings=fast_settings) as db:
        assert db.keyring is not None


# -- the warning -----------------------------------------------------------------------


def test_closing_without_taking_the_key_warns_without_showing_it(
    db_path: Path, fast_settings: Settings, made_keys: list[str]
) -> None:
    db = mangostore.open(db_path, PASSPHRASE, settings=fast_settings, create=True)
    with pytest.warns(RecoveryKeyWarning) as record:
        db.close()
    [key] = made_keys
    [warning] = record.list
    message = str(warning.message)
    assert str(db_path) in message
    assert "take_recovery_key()" in message
    assert "discard_recovery_key()" in message
    assert "mangostore.create(" in message
    for form in (key, key.replace("-", ""), key.lower()):
        assert form not in message
    assert warning.filename == __file__  # points at the close() that lost it


def test_leaving_a_with_block_without_taking_the_key_warns(
    db_path: Path, fast_settings: Settings, made_keys: list[str]
) -> None:
    with (
        pytest.warns(RecoveryKeyWarning) as record,
        mangostore.open(db_path, PASSPHRASE, settings=fast_settings, create=True) as db,
    ):
        db.users.create(username="ann")
    assert record.list[0].filename == __file__
    assert made_keys[0] not in str(record.list[0].message)


def test_the_warning_as_an_error_still_closes_and_warns_once(
    db_path: Path, fast_settings: Settings
) -> None:
    db = mangostore.open(db_path, PASSPHRASE, settings=fast_settings, create=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecoveryKeyWarning)
        with pytest.raises(RecoveryKeyWarning):
            db.close()
        with pytest.raises(DatabaseClosedError):
            db.query("SELECT 1")
        db.close()  # the key is gone with the first close: no second warning
        assert db.take_recovery_key() is None


@pytest.mark.parametrize("settle", ["take", "discard"])
def test_taking_or_discarding_the_key_silences_the_warning(
    settle: str, db_path: Path, fast_settings: Settings, no_key_warning: None
) -> None:
    db = mangostore.open(db_path, PASSPHRASE, settings=fast_settings, create=True)
    if settle == "take":
        assert db.take_recovery_key() is not None
    else:
        db.discard_recovery_key()
        assert db.take_recovery_key() is None  # discarded means gone
    db.close()


def test_databases_with_nothing_to_lose_never_warn(
    db_path: Path, tmp_path: Path, fast_settings: Settings, no_key_warning: None
) -> None:
    # Reopened: its key was shown when it was made, not now.
    mangostore.create(db_path, PASSPHRASE, settings=fast_settings).db.close()
    mangostore.open(db_path, PASSPHRASE, settings=fast_settings).close()
    # In memory: the key could not outlive the data.
    mangostore.open(":memory:", PASSPHRASE, settings=fast_settings).close()
    # No keyring, so no recovery key.
    mangostore.open(tmp_path / "plain.db", encrypted=False, create=True).close()
