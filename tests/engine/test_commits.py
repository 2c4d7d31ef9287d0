"""The commit watch: notices commits through SQLite, touching none of its files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.engine.commits import ChangesWatch, CommitWatch, DataVersionWatch

pytestmark = pytest.mark.database("encrypted_db")


def test_the_watch_matches_the_database(db: mangostore.Database) -> None:
    assert isinstance(db.commits, DataVersionWatch)
    assert isinstance(db.commits, CommitWatch)
    with mangostore.open(":memory:", encrypted=False) as memory:
        assert isinstance(memory.commits, ChangesWatch)
        before = memory.commits.version()
        memory.users.create(username="ann")
        assert memory.commits.version() != before


def test_data_version_moves_on_commits_not_on_uncommitted_writes(db: mangostore.Database) -> None:
    ann = db.users.create(username="ann").id
    watch = db.commits
    before = watch.version()
    assert before is not None
    assert watch.version() == before
    with db.transaction():
        db.projects.create(user_id=ann, name="x", path="/x")
        assert watch.version() == before  # not committed yet
    after = watch.version()
    assert after is not None
    assert after != before
    db.query("SELECT count(*) FROM projects", use_cache=False)
    assert watch.version() == after  # reads change nothing


def test_data_version_moves_on_another_process_commit(
    db: mangostore.Database, db_path: Path
) -> None:
    before = db.commits.version()
    script = (
        "import sys, mangostore\n"
        "db = mangostore.open(sys.argv[1], sys.argv[2], create=False)\n"
        "db.users.create(username='from-elsewhere')\n"
        "db.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db_path), PASSPHRASE], check=True)
    assert db.commits.version() != before
    assert db.users.get_by_username("from-elsewhere") is not None


def test_a_closed_watch_cannot_tell(db: mangostore.Database) -> None:
    db.commits.close()
    assert db.commits.version() is None
    assert db.query("SELECT 1")[0][0] == 1  # the query cache still serves, from SQLite


def test_a_watch_that_cannot_connect_cannot_tell() -> None:
    def refuse() -> object:
        raise OSError("no such file")

    watch = DataVersionWatch(refuse)
    assert watch.version() is None
    watch.close()
    assert watch.version() is None


def test_changes_watch_counts_the_writer_changes() -> None:
    counts = iter([1, 1, 2])
    watch = ChangesWatch(lambda: next(counts))
    assert [watch.version(), watch.version(), watch.version()] == [1, 1, 2]
    watch.close()
    assert watch.version() is None


def test_changes_watch_of_a_closed_connection_cannot_tell() -> None:
    def closed() -> int:
        raise RuntimeError("closed")

    assert ChangesWatch(closed).version() is None
