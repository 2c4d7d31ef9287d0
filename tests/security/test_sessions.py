"""Login sessions: tokens, verifier digests, idle and absolute expiry, revocation, step-up."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidValueError,
    SessionExpired,
    SessionRevoked,
)
from mangostore.security.sessions import (
    INVALID,
    MALFORMED,
    TOKEN_CHARS,
    IssuedSession,
    Lifetime,
    SessionPolicy,
)

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
POLICY = SessionPolicy()
LEVELS = ["low", "standard", "high"]

pytestmark = pytest.mark.database("clocked_file_db")


@pytest.fixture
def ann(db: mangostore.Database) -> Any:
    return db.users.create(username="ann")


def issue(db: mangostore.Database, user: Any, level: str = "standard") -> IssuedSession:
    return db.sessions.issue(user.id, security_level=level, ip_address="192.0.2.1")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- tokens --------------------------------------------------------------------------------


def test_token_is_selector_and_verifier_with_384_random_bits(
    db: mangostore.Database, ann: Any
) -> None:
    issued = issue(db, ann)
    selector, verifier = issued.token.split(".")
    assert len(issued.token) == TOKEN_CHARS
    assert len(unb64(selector)) * 8 + len(unb64(verifier)) * 8 == 384
    assert issued.session.session_token == selector
    assert issued.token not in repr(issued)
    (row,) = db.query("SELECT verifier_hash FROM session_verifiers")
    assert len(row[0]) == 32
    assert unb64(verifier) not in bytes(row[0])
    tokens = {issue(db, ann).token for _ in range(20)}
    assert len(tokens) == 20


def test_verifier_never_reaches_the_file(clocked_db: mangostore.Database, tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    with mangostore.create(path, encrypted=False).db as db:
        user = db.users.create(username="ann")
        issued = db.sessions.issue(user.id)
        verifier = unb64(issued.token.split(".")[1])
        encoded = issued.token.split(".")[1].encode()
    data = path.read_bytes() + (
        Path(str(path) + "-wal").read_bytes() if Path(str(path) + "-wal").exists() else b""
    )
    assert verifier not in data
    assert encoded not in data


def test_validate_returns_the_user_and_the_session(db: mangostore.Database, ann: Any) -> None:
    issued = issue(db, ann)
    user, session = db.sessions.validate(issued.token)
    assert user.id == ann.id
    assert session.id == issued.session.id


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        None,
        42,
        b"bytes",
        "A" * TOKEN_CHARS,
        "A" * 22 + "." + "B" * 42,
        "A" * 22 + "." + "B" * 44,
        "A" * 22 + "." + "B" * 42 + "=",
        "A" * 22 + "." + "B" * 42 + "!",
        "A" * 21 + "é." + "B" * 43,
        "A" * 22 + "." + "B" * 42 + "C",  # non-canonical: spare bits set
        "A" * 5000,
    ],
)
def test_malformed_tokens_are_refused(db: mangostore.Database, token: Any) -> None:
    with pytest.raises(AuthenticationError) as info:
        db.sessions.validate(token)
    assert type(info.value) is AuthenticationError
    assert str(info.value) == MALFORMED


def test_unknown_selector_and_wrong_verifier_share_one_message(
    db: mangostore.Database, ann: Any
) -> None:
    issued = issue(db, ann)
    selector, verifier = issued.token.split(".")
    other = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    with pytest.raises(AuthenticationError) as unknown:
        db.sessions.validate("A" * 22 + "." + verifier)
    with pytest.raises(AuthenticationError) as wrong:
        db.sessions.validate(selector + "." + other)
    assert type(unknown.value) is type(wrong.value) is AuthenticationError
    assert str(unknown.value) == str(wrong.value) == INVALID


def test_a_hash_taken_from_a_dump_does_not_authenticate(db: mangostore.Database, ann: Any) -> None:
    issued = issue(db, ann)
    selector = issued.session.session_token
    (row,) = db.query("SELECT verifier_hash FROM session_verifiers")
    digest = bytes(row[0])
    forged = [
        selector + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        selector + "." + digest.hex(),
        digest.hex(),
        selector,
    ]
    for token in forged:
        with pytest.raises(AuthenticationError):
            db.sessions.validate(token)
    assert db.sessions.validate(issued.token).session.id == issued.session.id


def test_planting_a_plain_digest_does_not_authenticate_with_a_keyring(
    db: mangostore.Database, ann: Any
) -> None:
    """Someone who can write the file cannot mint a session without the keyring."""
    issued = issue(db, ann)
    verifier = issued.token.split(".")[1]
    db.execute(
        "UPDATE session_verifiers SET verifier_hash = ?",
        (hashlib.sha256(unb64(verifier)).digest(),),
    )
    with pytest.raises(AuthenticationError):
        db.sessions.validate(issued.token)


def test_moving_a_session_to_another_user_breaks_its_verifier(
    db: mangostore.Database, ann: Any
) -> None:
    bob = db.users.create(username="bob")
    issued = issue(db, ann)
    db.execute("UPDATE user_sessions SET user_id = ?", (bob.id,))
    with pytest.raises(AuthenticationError):
        db.sessions.validate(issued.token)


def test_lengthening_a_session_breaks_its_verifier(db: mangostore.Database, ann: Any) -> None:
    issued = issue(db, ann, "high")
    db.execute(
        "UPDATE user_sessions SET expires_at = expires_at + ?, security_level = 'low'", (DAY,)
    )
    with pytest.raises(AuthenticationError):
        db.sessions.validate(issued.token)


def test_a_verifier_digest_copied_to_another_session_does_not_verify(
    db: mangostore.Database, ann: Any
) -> None:
    first = issue(db, ann)
    second = issue(db, ann)
    db.execute(
        "UPDATE session_verifiers SET verifier_hash = "
        "(SELECT verifier_hash FROM session_verifiers WHERE session_id = ?) WHERE session_id = ?",
        (first.session.id, second.session.id),
    )
    selector = second.session.session_token
    with pytest.raises(AuthenticationError):
        db.sessions.validate(selector + "." + first.token.split(".")[1])


def test_sessions_work_without_a_keyring(clocked_db: mangostore.Database) -> None:
    user = clocked_db.users.create(username="ann")
    issued = clocked_db.sessions.issue(user.id)
    assert clocked_db.sessions.validate(issued.token).user.id == user.id
    selector = issued.token.split(".")[0]
    with pytest.raises(AuthenticationError):
        clocked_db.sessions.validate(
            selector + "." + base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
        )


# -- expiry --------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_idle_timeout_one_second_either_side(
    db: mangostore.Database, ann: Any, clock: ManualClock, level: str
) -> None:
    idle = POLICY.lifetime(level).idle_ms
    early, late = issue(db, ann, level), issue(db, ann, level)
    start = clock.now_ms()
    clock.set(start + idle - SECOND)
    assert db.sessions.peek(early.token).session.id == early.session.id
    clock.set(start + idle + SECOND)
    with pytest.raises(SessionExpired, match="idle"):
        db.sessions.validate(late.token)


@pytest.mark.parametrize("level", LEVELS)
def test_absolute_timeout_one_second_either_side(
    db: mangostore.Database, ann: Any, clock: ManualClock, level: str
) -> None:
    life = POLICY.lifetime(level)
    issued = issue(db, ann, level)
    deadline = issued.session.expires_at
    assert deadline == clock.now_ms() + life.absolute_ms
    # Stay active: never idle long enough to time out that way.
    step = life.idle_ms // 2
    while clock.now_ms() + step < deadline - SECOND:
        clock.advance(step)
        db.sessions.touch(issued.token)
    clock.set(deadline - SECOND)
    assert db.sessions.validate(issued.token)
    clock.set(deadline + SECOND)
    with pytest.raises(SessionExpired, match="time limit"):
        db.sessions.validate(issued.token)


def test_activity_is_written_at_most_once_per_interval(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    issued = issue(db, ann)
    start = clock.now_ms()

    def stored() -> int:
        return int(db.query("SELECT last_activity FROM user_sessions")[0][0])

    clock.advance(MINUTE - SECOND)
    db.sessions.validate(issued.token)
    assert stored() == start
    clock.advance(2 * SECOND)
    assert db.sessions.validate(issued.token).session.last_activity == clock.now_ms()
    assert stored() == clock.now_ms()
    clock.advance(SECOND)
    db.sessions.peek(issued.token)
    db.sessions.validate(issued.token)
    assert stored() == clock.now_ms() - SECOND
    db.sessions.touch(issued.token)
    assert stored() == clock.now_ms()


def test_activity_keeps_a_session_alive_past_one_idle_period(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    issued = issue(db, ann, "high")
    for _ in range(5):
        clock.advance(4 * MINUTE)
        db.sessions.validate(issued.token)
    assert clock.now_ms() - issued.session.created_at > POLICY.high.idle_ms


def test_expired_session_is_marked_and_reported_once(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    issued = issue(db, ann)
    clock.advance(HOUR)
    for _ in range(3):
        with pytest.raises(SessionExpired):
            db.sessions.validate(issued.token)
    (row,) = db.query("SELECT is_active, revoked_at, revoked_reason FROM user_sessions")
    assert tuple(row) == (0, None, "idle_timeout")
    expired = [
        e for e in db.audit.events() if (e.event_data or {}).get("action") == "session_expired"
    ]
    assert len(expired) == 1


# -- a clock moved backwards ----------------------------------------------------------------


def test_clock_moved_back_within_the_skew_neither_lengthens_nor_rewinds(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    issued = issue(db, ann)
    start = clock.now_ms()
    clock.advance(20 * MINUTE)
    db.sessions.touch(issued.token)
    clock.advance(-4 * MINUTE)  # corrected backwards
    db.sessions.touch(issued.token)
    assert db.query("SELECT last_activity FROM user_sessions")[0][0] == start + 20 * MINUTE
    # The idle timeout still counts from the latest activity, not the earlier clock.
    clock.set(start + 20 * MINUTE + POLICY.standard.idle_ms + SECOND)
    with pytest.raises(SessionExpired):
        db.sessions.validate(issued.token)


def test_clock_moved_back_does_not_revive_an_expired_session(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    issued = issue(db, ann)
    start = clock.now_ms()
    clock.advance(HOUR)
    with pytest.raises(SessionExpired):
        db.sessions.validate(issued.token)
    clock.set(start + MINUTE)
    with pytest.raises(SessionExpired):
        db.sessions.validate(issued.token)


def test_clock_far_behind_the_session_start_is_refused(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    issued = issue(db, ann)
    clock.advance(-(POLICY.max_clock_skew_ms + SECOND))
    with pytest.raises(SessionExpired, match="clock"):
        db.sessions.validate(issued.token)
    clock.advance(2 * SECOND)  # back within the skew
    assert db.sessions.validate(issued.token)


# -- revocation ----------------------------------------------------------------------------


def test_replay_of_a_revoked_token_is_refused_and_logged(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    issued = issue(db, ann)
    assert db.sessions.revoke(issued.session.id) is True
    assert db.sessions.revoke(issued.session.id) is False
    for _ in range(5):
        with pytest.raises(SessionRevoked):
            db.sessions.validate(issued.token)
    clock.advance(POLICY.audit_repeat_interval_ms)
    with pytest.raises(SessionRevoked):
        db.sessions.validate(issued.token)
    replays = [
        e for e in db.audit.events() if (e.event_data or {}).get("outcome") == "revoked_token"
    ]
    assert [e.event_data.get("suppressed") for e in replays] == [None, 4]
    assert all(e.user_id == ann.id and e.risk_score > 0 for e in replays)


def test_revoke_all_revokes_a_users_sessions_only(db: mangostore.Database, ann: Any) -> None:
    bob = db.users.create(username="bob")
    mine = [issue(db, ann) for _ in range(3)]
    theirs = issue(db, bob)
    assert db.sessions.revoke_all(ann.id, except_session_id=mine[0].session.id) == 2
    assert db.sessions.validate(mine[0].token)
    for issued in mine[1:]:
        with pytest.raises(SessionRevoked):
            db.sessions.validate(issued.token)
    assert db.sessions.validate(theirs.token)
    assert db.sessions.revoke_all(ann.id) == 1
    assert db.sessions.active(ann.id) == []


def test_revoke_inside_a_transaction_rolls_back_with_it(db: mangostore.Database, ann: Any) -> None:
    issued = issue(db, ann)
    with contextlib.suppress(RuntimeError), db.transaction():
        db.sessions.revoke(issued.session.id)
        raise RuntimeError("roll it back")
    assert db.sessions.validate(issued.token)


@pytest.mark.parametrize("reason", ["", "idle_timeout", "absolute_timeout", "x" * 201, None])
def test_revoke_reasons_are_checked(db: mangostore.Database, ann: Any, reason: Any) -> None:
    issued = issue(db, ann)
    with pytest.raises(InvalidValueError):
        db.sessions.revoke(issued.session.id, reason=reason)


def test_step_up_issues_a_new_token_and_revokes_the_old(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    old = issue(db, ann, "standard")
    new = db.sessions.step_up(old.token, "high")
    assert new.token != old.token
    assert new.session.security_level == "high"
    assert new.session.expires_at == clock.now_ms() + POLICY.high.absolute_ms
    assert new.session.ip_address == old.session.ip_address
    with pytest.raises(SessionRevoked):
        db.sessions.validate(old.token)
    assert db.sessions.validate(new.token).session.id == new.session.id
    with pytest.raises(SessionRevoked):
        db.sessions.step_up(old.token, "high")
    with pytest.raises(InvalidValueError):
        db.sessions.step_up(new.token, "low")


def test_active_lists_live_sessions_newest_first(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    first = issue(db, ann, "high")
    clock.advance(MINUTE)
    second = issue(db, ann, "low")
    third = issue(db, ann)
    db.sessions.revoke(third.session.id)
    assert [s.id for s in db.sessions.active(ann.id)] == [second.session.id, first.session.id]
    clock.advance(10 * MINUTE)  # the high session idles out
    assert [s.id for s in db.sessions.active(ann.id)] == [second.session.id]


def test_sweep_deletes_long_ended_sessions(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    live = issue(db, ann, "low")
    gone = issue(db, ann)
    db.sessions.revoke(gone.session.id)
    clock.advance(23 * HOUR)
    db.sessions.touch(live.token)
    assert db.sessions.sweep(keep_ms=2 * DAY) == 0
    assert db.sessions.sweep(keep_ms=HOUR) == 1
    assert db.query("SELECT count(*) FROM session_verifiers")[0][0] == 1
    with pytest.raises(AuthenticationError):
        db.sessions.validate(gone.token)


def test_unknown_token_floods_are_aggregated(
    db: mangostore.Database, ann: Any, clock: ManualClock
) -> None:
    verifier = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    for n in range(20):
        selector = base64.urlsafe_b64encode(n.to_bytes(16, "big")).rstrip(b"=").decode()
        with pytest.raises(AuthenticationError):
            db.sessions.validate(f"{selector}.{verifier}")
    unknown = [
        e for e in db.audit.events() if (e.event_data or {}).get("outcome") == "unknown_token"
    ]
    assert len(unknown) == 1


def test_issue_checks_its_input(db: mangostore.Database, ann: Any) -> None:
    with pytest.raises(InvalidValueError):
        db.sessions.issue(ann.id, security_level="paranoid")
    with pytest.raises(InvalidValueError):
        db.sessions.issue(ann.id, user_agent="x" * 5000)
    assert db.query("SELECT count(*) FROM user_sessions")[0][0] == 0


def test_session_policy_refuses_nonsense() -> None:
    with pytest.raises(ConfigurationError):
        SessionPolicy(high=Lifetime(idle_ms=HOUR, absolute_ms=MINUTE))
    with pytest.raises(ConfigurationError):
        SessionPolicy(activity_write_interval_ms=HOUR)
