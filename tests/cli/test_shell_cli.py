"""Seeing the data from the shell: ``query``, ``dump``, ``key`` and ``user list``."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
import sqlcipher3
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False)
PROFILE = {"mfa": True, "note": "it's secret"}


def run(args: list[str], *, passphrase: str | None = PASSPHRASE) -> Result:
    env = {common.PASSPHRASE_ENV: passphrase, common.RECOVERY_KEY_ENV: None}
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def vault(db_path: Path) -> Path:
    """An encrypted database with two users, one with an encrypted security profile."""
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=SETTINGS).db as db:
        db.users.create(username="ann", email="ann@example.org", security_profile=PROFILE)
        db.users.create(username="bob")
        db.memory.remember(db.users.get_by_username("ann").id, "shell", "fish")  # type: ignore[union-attr]
    return db_path


def usernames(path: Path) -> list[str]:
    with mangostore.open(path, passphrase=PASSPHRASE, settings=SETTINGS, create=False) as db:
        return [u.username for u in db.users.list(order_by="username")]


# -- query ---------------------------------------------------------------------------------


def test_query_prints_a_table(vault: Path) -> None:
    result = run(["query", str(vault), "SELECT username, email FROM users ORDER BY username"])

    assert result.exit_code == 0, result.output
    assert "ann@example.org" in result.stdout
    assert "NULL" in result.stdout  # bob's e-mail
    assert "2 rows." in result.stdout


def test_query_json_csv_and_parameters(vault: Path) -> None:
    sql = "SELECT username, security_profile FROM users WHERE username = ?"

    as_json = run(["query", str(vault), sql, "-p", "ann", "--json"])
    as_csv = run(["query", str(vault), "SELECT username FROM users ORDER BY 1", "--csv"])

    assert as_json.exit_code == 0, as_json.output
    (row,) = json.loads(as_json.stdout)
    assert row["username"] == "ann"
    # Stored encrypted: the query shows the ciphertext, never the plaintext.
    assert set(row["security_profile"]) == {"base64"}
    assert "secret" not in as_json.stdout
    assert as_csv.exit_code == 0, as_csv.output
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [["username"], ["ann"], ["bob"]]


def test_query_refuses_a_write_unless_asked(vault: Path) -> None:
    sql = "DELETE FROM users WHERE username = 'bob'"

    refused = run(["query", str(vault), sql])

    assert refused.exit_code == 1
    assert "--write" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert usernames(vault) == ["ann", "bob"]

    allowed = run(["query", str(vault), sql, "--write", "--json"])

    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout) == {"changed": 1}
    assert usernames(vault) == ["ann"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("BEGIN", "transaction of its own"),
        ("ATTACH 'other.db' AS other", "--write"),
        ("SELECT nope FROM users", "no such column"),
        ("SELECT 1; SELECT 2", "one statement"),
    ],
)
def test_query_errors_are_one_line(vault: Path, sql: str, message: str) -> None:
    result = run(["query", str(vault), sql])

    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_query_json_and_csv_together_is_bad_usage(vault: Path) -> None:
    assert run(["query", str(vault), "SELECT 1", "--json", "--csv"]).exit_code == 2


# -- dump ----------------------------------------------------------------------------------


def test_dump_restores_into_sqlite_with_fields_still_encrypted(vault: Path, tmp_path: Path) -> None:
    result = run(["dump", str(vault)])

    assert result.exit_code == 0, result.output
    assert "secret" not in result.stdout
    restoring = sqlite3.connect(tmp_path / "copy.db")
    restoring.executescript(result.stdout)
    restoring.close()
    # A new connection reads the schema the dump wrote directly (the virtual tables).
    copy = sqlite3.connect(tmp_path / "copy.db")
    users = dict(copy.execute("SELECT username, security_profile FROM users").fetchall())
    assert set(users) == {"ann", "bob"}
    assert isinstance(users["ann"], bytes)  # the envelope, as stored
    # The full-text index came along (shadow tables plus the virtual table).
    hits = copy.execute("SELECT count(*) FROM ai_memory_fts WHERE ai_memory_fts MATCH 'fish'")
    assert hits.fetchone() == (1,)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy.close()


def test_dump_decrypts_fields_only_when_asked(vault: Path, tmp_path: Path) -> None:
    target = tmp_path / "dump.sql"

    result = run(["dump", str(vault), "--decrypt-fields", "-o", str(target)])

    assert result.exit_code == 0, result.output
    assert "plain text" in result.stderr  # the warning
    assert target.stat().st_mode & 0o777 == 0o600
    copy = sqlite3.connect(":memory:")
    copy.executescript(target.read_text(encoding="utf-8"))
    (profile,) = copy.execute(
        "SELECT security_profile FROM users WHERE username = 'ann'"
    ).fetchone()
    assert json.loads(profile) == PROFILE
    copy.close()


def test_dump_with_a_wrong_passphrase_writes_nothing(vault: Path, tmp_path: Path) -> None:
    target = tmp_path / "dump.sql"

    result = run(["dump", str(vault), "-o", str(target)], passphrase="not it")

    assert result.exit_code == 1
    assert not target.exists()


def test_dump_of_a_plain_database(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    with mangostore.create(path, encrypted=False).db as db:
        db.users.create(username="ann", security_profile=PROFILE)

    result = run(["dump", str(path), "--plain", "--decrypt-fields"], passphrase=None)

    assert result.exit_code == 0, result.output
    assert "it''s secret" in result.stdout  # stored as plain JSON text in such a database


# -- key -----------------------------------------------------------------------------------


def test_key_is_printed_only_when_asked(vault: Path) -> None:
    plain = run(["key", str(vault)])
    raw = run(["key", str(vault), "--show-raw-key"])

    assert plain.exit_code == 0, plain.output
    assert "x'" not in plain.stdout
    assert raw.exit_code == 0, raw.output
    assert raw.stdout.startswith("x'")
    assert "warning:" in raw.stderr
    # The key opens the file on its own, as the sqlcipher shell would use it.
    conn = sqlcipher3.connect(str(vault))
    conn.execute(f'PRAGMA key = "{raw.stdout.strip()}"')
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)
    conn.close()


def test_key_needs_the_passphrase(vault: Path) -> None:
    result = run(["key", str(vault), "--show-raw-key"], passphrase="not it")

    assert result.exit_code == 1
    assert "x'" not in result.output


def test_key_of_a_plain_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    mangostore.create(path, encrypted=False).db.close()

    result = run(["key", str(path)], passphrase=None)

    assert result.exit_code == 1
    assert "unencrypted" in result.stderr


# -- user list -----------------------------------------------------------------------------


def test_user_list_shows_no_secret(vault: Path) -> None:
    text = run(["user", "list", str(vault)])
    as_json = run(["user", "list", str(vault), "--json"])

    assert text.exit_code == 0, text.output
    assert "ann <ann@example.org>" in text.stdout
    assert "no password" in text.stdout
    rows = json.loads(as_json.stdout)
    assert [r["username"] for r in rows] == ["ann", "bob"]
    assert set(rows[0]) == {"id", "username", "email", "created", "last_login", "has_password"}
    assert "secret" not in text.output + as_json.output
