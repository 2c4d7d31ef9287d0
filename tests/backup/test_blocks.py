"""Tables with a rowid are compared in blocks of rowids: every kind of change between
two backups comes back exactly, wherever its rows fall."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlcipher3
from tests.backup.conftest import SETTINGS, logical, restored
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import changelog, tables
from mangostore.backup.snapshot import is_utf8, read_plan, scan_blocks

EDGES = [-(1 << 63), -100, -17, -16, -1, 0, 1, 15, 16, 17, 1 << 40, (1 << 63) - 1]


@pytest.fixture
def edgy(tmp_path: Path) -> mangostore.Database:
    """A database with a table whose rowids sit at the edges of blocks and of int64."""
    db = mangostore.create(tmp_path / "e.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    db.execute("CREATE TABLE t (k TEXT UNIQUE, v BLOB, r REAL)")
    for n, rowid in enumerate(EDGES):
        db.execute(
            "INSERT INTO t (rowid, k, v, r) VALUES (?, ?, ?, ?)",
            [rowid, f"key{n}", bytes([n, 0, 255]), n / 3],
        )
    db.execute("CREATE TABLE u (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT)")
    with db.store.transaction() as conn:
        conn.executemany("INSERT INTO u (note) VALUES (?)", [(f"n{n}",) for n in range(100)])
    return db


def test_changes_at_block_edges_restore_exactly(edgy: mangostore.Database, tmp_path: Path) -> None:
    folder = tmp_path / "bk"
    edgy.backup.create(folder)
    with edgy.transaction():
        # Unique values swap between rows of different blocks (all removals of a
        # table run before its inserts, so they never meet).
        edgy.execute("UPDATE t SET k = 'swap' WHERE rowid = -100")
        edgy.execute("UPDATE t SET k = 'key1' WHERE rowid = 1 << 40")
        edgy.execute("UPDATE t SET k = 'key10' WHERE rowid = -100")
        edgy.execute("DELETE FROM t WHERE rowid IN (?, ?, ?)", [-(1 << 63), 16, 17])
        edgy.execute("INSERT INTO t (rowid, k) VALUES (?, 'new'), (18, 'x')", [-(1 << 62)])
        edgy.execute("UPDATE t SET r = NULL WHERE rowid = ?", [(1 << 63) - 1])
        edgy.execute("DELETE FROM u WHERE id % 7 = 0")
        edgy.execute("INSERT INTO u (note) VALUES ('later')")
    inc = edgy.backup.create(folder)
    assert inc.kind == "incremental"
    # Counted per block, as rows a block lost: 17 rows went, 2 came into their blocks.
    assert 0 < inc.deleted_rows <= 17
    assert inc.changed_rows < sum(inc.tables.values())
    assert restored(edgy, folder, tmp_path / "r.db") == logical(edgy)
    edgy.close()


def test_an_unchanged_database_makes_an_empty_incremental(
    edgy: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    edgy.backup.create(folder)
    inc = edgy.backup.create(folder)
    assert (inc.changed_rows, inc.deleted_rows) == (0, 0)
    assert restored(edgy, folder, tmp_path / "r.db") == logical(edgy)
    edgy.close()


def test_changed_blocks_beyond_memory_are_read_again(
    edgy: mangostore.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bk"
    edgy.backup.create(folder)
    edgy.execute("UPDATE u SET note = note || '!' WHERE id % 3 = 0")
    edgy.execute("UPDATE t SET v = zeroblob(5000)")
    monkeypatch.setattr(tables, "HOLD_BYTES", 0)
    edgy.backup.create(folder)
    assert restored(edgy, folder, tmp_path / "r.db") == logical(edgy)
    edgy.close()


def test_a_parent_indexed_with_other_blocks_is_replaced_whole(
    edgy: mangostore.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full-text index's shadow tables are written by SQLite itself, so they are
    # compared with the parent's index: one indexed with other blocks is sent whole.
    edgy.execute("CREATE VIRTUAL TABLE f USING fts5(x)")
    edgy.execute("INSERT INTO f (x) SELECT note FROM u")
    folder = tmp_path / "bk"
    edgy.backup.create(folder)
    edgy.execute("INSERT INTO f (x) VALUES ('one more')")
    monkeypatch.setattr(tables, "BLOCK_SHIFT", 6)
    inc = edgy.backup.create(folder)
    assert inc.kind == "incremental"
    whole = inc.tables["f_content"]
    assert whole == 101
    assert inc.changed_rows >= whole
    edgy.execute("INSERT INTO f (x) VALUES ('and another')")
    assert edgy.backup.create(folder).changed_rows < whole
    assert restored(edgy, folder, tmp_path / "r.db") == logical(edgy)
    edgy.close()


def test_a_log_kept_with_other_blocks_starts_again(
    edgy: mangostore.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bk"
    first = edgy.backup.create(folder)
    edgy.execute("UPDATE u SET note = 'changed' WHERE id = 50")
    monkeypatch.setattr(changelog, "LOG_SHIFT", 6)
    again = edgy.backup.create(folder)
    assert again.kind == "full"
    assert again.log_id != first.log_id
    edgy.execute("UPDATE u SET note = 'again' WHERE id = 51")
    inc = edgy.backup.create(folder)
    assert inc.kind == "incremental"
    assert inc.changed_rows == 63  # the block of 64 rowids holding id 51: ids 1 to 63
    assert restored(edgy, folder, tmp_path / "r.db") == logical(edgy)
    edgy.close()


def test_blocks_read_the_same_bytes_from_a_utf16_database() -> None:
    found = []
    for encoding in ("UTF-8", "UTF-16le"):
        conn = sqlcipher3.connect(":memory:", isolation_level=None)
        conn.execute(f"PRAGMA encoding = '{encoding}'")
        conn.execute("CREATE TABLE t (a TEXT, b BLOB)")
        conn.execute("INSERT INTO t VALUES ('é''\n', x'00ff'), (NULL, 'ü'), ('z', 1.5)")
        assert is_utf8(conn) == (encoding == "UTF-8")
        plan = read_plan(conn).table("t")
        found.append(
            [b.parts for batch in scan_blocks(conn, plan, utf8=is_utf8(conn)) for b in batch]
        )
        conn.close()
    assert found[0] == found[1]
    assert found[0][0][0] == "(1,'é''\n',X'00FF')".encode()


def test_an_integer_primary_key_desc_keeps_its_own_rowids(tmp_path: Path) -> None:
    # "INTEGER PRIMARY KEY DESC" does not alias the rowid (an SQLite quirk): the rowids
    # must be copied too, or the blocks of an incremental would name other rows.
    db = mangostore.create(tmp_path / "d.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    db.execute("CREATE TABLE d (id INTEGER PRIMARY KEY DESC, v TEXT)")
    for n in range(40):
        db.execute("INSERT INTO d (rowid, id, v) VALUES (?, ?, ?)", [n * 7 + 3, 1000 - n, str(n)])
    folder = tmp_path / "bk"
    db.backup.create(folder)
    db.execute("DELETE FROM d WHERE id % 3 = 0")
    db.execute("UPDATE d SET v = 'x' WHERE id % 5 = 0")
    assert db.backup.create(folder).kind == "incremental"
    rowids = db.query("SELECT rowid, id, v FROM d ORDER BY rowid")
    db.backup.restore(tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    with mangostore.open(tmp_path / "r.db", passphrase=PASSPHRASE, settings=SETTINGS) as back:
        got = back.query("SELECT rowid, id, v FROM d ORDER BY rowid")
        assert [tuple(r) for r in got] == [tuple(r) for r in rowids]
    db.close()
