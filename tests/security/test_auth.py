"""Password authentication: hashes, login, back-off, lock-out, audit events, enumeration."""

from __future__ import annotations

import json
import threading
from typing import Any

import argon2
import pytest
from tests.conftest import Sleeps

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import (
    AccountLockedError,
    AuthenticationError,
    DatabaseError,
    InvalidValueError,
    NotFoundError,
    SessionRevoked,
    UniqueConstraintError,
)
from mangostore.security.auth import GENERIC_FAILURE, AuthPolicy
from mangostore.security.passwords import PasswordHasher, PasswordParams

#: Argon2id at almost no cost, so the tests run fast; production uses PasswordParams().
CHEAP = PasswordParams(memory_kib=64, time_cost=1, parallelism=1)
STRONGER = PasswordParams(memory_kib=128, time_cost=2, parallelism=1)
PASSWORD = "correct horse battery"
SECOND = 1_000
MINUTE = 60 * SECOND
HOUR_MS = 60 * MINUTE

pytestmark = pytest.mark.database("auth_db")


@pytest.fixture
def ann(db: mangostore.Database) -> Any:
    return db.auth.create_user_with_password("ann", PASSWORD, email="ann@example.org")


def events(db: mangostore.Database, action: str | None = None) -> list[Any]:
    found = [e for e in db.audit.events() if e.source_component == "auth"]
    if action is not None:
        found = [e for e in found if (e.event_data or {}).get("action") == action]
    return found


def fail(db: mangostore.Database, username: str, times: int = 1) -> list[Exception]:
    raised: list[Exception] = []
    for _ in range(times):
        with pytest.raises(AuthenticationError) as info:
            db.auth.login(username, "not the password")
        raised.append(info.value)
    return raised


# -- passwords -----------------------------------------------------------------------------


def test_password_is_stored_as_an_argon2id_hash_with_its_parameters(
    db: mangostore.Database, ann: Any
) -> None:
    (stored,) = db.query("SELECT password_hash FROM user_credentials WHERE user_id = ?", (ann.id,))
    params = argon2.extract_parameters(stored[0])
    assert stored[0].startswith("$argon2id$")
    assert (params.memory_cost, params.time_cost, params.parallelism) == (64, 1, 1)
    assert PASSWORD not in stored[0]
    assert db.auth.has_password(ann.id)


@pytest.mark.parametrize("bad", ["short", "x" * 1025, b"bytes password", None])
def test_passwords_outside_the_policy_are_refused(db: mangostore.Database, bad: Any) -> None:
    with pytest.raises(InvalidValueError) as info:
        db.auth.create_user_with_password("bob", bad)
    assert info.value.field == "password"
    assert db.users.get_by_username("bob") is None


def test_a_taken_user_name_creates_nothing(db: mangostore.Database, ann: Any) -> None:
    with pytest.raises(UniqueConstraintError):
        db.auth.create_user_with_password("ann", "another password")
    assert db.query("SELECT count(*) FROM user_credentials")[0][0] == 1


def test_set_password_for_a_missing_user(db: mangostore.Database) -> None:
    with pytest.raises(NotFoundError):
        db.auth.set_password("no-such-user", PASSWORD)


def test_the_same_password_typed_in_another_unicode_form_matches(db: mangostore.Database) -> None:
    db.auth.create_user_with_password("zoe", "caf\u00e9 au lait")  # precomposed é
    assert db.auth.login("zoe", "cafe\u0301 au lait").user.username == "zoe"  # e + accent


def test_hash_below_current_parameters_is_upgraded_at_login(
    db: mangostore.Database, ann: Any, sleeps: Sleeps
) -> None:
    db.auth.configure(policy=AuthPolicy(password=STRONGER))
    result = db.auth.login("ann", PASSWORD)
    (stored,) = db.query("SELECT password_hash FROM user_credentials WHERE user_id = ?", (ann.id,))
    params = argon2.extract_parameters(stored[0])
    assert (params.memory_cost, params.time_cost) == (128, 2)
    assert result.user.id == ann.id
    (event,) = events(db, "login")
    assert event.event_data["hash_upgraded"] is True
    # The upgraded hash still verifies, and stronger hashes are never weakened.
    db.auth.configure(policy=AuthPolicy(password=CHEAP))
    db.auth.login("ann", PASSWORD)
    again = db.query("SELECT password_hash FROM user_credentials WHERE user_id = ?", (ann.id,))
    assert again[0][0] == stored[0]


def test_needs_upgrade_compares_each_parameter() -> None:
    hasher = PasswordHasher(STRONGER)
    assert not hasher.needs_upgrade(hasher.hash("pw"))
    assert hasher.needs_upgrade(PasswordHasher(CHEAP).hash("pw"))
    assert hasher.needs_upgrade("$argon2i$v=19$m=128,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo")
    assert hasher.needs_upgrade("not a hash")
    assert not PasswordHasher(CHEAP).needs_upgrade(hasher.hash("pw"))
    assert not hasher.verify("$argon2i$v=19$m=128,t=2,p=1$c2FsdA$aGFzaA", "pw")


# -- login ---------------------------------------------------------------------------------


def test_login_returns_a_token_the_user_and_the_session(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    result = db.auth.login(
        "ann",
        PASSWORD,
        device_info={"os": "linux"},
        ip_address="192.0.2.7",
        user_agent="mango-terminal/1.0",
    )
    assert result.user.id == ann.id
    assert result.user.last_login == clock.now_ms()
    assert db.users.get(ann.id).last_login == clock.now_ms()
    assert result.session.user_id == ann.id
    assert result.session.device_info == {"os": "linux"}
    assert result.session.ip_address == "192.0.2.7"
    assert result.session.security_level == "standard"
    assert result.token not in repr(result)
    user, session = db.sessions.validate(result.token)
    assert (user.id, session.id) == (ann.id, result.session.id)


def test_unknown_user_and_wrong_password_get_the_same_error(
    db: mangostore.Database, ann: Any
) -> None:
    (unknown,) = fail(db, "nobody")
    (wrong,) = fail(db, "ann")
    assert type(unknown) is type(wrong) is AuthenticationError
    assert str(unknown) == str(wrong) == GENERIC_FAILURE


def test_unknown_user_costs_one_argon2_verification_like_a_known_one(
    db: mangostore.Database, ann: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    hasher = db.auth.hasher
    real = hasher.verify

    def counting(stored: str, password: str) -> bool:
        calls.append(stored)
        return bool(real(stored, password))

    monkeypatch.setattr(hasher, "verify", counting)
    fail(db, "nobody")
    fail(db, "ann")
    db.auth.create_user_with_password("nopass", PASSWORD)
    nopass = db.users.get_by_username("nopass")
    assert nopass is not None
    db.execute("DELETE FROM user_credentials WHERE user_id = ?", (nopass.id,))
    fail(db, "nopass")
    assert len(calls) == 3
    # Same parameters for the dummy hash and the real one: the same work.
    params = [argon2.extract_parameters(c) for c in calls]
    assert params[0] == params[1] == params[2]


def test_non_string_credentials_are_a_programming_error(db: mangostore.Database) -> None:
    with pytest.raises(InvalidValueError):
        db.auth.login("ann", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        db.auth.login(["ann"], PASSWORD)  # type: ignore[arg-type]
    assert events(db) == []


def test_overlong_password_at_login_fails_without_hashing_it(
    db: mangostore.Database, ann: Any
) -> None:
    with pytest.raises(AuthenticationError):
        db.auth.login("ann", PASSWORD + "x" * 5_000)


def test_login_refuses_to_run_inside_a_transaction(db: mangostore.Database, ann: Any) -> None:
    with db.transaction(), pytest.raises(DatabaseError, match=r"inside db\.transaction"):
        db.auth.login("ann", "not the password")


# -- back-off and lock-out -----------------------------------------------------------------


def test_failures_back_off_exponentially_up_to_a_cap(
    db: mangostore.Database, ann: Any, sleeps: Sleeps
) -> None:
    db.auth.configure(
        policy=AuthPolicy(password=CHEAP, max_failures=10, backoff_base_ms=100, backoff_max_ms=700)
    )
    fail(db, "ann", 5)
    assert sleeps == [0.1, 0.2, 0.4, 0.7, 0.7]
    db.auth.login("ann", PASSWORD)
    assert len(sleeps) == 5  # success does not sleep
    fail(db, "ann")
    assert sleeps[-1] == 0.1  # and resets the count


def test_lockout_after_max_failures_refuses_even_the_right_password(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    raised = fail(db, "ann", 5)
    assert [type(e) for e in raised] == [AuthenticationError] * 4 + [AccountLockedError]
    locked = raised[-1]
    assert isinstance(locked, AccountLockedError)
    assert locked.locked_until == clock.now_ms() + 15 * MINUTE
    clock.advance(15 * MINUTE - SECOND)
    with pytest.raises(AccountLockedError) as info:
        db.auth.login("ann", PASSWORD)
    assert info.value.locked_until == locked.locked_until
    clock.advance(2 * SECOND)  # one second after the lock ends
    assert db.auth.login("ann", PASSWORD).user.id == ann.id


def test_locked_name_does_not_verify_the_password(
    db: mangostore.Database, ann: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail(db, "ann", 5)
    monkeypatch.setattr(db.auth.hasher, "verify", pytest.fail)
    with pytest.raises(AccountLockedError):
        db.auth.login("ann", "not the password")


def test_failures_outside_the_window_start_a_new_count(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    for _ in range(4):
        fail(db, "ann")
        clock.advance(15 * MINUTE + SECOND)
    (row,) = db.query("SELECT failed_attempts FROM login_attempts")
    assert row[0] == 1
    clock.advance(-2 * SECOND)  # back inside the window of the last failure
    fail(db, "ann")
    assert db.query("SELECT failed_attempts FROM login_attempts")[0][0] == 2


def test_unknown_names_lock_out_exactly_like_known_ones(db: mangostore.Database, ann: Any) -> None:
    known = fail(db, "ann", 6)
    unknown = fail(db, "nobody", 6)
    assert [type(e) for e in known] == [type(e) for e in unknown]
    assert [str(e) for e in known] == [str(e) for e in unknown]


def test_clock_set_back_does_not_shorten_a_lock(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    fail(db, "ann", 5)
    clock.advance(-HOUR_MS)
    with pytest.raises(AccountLockedError):
        db.auth.login("ann", PASSWORD)


def test_unlock_clears_the_lock(db: mangostore.Database, ann: Any) -> None:
    fail(db, "ann", 5)
    assert db.auth.unlock("ann") is True
    assert db.auth.login("ann", PASSWORD).user.id == ann.id
    assert db.auth.unlock("ann") is False


def test_login_attempts_hold_no_user_name(db: mangostore.Database, ann: Any) -> None:
    fail(db, "ann")
    fail(db, "mallory-typed-her-password-here")
    rows = db.query("SELECT username_key, user_id FROM login_attempts ORDER BY user_id")
    assert {r[1] for r in rows} == {None, ann.id}
    assert all(len(r[0]) == 32 for r in rows)
    assert not any(b"ann" in r[0] or b"mallory" in r[0] for r in rows)


def test_concurrent_failures_are_all_counted(db: mangostore.Database, ann: Any) -> None:
    db.auth.configure(policy=AuthPolicy(password=CHEAP, max_failures=100))
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            db.auth.login("ann", "not the password")
        except AuthenticationError:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert db.query("SELECT failed_attempts FROM login_attempts")[0][0] == 8


# -- audit events --------------------------------------------------------------------------


def test_every_attempt_writes_an_event_with_a_rising_risk_score(
    db: mangostore.Database, ann: Any
) -> None:
    db.auth.login("ann", PASSWORD, ip_address="192.0.2.7", user_agent="ua")
    fail(db, "ann", 5)
    with pytest.raises(AccountLockedError):
        db.auth.login("ann", PASSWORD)
    fail(db, "nobody")
    found = events(db, "login")
    outcomes = [e.event_data["outcome"] for e in found]
    assert outcomes == ["success"] + ["failure"] * 5 + ["refused_locked", "failure"]
    assert all(e.event_type == "auth" for e in found)
    risks = [e.risk_score for e in found]
    assert risks[0] == 0.0
    assert risks[1:6] == sorted(risks[1:6])
    assert risks[1] > 0
    assert risks[6] == max(risks)
    assert [e.severity for e in found][5:7] == ["error", "error"]
    assert found[0].client_info == {"ip_address": "192.0.2.7", "user_agent": "ua"}
    assert found[-1].user_id is None
    assert found[1].user_id == ann.id


def test_no_secret_ever_reaches_an_event(db: mangostore.Database, ann: Any) -> None:
    result = db.auth.login("ann", PASSWORD)
    fail(db, "ann")
    fail(db, "ann-typo")
    db.auth.change_password(ann.id, PASSWORD, "a brand new password")
    second = db.auth.login("ann", "a brand new password")
    db.auth.step_up(second.token, "a brand new password")
    (stored,) = db.query("SELECT password_hash FROM user_credentials")
    secrets_ = [PASSWORD, "not the password", "a brand new password", stored[0]]
    secrets_ += [result.token, second.token, *result.token.split("."), *second.token.split(".")]
    dumped = json.dumps([(e.event_data, e.client_info) for e in db.audit.events()])
    assert events(db)
    for secret in secrets_:
        assert secret not in dumped


# -- change, logout, step-up ---------------------------------------------------------------


def test_password_change_revokes_every_session(db: mangostore.Database, ann: Any) -> None:
    first = db.auth.login("ann", PASSWORD)
    second = db.auth.login("ann", PASSWORD)
    assert db.auth.change_password(ann.id, PASSWORD, "a brand new password") == 2
    for token in (first.token, second.token):
        with pytest.raises(SessionRevoked):
            db.sessions.validate(token)
    fail(db, "ann")  # the old password no longer works
    assert db.auth.login("ann", "a brand new password").user.id == ann.id


def test_set_password_can_keep_the_current_session(db: mangostore.Database, ann: Any) -> None:
    keep = db.auth.login("ann", PASSWORD)
    other = db.auth.login("ann", PASSWORD)
    assert db.auth.set_password(ann.id, "another password", keep_session_id=keep.session.id) == 1
    assert db.sessions.validate(keep.token).user.id == ann.id
    with pytest.raises(SessionRevoked):
        db.sessions.validate(other.token)


def test_change_password_with_a_wrong_old_password_counts_as_a_failure(
    db: mangostore.Database, ann: Any
) -> None:
    with pytest.raises(AuthenticationError):
        db.auth.change_password(ann.id, "not the password", "a brand new password")
    assert db.query("SELECT failed_attempts FROM login_attempts")[0][0] == 1
    assert db.auth.login("ann", PASSWORD)


def test_password_change_clears_a_lock(db: mangostore.Database, ann: Any) -> None:
    fail(db, "ann", 5)
    db.auth.set_password(ann.id, "a brand new password")
    assert db.auth.login("ann", "a brand new password").user.id == ann.id


def test_logout_revokes_the_session(db: mangostore.Database, ann: Any) -> None:
    result = db.auth.login("ann", PASSWORD)
    assert db.auth.logout(result.token) is True
    with pytest.raises(SessionRevoked):
        db.sessions.validate(result.token)
    assert db.auth.logout(result.token) is False
    with pytest.raises(AuthenticationError):
        db.auth.logout("not-a-token")


def test_step_up_checks_the_password_and_issues_a_new_token(
    db: mangostore.Database, ann: Any
) -> None:
    low = db.auth.login("ann", PASSWORD, security_level="low")
    with pytest.raises(AuthenticationError):
        db.auth.step_up(low.token, "not the password")
    assert db.sessions.validate(low.token)  # a failed step-up leaves the session alone
    high = db.auth.step_up(low.token, PASSWORD)
    assert high.token != low.token
    assert high.session.security_level == "high"
    with pytest.raises(SessionRevoked):
        db.sessions.validate(low.token)
    assert db.sessions.validate(high.token).session.id == high.session.id
    with pytest.raises(InvalidValueError):
        db.auth.step_up(high.token, PASSWORD, security_level="standard")


def test_auth_policy_refuses_nonsense() -> None:
    from mangostore.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        AuthPolicy(max_failures=0)
    with pytest.raises(ConfigurationError):
        AuthPolicy(min_password_chars=10, max_password_chars=5)
    with pytest.raises(ConfigurationError):
        PasswordParams(salt_bytes=8)
    with pytest.raises(InvalidValueError):
        AuthPolicy(default_security_level="paranoid")


def test_a_planted_hash_with_huge_parameters_is_not_computed(
    db: mangostore.Database, ann: Any
) -> None:
    huge = "$argon2id$v=19$m=16777216,t=1000,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43
    db.execute("UPDATE user_credentials SET password_hash = ?", (huge,))
    with pytest.raises(AuthenticationError):
        db.auth.login("ann", PASSWORD)
