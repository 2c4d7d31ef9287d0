"""Every full-text index of the schema is built again, from its rows, exactly as the
schema's triggers and services built it (what lets a backup leave the index out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.schema import derived
from mangostore.sql import quote_identifier


def _fts_tables(db: mangostore.Database) -> list[str]:
    rows = db.query("SELECT name, sql FROM sqlite_schema WHERE type = 'table'")
    return [str(r["name"]) for r in rows if derived.is_fts5(str(r["sql"]))]


def _instances(db: mangostore.Database, name: str) -> list[tuple[Any, ...]]:
    """Every occurrence of every term the index ``name`` holds."""
    vocab = quote_identifier(f"instances of {name}")
    with db.store.transaction() as conn:
        conn.execute(
            f"CREATE VIRTUAL TABLE temp.{vocab} USING fts5vocab(main, "
            f"{quote_identifier(name)}, instance)"
        )
        rows = conn.execute(f"SELECT * FROM temp.{vocab}").fetchall()
        conn.execute(f"DROP TABLE temp.{vocab}")
    return sorted(tuple(r) for r in rows)


@pytest.fixture
def used(tmp_path: Path) -> mangostore.Database:
    """A database whose full-text indexes have seen inserts, updates and deletes."""
    db = mangostore.create(
        tmp_path / "d.db", passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
    ).db
    user = db.users.create(username="ann").id
    made = [db.command_history.record(user, f"git push origin b{n} && ls -la") for n in range(30)]
    db.command_history.record(user, "x")  # shorter than a trigram
    db.execute("UPDATE command_history SET command = 'make test' WHERE id = ?", [made[3].id])
    db.command_history.delete(made[4].id)
    for n in range(5):
        db.kg.upsert_entity(user, "project", f"Mango tower {n}", description=f"floor {n}")
        db.memory.remember(user, f"shell {n}", f"fish with starship {n}")
    db.memory.remember(user, "shell 1", "zsh now")
    return db


def test_every_full_text_index_of_the_schema_is_built_again(
    used: mangostore.Database,
) -> None:
    names = _fts_tables(used)
    assert "command_history_fts" in names
    shadows = {str(r["name"]) for r in used.query("SELECT name FROM sqlite_schema")}
    for name in names:
        statements = derived.rebuild_statements(name, f"{name}_content" in shadows)
        assert statements, f"{name}: a backup would copy its index"
    used.close()


def test_building_again_gives_the_index_the_triggers_built(used: mangostore.Database) -> None:
    shadows = {str(r["name"]) for r in used.query("SELECT name FROM sqlite_schema")}
    for name in _fts_tables(used):
        before = _instances(used, name)
        assert before, f"{name} indexed nothing: the case proves nothing"
        statements = derived.rebuild_statements(name, f"{name}_content" in shadows)
        with used.store.transaction() as conn:
            for sql in statements:
                conn.execute(sql)
            conn.execute(
                f"INSERT INTO {quote_identifier(name)} ({quote_identifier(name)}) "
                "VALUES ('integrity-check')"
            )
        assert _instances(used, name) == before, name
    # The search that reads the contentless index finds what it found before.
    user = used.users.list()[0].id
    assert [c.command for c in used.command_history.search(user, "make")] == ["make test"]
    assert len(used.command_history.search(user, "push origin")) == 28
    used.close()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE VIRTUAL TABLE t USING fts5(x)", True),
        ("create virtual table \"a b\" using FTS5 (x, tokenize='trigram')", True),
        ("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')", False),
        ("CREATE VIRTUAL TABLE r USING rtree(id, a, b)", False),
        ("CREATE TABLE fts5(x)", False),
    ],
)
def test_only_fts5_tables_are_full_text_indexes(sql: str, expected: bool) -> None:
    assert derived.is_fts5(sql) is expected


def test_a_contentless_index_it_does_not_know_is_not_built_again() -> None:
    assert derived.rebuild_statements("someone_elses_fts", stores_text=False) == ()
    assert derived.rebuild_statements("t", stores_text=True) == (
        'INSERT INTO "t" ("t") VALUES (\'rebuild\')',
    )
