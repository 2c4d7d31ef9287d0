"""The reference memory server's operations on mangostore's knowledge graph, in
process: the shapes and results of @modelcontextprotocol/server-memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import mangostore
from mangostore.errors import NotFoundError
from mangostore.mcp import ReferenceGraph


@pytest.fixture
def graph() -> Iterator[ReferenceGraph]:
    """An empty graph of the user ``ann`` (no embedder)."""
    with mangostore.open(":memory:", encrypted=False) as db:
        db.kg.set_embedder(None)
        yield ReferenceGraph(db, db.users.create(username="ann").id)


def _seed(graph: ReferenceGraph) -> None:
    graph.create_entities(
        [
            {
                "name": "John_Smith",
                "entityType": "person",
                "observations": ["Speaks fluent Spanish"],
            },
            {"name": "Anthropic", "entityType": "organization", "observations": []},
            {"name": "falcon-api", "entityType": "project", "observations": ["payments service"]},
        ]
    )
    graph.create_relations(
        [
            {"from": "John_Smith", "to": "Anthropic", "relationType": "works_at"},
            {"from": "John_Smith", "to": "falcon-api", "relationType": "maintains"},
        ]
    )


def test_create_entities_returns_only_the_new_ones(graph: ReferenceGraph) -> None:
    _seed(graph)
    made = graph.create_entities(
        [
            {"name": "John_Smith", "entityType": "person", "observations": ["ignored"]},
            {"name": "Kiwi", "entityType": "concept", "observations": []},
            {"name": "Kiwi", "entityType": "concept", "observations": []},
        ]
    )
    assert made == [{"name": "Kiwi", "entityType": "concept", "observations": []}]
    john = graph.open_nodes(["John_Smith"])["entities"][0]
    assert john["observations"] == ["Speaks fluent Spanish"]


def test_read_graph_gives_back_what_was_written(graph: ReferenceGraph) -> None:
    _seed(graph)
    assert graph.read_graph() == {
        "entities": [
            {
                "name": "John_Smith",
                "entityType": "person",
                "observations": ["Speaks fluent Spanish"],
            },
            {"name": "Anthropic", "entityType": "organization", "observations": []},
            {"name": "falcon-api", "entityType": "project", "observations": ["payments service"]},
        ],
        "relations": [
            {"from": "John_Smith", "to": "Anthropic", "relationType": "works_at"},
            {"from": "John_Smith", "to": "falcon-api", "relationType": "maintains"},
        ],
    }


def test_create_relations_skips_existing_and_refuses_unknown_ends(graph: ReferenceGraph) -> None:
    _seed(graph)
    again = graph.create_relations(
        [{"from": "John_Smith", "to": "Anthropic", "relationType": "works_at"}]
    )
    assert again == []
    with pytest.raises(NotFoundError, match="Entity with name Nobody not found"):
        graph.create_relations(
            [
                {"from": "Anthropic", "to": "falcon-api", "relationType": "funds"},
                {"from": "John_Smith", "to": "Nobody", "relationType": "knows"},
            ]
        )
    assert len(graph.read_graph()["relations"]) == 2  # nothing of the refused call


def test_add_observations_reports_what_was_added(graph: ReferenceGraph) -> None:
    _seed(graph)
    added = graph.add_observations(
        [{"entityName": "John_Smith", "contents": ["Speaks fluent Spanish", "Likes tea"]}]
    )
    assert added == [{"entityName": "John_Smith", "addedObservations": ["Likes tea"]}]
    with pytest.raises(NotFoundError):
        graph.add_observations([{"entityName": "Nobody", "contents": ["x"]}])


def test_deletions(graph: ReferenceGraph) -> None:
    _seed(graph)
    assert graph.delete_observations(
        [
            {"entityName": "John_Smith", "observations": ["Speaks fluent Spanish", "absent"]},
            {"entityName": "Nobody", "observations": ["x"]},
        ]
    ) == (1, ["Nobody"])
    assert (
        graph.delete_relations(
            [
                {"from": "John_Smith", "to": "Anthropic", "relationType": "works_at"},
                {"from": "John_Smith", "to": "Anthropic", "relationType": "founded"},
            ]
        )
        == 1
    )
    assert graph.delete_entities(["falcon-api", "Nobody"]) == (["falcon-api"], ["Nobody"])
    assert graph.read_graph() == {
        "entities": [
            {"name": "John_Smith", "entityType": "person", "observations": []},
            {"name": "Anthropic", "entityType": "organization", "observations": []},
        ],
        "relations": [],
    }


def test_search_and_open_include_relations_touching_the_nodes(graph: ReferenceGraph) -> None:
    _seed(graph)
    found = graph.search_nodes("spanish")
    assert [e["name"] for e in found["entities"]] == ["John_Smith"]
    assert len(found["relations"]) == 2
    by_type = graph.search_nodes("ORGANIZATION")
    assert [e["name"] for e in by_type["entities"]] == ["Anthropic"]
    opened = graph.open_nodes(["falcon-api", "Nobody"])
    assert [e["name"] for e in opened["entities"]] == ["falcon-api"]
    assert opened["relations"] == [
        {"from": "John_Smith", "to": "falcon-api", "relationType": "maintains"}
    ]


def test_search_falls_back_on_the_hybrid_search(graph: ReferenceGraph) -> None:
    _seed(graph)
    # No entity holds the words "payment services", but full-text search stems them.
    found = graph.search_nodes("payment services")
    assert [e["name"] for e in found["entities"]] == ["falcon-api"]
    # A substring match answers alone, as the reference's does.
    assert [e["name"] for e in graph.search_nodes("payments")["entities"]] == ["falcon-api"]
    assert graph.search_nodes("nothing like it anywhere") == {"entities": [], "relations": []}


def test_names_are_matched_canonically(graph: ReferenceGraph) -> None:
    _seed(graph)
    assert (
        graph.create_entities([{"name": "john_smith", "entityType": "person", "observations": []}])
        == []
    )
    assert graph.delete_entities(["ANTHROPIC"]) == (["ANTHROPIC"], [])


def test_reads_see_every_commit_and_hand_out_copies(graph: ReferenceGraph) -> None:
    _seed(graph)
    first = graph.read_graph()
    first["entities"].clear()
    graph.db.kg.upsert_entity(graph.user_id, "concept", "written behind its back")
    names = [e["name"] for e in graph.read_graph()["entities"]]
    assert names[-1] == "written behind its back"
    assert len(names) == 4
    found = graph.search_nodes("behind its back")
    found["entities"][0]["observations"].append("changed by the caller")
    assert graph.open_nodes(["written behind its back"])["entities"][0]["observations"] == []
