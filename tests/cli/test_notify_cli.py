"""``mangostore notify list|send|read``, driven through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore.cli import cli, common


def run(args: list[str], *, passphrase: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, env={common.PASSPHRASE_ENV: passphrase})


@pytest.fixture
def plain_file(db_path: Path) -> Path:
    """An unencrypted database with a user ``ann`` and a type ``build``."""
    with mangostore.create(db_path, encrypted=False).db as db:
        db.users.create(username="ann")
        db.notify.register_type("build", category="project", template="Build {name} finished")
    return db_path


def sent_id(result: Result) -> str:
    assert result.exit_code == 0, result.output
    first = result.stdout.split("Sent notification ", 1)[1]
    return first.split(" ", 1)[0]


def test_send_list_read(plain_file: Path) -> None:
    path = str(plain_file)
    result = run(["notify", "send", path, "--plain", "--user", "ann", "--type", "build",
                  "--param", "name={evil}=x", "--priority", "high"])  # fmt: skip
    notification_id = sent_id(result)
    assert "(high): pending" in result.stdout
    assert "Delivered by: log." in result.stdout
    assert "Waiting for the application: desktop." in result.stdout

    listed = run(["notify", "list", path, "--plain", "--user", "ann", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["id"] == notification_id
    assert row["message"] == "Build {evil}=x finished"
    assert row["type"] == "build"
    assert row["status"] == "pending"

    table = run(["notify", "list", path, "--plain", "--user", "ann"])
    assert table.exit_code == 0, table.output
    assert notification_id in table.stdout
    assert "build: Build {evil}=x finished" in table.stdout

    with mangostore.open(plain_file, encrypted=False) as db:
        db.notify.register_deliverer(mangostore.notify.RecordingDeliverer("desktop"))
        db.notify.deliver_due()
    unread = run(["notify", "list", path, "--plain", "--user", "ann", "--unread", "--json"])
    assert [r["id"] for r in json.loads(unread.stdout)] == [notification_id]

    read = run(["notify", "read", path, "--plain", notification_id])
    assert read.exit_code == 0, read.output
    assert "Marked 1 notification read." in read.stdout
    unread = run(["notify", "list", path, "--plain", "--user", "ann", "--unread"])
    assert "No unread notifications for ann." in unread.stdout


def test_reading_twice_is_one_error_line(plain_file: Path) -> None:
    with mangostore.open(plain_file, encrypted=False) as db:
        user = db.users.get_by_username("ann")
        assert user is not None
        db.notify.set_preferences(user.id, "build", delivery_methods=["log"])
        notification_id = db.notify.send(user.id, "build", {"name": "x"}).id
    assert run(["notify", "read", str(plain_file), "--plain", notification_id]).exit_code == 0
    again = run(["notify", "read", str(plain_file), "--plain", notification_id, "nope"])
    assert again.exit_code == 1
    assert again.stderr.startswith("error: ")
    assert len(again.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "name=x", "--param", "extra=y"], "no placeholder for extra"),
        ([], "needs the parameter"),
        (["--param", "name=x", "--user", "bob"], "no user named"),
        (["--param", "name=x", "--type", "deploy"], "no notification type"),
    ],
)
def test_send_errors_are_one_line(plain_file: Path, args: list[str], message: str) -> None:
    base = ["notify", "send", str(plain_file), "--plain", "--user", "ann", "--type", "build"]
    result = run(base + args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    with mangostore.open(plain_file, encrypted=False) as db:
        assert db.notifications.count() == 0


def test_a_parameter_without_equals_is_bad_usage(plain_file: Path) -> None:
    result = run(["notify", "send", str(plain_file), "--plain", "--user", "ann",
                  "--type", "build", "--param", "name"])  # fmt: skip
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output


def test_an_encrypted_database_uses_the_passphrase(db_path: Path) -> None:
    settings = mangostore.Settings(kdf=FAST_KDF)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        user = db.users.create(username="ann")
        db.notify.register_type("hi", category="ai", template="Hi {who}")
    result = run(["notify", "send", str(db_path), "--user", user.id, "--type", "hi",
                  "--param", "who=you"], passphrase=PASSPHRASE)  # fmt: skip
    sent_id(result)
    wrong = run(["notify", "list", str(db_path), "--user", "ann"], passphrase="wrong")
    assert wrong.exit_code == 1


def test_an_old_schema_is_refused_with_a_hint(db_path: Path) -> None:
    with mangostore.create(db_path, encrypted=False).db as db:
        db.migrate(6)
    result = run(["notify", "list", str(db_path), "--plain", "--user", "ann"])
    assert result.exit_code == 1
    assert "mangostore migrate" in result.stderr
