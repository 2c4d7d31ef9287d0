"""A pre-migration copy cut short by SIGKILL was left at its final name with a rollback
journal beside it; opening it rolled the journal back and silently gave a fresh, empty,
migrated database. Copies were also never pruned.

Now a copy is written under a temporary name and renamed when complete, leftovers are
removed by the next migration, only the newest copies are kept, and opening an
interrupted copy fails clearly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlcipher3
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import NotADatabaseError
from mangostore.schema.copies import migration_copies

pytestmark = pytest.mark.slow

SETTINGS = Settings(kdf=FAST_KDF)
LATEST = mangostore.open(":memory:", encrypted=False).schema_version

MIGRATOR = """
import sys, mangostore
db = mangostore.open(sys.argv[1], sys.argv[2], create=False, migrate=False)
print("MIGRATING", flush=True)
db.migrate()
print("DONE", flush=True)
"""


def _older_database(path: Path) -> str:
    """A database one version behind, with enough data that copying it takes a while;
    returns its page key (hex)."""
    with mangostore.create(path, PASSPHRASE, settings=SETTINGS).db as db:
        db.execute("CREATE TABLE ballast (blob BLOB)")
        for _ in range(8):
            db.execute(
                "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000) "
                "INSERT INTO ballast SELECT randomblob(4096) FROM c"
            )
        db.migrate(to=LATEST - 1)
        assert db.keyring is not None
        return db.keyring.subkey("page").hex()


def _is_whole_copy(copy: Path, page_key: str) -> bool:
    conn = sqlcipher3.connect(str(copy))
    try:
        conn.execute(f"PRAGMA key = \"x'{page_key}'\"")
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return ok and conn.execute("SELECT count(*) FROM ballast").fetchone()[0] == 8000
    finally:
        conn.close()


def test_killed_copies_never_stand_as_finished_copies(db_path: Path) -> None:
    page_key = _older_database(db_path)
    for attempt in range(6):
        with subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, str(db_path), PASSPHRASE],
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "MIGRATING"
            time.sleep(random.uniform(0, 0.15) if attempt else 0)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        for copy in migration_copies(db_path):
            assert _is_whole_copy(copy, page_key), copy.name
        with mangostore.open(db_path, PASSPHRASE, create=False, migrate=False) as db:
            if db.schema_version == LATEST:
                db.migrate(to=LATEST - 1)
    partials = list(db_path.parent.glob("*.partial*"))
    for partial in partials:
        if partial.name.endswith(".partial"):
            with pytest.raises(NotADatabaseError, match="interrupted copy"):
                mangostore.open(partial, PASSPHRASE, create=False)
    with mangostore.open(db_path, PASSPHRASE, create=False, settings=SETTINGS) as db:
        assert db.schema_version == LATEST
    assert list(db_path.parent.glob("*.partial*")) == []
    assert 1 <= len(migration_copies(db_path)) <= SETTINGS.migration_copies_kept


def test_a_file_with_a_rollback_journal_is_refused(db_path: Path) -> None:
    mangostore.create(db_path, PASSPHRASE, settings=SETTINGS).db.close()
    journal = Path(f"{db_path}-journal")
    journal.write_bytes(b"\0" * 512)
    with pytest.raises(NotADatabaseError, match="interrupted copy"):
        mangostore.open(db_path, PASSPHRASE, create=False)
    journal.unlink()
    mangostore.open(db_path, PASSPHRASE, create=False).close()


def test_only_the_newest_copies_are_kept(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, migration_copies_kept=2)
    with mangostore.create(db_path, PASSPHRASE, settings=settings).db as db:
        for _ in range(3):
            db.migrate(to=LATEST - 1)
            db.migrate()
    copies = migration_copies(db_path)
    assert len(copies) == 2
    # The newest two: the last downward step's copy and the last upward one's.
    assert copies[-1].name.startswith(f"{db_path.name}.pre-v{LATEST - 1}-to-v{LATEST}-")
    assert copies[0].name.startswith(f"{db_path.name}.pre-v{LATEST}-to-v{LATEST - 1}-")
