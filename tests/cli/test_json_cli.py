"""Every command takes ``--json`` and prints one valid JSON document, with ISO 8601 times."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from tests.conftest import CHEAP_PASSWORDS, FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common
from mangostore.notify import RecordingDeliverer

CLI_FAST_KDF = ["--kdf-memory-kib", "19456", "--kdf-iterations", "2", "--kdf-parallelism", "1"]
PASSWORD = "a long enough password"
#: Keys whose values are times: each must be null or ISO 8601 in UTC with a Z.
TIME_KEYS = frozenset(
    {"created", "expires", "last_activity", "last_login", "last_accessed", "since"}
    | {"cutoff", "timestamp", "scheduled", "at"}
    | {"last_push", "last_pull", "detected", "resolved", "clock_time"}
    | {"first_seen", "last_seen", "removed"}
)
#: Commands without --json: servers that run until interrupted.
SERVERS = frozenset({"serve-sync", "serve", "mcp"})
#: Commands that need a running sync server: their --json output is checked, times
#: included, by tests/sync/server/test_server_e2e.py against a real server process;
#: and `compliance`, which exits 1 while a control fails (a fresh vault has no backup):
#: tests/privacy/test_compliance.py checks its --json both ways.
CHECKED_ELSEWHERE = frozenset(
    {"sync join", "sync devices", "sync remove-device", "sync snapshot", "compliance"}
)
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass(frozen=True)
class Vault:
    """A copy of the template database, and what the commands need to name in it."""

    path: Path
    folder: Path
    notification_id: str
    password_file: Path
    key_file: Path
    jsonl: Path

    @property
    def p(self) -> str:
        return str(self.path)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An encrypted database with users, a delivered notification, a graph, a session."""
    path = tmp_path_factory.mktemp("template") / "vault.db"
    settings = Settings(kdf=FAST_KDF, backup_before_migrate=False)
    with mangostore.create(path, passphrase=PASSPHRASE, settings=settings).db as db:
        db.auth.configure(policy=CHEAP_PASSWORDS, sleep=lambda seconds: None)
        ann = db.auth.create_user_with_password("ann", PASSWORD)
        db.users.create(username="bob")
        db.auth.login("ann", PASSWORD, ip_address="127.0.0.1")
        db.notify.register_type("build", category="project", template="Build {name} finished")
        db.notify.register_deliverer(RecordingDeliverer("desktop"))
        sent = db.notify.send(ann.id, "build", {"name": "site"})
        db.notify.deliver_due()
        db.memory.remember(ann.id, "shell", "fish", memory_type="preference")
        db.kg.upsert_entity(ann.id, "person", "Ann")
        db.kg.close()
        db.sync.enable()
        db.execute(
            "INSERT INTO sync_conflicts (id, kind, tbl, pk, col, kept, lost, detected_at) "
            "VALUES ('conflict-1', 'manual', 'users', ?, 'email', '\"a@x\"', '\"b@x\"', 1)",
            (ann.id,),
        )
    return path, sent.id


def _copy_database(source: Path, folder: Path) -> Path:
    """Copy a closed database and its keyring (nothing has them open)."""
    target = folder / source.name
    for item in source.parent.iterdir():
        if item.name.startswith(source.name):
            shutil.copy(item, folder / item.name)
    return target


@pytest.fixture
def vault(template: tuple[Path, str], tmp_path: Path) -> Vault:
    source, notification_id = template
    path = _copy_database(source, tmp_path)
    password_file = tmp_path / "password.txt"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    key_file = tmp_path / "new-passphrase.txt"
    key_file.write_text("a new and long passphrase\n", encoding="utf-8")
    jsonl = tmp_path / "graph.jsonl"
    jsonl.write_text(
        '{"type":"entity","name":"fish","entityType":"command","observations":["a shell"]}\n',
        encoding="utf-8",
    )
    (tmp_path / "relay").mkdir()
    return Vault(path, tmp_path, notification_id, password_file, key_file, jsonl)


#: The arguments of each command, but for --json.
CASES: dict[str, Callable[[Vault], list[str]]] = {
    "init": lambda v: ["init", str(v.folder / "new.db"), *CLI_FAST_KDF],
    "status": lambda v: ["status", v.p, "--no-check"],
    "migrate": lambda v: ["migrate", v.p],
    "passwd": lambda v: ["passwd", v.p, "--new-key-file", str(v.key_file)],
    "demo": lambda v: ["demo"],
    "notify list": lambda v: ["notify", "list", v.p, "--user", "ann"],
    "notify send": lambda v: [
        "notify",
        "send",
        v.p,
        "--user",
        "ann",
        "--type",
        "build",
        "--param",
        "name=docs",
    ],
    "notify read": lambda v: ["notify", "read", v.p, v.notification_id],
    "memory list": lambda v: ["memory", "list", v.p, "--user", "ann"],
    "kg search": lambda v: ["kg", "search", v.p, "ann", "--user", "ann", "--no-vectors"],
    "kg show": lambda v: ["kg", "show", v.p, "Ann", "--user", "ann"],
    "kg suggestions": lambda v: ["kg", "suggestions", v.p, "--user", "ann"],
    "kg import": lambda v: ["kg", "import", v.p, str(v.jsonl), "--user", "ann"],
    "kg export": lambda v: ["kg", "export", v.p, "--user", "ann"],
    "audit verify": lambda v: ["audit", "verify", v.p],
    "audit checkpoint": lambda v: ["audit", "checkpoint", v.p],
    "privacy retention": lambda v: ["privacy", "retention", v.p],
    "privacy export": lambda v: [
        "privacy",
        "export",
        v.p,
        "--user",
        "ann",
        "-o",
        str(v.folder / "export"),
    ],
    "privacy erase": lambda v: ["privacy", "erase", v.p, "--user", "bob", "--yes"],
    "stats": lambda v: ["stats", v.p],
    "user add": lambda v: ["user", "add", v.p, "carol", "--password-file", str(v.password_file)],
    "user passwd": lambda v: [
        "user",
        "passwd",
        v.p,
        "ann",
        "--password-file",
        str(v.password_file),
    ],
    "user unlock": lambda v: ["user", "unlock", v.p, "ann"],
    "user list": lambda v: ["user", "list", v.p],
    "sessions list": lambda v: ["sessions", "list", v.p, "--user", "ann"],
    "sessions revoke": lambda v: ["sessions", "revoke", v.p, "--user", "ann"],
    "query": lambda v: ["query", v.p, "SELECT username, created_at FROM users"],
    "dump": lambda v: ["dump", v.p],
    "key": lambda v: ["key", v.p],
    "rotate-keys": lambda v: ["rotate-keys", v.p],
    "sync enable": lambda v: ["sync", "enable", v.p, "--relay", str(v.folder / "relay")],
    "sync status": lambda v: ["sync", "status", v.p, "--relay", str(v.folder / "relay")],
    "sync now": lambda v: ["sync", "now", v.p, "--relay", str(v.folder / "relay")],
    "sync conflicts": lambda v: ["sync", "conflicts", v.p, "--all"],
    "sync resolve": lambda v: ["sync", "resolve", v.p, "conflict-1", "--choose", "kept"],
    "sync strategy": lambda v: ["sync", "strategy", v.p, "users", "email", "manual"],
    "sync new-device": lambda v: ["sync", "new-device", v.p, str(v.folder / "b.db"), *CLI_FAST_KDF],
    "backup create": lambda v: ["backup", "create", v.p, "--to", str(v.folder / "backups")],
    "backup list": lambda v: ["backup", "list", v.p, "--to", backed_up(v)],
    "backup verify": lambda v: ["backup", "verify", v.p, "--to", backed_up(v)],
    "backup restore": lambda v: [
        "backup",
        "restore",
        v.p,
        "--to",
        backed_up(v),
        "--into",
        str(v.folder / "restored.db"),
    ],
    "backup prune": lambda v: ["backup", "prune", v.p, "--to", backed_up(v), "--dry-run"],
    "files put": lambda v: ["files", "put", v.p, "ann", str(v.jsonl)],
    "files ls": lambda v: ["files", "ls", v.p, "ann"],
    "files get": lambda v: ["files", "get", v.p, stored_file(v), "-o", str(v.folder / "out.bin")],
    "files rm": lambda v: ["files", "rm", v.p, stored_file(v)],
    "files check": lambda v: ["files", "check", v.p],
}


def stored_file(v: Vault) -> str:
    """Store a small file for ann through the command line; return its id."""
    result = run(["files", "put", v.p, "ann", str(v.jsonl), "--json"])
    return str(json.loads(result.stdout)["id"])


def backed_up(v: Vault) -> str:
    """Back the vault's database up (for the commands that read backups); the folder."""
    folder = v.folder / "backups"
    with mangostore.open(v.path, passphrase=PASSPHRASE) as db:
        db.backup.create(str(folder))
    return str(folder)


def leaf_commands(command: click.Command, path: str = "") -> Iterator[str]:
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from leaf_commands(sub, f"{path} {name}".strip())
    else:
        yield path


def times_in(data: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of ``data`` whose key names a time, however deep."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in TIME_KEYS:
                yield key, value
            yield from times_in(value)
    elif isinstance(data, list):
        for item in data:
            yield from times_in(item)


def run(args: list[str]) -> Result:
    env = {common.PASSPHRASE_ENV: PASSPHRASE, common.RECOVERY_KEY_ENV: None}
    return CliRunner().invoke(cli, args, env=env)


def test_every_command_has_a_json_case() -> None:
    assert set(leaf_commands(cli)) - SERVERS - CHECKED_ELSEWHERE == set(CASES)


@pytest.mark.parametrize("command", sorted(CASES))
def test_every_command_prints_valid_json(command: str, vault: Vault) -> None:
    result = run([*CASES[command](vault), "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, dict | list)
    for key, value in times_in(data):
        assert value is None or ISO_UTC.match(str(value)), f"{command}: {key}={value!r}"


def test_the_time_check_sees_times() -> None:
    found = dict(times_in({"rows": [{"created": "2024-06-01T09:12:44.123Z"}], "at": None}))
    assert found == {"created": "2024-06-01T09:12:44.123Z", "at": None}
    assert not ISO_UTC.match("2024-06-01 09:12:44")
