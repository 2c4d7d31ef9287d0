"""Record classes: one per design table, matching the live schema; JSON columns in and out as
Python objects and validated on the way in; encrypted columns never shown by ``repr``."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from design import DESIGN_TABLES, ENCRYPTED_COLUMNS, ENCRYPTED_PAIRS, JSON_COLUMNS, Rows, row_counts
from mangostore import Settings
from mangostore.errors import JSONValueError
from mangostore.records import RECORD_CLASSES, Record, User, encrypted_columns
from mangostore.schema.sensitive import SENSITIVE_FIELDS

#: Columns the schema declares as JSON text (CHECK json_valid), not encrypted.
JSON_PAIRS = JSON_COLUMNS

NESTED = {
    "list": [1, -2, 2.5, None, True, False, "s"],
    "text": 'héllo ✓ \U0001f96d "quoted" \\ back\nslash',
    "nested": {"empty": {}, "none": None, "deep": [[[]]]},
    "big": 2**70,
}

CLASSES = {cls.__table__: cls for cls in RECORD_CLASSES}


def _recursive_dict() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


def _recursive_list() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def _deep_list(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


#: Values a JSON column must refuse, with a readable id each.
NOT_JSON = [
    pytest.param({1, 2}, id="set"),
    pytest.param(frozenset({"a"}), id="frozenset"),
    pytest.param(object(), id="object"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param({"score": [1.0, math.nan]}, id="nested-nan"),
    pytest.param({(1, 2): "tuple key"}, id="tuple-key"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(1j, id="complex"),
    pytest.param(decimal.Decimal("1.5"), id="decimal"),
    pytest.param(datetime.date(2024, 1, 1), id="date"),
    pytest.param(_recursive_dict(), id="recursive-dict"),
    pytest.param(_recursive_list(), id="recursive-list"),
    pytest.param(_deep_list(100_000), id="nested-100k"),
]


@pytest.fixture
def small_json_db() -> Iterator[mangostore.Database]:
    """A database whose JSON values may be at most 1024 bytes."""
    settings = Settings(json_max_bytes=1024, kdf=FAST_KDF)
    db = mangostore.open(":memory:", passphrase=PASSPHRASE, settings=settings)
    yield db
    db.close()


@pytest.fixture(scope="module")
def plain_once() -> Iterator[mangostore.Database]:
    """One in-memory database without a keyring for the module's tests that write
    nothing (each checks that it did not)."""
    with mangostore.open(":memory:", encrypted=False) as db:
        yield db


@pytest.fixture(scope="module")
def keyed_once() -> Iterator[mangostore.Database]:
    """One in-memory database with a keyring for the module's tests that write nothing
    (each checks that it did not)."""
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)) as db:
        yield db


# -- the classes and the live schema ------------------------------------------------------


def test_there_is_one_record_class_per_design_table_in_design_order() -> None:
    assert tuple(cls.__table__ for cls in RECORD_CLASSES) == DESIGN_TABLES
    assert all(issubclass(cls, Record) for cls in RECORD_CLASSES)
    assert all(dataclasses.is_dataclass(cls) for cls in RECORD_CLASSES)


@pytest.mark.parametrize("table", DESIGN_TABLES)
def test_fields_equal_the_live_schema_columns_in_order(
    plain_once: mangostore.Database, table: str
) -> None:
    live = [row[1] for row in plain_once.query("SELECT * FROM pragma_table_xinfo(?)", (table,))]
    assert live, table
    assert [f.name for f in dataclasses.fields(CLASSES[table])] == live


@pytest.mark.parametrize("table", DESIGN_TABLES)
def test_encrypted_columns_equal_the_sensitive_fields(table: str) -> None:
    cls = CLASSES[table]
    expected = SENSITIVE_FIELDS.get(table, ())
    assert encrypted_columns(cls) == frozenset(expected)
    assert expected == ENCRYPTED_COLUMNS.get(table, ())
    in_field_order = tuple(f.name for f in dataclasses.fields(cls) if f.name in expected)
    assert in_field_order == expected


def test_sensitive_fields_name_only_design_tables() -> None:
    assert set(SENSITIVE_FIELDS) <= set(DESIGN_TABLES)
    assert set(SENSITIVE_FIELDS) == set(ENCRYPTED_COLUMNS)


def test_records_give_attribute_access_by_column_name(plain_db: mangostore.Database) -> None:
    user = Rows(plain_db).user(username="alice", email="alice@example.org")
    assert isinstance(user, User)
    assert user.username == "alice"
    assert user.email == "alice@example.org"
    assert user.last_login is None
    assert user.to_dict()["username"] == "alice"
    assert list(user.to_dict()) == [f.name for f in dataclasses.fields(User)]
    with pytest.raises(AttributeError):
        user.no_such_column  # type: ignore[attr-defined]  # noqa: B018


# -- JSON columns ---------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "column"), JSON_PAIRS)
def test_json_columns_come_out_as_python_objects(
    plain_db: mangostore.Database, table: str, column: str
) -> None:
    repo = getattr(plain_db, table)
    record = Rows(plain_db).make(table, **{column: NESTED})
    assert getattr(record, column) == NESTED
    assert getattr(repo.get(record.id), column) == NESTED
    (stored,) = plain_db.query(f'SELECT "{column}" FROM "{table}" WHERE id = ?', (record.id,))[0]
    assert isinstance(stored, str)
    assert json.loads(stored) == NESTED


@pytest.mark.parametrize(
    "value", [[], {}, "text", 0, -1.5, True, False, [None], {"": ""}], ids=repr
)
def test_json_scalars_and_empty_containers_round_trip(
    plain_db: mangostore.Database, value: Any
) -> None:
    user = Rows(plain_db).user(preferences=value)
    got = plain_db.users.get(user.id).preferences
    assert got == value
    assert type(got) is type(value)


def test_json_values_round_trip_property() -> None:
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
    settings = Settings(kdf=FAST_KDF)
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=settings) as db:
        rows = Rows(db)

        @given(value=json_values)
        def round_trip(value: Any) -> None:
            user = rows.user(preferences=value, security_profile=value)
            again = db.users.get(user.id)
            assert again.preferences == value
            assert again.security_profile == value

        round_trip()


@pytest.mark.parametrize("value", NOT_JSON)
def test_create_refuses_values_that_are_not_json(
    plain_once: mangostore.Database, value: Any
) -> None:
    before = row_counts(plain_once)
    with pytest.raises(JSONValueError) as caught:
        plain_once.users.create(username="alice", preferences=value)
    assert caught.value.field == "preferences"
    assert "preferences" in str(caught.value)
    assert row_counts(plain_once) == before


@pytest.mark.parametrize("value", NOT_JSON)
def test_update_refuses_values_that_are_not_json(plain_db: mangostore.Database, value: Any) -> None:
    user = Rows(plain_db).user(preferences={"theme": "dark"})
    with pytest.raises(JSONValueError) as caught:
        plain_db.users.update(user.id, preferences=value)
    assert caught.value.field == "preferences"
    assert plain_db.users.get(user.id) == user


@pytest.mark.parametrize("value", NOT_JSON)
def test_encrypted_columns_refuse_values_that_are_not_json(
    keyed_once: mangostore.Database, value: Any
) -> None:
    before = row_counts(keyed_once)
    with pytest.raises(JSONValueError) as caught:
        keyed_once.users.create(username="alice", security_profile=value)
    assert caught.value.field == "security_profile"
    assert row_counts(keyed_once) == before


@pytest.mark.parametrize(("table", "column"), JSON_PAIRS + ENCRYPTED_PAIRS)
def test_every_json_column_is_validated(
    memory_db: mangostore.Database, table: str, column: str
) -> None:
    with pytest.raises(JSONValueError) as caught:
        Rows(memory_db).make(table, **{column: {"tags": {"a", "b"}}})
    assert caught.value.field == column
    assert getattr(memory_db, table).count() == 0


def test_json_integer_keys_become_strings(plain_db: mangostore.Database) -> None:
    user = Rows(plain_db).user(preferences={1: "one"})
    assert plain_db.users.get(user.id).preferences == {"1": "one"}


@pytest.mark.parametrize("column", ["preferences", "security_profile"])
def test_json_with_a_lone_surrogate_is_stored_or_refused_cleanly(
    memory_db: mangostore.Database, column: str
) -> None:
    value = {"name": "half a pair: \ud83d"}
    before = row_counts(memory_db)
    outcome: User | JSONValueError
    try:
        outcome = memory_db.users.create(username="alice", **{column: value})
    except JSONValueError as exc:
        outcome = exc
    if isinstance(outcome, JSONValueError):
        assert outcome.field == column
        assert row_counts(memory_db) == before
    else:
        assert getattr(memory_db.users.get(outcome.id), column) == value


# -- the size limit -------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["preferences", "security_profile"])
def test_json_up_to_the_limit_is_accepted(small_json_db: mangostore.Database, column: str) -> None:
    at_limit = "x" * 1022  # serialised with its quotes: 1024 bytes
    user = small_json_db.users.create(username="alice", **{column: at_limit})
    assert getattr(small_json_db.users.get(user.id), column) == at_limit


@pytest.mark.parametrize("column", ["preferences", "security_profile"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x" * 1023, id="one-byte-over"),
        pytest.param("é" * 600, id="multibyte-over-in-bytes"),
        pytest.param({"rows": ["y" * 100] * 20}, id="container"),
        pytest.param("x" * 1_000_000, id="megabyte"),
    ],
)
def test_json_over_the_limit_is_refused(
    small_json_db: mangostore.Database, column: str, value: Any
) -> None:
    before = row_counts(small_json_db)
    with pytest.raises(JSONValueError, match="json_max_bytes") as caught:
        small_json_db.users.create(username="alice", **{column: value})
    assert caught.value.field == column
    assert row_counts(small_json_db) == before


def test_json_over_the_limit_is_refused_on_update(small_json_db: mangostore.Database) -> None:
    user = small_json_db.users.create(username="alice", preferences={"a": 1})
    with pytest.raises(JSONValueError) as caught:
        small_json_db.users.update(user.id, preferences={"a": "z" * 2000})
    assert caught.value.field == "preferences"
    assert small_json_db.users.get(user.id) == user


def test_json_over_the_limit_is_refused_in_other_tables(small_json_db: mangostore.Database) -> None:
    rows = Rows(small_json_db)
    user = rows.user()
    before = row_counts(small_json_db)
    with pytest.raises(JSONValueError) as caught:
        rows.ai_memory(user_id=user.id, value_data=["v" * 600, "w" * 600])
    assert caught.value.field == "value_data"
    with pytest.raises(JSONValueError) as caught:
        rows.terminal_session(user_id=user.id, session_data={"scrollback": "s" * 5000})
    assert caught.value.field == "session_data"
    assert row_counts(small_json_db) == before


# -- repr never shows encrypted plaintext ---------------------------------------------------


@pytest.mark.parametrize("fixture", ["memory_db", "plain_db"])
@pytest.mark.parametrize(("table", "column"), ENCRYPTED_PAIRS)
def test_repr_never_shows_encrypted_plaintext(
    request: pytest.FixtureRequest, fixture: str, table: str, column: str
) -> None:
    db: mangostore.Database = request.getfixturevalue(fixture)
    secret = {"api_token": "PLAINTEXT-7f3a9c", "nested": ["PLAINTEXT-b2e1"]}
    created = Rows(db).make(table, **{column: secret})
    fetched = getattr(db, table).get(created.id)
    assert getattr(fetched, column) == secret  # the value itself is plaintext
    for record in (created, fetched):
        for text in (repr(record), str(record), repr([record]), f"{record!r}", f"{record}"):
            assert "PLAINTEXT" not in text
            assert "7f3a9c" not in text
            assert column in text
            assert record.id in text  # other columns are shown


def test_repr_shows_plain_json_columns(plain_db: mangostore.Database) -> None:
    user = Rows(plain_db).user(username="alice", preferences={"theme": "solarized"})
    assert "alice" in repr(user)
    assert "solarized" in repr(user)
