"""Privacy: retention with encrypted archives, export of a user's data, erasure of a user.

``populate`` gives a user rows in every table a user can own, each carrying a marker
(a tag unique to the user) in its plaintext and encrypted columns, so a byte scan of
the database file and its WAL shows whether anything of the user is left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from design import Rows
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.errors import (
    ConfigurationError,
    DatabaseError,
    NotFoundError,
    TamperedDataError,
    ValidationError,
)
from mangostore.privacy import RetentionPolicy, read_archive, verify_export
from mangostore.privacy.archive import write_archive
from mangostore.privacy.service import DAY_MS, PrivacyService
from mangostore.records import Unreadable, encrypted_columns

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False)


def new_tag() -> str:
    """A marker no tokenizer splits: lowercase letters only, unique per call."""
    return "mk" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(14))


def populate(db: mangostore.Database, tag: str) -> str:
    """Give a new user (named after ``tag``) rows in every table; return the user's id."""
    rows = Rows(db)
    user = rows.user(
        username=f"{tag}username",
        email=f"{tag}@example.org",
        preferences={"theme": f"{tag}theme"},
        security_profile={"pin": f"{tag}pin"},
    )
    uid = user.id
    project = rows.project(
        user_id=uid, name=f"{tag}project", path=f"/home/{tag}", security_config={"k": tag}
    )
    session = rows.terminal_session(
        user_id=uid, project_id=project.id, name=f"{tag}term", environment_variables={"A": tag}
    )
    rows.voice_profile(user_id=uid, name=f"{tag}voice", training_data={"t": tag})
    rows.command(
        user_id=uid,
        project_id=project.id,
        terminal_session_id=session.id,
        command=f"echo {tag}command",
        output=f"{tag}output",
    )
    ntype = rows.notification_type(name=f"type-{secrets.token_hex(8)}").id  # shared, not theirs
    rows.notification_preference(
        user_id=uid, notification_type_id=ntype, project_specific={"p": tag}
    )
    notification = rows.notification(
        user_id=uid,
        notification_type_id=ntype,
        title=f"{tag}title",
        message=f"{tag}message",
        metadata={"m": tag},
    )
    rows.notification_action(notification_id=notification.id, action_label=f"{tag}label")
    conversation = db.conversations.create(uid, title=f"{tag}conversation", data={"c": tag})
    db.conversations.append(conversation.id, "user", f"{tag}said")
    db.memory.remember(uid, f"{tag}key", {"value": f"{tag}remembered"})
    rows.permission(user_id=uid, resource_id=f"{tag}resource")
    rows.user_session(user_id=uid, user_agent=f"{tag}agent", device_info={"d": tag})
    entity = db.kg.upsert_entity(uid, "concept", f"{tag}entity", description=f"{tag}described")
    other = db.kg.upsert_entity(uid, "project", f"{tag}other")
    entity_id, other_id = entity.entity.id, other.entity.id
    db.kg.relate(entity_id, "uses", other_id)
    db.kg.observe(entity_id, "fact", f"{tag}observed")
    rows.kg_embedding(user_id=uid, entity_id=entity_id)
    db.audit.append(
        "auth", "info", "auth", user_id=uid, event_data={"ip": f"{tag}ip"}, client_info={"x": tag}
    )
    return uid


def file_bytes(path: Path) -> bytes:
    """The database file and its WAL, as they are on disk now."""
    found = b""
    for suffix in ("", "-wal"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            found += part.read_bytes()
    return found.lower()


def tables_with_user_id(db: mangostore.Database) -> list[str]:
    names = [
        str(r[0])
        for r in db.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"
        )
    ]
    return [
        n
        for n in names
        if any(r[0] == "user_id" for r in db.query("SELECT name FROM pragma_table_info(?)", (n,)))
    ]


@pytest.fixture(params=["keyed", "plain-pages", "no-keyring"])
def disk_db(
    request: pytest.FixtureRequest, db_path: Path, clock: ManualClock
) -> Iterator[mangostore.Database]:
    """A file database: encrypted pages; plain pages with a keyring; no keyring at all."""
    if request.param == "keyed":
        db = mangostore.create(db_path, passphrase=PASSPHRASE, settings=SETTINGS, clock=clock).db
    elif request.param == "plain-pages":
        db = mangostore.create(
            db_path, passphrase=PASSPHRASE, encrypted=False, settings=SETTINGS, clock=clock
        ).db
    else:
        db = mangostore.create(db_path, encrypted=False, settings=SETTINGS, clock=clock).db
    yield db
    db.close()


@pytest.fixture
def memory_db_clock(clock: ManualClock) -> Iterator[mangostore.Database]:
    db = mangostore.open(":memory:", passphrase=PASSPHRASE, settings=SETTINGS, clock=clock)
    yield db
    db.close()


# -- retention ------------------------------------------------------------------------------


def test_old_command_history_is_archived_then_deleted(
    disk_db: mangostore.Database, clock: ManualClock
) -> None:
    rows = Rows(disk_db)
    user = rows.user()
    old = [rows.command(user_id=user.id, command=f"old {i}") for i in range(3)]
    clock.advance(100 * DAY_MS)
    new = rows.command(user_id=user.id, command="new")
    report = disk_db.privacy.apply_retention()
    entry = report.table("command_history")
    assert (entry.archived, entry.deleted) == (3, 3)
    assert entry.archive is not None
    assert entry.archive.parent == Path(disk_db.path + ".archive")
    suffix = ".jsonl.zst.enc" if disk_db.keyring is not None else ".jsonl.zst"
    assert entry.archive.name.endswith(suffix)
    assert [c.id for c in disk_db.command_history.list()] == [new.id]
    archive = read_archive(entry.archive, disk_db)
    assert archive.table == "command_history"
    assert [r["command"] for r in archive.rows] == [c.command for c in old]
    assert archive.rows[0] == old[0].to_dict()
    if disk_db.keyring is not None:
        assert b"old 1" not in entry.archive.read_bytes()
    again = disk_db.privacy.apply_retention()
    assert again.table("command_history").archived == 0


def test_old_notifications_are_deleted_with_their_actions(
    memory_db_clock: mangostore.Database, clock: ManualClock
) -> None:
    db = memory_db_clock
    rows = Rows(db)
    user = rows.user()
    kept_type = rows.notification_type(retention_days=None)
    short_type = rows.notification_type(retention_days=7)
    short = rows.notification(user_id=user.id, notification_type_id=short_type.id)
    rows.notification_action(notification_id=short.id)
    forever = rows.notification(user_id=user.id, notification_type_id=kept_type.id)
    clock.advance(10 * DAY_MS)
    report = db.privacy.apply_retention(archive_dir_path=None)
    assert report.table("notifications").deleted == 1
    assert [n.id for n in db.notifications.list()] == [forever.id]
    assert db.notification_actions.count() == 0
    clock.advance(40 * DAY_MS)
    report = db.privacy.apply_retention(policies=[RetentionPolicy("notifications", 30)])
    assert report.table("notifications").deleted == 1
    assert db.notifications.count() == 0


def test_old_security_events_leave_behind_an_anchor_and_a_verifiable_chain(
    disk_db: mangostore.Database, clock: ManualClock
) -> None:
    db = disk_db
    user = db.users.create(username="auditee")
    for i in range(4):
        db.audit.append("auth", "info", "auth", user_id=user.id, event_data={"i": i})
    checkpoint = db.audit.checkpoint() if db.keyring is not None else None
    clock.advance(400 * DAY_MS)
    for i in range(2):
        db.audit.append("auth", "info", "auth", user_id=user.id, event_data={"i": 10 + i})
    report = db.privacy.apply_retention()
    entry = report.table("security_events")
    assert (entry.archived, entry.deleted) == (4, 4)
    assert report.anchor_seq == 7
    kept = db.audit.events()
    assert [e.seq for e in kept] == [5, 6, 7]
    anchor = kept[-1]
    assert anchor.source_component == "audit.retention"
    assert anchor.event_data["removed_through_seq"] == 4
    assert entry.archive is not None
    assert anchor.event_data["archive"] == entry.archive.name
    archive = read_archive(entry.archive, db)
    assert [r["seq"] for r in archive.rows] == [1, 2, 3, 4]
    if db.keyring is None:
        assert not db.audit.verify().keyed
        return
    report_after = db.audit.verify()
    assert report_after.ok
    assert report_after.first_seq == 5
    assert db.audit.verify(checkpoint).ok  # a checkpoint of removed events still fits
    # A second run removes the first anchor too, behind a new one.
    clock.advance(400 * DAY_MS)
    db.audit.append("auth", "info", "auth")
    db.privacy.apply_retention()
    assert [e.seq for e in db.audit.events()] == [8, 9]
    assert db.audit.verify().ok
    # Without the anchor, the missing head is reported.
    db.execute("DROP TRIGGER security_events_append_only_delete")
    db.execute("DELETE FROM security_events WHERE seq = 9")
    db.audit.append("auth", "info", "auth")
    assert db.audit.verify().first_broken_seq == 1


def test_retention_only_removes_a_prefix_of_the_chain(
    memory_db_clock: mangostore.Database, clock: ManualClock, tmp_path: Path
) -> None:
    db = memory_db_clock
    db.audit.append("auth", "info", "first")
    clock.advance(400 * DAY_MS)
    db.audit.append("auth", "info", "recent")
    clock.set(clock.now_ms() - 399 * DAY_MS)  # the clock went back: an old-looking event
    db.audit.append("auth", "info", "late")
    clock.advance(399 * DAY_MS)
    report = db.privacy.apply_retention(archive_dir_path=tmp_path)
    assert report.table("security_events").deleted == 1
    assert [e.source_component for e in db.audit.events()] == [
        "recent",
        "late",
        "audit.retention",
    ]
    assert db.audit.verify().ok


def test_retention_refuses_to_run_inside_a_transaction(
    memory_db_clock: mangostore.Database,
) -> None:
    with pytest.raises(DatabaseError), memory_db_clock.transaction():
        memory_db_clock.privacy.apply_retention()


def test_an_in_memory_database_needs_a_place_for_archives(
    memory_db_clock: mangostore.Database, clock: ManualClock
) -> None:
    Rows(memory_db_clock).command()
    clock.advance(100 * DAY_MS)
    with pytest.raises(ConfigurationError, match="archive_dir"):
        memory_db_clock.privacy.apply_retention()
    assert memory_db_clock.command_history.count() == 1


# -- archive files --------------------------------------------------------------------------


def big_archive(db: mangostore.Database, directory: Path, rows: int = 1500) -> Path:
    """An archive of random (incompressible) rows, so it spans several chunks."""
    data = [{"id": str(i), "user_id": "u", "blob": secrets.token_hex(1024)} for i in range(rows)]
    return write_archive(
        directory,
        "command_history",
        data,
        keyring=db.keyring,
        created_at=1,
        first_ts=1,
        last_ts=2,
        row_count=rows,
    )


@pytest.mark.parametrize("fixture", ["memory_db", "plain_db"])
def test_archive_round_trip_and_tampering(
    request: pytest.FixtureRequest, fixture: str, tmp_path: Path
) -> None:
    db: mangostore.Database = request.getfixturevalue(fixture)
    path = big_archive(db, tmp_path)
    archive = read_archive(path, db)
    assert len(archive.rows) == 1500
    raw = path.read_bytes()
    assert len(raw) > 1_400_000  # more than one 1 MiB chunk

    def refused(data: bytes) -> None:
        path.write_bytes(data)
        with pytest.raises(TamperedDataError):
            read_archive(path, db)

    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    refused(bytes(flipped))
    refused(raw[:-1])  # cut inside the last chunk
    first_chunk_end = _chunk_ends(raw)[0]
    refused(raw[:first_chunk_end])  # cut at a chunk boundary: the last chunk is missing
    refused(raw.replace(b'"rows":1500', b'"rows":1499'))  # header edited
    refused(b"not an archive")
    path.write_bytes(raw)
    assert len(read_archive(path, db).rows) == 1500


def _chunk_ends(raw: bytes) -> list[int]:
    at = 8
    at += 4 + int.from_bytes(raw[at : at + 4], "big")
    ends = []
    while at < len(raw):
        at += 4 + int.from_bytes(raw[at : at + 4], "big")
        ends.append(at)
    return ends


def test_an_archive_of_another_database_does_not_open(
    memory_db: mangostore.Database, tmp_path: Path
) -> None:
    path = big_archive(memory_db, tmp_path, rows=3)
    other = mangostore.open(":memory:", passphrase=PASSPHRASE, settings=SETTINGS)
    plain = mangostore.open(":memory:", encrypted=False)
    try:
        with pytest.raises(TamperedDataError):
            read_archive(path, other)
        with pytest.raises(ConfigurationError):
            read_archive(path, plain)
    finally:
        other.close()
        plain.close()


# -- export ---------------------------------------------------------------------------------


def test_export_holds_every_row_of_the_user_decrypted(
    disk_db: mangostore.Database, tmp_path: Path
) -> None:
    db = disk_db
    db.execute(
        "CREATE TABLE extra_notes (id TEXT PRIMARY KEY, user_id TEXT, note TEXT, api_token TEXT)"
    )
    tag, other_tag = new_tag(), new_tag()
    uid = populate(db, tag)
    populate(db, other_tag)
    db.execute(
        "INSERT INTO extra_notes VALUES ('n1', ?, ?, 'secret-token-value')", (uid, f"{tag}note")
    )
    out = tmp_path / "export"
    manifest = db.privacy.export_user(uid, out)
    assert verify_export(out) == []
    assert (out / "manifest.json").exists()
    assert os.stat(out).st_mode & 0o777 == 0o700
    names = {f.name for f in manifest.files}
    for table in tables_with_user_id(db):
        assert f"{table}.jsonl" in names, table
        if table in ("field_keys",):
            continue
        (direct,) = db.query(f'SELECT count(*) FROM "{table}" WHERE user_id = ?', (uid,))[0]
        assert manifest.rows(table) >= direct, table
    assert manifest.rows("users") == 1
    assert manifest.rows("notification_actions") == 1  # reached through notifications
    assert manifest.rows("kg_observations") >= 1
    assert manifest.rows("security_events") == 1
    text = "".join(p.read_text(encoding="utf-8") for p in out.glob("*.jsonl"))
    assert other_tag not in text
    for marker in ("pin", "said", "remembered", "ip", "note", "entity", "command"):
        assert f"{tag}{marker}" in text, marker
    assert "secret-token-value" not in text
    user_row = json.loads((out / "users.jsonl").read_text(encoding="utf-8"))
    assert user_row["security_profile"] == {"pin": f"{tag}pin"}
    (out / "users.jsonl").write_text("{}\n", encoding="utf-8")
    assert verify_export(out) == ["users.jsonl"]


def test_export_refuses_a_used_directory_and_an_unknown_user(
    memory_db: mangostore.Database, tmp_path: Path
) -> None:
    uid = Rows(memory_db).user().id
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValidationError):
        memory_db.privacy.export_user(uid, tmp_path / "full")
    with pytest.raises(NotFoundError):
        memory_db.privacy.export_user("no-such-user", tmp_path / "new")
    with pytest.raises(ValidationError):
        verify_export(tmp_path)


# -- erasure --------------------------------------------------------------------------------


def test_erasure_leaves_no_plaintext_in_the_file_or_the_wal(
    disk_db: mangostore.Database, db_path: Path
) -> None:
    db = disk_db
    tag, other_tag = new_tag(), new_tag()
    uid = populate(db, tag)
    other = populate(db, other_tag)
    db.execute(
        "UPDATE command_history SET project_id = ("
        "SELECT id FROM projects WHERE user_id = ?) WHERE user_id = ?",
        (uid, other),
    )
    if not db.page_encryption:
        assert tag.encode() in file_bytes(db_path)  # the scan does see plaintext
    report = db.privacy.erase_user(uid)
    assert report.wal_truncated
    assert report.references_cleared == 1  # the other user's command pointed at a project
    assert report.rows_deleted["users"] == 1
    assert report.total_deleted > 20
    for data in (file_bytes(db_path),):
        assert tag.encode() not in data
    assert os.path.getsize(f"{db_path}-wal") == 0
    # Nothing of the user is left in any table that names users...
    for table in tables_with_user_id(db):
        if table in ("security_events", "field_keys"):
            continue
        assert db.query(f'SELECT count(*) FROM "{table}" WHERE user_id = ?', (uid,))[0][0] == 0
    # ... the other user is untouched ...
    assert db.users.get(other).username == f"{other_tag}username"
    assert db.memory.recall(other, f"{other_tag}key")
    if not db.page_encryption:
        assert other_tag.encode() in file_bytes(db_path)
    # ... and the audit chain still verifies, with the user's events kept but unreadable.
    events = db.audit.events(user_id=uid)
    assert len(events) == 1
    assert events[0].event_data is None
    erasure = db.audit.events()[-1]
    assert erasure.source_component == "audit.erasure"
    assert uid not in json.dumps(erasure.event_data)
    assert erasure.user_id is None
    if db.keyring is not None:
        assert db.audit.verify().ok
        assert uid in db.keyring.erased_users()
        assert erasure.event_data["subject"] == report.subject
        assert report.keys_destroyed >= 1
    else:
        assert report.events_redacted == 1


def test_erasure_reaches_archives(disk_db: mangostore.Database, clock: ManualClock) -> None:
    db = disk_db
    tag = new_tag()
    rows = Rows(db)
    uid = rows.user(username=f"{tag}name").id
    keep = rows.user().id
    rows.command(user_id=uid, command=f"echo {tag}")
    rows.command(user_id=keep, command="echo kept")
    clock.advance(100 * DAY_MS)
    archive = db.privacy.apply_retention().table("command_history").archive
    assert archive is not None
    report = db.privacy.erase_user(uid)
    assert report.archives_rewritten == (archive,)
    assert [r["command"] for r in read_archive(archive, db).rows] == ["echo kept"]


def test_erasure_refuses_to_run_inside_a_transaction(memory_db: mangostore.Database) -> None:
    uid = Rows(memory_db).user().id
    with pytest.raises(DatabaseError), memory_db.transaction():
        memory_db.privacy.erase_user(uid)
    assert memory_db.users.exists(uid)


def test_erasing_twice_is_harmless(memory_db: mangostore.Database) -> None:
    uid = populate(memory_db, new_tag())
    first = memory_db.privacy.erase_user(uid)
    second = memory_db.privacy.erase_user(uid)
    assert first.total_deleted > 0
    assert second.total_deleted == 0
    assert memory_db.audit.verify().ok


def test_a_copy_taken_before_erasure_does_not_give_the_user_back(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = new_tag()
    live, copy = tmp_path / "live.db", tmp_path / "copy.db"
    with mangostore.create(live, passphrase=PASSPHRASE, settings=SETTINGS).db as db:
        uid = populate(db, tag)
        kept = populate(db, new_tag())
    shutil.copyfile(live, copy)  # a file copy (or backup) taken before the erasure
    with mangostore.open(live, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        db.privacy.erase_user(uid)
    # The copy is opened with the current keyring beside it (restored next to it).
    shutil.copyfile(f"{live}.keyring", f"{copy}.keyring")

    # Even before the erasure is re-applied, the encrypted fields are gone ...
    monkeypatch.setattr(PrivacyService, "reapply_erasures", lambda self: [])
    with mangostore.open(copy, passphrase=PASSPHRASE, settings=SETTINGS) as stale:
        with pytest.raises(TamperedDataError):
            stale.users.get(uid)
        # Listed, the user's encrypted values stand as unreadable.
        conversations = stale.ai_conversations.find_by_user(uid)
        sealed = [
            getattr(record, column)
            for record in conversations
            for column in encrypted_columns(type(record))
            if getattr(record, column) is not None
        ]
        assert sealed
        assert all(isinstance(value, Unreadable) for value in sealed)
        assert stale.users.get(kept).security_profile is not None
    monkeypatch.undo()
    # ... and opening it re-applies the erasure to everything else.
    with mangostore.open(copy, passphrase=PASSPHRASE, settings=SETTINGS) as reopened:
        assert not reopened.users.exists(uid)
        assert reopened.users.exists(kept)
        assert reopened.audit.events()[-1].event_data["reapplied"] is True
        assert reopened.audit.verify().ok
    assert tag.encode() not in file_bytes(copy)


def test_erasure_names_the_pre_migration_copies_it_cannot_reach(
    db_path: Path,
) -> None:
    settings = Settings(kdf=FAST_KDF)
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=settings, migrate=False
    ).db as db:
        db.migrate(to=7)
        uid = db.users.create(username="someone").id
        db.migrate()  # makes a pre-migration copy beside the file
        report = db.privacy.erase_user(uid)
    assert report.copies_not_reached
    assert all(p.name.startswith(db_path.name + ".pre-v7") for p in report.copies_not_reached)


def test_a_failed_retention_leaves_no_archive(
    disk_db: mangostore.Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = Rows(disk_db)
    user = rows.user()
    old = [rows.command(user_id=user.id, command=f"old {i}") for i in range(3)]
    clock.advance(100 * DAY_MS)

    def fail(*args: object, **kwargs: object) -> int:
        raise DatabaseError("the delete failed")

    monkeypatch.setattr("mangostore.privacy.retention.delete_with_children", fail)
    with pytest.raises(DatabaseError):
        disk_db.privacy.apply_retention()
    monkeypatch.undo()
    directory = Path(disk_db.path + ".archive")
    assert not directory.exists() or not list(directory.iterdir())
    assert {c.id for c in disk_db.command_history.list()} == {c.id for c in old}
    entry = disk_db.privacy.apply_retention().table("command_history")
    assert entry.archived == 3
    assert entry.archive is not None
    assert [p.name for p in directory.iterdir()] == [entry.archive.name]


def test_an_archive_never_replaces_another(
    memory_db: mangostore.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mangostore.privacy import archive as archive_module

    def write(command: str) -> Path:
        return write_archive(
            tmp_path,
            "command_history",
            [{"id": command, "user_id": "u", "command": command}],
            keyring=memory_db.keyring,
            created_at=1,
            first_ts=1,
            last_ts=2,
            row_count=1,
        )

    first = write("first")
    real = archive_module.free_name
    calls: list[Path] = []

    def stale(path: Path) -> Path:  # the name was free when chosen, taken since
        calls.append(path)
        return first if len(calls) == 1 else real(path)

    monkeypatch.setattr(archive_module, "free_name", stale)
    second = write("second")
    assert second != first
    assert [r["command"] for r in read_archive(first, memory_db).rows] == ["first"]
    assert [r["command"] for r in read_archive(second, memory_db).rows] == ["second"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


def test_reopening_finishes_an_interrupted_archive_scrub(
    db_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = mangostore.create(db_path, passphrase=PASSPHRASE, settings=SETTINGS, clock=clock).db
    try:
        rows = Rows(db)
        uid = rows.user().id
        keep = rows.user().id
        rows.command(user_id=uid, command="echo erased")
        rows.command(user_id=keep, command="echo kept")
        clock.advance(100 * DAY_MS)
        archive = db.privacy.apply_retention().table("command_history").archive
        assert archive is not None
        monkeypatch.setattr("mangostore.privacy.erasure.scrub_archives", lambda db, *users: [])
        db.privacy.erase_user(uid)  # as if it stopped between its commit and the scrub
        monkeypatch.undo()
        assert len(read_archive(archive, db).rows) == 2
        assert db.privacy.reapply_erasures() == []
        assert [r["command"] for r in read_archive(archive, db).rows] == ["echo kept"]
    finally:
        db.close()
