"""Reading the live schema: objects, tables, columns, foreign keys, indexes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlcipher3
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.engine.pragmas import Connection
from mangostore.schema import introspect

SCRATCH = [
    "CREATE TABLE parent (id TEXT PRIMARY KEY, code TEXT UNIQUE)",
    "CREATE TABLE child (n INTEGER NOT NULL, parent_id TEXT REFERENCES parent, "
    "code TEXT REFERENCES parent(code), label TEXT, "
    "doubled INTEGER GENERATED ALWAYS AS (n * 2) VIRTUAL, PRIMARY KEY (parent_id, n)) "
    "WITHOUT ROWID",
    "CREATE TABLE pair (a INTEGER, b INTEGER, x INTEGER, y INTEGER, "
    "FOREIGN KEY (x, y) REFERENCES pair_target(a, b)) STRICT",
    "CREATE TABLE pair_target (a INTEGER, b INTEGER, PRIMARY KEY (a, b))",
    "CREATE INDEX child_label ON child(label, lower(label)) WHERE label IS NOT NULL",
    "CREATE VIEW labels AS SELECT label FROM child",
    "CREATE VIRTUAL TABLE child_text USING fts5(label, content='child', content_rowid='n')",
    "CREATE TRIGGER child_gone AFTER DELETE ON child BEGIN SELECT 1; END",
]


@pytest.fixture
def conn(plain_db: mangostore.Database) -> Iterator[Connection]:
    """A connection of an in-memory database holding the scratch tables above."""
    for sql in SCRATCH:
        plain_db.execute(sql)
    with plain_db.store.reading() as connection:
        yield connection


def test_objects_come_by_name_or_in_creation_order(conn: Connection) -> None:
    by_name = [o.name for o in introspect.schema_objects(conn)]
    assert by_name == sorted(by_name)
    made = [o.name for o in introspect.schema_objects(conn, order="creation")]
    assert made.index("parent") < made.index("child") < made.index("child_label")
    assert made.index("child_label") < made.index("child_text") < made.index("child_gone")


def test_objects_of_chosen_kinds(conn: Connection) -> None:
    kinds = {o.kind for o in introspect.schema_objects(conn, "view", "trigger")}
    assert kinds == {"view", "trigger"}
    view = next(o for o in introspect.schema_objects(conn, "view") if o.name == "labels")
    assert (view.table, view.root_page, view.virtual, view.module) == ("labels", 0, False, None)


def test_a_virtual_table_gives_its_module_and_content_table(conn: Connection) -> None:
    tables = {o.name: o for o in introspect.schema_objects(conn, "table")}
    text = tables["child_text"]
    assert (text.virtual, text.module, text.content_table, text.root_page) == (
        True,
        "fts5",
        "child",
        0,
    )
    assert (tables["child"].virtual, tables["child"].module) == (False, None)
    assert tables["child"].content_table is None
    assert tables["child"].root_page > 0
    assert not tables["child"].internal


def test_sqlite_s_own_objects_are_internal_in_any_case(conn: Connection) -> None:
    autoindex = [o for o in introspect.schema_objects(conn, "index") if o.table == "parent"]
    assert autoindex != []
    assert all(o.internal and o.sql == "" for o in autoindex)
    assert introspect.is_internal("SQLITE_sequence")
    assert not introspect.is_internal("sqlitex")


def test_table_list_tells_rowid_strict_virtual_and_shadow_tables(conn: Connection) -> None:
    tables = {t.name: t for t in introspect.table_list(conn)}
    assert (tables["child"].without_rowid, tables["parent"].without_rowid) == (True, False)
    assert (tables["pair"].strict, tables["child"].strict) == (True, False)
    assert (tables["child_text"].kind, tables["child_text_data"].kind) == ("virtual", "shadow")
    assert tables["labels"].kind == "view"
    assert tables[introspect.SCHEMA_TABLE].internal


def test_columns_leave_generated_ones_out_unless_asked(conn: Connection) -> None:
    plain = introspect.columns(conn, "child")
    assert [c.name for c in plain] == ["n", "parent_id", "code", "label"]
    # A primary key of a table WITHOUT ROWID is NOT NULL whether declared so or not.
    assert [(c.primary_key, c.not_null, c.declared_type) for c in plain] == [
        (2, True, "INTEGER"),
        (1, True, "TEXT"),
        (0, False, "TEXT"),
        (0, False, "TEXT"),
    ]
    every = introspect.columns(conn, "child", hidden=True)
    assert [(c.name, c.hidden) for c in every][-1] == ("doubled", 2)


def test_a_missing_table_has_no_columns_keys_or_indexes(conn: Connection) -> None:
    assert introspect.columns(conn, "nowhere") == []
    assert introspect.foreign_keys(conn, "nowhere") == []
    assert introspect.indexes(conn, "nowhere") == []
    assert not introspect.has_table(conn, "nowhere")
    assert introspect.has_table(conn, "child")
    assert not introspect.has_table(conn, "labels")  # a view, not a table


def test_names_are_bound_not_spliced(conn: Connection) -> None:
    hostile = "child'); DROP TABLE parent; --"
    assert introspect.columns(conn, hostile) == []
    assert introspect.foreign_keys(conn, hostile) == []
    assert introspect.has_table(conn, "parent")


def test_foreign_keys_name_their_target_or_leave_it_to_the_primary_key(
    conn: Connection,
) -> None:
    keys = sorted(introspect.foreign_keys(conn, "child"), key=lambda k: k.column)
    assert keys == [
        introspect.ForeignKey("child", "code", "parent", "code", 0),
        introspect.ForeignKey("child", "parent_id", "parent", None, 1),
    ]
    pair = introspect.foreign_keys(conn, "pair")
    assert [(k.column, k.target) for k in pair] == [("x", "a"), ("y", "b")]


def test_indexes_with_their_columns(conn: Connection) -> None:
    made = {i.name: i for i in introspect.indexes(conn, "child")}
    label = made["child_label"]
    assert (label.table, label.unique, label.origin, label.partial) == ("child", False, "c", True)
    assert label.columns == ("label", None)  # None: the expression lower(label)
    unique = [i for i in introspect.indexes(conn, "parent") if i.origin == "u"]
    assert [(i.unique, i.columns) for i in unique] == [(True, ("code",))]


def test_schema_reads_are_not_counted_as_the_application_s_statements(
    plain_db: mangostore.Database,
) -> None:
    assert plain_db.monitor is not None
    with plain_db.store.reading() as conn:
        before = {s.shape for s in plain_db.monitor.statements()}
        introspect.table_list(conn)
        introspect.columns(conn, "users")
        introspect.count_objects(conn)
    assert {s.shape for s in plain_db.monitor.statements()} == before


def test_count_objects_reads_page_one(
    tmp_path: Path, plain_db: mangostore.Database, fast_settings: mangostore.Settings
) -> None:
    with plain_db.store.reading() as conn:
        assert introspect.count_objects(conn) == len(introspect.schema_objects(conn))
    path = tmp_path / "locked.db"
    mangostore.create(path, passphrase=PASSPHRASE, settings=fast_settings).db.close()
    raw = sqlcipher3.connect(str(path))  # no key: page 1 reads as noise
    try:
        with pytest.raises(sqlcipher3.DatabaseError):
            introspect.count_objects(raw)
    finally:
        raw.close()


def test_errors_are_the_driver_s_for_the_caller_to_wrap() -> None:
    raw = sqlcipher3.connect(":memory:")
    raw.close()
    with pytest.raises(sqlcipher3.ProgrammingError):
        introspect.table_list(raw)
