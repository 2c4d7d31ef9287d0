"""The MCP memory server's JSONL format in and out, and the ``mangostore kg`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.kg_helpers import Graph

import mangostore
from mangostore import errors
from mangostore.cli import cli
from mangostore.kg.mcp_jsonl import map_entity_type, map_relation_type

MCP_FILE = [
    '{"type":"entity","name":"John_Smith","entityType":"person",'
    '"observations":["Speaks fluent Spanish","Graduated in 2019"]}',
    '{"type":"entity","name":"Anthropic","entityType":"organization","observations":[]}',
    '{"type":"entity","name":"mango-web","entityType":"project","observations":["Uses Vite"]}',
    '{"type":"entity","name":"ripgrep","entityType":"Tool","observations":["fast grep"]}',
    '{"type":"relation","from":"John_Smith","to":"Anthropic","relationType":"works_at"}',
    '{"type":"relation","from":"John_Smith","to":"mango-web","relationType":"contributes_to"}',
    '{"type":"relation","from":"John_Smith","to":"ripgrep","relationType":"uses"}',
]


def _parsed(lines: list[str]) -> list[dict[str, object]]:
    return sorted((json.loads(line) for line in lines), key=json.dumps)


def test_round_trip(graph: Graph) -> None:
    counts = graph.kg.import_jsonl(graph.user, MCP_FILE)
    assert counts == {
        "entities_created": 4,
        "entities_matched": 0,
        "observations": 4,
        "relations": 3,
        "relations_skipped": 0,
    }
    anthropic = graph.kg.find(graph.user, "anthropic")
    assert anthropic is not None
    assert anthropic.entity_type == "concept"
    assert anthropic.metadata == {"mcp_entity_type": "organization"}
    assert _parsed(list(graph.kg.export_jsonl(graph.user))) == _parsed(MCP_FILE)
    again = graph.kg.import_jsonl(graph.user, MCP_FILE)  # idempotent
    assert again["entities_created"] == 0
    assert again["entities_matched"] == 4
    assert graph.db.kg_entities.count() == 4
    assert graph.db.kg_observations.count() == 4
    assert _parsed(list(graph.kg.export_jsonl(graph.user))) == _parsed(MCP_FILE)


def test_export_leaves_out_what_no_longer_holds(graph: Graph) -> None:
    graph.kg.import_jsonl(graph.user, MCP_FILE)
    john = graph.kg.find(graph.user, "John_Smith")
    assert john is not None
    graph.kg.invalidate(graph.kg.relations(john, predicates=["uses"])[0])
    graph.kg.invalidate(graph.kg.observations(john)[0])
    exported = _parsed(list(graph.kg.export_jsonl(graph.user)))
    assert not any(item.get("relationType") == "uses" for item in exported)
    person = next(item for item in exported if item.get("name") == "John_Smith")
    assert person["observations"] == ["Graduated in 2019"]


def test_relations_to_unknown_entities_are_skipped(graph: Graph) -> None:
    counts = graph.kg.import_jsonl(
        graph.user,
        [MCP_FILE[0], '{"type":"relation","from":"John_Smith","to":"Nobody","relationType":"x"}'],
    )
    assert counts["relations_skipped"] == 1


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '{"type":"thing"}',
        '{"type":"entity","name":""}',
        '{"type":"entity","name":"x","observations":"nope"}',
        '{"type":"relation","from":"a"}',
    ],
)
def test_bad_lines_import_nothing(graph: Graph, line: str) -> None:
    with pytest.raises(errors.ValidationError):
        graph.kg.import_jsonl(graph.user, [MCP_FILE[0], line])
    assert graph.db.kg_entities.count() == 0


def test_type_and_predicate_mapping() -> None:
    assert map_entity_type("Person") == "person"
    assert map_entity_type("repository") == "project"
    assert map_entity_type("event") == "concept"
    assert map_relation_type("worksAt") == "works_at"
    assert map_relation_type("works at") == "works_at"
    assert map_relation_type("!!!") == "related_to"


# -- the command line --------------------------------------------------------------------


@pytest.fixture
def plain_file(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "kg.db"
    db = mangostore.create(path, encrypted=False).db
    db.users.create(username="ann")
    db.close()
    source = tmp_path / "memory.jsonl"
    source.write_text("\n".join(MCP_FILE) + "\n", encoding="utf-8")
    return path, source


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_cli_import_search_show_export(plain_file: tuple[Path, Path], tmp_path: Path) -> None:
    path, source = plain_file
    code, out = _run("kg", "import", str(path), str(source), "--user", "ann", "--plain")
    assert code == 0, out
    assert "4 new" in out
    code, out = _run(
        "kg",
        "search",
        str(path),
        "spanish speaker",
        "--user",
        "ann",
        "--plain",
        "--no-vectors",
        "--explain",
    )
    assert code == 0, out
    assert "John_Smith" in out.splitlines()[0]
    code, out = _run(
        "kg",
        "search",
        str(path),
        'NEAR( "* content:x',
        "--user",
        "ann",
        "--plain",
        "--no-vectors",
        "--json",
    )
    assert code == 0, out
    assert isinstance(json.loads(out), list)
    code, out = _run("kg", "show", str(path), "john_smith", "--user", "ann", "--plain")
    assert code == 0, out
    assert "-works_at-> Anthropic" in out
    assert "Speaks fluent Spanish" in out
    code, out = _run("kg", "show", str(path), "Anthropic", "--user", "ann", "--plain", "--json")
    assert json.loads(out)["incoming"][0]["predicate"] == "works_at"
    target = tmp_path / "out.jsonl"
    code, out = _run("kg", "export", str(path), "-o", str(target), "--user", "ann", "--plain")
    assert code == 0, out
    assert _parsed(target.read_text(encoding="utf-8").splitlines()) == _parsed(MCP_FILE)
    code, out = _run("kg", "export", str(path), "-o", "-", "--user", "ann", "--plain")
    assert _parsed(out.splitlines()) == _parsed(MCP_FILE)


def test_cli_errors_are_one_line(plain_file: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = plain_file
    code, out = _run("kg", "show", str(path), "nobody", "--user", "ann", "--plain")
    assert code == 1
    assert out.startswith("error: ")
    assert len(out.splitlines()) == 1
    code, out = _run("kg", "search", str(path), "x", "--user", "zed", "--plain")
    assert code == 1
    assert "zed" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    code, out = _run("kg", "import", str(path), str(bad), "--user", "ann", "--plain")
    assert code == 1
    assert "line 1" in out
    code, out = _run("kg", "search", str(path), "x", "--user", "ann", "--plain", "--as-of", "soon")
    assert code == 2


def test_cli_export_file_is_private(plain_file: tuple[Path, Path], tmp_path: Path) -> None:
    path, source = plain_file
    code, out = _run("kg", "import", str(path), str(source), "--user", "ann", "--plain")
    assert code == 0, out
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o644)
    code, out = _run("kg", "export", str(path), "-o", str(target), "--user", "ann", "--plain")
    assert code == 0, out
    assert target.stat().st_mode & 0o777 == 0o600
    assert _parsed(target.read_text(encoding="utf-8").splitlines()) == _parsed(MCP_FILE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
