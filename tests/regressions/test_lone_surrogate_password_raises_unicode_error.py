"""A lone surrogate in a password raised ``UnicodeEncodeError`` from ``db.auth``.

Login, setting and changing a password, step-up and creating a user with a password all
let the raw exception out, and such login attempts were neither counted towards the
lock-out nor audited. Now a password that is set must be valid Unicode
(``InvalidValueError``), and one that is checked is simply wrong: the same error, the
same count and the same audit event as any wrong password. The same holds for a lone
surrogate in the user name of a login.
"""

from __future__ import annotations

from typing import Any

import pytest

import mangostore
from mangostore.errors import AccountLockedError, AuthenticationError, InvalidValueError
from mangostore.security.auth import GENERIC_FAILURE

PASSWORD = "correct horse battery"
BROKEN = "correct \ud800 horse"

pytestmark = pytest.mark.database("auth_db")


@pytest.fixture
def ann(db: mangostore.Database) -> Any:
    return db.auth.create_user_with_password("ann", PASSWORD)


def failures(db: mangostore.Database) -> list[int]:
    return [int(r[0]) for r in db.query("SELECT failed_attempts FROM login_attempts")]


def audited(db: mangostore.Database, action: str) -> list[dict[str, Any]]:
    return [
        e.event_data
        for e in db.audit.events()
        if e.source_component == "auth" and (e.event_data or {}).get("action") == action
    ]


def test_login_with_a_lone_surrogate_is_a_wrong_password(db: mangostore.Database, ann: Any) -> None:
    for attempt in range(1, 5):
        with pytest.raises(AuthenticationError) as caught:
            db.auth.login("ann", BROKEN)
        assert type(caught.value) is AuthenticationError
        assert str(caught.value) == GENERIC_FAILURE
        assert failures(db) == [attempt]
    with pytest.raises(AccountLockedError):
        db.auth.login("ann", "\udfff")
    events = audited(db, "login")
    assert [e["outcome"] for e in events] == ["failure"] * 5
    assert all(e["known_user"] for e in events)


def test_a_lone_surrogate_in_the_user_name_is_an_unknown_name(db: mangostore.Database) -> None:
    with pytest.raises(AuthenticationError) as caught:
        db.auth.login("a\ud800n", PASSWORD)
    assert str(caught.value) == GENERIC_FAILURE
    assert failures(db) == [1]
    (event,) = audited(db, "login")
    assert event["outcome"] == "failure"
    assert event["known_user"] is False
    assert db.auth.unlock("a\ud800n") is True
    assert db.users.get_by_username("a\ud800n") is None


def test_a_password_with_a_lone_surrogate_cannot_be_set(db: mangostore.Database, ann: Any) -> None:
    calls = [
        lambda: db.auth.create_user_with_password("bob", BROKEN),
        lambda: db.auth.set_password(ann.id, BROKEN),
        lambda: db.auth.change_password(ann.id, PASSWORD, BROKEN),
    ]
    for call in calls:
        with pytest.raises(InvalidValueError) as caught:
            call()
        assert caught.value.field == "password"
        assert "\ud800" not in str(caught.value)
    assert db.users.get_by_username("bob") is None
    assert db.auth.login("ann", PASSWORD).user.id == ann.id


def test_a_wrong_old_password_with_a_lone_surrogate_is_counted(
    db: mangostore.Database, ann: Any
) -> None:
    with pytest.raises(AuthenticationError):
        db.auth.change_password(ann.id, BROKEN, "a new long password")
    assert failures(db) == [1]
    assert [e["outcome"] for e in audited(db, "change_password")] == ["failure"]


def test_step_up_with_a_lone_surrogate_is_a_wrong_password(
    db: mangostore.Database, ann: Any
) -> None:
    token = db.auth.login("ann", PASSWORD).token
    with pytest.raises(AuthenticationError) as caught:
        db.auth.step_up(token, BROKEN)
    assert str(caught.value) == GENERIC_FAILURE
    assert failures(db) == [1]
    assert [e["outcome"] for e in audited(db, "step_up")] == ["failure"]
    assert db.sessions.validate(token).user.id == ann.id  # the session is untouched
