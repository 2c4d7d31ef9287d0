"""Incremental backups from the change log: every way a row can change reaches the next
backup, and whatever the log cannot vouch for makes the next backup a full one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.backup.conftest import SETTINGS, fill, logical, restored
from tests.backup.test_processes import start_writer, worker_env
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import BackupPolicy, changelog
from mangostore.backup.snapshot import read_plan
from mangostore.errors import BackupCorruptError, BackupError, ValidationError
from mangostore.sql import quote_identifier


@pytest.fixture
def plain(tmp_path: Path) -> mangostore.Database:
    db = mangostore.create(tmp_path / "p.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)")
    db.execute("CREATE TABLE w (a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID")
    with db.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO t (id, k, v) VALUES (?, ?, ?)", [(n, f"k{n}", "x") for n in range(200)]
        )
        conn.executemany(
            "INSERT INTO w (a, b, v) VALUES (?, ?, ?)",
            [(f"a'{n % 7}", n, "y") for n in range(100)],
        )
    return db


def test_only_what_changed_is_read_and_written(plain: mangostore.Database, tmp_path: Path) -> None:
    folder = tmp_path / "bk"
    full = plain.backup.create(folder)
    assert full.log_id is not None
    plain.execute("UPDATE t SET v = 'new' WHERE id = 3")
    plain.execute("DELETE FROM t WHERE id = 40")
    plain.execute("INSERT INTO t (id, k, v) VALUES (1000, 'late', 'z')")
    plain.execute("UPDATE w SET v = 'changed' WHERE a = 'a''3' AND b = 3")
    plain.execute("DELETE FROM w WHERE b = 4")
    inc = plain.backup.create(folder)
    assert inc.kind == "incremental"
    assert inc.parent == full.id
    # Blocks of 4 rowids: id 3 (block 0, ids 0-3), id 40 (block 10, three rows left),
    # id 1000 (block 250, alone); one key of w was changed (the deleted one is only
    # removed).
    assert inc.changed_rows == 4 + 3 + 1 + 1
    assert inc.deleted_rows == 2
    assert inc.tables["t"] == 200
    assert inc.tables["w"] == 99
    assert plain.backup.verify(folder).ok
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    assert plain.backup.create(folder).changed_rows == 0
    plain.close()


def test_rows_replaced_on_a_unique_key_are_removed_too(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    # OR REPLACE deletes the row in the way without its delete trigger: the log's
    # BEFORE triggers record it, or the restore would hold both rows (or fail).
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    plain.execute("INSERT OR REPLACE INTO t (id, k, v) VALUES (500, 'k5', 'moved')")
    plain.execute("UPDATE OR REPLACE t SET k = 'k150' WHERE id = 7")
    plain.execute("INSERT OR REPLACE INTO w (a, b, v) VALUES ('a''1', 1, 'again')")
    inc = plain.backup.create(folder)
    assert inc.kind == "incremental"
    # Rows 5 and 150 were replaced away: the log counts the table again.
    assert inc.tables["t"] == 199
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_second_process_writing_during_incrementals_is_captured(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    fill(vault, users=1, commands=500)
    vault.backup.create(folder, kind="full")
    stop = tmp_path / "stop"
    worker = start_writer(str(vault.store.path), stop)
    made = []
    try:
        for _ in range(3):
            made.append(vault.backup.create(folder, kind="incremental"))
    finally:
        stop.touch()
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    assert json.loads(out)["commits"] >= 5
    made.append(vault.backup.create(folder, kind="incremental"))
    # Each backup's counts (parent's plus the log's) match its own restore exactly.
    for manifest in made:
        report = vault.backup.verify(folder, manifest.id)
        assert report.ok, report.problems
    assert restored(vault, folder, tmp_path / "r.db") == logical(vault)


def test_raw_sql_from_another_process_is_captured(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    script = textwrap.dedent(
        f"""
        import mangostore
        with mangostore.open({str(plain.store.path)!r}, passphrase={PASSPHRASE!r}) as db:
            db.execute("UPDATE t SET v = 'other process' WHERE id % 9 = 0")
            db.execute("DELETE FROM w WHERE b > 90")
            db.execute("INSERT INTO t (k, v) VALUES ('from b', 'b')")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env=worker_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    inc = plain.backup.create(folder)
    assert inc.kind == "incremental"
    assert inc.changed_rows > 0
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_restored_database_starts_a_log_of_its_own(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    made = plain.backup.create(folder)
    plain.backup.restore(tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    with mangostore.open(tmp_path / "r.db", passphrase=PASSPHRASE, settings=SETTINGS) as copy:
        # Neither the log's rows nor its triggers came with the backup.
        assert copy.query("SELECT count(*) FROM backup_log_state")[0][0] == 0
        triggers = copy.query(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' "
            "AND name LIKE 'backup\\_log\\_%' ESCAPE '\\'"
        )
        assert triggers[0][0] == 0
        copy.execute("UPDATE t SET v = 'in the copy' WHERE id = 1")
        with pytest.raises(BackupError, match="make a full one"):
            copy.backup.create(folder, kind="incremental")
        again = copy.backup.create(folder)
        assert again.kind == "full"
        assert again.log_id != made.log_id
    plain.close()


def test_a_table_the_log_did_not_cover_makes_a_full_backup(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    made = plain.backup.create(folder)
    # As a table rebuild would: its triggers are gone, and writes meanwhile unlogged.
    plain.execute('DROP TRIGGER "backup_log_u_t"')
    plain.execute('DROP TRIGGER "backup_log_i_t"')
    plain.execute("UPDATE t SET v = 'unlogged' WHERE id = 9")
    again = plain.backup.create(folder)
    assert again.kind == "full"
    assert again.log_id != made.log_id
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_rowids_moved_by_vacuum_make_a_full_backup(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    # A VACUUM that renumbers rowids moves the probe row with them.
    plain.execute("UPDATE backup_log_probe SET rowid = 1")
    assert plain.backup.create(folder).kind == "full"
    plain.vacuum()
    plain.execute("UPDATE t SET v = 'after vacuum' WHERE id = 2")
    plain.backup.create(folder)
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_two_destinations_each_get_every_change(plain: mangostore.Database, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    plain.backup.create(one)
    plain.execute("UPDATE t SET v = 'a' WHERE id = 1")
    plain.backup.create(two)
    plain.execute("UPDATE t SET v = 'b' WHERE id = 100")
    assert plain.backup.create(one).kind == "incremental"
    plain.execute("DELETE FROM t WHERE id = 150")
    assert plain.backup.create(two).kind == "incremental"
    plain.execute("INSERT INTO w (a, b, v) VALUES ('late', 1, 'z')")
    assert plain.backup.create(one).kind == "incremental"
    assert plain.backup.create(two).kind == "incremental"
    expected = logical(plain)
    assert restored(plain, one, tmp_path / "r1.db") == expected
    assert restored(plain, two, tmp_path / "r2.db") == expected
    plain.close()


def test_a_parent_older_than_the_kept_log_is_not_built_on(
    plain: mangostore.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changelog, "KEEP_EPOCHS", 2)
    old, busy = tmp_path / "old", tmp_path / "busy"
    plain.backup.create(old)
    for n in range(4):
        plain.execute("UPDATE t SET v = ? WHERE id = 1", [str(n)])
        plain.backup.create(busy)
    assert plain.query("SELECT min(epoch) FROM backup_log")[0][0] > 2
    with pytest.raises(BackupError, match="change log does not reach back"):
        plain.backup.create(old, kind="incremental")
    assert plain.backup.create(old).kind == "full"
    assert restored(plain, busy, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_unique_expression_index_is_compared_instead(tmp_path: Path) -> None:
    db = mangostore.create(tmp_path / "x.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("CREATE TABLE x (name TEXT)")
    db.execute("CREATE UNIQUE INDEX x_lower ON x (lower(name))")
    db.execute("INSERT INTO x (name) VALUES ('Alpha'), ('Beta')")
    folder = tmp_path / "bk"
    db.backup.create(folder)
    names = {str(r[0]) for r in db.query("SELECT name FROM sqlite_schema WHERE type = 'trigger'")}
    assert "backup_log_i_t" in names
    assert "backup_log_i_x" not in names
    db.execute("INSERT OR REPLACE INTO x (name) VALUES ('ALPHA')")
    inc = db.backup.create(folder)
    assert inc.kind == "incremental"
    assert inc.tables["x"] == 2
    assert restored(db, folder, tmp_path / "r.db") == logical(db)
    db.close()


def test_two_databases_of_a_vault_sharing_a_destination_keep_their_own_chains(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    plain.backup.restore(tmp_path / "b.db", passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    with mangostore.open(tmp_path / "b.db", passphrase=PASSPHRASE, settings=SETTINGS) as other:
        assert other.backup.create(folder).kind == "full"
        for n in range(2):
            plain.execute("UPDATE t SET v = ? WHERE id = 1", [f"a{n}"])
            mine = plain.backup.create(folder)
            other.execute("UPDATE t SET v = ? WHERE id = 2", [f"b{n}"])
            theirs = other.backup.create(folder)
            assert mine.kind == "incremental"
            assert theirs.kind == "incremental"
            assert mine.base != theirs.base
        expected_other = logical(other)
    assert restored(plain, folder, tmp_path / "r.db", backup_id=mine.id) == logical(plain)
    assert restored(plain, folder, tmp_path / "r2.db") == expected_other
    plain.close()


def test_migrating_below_the_log_drops_its_triggers(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    assert plain.query("SELECT count(*) FROM sqlite_schema WHERE name = 'backup_log_i_t'")[0][0]
    plain.migrate(to=20)
    # The log's triggers went with its tables: writes go on.
    plain.execute("INSERT INTO t (k, v) VALUES ('after', 'down')")
    plain.execute("UPDATE w SET v = 'down' WHERE b = 1")
    names = [r[0] for r in plain.query("SELECT name FROM sqlite_schema WHERE type = 'trigger'")]
    assert not [n for n in names if n.startswith("backup_log_")]
    plain.migrate()
    assert plain.backup.create(folder).kind == "full"
    plain.execute("DELETE FROM t WHERE k = 'after'")
    assert plain.backup.create(folder).kind == "incremental"
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_unique_index_added_later_is_watched_for_collisions(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    plain.execute("UPDATE t SET v = 'v' || id WHERE id >= 150")
    plain.execute("CREATE UNIQUE INDEX t_v_nocase ON t (v COLLATE NOCASE) WHERE id >= 150")
    assert plain.backup.create(folder).kind == "full"  # a new schema, a new log
    # Both collide on the new index (the second only under its collation).
    plain.execute("INSERT OR REPLACE INTO t (id, k, v) VALUES (900, 'n1', 'v160')")
    plain.execute("INSERT OR REPLACE INTO t (id, k, v) VALUES (901, 'n2', 'V170')")
    inc = plain.backup.create(folder)
    assert inc.kind == "incremental"
    assert inc.tables["t"] == 200
    assert plain.backup.verify(folder).ok
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_renamed_table_and_its_successor_are_both_logged(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    plain.execute("ALTER TABLE w RENAME TO w_old")
    plain.execute("CREATE TABLE w (a TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    assert plain.backup.create(folder).kind == "full"
    plain.execute("INSERT INTO w (a, v) VALUES ('x', '1'), ('y', '2')")
    plain.execute("DELETE FROM w_old WHERE b < 10")
    inc = plain.backup.create(folder)
    assert inc.kind == "incremental"
    assert inc.tables["w"] == 2
    assert inc.tables["w_old"] == 90
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_rowid_moved_onto_another_row_keeps_the_counts_right(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    plain.execute("UPDATE OR REPLACE t SET id = 5 WHERE id = 6")
    inc = plain.backup.create(folder)
    assert inc.tables["t"] == 199
    assert plain.backup.verify(folder).ok
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_log_entry_that_is_not_a_key_is_refused_and_the_log_starts_again(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    epoch = plain.query("SELECT epoch FROM backup_log_state")[0][0]
    plain.execute(
        "INSERT INTO backup_log (tbl, key, epoch) VALUES ('w', 'NULL,NULL)) OR ((1=1', ?)",
        [epoch],
    )
    with pytest.raises(BackupCorruptError, match="not a row key"):
        plain.backup.create(folder, kind="incremental")
    assert plain.query("SELECT count(*) FROM w")[0][0] == 100
    assert plain.backup.create(folder).kind == "full"
    plain.execute("DELETE FROM w WHERE b = 1")
    assert plain.backup.create(folder).kind == "incremental"
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("w", "'a''1'"),  # one literal for a key of two columns
        ("w", "'a''1',1,2"),  # three
        ("t", 1 << 62),  # a block beyond every rowid
        ("t", "'3'"),  # text for a block of rowids
        ("nowhere", 1),  # no such table
    ],
)
def test_a_log_entry_of_the_wrong_shape_is_refused_and_the_log_starts_again(
    plain: mangostore.Database, tmp_path: Path, table: str, key: object
) -> None:
    folder = tmp_path / "bk"
    plain.backup.create(folder)
    epoch = plain.query("SELECT epoch FROM backup_log_state")[0][0]
    plain.execute("INSERT INTO backup_log (tbl, key, epoch) VALUES (?, ?, ?)", [table, key, epoch])
    with pytest.raises(BackupCorruptError, match="not a row key"):
        plain.backup.create(folder, kind="incremental")
    # The automatic backup starts a new log and makes a full one; then incrementals.
    assert plain.backup.create(folder).kind == "full"
    plain.execute("UPDATE t SET v = 'again' WHERE id = 5")
    assert plain.backup.create(folder).kind == "incremental"
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


def test_a_log_state_altered_outside_the_log_starts_a_new_log(
    plain: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "bk"
    made = plain.backup.create(folder)
    plain.execute("UPDATE backup_log_state SET epoch = 'two'")
    again = plain.backup.create(folder)
    assert again.kind == "full"
    assert again.log_id != made.log_id
    plain.execute("UPDATE t SET v = 'after' WHERE id = 7")
    assert plain.backup.create(folder).kind == "incremental"
    assert restored(plain, folder, tmp_path / "r.db") == logical(plain)
    plain.close()


@pytest.mark.parametrize(
    "fields",
    [{"fanout": 1}, {"fanout": 0}, {"keep_all_days": 0}, {"thin_every_s": -1}],
)
def test_a_policy_out_of_range_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="must be"):
        BackupPolicy(**fields)  # type: ignore[arg-type]


def test_no_collision_check_scans_a_table(tmp_path: Path) -> None:
    # Every insert runs its table's collision check: a plan that scans the table would
    # make writes slow as the table grows (an explicit COLLATE BINARY did, once).
    db = mangostore.create(tmp_path / "q.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    with db.store.snapshot() as conn:
        plan = read_plan(conn)
        scans = []
        for name in sorted(changelog.logged_tables(conn, plan)):
            table = plan.table(name)
            match = changelog.collision_match(conn, table)
            quoted = quote_identifier(name)
            rowid = "rowid AS rowid, " if table.by_rowid else ""
            sql = (
                f"SELECT 1 FROM (SELECT {rowid}* FROM {quoted} LIMIT 1) AS NEW, {quoted} AS t "
                f"WHERE {match}"
            )
            steps = [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            scans += [f"{name}: {s}" for s in steps if s == "SCAN t" or s.startswith("SCAN t ")]
    assert scans == []
    db.close()
