"""``mangostore sync``: two file databases of one vault syncing through a relay folder."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False)
CLI_FAST_KDF = ["--kdf-memory-kib", "19456", "--kdf-iterations", "2", "--kdf-parallelism", "1"]
RECOVERY_KEY = re.compile(r"\b[A-Z2-7]{4}(?:-[A-Z2-7]{1,4}){12}\b")
NEW_PASSPHRASE = "another long passphrase"
#: The module (``mangostore.cli.sync`` as an attribute is the click group).
COMMANDS = sys.modules["mangostore.cli.sync"]


def run(args: list[str], *, relay: Path | None = None) -> Result:
    """Invoke the CLI with the passphrase, and the relay folder only when given."""
    env = {
        common.PASSPHRASE_ENV: PASSPHRASE,
        common.RECOVERY_KEY_ENV: None,
        COMMANDS.RELAY_ENV: None if relay is None else str(relay),
    }
    return CliRunner().invoke(cli, args, env=env)


def ok_json(args: list[str], **kwargs: Any) -> Any:
    result = run([*args, "--json"], **kwargs)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Result, contains: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert contains in lines[0]
    return lines[0]


@pytest.fixture
def relay(tmp_path: Path) -> Path:
    """Where the relay folder goes (not made yet: ``sync enable`` makes it)."""
    return tmp_path / "relay"


@pytest.fixture
def first(tmp_path: Path) -> Path:
    """An encrypted file database where ann exists, sync not enabled yet."""
    path = tmp_path / "laptop.db"
    with mangostore.create(path, passphrase=PASSPHRASE, settings=SETTINGS).db as db:
        db.users.create(username="ann", email="ann@example.org")
    return path


@pytest.fixture
def pair(first: Path, relay: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two devices of one vault, sync enabled on both, made through the CLI."""
    assert run(["sync", "enable", str(first), "--relay", str(relay)]).exit_code == 0
    second = tmp_path / "desktop.db"
    new_key = tmp_path / "new-passphrase.txt"
    new_key.write_text(NEW_PASSPHRASE + "\n", encoding="utf-8")
    new_device = ["sync", "new-device", str(first), str(second)]
    result = run([*new_device, "--new-key-file", str(new_key), *CLI_FAST_KDF])
    assert result.exit_code == 0, result.output
    return first, second


def passphrase_of(path: Path) -> str:
    """The first device has the test passphrase; the one ``pair`` made, its own."""
    return PASSPHRASE if path.name == "laptop.db" else NEW_PASSPHRASE


def open_device(path: Path) -> mangostore.Database:
    return mangostore.open(path, passphrase=passphrase_of(path), create=False, settings=SETTINGS)


def run_on(path: Path, args: list[str], *, relay: Path | None = None) -> Result:
    """Run ``sync ARGS[0] PATH ARGS[1:]`` with that device's passphrase."""
    env = {
        common.PASSPHRASE_ENV: passphrase_of(path),
        common.RECOVERY_KEY_ENV: None,
        COMMANDS.RELAY_ENV: None if relay is None else str(relay),
    }
    return CliRunner().invoke(cli, ["sync", args[0], str(path), *args[1:]], env=env)


def sync_json(path: Path, relay: Path) -> dict[str, Any]:
    result = run_on(path, ["now", "--json"], relay=relay)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# -- the round trip ----------------------------------------------------------------------------


def test_sync_h_lists_the_commands() -> None:
    result = run(["sync", "-h"])
    assert result.exit_code == 0, result.output
    for name in ("enable", "status", "now", "conflicts", "resolve", "strategy", "new-device"):
        assert name in result.stdout


def test_two_devices_sync_through_a_relay_folder(pair: tuple[Path, Path], relay: Path) -> None:
    laptop, desktop = pair

    sent = sync_json(laptop, relay)
    got = sync_json(desktop, relay)

    assert sent["pushed_changes"] >= 1
    assert got["applied"] >= 1
    with open_device(desktop) as db:
        ann = db.users.get_by_username("ann")
        assert ann is not None
        assert ann.email == "ann@example.org"
        db.users.create(username="bob")
    sync_json(desktop, relay)
    assert sync_json(laptop, relay)["applied"] >= 1
    with open_device(laptop) as db:
        assert db.users.get_by_username("bob") is not None
    stored = b"".join(p.read_bytes() for p in relay.rglob("*") if p.is_file())
    assert b"ann@example.org" not in stored


def test_now_in_text_reports_the_counts(pair: tuple[Path, Path], relay: Path) -> None:
    laptop, _ = pair
    result = run_on(laptop, ["now"], relay=relay)
    assert result.exit_code == 0, result.output
    assert re.match(r"Pushed \d+ change\(s\) in \d+ batch\(es\); pulled \d+", result.stdout)


def test_new_device_shows_its_recovery_key_once(first: Path, tmp_path: Path) -> None:
    second = tmp_path / "other.db"

    result = run(["sync", "new-device", str(first), str(second), *CLI_FAST_KDF])

    assert result.exit_code == 0, result.output
    (key,) = RECOVERY_KEY.findall(result.stdout)
    assert result.output.count(key) == 1
    assert "shown only this once" in result.stdout
    assert PASSPHRASE not in result.output
    # The source had no sync yet: its data would never come, so the user is told.
    assert "sync is not enabled on" in result.stderr
    with mangostore.open(second, passphrase=PASSPHRASE, create=False) as db:
        assert db.sync.enabled


def test_new_device_json_names_the_vault_and_the_key(first: Path, tmp_path: Path) -> None:
    data = ok_json(["sync", "new-device", str(first), str(tmp_path / "other.db"), *CLI_FAST_KDF])

    with mangostore.open(first, passphrase=PASSPHRASE, create=False) as db:
        assert data["vault_id"] == db.sync.vault_id
        assert data["device_id"] != db.sync.device_id
    assert RECOVERY_KEY.fullmatch(data["recovery_key"])
    assert data["source"] == str(first)


def test_new_device_refuses_an_existing_path_and_a_weak_passphrase(
    first: Path, tmp_path: Path
) -> None:
    one_line_error(
        run(["sync", "new-device", str(first), str(first), *CLI_FAST_KDF]), "already exists"
    )
    weak = tmp_path / "weak.txt"
    weak.write_text("short\n", encoding="utf-8")
    new_device = ["sync", "new-device", str(first), str(tmp_path / "n.db")]
    result = run([*new_device, "--new-key-file", str(weak), *CLI_FAST_KDF])
    one_line_error(result, "--weak-passphrase")
    assert not (tmp_path / "n.db").exists()


# -- enable and status -------------------------------------------------------------------------


def test_enable_makes_the_relay_folder_and_marks_every_row(first: Path, relay: Path) -> None:
    data = ok_json(["sync", "enable", str(first)], relay=relay)

    assert relay.is_dir()
    assert data["enabled"] is True
    assert data["already_enabled"] is False
    assert data["marked"] >= 1
    assert data["pending_changes"] == data["marked"]
    again = ok_json(["sync", "enable", str(first)], relay=relay)
    assert again["already_enabled"] is True
    assert again["marked"] == 0


def test_status_json(pair: tuple[Path, Path], relay: Path) -> None:
    laptop, desktop = pair
    before = ok_json(["sync", "status", str(laptop)])
    assert before["enabled"] is True
    assert before["pending_changes"] >= 1
    assert before["last_push"] is None
    # No relay named: the one 'sync enable' saved is described.
    assert before["relay"]["path"] == str(relay)

    sync_json(laptop, relay)
    after = ok_json(["sync", "status", str(laptop)], relay=relay)
    other = run_on(desktop, ["status", "--json"], relay=relay)

    assert after["pending_changes"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", after["last_push"])
    assert after["vault_id"] == json.loads(other.stdout)["vault_id"]
    assert after["relay"]["batches"] >= 1
    assert json.loads(other.stdout)["relay"]["to_pull"] == after["relay"]["batches"]
    assert after["last_error"] is None


def test_status_in_text_and_an_unreachable_relay(first: Path, tmp_path: Path) -> None:
    result = run(["sync", "status", str(first)], relay=tmp_path / "unplugged")

    assert result.exit_code == 0, result.output
    assert "sync enable" in result.stdout  # not enabled yet: it says how
    assert "does not exist" in result.stdout


def test_now_before_enable_says_how(first: Path, relay: Path) -> None:
    relay.mkdir()
    one_line_error(run(["sync", "now", str(first)], relay=relay), "sync enable")


def test_now_without_a_relay_uses_the_saved_one(pair: tuple[Path, Path], relay: Path) -> None:
    data = ok_json(["sync", "now", str(pair[0])])  # 'sync enable' saved the folder
    assert data["relay"] == str(relay)
    with mangostore.open(pair[0], passphrase=PASSPHRASE, settings=SETTINGS) as db:
        db.sync.save_relay(None)
    result = run(["sync", "now", str(pair[0])])
    assert result.exit_code == 2
    assert "MANGOSTORE_SYNC_RELAY" in result.stderr


def test_now_with_a_missing_relay_folder_says_what_to_do(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    result = run(["sync", "now", str(pair[0]), "--relay", str(tmp_path / "stick")])
    one_line_error(result, "does not exist: mount the shared folder")
    assert ok_json(["sync", "status", str(pair[0])])["last_error"] is not None


def test_an_unencrypted_database_cannot_sync(tmp_path: Path, relay: Path) -> None:
    path = tmp_path / "plain.db"
    mangostore.create(path, encrypted=False).db.close()
    one_line_error(run(["sync", "enable", str(path)], relay=relay), "unencrypted")


# -- conflicts -----------------------------------------------------------------------------------


@pytest.fixture
def conflicted(pair: tuple[Path, Path], relay: Path) -> Path:
    """The pair after both changed ann's e-mail, a manual column: the desktop keeps a
    conflict. Returns the desktop."""
    laptop, desktop = pair
    for device in pair:
        result = run_on(device, ["strategy", "users", "email", "manual"])
        assert result.exit_code == 0, result.output
    sync_json(laptop, relay)
    sync_json(desktop, relay)
    for device, email in ((laptop, "ann@laptop.example"), (desktop, "ann@desktop.example")):
        with open_device(device) as db:
            ann = db.users.get_by_username("ann")
            assert ann is not None
            db.users.update(ann.id, email=email)
    sync_json(laptop, relay)
    assert sync_json(desktop, relay)["conflicts"] == 1
    return desktop


def test_conflicts_are_listed_and_resolved(conflicted: Path) -> None:
    listed = json.loads(run_on(conflicted, ["conflicts", "--json"]).stdout)["conflicts"]
    assert len(listed) == 1
    (conflict,) = listed
    assert conflict["table"] == "users"
    assert conflict["column"] == "email"
    assert {conflict["kept"], conflict["lost"]} == {"ann@laptop.example", "ann@desktop.example"}
    assert conflict["resolved"] is None
    text = run_on(conflicted, ["conflicts"])
    assert conflict["id"] in text.stdout
    assert "kept: " in text.stdout

    result = run_on(conflicted, ["resolve", conflict["id"], "--choose", "lost", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resolution"] == "lost"
    with open_device(conflicted) as db:
        ann = db.users.get_by_username("ann")
        assert ann is not None
        assert ann.email == conflict["lost"]
    assert run_on(conflicted, ["conflicts"]).stdout.strip() == "No open conflicts."
    every = json.loads(run_on(conflicted, ["conflicts", "--all", "--json"]).stdout)
    assert every["conflicts"][0]["resolution"] == "lost"
    assert every["conflicts"][0]["resolved"] is not None


def test_resolving_an_unknown_conflict_is_a_clear_error(pair: tuple[Path, Path]) -> None:
    result = run_on(pair[0], ["resolve", "no-such-id", "--choose", "kept"])
    line = one_line_error(result, "no open sync conflict 'no-such-id'")
    assert "mangostore sync conflicts" in line


def test_resolving_twice_is_a_clear_error(conflicted: Path) -> None:
    listed = json.loads(run_on(conflicted, ["conflicts", "--json"]).stdout)["conflicts"]
    assert run_on(conflicted, ["resolve", listed[0]["id"], "--choose", "kept"]).exit_code == 0
    one_line_error(run_on(conflicted, ["resolve", listed[0]["id"], "--choose", "kept"]), "no open")


def test_resolve_needs_a_choice(pair: tuple[Path, Path]) -> None:
    assert run_on(pair[0], ["resolve", "some-id"]).exit_code == 2
    assert run_on(pair[0], ["resolve", "some-id", "--choose", "both"]).exit_code == 2


def test_strategy(pair: tuple[Path, Path]) -> None:
    laptop, _ = pair
    data = ok_json(["sync", "strategy", str(laptop), "users", "email", "manual"])
    assert data == {"path": str(laptop), "table": "users", "column": "email", "strategy": "manual"}
    text = run(["sync", "strategy", str(laptop), "users", "email", "lww"])
    assert text.exit_code == 0, text.output
    assert "users.email: lww" in text.stdout

    one_line_error(
        run(["sync", "strategy", str(laptop), "users", "no_such", "manual"]), "no column"
    )
    assert run(["sync", "strategy", str(laptop), "users", "email", "newest"]).exit_code == 2
