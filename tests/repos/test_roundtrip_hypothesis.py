"""Every valid value survives a write and a read, in every table, encrypted or not.

Each test opens one database (``memory_db`` has a keyring, so sensitive columns are
sealed; ``plain_db`` has none) and runs every example against it; each example makes
its own parent rows and unique names, so examples never clash.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mangostore
from mangostore.errors import InvalidValueError
from mangostore.records import RECORD_CLASSES, Record
from mangostore.repos.base import Repository
from mangostore.repos.spec import table_spec
from mangostore.testing.strategies import CHECKED, INT64_MAX
from strategies import (
    create_kwargs,
    create_parents,
    foreign_keys,
    fresh_tag,
    references,
    update_kwargs,
)

TABLES = [record.__table__ for record in RECORD_CLASSES]
#: Tables that take every column from ``create`` and ``update``. ``security_events`` is
#: the append-only audit log (its round trip is in test_audit.py).
WRITABLE = [record for record in RECORD_CLASSES if record.__table__ != "security_events"]
WRITABLE_IDS = [record.__table__ for record in WRITABLE]

round_trips = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

pytestmark = pytest.mark.database("memory_db", "plain_db")


def canonical(value: Any) -> Any:
    """Return ``value`` with the type of every part made part of the comparison.

    ``True == 1`` and ``1 == 1.0`` in Python; a round trip must not turn one into the other.
    """
    if isinstance(value, dict):
        return ("dict", {key: canonical(item) for key, item in value.items()})
    if isinstance(value, list):
        return ("list", [canonical(item) for item in value])
    return (type(value).__name__, value)


def expected(record: type[Record], name: str, value: Any) -> Any:
    """Return what reading ``value`` back from column ``name`` should give."""
    if value is not None and table_spec(record).columns[name].kind == "float":
        return float(value)  # a REAL column stores an integer as a float
    return value


def assert_stored(
    db: mangostore.Database, repo: Repository[Any], record: Record, given: dict[str, Any]
) -> None:
    """Check ``record`` holds ``given``, reads back unchanged, and is sealed at rest."""
    cls = type(record)
    got = record.to_dict()
    for name, value in given.items():
        assert canonical(got[name]) == canonical(expected(cls, name, value)), name
    assert canonical(repo.get(record.id).to_dict()) == canonical(got)
    spec = table_spec(cls)
    for name in spec.encrypted:
        if got[name] is None:
            continue
        (stored,) = db.query(
            f'SELECT "{name}" FROM "{spec.name}" WHERE id = ?',  # names from the spec
            (record.id,),
        )[0]
        # With a keyring the column holds an envelope; without one, the JSON text.
        assert isinstance(stored, bytes if db.keyring is not None else str), name


def _setup(db: mangostore.Database, record: type[Record]) -> tuple[str, dict[str, Any]]:
    tag = fresh_tag()
    refs = references(db, record.__table__, create_parents(db, tag))
    return tag, refs


@pytest.mark.parametrize("record", WRITABLE, ids=WRITABLE_IDS)
@round_trips
@given(data=st.data())
def test_create_then_get_returns_what_was_given(
    db: mangostore.Database, record: type[Record], data: st.DataObject
) -> None:
    tag, refs = _setup(db, record)
    fields = data.draw(create_kwargs(record, refs, tag=tag), label="fields")
    repo: Repository[Any] = getattr(db, record.__table__)
    created = repo.create(**fields)
    assert isinstance(created, record)
    assert_stored(db, repo, created, fields)


@pytest.mark.parametrize("record", WRITABLE, ids=WRITABLE_IDS)
@round_trips
@given(data=st.data())
def test_update_then_get_returns_what_was_given(
    db: mangostore.Database, record: type[Record], data: st.DataObject
) -> None:
    tag, refs = _setup(db, record)
    fields = data.draw(create_kwargs(record, refs, tag=tag), label="fields")
    repo: Repository[Any] = getattr(db, record.__table__)
    created = repo.create(**fields).to_dict()
    changes = data.draw(update_kwargs(record, refs, tag=fresh_tag()), label="changes")
    updated = repo.update(created["id"], **changes)
    assert_stored(db, repo, updated, changes)
    after = updated.to_dict()
    for name, before in created.items():
        if name not in changes and name != "updated_at":
            assert canonical(after[name]) == canonical(before), name


# -- the strategies know the schema -----------------------------------------------------


def test_every_foreign_key_has_a_parent_row(plain_db: mangostore.Database) -> None:
    parents = create_parents(plain_db)
    for table in TABLES:
        for column, parent in foreign_keys(plain_db, table).items():
            assert parents.get(parent), f"{table}.{column} refers to {parent}, never created"


def test_every_check_constraint_is_known_to_the_strategies(plain_db: mangostore.Database) -> None:
    for record in RECORD_CLASSES:
        spec = table_spec(record)
        (sql,) = plain_db.query("SELECT sql FROM sqlite_master WHERE name = ?", (spec.name,))[0]
        checked = set(re.findall(r"CHECK\s*\(\s*(?:json_valid\()?(\w+)", sql))
        assert checked <= set(spec.columns), (spec.name, checked - set(spec.columns))
        for name in checked:
            column = spec.columns[name]
            if column.kind in ("json", "bool") or column.choices is not None:
                continue  # the record class already says what the CHECK allows
            assert (spec.name, name) in CHECKED, f"{spec.name}.{name} has a CHECK"
    for table, name in CHECKED:
        (sql,) = plain_db.query("SELECT sql FROM sqlite_master WHERE name = ?", (table,))[0]
        assert re.search(rf"CHECK\s*\(\s*{name}\b", sql), f"{table}.{name} has no CHECK"


# -- regressions, named after what they broke -------------------------------------------


@pytest.mark.parametrize("secret", [None, {"ssh": "agent"}])
def test_changing_the_owner_keeps_encrypted_columns(db: mangostore.Database, secret: Any) -> None:
    alice = db.users.create(username="alice")
    bob = db.users.create(username="bob")
    project = db.projects.create(user_id=alice.id, name="p", path="/p", security_config=secret)
    session = db.terminal_sessions.create(user_id=alice.id, session_data={"a": 1})
    moved = db.projects.update(project.id, user_id=bob.id)
    assert moved.user_id == bob.id
    assert db.projects.get(project.id).to_dict() == moved.to_dict()
    assert moved.security_config == secret
    cleared = db.terminal_sessions.update(session.id, user_id=bob.id, session_data=None)
    assert cleared.session_data is None
    assert db.terminal_sessions.get(session.id).to_dict() == cleared.to_dict()


def test_an_empty_update_changes_nothing(plain_db: mangostore.Database) -> None:
    kind = plain_db.notification_types.create(name="n", category="system", template="t")
    assert plain_db.notification_types.update(kind.id) == kind


@pytest.mark.parametrize("value", [INT64_MAX + 1, -(2**63) - 1])
def test_an_integer_outside_64_bits_is_refused(plain_db: mangostore.Database, value: int) -> None:
    with pytest.raises(InvalidValueError):
        plain_db.users.create(username="u", last_login=value)
    assert plain_db.users.count() == 0
