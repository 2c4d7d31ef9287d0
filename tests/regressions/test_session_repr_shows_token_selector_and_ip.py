"""``repr`` of a login result or a session showed half of the token and the IP address.

``LoginResult`` hid its ``token`` field, but the ``UserSession`` inside it printed
``session_token`` (the token's selector, which finds the session) and ``ip_address``;
so did ``IssuedSession``, ``SessionInfo`` and the session records themselves. Now no
part of a token and no IP address appears in any of their reprs.
"""

from __future__ import annotations

import pytest

import mangostore

PASSWORD = "correct horse battery"
IP = "192.0.2.77"

pytestmark = pytest.mark.database("auth_db")


def assert_nothing_secret(text: str, token: str) -> None:
    selector, verifier = token.split(".")
    assert selector not in text
    assert verifier not in text
    assert IP not in text


def test_no_repr_shows_a_token_part_or_an_ip_address(db: mangostore.Database) -> None:
    ann = db.auth.create_user_with_password("ann", PASSWORD)
    result = db.auth.login("ann", PASSWORD, ip_address=IP, user_agent="mango/1")
    assert_nothing_secret(repr(result), result.token)
    assert_nothing_secret(str(result), result.token)
    assert "session_token=<withheld>" in repr(result.session)
    assert "ip_address=<withheld>" in repr(result.session)

    info = db.sessions.validate(result.token)
    assert_nothing_secret(repr(info), result.token)
    for session in (
        db.user_sessions.get(result.session.id),
        *db.user_sessions.list(user_id=ann.id),
        *db.sessions.active(ann.id),
    ):
        assert_nothing_secret(repr(session), result.token)
    # The values are still there for code that asks for them by name.
    assert result.session.session_token == result.token.split(".")[0]
    assert result.session.ip_address == IP

    issued = db.sessions.issue(ann.id, ip_address=IP)
    assert_nothing_secret(repr(issued), issued.token)
    stepped = db.auth.step_up(result.token, PASSWORD)
    assert_nothing_secret(repr(stepped), stepped.token)
    assert_nothing_secret(repr(stepped), result.token)


def test_a_session_without_an_ip_address_shows_none(db: mangostore.Database) -> None:
    ann = db.auth.create_user_with_password("ann", PASSWORD)
    issued = db.sessions.issue(ann.id)
    assert "ip_address=None" in repr(issued.session)
