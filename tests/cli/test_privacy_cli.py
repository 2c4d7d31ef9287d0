"""``mangostore privacy retention|export|erase``, through click's runner."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common
from mangostore.privacy import read_archive, verify_export
from mangostore.privacy.service import DAY_MS

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False)
#: The module (``mangostore.cli.privacy`` as an attribute is the click group).
COMMANDS = sys.modules["mangostore.cli.privacy"]


def run(args: list[str], *, input: str | None = None) -> Result:
    env = {common.PASSPHRASE_ENV: PASSPHRASE, common.RECOVERY_KEY_ENV: None}
    return CliRunner().invoke(cli, args, env=env, input=input)


@pytest.fixture
def vault(db_path: Path) -> tuple[Path, str]:
    """An encrypted database where alice has old and new commands and an audit event."""
    now = int(time.time() * 1000)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=SETTINGS).db as db:
        alice = db.users.create(username="alice", security_profile={"pin": "1234"})
        db.command_history.create(
            user_id=alice.id, command="echo old", timestamp=now - 100 * DAY_MS
        )
        db.command_history.create(user_id=alice.id, command="echo new", timestamp=now)
        db.audit.append("auth", "info", "auth", user_id=alice.id, event_data={"ip": "10.0.0.1"})
    return db_path, alice.id


def test_retention_archives_old_commands(vault: tuple[Path, str]) -> None:
    path, _ = vault
    result = run(["privacy", "retention", str(path), "--command-history-days", "30", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    commands = next(t for t in report["tables"] if t["table"] == "command_history")
    assert commands["archived"] == 1
    assert commands["deleted"] == 1
    with mangostore.open(path, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        archive = read_archive(commands["archive"], db)
        assert [r["command"] for r in archive.rows] == ["echo old"]
        assert [c.command for c in db.command_history.list()] == ["echo new"]


def test_retention_prints_a_summary(vault: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = vault
    result = run(["privacy", "retention", str(path), "--archive-dir", str(tmp_path / "arch")])
    assert result.exit_code == 0, result.output
    assert "command_history: 1 deleted, 1 archived to" in result.stdout
    assert (tmp_path / "arch").is_dir()


def test_export_writes_the_users_rows_and_a_manifest(
    vault: tuple[Path, str], tmp_path: Path
) -> None:
    path, alice = vault
    out = tmp_path / "alice-export"
    result = run(["privacy", "export", str(path), "--user", "alice", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.stdout
    assert verify_export(out) == []
    users = [json.loads(line) for line in (out / "users.jsonl").read_text().splitlines()]
    assert users[0]["id"] == alice
    assert users[0]["security_profile"] == {"pin": "1234"}
    result = run(["privacy", "export", str(path), "--user", "nobody", "--out", str(out)])
    assert result.exit_code == 1
    assert "no user named" in result.stderr


def test_erase_asks_for_confirmation(vault: tuple[Path, str]) -> None:
    path, alice = vault
    result = run(["privacy", "erase", str(path), "--user", "alice"])
    assert result.exit_code == 1
    assert "--yes" in result.stderr
    with mangostore.open(path, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        assert db.users.exists(alice)


def test_erase_answered_no_changes_nothing(
    vault: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, alice = vault
    monkeypatch.setattr(COMMANDS, "stdin_is_interactive", lambda: True)
    result = run(["privacy", "erase", str(path), "--user", alice], input="n\n")
    assert result.exit_code == 130
    with mangostore.open(path, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        assert db.users.exists(alice)


def test_erase_with_confirmation_or_yes(
    vault: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, alice = vault
    monkeypatch.setattr(COMMANDS, "stdin_is_interactive", lambda: True)
    result = run(["privacy", "erase", str(path), "--user", "alice"], input="y\n")
    assert result.exit_code == 0, result.output
    assert "Erased alice:" in result.stdout
    with mangostore.open(path, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        assert not db.users.exists(alice)
        assert db.command_history.count() == 0
        assert db.audit.verify().ok
    # Erasing the same id again is allowed (it finishes an interrupted erasure).
    result = run(["privacy", "erase", str(path), "--user", alice, "--yes"])
    assert result.exit_code == 0, result.output
    assert "0 rows deleted" in result.stdout
