"""Repositories: create, get, update, delete, list, count, exists and first on every table,
the typed errors they raise (with nothing written), and field encryption through them.

``Rows`` (tests/design.py) makes a valid row of any table, creating the parents it
needs.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from design import DESIGN_TABLES, ENCRYPTED_COLUMNS, ENCRYPTED_PAIRS, Rows, row_counts
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.errors import (
    ConstraintError,
    ForeignKeyError,
    InvalidValueError,
    MangoError,
    MissingFieldError,
    NotFoundError,
    TamperedDataError,
    UniqueConstraintError,
    UnknownColumnError,
    ValidationError,
)
from mangostore.records import RECORD_CLASSES, Record, Unreadable

#: Encrypted columns whose rows can be changed (not those of the append-only audit log).
MUTABLE_ENCRYPTED_PAIRS = [(t, c) for t, c in ENCRYPTED_PAIRS if t != "security_events"]
#: Tables whose encrypted values belong to the row's ``user_id`` (users own their own row).
OWNED_BY_USER_ID = [t for t in ENCRYPTED_COLUMNS if t not in ("users", "security_events")]

#: Columns stamped with the clock on create.
CLOCK_COLUMNS = ("created_at", "updated_at", "timestamp", "granted_at")
TABLES_WITH_UPDATED_AT = (
    "users",
    "projects",
    "voice_profiles",
    "notification_preferences",
    "kg_entities",
)
#: Tables whose rows can be changed and deleted (security_events is an append-only log).
MUTABLE_TABLES = tuple(t for t in DESIGN_TABLES if t != "security_events")
TABLES_WITH_USER_ID = tuple(
    t for t in DESIGN_TABLES if t not in ("users", "notification_types", "notification_actions")
)

#: A nullable, plain column of each table and a new value for it.
UPDATABLE: dict[str, tuple[str, Any]] = {
    "users": ("email", "new@example.org"),
    "projects": ("display_name", "New name"),
    "terminal_sessions": ("name", "renamed"),
    "voice_profiles": ("language", "fr-FR"),
    "command_history": ("output", "done"),
    "notification_types": ("template", "{title} changed"),
    "notification_preferences": ("quiet_hours_start", "22:00"),
    "notifications": ("title", "New title"),
    "notification_actions": ("action_label", "Retry"),
    "ai_conversations": ("title", "Renamed chat"),
    "ai_memory": ("key_name", "editor"),
    "security_events": ("source_component", "auth-service"),
    "permissions": ("resource_id", "res-2"),
    "user_sessions": ("ip_address", "10.0.0.2"),
    "kg_entities": ("description", "changed"),
    "kg_relations": ("predicate", "depends_on"),
    "kg_observations": ("content", "prefers dark mode"),
    "kg_embeddings": ("model_version", "model-2"),
}


#: Runs a test on a database without a keyring and on one that encrypts fields.
both_modes = pytest.mark.parametrize("db", ["clocked_db", "clocked_memory_db"], indirect=True)

pytestmark = pytest.mark.database("clocked_db")


@pytest.fixture
def rows(db: mangostore.Database) -> Rows:
    return Rows(db)


@pytest.fixture(scope="module")
def empty_db() -> Iterator[mangostore.Database]:
    """One empty in-memory database for the module's tests that write nothing (each
    checks that it did not)."""
    with mangostore.open(":memory:", encrypted=False, clock=ManualClock()) as database:
        yield database


@pytest.fixture(params=["memory_db", "encrypted_db"])
def keyed_db(request: pytest.FixtureRequest) -> mangostore.Database:
    """A database with a keyring: in memory, then file-backed with encrypted pages."""
    database: mangostore.Database = request.getfixturevalue(request.param)
    return database


# -- every table --------------------------------------------------------------------------


@both_modes
def test_every_design_table_has_a_repository_returning_its_record_class(
    db: mangostore.Database, rows: Rows
) -> None:
    classes = {cls.__table__: cls for cls in RECORD_CLASSES}
    assert set(classes) == set(DESIGN_TABLES)
    for table in DESIGN_TABLES:
        record = rows.make(table)
        assert type(record) is classes[table]
        assert isinstance(record, Record)
        assert type(getattr(db, table).get(record.id)) is classes[table]


@both_modes
@pytest.mark.parametrize("table", DESIGN_TABLES)
def test_create_fills_a_uuid7_id_and_timestamps_from_the_clock(
    db: mangostore.Database, rows: Rows, clock: ManualClock, table: str
) -> None:
    clock.set(1_712_345_678_901)
    record = rows.make(table)
    assert uuid.UUID(record.id).version == 7
    stamped = [c for c in CLOCK_COLUMNS if hasattr(record, c)]
    assert stamped, "every table has a creation timestamp"
    for column in stamped:
        assert getattr(record, column) == 1_712_345_678_901, column


def test_event_tables_stamp_their_own_time_columns(rows: Rows, clock: ManualClock) -> None:
    now = clock.advance(7)
    assert rows.command().timestamp == now
    assert rows.security_event().timestamp == now
    assert rows.permission().granted_at == now


def test_ids_are_unique_and_time_ordered(db: mangostore.Database, rows: Rows) -> None:
    ids = [rows.user().id for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


def test_create_keeps_given_id_and_timestamps(db: mangostore.Database, rows: Rows) -> None:
    given = str(uuid.uuid4())
    user = rows.user(id=given, created_at=5, updated_at=6)
    assert (user.id, user.created_at, user.updated_at) == (given, 5, 6)
    assert db.users.get(given) == user


def test_create_returns_database_defaults(db: mangostore.Database, rows: Rows) -> None:
    project = rows.project()
    assert (project.type, project.status) == ("generic", "active")
    profile = rows.voice_profile()
    assert (profile.language, profile.accuracy_score, profile.is_active) == ("en-US", 0.0, False)
    assert rows.notification_type().retention_days == 30


@both_modes
@pytest.mark.parametrize("table", DESIGN_TABLES)
def test_get_returns_what_create_returned(db: mangostore.Database, rows: Rows, table: str) -> None:
    record = rows.make(table)
    assert getattr(db, table).get(record.id) == record


@pytest.mark.parametrize("table", DESIGN_TABLES)
def test_get_missing_raises_not_found(empty_db: mangostore.Database, table: str) -> None:
    before = row_counts(empty_db)
    with pytest.raises(NotFoundError, match="no-such-id"):
        getattr(empty_db, table).get("no-such-id")
    assert row_counts(empty_db) == before


@both_modes
@pytest.mark.parametrize("table", MUTABLE_TABLES)
def test_update_changes_the_column_and_bumps_updated_at(
    db: mangostore.Database, rows: Rows, clock: ManualClock, table: str
) -> None:
    repo = getattr(db, table)
    record = rows.make(table)
    column, value = UPDATABLE[table]
    later = clock.advance(60_000)
    updated = repo.update(record.id, **{column: value})
    assert getattr(updated, column) == value
    assert repo.get(record.id) == updated
    if table in TABLES_WITH_UPDATED_AT:
        assert updated.updated_at == later
        assert updated.created_at == record.created_at
    else:
        assert not hasattr(updated, "updated_at")
    for stamp in ("created_at", "timestamp", "granted_at"):
        if hasattr(record, stamp):
            assert getattr(updated, stamp) == getattr(record, stamp)


@pytest.mark.parametrize("table", MUTABLE_TABLES)
def test_update_missing_raises_not_found(empty_db: mangostore.Database, table: str) -> None:
    column, value = UPDATABLE[table]
    before = row_counts(empty_db)
    with pytest.raises(NotFoundError):
        getattr(empty_db, table).update("no-such-id", **{column: value})
    assert row_counts(empty_db) == before


def test_update_refuses_to_change_the_id(db: mangostore.Database, rows: Rows) -> None:
    user = rows.user()
    with pytest.raises(InvalidValueError) as caught:
        db.users.update(user.id, id=str(uuid.uuid4()))
    assert caught.value.field == "id"
    assert db.users.get(user.id) == user


def test_update_can_set_nullable_columns_to_none(db: mangostore.Database, rows: Rows) -> None:
    user = rows.user(email="a@example.org", preferences={"theme": "dark"})
    updated = db.users.update(user.id, email=None, preferences=None)
    assert (updated.email, updated.preferences) == (None, None)
    assert db.users.get(user.id).email is None


@both_modes
@pytest.mark.parametrize("table", MUTABLE_TABLES)
def test_delete_reports_whether_the_row_existed(
    db: mangostore.Database, rows: Rows, table: str
) -> None:
    repo = getattr(db, table)
    record = rows.make(table)
    assert repo.delete(record.id) is True
    assert repo.delete(record.id) is False
    with pytest.raises(NotFoundError):
        repo.get(record.id)


@both_modes
@pytest.mark.parametrize("table", TABLES_WITH_USER_ID)
def test_find_by_user_returns_only_that_users_rows(
    db: mangostore.Database, rows: Rows, table: str
) -> None:
    alice, bob = rows.user(), rows.user()
    mine = {rows.make(table, user_id=alice.id).id for _ in range(3)}
    rows.make(table, user_id=bob.id)
    repo = getattr(db, table)
    found = repo.find_by_user(alice.id)
    assert {r.id for r in found} == mine
    assert all(r.user_id == alice.id for r in found)
    assert repo.find_by_user("nobody") == []


# -- list, count, exists, first -----------------------------------------------------------


@pytest.fixture
def commands(db: mangostore.Database, rows: Rows, clock: ManualClock) -> list[Any]:
    """Five commands of one user, one a millisecond apart."""
    user = rows.user()
    project = rows.project(user_id=user.id)
    made = []
    for i, (kind, code, where) in enumerate(
        [
            ("voice", 0, project.id),
            ("keyboard", 1, None),
            ("ai", 0, project.id),
            ("keyboard", None, None),
            (None, 2, project.id),
        ]
    ):
        clock.set(1_000 + i)
        made.append(
            rows.command(
                user_id=user.id,
                command=f"cmd{i}",
                command_type=kind,
                exit_code=code,
                project_id=where,
                execution_time=10 * (i + 1),
            )
        )
    return made


def test_list_without_filters_returns_every_row(
    db: mangostore.Database, commands: list[Any]
) -> None:
    assert {c.id for c in db.command_history.list()} == {c.id for c in commands}


def test_list_filters_by_equality_and_combines_filters(
    db: mangostore.Database, commands: list[Any]
) -> None:
    found = db.command_history.list(command_type="keyboard", order_by="timestamp")
    assert [c.command for c in found] == ["cmd1", "cmd3"]
    found = db.command_history.list(command_type="keyboard", exit_code=1)
    assert [c.command for c in found] == ["cmd1"]


def test_list_filter_none_matches_null(db: mangostore.Database, commands: list[Any]) -> None:
    assert [c.command for c in db.command_history.list(exit_code=None)] == ["cmd3"]
    found = db.command_history.list(project_id=None, order_by="command")
    assert [c.command for c in found] == ["cmd1", "cmd3"]
    assert [c.command for c in db.command_history.list(command_type=None)] == ["cmd4"]


@pytest.mark.parametrize("container", [list, tuple, set, frozenset])
def test_list_filter_collection_matches_any_of_its_values(
    db: mangostore.Database, commands: list[Any], container: Callable[[Any], Any]
) -> None:
    found = db.command_history.list(command_type=container(["voice", "ai"]), order_by="timestamp")
    assert [c.command for c in found] == ["cmd0", "cmd2"]


def test_list_filter_empty_collection_matches_nothing(
    db: mangostore.Database, commands: list[Any]
) -> None:
    assert db.command_history.list(command_type=[]) == []
    assert db.command_history.count(exit_code=()) == 0


def test_list_filter_on_boolean_column(db: mangostore.Database, rows: Rows) -> None:
    user = rows.user()
    on = rows.voice_profile(user_id=user.id, is_active=True)
    off = rows.voice_profile(user_id=user.id)
    assert [p.id for p in db.voice_profiles.list(is_active=True)] == [on.id]
    assert [p.id for p in db.voice_profiles.list(is_active=False)] == [off.id]


def test_list_order_by_ascending_descending_and_several_keys(
    db: mangostore.Database, commands: list[Any]
) -> None:
    by_time = db.command_history.list(order_by="timestamp")
    assert [c.command for c in by_time] == ["cmd0", "cmd1", "cmd2", "cmd3", "cmd4"]
    newest = db.command_history.list(order_by="-timestamp")
    assert [c.command for c in newest] == ["cmd4", "cmd3", "cmd2", "cmd1", "cmd0"]
    two_keys = db.command_history.list(
        command_type=["keyboard", "voice", "ai"], order_by=["command_type", "-timestamp"]
    )
    assert [c.command for c in two_keys] == ["cmd2", "cmd3", "cmd1", "cmd0"]
    longest = db.command_history.list(order_by=("-execution_time",))
    assert [c.execution_time for c in longest] == [50, 40, 30, 20, 10]


def test_list_limit_and_offset(db: mangostore.Database, commands: list[Any]) -> None:
    def page(**kwargs: Any) -> list[str]:
        return [c.command for c in db.command_history.list(order_by="timestamp", **kwargs)]

    assert page(limit=2) == ["cmd0", "cmd1"]
    assert page(limit=2, offset=2) == ["cmd2", "cmd3"]
    assert page(limit=2, offset=4) == ["cmd4"]
    assert page(offset=3) == ["cmd3", "cmd4"]
    assert page(limit=0) == []
    assert page(offset=10) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": "3"}, "limit"),
        ({"limit": True}, "limit"),
        ({"offset": -2}, "offset"),
        ({"offset": "0; DROP TABLE users"}, "offset"),
        ({"limit": 1, "offset": False}, "offset"),
    ],
)
def test_list_refuses_bad_limit_and_offset(
    db: mangostore.Database, commands: list[Any], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        db.command_history.list(**kwargs)
    assert caught.value.field == field


def test_count_with_and_without_filters(db: mangostore.Database, commands: list[Any]) -> None:
    assert db.command_history.count() == 5
    assert db.command_history.count(command_type="keyboard") == 2
    assert db.command_history.count(exit_code=None) == 1
    assert db.command_history.count(exit_code=[0, 2]) == 3
    assert db.command_history.count(command_type="voice", exit_code=1) == 0


def test_exists_by_id_and_by_filters(db: mangostore.Database, commands: list[Any]) -> None:
    assert db.command_history.exists(commands[0].id)
    assert not db.command_history.exists("no-such-id")
    assert db.command_history.exists(command_type="ai")
    assert not db.command_history.exists(command_type="ai", exit_code=1)
    assert db.command_history.exists(commands[1].id, exit_code=1)
    assert not db.command_history.exists(commands[1].id, exit_code=0)


def test_first_returns_the_first_match_or_none(
    db: mangostore.Database, commands: list[Any]
) -> None:
    first = db.command_history.first(order_by="-timestamp")
    assert first is not None
    assert first.command == "cmd4"
    match = db.command_history.first(command_type="keyboard", order_by="timestamp")
    assert match is not None
    assert match.command == "cmd1"
    assert db.command_history.first(command_type="voice", exit_code=2) is None


# -- errors: each its own class, naming the field; nothing written ------------------------


def test_validation_and_constraint_errors_share_the_root() -> None:
    for cls in (UnknownColumnError, InvalidValueError, MissingFieldError):
        assert issubclass(cls, ValidationError)
    for cls in (UniqueConstraintError, ForeignKeyError):
        assert issubclass(cls, ConstraintError)
    assert issubclass(ValidationError, MangoError)
    assert issubclass(ConstraintError, MangoError)


@pytest.mark.parametrize(
    "name", ["bogus", "user_name", "Username", "username; DROP TABLE users", 'x" --', ""]
)
def test_create_refuses_unknown_columns(db: mangostore.Database, rows: Rows, name: str) -> None:
    before = row_counts(db)
    with pytest.raises(UnknownColumnError) as caught:
        db.users.create(username="alice", **{name: 1})
    assert caught.value.field == name
    assert "username" in str(caught.value)
    assert row_counts(db) == before


def test_update_refuses_unknown_columns(db: mangostore.Database, rows: Rows) -> None:
    user = rows.user()
    with pytest.raises(UnknownColumnError) as caught:
        db.users.update(user.id, email="x@example.org", nickname="al")
    assert caught.value.field == "nickname"
    assert db.users.get(user.id) == user


@pytest.mark.parametrize("method", ["list", "count", "exists", "first"])
def test_filters_refuse_unknown_columns(db: mangostore.Database, rows: Rows, method: str) -> None:
    rows.user()
    with pytest.raises(UnknownColumnError) as caught:
        getattr(db.users, method)(nickname="al")
    assert caught.value.field == "nickname"


@pytest.mark.parametrize("order_by", ["nickname", "-nickname", ["username", "-nickname"]])
def test_order_by_refuses_unknown_columns(
    db: mangostore.Database, rows: Rows, order_by: Any
) -> None:
    rows.user()
    with pytest.raises(UnknownColumnError) as caught:
        db.users.list(order_by=order_by)
    assert caught.value.field == "nickname"


def test_order_by_refuses_non_strings(db: mangostore.Database) -> None:
    with pytest.raises(InvalidValueError):
        db.users.list(order_by=[1])


@pytest.mark.parametrize("column", ["preferences", "security_profile"])
def test_filters_refuse_json_and_encrypted_columns(db: mangostore.Database, column: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        db.users.list(**{column: {"theme": "dark"}})
    assert caught.value.field == column


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("users", "last_login", "yesterday"),
        ("users", "last_login", True),
        ("users", "last_login", 1.5),
        ("users", "username", 42),
        ("users", "username", b"alice"),
        ("voice_profiles", "is_active", 1),
        ("voice_profiles", "is_active", "yes"),
        ("voice_profiles", "accuracy_score", math.nan),
        ("voice_profiles", "accuracy_score", math.inf),
        ("voice_profiles", "accuracy_score", "0.5"),
        ("voice_profiles", "accuracy_score", False),
        ("command_history", "exit_code", "0"),
        ("command_history", "ai_suggested", 0),
        ("kg_embeddings", "vector_data", "not bytes"),
        ("kg_embeddings", "dimensions", 4.0),
    ],
)
def test_create_refuses_values_of_the_wrong_type(
    db: mangostore.Database, rows: Rows, table: str, column: str, value: Any
) -> None:
    before = getattr(db, table).count()
    with pytest.raises(InvalidValueError) as caught:
        rows.make(table, **{column: value})
    assert caught.value.field == column
    # The factory commits the parents first; the refused row itself is not written.
    assert getattr(db, table).count() == before


@pytest.mark.parametrize(
    ("column", "value"),
    [("last_login", "now"), ("last_login", False), ("username", None), ("email", 3)],
)
def test_update_refuses_values_of_the_wrong_type(
    db: mangostore.Database, rows: Rows, column: str, value: Any
) -> None:
    user = rows.user()
    with pytest.raises(InvalidValueError) as caught:
        db.users.update(user.id, **{column: value})
    assert caught.value.field == column
    assert db.users.get(user.id) == user


def test_filters_refuse_values_of_the_wrong_type(db: mangostore.Database) -> None:
    with pytest.raises(InvalidValueError) as caught:
        db.users.list(last_login="today")
    assert caught.value.field == "last_login"
    with pytest.raises(InvalidValueError) as caught:
        db.command_history.count(exit_code=[0, "1"])
    assert caught.value.field == "exit_code"


def test_text_that_cannot_be_encoded_is_refused_as_invalid(
    db: mangostore.Database, rows: Rows
) -> None:
    before = row_counts(db)
    with pytest.raises(InvalidValueError) as caught:
        db.users.create(username="lone \ud800 surrogate")
    assert caught.value.field == "username"
    assert row_counts(db) == before


def test_integers_are_accepted_for_real_columns(db: mangostore.Database, rows: Rows) -> None:
    profile = rows.voice_profile(accuracy_score=1)
    assert profile.accuracy_score == 1


@pytest.mark.parametrize(
    ("table", "column", "value", "allowed"),
    [
        ("command_history", "command_type", "mouse", ("voice", "keyboard", "ai")),
        ("notification_types", "category", "email", ("system", "voice", "ai", "project")),
        ("notifications", "priority", "urgent", ("low", "normal", "high", "critical")),
        ("notifications", "status", "sent", ("pending", "delivered", "read", "dismissed")),
        ("notification_actions", "action_type", "click", ("button", "voice_command", "auto")),
        ("ai_conversations", "context_type", "chat", ("general", "project", "terminal")),
        ("ai_memory", "memory_type", "secret", ("fact", "preference", "skill", "context")),
        ("ai_memory", "source", "guess", ("user_input", "inference", "observation")),
        ("security_events", "severity", "fatal", ("info", "warning", "error", "critical")),
        ("security_events", "event_type", "login", ("auth", "access", "command")),
        ("permissions", "permission_type", "delete", ("read", "write", "execute", "admin")),
        ("permissions", "resource_type", "file", ("project", "terminal", "voice", "ai")),
        ("user_sessions", "security_level", "max", ("low", "standard", "high")),
        ("kg_entities", "entity_type", "place", ("person", "project", "command", "file")),
        ("kg_relations", "source", "rumour", ("user", "inference", "observation")),
        ("kg_observations", "observation_type", "guess", ("fact", "behavior", "pattern")),
        ("kg_embeddings", "embedding_type", "visual", ("semantic", "syntactic", "contextual")),
        ("notification_preferences", "urgency_threshold", "meh", ("low", "normal", "high")),
    ],
)
def test_create_refuses_values_outside_an_enumeration(
    db: mangostore.Database,
    rows: Rows,
    table: str,
    column: str,
    value: str,
    allowed: tuple[str, ...],
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        rows.make(table, **{column: value})
    assert caught.value.field == column
    message = str(caught.value)
    for choice in allowed:
        assert choice in message
    assert getattr(db, table).count() == 0


def test_update_refuses_values_outside_an_enumeration(db: mangostore.Database, rows: Rows) -> None:
    command = rows.command(command_type="voice")
    with pytest.raises(InvalidValueError, match="keyboard") as caught:
        db.command_history.update(command.id, command_type="VOICE")
    assert caught.value.field == "command_type"
    assert db.command_history.get(command.id) == command


@pytest.mark.parametrize(
    ("table", "fields", "missing"),
    [
        ("users", {}, "username"),
        ("projects", {"name": "p"}, "path"),
        ("projects", {"path": "/p"}, "name"),
        ("notification_types", {"name": "n", "category": "system"}, "template"),
        ("notification_types", {"name": "n", "template": "t"}, "category"),
        ("ai_memory", {"memory_type": "fact", "key_name": "k"}, "value_data"),
        ("command_history", {}, "command"),
        ("kg_embeddings", {"dimensions": 3}, "model_version"),
    ],
)
def test_create_refuses_missing_required_fields(
    db: mangostore.Database, rows: Rows, table: str, fields: dict[str, Any], missing: str
) -> None:
    fields = dict(fields)
    if table not in ("users", "notification_types"):
        fields["user_id"] = rows.user().id
    if table == "kg_embeddings":
        fields["entity_id"] = rows.kg_entity(user_id=fields["user_id"]).id
    before = row_counts(db)
    with pytest.raises(MissingFieldError) as caught:
        getattr(db, table).create(**fields)
    assert caught.value.field == missing
    assert missing in str(caught.value)
    assert row_counts(db) == before


def test_create_refuses_missing_owner(db: mangostore.Database) -> None:
    with pytest.raises(MissingFieldError) as caught:
        db.projects.create(name="p", path="/p")
    assert caught.value.field == "user_id"


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("users", "username", "alice"),
        ("users", "email", "a@example.org"),
        ("user_sessions", "session_token", "tok-1"),
        ("notification_types", "name", "build-failed"),
    ],
)
def test_create_refuses_unique_clashes(
    db: mangostore.Database, rows: Rows, table: str, column: str, value: str
) -> None:
    rows.make(table, **{column: value})
    owner = {"user_id": rows.user().id} if table == "user_sessions" else {}
    before = row_counts(db)
    with pytest.raises(UniqueConstraintError) as caught:
        rows.make(table, **owner, **{column: value})
    assert caught.value.field == column
    assert column in str(caught.value)
    assert row_counts(db) == before


def test_create_refuses_a_second_project_at_the_same_path(
    db: mangostore.Database, rows: Rows
) -> None:
    alice, bob = rows.user(), rows.user()
    rows.project(user_id=alice.id, path="/src/app")
    rows.project(user_id=bob.id, path="/src/app")  # another user's path may repeat
    before = row_counts(db)
    with pytest.raises(UniqueConstraintError) as caught:
        rows.project(user_id=alice.id, path="/src/app", name="again")
    assert caught.value.field in ("user_id", "path")
    assert "path" in str(caught.value)
    assert row_counts(db) == before


def test_update_refuses_unique_clashes(db: mangostore.Database, rows: Rows) -> None:
    rows.user(username="alice", email="a@example.org")
    bob = rows.user(username="bob")
    with pytest.raises(UniqueConstraintError) as caught:
        db.users.update(bob.id, username="alice")
    assert caught.value.field == "username"
    with pytest.raises(UniqueConstraintError) as caught:
        db.users.update(bob.id, email="a@example.org")
    assert caught.value.field == "email"
    assert db.users.get(bob.id) == bob


def test_create_refuses_a_reference_to_nowhere(db: mangostore.Database, rows: Rows) -> None:
    before = row_counts(db)
    with pytest.raises(ForeignKeyError) as caught:
        db.projects.create(user_id="no-such-user", name="p", path="/p")
    assert caught.value.field == "user_id"
    assert "no-such-user" in str(caught.value)
    assert row_counts(db) == before


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("notifications", "notification_type_id"),
        ("notifications", "project_id"),
        ("terminal_sessions", "project_id"),
        ("command_history", "terminal_session_id"),
        ("kg_relations", "subject_id"),
        ("kg_relations", "object_id"),
        ("kg_observations", "entity_id"),
        ("notification_actions", "notification_id"),
        ("ai_memory", "conversation_id"),
        ("users", "voice_profile_id"),
    ],
)
def test_foreign_key_errors_name_the_dangling_column(
    db: mangostore.Database, rows: Rows, table: str, column: str
) -> None:
    with pytest.raises(ForeignKeyError) as caught:
        rows.make(table, **{column: "dangling"})
    assert caught.value.field == column


def test_update_refuses_a_reference_to_nowhere(db: mangostore.Database, rows: Rows) -> None:
    session = rows.terminal_session()
    with pytest.raises(ForeignKeyError) as caught:
        db.terminal_sessions.update(session.id, project_id="no-such-project")
    assert caught.value.field == "project_id"
    assert db.terminal_sessions.get(session.id) == session


@both_modes
def test_update_refuses_moving_a_row_to_a_missing_user(db: mangostore.Database, rows: Rows) -> None:
    project = rows.project()
    with pytest.raises(ForeignKeyError) as caught:
        db.projects.update(project.id, user_id="no-such-user")
    assert caught.value.field == "user_id"
    assert db.projects.get(project.id) == project


def test_delete_refuses_a_user_who_still_has_projects(db: mangostore.Database, rows: Rows) -> None:
    user = rows.user()
    rows.project(user_id=user.id)
    before = row_counts(db)
    with pytest.raises(ForeignKeyError) as caught:
        db.users.delete(user.id)
    assert caught.value.field == "user_id"
    assert "projects" in str(caught.value)
    assert row_counts(db) == before
    assert db.users.get(user.id) == user


@both_modes
def test_errors_leave_a_usable_database(db: mangostore.Database, rows: Rows) -> None:
    rows.user(username="alice")
    for attempt in (
        lambda: db.users.create(username="alice"),
        lambda: db.users.create(username="x", nope=1),
        lambda: db.projects.create(user_id="nobody", name="n", path="/n"),
    ):
        with pytest.raises(MangoError):
            attempt()
    assert rows.user(username="carol").username == "carol"
    assert db.users.count() == 2


# -- field encryption through the repositories --------------------------------------------


def _secret(table: str, column: str) -> dict[str, Any]:
    return {"marker": f"SECRET-{table}-{column}-0f1e2d", "n": [1, 2.5, None, True]}


@pytest.mark.parametrize(("table", "column"), MUTABLE_ENCRYPTED_PAIRS)
def test_encrypted_values_round_trip(
    keyed_db: mangostore.Database, table: str, column: str
) -> None:
    rows = Rows(keyed_db)
    repo = getattr(keyed_db, table)
    value = _secret(table, column)
    record = rows.make(table, **{column: value})
    assert getattr(record, column) == value
    assert getattr(repo.get(record.id), column) == value
    changed = {"changed": "ünïcødé ✓", "list": list(range(5))}
    assert getattr(repo.update(record.id, **{column: changed}), column) == changed
    assert getattr(repo.get(record.id), column) == changed
    assert getattr(repo.list(id=record.id)[0], column) == changed


@pytest.mark.parametrize(("table", "column"), ENCRYPTED_PAIRS)
def test_encrypted_values_are_stored_as_ciphertext(
    memory_db: mangostore.Database, table: str, column: str
) -> None:
    record = Rows(memory_db).make(table, **{column: _secret(table, column)})
    (stored,) = memory_db.query(f'SELECT "{column}" FROM "{table}" WHERE id = ?', (record.id,))[0]
    assert isinstance(stored, bytes)
    assert b"SECRET" not in stored


def test_plain_pages_hold_no_plaintext_of_encrypted_columns(
    db_path: Path, fast_settings: Settings
) -> None:
    db = mangostore.create(
        db_path, passphrase=PASSPHRASE, encrypted=False, settings=fast_settings
    ).db
    try:
        rows = Rows(db)
        user = rows.user(
            username="VISIBLE-username-8c7b",
            preferences={"note": "VISIBLE-preferences-8c7b"},
            security_profile=_secret("users", "security_profile"),
        )
        for table, column in ENCRYPTED_PAIRS:
            if table != "users":
                rows.make(table, user_id=user.id, **{column: _secret(table, column)})
        project = db.projects.find_by_user(user.id)[0]
        db.projects.update(project.id, security_config={"marker": "SECRET-updated-0f1e2d"})

        def file_bytes() -> bytes:
            found = b""
            for suffix in ("", "-wal"):
                part = Path(f"{db_path}{suffix}")
                if part.exists():
                    found += part.read_bytes()
            return found

        while_open = file_bytes()
    finally:
        db.close()
    after_close = file_bytes()
    for data in (while_open, after_close):
        assert b"VISIBLE-username-8c7b" in data  # the scan does see plaintext columns
        assert b"VISIBLE-preferences-8c7b" in data
        assert b"SECRET-" not in data
        assert b"0f1e2d" not in data


@pytest.mark.parametrize("table", OWNED_BY_USER_ID)
def test_changing_the_owner_reencrypts_under_the_new_owner(
    memory_db: mangostore.Database, table: str
) -> None:
    rows = Rows(memory_db)
    alice, bob = rows.user(), rows.user()
    values = {c: _secret(table, c) for c in ENCRYPTED_COLUMNS[table]}
    record = rows.make(table, user_id=alice.id, **values)
    select = ", ".join(f'"{c}"' for c in values)
    before = tuple(memory_db.query(f'SELECT {select} FROM "{table}" WHERE id = ?', (record.id,))[0])

    repo = getattr(memory_db, table)
    moved = repo.update(record.id, user_id=bob.id)
    assert moved.user_id == bob.id
    for column, value in values.items():
        assert getattr(moved, column) == value
        assert getattr(repo.get(record.id), column) == value
    after = tuple(memory_db.query(f'SELECT {select} FROM "{table}" WHERE id = ?', (record.id,))[0])
    assert all(old != new for old, new in zip(before, after, strict=True))


def test_changing_the_owner_keeps_unset_encrypted_columns_empty(
    memory_db: mangostore.Database,
) -> None:
    rows = Rows(memory_db)
    alice, bob = rows.user(), rows.user()
    session = rows.terminal_session(user_id=alice.id, environment_variables={"PATH": "/bin"})
    moved = memory_db.terminal_sessions.update(session.id, user_id=bob.id, name="moved")
    assert moved.environment_variables == {"PATH": "/bin"}
    assert moved.session_data is None
    assert memory_db.terminal_sessions.get(session.id) == moved


def test_changing_the_owner_and_a_value_together(memory_db: mangostore.Database) -> None:
    rows = Rows(memory_db)
    alice, bob = rows.user(), rows.user()
    project = rows.project(user_id=alice.id, security_config={"v": 1})
    moved = memory_db.projects.update(project.id, user_id=bob.id, security_config={"v": 2})
    assert memory_db.projects.get(project.id).security_config == {"v": 2}
    assert moved.security_config == {"v": 2}


def test_changing_the_owner_without_a_keyring_keeps_the_values(
    plain_db: mangostore.Database,
) -> None:
    rows = Rows(plain_db)
    alice, bob = rows.user(), rows.user()
    project = rows.project(user_id=alice.id, security_config={"tokens": ["t1"]})
    plain_db.projects.update(project.id, user_id=bob.id)
    assert plain_db.projects.get(project.id).security_config == {"tokens": ["t1"]}


@pytest.mark.parametrize(("table", "column"), MUTABLE_ENCRYPTED_PAIRS)
def test_ciphertext_copied_to_another_row_is_detected(
    keyed_db: mangostore.Database, table: str, column: str
) -> None:
    rows = Rows(keyed_db)
    user = rows.user()
    owner = {} if table == "users" else {"user_id": user.id}
    source = rows.make(table, **owner, **{column: _secret(table, column)})
    target = rows.make(table, **owner, **{column: {"mine": True}})
    keyed_db.execute(
        f'UPDATE "{table}" SET "{column}" = (SELECT "{column}" FROM "{table}" WHERE id = ?) '
        "WHERE id = ?",
        (source.id, target.id),
    )
    repo = getattr(keyed_db, table)
    with pytest.raises(TamperedDataError) as caught:
        repo.get(target.id)
    assert "SECRET" not in str(caught.value)
    # A listing shows the damaged value as unreadable instead of failing as a whole.
    (listed,) = repo.list(id=target.id)
    assert isinstance(getattr(listed, column), Unreadable)
    assert "SECRET" not in getattr(listed, column).reason
    assert getattr(repo.get(source.id), column) == _secret(table, column)


def test_ciphertext_copied_to_another_column_is_detected(memory_db: mangostore.Database) -> None:
    session = Rows(memory_db).terminal_session(
        environment_variables={"A": "1"}, session_data={"B": "2"}
    )
    memory_db.execute(
        "UPDATE terminal_sessions SET session_data = environment_variables WHERE id = ?",
        (session.id,),
    )
    with pytest.raises(TamperedDataError):
        memory_db.terminal_sessions.get(session.id)


def test_plain_json_written_over_an_encrypted_column_is_detected(
    memory_db: mangostore.Database,
) -> None:
    user = Rows(memory_db).user(security_profile={"admin": False})
    memory_db.execute(
        "UPDATE users SET security_profile = ? WHERE id = ?", ('{"admin": true}', user.id)
    )
    with pytest.raises(TamperedDataError):
        memory_db.users.get(user.id)


@pytest.mark.parametrize(("table", "column"), ENCRYPTED_PAIRS)
def test_without_a_keyring_encrypted_columns_hold_plain_json(
    plain_db: mangostore.Database, table: str, column: str
) -> None:
    value = _secret(table, column)
    record = Rows(plain_db).make(table, **{column: value})
    (stored,) = plain_db.query(f'SELECT "{column}" FROM "{table}" WHERE id = ?', (record.id,))[0]
    assert isinstance(stored, str)
    assert json.loads(stored) == value
    assert getattr(getattr(plain_db, table).get(record.id), column) == value


def test_file_backed_database_reopens_with_readable_values(
    db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        user = Rows(db).user(security_profile={"pin": "4321"}, preferences={"a": 1})
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db:
        again = db.users.get(user.id)
    assert again == user
    assert again.security_profile == {"pin": "4321"}
