"""``mangostore files put|get|ls|rm|check`` through the command line runner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result
from tests.conftest import PASSPHRASE
from tests.files.conftest import Vault, chunk_files, noise

from mangostore.cli import cli

MiB = 1024 * 1024


def run(args: list[str], input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, args, env={"MANGOSTORE_PASSPHRASE": PASSPHRASE}, input=input)


def test_put_ls_get_rm(vault: Vault, tmp_path: Path) -> None:
    data = noise(3 * MiB, seed=1)
    source = tmp_path / "take1.wav"
    source.write_bytes(data)
    db = str(vault.path)
    put = run(["files", "put", db, "ann", str(source), "--metadata", '{"take": 1}', "--json"])
    assert put.exit_code == 0, put.output
    record = json.loads(put.stdout)
    assert (record["name"], record["size"]) == ("take1.wav", len(data))
    assert record["metadata"] == {"take": 1}
    assert record["created_at"].endswith("Z")
    text = run(
        ["files", "put", db, "ann", "-", "--name", "note.txt", "--media-type", "text/plain"],
        input=b"hi",
    )
    assert text.exit_code == 0
    assert text.stdout.startswith("Stored ")
    note_id = text.stdout.split()[1].rstrip(":")

    listed = run(["files", "ls", db, "ann", "--json"])
    doc = json.loads(listed.stdout)
    assert [f["name"] for f in doc["files"]] == ["take1.wav", "note.txt"]
    assert doc["usage"]["bytes"] == len(data) + 2
    assert doc["usage"]["quota"] is None
    only = json.loads(
        run(["files", "ls", db, "ann", "--media-type", "text/plain", "--json"]).stdout
    )
    assert [f["name"] for f in only["files"]] == ["note.txt"]
    table = run(["files", "ls", db, "ann"])
    assert "take1.wav" in table.stdout
    assert "2 files" in table.stdout

    out = tmp_path / "back.wav"
    got = run(["files", "get", db, record["id"], "-o", str(out)])
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == data
    again = run(["files", "get", db, record["id"], "-o", str(out)])
    assert again.exit_code == 1
    assert "--overwrite" in again.stderr
    replaced = run(["files", "get", db, record["id"], "-o", str(out), "--overwrite", "--json"])
    assert json.loads(replaced.stdout)["output"] == str(out)
    assert run(["files", "get", db, record["id"], "--json"]).exit_code == 2
    stdout = run(["files", "get", db, record["id"]])
    assert stdout.stdout_bytes == data

    removed = run(["files", "rm", db, record["id"], "--json"])
    assert json.loads(removed.stdout) == {"deleted": record["id"], "size": len(data)}
    assert run(["files", "rm", db, note_id]).stdout.startswith("Deleted ")
    assert chunk_files(vault.db) == []
    missing = run(["files", "rm", db, record["id"]])
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: ")


def test_check_reports_and_exits_1_on_damage(vault: Vault) -> None:
    db = str(vault.path)
    record = vault.db.files.put(vault.ann, noise(MiB, seed=2))
    ok = run(["files", "check", db, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    assert "1 files" in run(["files", "check", db, "--quick"]).stdout
    chunk_files(vault.db)[0].write_bytes(b"garbage")
    bad = run(["files", "check", db, "--no-repair"])
    assert bad.exit_code == 1
    assert record.id in bad.stderr
    doc = json.loads(run(["files", "check", db, "--json"]).stdout)
    assert doc["ok"] is False
    assert doc["damaged_files"] == [record.id]


def test_put_refuses_a_missing_source_and_unknown_user(vault: Vault, tmp_path: Path) -> None:
    db = str(vault.path)
    assert run(["files", "put", db, "ann", str(tmp_path / "nope")]).exit_code == 1
    assert run(["files", "put", db, "carol", "-"], input=b"x").exit_code == 1
    bad = run(["files", "put", db, "ann", "-", "--metadata", "{"], input=b"x")
    assert bad.exit_code == 2


def test_get_on_another_device_fetches_through_the_saved_relay(
    vault: Vault, tmp_path: Path
) -> None:
    from mangostore.sync import FolderRelay

    relay = tmp_path / "relay"
    data = noise(MiB, seed=4)
    stored = vault.db.files.put(vault.ann, data)
    vault.db.sync.enable(FolderRelay(relay, create=True))
    vault.db.sync.save_relay(str(relay))
    other, _ = vault.db.sync.new_device(tmp_path / "other.db", PASSPHRASE)
    other.sync.save_relay(str(relay))
    other.close()
    vault.db.sync.sync()
    pulled = run(["sync", "now", str(tmp_path / "other.db")])
    assert pulled.exit_code == 0, pulled.output
    checked = run(["files", "check", str(tmp_path / "other.db"), "--json"])
    assert json.loads(checked.stdout)["not_fetched"] == stored.chunk_count
    out = tmp_path / "out.bin"
    got = run(["files", "get", str(tmp_path / "other.db"), stored.id, "-o", str(out)])
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == data
