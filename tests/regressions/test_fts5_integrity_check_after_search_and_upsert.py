"""``PRAGMA integrity_check`` reported FTS5 checksum mismatches on a sound database.

On a fresh database, a search (or an integrity check) then one ``kg.upsert_entity``
made the next check report ``fts5: checksum mismatch`` for ``kg_search_index``,
``kg_trigram_index`` and ``ai_memory_fts``; reopened, it reported ok. Nothing was
wrong with the file: each connection caches an FTS5 index's structure record, and the
FTS5 ``xIntegrity`` method, unlike every query of the table, does not first compare
``PRAGMA data_version`` to see whether another connection changed the index. The
search had cached the structure on a pooled reader, the writer added rows, and the
check lent that reader compared the old structure with the new rows.
:func:`mangostore.engine.fulltext.refresh_fulltext`, run on the checking connection just
before the check, makes the check agree with the file; a damaged index is still
reported.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlcipher3
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.engine.fulltext import fulltext_tables, refresh_fulltext, runs_integrity_check

INDEXES = ["ai_memory_fts", "kg_search_index", "kg_trigram_index"]


def _check(db: mangostore.Database, pragma: str = "integrity_check") -> list[str]:
    """Check as the database's own checks must: refresh, then check, on one connection."""
    with db.store.reading() as conn:
        refresh_fulltext(conn)
        found = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}").fetchall()]
    return [] if found == ["ok"] else found


def _read_then_write(db: mangostore.Database) -> str:
    """What the issue did: read every index on a reader, then write each on the writer."""
    user = db.users.create(username="ann").id
    db.kg.set_embedder(None)
    assert db.kg.search(user, "alpha") == []
    assert db.memory.recall(user, query="shell") == []
    assert _check(db) == []
    db.kg.upsert_entity(user, "concept", "Alpha", description="the first letter")
    db.memory.remember(user, "preferred_shell", "zsh")
    return user


def test_the_check_is_ok_after_a_search_and_an_upsert(encrypted_db: mangostore.Database) -> None:
    _read_then_write(encrypted_db)

    assert _check(encrypted_db) == []
    assert _check(encrypted_db, "quick_check") == []
    with encrypted_db.transaction():
        assert _check(encrypted_db) == []  # on the writer


def test_the_check_is_ok_when_another_connection_wrote(
    db_path: Path, fast_settings: Settings
) -> None:
    with (
        mangostore.create(db_path, PASSPHRASE, settings=fast_settings).db as first,
        mangostore.open(db_path, PASSPHRASE, create=False, settings=fast_settings) as second,
    ):
        user = _read_then_write(first)
        with first.transaction():
            assert _check(first) == []  # the writer has now read every index too
        second.kg.set_embedder(None)
        second.kg.upsert_entity(user, "concept", "Beta")
        second.memory.remember(user, "editor", "vim")

        assert _check(first) == []
        with first.transaction():
            assert _check(first) == []


def test_db_query_integrity_check_is_ok_after_a_search_and_an_upsert(
    encrypted_db: mangostore.Database,
) -> None:
    _read_then_write(encrypted_db)

    assert [tuple(row) for row in encrypted_db.query("PRAGMA integrity_check")] == [("ok",)]
    assert encrypted_db.check_integrity() == []
    assert encrypted_db.check_integrity(quick=False) == []


# Each index's rows live in its ``_content`` shadow table (c0, c1: its two columns).
# Writing that table directly goes around the index, as a tool editing the file would.
DAMAGE = {
    "kg_search_index": "UPDATE kg_search_index_content SET c1 = 'tampered words'",
    "kg_trigram_index": "UPDATE kg_trigram_index_content SET c1 = 'tampered name'",
    "ai_memory_fts": "UPDATE ai_memory_fts_content SET c1 = 'tampered value'",
}


@pytest.mark.parametrize("index", INDEXES)
def test_a_damaged_index_is_still_reported(
    encrypted_db: mangostore.Database, db_path: Path, fast_settings: Settings, index: str
) -> None:
    _read_then_write(encrypted_db)
    assert _check(encrypted_db) == []  # the reader has just cached every structure

    encrypted_db.execute(DAMAGE[index])

    findings = _check(encrypted_db)
    assert findings == [f"malformed inverted index for FTS5 table main.{index}"]
    assert _check(encrypted_db, "quick_check") == findings
    encrypted_db.close()
    with mangostore.open(db_path, PASSPHRASE, create=False, settings=fast_settings) as reopened:
        assert [tuple(row) for row in reopened.query("PRAGMA integrity_check")] == [
            (finding,) for finding in findings
        ]


def test_a_refreshed_reader_agrees_with_the_writer(tmp_path: Path) -> None:
    """The cause, with two plain connections and no mangostore in between."""
    path = str(tmp_path / "plain.db")
    writer = sqlcipher3.connect(path, isolation_level=None)
    reader = sqlcipher3.connect(path, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("CREATE VIRTUAL TABLE notes USING fts5(body)")
        writer.execute("CREATE VIRTUAL TABLE notes_vocab USING fts5vocab(notes, 'row')")
        writer.execute("INSERT INTO notes VALUES ('hello world')")
        assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        writer.execute("INSERT INTO notes VALUES ('another row')")

        assert fulltext_tables(reader) == ["notes"]
        refresh_fulltext(reader)

        assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize(
    ("sql", "checks"),
    [
        ("PRAGMA integrity_check", True),
        ("pragma main.QUICK_CHECK(10)", True),
        ("SELECT * FROM pragma_integrity_check('kg_search_index')", True),
        ("PRAGMA table_info(kg_entities)", False),
        ("SELECT count(*) FROM kg_entities", False),
    ],
)
def test_statements_that_run_a_check_are_recognised(sql: str, checks: bool) -> None:
    assert runs_integrity_check(sql) is checks
