"""Fixtures of the backup tests: an encrypted database with data, a folder destination,
and an S3 endpoint on loopback (moto's server mode) started here."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.backup.snapshot import LOCAL_TABLES
from mangostore.clock import ManualClock
from mangostore.schema import derived
from mangostore.sql import quote_identifier

SETTINGS = Settings(kdf=FAST_KDF)


def fill(db: mangostore.Database, users: int = 2, commands: int = 50) -> list[str]:
    """Give ``db`` users with encrypted fields, projects and commands; return user ids."""
    ids = []
    for i in range(users):
        name = f"user{i}-{len(db.users.list())}"
        user = db.users.create(
            username=name,
            email=f"{name}@example.org",
            security_profile={"mfa": True, "canary": f"secret-canary-{i}"},
        )
        ids.append(user.id)
        db.projects.create(user_id=user.id, name=f"site{i}", path=f"/home/u{i}/site")
        for n in range(commands):
            db.command_history.record(user.id, f"git push origin {n}", exit_code=n % 3)
    return ids


def logical(db: mangostore.Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every table as sorted rows, and every full-text index as what it holds (each
    term's occurrences: the shadow tables' bytes depend on how the index was built, and
    a restore builds some again); the change log's tables, which each copy keeps for
    itself, are left out."""
    found = db.query(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    fts = [str(r["name"]) for r in found if derived.is_fts5(str(r["sql"]))]
    layout = {f"{name}_{suffix}" for name in fts for suffix in derived.REBUILT_SHADOWS}
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in found:
        name = str(row["name"])
        if name in LOCAL_TABLES or name in layout or str(row["sql"]).startswith("CREATE VIRTUAL"):
            continue
        rows = db.query(f'SELECT * FROM "{name}"', use_cache=False)
        out[name] = sorted((tuple(r) for r in rows), key=repr)
    with db.store.transaction() as conn:
        for name in fts:
            vocab = quote_identifier(f"instances of {name}")
            conn.execute(
                f"CREATE VIRTUAL TABLE temp.{vocab} USING fts5vocab(main, "
                f"{quote_identifier(name)}, instance)"
            )
            rows = conn.execute(f"SELECT * FROM temp.{vocab}").fetchall()
            conn.execute(f"DROP TABLE temp.{vocab}")
            out[f"fts5 {name}"] = sorted((tuple(r) for r in rows), key=repr)
    return out


def restored(db: mangostore.Database, folder: Path, into: Path, **how: object) -> dict:
    """Restore the backups at ``folder`` (as ``db.backup.restore`` picks with ``how``)
    into ``into``, check its integrity, and return its :func:`logical` content."""
    db.backup.restore(into, passphrase=PASSPHRASE, to=folder, settings=SETTINGS, **how)
    with mangostore.open(into, passphrase=PASSPHRASE, settings=SETTINGS) as copy:
        assert copy.check_integrity(quick=False) == []
        return logical(copy)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[mangostore.Database]:
    """An encrypted file database with two users' data."""
    db = mangostore.create(tmp_path / "vault.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    fill(db)
    yield db
    db.close()


@pytest.fixture
def clocked_vault(tmp_path: Path, clock: ManualClock) -> Iterator[mangostore.Database]:
    """An encrypted file database on the manual clock, with data."""
    db = mangostore.create(
        tmp_path / "vault.db", passphrase=PASSPHRASE, settings=SETTINGS, clock=clock
    ).db
    fill(db, users=1, commands=5)
    yield db
    db.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder destination (not made yet)."""
    return tmp_path / "backups"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 endpoint on a random loopback port (moto), for the whole session."""
    server_module = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment that points s3fs (and a child process) at the moto endpoint."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """A new bucket on the moto endpoint; its s3:// URL with a prefix."""
    import s3fs  # type: ignore[import-untyped]

    name = "bk-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(name)
    return f"s3://{name}/mango"
