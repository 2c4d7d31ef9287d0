"""The richer repository methods: users by name, projects by path and recency, command
history (recent, literal search, statistics), terminal sessions and voice profiles."""

from __future__ import annotations

from typing import Any

import pytest

import mangostore
from design import Rows, row_counts
from mangostore.clock import ManualClock
from mangostore.errors import (
    InvalidValueError,
    NotFoundError,
    UniqueConstraintError,
)

START = 1_700_000_000_000

pytestmark = pytest.mark.database("clocked_db")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def rows(db: mangostore.Database) -> Rows:
    return Rows(db)


@pytest.fixture
def user(rows: Rows) -> Any:
    return rows.user(username="alice", email="alice@example.org")


# -- users --------------------------------------------------------------------------------


def test_get_by_username_and_email(db: mangostore.Database, rows: Rows, user: Any) -> None:
    rows.user(username="bob", email="bob@example.org")
    assert db.users.get_by_username("alice") == user
    assert db.users.get_by_email("alice@example.org") == user
    assert db.users.get_by_username("nobody") is None
    assert db.users.get_by_email("nobody@example.org") is None


def test_get_by_username_treats_like_characters_literally(
    db: mangostore.Database, rows: Rows
) -> None:
    rows.user(username="a_b")
    assert db.users.get_by_username("a%") is None
    assert db.users.get_by_username("a_c") is None


# -- projects -----------------------------------------------------------------------------


def test_find_by_path_is_per_user(db: mangostore.Database, rows: Rows, user: Any) -> None:
    bob = rows.user()
    mine = rows.project(user_id=user.id, path="/src/app")
    theirs = rows.project(user_id=bob.id, path="/src/app")
    assert db.projects.find_by_path(user.id, "/src/app") == mine
    assert db.projects.find_by_path(bob.id, "/src/app") == theirs
    assert db.projects.find_by_path(user.id, "/src/other") is None
    assert db.projects.find_by_path("nobody", "/src/app") is None


def test_find_active_orders_by_last_accessed_newest_first(
    db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock
) -> None:
    old = rows.project(user_id=user.id, name="old")
    new = rows.project(user_id=user.id, name="new")
    middle = rows.project(user_id=user.id, name="middle")
    never = rows.project(user_id=user.id, name="never")
    archived = rows.project(user_id=user.id, name="archived", status="archived")
    rows.project(name="someone else's")
    for project in (old, middle, new, archived):
        clock.advance(1_000)
        db.projects.touch(project.id)
    found = db.projects.find_active(user.id)
    assert [p.name for p in found] == ["new", "middle", "old", "never"]
    assert never.id in {p.id for p in found}
    assert all(p.status == "active" for p in found)


def test_touch_sets_last_accessed_but_not_updated_at(
    db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock
) -> None:
    project = rows.project(user_id=user.id)
    assert project.last_accessed is None
    later = clock.advance(90_000)
    touched = db.projects.touch(project.id)
    assert touched.last_accessed == later
    assert touched.updated_at == project.updated_at == START
    assert db.projects.get(project.id) == touched


def test_touch_keeps_encrypted_values(
    clocked_memory_db: mangostore.Database, clock: ManualClock
) -> None:
    project = Rows(clocked_memory_db).project(security_config={"deploy_key": "k"})
    clock.advance(5)
    touched = clocked_memory_db.projects.touch(project.id)
    assert touched.security_config == {"deploy_key": "k"}
    assert clocked_memory_db.projects.get(project.id).security_config == {"deploy_key": "k"}


def test_touch_missing_project_raises_not_found(db: mangostore.Database) -> None:
    with pytest.raises(NotFoundError):
        db.projects.touch("no-such-project")


# -- command history ----------------------------------------------------------------------


def test_record_stores_a_command_stamped_by_the_clock(
    db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock
) -> None:
    project = rows.project(user_id=user.id)
    now = clock.advance(42)
    command = db.command_history.record(
        user.id, "git status", project_id=project.id, command_type="voice", exit_code=0
    )
    assert (command.user_id, command.command, command.timestamp) == (user.id, "git status", now)
    assert (command.project_id, command.command_type, command.exit_code) == (
        project.id,
        "voice",
        0,
    )
    assert db.command_history.get(command.id) == command


def test_recent_returns_newest_first_with_limit_and_project(
    db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock
) -> None:
    one, two = rows.project(user_id=user.id), rows.project(user_id=user.id)
    for i in range(6):
        clock.advance(10)
        db.command_history.record(user.id, f"cmd{i}", project_id=(one, two)[i % 2].id)
    db.command_history.record(rows.user().id, "someone else")
    assert [c.command for c in db.command_history.recent(user.id)] == [
        "cmd5",
        "cmd4",
        "cmd3",
        "cmd2",
        "cmd1",
        "cmd0",
    ]
    assert [c.command for c in db.command_history.recent(user.id, limit=2)] == ["cmd5", "cmd4"]
    assert [c.command for c in db.command_history.recent(user.id, one.id)] == [
        "cmd4",
        "cmd2",
        "cmd0",
    ]
    assert [c.command for c in db.command_history.recent(user.id, two.id, limit=1)] == ["cmd5"]
    assert db.command_history.recent("nobody") == []


def test_recent_refuses_a_bad_limit(db: mangostore.Database, user: Any) -> None:
    with pytest.raises(InvalidValueError):
        db.command_history.recent(user.id, limit=-5)


@pytest.fixture
def searchable(db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock) -> None:
    for text in [
        "grep 100%",
        "grep 1000",
        "a_b",
        "axb",
        "echo C:\\temp",
        "echo C:temp",
        "find . -name '*.py'",
    ]:
        clock.advance(1)
        db.command_history.record(user.id, text)
    db.command_history.record(rows.user().id, "grep 100% of someone else")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100%", ["grep 100%"]),
        ("a_b", ["a_b"]),
        ("_", ["a_b"]),
        ("%", ["grep 100%"]),
        ("C:\\", ["echo C:\\temp"]),
        ("\\", ["echo C:\\temp"]),
        ("grep", ["grep 1000", "grep 100%"]),
        ("'*.py'", ["find . -name '*.py'"]),
        ("nothing like this", []),
    ],
)
def test_search_treats_like_metacharacters_literally(
    db: mangostore.Database, user: Any, searchable: None, text: str, expected: list[str]
) -> None:
    assert [c.command for c in db.command_history.search(user.id, text)] == expected


def test_search_is_limited_to_the_user(
    db: mangostore.Database, rows: Rows, user: Any, searchable: None
) -> None:
    assert all(c.user_id == user.id for c in db.command_history.search(user.id, "grep"))
    assert db.command_history.search("nobody", "grep") == []


def test_stats_counts_by_type_and_exit_code_and_averages_time(
    db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock
) -> None:
    for kind, code, elapsed in [
        ("voice", 0, 100),
        ("voice", 1, 300),
        ("keyboard", 0, 200),
        ("ai", 0, None),
        (None, 127, 400),
    ]:
        clock.advance(1_000)
        db.command_history.record(
            user.id, "x", command_type=kind, exit_code=code, execution_time=elapsed
        )
    db.command_history.record(rows.user().id, "y", command_type="ai", execution_time=9_999)
    stats = db.command_history.stats(user.id)
    assert stats.total == 5
    assert stats.by_type == {"voice": 2, "keyboard": 1, "ai": 1, None: 1}
    assert stats.by_exit_code == {0: 3, 1: 1, 127: 1}
    assert stats.mean_execution_time == pytest.approx(250.0)


def test_stats_since_counts_only_later_commands(
    db: mangostore.Database, user: Any, clock: ManualClock
) -> None:
    db.command_history.record(user.id, "early", command_type="voice", execution_time=10)
    since = clock.advance(60_000)
    db.command_history.record(user.id, "at", command_type="keyboard", execution_time=20)
    clock.advance(1)
    db.command_history.record(user.id, "late", command_type="keyboard", execution_time=40)
    stats = db.command_history.stats(user.id, since=since)
    assert stats.total == 2
    assert stats.by_type == {"keyboard": 2}
    assert stats.mean_execution_time == pytest.approx(30.0)


def test_stats_of_a_user_without_commands(db: mangostore.Database, user: Any) -> None:
    stats = db.command_history.stats(user.id)
    assert stats.total == 0
    assert stats.by_type == {}
    assert stats.by_exit_code == {}
    assert stats.mean_execution_time is None


# -- terminal sessions --------------------------------------------------------------------


def test_open_starts_an_active_session(
    db: mangostore.Database, user: Any, clock: ManualClock
) -> None:
    now = clock.advance(5)
    session = db.terminal_sessions.open(user.id, name="main", working_directory="/src")
    assert (session.status, session.last_activity, session.created_at) == ("active", now, now)
    assert (session.name, session.working_directory) == ("main", "/src")


def test_record_activity_stamps_the_clock_and_updates_fields(
    db: mangostore.Database, user: Any, clock: ManualClock
) -> None:
    session = db.terminal_sessions.open(user.id)
    later = clock.advance(30_000)
    active = db.terminal_sessions.record_activity(session.id, working_directory="/tmp")
    assert (active.last_activity, active.working_directory) == (later, "/tmp")
    assert active.created_at == session.created_at
    assert db.terminal_sessions.get(session.id) == active


def test_record_activity_is_refused_on_a_closed_session(
    db: mangostore.Database, user: Any, clock: ManualClock
) -> None:
    session = db.terminal_sessions.open(user.id)
    clock.advance(10)
    closed = db.terminal_sessions.close(session.id)
    clock.advance(10)
    with pytest.raises(InvalidValueError):
        db.terminal_sessions.record_activity(session.id, working_directory="/elsewhere")
    assert db.terminal_sessions.get(session.id) == closed


def test_record_activity_on_a_missing_session_raises_not_found(db: mangostore.Database) -> None:
    with pytest.raises(NotFoundError):
        db.terminal_sessions.record_activity("no-such-session")


def test_close_is_idempotent(db: mangostore.Database, user: Any, clock: ManualClock) -> None:
    session = db.terminal_sessions.open(user.id)
    closed_at = clock.advance(100)
    closed = db.terminal_sessions.close(session.id)
    assert (closed.status, closed.last_activity) == ("closed", closed_at)
    clock.advance(100)
    again = db.terminal_sessions.close(session.id)
    assert again == closed
    assert db.terminal_sessions.get(session.id) == closed


def test_close_missing_session_raises_not_found(db: mangostore.Database) -> None:
    with pytest.raises(NotFoundError):
        db.terminal_sessions.close("no-such-session")


def test_active_lists_open_sessions_most_recent_first(
    db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock
) -> None:
    first = db.terminal_sessions.open(user.id, name="first")
    clock.advance(10)
    second = db.terminal_sessions.open(user.id, name="second")
    clock.advance(10)
    gone = db.terminal_sessions.open(user.id, name="gone")
    db.terminal_sessions.open(rows.user().id, name="other user's")
    clock.advance(10)
    db.terminal_sessions.record_activity(first.id)
    db.terminal_sessions.close(gone.id)
    assert [s.name for s in db.terminal_sessions.active(user.id)] == ["first", "second"]
    assert second.id in {s.id for s in db.terminal_sessions.active(user.id)}


def test_session_encrypted_fields_survive_activity_and_close(
    clocked_memory_db: mangostore.Database, clock: ManualClock
) -> None:
    user = Rows(clocked_memory_db).user()
    session = clocked_memory_db.terminal_sessions.open(
        user.id, environment_variables={"TOKEN": "s3cret"}, session_data={"scroll": 10}
    )
    clock.advance(1)
    clocked_memory_db.terminal_sessions.record_activity(session.id, session_data={"scroll": 20})
    clocked_memory_db.terminal_sessions.close(session.id)
    final = clocked_memory_db.terminal_sessions.get(session.id)
    assert final.environment_variables == {"TOKEN": "s3cret"}
    assert final.session_data == {"scroll": 20}


# -- voice profiles -----------------------------------------------------------------------


def _active_ids(db: mangostore.Database, user_id: str) -> list[str]:
    return [p.id for p in db.voice_profiles.list(user_id=user_id, is_active=True)]


def test_creating_an_active_profile_points_the_user_at_it(
    db: mangostore.Database, rows: Rows, user: Any
) -> None:
    profile = rows.voice_profile(user_id=user.id, is_active=True)
    assert profile.is_active is True
    assert db.users.get(user.id).voice_profile_id == profile.id
    assert db.voice_profiles.active(user.id) == profile


def test_creating_an_active_profile_deactivates_the_others(
    db: mangostore.Database, rows: Rows, user: Any
) -> None:
    first = rows.voice_profile(user_id=user.id, is_active=True)
    second = rows.voice_profile(user_id=user.id, is_active=True)
    assert _active_ids(db, user.id) == [second.id]
    assert db.voice_profiles.get(first.id).is_active is False
    assert db.users.get(user.id).voice_profile_id == second.id


def test_creating_an_inactive_profile_changes_nothing(
    db: mangostore.Database, rows: Rows, user: Any
) -> None:
    active = rows.voice_profile(user_id=user.id, is_active=True)
    idle = rows.voice_profile(user_id=user.id)
    assert idle.is_active is False
    assert _active_ids(db, user.id) == [active.id]
    assert db.users.get(user.id).voice_profile_id == active.id


def test_activate_switches_the_active_profile(
    db: mangostore.Database, rows: Rows, user: Any, clock: ManualClock
) -> None:
    first = rows.voice_profile(user_id=user.id, is_active=True)
    second = rows.voice_profile(user_id=user.id)
    later = clock.advance(1_000)
    activated = db.voice_profiles.activate(second.id)
    assert activated.is_active is True
    assert activated.updated_at == later
    assert _active_ids(db, user.id) == [second.id]
    assert db.voice_profiles.get(first.id).is_active is False
    assert db.users.get(user.id).voice_profile_id == second.id
    db.voice_profiles.activate(first.id)
    assert _active_ids(db, user.id) == [first.id]
    assert db.users.get(user.id).voice_profile_id == first.id


def test_activate_leaves_other_users_alone(db: mangostore.Database, rows: Rows, user: Any) -> None:
    bob = rows.user()
    bobs = rows.voice_profile(user_id=bob.id, is_active=True)
    mine = rows.voice_profile(user_id=user.id)
    db.voice_profiles.activate(mine.id)
    assert _active_ids(db, bob.id) == [bobs.id]
    assert db.users.get(bob.id).voice_profile_id == bobs.id


def test_activate_is_atomic_with_the_enclosing_transaction(
    db: mangostore.Database, rows: Rows, user: Any
) -> None:
    first = rows.voice_profile(user_id=user.id, is_active=True)
    second = rows.voice_profile(user_id=user.id)

    def activate_then_fail() -> None:
        with db.transaction():
            db.voice_profiles.activate(second.id)
            assert _active_ids(db, user.id) == [second.id]
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        activate_then_fail()
    assert _active_ids(db, user.id) == [first.id]
    assert db.users.get(user.id).voice_profile_id == first.id


def test_activate_missing_profile_raises_not_found(
    db: mangostore.Database, rows: Rows, user: Any
) -> None:
    active = rows.voice_profile(user_id=user.id, is_active=True)
    with pytest.raises(NotFoundError):
        db.voice_profiles.activate("no-such-profile")
    assert _active_ids(db, user.id) == [active.id]


def test_database_refuses_a_second_active_profile_by_raw_sql(
    db: mangostore.Database, rows: Rows, user: Any
) -> None:
    rows.voice_profile(user_id=user.id, is_active=True)
    before = row_counts(db)
    with pytest.raises(UniqueConstraintError):
        db.execute(
            "INSERT INTO voice_profiles (id, user_id, name, created_at, updated_at, is_active) "
            "VALUES (?, ?, ?, ?, ?, 1)",
            ("raw-profile", user.id, "raw", 1, 1),
        )
    assert row_counts(db) == before
    db.execute(
        "INSERT INTO voice_profiles (id, user_id, name, created_at, updated_at, is_active) "
        "VALUES (?, ?, ?, ?, ?, 0)",
        ("raw-idle", user.id, "raw", 1, 1),
    )
    assert db.voice_profiles.count(user_id=user.id) == 2


def test_database_refuses_activating_a_second_profile_by_raw_sql(
    db: mangostore.Database, rows: Rows, user: Any
) -> None:
    rows.voice_profile(user_id=user.id, is_active=True)
    idle = rows.voice_profile(user_id=user.id)
    with pytest.raises(UniqueConstraintError):
        db.execute("UPDATE voice_profiles SET is_active = 1 WHERE id = ?", (idle.id,))
    assert db.voice_profiles.get(idle.id) == idle


def test_voice_profile_secrets_survive_activation(clocked_memory_db: mangostore.Database) -> None:
    rows = Rows(clocked_memory_db)
    user = rows.user()
    first = rows.voice_profile(user_id=user.id, is_active=True, voice_print={"v": [1, 2]})
    second = rows.voice_profile(user_id=user.id, training_data={"samples": 3})
    clocked_memory_db.voice_profiles.activate(second.id)
    assert clocked_memory_db.voice_profiles.get(first.id).voice_print == {"v": [1, 2]}
    assert clocked_memory_db.voice_profiles.get(second.id).training_data == {"samples": 3}
    assert clocked_memory_db.users.get(user.id).voice_profile_id == second.id
