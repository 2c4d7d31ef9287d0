"""The helpers that build SQL text."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from mangostore.sql import (
    IN_LIST_SIZE,
    MAX_PARAMETERS,
    MAX_ROWS,
    batches,
    execute_rows,
    placeholders,
    quote_identifier,
    quote_text,
    repeated_rows,
    statement_sizes,
)


def test_placeholders() -> None:
    assert placeholders(0) == ""
    assert placeholders(1) == "?"
    assert placeholders(3) == "?, ?, ?"


def test_batches_cover_every_item_once_within_the_limit() -> None:
    items = list(range(2 * IN_LIST_SIZE + 7))
    chunks = list(batches(items))
    assert [len(c) for c in chunks] == [IN_LIST_SIZE, IN_LIST_SIZE, 7]
    assert [x for c in chunks for x in c] == items
    assert list(batches([], 3)) == []
    assert list(batches("abcde", 2)) == ["ab", "cd", "e"]


def test_quote_identifier_doubles_quotes() -> None:
    assert quote_identifier('we"ird') == '"we""ird"'


@given(rows=st.integers(0, 2_000), columns=st.integers(1, 40))
def test_statement_sizes_cover_the_rows_within_the_limits(rows: int, columns: int) -> None:
    sizes = list(statement_sizes(rows, columns))
    assert sum(sizes) == rows
    assert all(size <= MAX_ROWS and size * columns <= MAX_PARAMETERS for size in sizes)
    # Powers of two, largest first: few statement texts serve every batch.
    assert all(size & (size - 1) == 0 for size in sizes)
    assert sizes == sorted(sizes, reverse=True)


def test_execute_rows_writes_every_row_in_order_in_few_statements() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (n INTEGER, s TEXT, k INTEGER)")
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    rows = [(n, f"s{n}") for n in range(1_000)]
    execute_rows(conn, lambda n: f"INSERT INTO t VALUES {repeated_rows('(?, ?, 7)', n)}", rows)
    conn.set_trace_callback(None)
    assert conn.execute("SELECT n, s FROM t ORDER BY rowid").fetchall() == rows
    assert conn.execute("SELECT DISTINCT k FROM t").fetchall() == [(7,)]
    inserts = [sql for sql in ran if sql.startswith("INSERT")]
    assert len(inserts) == len(list(statement_sizes(1_000, 2))) < 10
    execute_rows(conn, lambda n: "not run", [])
    assert repeated_rows("(?)", 3) == "(?), (?), (?)"


@given(st.text())
def test_quote_text_reads_back_as_the_same_text(value: str) -> None:
    text = value.replace("\x00", "")  # SQLite's SQL text ends at a NUL
    assert sqlite3.connect(":memory:").execute(f"SELECT {quote_text(text)}").fetchone() == (text,)
    assert quote_text("it's") == "'it''s'"
