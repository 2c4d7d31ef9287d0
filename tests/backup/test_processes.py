"""Backups while another process writes, and the command line in processes of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.backup.conftest import SETTINGS, fill
from tests.conftest import PASSPHRASE

import mangostore

WORKER = Path(__file__).with_name("writer_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["MANGOSTORE_PASSPHRASE"] = PASSPHRASE
    env.update(extra)
    return env


def start_writer(db_path: str, stop: Path) -> subprocess.Popen[bytes]:
    """Start ``writer_worker.py`` on ``db_path`` and wait until it has committed."""
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), db_path, PASSPHRASE, str(stop)],
        stdout=subprocess.PIPE,
        env=worker_env(),
    )
    ready = Path(str(stop) + ".ready")
    for _ in range(600):
        if ready.exists() or worker.poll() is not None:
            break
        time.sleep(0.05)
    if not ready.exists():
        worker.kill()
        raise AssertionError("the writer never started")
    return worker


def test_a_writer_in_another_process_keeps_committing_during_a_full_backup(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    fill(vault, users=1, commands=2000)
    stop = tmp_path / "stop"
    worker = start_writer(str(vault.store.path), stop)
    try:
        before = vault.command_history.count()
        made = vault.backup.create(folder, kind="full")
    finally:
        stop.touch()
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    result = json.loads(out)
    assert result["commits"] >= 5
    # The backup is one consistent snapshot: its restore has exactly the rows the
    # manifest counted, and passes the integrity check.
    assert vault.backup.verify(folder).ok
    report = vault.backup.restore(
        tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, settings=SETTINGS
    )
    assert report.tables["command_history"] == made.tables["command_history"]
    assert before <= made.tables["command_history"] <= vault.command_history.count()


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from mangostore.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=worker_env(**env),
        timeout=120,
        check=False,
    )


def test_the_command_line_creates_lists_verifies_restores_and_prunes(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    path = str(vault.store.path)
    made = _cli("backup", "create", path, "--to", str(folder), "--remember", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["kind"] == "full"
    vault.command_history.record(vault.users.list()[0].id, "make")
    second = _cli("backup", "create", path, "--json")  # the saved destination
    assert json.loads(second.stdout)["kind"] == "incremental", second.stderr
    listed = json.loads(_cli("backup", "list", path, "--json").stdout)
    assert [b["kind"] for b in listed["backups"]] == ["full", "incremental"]
    assert [b["seq"] for b in listed["backups"]] == [0, 1]
    table = _cli("backup", "list", path).stdout
    # Every id whole (folded onto more lines on a narrow terminal), each backup with
    # the backups a restore of it reads: the full one alone, then both.
    ids: list[str] = []
    reads: list[str] = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[1]:  # a backup's first line
            ids.append(cells[0])
            reads.append(cells[-1])
        elif cells:
            ids[-1] += cells[0]
    assert ids == [b["id"] for b in listed["backups"]]
    assert reads == ["1", "2"]
    checked = _cli("backup", "verify", path, "--json")
    assert checked.returncode == 0
    assert json.loads(checked.stdout)["ok"] is True
    at = listed["backups"][0]["created_at"]
    restored = _cli(
        "backup",
        "restore",
        path,
        "--to",
        str(folder),
        "--into",
        str(tmp_path / "r.db"),
        "--at",
        at,
        "--json",
    )
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["backup_id"] == listed["backups"][0]["id"]
    again = _cli("backup", "restore", path, "--into", str(tmp_path / "r.db"))
    assert again.returncode == 1
    assert "already exists" in again.stderr
    pruned = _cli("backup", "prune", path, "--dry-run", "--json")
    assert pruned.returncode == 0
    assert json.loads(pruned.stdout)["deleted"] == []


def test_the_command_line_refuses_a_wrong_passphrase(
    vault: mangostore.Database, folder: Path
) -> None:
    vault.backup.create(folder)
    result = _cli(
        "backup",
        "verify",
        str(vault.store.path),
        "--to",
        str(folder),
        MANGOSTORE_PASSPHRASE="wrong passphrase entirely",
    )
    assert result.returncode == 1
    assert "wrong passphrase" in result.stderr


def test_a_restore_with_a_wrong_passphrase_leaves_nothing(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    vault.backup.create(folder)
    path = Path(vault.store.path)
    vault.close()
    for suffix in ("", "-wal", "-shm"):  # only the keyring is left: the restore opens it
        Path(str(path) + suffix).unlink(missing_ok=True)
    result = _cli(
        "backup",
        "restore",
        str(path),
        "--to",
        str(folder),
        "--into",
        str(tmp_path / "r.db"),
        MANGOSTORE_PASSPHRASE="wrong passphrase entirely",
    )
    assert result.returncode == 1
    assert "wrong passphrase" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("r.db", ".r.db"))) == []


def test_restore_with_only_the_keyring_left(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    vault.backup.create(folder)
    path = Path(vault.store.path)
    vault.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    result = _cli(
        "backup", "restore", str(path), "--to", str(folder), "--into", str(tmp_path / "r.db")
    )
    assert result.returncode == 0, result.stderr
    assert "Recovery key" in result.stdout
    with mangostore.open(tmp_path / "r.db", passphrase=PASSPHRASE) as restored:
        assert restored.users.count() == 2
