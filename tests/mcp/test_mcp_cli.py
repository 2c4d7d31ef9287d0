"""``mangostore mcp`` chooses whose memory it serves before it starts."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import mangostore
from mangostore.cli import cli


def _database(path: Path, *names: str) -> Path:
    with mangostore.create(path, encrypted=False).db as db:
        for name in names:
            db.users.create(username=name)
    return path


def test_several_users_need_the_user_option(tmp_path: Path) -> None:
    path = _database(tmp_path / "two.db", "ann", "bob")
    result = CliRunner().invoke(cli, ["mcp", str(path), "--plain"])
    assert result.exit_code == 1
    assert "several users" in result.output
    assert "--user" in result.output


def test_no_user_says_how_to_add_one(tmp_path: Path) -> None:
    path = _database(tmp_path / "none.db")
    result = CliRunner().invoke(cli, ["mcp", str(path), "--plain"])
    assert result.exit_code == 1
    assert "no users" in result.output
    assert "mangostore user add" in result.output


def test_an_unknown_user_is_refused(tmp_path: Path) -> None:
    path = _database(tmp_path / "one.db", "ann")
    result = CliRunner().invoke(cli, ["mcp", str(path), "--plain", "--user", "zed"])
    assert result.exit_code == 1
    assert "zed" in result.output
