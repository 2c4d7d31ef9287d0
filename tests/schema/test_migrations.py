"""The migration runner: ledger, one transaction per run, backups, down, checksums."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
import mangostore.opening
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.engine.connection import connect
from mangostore.engine.pragmas import writer_setup
from mangostore.engine.writer import Writer
from mangostore.errors import (
    MigrationChecksumError,
    MigrationError,
    SchemaTooNewError,
)
from mangostore.keys.keyring import keyring_path
from mangostore.schema import runner as runner_module
from mangostore.schema.copies import backup_copy
from mangostore.schema.runner import (
    Migration,
    MigrationRunner,
    load_migrations,
    split_statements,
)

VERSIONS = [m.version for m in load_migrations()]
LATEST = VERSIONS[-1]


def migration(version: int, name: str, up: str, down: str = "") -> Migration:
    """Build a migration as if read from ``NNNN_name.sql``."""
    text = f"-- {name}\n-- migrate:up\n{up}\n-- migrate:down\n{down}\n"
    return Migration.parse(f"{version:04d}_{name}.sql", text)


CREATE_NOTES = migration(
    1,
    "notes",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n"
    "INSERT INTO notes (body) VALUES ('first'), ('second');",
    "DROP TABLE notes;",
)
#: Creates a table, writes to it and to an existing one, then fails half-way.
EXPLODE = (
    "CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT);\n"
    "INSERT INTO tags (label) VALUES ('a');\n"
    "UPDATE notes SET body = 'changed';\n"
    "INSERT INTO no_such_table VALUES (1);\n"
    "CREATE TABLE never (x);"
)


def dump(writer: Writer) -> list[tuple[Any, ...]]:
    """Schema and data of the writer's database: every object's SQL, every table's rows."""
    with writer.transaction() as conn:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        result = [tuple(row) for row in objects]
        for kind, name, *_ in objects:
            if kind == "table":
                rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
                result.append((name, sorted((tuple(r) for r in rows), key=repr)))
    return result


def schema_sql(db: mangostore.Database) -> list[tuple[Any, ...]]:
    """Every object of the schema with its SQL, the ledger's rows aside."""
    rows = db.query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    return [tuple(r) for r in rows]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Writer]:
    """A writer on an empty, unencrypted scratch database."""
    writer = Writer(
        connect(str(tmp_path / "scratch.db"), None, writer_setup(5000)), busy_timeout_ms=5000
    )
    yield writer
    writer.close()


# -- the ledger ------------------------------------------------------------------------


def test_ledger_records_every_migration(encrypted_db: mangostore.Database) -> None:
    columns = [r["name"] for r in encrypted_db.query("PRAGMA table_info(schema_migrations)")]
    assert columns == ["version", "name", "checksum", "applied_at", "duration_ms"]
    now_ms = int(time.time() * 1000)
    applied = encrypted_db._runner.applied()
    files = load_migrations()
    assert [(a.version, a.name, a.checksum) for a in applied] == [
        (m.version, m.name, m.checksum) for m in files
    ]
    for record in applied:
        assert now_ms - 3_600_000 < record.applied_at <= now_ms
        assert isinstance(record.duration_ms, int)
        assert record.duration_ms >= 0
    assert encrypted_db.schema_version == LATEST


def test_the_ledger_is_stamped_by_the_database_clock() -> None:
    clock = ManualClock(1_700_000_000_000)
    db = mangostore.open(":memory:", encrypted=False, clock=clock)
    try:
        assert {a.applied_at for a in db._runner.applied()} == {1_700_000_000_000}
    finally:
        db.close()


def test_checksum_is_the_sha256_of_the_file() -> None:
    folder = Path(runner_module.__file__).parent / "migrations"
    for m in load_migrations():
        text = (folder / f"{m.version:04d}_{m.name}.sql").read_text(encoding="utf-8")
        assert m.checksum == hashlib.sha256(text.encode()).hexdigest()


def test_crlf_checkout_keeps_the_checksum() -> None:
    text = "-- migrate:up\nCREATE TABLE t (x);\n-- migrate:down\nDROP TABLE t;\n"
    lf = Migration.parse("0001_t.sql", text)
    crlf = Migration.parse("0001_t.sql", text.replace("\n", "\r\n"))
    assert crlf.checksum == lf.checksum
    assert split_statements(crlf.up) == split_statements(lf.up)


def test_a_down_section_names_run_time_triggers_to_drop() -> None:
    text = (
        "-- migrate:up\nCREATE TABLE t (x);\n-- migrate:down\n"
        "-- migrate:drop-triggers log_\n-- migrate:drop-triggers audit_x\nDROP TABLE t;\n"
    )
    migration = Migration.parse("0001_t.sql", text)
    assert migration.trigger_prefixes == ("log_", "audit_x")
    assert len(split_statements(migration.down)) == 1  # the lines are comments to SQLite
    plain = Migration.parse("0001_t.sql", "-- migrate:up\n-- migrate:down\n")
    assert plain.trigger_prefixes == ()


def test_applies_in_order_and_records(scratch: Writer) -> None:
    runner = MigrationRunner(
        scratch,
        [migration(2, "more", "ALTER TABLE notes ADD COLUMN tag TEXT;"), CREATE_NOTES],
    )
    assert runner.migrate() == [1, 2]
    assert [a.version for a in runner.applied()] == [1, 2]
    assert runner.migrate() == []
    assert runner.current_version() == 2


# -- one transaction, rolled back completely ------------------------------------------


def test_failed_run_applies_nothing(scratch: Writer) -> None:
    runner = MigrationRunner(scratch, [CREATE_NOTES, migration(2, "explode", EXPLODE)])
    before = dump(scratch)
    with pytest.raises(MigrationError, match=r"migration 2 \(explode\) up failed"):
        runner.migrate()
    # Migration 1 ran in the same transaction: it is gone too.
    assert dump(scratch) == before
    assert runner.current_version() == 0


def test_failure_half_way_leaves_schema_and_data_identical(scratch: Writer) -> None:
    MigrationRunner(scratch, [CREATE_NOTES]).migrate()
    before = dump(scratch)
    assert ("notes", [(1, "first"), (2, "second")]) in before
    runner = MigrationRunner(scratch, [CREATE_NOTES, migration(2, "explode", EXPLODE)])
    with pytest.raises(MigrationError) as info:
        runner.migrate()
    message = str(info.value)
    assert "migration 2 (explode)" in message
    assert "no_such_table" in message
    assert isinstance(info.value.__cause__, sqlcipher3.Error)
    assert dump(scratch) == before
    assert runner.current_version() == 1


def test_failure_on_the_real_schema_leaves_it_identical(
    encrypted_db: mangostore.Database,
) -> None:
    db = encrypted_db
    db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u1', 'ada', 1, 1)"
    )
    before = dump(db.store.writer)
    explode = migration(
        LATEST + 1,
        "explode",
        "CREATE TABLE extra (id INTEGER PRIMARY KEY);\n"
        "INSERT INTO extra VALUES (1);\n"
        "DELETE FROM users;\n"
        "INSERT INTO extra VALUES (1);",  # UNIQUE violation half-way
    )
    runner = MigrationRunner(db.store.writer, [*load_migrations(), explode])
    with pytest.raises(MigrationError, match=rf"migration {LATEST + 1} \(explode\)"):
        runner.migrate()
    assert dump(db.store.writer) == before
    assert db.query("SELECT username FROM users")[0][0] == "ada"


def test_failure_on_open_leaves_the_file_as_it_was(
    db_path: Path, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        db.execute(
            "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u1', 'ada', 1, 1)"
        )
        before = dump(db.store.writer)
    explode = migration(LATEST + 1, "explode", "DELETE FROM users;\nSELECT * FROM nowhere;")
    monkeypatch.setattr(
        mangostore.opening, "load_migrations", lambda: [*load_migrations(), explode]
    )
    with pytest.raises(MigrationError, match="explode"):
        mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings)
    monkeypatch.undo()
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db:
        assert dump(db.store.writer) == before


def test_transaction_control_in_a_migration_is_refused(scratch: Writer) -> None:
    sneaky = migration(2, "sneaky", "CREATE TABLE half (x);\nCOMMIT;\nCREATE TABLE rest (x);")
    runner = MigrationRunner(scratch, [CREATE_NOTES, sneaky])
    with pytest.raises(MigrationError, match=r"migration 2 \(sneaky\).*COMMIT"):
        runner.migrate()
    assert runner.current_version() == 0
    with scratch.transaction() as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_dangling_foreign_keys_are_refused(scratch: Writer) -> None:
    parent = migration(
        1,
        "parent",
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));\n"
        "INSERT INTO parent VALUES (1);\nINSERT INTO child VALUES (1, 1);",
    )
    MigrationRunner(scratch, [parent]).migrate()
    before = dump(scratch)
    orphaning = migration(2, "orphan", "DELETE FROM parent;")
    with pytest.raises(MigrationError, match="dangling foreign keys"):
        MigrationRunner(scratch, [parent, orphaning]).migrate()
    assert dump(scratch) == before


def test_unknown_target_is_refused(plain_db: mangostore.Database) -> None:
    for target in (-1, LATEST + 1):
        with pytest.raises(MigrationError, match="no migration"):
            plain_db.migrate(to=target)


# -- backup before migrating -----------------------------------------------------------


def test_backup_copy_before_migrating_an_existing_database(
    db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=fast_settings, migrate=False
    ).db as db:
        assert db.schema_version == 0
        assert db.migrate(to=2) == [1, 2]
        db.execute(
            "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u1', 'ada', 1, 1)"
        )
    assert list(db_path.parent.glob("*.bak")) == []  # a new database is not copied
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db:
        assert db.schema_version == LATEST
    [bak] = db_path.parent.glob("*.bak")
    assert bak.name.startswith(f"{db_path.name}.pre-v2-to-v{LATEST}-")
    assert bak.stat().st_mode & 0o777 == 0o600
    assert b"SQLite format 3" not in bak.read_bytes()[:16]  # encrypted
    shutil.copy(keyring_path(db_path), Path(f"{bak}.keyring"))
    with mangostore.open(bak, passphrase=PASSPHRASE, settings=fast_settings, migrate=False) as old:
        assert old.schema_version == 2
        assert old.query("SELECT username FROM users")[0][0] == "ada"
        assert old.query("PRAGMA integrity_check")[0][0] == "ok"


def test_backups_of_the_same_second_do_not_collide(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, migration_copies_kept=0)  # keep every copy
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        for _ in range(2):
            db.migrate(to=1)
            db.migrate()
    # Each downward and upward step was copied first; no copy overwrote another.
    assert len(list(db_path.parent.glob("*.bak"))) == 4


def test_backup_can_be_turned_off(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, backup_before_migrate=False)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        db.migrate(to=1)
        db.migrate()
    assert list(db_path.parent.glob("*.bak")) == []


def test_backup_copy_of_plain_database(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False).db as db:
        db.migrate(to=1)
    mangostore.open(db_path, encrypted=False).close()
    [bak] = db_path.parent.glob(f"*.pre-v1-to-v{LATEST}-*.bak")
    with mangostore.open(bak, encrypted=False, migrate=False) as old:
        assert old.schema_version == 1


def test_backup_inside_a_transaction_is_refused(encrypted_db: mangostore.Database) -> None:
    with encrypted_db.transaction(), pytest.raises(mangostore.errors.DatabaseError):
        encrypted_db.migrate(to=1)
    assert encrypted_db.schema_version == LATEST


# -- down ------------------------------------------------------------------------------


def test_down_to_zero_and_back_is_identical(plain_db: mangostore.Database) -> None:
    before = schema_sql(plain_db)
    assert plain_db.migrate(to=0) == VERSIONS[::-1]
    assert plain_db.schema_version == 0
    assert [r[1] for r in schema_sql(plain_db)] == ["schema_migrations"]
    assert plain_db.query("SELECT count(*) FROM schema_migrations")[0][0] == 0
    assert plain_db.migrate() == VERSIONS
    assert schema_sql(plain_db) == before
    assert plain_db.schema_version == LATEST


@pytest.mark.parametrize("target", [0, *VERSIONS[:-1]])
def test_down_to_each_version_and_back(plain_db: mangostore.Database, target: int) -> None:
    before = schema_sql(plain_db)
    plain_db.migrate(to=target)
    assert plain_db.schema_version == target
    assert [a.version for a in plain_db._runner.applied()] == [v for v in VERSIONS if v <= target]
    plain_db.migrate()
    assert schema_sql(plain_db) == before


def test_down_with_data_in_every_level(encrypted_db: mangostore.Database) -> None:
    encrypted_db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u1', 'ada', 1, 1)"
    )
    encrypted_db.execute(
        "INSERT INTO projects (id, user_id, name, path, created_at, updated_at) "
        "VALUES ('p1', 'u1', 'p', '/p', 1, 1)"
    )
    encrypted_db.migrate(to=0)
    encrypted_db.migrate()
    assert encrypted_db.query("SELECT count(*) FROM users")[0][0] == 0


# -- history checks --------------------------------------------------------------------


def test_edited_migration_is_refused_on_open(
    db_path: Path, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db.close()
    files = load_migrations()
    edited = Migration.parse(
        f"{files[0].version:04d}_{files[0].name}.sql",
        f"-- migrate:up\n{files[0].up}\n-- a harmless edit\n-- migrate:down\n{files[0].down}",
    )
    monkeypatch.setattr(mangostore.opening, "load_migrations", lambda: [edited, *files[1:]])
    for migrate in (True, False):
        with pytest.raises(MigrationChecksumError, match=f"migration {files[0].version}"):
            mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings, migrate=migrate)


def test_edited_migration_file_is_refused(scratch: Writer, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_notes.sql").write_text(
        "-- migrate:up\nCREATE TABLE notes (x);\n-- migrate:down\nDROP TABLE notes;\n"
    )
    (folder / "README.txt").write_text("not a migration")
    MigrationRunner(scratch, load_migrations(folder)).migrate()
    (folder / "0001_notes.sql").write_text(
        "-- migrate:up\nCREATE TABLE notes (x, y);\n-- migrate:down\nDROP TABLE notes;\n"
    )
    runner = MigrationRunner(scratch, load_migrations(folder))
    with pytest.raises(MigrationChecksumError, match=r"migration 1 \(notes\)"):
        runner.verify()
    with pytest.raises(MigrationChecksumError):
        runner.migrate()


def test_schema_newer_than_code_is_refused(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        db.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from_the_future', 'x', 1, 0)",
            (LATEST + 1,),
        )
    before = db_path.read_bytes()
    for migrate in (True, False):
        with pytest.raises(SchemaTooNewError, match="upgrade mangostore"):
            mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings, migrate=migrate)
    assert db_path.read_bytes() == before


def test_unknown_migration_below_latest_is_refused(scratch: Writer) -> None:
    one, three = CREATE_NOTES, migration(3, "three", "CREATE TABLE three (x);")
    MigrationRunner(scratch, [one, migration(2, "other", "SELECT 1;"), three]).migrate()
    runner = MigrationRunner(scratch, [one, migration(2, "renamed", "SELECT 1;"), three])
    with pytest.raises(MigrationChecksumError):
        runner.verify()
    runner = MigrationRunner(scratch, [one, three])
    with pytest.raises(MigrationError, match="does not have"):
        runner.verify()


def test_migration_added_below_the_current_version_is_refused(scratch: Writer) -> None:
    three = migration(3, "three", "CREATE TABLE three (x);")
    MigrationRunner(scratch, [CREATE_NOTES, three]).migrate()
    runner = MigrationRunner(scratch, [CREATE_NOTES, migration(2, "late", "SELECT 1;"), three])
    with pytest.raises(MigrationError, match=r"migration 2 \(late\) was never applied"):
        runner.migrate()


# -- concurrency -----------------------------------------------------------------------


def test_two_runners_racing_migrate_once(tmp_path: Path) -> None:
    """Regression: both saw version 0 and both created the tables; the second failed."""
    path = str(tmp_path / "race.db")
    writers = [Writer(connect(path, None, writer_setup(5000)), busy_timeout_ms=5000) for _ in "ab"]
    migrations = [CREATE_NOTES, migration(2, "more", "CREATE TABLE more (x);")]
    both_looked = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def before(current: int, target: int) -> None:
        both_looked.wait(30)

    def run(writer: Writer) -> None:
        try:
            results.append(MigrationRunner(writer, migrations).migrate(before=before))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert sorted(results) == [[], [1, 2]]
        assert MigrationRunner(writers[0], migrations).current_version() == 2
    finally:
        for w in writers:
            w.close()


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("1_short.sql", "-- migrate:up\n-- migrate:down\n"),
        ("0001_Upper.sql", "-- migrate:up\n-- migrate:down\n"),
        ("0001_x.txt", "-- migrate:up\n-- migrate:down\n"),
        ("0001_x.sql", "CREATE TABLE t (x);"),
        ("0001_x.sql", "-- migrate:down\n-- migrate:up\n"),
        ("0001_x.sql", "-- migrate:up\n-- migrate:up\n-- migrate:down\n"),
    ],
)
def test_malformed_migration_files(name: str, text: str) -> None:
    with pytest.raises(MigrationError):
        Migration.parse(name, text)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    body = "-- migrate:up\n-- migrate:down\n"
    (tmp_path / "0001_a.sql").write_text(body)
    (tmp_path / "0001_b.sql").write_text(body)
    with pytest.raises(MigrationError, match="two migrations have version 1"):
        load_migrations(tmp_path)


def test_package_migrations_are_numbered_and_split() -> None:
    files = load_migrations()
    assert [m.version for m in files] == sorted({m.version for m in files})
    assert files[0].version == 1
    assert [m.name for m in files[:3]] == ["core", "notifications", "knowledge_graph"]
    for m in files:
        assert split_statements(m.up)
        assert split_statements(m.down)


TRIGGER = """
CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN
    INSERT INTO log (what) VALUES ('insert; with a semicolon');
    UPDATE counters SET n = n + 1 WHERE name = 'notes';
    SELECT CASE WHEN new.body = '' THEN RAISE(ABORT, 'empty; body') END;
END;
"""


def test_split_keeps_triggers_whole() -> None:
    statements = split_statements(f"CREATE TABLE log (what);\n{TRIGGER}\nCREATE TABLE z (x);")
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER")
    assert statements[1].endswith("END;")
    assert statements[1].count(";") == 6


def test_split_handles_comments() -> None:
    sql = """
    -- a leading comment; with a semicolon
    CREATE TABLE a (
        x INTEGER, -- trailing comment; here
        y TEXT /* block; comment */
    ); -- after the statement;
    /* a block comment
       over lines; */
    CREATE TABLE b (x);
    -- the end; nothing more
    """
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[0].startswith("-- a leading comment")
    assert "y TEXT" in statements[0]
    assert statements[1].endswith("CREATE TABLE b (x);")


def test_split_handles_quotes_and_shared_lines() -> None:
    sql = (
        "INSERT INTO t VALUES ('it''s; fine', \"odd;name\", `x;y`, [a;b]); "
        "INSERT INTO t VALUES ('--not a comment;');CREATE TABLE u (x);\n"
        "INSERT INTO t VALUES ('multi\nline;\nstring');"
    )
    statements = split_statements(sql)
    assert statements == [
        "INSERT INTO t VALUES ('it''s; fine', \"odd;name\", `x;y`, [a;b]);",
        "INSERT INTO t VALUES ('--not a comment;');",
        "CREATE TABLE u (x);",
        "INSERT INTO t VALUES ('multi\nline;\nstring');",
    ]


def test_split_statements_run_one_by_one() -> None:
    conn = sqlcipher3.connect(":memory:")
    sql = (
        "CREATE TABLE notes (body TEXT); CREATE TABLE log (what TEXT);\n"
        "CREATE TABLE counters (name TEXT, n INTEGER);"
        "INSERT INTO counters VALUES ('notes', 0);\n" + TRIGGER + "INSERT INTO notes VALUES ('x');"
    )
    for statement in split_statements(sql):
        conn.execute(statement)  # the driver refuses two statements at once
    assert conn.execute("SELECT n FROM counters").fetchone()[0] == 1
    conn.close()


@pytest.mark.parametrize("sql", ["", "  \n", "-- only a comment", "/* only */ -- comments", ";;"])
def test_split_of_nothing(sql: str) -> None:
    assert split_statements(sql) == []


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (x)",
        "CREATE TABLE t (x); CREATE TABLE u (y)",
        "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; ",
        "INSERT INTO t VALUES ('unterminated;",
    ],
)
def test_split_refuses_an_incomplete_statement(sql: str) -> None:
    with pytest.raises(MigrationError, match="incomplete"):
        split_statements(sql)


def test_a_failed_backup_copy_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = mangostore.create(tmp_path / "src.db", encrypted=False).db
    dest = tmp_path / "copy.bak"

    class Broken:
        def backup(self, target: object) -> None:
            raise sqlcipher3.OperationalError("disk I/O error")

    @contextlib.contextmanager
    def broken_connection() -> Iterator[Broken]:
        yield Broken()

    monkeypatch.setattr(db.store.writer, "idle_connection", broken_connection)
    try:
        with pytest.raises(mangostore.errors.DatabaseError):
            backup_copy(db.store.writer, str(dest), None)
        assert list(tmp_path.glob("copy.bak*")) == []
    finally:
        monkeypatch.undo()
        db.close()
