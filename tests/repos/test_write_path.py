"""The write path: as few statements as the guarantees allow, and every guarantee kept.

A create or update that is one statement joins the caller's transaction without a
savepoint; an INSERT whose stored row is proven from the schema is not read back;
``create_many`` checks its rows a column at a time and inserts many to a statement.
Failures still name the field, write nothing and leave the transaction usable, and
the query cache still sees every write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mangostore
from design import DESIGN_TABLES, Rows
from mangostore.errors import (
    BatchError,
    ConstraintError,
    DatabaseError,
    ForeignKeyError,
    InvalidValueError,
    MissingFieldError,
    UniqueConstraintError,
    UnknownColumnError,
)
from mangostore.records import CommandHistory
from mangostore.repos.batch import plain_rows
from mangostore.repos.spec import table_spec
from mangostore.sql import statement_sizes

pytestmark = pytest.mark.database("plain_db", "memory_db")

COMMANDS = table_spec(CommandHistory)


@pytest.fixture
def rows(db: mangostore.Database) -> Rows:
    return Rows(db)


@contextmanager
def statements(db: mangostore.Database) -> Iterator[list[str]]:
    """Every statement the writer connection runs inside the block (triggers' too)."""
    seen: list[str] = []
    conn = db.store.writer.connection
    conn.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def started(seen: list[str], *prefixes: str) -> list[str]:
    return [s for s in seen if s.lstrip().upper().startswith(prefixes)]


def count(db: mangostore.Database, table: str) -> int:
    return int(db.query(f"SELECT count(*) FROM {table}", use_cache=False)[0][0])


def projects(user_id: str, n: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [
        {"user_id": user_id, "name": f"{prefix}{i}", "path": f"/{prefix}/{i}"} for i in range(n)
    ]


# -- statements -----------------------------------------------------------------------------


def test_create_in_a_transaction_is_one_insert_without_savepoint_or_read_back(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    with db.transaction():
        db.projects.create(user_id=owner, name="warm", path="/warm")  # the proof is made once
        with statements(db) as seen:
            db.projects.create(user_id=owner, name="site", path="/site")
    assert started(seen, "SAVEPOINT", "RELEASE") == []
    (insert,) = started(seen, "INSERT")
    assert "RETURNING" not in insert.upper()


def test_update_in_a_transaction_is_one_update_without_savepoint(
    db: mangostore.Database, rows: Rows
) -> None:
    project = rows.project()
    with db.transaction(), statements(db) as seen:
        db.projects.update(project.id, display_name="Site")
    assert started(seen, "SAVEPOINT", "RELEASE") == []
    assert len(started(seen, "UPDATE")) == 1


def test_several_statements_that_must_stand_together_get_a_savepoint(
    db: mangostore.Database,
) -> None:
    # A user's name keys are written after the row: the two go in one savepoint.
    with db.transaction(), statements(db) as seen:
        db.users.create(username="ann")
    assert started(seen, "SAVEPOINT")
    assert started(seen, "RELEASE")


@pytest.mark.database("memory_db")
def test_only_the_first_sealed_value_of_a_user_in_a_transaction_gets_a_savepoint(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    with db.transaction(), statements(db) as seen:
        first = db.projects.create(user_id=owner, name="a", path="/a", security_config={"n": 1})
        after_first = len(seen)
        db.projects.create(user_id=owner, name="b", path="/b", security_config={"n": 2})
    assert started(seen[:after_first], "SAVEPOINT")  # may have made the user's key
    assert started(seen[after_first:], "SAVEPOINT", "SELECT") == []
    assert db.projects.get(first.id).security_config == {"n": 1}


# -- the record returned is the row stored ------------------------------------------------------


@pytest.mark.parametrize("table", DESIGN_TABLES)
def test_every_create_returns_the_row_as_stored(
    db: mangostore.Database, rows: Rows, table: str
) -> None:
    created = rows.make(table)
    assert getattr(db, table).get(created.id, use_cache=False) == created


def test_defaults_and_real_columns_come_back_as_stored(db: mangostore.Database, rows: Rows) -> None:
    owner = rows.user().id
    project = db.projects.create(user_id=owner, name="n", path="/n")
    assert (project.type, project.status) == ("generic", "active")  # DEFAULT 'generic'...
    command = db.command_history.create(user_id=owner, command="ls", voice_confidence=1)
    assert command.voice_confidence == 1.0
    assert isinstance(command.voice_confidence, float)  # REAL affinity: stored as a float
    assert command.ai_suggested is False  # DEFAULT 0, a BOOLEAN
    negative_zero = db.command_history.create(user_id=owner, command="x", voice_confidence=-0.0)
    assert str(negative_zero.voice_confidence) == "0.0"  # SQLite drops the sign
    assert db.projects.get(project.id, use_cache=False) == project
    for record in (command, negative_zero):
        assert db.command_history.get(record.id, use_cache=False) == record


def test_a_schema_change_is_seen_by_the_next_insert(db: mangostore.Database, rows: Rows) -> None:
    owner = rows.user().id

    def insert_of(name: str) -> str:
        with statements(db) as seen:
            db.projects.create(user_id=owner, name=name, path=f"/{name}")
        # (a statement prepared again after a schema change shows twice in the trace)
        (insert,) = set(started(seen, "INSERT"))
        return insert.upper()

    assert "RETURNING" not in insert_of("first")
    # A trigger that may skip rows: what is stored can no longer be known beforehand.
    db.execute(
        "CREATE TRIGGER projects_skip BEFORE INSERT ON projects WHEN new.name = 'skip' "
        "BEGIN SELECT RAISE(IGNORE); END"
    )
    assert "RETURNING" in insert_of("second")
    db.execute("DROP TRIGGER projects_skip")
    assert "RETURNING" not in insert_of("third")


def test_a_trigger_changing_the_row_afterwards_is_not_in_the_record_as_with_returning(
    db: mangostore.Database, rows: Rows
) -> None:
    # RETURNING reports the row as the INSERT wrote it; so does a record built
    # without it. The change made by the AFTER trigger is read by get().
    owner = rows.user().id
    db.execute(
        "CREATE TRIGGER projects_named AFTER INSERT ON projects BEGIN "
        "UPDATE projects SET display_name = 'set by a trigger' WHERE id = new.id; END"
    )
    with db.store.transaction() as conn:
        returned = conn.execute(
            "INSERT INTO projects (id, user_id, name, path, created_at, updated_at) "
            "VALUES ('raw', ?, 'raw', '/raw', 0, 0) RETURNING display_name",
            (owner,),
        ).fetchone()[0]
    project = db.projects.create(user_id=owner, name="n", path="/n")
    assert project.display_name == returned is None
    assert db.projects.get(project.id).display_name == "set by a trigger"


def test_a_row_a_trigger_ignores_is_never_returned(db: mangostore.Database, rows: Rows) -> None:
    owner = rows.user().id
    db.execute(
        "CREATE TRIGGER projects_skip BEFORE INSERT ON projects WHEN new.name = 'skip' "
        "BEGIN SELECT RAISE(IGNORE); END"
    )
    with pytest.raises(DatabaseError, match="stored 0"):
        db.projects.create(user_id=owner, name="skip", path="/skip")
    assert count(db, "projects") == 0
    assert db.projects.create(user_id=owner, name="kept", path="/kept").name == "kept"


# -- failures inside a transaction ----------------------------------------------------------------


def test_a_failed_create_writes_nothing_and_the_transaction_goes_on(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    with db.transaction():
        kept = db.projects.create(user_id=owner, name="one", path="/same")
        with pytest.raises(UniqueConstraintError) as unique:
            db.projects.create(user_id=owner, name="two", path="/same")
        with pytest.raises(ForeignKeyError) as foreign:
            db.command_history.create(user_id=owner, command="ls", project_id="nowhere")
        with pytest.raises(InvalidValueError):
            db.command_history.create(user_id=owner, command="ls", exit_code="0")
        with pytest.raises(UnknownColumnError):
            db.projects.create(user_id=owner, name="x", path="/x", colour="red")
        later = db.projects.create(user_id=owner, name="three", path="/three")
    assert unique.value.field == "user_id"  # UNIQUE(user_id, path): both are named
    assert "user_id and path" in str(unique.value)
    assert foreign.value.field == "project_id"
    assert [p.id for p in db.projects.find_by_user(owner, order_by="name")] == [kept.id, later.id]
    assert count(db, "command_history") == 0


def test_a_failed_update_changes_nothing_and_the_transaction_goes_on(
    db: mangostore.Database, rows: Rows
) -> None:
    first, second = rows.project(), rows.project()
    with db.transaction():
        with pytest.raises(UniqueConstraintError) as caught:
            db.projects.update(second.id, user_id=first.user_id, path=first.path)
        db.projects.update(second.id, display_name="renamed")
    assert caught.value.field is not None
    stored = db.projects.get(second.id)
    assert (stored.path, stored.user_id, stored.display_name) == (
        second.path,
        second.user_id,
        "renamed",
    )


@pytest.mark.database("memory_db")
def test_a_failed_sealed_create_leaves_no_key_behind(db: mangostore.Database) -> None:
    ghost = str(uuid.uuid4())  # no such user: the key is made, then the row is refused
    with db.transaction():
        with pytest.raises(ForeignKeyError) as caught:
            db.projects.create(user_id=ghost, name="n", path="/n", security_config={"a": 1})
        db.notification_types.create(name="still usable", category="system", template="t")
    assert caught.value.field == "user_id"
    assert db.query("SELECT count(*) FROM field_keys WHERE user_id = ?", (ghost,))[0][0] == 0
    assert count(db, "projects") == 0
    assert count(db, "notification_types") == 1


def test_a_transaction_sqlite_ended_is_not_written_to_on_its_own(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    db.execute(
        "CREATE TRIGGER types_rollback BEFORE INSERT ON notification_types "
        "WHEN new.name = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END"
    )

    def write_after_sqlite_rolled_back() -> None:
        with db.transaction():
            db.projects.create(user_id=owner, name="gone", path="/gone")
            with pytest.raises(ConstraintError):
                db.notification_types.create(name="boom", category="system", template="t")
            # SQLite rolled the transaction back: a single INSERT must not commit alone.
            db.projects.create(user_id=owner, name="alone", path="/alone")

    with pytest.raises(DatabaseError, match="rolled back by SQLite"):
        write_after_sqlite_rolled_back()
    assert count(db, "projects") == 0


# -- the query cache sees the writes ---------------------------------------------------------


def test_the_query_cache_sees_writes_made_without_savepoint(
    db: mangostore.Database, rows: Rows
) -> None:
    project = rows.project()
    owner = project.user_id
    assert len(db.projects.find_by_user(owner)) == 1  # cached now
    assert db.projects.get(project.id).display_name is None
    with db.transaction():
        db.projects.create(user_id=owner, name="new", path="/new")
        db.projects.update(project.id, display_name="renamed")
    assert len(db.projects.find_by_user(owner)) == 2
    assert db.projects.get(project.id).display_name == "renamed"
    db.projects.create_many(projects(owner, 5))
    assert len(db.projects.find_by_user(owner)) == 7


# -- create_many ---------------------------------------------------------------------------------


def test_create_many_inserts_many_rows_to_a_statement(db: mangostore.Database, rows: Rows) -> None:
    owner = rows.user().id
    items = projects(owner, 1000)
    with statements(db) as seen:  # (projects has no trigger, whose runs the trace repeats)
        created = db.projects.create_many(items)
    inserts = started(seen, "INSERT")
    # user_id, name, path, then created_at, updated_at and id filled in.
    assert len(inserts) == len(list(statement_sizes(1000, 6))) < 20
    assert [p.name for p in created] == [f"p{i}" for i in range(1000)]
    assert db.projects.find_by_user(owner, order_by="id", use_cache=False) == sorted(
        created, key=lambda p: p.id
    )


def test_create_many_returns_the_rows_as_stored_in_order(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    items: list[dict[str, Any]] = [
        {"user_id": owner, "command": "ls"},
        {"user_id": owner, "command": "ls", "voice_confidence": 1},
        {"user_id": owner, "command": "ls", "voice_confidence": 0.5},
        {"command": "zsh", "user_id": owner, "exit_code": None},  # other columns: a new run
        {"user_id": owner, "command": "ünïcode ✓", "command_type": "voice"},
        {"user_id": owner, "command": "ls", "ai_suggested": True},
        {"user_id": owner, "command": "ls", "output": "ok", "id": str(uuid.uuid4())},
    ]
    created = db.command_history.create_many(items)
    assert [c.command for c in created] == [i["command"] for i in items]
    assert created[1].voice_confidence == 1.0
    assert isinstance(created[1].voice_confidence, float)
    assert created[5].ai_suggested is True
    assert created[0].ai_suggested is False
    assert created[6].id == items[6]["id"]
    for record in created:
        assert db.command_history.get(record.id, use_cache=False) == record


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        ({"exit_code": "1"}, InvalidValueError),
        ({"exit_code": 2**63}, InvalidValueError),
        ({"exit_code": True}, InvalidValueError),
        ({"voice_confidence": float("nan")}, InvalidValueError),
        ({"voice_confidence": 10**400}, OverflowError),
        ({"command": None}, InvalidValueError),
        ({"command": "lone \ud800 surrogate"}, InvalidValueError),
        ({"command_type": "shouted"}, InvalidValueError),
        ({"command_type": ["voice"]}, InvalidValueError),
        ({"colour": "red"}, UnknownColumnError),
        ({"project_id": "nowhere"}, ForeignKeyError),
    ],
)
def test_create_many_names_the_failing_item_and_writes_nothing(
    db: mangostore.Database, rows: Rows, bad: dict[str, Any], cause: type[Exception]
) -> None:
    owner = rows.user().id
    items = [{"user_id": owner, "command": f"ok {i}", "exit_code": 0} for i in range(300)]
    items[217] = {**items[217], **bad}
    with pytest.raises((BatchError, cause)) as caught:
        db.command_history.create_many(items)
    if isinstance(caught.value, BatchError):
        assert caught.value.index == 217
        assert isinstance(caught.value.__cause__, cause)
    assert count(db, "command_history") == 0


def test_create_many_finds_a_duplicate_inside_the_batch(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    items = projects(owner, 200)
    items[150]["path"] = items[20]["path"]
    with pytest.raises(BatchError) as caught:
        db.projects.create_many(items)
    assert caught.value.index == 150
    assert isinstance(caught.value.__cause__, UniqueConstraintError)
    assert caught.value.__cause__.field is not None
    assert count(db, "projects") == 0


def test_a_failed_create_many_in_a_transaction_leaves_it_usable(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    with db.transaction():
        kept = db.projects.create(user_id=owner, name="kept", path="/kept")
        items = projects(owner, 50)
        items[49]["path"] = "/kept"
        with pytest.raises(BatchError) as caught:
            db.projects.create_many(items)
        with pytest.raises(BatchError):
            db.projects.create_many([*projects(owner, 3, "q"), {"user_id": owner}])
        after = db.projects.create_many(projects(owner, 2, "r"))
    assert caught.value.index == 49
    listed = {p.id for p in db.projects.find_by_user(owner)}
    assert listed == {kept.id, *(p.id for p in after)}


def test_create_many_without_a_required_column_names_the_item(
    db: mangostore.Database, rows: Rows
) -> None:
    owner = rows.user().id
    items = [{"user_id": owner, "command": "ls"}, {"user_id": owner}]
    with pytest.raises(BatchError) as caught:
        db.command_history.create_many(items)
    assert caught.value.index == 1
    assert isinstance(caught.value.__cause__, MissingFieldError)


@pytest.mark.database("memory_db")
def test_create_many_seals_and_counts_each_key_once(db: mangostore.Database, rows: Rows) -> None:
    owners = [rows.user().id for _ in range(3)]
    items = [
        {"user_id": owners[i % 3], "name": f"n{i}", "path": f"/s/{i}", "security_config": {"i": i}}
        for i in range(30)
    ]
    with statements(db) as seen:
        created = db.projects.create_many(items)
    assert [p.security_config for p in created] == [{"i": i} for i in range(30)]
    for project in created:
        assert db.projects.get(project.id, use_cache=False) == project
    counted_once = started(seen, "UPDATE FIELD_KEYS")
    assert len(counted_once) == 3  # one per key, for the whole batch
    assert all("encryption_count + 10 " in statement for statement in counted_once)
    assert len(started(seen, "SELECT ID, ENCRYPTION_COUNT FROM FIELD_KEYS")) == 3
    counted = db.query(
        "SELECT sum(encryption_count) FROM field_keys WHERE user_id IN (?, ?, ?)", owners
    )
    assert counted[0][0] == 30


# -- the column-at-a-time checks accept exactly what the full checks accept unchanged ---------


_VALUES = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["voice", "typed", "ai_suggested", "Voice", "\ud800"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
)
#: Mostly valid values of each column, so that whole runs are often valid too.
_COLUMNS = {
    "command": st.text(max_size=8),
    "command_type": st.sampled_from(["voice", "typed", "ai_suggested"]),
    "exit_code": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "voice_confidence": st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
    "project_id": st.none() | st.text(max_size=4),
}


def _unchanged(name: str, value: Any) -> bool:
    try:
        checked = COMMANDS.column(name).check(COMMANDS.name, value)
    except (InvalidValueError, OverflowError, TypeError):
        return False
    return checked is value


@given(
    st.lists(
        st.tuples(*[valid | valid | valid | _VALUES for valid in _COLUMNS.values()]),
        min_size=1,
        max_size=4,
    )
)
def test_column_checks_agree_with_the_full_checks(values: list[tuple[Any, ...]]) -> None:
    names = tuple(_COLUMNS)
    items = [dict(zip(names, row, strict=True)) for row in values]
    expected = all(_unchanged(name, item[name]) for item in items for name in names)
    found = plain_rows(COMMANDS, names, items)
    assert found == (values if expected else None)


def test_column_checks_accept_a_plain_run() -> None:
    items = [
        {"command": "ls ✓", "command_type": None, "exit_code": 2**63 - 1, "voice_confidence": 1}
    ] * 3
    columns = ("command", "command_type", "exit_code", "voice_confidence")
    assert plain_rows(COMMANDS, columns, items) == [("ls ✓", None, 2**63 - 1, 1)] * 3


def test_column_checks_decline_json_and_encrypted_columns() -> None:
    assert plain_rows(table_spec(CommandHistory), ("ai_suggested",), [{"ai_suggested": 1}]) is None
    from mangostore.records import Project

    assert plain_rows(table_spec(Project), ("metadata",), [{"metadata": "{}"}]) is None
