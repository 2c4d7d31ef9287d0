"""A full backup reads a rowid table in groups of rows that SQLite joins: every row
comes back, wherever its rowid lies and whatever its size, in records that stay within
the documented bound."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.backup.conftest import logical, restored

import mangostore
from mangostore.backup import snapshot
from mangostore.backup.snapshot import FETCH_ROWS, read_groups, read_plan


@pytest.fixture
def odd(vault: mangostore.Database) -> mangostore.Database:
    # Columns named as the statement's own aliases, rowids at both ends of their range
    # and far apart, and values of every type, one of them far larger than the rest.
    vault.execute('CREATE TABLE odd (r TEXT, l BLOB, n REAL, "we""ird" INTEGER)')
    rows = [
        (-(1 << 63), "lowest", b"\x00\x01", -0.0, None),
        (-5, None, None, 1e308, 7),
        (0, "", b"", 0.1, -(1 << 63)),
        (1 << 40, "it's", b"'", float("inf"), (1 << 63) - 1),
        ((1 << 63) - 1, "highest", b"x" * 2_000_000, 2.5, 1),
    ]
    with vault.store.transaction() as conn:
        conn.executemany('INSERT INTO odd (rowid, r, l, n, "we""ird") VALUES (?, ?, ?, ?, ?)', rows)
        conn.executemany(
            "INSERT INTO odd (rowid, r, n) VALUES (?, ?, ?)",
            [(1000 + 3 * k, f"row {k}", k / 3) for k in range(3 * FETCH_ROWS)],
        )
    return vault


def test_every_row_of_every_rowid_comes_back(
    odd: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    made = odd.backup.create(folder, kind="full")
    assert made.tables["odd"] == 5 + 3 * FETCH_ROWS
    assert restored(odd, folder, tmp_path / "r.db") == logical(odd)
    odd.close()


def test_groups_hold_at_most_the_fetch_bound_and_shrink_for_large_rows(
    odd: mangostore.Database,
) -> None:
    with odd.store.reading() as conn:
        table = read_plan(conn).table("odd")
        groups = list(read_groups(conn, table, utf8=snapshot.is_utf8(conn), target_bytes=64 * 1024))
    assert sum(count for _, count in groups) == 5 + 3 * FETCH_ROWS
    assert all(0 < count <= FETCH_ROWS for _, count in groups)
    # The 2 MB row comes last: the groups before it aim at 64 KiB.
    assert all(len(text) < 256 * 1024 for text, _ in groups[:-1])
    joined = b",".join(text for text, _ in groups)
    assert joined.count(b"'row ") == 3 * FETCH_ROWS
    odd.close()
