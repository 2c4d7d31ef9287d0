"""``mangostore audit verify`` and ``mangostore audit checkpoint``, through click's runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False)


def run(args: list[str], *, passphrase: str | None = PASSPHRASE) -> Result:
    env = {common.PASSPHRASE_ENV: passphrase, common.RECOVERY_KEY_ENV: None}
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def vault(db_path: Path) -> Path:
    """An encrypted database with five audit events."""
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=SETTINGS).db as db:
        user = db.users.create(username="alice")
        for i in range(5):
            db.audit.append("auth", "info", "auth", user_id=user.id, event_data={"i": i})
    return db_path


def test_verify_reports_an_intact_log(vault: Path) -> None:
    result = run(["audit", "verify", str(vault)])
    assert result.exit_code == 0, result.output
    assert "Events checked: 5 (sequence 1 to 5)" in result.stdout
    assert "The audit log verifies." in result.stdout


def test_verify_json(vault: Path) -> None:
    result = run(["audit", "verify", "--json", str(vault)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["events_checked"] == 5


def test_verify_names_the_first_broken_event(vault: Path) -> None:
    with mangostore.open(vault, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        db.execute("DROP TRIGGER security_events_append_only_update")
        db.execute("UPDATE security_events SET severity = 'critical' WHERE seq = 3")
    result = run(["audit", "verify", str(vault)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the audit log does not verify at event 3:")
    assert len(result.stderr.splitlines()) == 1


def test_checkpoint_to_a_file_then_verify_against_it(vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit.checkpoint"
    result = run(["audit", "checkpoint", str(vault), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert json.loads(out.read_text())["seq"] == 5
    assert run(["audit", "verify", str(vault), "--checkpoint", str(out)]).exit_code == 0
    with mangostore.open(vault, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        db.execute("DROP TRIGGER security_events_append_only_delete")
        db.execute("DELETE FROM security_events WHERE seq >= 4")
    assert run(["audit", "verify", str(vault)]).exit_code == 0  # the chain alone cannot tell
    result = run(["audit", "verify", str(vault), "--checkpoint", str(out)])
    assert result.exit_code == 1
    assert "at event 4" in result.stderr


def test_checkpoint_to_stdout_and_a_forged_one_is_refused(vault: Path, tmp_path: Path) -> None:
    result = run(["audit", "checkpoint", str(vault)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    doc["seq"] = 1
    forged = tmp_path / "forged.checkpoint"
    forged.write_text(json.dumps(doc))
    result = run(["audit", "verify", str(vault), "--checkpoint", str(forged)])
    assert result.exit_code == 1
    assert "not genuine" in result.stderr
    garbage = tmp_path / "garbage"
    garbage.write_text("not a checkpoint")
    result = run(["audit", "verify", str(vault), "--checkpoint", str(garbage)])
    assert result.exit_code == 1
    assert "checkpoint" in result.stderr


def test_a_database_without_a_keyring_cannot_be_verified(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False).db as db:
        db.audit.append("auth", "info", "auth")
    result = run(["audit", "verify", "--plain", str(db_path)], passphrase=None)
    assert result.exit_code == 1
    assert "no audit key" in result.stderr
    result = run(["audit", "checkpoint", "--plain", str(db_path)], passphrase=None)
    assert result.exit_code == 1
    assert "no audit key" in result.stderr


def test_an_old_schema_is_told_to_migrate(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False, migrate=False, settings=SETTINGS).db as db:
        db.migrate(to=6)
    result = run(["audit", "verify", "--plain", str(db_path)], passphrase=None)
    assert result.exit_code == 1
    assert "mangostore migrate" in result.stderr


def test_a_failed_checkpoint_write_keeps_the_previous_file(
    vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "audit.checkpoint"
    assert run(["audit", "checkpoint", str(vault), "-o", str(out)]).exit_code == 0
    previous = out.read_bytes()
    with mangostore.open(vault, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        db.audit.append("auth", "info", "auth", user_id=None, event_data={"i": 5})

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mangostore.files.os.fsync", full_disk)
    result = run(["audit", "checkpoint", str(vault), "-o", str(out)])
    assert result.exit_code != 0
    assert out.read_bytes() == previous
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    out.chmod(0o644)
    assert run(["audit", "checkpoint", str(vault), "-o", str(out)]).exit_code == 0
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert json.loads(out.read_text())["seq"] == 6
