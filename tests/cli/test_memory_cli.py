"""``mangostore memory list``, driven through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common
from mangostore.clock import ManualClock

START = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


def run(args: list[str], *, passphrase: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, env={common.PASSPHRASE_ENV: passphrase})


@pytest.fixture
def plain_file(db_path: Path) -> Path:
    """An unencrypted database where ann has current, superseded, expired and forgotten
    memories, and bob has one."""
    clock = ManualClock(START)
    with mangostore.create(db_path, encrypted=False, clock=clock).db as db:
        ann = db.users.create(username="ann").id
        bob = db.users.create(username="bob").id
        site = db.projects.create(id="site-1", user_id=ann, name="site", path="/srv/site").id
        db.memory.remember(ann, "shell", "bash", memory_type="preference")
        db.memory.remember(ann, "shell", "zsh", memory_type="preference", source="user_input")
        db.memory.remember(ann, "test_command", "npm test", project_id=site, confidence=0.8)
        db.memory.remember(ann, "notes", {"long": "x" * 200})
        db.memory.remember(ann, "standup", "10:00", ttl=1)
        db.memory.remember(ann, "password_hint", "mango")
        db.memory.forget(ann, "password_hint")
        db.memory.remember(bob, "shell", "fish")
    return db_path


def test_list_shows_the_current_memories(plain_file: Path) -> None:
    result = run(["memory", "list", str(plain_file), "--plain", "--user", "ann"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith('notes = {"long": "xxx')
    assert lines[0].endswith("...")
    assert len(lines[0]) <= len("notes = ") + 80
    assert 'shell = "zsh"' in lines
    assert 'test_command = "npm test"' in lines
    assert "preference, confidence 1.00, user-wide, since 2023-11-14 22:13:20 UTC" in result.stdout
    assert "fact, confidence 0.80, project site-1" in result.stdout
    for hidden in ("bash", "standup", "password_hint", "fish"):
        assert hidden not in result.stdout


def test_list_as_json(plain_file: Path) -> None:
    result = run(["memory", "list", str(plain_file), "--plain", "--user", "ann", "--json"])

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["key"] for r in rows] == ["notes", "shell", "test_command"]
    shell = rows[1]
    assert shell["value"] == "zsh"
    assert shell["type"] == "preference"
    assert shell["source"] == "user_input"
    assert shell["created"] == "2023-11-14T22:13:20.000Z"
    assert shell["expires"] is None
    assert shell["access_count"] == 0
    assert rows[0]["value"] == {"long": "x" * 200}  # whole in JSON


def test_list_filters_by_type_and_project(plain_file: Path) -> None:
    path = str(plain_file)
    by_type = run(["memory", "list", path, "--plain", "--user", "ann", "--type", "preference",
                   "--json"])  # fmt: skip
    assert [r["key"] for r in json.loads(by_type.stdout)] == ["shell"]

    with mangostore.open(plain_file, encrypted=False) as db:
        ann = db.users.get_by_username("ann")
        assert ann is not None
        db.projects.create(id="api-1", user_id=ann.id, name="api", path="/srv/api")
    in_api = run(["memory", "list", path, "--plain", "--user", "ann", "--project", "api-1",
                  "--json"])  # fmt: skip
    assert [r["key"] for r in json.loads(in_api.stdout)] == ["notes", "shell"]

    bad = run(["memory", "list", path, "--plain", "--user", "ann", "--type", "opinion"])
    assert bad.exit_code == 2


def test_list_takes_a_user_id_and_does_not_count_access(plain_file: Path) -> None:
    with mangostore.open(plain_file, encrypted=False) as db:
        bob = db.users.get_by_username("bob")
        assert bob is not None
    result = run(["memory", "list", str(plain_file), "--plain", "--user", bob.id, "--json"])

    assert [r["value"] for r in json.loads(result.stdout)] == ["fish"]
    with mangostore.open(plain_file, encrypted=False) as db:
        assert [m.access_count for m in db.ai_memory.list(user_id=bob.id)] == [0]


def test_list_of_a_user_with_no_memories(plain_file: Path) -> None:
    with mangostore.open(plain_file, encrypted=False) as db:
        db.users.create(username="cat")

    result = run(["memory", "list", str(plain_file), "--plain", "--user", "cat"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "No memories for cat."
    as_json = run(["memory", "list", str(plain_file), "--plain", "--user", "cat", "--json"])
    assert json.loads(as_json.stdout) == []


def test_unknown_user_is_one_error_line(plain_file: Path) -> None:
    result = run(["memory", "list", str(plain_file), "--plain", "--user", "nobody"])

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: there is no user named (or with id) 'nobody'"


def test_encrypted_database_with_passphrase(db_path: Path, fast_settings: Settings) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        ann = db.users.create(username="ann").id
        db.memory.remember(ann, "editor", "helix")

    result = run(["memory", "list", str(db_path), "--user", "ann"], passphrase=PASSPHRASE)
    assert result.exit_code == 0, result.output
    assert 'editor = "helix"' in result.stdout
    wrong = run(["memory", "list", str(db_path), "--user", "ann"], passphrase="wrong passphrase")
    assert wrong.exit_code == 1


def test_an_old_schema_is_refused_with_advice(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False, migrate=False).db as db:
        db.migrate(to=9)

    result = run(["memory", "list", str(db_path), "--plain", "--user", "ann"])
    assert result.exit_code == 1
    assert "schema version 9" in result.stderr
    assert "mangostore migrate" in result.stderr
