"""Conventions every command keeps: -h, one output option, confirmations, clear refusals."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common
from mangostore.cli.query import Result as QueryResult
from mangostore.keys.keyring import keyring_path

CLI_FAST_KDF = ["--kdf-memory-kib", "19456", "--kdf-iterations", "2", "--kdf-parallelism", "1"]
SETTINGS = Settings(kdf=FAST_KDF)
QUERY = sys.modules["mangostore.cli.query"]


def run(
    args: list[str], *, passphrase: str | None = PASSPHRASE, input: str | None = None
) -> Result:
    env = {common.PASSPHRASE_ENV: passphrase, common.RECOVERY_KEY_ENV: None, "COLUMNS": "80"}
    return CliRunner().invoke(cli, args, env=env, input=input)


@pytest.fixture
def vault(db_path: Path) -> Path:
    """An encrypted database where ann has a memory and a graph entity."""
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=SETTINGS).db as db:
        ann = db.users.create(username="ann")
        db.memory.remember(ann.id, "shell", "fish")
        db.kg.upsert_entity(ann.id, "person", "Ann")
        db.kg.close()
    return db_path


@pytest.fixture
def interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "stdin_is_interactive", lambda: True)


def schema_version(path: Path) -> int:
    with mangostore.open(path, passphrase=PASSPHRASE, create=False, migrate=False) as db:
        return db.schema_version


# -- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["-h"], ["status", "-h"], ["kg", "search", "-h"]])
def test_h_is_help(args: list[str]) -> None:
    result = run(args)

    assert result.exit_code == 0, result.output
    assert "Usage: " in result.stdout
    assert "-h, --help" in result.stdout


# -- migrate down ----------------------------------------------------------------------------


def test_migrate_down_without_a_terminal_needs_yes(vault: Path) -> None:
    latest = schema_version(vault)

    result = run(["migrate", str(vault), "--to", "3"])

    assert result.exit_code == 1
    assert "pass --yes" in result.stderr.splitlines()[-1]
    # What would go is said first: the migrations and the tables with their rows.
    assert "4 (ai_security_audit)" in result.stderr
    assert "ai_memory (1 row)" in result.stderr
    assert "internal tables" in result.stderr
    assert schema_version(vault) == latest


def test_migrate_down_answered_no_changes_nothing(vault: Path, interactive: None) -> None:
    latest = schema_version(vault)

    result = run(["migrate", str(vault), "--to", "3"], input="n\n")

    assert result.exit_code == 1
    assert "nothing was reverted" in result.stderr
    assert schema_version(vault) == latest


def test_migrate_down_answered_yes(vault: Path, interactive: None) -> None:
    result = run(["migrate", str(vault), "--to", "3", "--json"], input="y\n")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["to_version"] == 3
    assert "ai_memory" in data["dropped_tables"]
    assert "users" not in data["dropped_tables"]
    assert Path(data["copy"]).exists()
    assert schema_version(vault) == 3


def test_migrate_up_asks_nothing(vault: Path) -> None:
    assert run(["migrate", str(vault), "--to", "3", "--yes"]).exit_code == 0

    result = run(["migrate", str(vault)])

    assert result.exit_code == 0, result.output
    assert "Applied migrations" in result.stdout


# -- one way to name an output ---------------------------------------------------------------


def test_kg_export_output_and_its_old_form(vault: Path, tmp_path: Path) -> None:
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"

    with_o = run(["kg", "export", str(vault), "--user", "ann", "-o", str(new)])
    positional = run(["kg", "export", str(vault), str(old), "--user", "ann"])
    both = run(["kg", "export", str(vault), str(old), "--user", "ann", "-o", str(new)])

    assert with_o.exit_code == 0, with_o.output
    assert with_o.stderr == ""
    assert positional.exit_code == 0, positional.output
    assert "deprecated" in positional.stderr
    assert new.read_text() == old.read_text() != ""
    assert both.exit_code == 2


def test_privacy_export_output_and_its_old_form(vault: Path, tmp_path: Path) -> None:
    with_o = run(["privacy", "export", str(vault), "--user", "ann", "-o", str(tmp_path / "a")])
    with_out = run(["privacy", "export", str(vault), "--user", "ann", "--out", str(tmp_path / "b")])
    neither = run(["privacy", "export", str(vault), "--user", "ann"])

    assert with_o.exit_code == 0, with_o.output
    assert "deprecated" not in with_o.stderr
    assert with_out.exit_code == 0, with_out.output
    assert "--out is deprecated" in with_out.stderr
    assert (tmp_path / "b" / "manifest.json").exists()
    assert neither.exit_code == 2
    assert "-o DIR" in neither.output


# -- notify read ---------------------------------------------------------------------------


def test_reading_a_read_notification_again_is_not_an_error(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False).db as db:
        user = db.users.create(username="ann")
        db.notify.register_type("build", category="project", template="Build {name}")
        db.notify.set_preferences(user.id, "build", delivery_methods=["log"])
        first = db.notify.send(user.id, "build", {"name": "a"}).id
        second = db.notify.send(user.id, "build", {"name": "b"}).id
    assert run(["notify", "read", str(db_path), "--plain", first], passphrase=None).exit_code == 0

    again = run(["notify", "read", str(db_path), "--plain", first, second], passphrase=None)

    assert again.exit_code == 0, again.output
    assert "Marked 1 notification read." in again.stdout
    assert f"{first} was already read." in again.stdout
    with mangostore.open(db_path, encrypted=False, create=False) as db:
        assert db.notifications.get(second).status == "read"


# -- status and stats ----------------------------------------------------------------------


def test_status_groups_internal_tables_and_cuts_no_name(vault: Path) -> None:
    with mangostore.open(vault, passphrase=PASSPHRASE, create=False) as db:
        names = [t.name for t in db.status().tables]

    short = run(["status", str(vault), "--no-check"])
    full = run(["status", str(vault), "--no-check", "--all"])

    assert short.exit_code == 0, short.output
    assert "users" in short.stdout
    assert "schema_migrations" not in short.stdout
    assert re.search(r"internal \(\d+ tables\)", short.stdout)
    assert full.exit_code == 0, full.output
    assert "…" not in full.stdout
    for name in names:
        assert re.search(rf"\b{name}\b", full.stdout), name


def test_stats_groups_internal_tables_and_cuts_no_name(vault: Path) -> None:
    with mangostore.open(vault, passphrase=PASSPHRASE, create=False) as db:
        report = db.performance_report()
    names = [o.name for o in report.disk_usage.objects]

    short = run(["stats", str(vault)])
    full = run(["stats", str(vault), "--all"])

    assert short.exit_code == 0, short.output
    assert "sqlite_autoindex" not in short.stdout
    assert "internal (" in short.stdout
    assert full.exit_code == 0, full.output
    assert "…" not in full.stdout
    for name in names:
        assert re.search(rf"\b{name}\b", full.stdout), name


# -- refusals that say what is wrong -----------------------------------------------------------


def test_init_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "x.db"

    result = run(["init", str(path), *CLI_FAST_KDF])

    assert result.exit_code == 1
    assert f"the folder {path.parent} does not exist" in result.stderr
    assert "lock" not in result.stderr
    assert "Errno" not in result.stderr
    assert not path.parent.exists()


def test_a_text_file_is_not_a_database(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n", encoding="utf-8")

    result = run(["status", str(notes)], passphrase=None)

    assert result.exit_code == 1
    assert "is not a database mangostore can open" in result.stderr
    assert "no passphrase" not in result.stderr  # said before asking for one


def test_a_text_file_as_keyring_is_not_a_keyring(vault: Path) -> None:
    keyring_path(vault).write_text("my passwords, do not lose\n", encoding="utf-8")

    result = run(["status", str(vault)], passphrase=None)

    assert result.exit_code == 1
    assert "is not a mangostore keyring" in result.stderr


def test_a_damaged_json_keyring_is_left_to_the_library(vault: Path) -> None:
    ring = keyring_path(vault)
    ring.write_text(ring.read_text()[:40], encoding="utf-8")

    result = run(["status", str(vault)])

    assert result.exit_code == 1
    assert "damaged" in result.stderr


@pytest.mark.parametrize("passphrase", ["x", "seven77"])
def test_a_weak_passphrase_is_refused(db_path: Path, passphrase: str) -> None:
    result = run(["init", str(db_path), *CLI_FAST_KDF], passphrase=passphrase)

    assert result.exit_code == 1
    assert "--weak-passphrase" in result.stderr
    assert passphrase not in result.stderr
    assert not db_path.exists()
    assert not keyring_path(db_path).exists()


def test_a_weak_passphrase_is_accepted_when_asked(db_path: Path) -> None:
    result = run(["init", str(db_path), *CLI_FAST_KDF, "--weak-passphrase"], passphrase="x")

    assert result.exit_code == 0, result.output
    assert run(["status", str(db_path), "--no-check"], passphrase="x").exit_code == 0


def test_passwd_refuses_a_weak_new_passphrase(vault: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.write_text("short\n", encoding="utf-8")
    before = keyring_path(vault).read_bytes()

    refused = run(["passwd", str(vault), "--new-key-file", str(new)])
    accepted = run(["passwd", str(vault), "--new-key-file", str(new), "--weak-passphrase"])

    assert refused.exit_code == 1
    assert "at least 8" in refused.stderr
    assert accepted.exit_code == 0, accepted.output
    assert keyring_path(vault).read_bytes() != before


# -- logging -------------------------------------------------------------------------------


def test_verbose_shows_the_librarys_log(vault: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def logging_statement(*args: object, **kwargs: object) -> QueryResult:
        logging.getLogger("mangostore.slow_queries").warning("slow query (stand-in)")
        return QueryResult(["n"], [(1,)], 0)

    monkeypatch.setattr(QUERY, "run_statement", logging_statement)

    quiet = run(["query", str(vault), "SELECT 1"])
    verbose = run(["-v", "query", str(vault), "SELECT 1"])

    assert quiet.exit_code == verbose.exit_code == 0
    assert "slow query" not in quiet.stderr
    assert "mangostore.slow_queries: WARNING: slow query (stand-in)" in verbose.stderr
    assert len(logging.getLogger("mangostore").handlers) == 1  # only the NullHandler is left
