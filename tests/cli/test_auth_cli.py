"""``mangostore user`` and ``mangostore sessions``, through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common
from mangostore.errors import AuthenticationError, SessionRevoked
from mangostore.security.auth import AuthPolicy
from mangostore.security.passwords import PasswordParams

PASSWORD = "a long enough password"


def run(args: list[str], *, input: str | None = None) -> Result:
    env = {common.PASSPHRASE_ENV: PASSPHRASE, common.RECOVERY_KEY_ENV: None}
    return CliRunner().invoke(cli, args, env=env, input=input)


@pytest.fixture
def vault(db_path: Path) -> Path:
    """An encrypted database on disk, closed, for the commands to open."""
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)).db:
        pass
    return db_path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password.txt"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def test_user_add_then_login(vault: Path, password_file: Path) -> None:
    result = run(
        [
            "user",
            "add",
            str(vault),
            "ann",
            "--email",
            "ann@example.org",
            "--password-file",
            str(password_file),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Created user ann" in result.stdout
    assert PASSWORD not in result.output
    with mangostore.open(vault, passphrase=PASSPHRASE) as db:
        assert db.users.get_by_username("ann").email == "ann@example.org"  # type: ignore[union-attr]
        assert db.auth.login("ann", PASSWORD).user.username == "ann"


def test_user_add_without_a_password_source_fails_cleanly(vault: Path) -> None:
    result = run(["user", "add", str(vault), "ann"])
    assert result.exit_code == 1
    assert "--password-file" in result.stderr


def test_user_passwd_revokes_sessions_and_unlock_clears_a_lock(
    vault: Path, password_file: Path, tmp_path: Path
) -> None:
    with mangostore.open(vault, passphrase=PASSPHRASE) as db:
        cheap = PasswordParams(memory_kib=64, time_cost=1, parallelism=1)
        db.auth.configure(policy=AuthPolicy(password=cheap, max_failures=2), sleep=lambda _: None)
        db.auth.create_user_with_password("ann", "the first password")
        token = db.auth.login("ann", "the first password").token
        for _ in range(2):
            with pytest.raises(AuthenticationError):
                db.auth.login("ann", "wrong password")
    result = run(["user", "unlock", str(vault), "ann"])
    assert result.exit_code == 0, result.output
    assert "Unlocked ann" in result.stdout
    result = run(["user", "passwd", str(vault), "ann", "--password-file", str(password_file)])
    assert result.exit_code == 0, result.output
    assert "1 session(s) revoked" in result.stdout
    with mangostore.open(vault, passphrase=PASSPHRASE) as db:
        with pytest.raises(SessionRevoked):
            db.sessions.validate(token)
        assert db.auth.login("ann", PASSWORD)


def test_sessions_list_and_revoke(vault: Path) -> None:
    with mangostore.open(vault, passphrase=PASSPHRASE) as db:
        ann = db.users.create(username="ann")
        first = db.sessions.issue(ann.id, ip_address="192.0.2.7", user_agent="term")
        second = db.sessions.issue(ann.id, security_level="high")
    result = run(["sessions", "list", str(vault), "--user", "ann", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {s["id"] for s in listed} == {first.session.id, second.session.id}
    assert first.token not in result.output
    text = run(["sessions", "list", str(vault), "--user", ann.id])
    assert "192.0.2.7" in text.stdout
    result = run(["sessions", "revoke", str(vault), "--session", first.session.id])
    assert result.exit_code == 0, result.output
    result = run(["sessions", "revoke", str(vault), "--session", first.session.id])
    assert result.exit_code == 1
    result = run(["sessions", "revoke", str(vault), "--user", "ann"])
    assert "Revoked 1 session(s)" in result.stdout
    assert "No live sessions" in run(["sessions", "list", str(vault), "--user", "ann"]).stdout
    with mangostore.open(vault, passphrase=PASSPHRASE) as db, pytest.raises(SessionRevoked):
        db.sessions.validate(second.token)


def test_sessions_revoke_needs_exactly_one_target(vault: Path) -> None:
    assert run(["sessions", "revoke", str(vault)]).exit_code == 2
    both = run(["sessions", "revoke", str(vault), "--user", "a", "--session", "b"])
    assert both.exit_code == 2


def test_unknown_user_is_one_line_error(vault: Path) -> None:
    result = run(["sessions", "list", str(vault), "--user", "nobody"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: there is no user")
