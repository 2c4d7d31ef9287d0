"""Devices syncing through ``mangostore serve-sync`` in a process of its own, on
loopback, over the SQLite store and over PostgreSQL: attach, join from a snapshot,
a restart of the server in the middle, the command line."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.sync.server.servers import ServerProcess

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common
from mangostore.errors import SyncAuthError, SyncTransportError, WrongPassphraseError
from mangostore.sync.joining import join

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False)
CANARY = "canary-7f3a-snowdrop"


def make_first(path: Path) -> mangostore.Database:
    db, _ = mangostore.create(path, passphrase=PASSPHRASE, settings=SETTINGS)
    user = db.users.create(username="ann", email=f"{CANARY}@example.org")
    for i in range(30):
        db.projects.create(user_id=user.id, name=f"{CANARY}-{i}", path=f"/src/p{i}")
    return db


def names(db: mangostore.Database) -> set[str]:
    return {str(p.name) for p in db.projects.list(limit=1000)}


def test_devices_join_and_sync_through_the_server(
    sync_server: ServerProcess, tmp_path: Path
) -> None:
    first = make_first(tmp_path / "laptop.db")
    join_url = first.sync.attach(sync_server.url)
    assert join_url == f"{sync_server.url}/vaults/{first.sync.vault_id}"
    first.sync.sync()
    assert first.sync.upload_snapshot() == first.sync.status().cursor
    owner = first.users.list()[0]
    first.projects.create(user_id=owner.id, name="after the snapshot", path="/src/late")
    first.sync.sync()

    with pytest.raises(WrongPassphraseError):
        join(join_url, tmp_path / "wrong.db", passphrase="not the passphrase", settings=SETTINGS)
    assert not (tmp_path / "wrong.db").exists()

    second, recovery_key = join(
        join_url, tmp_path / "desktop.db", passphrase=PASSPHRASE, settings=SETTINGS
    )
    assert recovery_key is not None
    with second:
        assert second.sync.vault_id == first.sync.vault_id
        assert second.sync.device_id != first.sync.device_id
        assert names(second) == names(first)
        assert second.users.get(owner.id).email == f"{CANARY}@example.org"
        second.projects.create(user_id=owner.id, name="from the desktop", path="/src/desk")
        second.sync.sync()
        assert second.sync.relay == sync_server.url
    first.sync.sync()
    assert "from the desktop" in names(first)
    with first.sync.server(sync_server.url) as transport:
        assert len(transport.devices()) == 2
    first.close()


def test_the_store_file_holds_no_plaintext(tmp_path: Path) -> None:
    store = tmp_path / "relay.sqlite"
    server = ServerProcess("sqlite://" + str(store), log=tmp_path / "server.log")
    server.start()
    try:
        first = make_first(tmp_path / "laptop.db")
        first.sync.attach(server.url)
        first.sync.sync()
        first.sync.upload_snapshot()
        first.close()
    finally:
        server.stop()
    held = b"".join(p.read_bytes() for p in tmp_path.glob("relay.sqlite*"))
    assert len(held) > 10_000
    for text in (CANARY, "ann", "/src/p1", PASSPHRASE):
        assert text.encode() not in held


def test_a_restarted_server_loses_nothing(sync_server: ServerProcess, tmp_path: Path) -> None:
    first = make_first(tmp_path / "laptop.db")
    join_url = first.sync.attach(sync_server.url)
    first.sync.sync()
    second, _ = join(join_url, tmp_path / "desktop.db", passphrase=PASSPHRASE, settings=SETTINGS)
    owner = first.users.list()[0]

    sync_server.stop()
    first.projects.create(user_id=owner.id, name="while down", path="/src/down")
    first.sync.connect(first.sync.server(sync_server.url, retries=0))
    with pytest.raises(SyncTransportError, match="cannot be reached"):
        first.sync.sync()
    assert first.sync.status().pending_changes >= 1  # nothing lost

    # The server comes back while the device is retrying with backoff.
    first.sync.connect(first.sync.server(sync_server.url, retries=8, backoff_s=0.2))
    back = threading.Timer(0.5, sync_server.start)
    back.start()
    try:
        report = first.sync.sync()
    finally:
        back.join()
    assert report.pushed_changes >= 1
    second.sync.sync()
    assert "while down" in names(second)
    first.close()
    second.close()


def cli_run(args: list[str], **env: str | None) -> Result:
    return CliRunner().invoke(
        cli, args, env={common.PASSPHRASE_ENV: PASSPHRASE, common.RECOVERY_KEY_ENV: None, **env}
    )


def cli_json(args: list[str], **env: str | None) -> Any:
    result = cli_run([*args, "--json"], **env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


CLI_FAST_KDF = ["--kdf-memory-kib", "19456", "--kdf-iterations", "2", "--kdf-parallelism", "1"]


def test_the_command_line_attaches_joins_lists_and_removes(
    sync_server: ServerProcess, tmp_path: Path
) -> None:
    laptop, desktop, phone = (tmp_path / n for n in ("laptop.db", "desktop.db", "phone.db"))
    make_first(laptop).close()

    attached = cli_json(["sync", "join", sync_server.url, str(laptop)])
    assert attached["joined"] is False
    join_url = attached["join_url"]
    assert cli_json(["sync", "now", str(laptop)])["pushed_changes"] >= 31
    assert cli_json(["sync", "snapshot", str(laptop)])["cursor"] >= 1

    made = cli_json(["sync", "join", join_url, str(desktop), *CLI_FAST_KDF])
    assert made["joined"] is True
    assert made["recovery_key"]
    made = cli_json(["sync", "join", join_url, str(phone), *CLI_FAST_KDF])
    listed = cli_json(["sync", "devices", str(laptop)])["devices"]
    assert {d["device_id"] for d in listed} >= {attached["device_id"], made["device_id"]}

    # Joining with a URL that names no vault, on a path that does not exist, says how.
    result = cli_run(["sync", "join", sync_server.url, str(tmp_path / "nowhere.db")])
    assert result.exit_code == 1
    assert "vaults/<vault id>" in result.stderr

    removed = cli_json(["sync", "remove-device", str(laptop), made["device_id"]])
    assert removed["removed"] == made["device_id"]
    result = cli_run(["sync", "now", str(phone)])
    assert result.exit_code == 1
    assert "removed" in result.stderr
    with mangostore.open(phone, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        db.sync.connect(db.sync.server(db.sync.relay or ""))
        with pytest.raises(SyncAuthError):
            db.sync.sync()
    with mangostore.open(desktop, passphrase=PASSPHRASE, settings=SETTINGS) as db:
        assert db.projects.count() == 30
