"""`mangostore kg search` shows the fact that answers and how sure it is; `kg suggestions`
lists and dismisses the near duplicates that were not merged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import mangostore
from mangostore.cli import cli


@pytest.fixture
def graph_file(tmp_path: Path) -> Path:
    path = tmp_path / "kg.db"
    with mangostore.create(path, encrypted=False).db as db:
        user = db.users.create(username="ann").id
        kg = db.kg
        kg.set_embedder(None)
        kg.declare_predicate("preferred_shell")
        me = kg.upsert_entity(user, "person", "Ann Smith").entity
        eli = kg.upsert_entity(user, "person", "Eli Ray").entity
        zsh = kg.upsert_entity(user, "command", "zsh", description="a unix shell").entity
        fish = kg.upsert_entity(user, "command", "fish", description="a friendly shell").entity
        kg.relate(me, "preferred_shell", zsh)
        kg.relate(eli, "preferred_shell", fish)
        kg.upsert_entity(user, "command", "kubectl")
        kg.upsert_entity(user, "command", "kubectx")
    return path


def _json(*args: str) -> object:
    result = CliRunner().invoke(cli, [*args, "--plain", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_search_prints_the_fact_and_the_confidence(graph_file: Path) -> None:
    path = str(graph_file)
    [first, *_] = _json("kg", "search", path, "which shell does ann prefer", "--user", "ann")  # type: ignore[misc]
    assert first["name"] == "zsh"
    assert 0 < first["confidence"] <= 1
    assert first["fact"]["text"] == "Ann Smith -preferred_shell-> zsh"
    assert first["fact"]["until"] is None
    mine = _json("kg", "search", path, "my shell", "--user", "ann", "--speaker", "Eli Ray")
    assert mine[0]["name"] == "fish"  # type: ignore[index]
    assert _json("kg", "search", path, "what's my cat's name", "--user", "ann") == []
    result = CliRunner().invoke(
        cli, ["kg", "search", path, "zsh", "--user", "ann", "--plain", "--min-confidence", "2"]
    )
    assert result.exit_code == 2  # out of range, refused before anything is read


def test_suggestions_are_listed_and_dismissed(graph_file: Path) -> None:
    path = str(graph_file)
    [suggestion] = _json("kg", "suggestions", path, "--user", "ann")  # type: ignore[misc]
    assert (suggestion["entity"], suggestion["candidate"]) == ("kubectx", "kubectl")
    assert "identifiers" in suggestion["reason"]
    assert _json("kg", "suggestions", path, "--user", "ann", "--dismiss", suggestion["id"]) == []
    result = CliRunner().invoke(
        cli, ["kg", "suggestions", path, "--user", "ann", "--plain", "--dismiss", "nope"]
    )
    assert result.exit_code == 1
    assert "no merge suggestion" in result.output
