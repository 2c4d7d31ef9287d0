"""No plaintext on disk: table content, column names and keys stay out of every file.

The database file, its WAL, the copies made before migrations and the keyring
sidecar are searched byte for byte. A plain database (asked for by name) is checked
too, to show the search would find the markers if they were there.
"""

from __future__ import annotations

import base64
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.keys.keyring import Keyring, keyring_path
from mangostore.keys.subkeys import PURPOSES

#: Values written to the database; none may appear in an encrypted file.
MARKERS = (
    "zebra-marker-username",
    "marker.mailbox@example.org",
    "ultraviolet-preference-marker",
    "quartz-security-profile-marker",
)
#: Schema text SQLite keeps in page 1 of every plain database.
SCHEMA_WORDS = ("CREATE TABLE", "CREATE INDEX", "sqlite_autoindex", "SQLite format 3")


def insert_markers(db: mangostore.Database, user_id: str = "user-marker-0001") -> None:
    """Write a user whose every text column holds a marker."""
    db.execute(
        "INSERT INTO users (id, username, email, created_at, updated_at, preferences, "
        "security_profile) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            user_id,
            MARKERS[0],
            MARKERS[1],
            1,
            1,
            f'{{"theme": "{MARKERS[2]}"}}',
            MARKERS[3],
        ),
    )


def column_names(db: mangostore.Database) -> set[str]:
    """Every table and column name of the schema long enough not to occur by chance."""
    names: set[str] = set()
    for (table,) in db.query("SELECT name FROM sqlite_master WHERE type = 'table'"):
        names.add(table)
        names.update(r[1] for r in db.query("SELECT * FROM pragma_table_info(?)", (table,)))
    return {n for n in names if len(n) >= 5}


def key_texts(ring: Keyring, *extra: str) -> list[str]:
    """Text forms of the master key, every sub-key and ``extra`` secrets."""
    forms = [*extra]
    for key in [ring._master, *(ring.subkey(p) for p in PURPOSES)]:
        forms += [key.hex(), key.hex().upper(), base64.b64encode(key).decode()]
    return forms


def leaks(data: bytes, needles: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """The needles found in ``data``, as UTF-8 or as UTF-16 (either byte order)."""
    found = []
    for needle in needles:
        forms = [needle.encode("utf-8"), needle.encode("utf-16-le"), needle.encode("utf-16-be")]
        if any(form in data for form in forms):
            found.append(needle)
    return found


@pytest.fixture
def filled_db(db_path: Path, fast_settings: Settings) -> Iterator[mangostore.Database]:
    """An encrypted database with markers written and still open (so the WAL holds them)."""
    db = mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db
    insert_markers(db)
    with db.transaction():
        for n in range(1, 40):  # enough rows to spread over several pages
            db.execute(
                "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, 1, 1)",
                (f"user-{n}", f"{MARKERS[0]}-{n}"),
            )
    yield db
    db.close()


def test_wal_and_file_hold_no_plaintext(filled_db: mangostore.Database, db_path: Path) -> None:
    names = column_names(filled_db)
    assert {"users", "username", "schema_migrations", "security_profile"} <= names
    wal = Path(f"{db_path}-wal")
    assert wal.stat().st_size > 0  # the writes are in the WAL now: it must be searched
    for path in (db_path, wal):
        data = path.read_bytes()
        assert leaks(data, MARKERS) == []
        assert leaks(data, names) == []
        assert leaks(data, SCHEMA_WORDS) == []
    filled_db.close()
    data = db_path.read_bytes()  # checkpointed into the main file on close
    assert leaks(data, MARKERS) == []
    assert leaks(data, names) == []
    assert leaks(data, SCHEMA_WORDS) == []


def test_no_key_or_passphrase_in_any_file(
    filled_db: mangostore.Database, db_path: Path, fast_settings: Settings
) -> None:
    ring = filled_db.keyring
    assert ring is not None
    second, recovery = mangostore.create(
        db_path.parent / "second.db", passphrase=PASSPHRASE, settings=fast_settings
    )
    second.close()
    assert recovery is not None
    secrets = key_texts(ring, PASSPHRASE)
    raw_keys = [ring._master, *(ring.subkey(p) for p in PURPOSES)]
    for path in sorted(db_path.parent.iterdir()):
        data = path.read_bytes()
        assert leaks(data, secrets) == [], path.name
        assert not any(key in data for key in raw_keys), path.name
        if path.name.startswith("second.db"):
            assert leaks(data, [recovery, recovery.replace("-", "")]) == [], path.name


def test_pre_migration_copies_are_encrypted(
    db_path: Path, fast_settings: Settings, tmp_path: Path
) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        insert_markers(db)
        names = column_names(db)
        latest = db.schema_version
        db.migrate(1)  # copies the database before going down
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db:
        assert db.schema_version == latest  # and again before coming back up
    copies = sorted(db_path.parent.glob("*.bak"))
    assert len(copies) == 2
    for copy in copies:
        data = copy.read_bytes()
        assert leaks(data, MARKERS) == [], copy.name
        assert leaks(data, names) == [], copy.name
        assert leaks(data, SCHEMA_WORDS) == [], copy.name
    # Each copy opens with the same keyring, and holds the data.
    restored = tmp_path / "restored" / "vault.db"
    restored.parent.mkdir()
    shutil.copy(copies[0], restored)
    shutil.copy(keyring_path(db_path), keyring_path(restored))
    with mangostore.open(
        restored, passphrase=PASSPHRASE, settings=fast_settings, create=False, migrate=False
    ) as db:
        assert db.query("SELECT username FROM users")[0][0] == MARKERS[0]


def test_keyring_sidecar_holds_no_content(filled_db: mangostore.Database, db_path: Path) -> None:
    data = keyring_path(db_path).read_bytes()
    assert leaks(data, MARKERS) == []
    assert leaks(data, [PASSPHRASE]) == []


def test_plain_database_is_really_plain(db_path: Path, fast_settings: Settings) -> None:
    """The search above would find the markers: a plain file shows them all."""
    with mangostore.create(db_path, encrypted=False).db as db:
        insert_markers(db)
        names = column_names(db)
    data = db_path.read_bytes()
    assert leaks(data, MARKERS) == list(MARKERS)
    assert set(leaks(data, names)) == names
    assert not keyring_path(db_path).exists()


def test_plain_pages_with_passphrase_are_readable_sqlite(
    db_path: Path, fast_settings: Settings
) -> None:
    """Plain pages plus a passphrase: ordinary SQLite on disk, a keyring beside it."""
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, encrypted=False, settings=fast_settings
    ).db as db:
        insert_markers(db)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT username FROM users").fetchall() == [(MARKERS[0],)]
    finally:
        conn.close()
    ring = keyring_path(db_path).read_bytes()
    assert leaks(ring, [PASSPHRASE, *MARKERS]) == []


def test_in_memory_database_writes_nothing(
    tmp_path: Path, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=fast_settings) as db:
        insert_markers(db)
        assert db.page_encryption is True
    assert list(tmp_path.iterdir()) == []
