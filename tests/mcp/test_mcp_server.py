"""Every tool of the MCP server, in process, through the SDK's own client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.mcp import SERVER_NAME, create_server
from mcp import Client

DAY_MS = 86_400_000


@pytest.fixture
def served() -> Iterator[tuple[mangostore.Database, str, ManualClock]]:
    """A keyed in-memory database on a manual clock, its user ``ann`` and the clock."""
    clock = ManualClock()
    with mangostore.open(
        ":memory:", passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF), clock=clock
    ) as db:
        db.kg.set_embedder(None)
        yield db, db.users.create(username="ann").id, clock


def _talk(
    db: mangostore.Database, user_id: str, script: Callable[[Client], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with Client(create_server(db, user_id)) as client:
            await script(client)

    anyio.run(main)


async def _ok(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def _text(client: Client, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    result = await client.call_tool(name, arguments)
    block = result.content[0]
    assert block.type == "text"
    return bool(result.is_error), block.text


def test_the_server_names_itself_and_its_tools(served: Any) -> None:
    db, user_id, _clock = served
    server = create_server(db, user_id)
    assert server.name == SERVER_NAME

    async def script(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["read_graph"].annotations is not None
        assert tools["read_graph"].annotations.read_only_hint is True
        assert tools["delete_entities"].annotations is not None
        assert tools["delete_entities"].annotations.destructive_hint is True
        assert tools["search_nodes"].input_schema["properties"]["query"]["maxLength"] == 2048
        assert tools["create_entities"].output_schema is not None

    _talk(db, user_id, script)


def test_deletions_answer_with_the_reference_messages(served: Any) -> None:
    db, user_id, _clock = served

    async def script(client: Client) -> None:
        await _ok(
            client,
            "create_entities",
            {
                "entities": [
                    {
                        "name": "Ann",
                        "entityType": "person",
                        "observations": ["likes tea", "owns a cat"],
                    },
                    {"name": "mango", "entityType": "project", "observations": []},
                ]
            },
        )
        await _ok(
            client,
            "create_relations",
            {"relations": [{"from": "Ann", "to": "mango", "relationType": "works_on"}]},
        )
        assert await _text(
            client,
            "delete_observations",
            {"deletions": [{"entityName": "Ann", "observations": ["likes tea"]}]},
        ) == (False, "Observations deleted successfully")
        assert await _text(
            client,
            "delete_observations",
            {"deletions": [{"entityName": "Zed", "observations": ["x"]}]},
        ) == (False, "Deleted 0 of 1 observations. Entities not found: Zed")
        relation = {"from": "Ann", "to": "mango", "relationType": "works_on"}
        other = {"from": "Ann", "to": "mango", "relationType": "owns"}
        assert await _text(client, "delete_relations", {"relations": [relation]}) == (
            False,
            "Relations deleted successfully",
        )
        assert await _text(client, "delete_relations", {"relations": [other]}) == (
            False,
            "Deleted 0 of 1 relations. The rest matched nothing.",
        )
        assert await _text(client, "delete_entities", {"entityNames": ["mango"]}) == (
            False,
            "Entities deleted successfully",
        )
        graph = await _ok(client, "read_graph", {})
        assert graph == {
            "entities": [{"name": "Ann", "entityType": "person", "observations": ["owns a cat"]}],
            "relations": [],
        }
        error, text = await _text(
            client, "add_observations", {"observations": [{"entityName": "Zed", "contents": ["x"]}]}
        )
        assert error
        assert text.endswith("Entity with name Zed not found")
        error, text = await _text(
            client,
            "create_entities",
            {"entities": [{"name": "x\ud800", "entityType": "concept", "observations": []}]},
        )
        assert error

    _talk(db, user_id, script)


def test_the_text_is_the_reference_json(served: Any) -> None:
    db, user_id, _clock = served

    async def script(client: Client) -> None:
        entity = {"name": "Łódź", "entityType": "place", "observations": ["a city"]}
        result = await client.call_tool("create_entities", {"entities": [entity]})
        block = result.content[0]
        assert block.type == "text"
        assert block.text == json.dumps({"entities": [entity]}, indent=2, ensure_ascii=False)

    _talk(db, user_id, script)


def test_remember_and_recall(served: Any) -> None:
    db, user_id, _clock = served

    async def script(client: Client) -> None:
        made = await _ok(
            client,
            "remember",
            {"key": "preferred_shell", "value": {"name": "fish"}, "memory_type": "preference"},
        )
        assert made["value"] == {"name": "fish"}
        assert made["memory_type"] == "preference"
        by_key = await _ok(client, "recall", {"key": "preferred_shell"})
        assert [m["value"] for m in by_key["memories"]] == [{"name": "fish"}]
        by_words = await _ok(client, "recall", {"query": "which shell", "k": 3})
        assert by_words["memories"][0]["key"] == "preferred_shell"
        error, text = await _text(client, "recall", {"key": "a", "query": "b"})
        assert error
        assert "either query or key" in text
        refused = await client.call_tool("remember", {"key": "k", "value": 1, "ttl_ms": 0})
        assert refused.is_error

    _talk(db, user_id, script)
    assert db.memory.recall(user_id, "preferred_shell")[0].value == {"name": "fish"}


def test_ask_answers_with_the_fact_and_when_it_held(served: Any) -> None:
    db, user_id, clock = served
    kg = db.kg
    kg.declare_predicate("preferred_shell", single_valued=True)
    ann = kg.upsert_entity(user_id, "person", "Ann").entity
    kg.set_speaker(user_id, ann)
    kg.relate(ann, "preferred_shell", kg.upsert_entity(user_id, "command", "bash").entity)
    clock.advance(30 * DAY_MS)
    kg.relate(ann, "preferred_shell", kg.upsert_entity(user_id, "command", "zsh").entity)

    async def script(client: Client) -> None:
        now = (await _ok(client, "ask", {"question": "which shell do I prefer"}))["answers"]
        assert now[0]["name"] == "zsh"
        assert now[0]["fact"] == "Ann preferred_shell zsh"
        assert now[0]["valid_to"] is None
        before = (await _ok(client, "ask", {"question": "which shell did I use before"}))["answers"]
        assert before[0]["name"] == "bash"
        assert before[0]["valid_to"] is not None
        unknown = await _ok(client, "ask", {"question": "what is my cat called"})
        assert unknown == {"answers": []}

    _talk(db, user_id, script)
