"""A misspelt required field was reported as a missing one.

``db.users.create(usernme="ann")`` raised ``MissingFieldError: users needs username``,
sending the caller to look for a field they had given; the spelling they typed was not
named. Now the unknown name is reported first (``UnknownColumnError``, ``field`` the name
as given, with the column it was probably meant to be), by ``create``, ``create_many``
and ``update`` alike; a field that is really missing is still reported as missing.
"""

from __future__ import annotations

import pytest

import mangostore
from mangostore.errors import BatchError, MissingFieldError, UnknownColumnError


def test_create_names_the_misspelt_field(plain_db: mangostore.Database) -> None:
    with pytest.raises(UnknownColumnError, match=r"'usernme' \(did you mean 'username'\?\)") as e:
        plain_db.users.create(usernme="ann")
    assert e.value.field == "usernme"
    assert plain_db.users.count() == 0


def test_create_names_an_unknown_field_beside_a_missing_one(plain_db: mangostore.Database) -> None:
    ann = plain_db.users.create(username="ann")
    with pytest.raises(UnknownColumnError) as raised:
        plain_db.projects.create(user_id=ann.id, nme="site", path="/home/ann/site")
    assert raised.value.field == "nme"


def test_create_many_names_the_misspelt_field(plain_db: mangostore.Database) -> None:
    with pytest.raises(BatchError) as raised:
        plain_db.users.create_many([{"username": "ann"}, {"usernme": "bob"}])
    assert raised.value.index == 1
    assert isinstance(raised.value.__cause__, UnknownColumnError)
    assert raised.value.__cause__.field == "usernme"
    assert plain_db.users.count() == 0


def test_update_names_the_misspelt_field(plain_db: mangostore.Database) -> None:
    ann = plain_db.users.create(username="ann")
    with pytest.raises(UnknownColumnError, match="did you mean 'email'") as raised:
        plain_db.users.update(ann.id, emial="ann@example.org")
    assert raised.value.field == "emial"


def test_an_unknown_name_far_from_every_column_gets_no_guess(
    plain_db: mangostore.Database,
) -> None:
    with pytest.raises(UnknownColumnError) as raised:
        plain_db.users.create(username="ann", xyzzy=1)
    assert "did you mean" not in str(raised.value)
    assert raised.value.field == "xyzzy"


def test_a_field_really_missing_is_still_reported_as_missing(
    plain_db: mangostore.Database,
) -> None:
    with pytest.raises(MissingFieldError) as raised:
        plain_db.users.create(email="ann@example.org")
    assert raised.value.field == "username"
