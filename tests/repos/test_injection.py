"""Hostile identifiers are refused and hostile text is stored and matched literally.

Names (filters, ``order_by``, columns given to ``create`` and ``update``) must come from
the table's schema: anything else raises :class:`UnknownColumnError` before any SQL
runs, and the database is left exactly as it was. Values are always bound parameters,
so SQL inside them is just text.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import (
    BatchError,
    InvalidValueError,
    MangoError,
    UnknownColumnError,
    ValidationError,
)
from mangostore.records import RECORD_CLASSES, CommandHistory, User
from mangostore.repos.spec import table_spec
from strategies import fresh_tag

TABLES = [record.__table__ for record in RECORD_CLASSES]

HOSTILE_NAMES = [
    "id; DROP TABLE users; --",
    'name" = name OR "1',
    'username" = username OR "1',
    "user_id) OR 1=1 --",
    "id = id OR 1=1",
    "-",
    "",
    " ",
    "*",
    "1",
    "rowid",
    "ID",
    "id ",
    '"id"',
    "users.id",
    "id\x00",
    "username\x00; DROP TABLE users",
    "sqlite_master",
    "username COLLATE NOCASE",
]

HOSTILE_VALUES = [
    "x'); DROP TABLE users; --",
    "' OR '1'='1",
    '" OR "1"="1',
    "1; DELETE FROM users",
    "%",
    "_",
    "\\",
    "'",
    "robert'); DROP TABLE students;--",
    "\x00; DROP TABLE users",
    "/* */ UNION SELECT * FROM sqlite_master --",
]

hypothesis_settings = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

pytestmark = pytest.mark.database("memory_db", "plain_db")


@dataclass
class Seeded:
    db: mangostore.Database
    alice: User
    commands: list[CommandHistory]


@pytest.fixture
def seeded(db: mangostore.Database) -> Seeded:
    """A user with a project, a terminal session and a few commands."""
    return seed(db)


@pytest.fixture(scope="module", params=["memory_db", "plain_db"])
def unchanged(request: pytest.FixtureRequest) -> Iterator[Seeded]:
    """``seeded`` made once per module, as ``memory_db`` (fields encrypted) and as
    ``plain_db``, for the tests that must leave the database exactly as it was: each
    of them checks that it did, so none can hide a write from the next."""
    keyed = request.param == "memory_db"
    with mangostore.open(
        ":memory:",
        passphrase=PASSPHRASE if keyed else None,
        encrypted=keyed,
        settings=Settings(kdf=FAST_KDF),
    ) as db:
        yield seed(db)


def seed(db: mangostore.Database) -> Seeded:
    """Give ``db`` a user with a project, a terminal session and a few commands."""
    alice = db.users.create(username="alice", security_profile={"mfa": True})
    project = db.projects.create(user_id=alice.id, name="site", path="/srv/site")
    session = db.terminal_sessions.create(user_id=alice.id, project_id=project.id)
    commands = [
        db.command_history.create(
            user_id=alice.id, project_id=project.id, terminal_session_id=session.id, command=c
        )
        for c in ("ls -la", "git status", "make test")
    ]
    return Seeded(db, alice, commands)


def snapshot(db: mangostore.Database) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """Return the schema and the row count of every table."""
    schema = [
        tuple(row)
        for row in db.query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
    ]
    counts = {t: int(db.query(f'SELECT count(*) FROM "{t}"')[0][0]) for t in TABLES}
    return schema, counts


# -- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_filter_name_is_refused(unchanged: Seeded, name: str) -> None:
    db = unchanged.db
    before = snapshot(db)
    for call in (db.users.list, db.users.count, db.users.exists, db.users.first):
        with pytest.raises(UnknownColumnError):
            call(**{name: "x"})
    with pytest.raises(UnknownColumnError):
        db.command_history.list(user_id=unchanged.alice.id, **{name: None})
    assert snapshot(db) == before


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_order_by_name_is_refused(unchanged: Seeded, name: str) -> None:
    db = unchanged.db
    before = snapshot(db)
    for order_by in (name, "-" + name, ["id", name], ("-id", "-" + name)):
        with pytest.raises(UnknownColumnError):
            db.users.list(order_by=order_by)
        with pytest.raises(UnknownColumnError):
            db.command_history.find_by_user(unchanged.alice.id, order_by=order_by)
    assert snapshot(db) == before


@pytest.mark.parametrize("order_by", [[1], [None], b"id", [b"id"], ["id", ("name",)]])
def test_an_order_by_that_is_not_a_name_is_refused(unchanged: Seeded, order_by: Any) -> None:
    with pytest.raises(InvalidValueError):
        unchanged.db.users.list(order_by=order_by)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_column_name_writes_nothing(unchanged: Seeded, name: str) -> None:
    db = unchanged.db
    alice = unchanged.alice
    before = snapshot(db)
    with pytest.raises(UnknownColumnError):
        db.users.create(username="mallory", **{name: "x"})
    with pytest.raises(UnknownColumnError):
        db.projects.create(user_id=alice.id, name="n", path="/n", **{name: "x"})
    with pytest.raises(UnknownColumnError):
        db.users.update(alice.id, **{name: "x"})
    with pytest.raises(UnknownColumnError):
        db.users.update(alice.id, username="renamed", **{name: "x"})
    with pytest.raises(BatchError) as batch:
        db.users.create_many([{"username": "ok"}, {"username": "mallory", name: "x"}])
    assert batch.value.index == 1
    assert isinstance(batch.value.__cause__, UnknownColumnError)
    with pytest.raises(BatchError) as batch:
        db.users.update_many([(alice.id, {"username": "renamed"}), (alice.id, {name: "x"})])
    assert isinstance(batch.value.__cause__, UnknownColumnError)
    assert snapshot(db) == before
    assert db.users.get(alice.id) == alice


@pytest.mark.parametrize("key", [1, None, b"username", ("username",), 1.5])
def test_a_column_name_that_is_not_a_string_writes_nothing(unchanged: Seeded, key: Any) -> None:
    db = unchanged.db
    before = snapshot(db)
    with pytest.raises(TypeError):  # Python refuses non-string keywords itself
        db.users.create(username="mallory", **{key: "x"})
    with pytest.raises(BatchError) as batch:
        db.users.create_many([{"username": "mallory", key: "x"}])
    assert isinstance(batch.value.__cause__, UnknownColumnError)
    with pytest.raises(BatchError) as batch:
        db.users.update_many([(unchanged.alice.id, {key: "x"})])
    assert isinstance(batch.value.__cause__, UnknownColumnError)
    assert snapshot(db) == before


@pytest.mark.parametrize("limit", ["1; DROP TABLE users", "1 OR 1=1", -1, 1.5, True, [1]])
def test_a_hostile_limit_or_offset_is_refused(unchanged: Seeded, limit: Any) -> None:
    db = unchanged.db
    before = snapshot(db)
    with pytest.raises(InvalidValueError):
        db.users.list(limit=limit)
    with pytest.raises(InvalidValueError):
        db.users.list(offset=limit)
    with pytest.raises(InvalidValueError):
        db.command_history.search(unchanged.alice.id, "ls", limit=limit)
    assert snapshot(db) == before


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_sql_in_a_value_is_stored_literally(seeded: Seeded, value: str) -> None:
    db = seeded.db
    before_schema, before_counts = snapshot(db)
    user = db.users.create(
        # A user name may not hold a NUL (or any control character): see
        # tests/regressions/test_usernames_nfc_nfd_are_one_user.py.
        username=value.replace("\x00", "NUL"),
        email=value + "@example.com",
        preferences={value: [value]},
        security_profile={"note": value},
    )
    project = db.projects.create(
        user_id=user.id, name=value, path=value, metadata=value, security_config=value
    )
    command = db.command_history.create(user_id=user.id, project_id=project.id, command=value)
    got = db.users.get(user.id)
    assert (got.username, got.email) == (user.username, value + "@example.com")
    assert got.preferences == {value: [value]}
    assert got.security_profile == {"note": value}
    got_project = db.projects.get(project.id)
    assert (got_project.name, got_project.path) == (value, value)
    assert (got_project.metadata, got_project.security_config) == (value, value)
    assert db.command_history.get(command.id).command == value
    assert [u.id for u in db.users.list(username=user.username)] == [user.id]
    assert db.projects.find_by_path(user.id, value) == got_project
    assert db.users.get_by_username(value + "x") is None
    schema, counts = snapshot(db)
    assert schema == before_schema
    assert counts == {
        **before_counts,
        "users": before_counts["users"] + 1,
        "projects": before_counts["projects"] + 1,
        "command_history": before_counts["command_history"] + 1,
    }


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_sql_in_a_filter_value_matches_nothing_else(unchanged: Seeded, value: str) -> None:
    db = unchanged.db
    before = snapshot(db)
    assert db.users.list(username=value) == []
    assert db.users.count(username=[value, "alice"]) == 1
    assert db.users.exists(value) is False
    with pytest.raises(mangostore.errors.NotFoundError):
        db.users.get(value)
    assert db.users.delete(value) is False
    assert db.command_history.find_by_user(value) == []
    assert snapshot(db) == before


# -- literal search ---------------------------------------------------------------------

SEARCHED = [
    "100%",
    "100 percent",
    "a_b",
    "aXb",
    "C:\\temp\\new",
    "C:tempnew",
    "it's",
    'say "hi"',
    "' OR 1=1 --",
    "grep -r '1=1'",
    "echo %PATH%",
    "rm -- -f",
]


@pytest.mark.parametrize(
    "needle",
    ["%", "_", "\\", "'", '"', "' OR 1=1 --", "%_", "\\%", "a_b", "100%", "%' OR '1'='1", "--"],
)
def test_search_matches_special_characters_literally(seeded: Seeded, needle: str) -> None:
    db = seeded.db
    bob = db.users.create(username="bob")
    for command in SEARCHED:
        db.command_history.create(user_id=bob.id, command=command)
        db.command_history.create(user_id=seeded.alice.id, command=command)
    found = db.command_history.search(bob.id, needle, limit=100)
    assert sorted(c.command for c in found) == sorted(c for c in SEARCHED if needle in c)
    assert {c.user_id for c in found} <= {bob.id}


def test_search_refuses_text_that_is_not_a_string(unchanged: Seeded) -> None:
    with pytest.raises(InvalidValueError):
        unchanged.db.command_history.search(unchanged.alice.id, 1)  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------


@hypothesis_settings
@given(
    table=st.sampled_from(TABLES),
    name=st.text()
    | st.sampled_from(sorted({n for r in RECORD_CLASSES for n in table_spec(r).names})),
)
def test_a_filter_name_is_a_column_or_refused(
    memory_db: mangostore.Database, table: str, name: str
) -> None:
    repo = getattr(memory_db, table)
    column = repo.spec.columns.get(name)
    if column is None:
        with pytest.raises(UnknownColumnError):
            repo.count(**{name: None})
        if name.removeprefix("-") not in repo.spec.columns:  # "-id" orders by id
            with pytest.raises(UnknownColumnError):
                repo.list(order_by=name)
    elif column.kind in ("json", "encrypted"):
        with pytest.raises(InvalidValueError):
            repo.count(**{name: None})
    else:
        assert repo.count(**{name: None}) >= 0
        assert repo.list(order_by=["-" + name], limit=1) == []


# Text full of the characters that mean something to LIKE or to SQL.
_tricky = st.text(
    alphabet=st.sampled_from("%_\\'\"; -=*()ab1") | st.characters(exclude_categories=["Cs"]),
    max_size=12,
)
# Case and NUL are left out here; the tests below cover them. Lone
# surrogates are not text at all: see test_text_that_is_not_unicode_is_refused.
_no_case_no_nul = st.text(
    alphabet=st.sampled_from("%_\\'\"; -=*()1")
    | st.characters(exclude_categories=["Cs"], exclude_characters=string.ascii_letters + "\x00"),
    max_size=12,
)


def _search_property(db: mangostore.Database, needle: str, others: list[str]) -> None:
    user = db.users.create(username=f"searcher-{fresh_tag()}")
    commands = [needle, f"<{needle}>", needle.upper(), needle.lower(), needle.swapcase(), *others]
    commands = [c for c in commands if c]  # a command is never empty in practice
    for command in commands:
        db.command_history.create(user_id=user.id, command=command)
    found = db.command_history.search(user.id, needle, limit=1000)
    assert sorted(c.command for c in found) == sorted(c for c in commands if needle in c)


@hypothesis_settings
@given(needle=_no_case_no_nul, others=st.lists(_no_case_no_nul, max_size=6))
def test_search_finds_exactly_the_commands_containing_the_text(
    memory_db: mangostore.Database, needle: str, others: list[str]
) -> None:
    _search_property(memory_db, needle, others)


@hypothesis_settings
@given(needle=_tricky, others=st.lists(_tricky, max_size=6))
@example(needle="ls", others=[])
def test_search_finds_exactly_the_commands_containing_any_text(
    memory_db: mangostore.Database, needle: str, others: list[str]
) -> None:
    _search_property(memory_db, needle, others)


def test_search_is_case_sensitive(unchanged: Seeded) -> None:
    found = unchanged.db.command_history.search(unchanged.alice.id, "LS")
    assert found == []


def test_search_finds_text_after_a_nul(seeded: Seeded) -> None:
    db = seeded.db
    stored = db.command_history.create(user_id=seeded.alice.id, command="echo a\x00b")
    assert db.command_history.search(seeded.alice.id, "b") == [stored]


def test_search_text_with_a_nul_finds_nothing_else(unchanged: Seeded) -> None:
    assert unchanged.db.command_history.search(unchanged.alice.id, "la\x00zzz") == []


NOT_UNICODE = [
    pytest.param(lambda db, uid: db.users.create(username="\ud800"), id="create"),
    pytest.param(
        lambda db, uid: db.users.create(username="u", preferences={"k": "\udfff"}), id="json"
    ),
    pytest.param(lambda db, uid: db.users.update(uid, security_profile="\ud800"), id="encrypted"),
    pytest.param(lambda db, uid: db.users.list(username="\ud800"), id="filter"),
    pytest.param(
        lambda db, uid: db.users.get("\ud800"),
        id="get",
    ),
    pytest.param(
        lambda db, uid: db.command_history.search(uid, "\ud800"),
        id="search",
    ),
]


@pytest.mark.parametrize("call", NOT_UNICODE)
def test_text_that_is_not_unicode_is_refused(seeded: Seeded, call: Any) -> None:
    db = seeded.db
    before = snapshot(db)
    with pytest.raises(MangoError) as refused:
        call(db, seeded.alice.id)
    assert isinstance(refused.value, ValidationError | mangostore.errors.NotFoundError)
    assert snapshot(db) == before
