"""``mangostore mcp PATH`` as an assistant runs it: a subprocess spoken to over stdio
by the official SDK's client."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mcp import ClientSession, StdioServerParameters, stdio_client

REFERENCE_TOOLS = {
    "create_entities",
    "create_relations",
    "add_observations",
    "delete_entities",
    "delete_observations",
    "delete_relations",
    "read_graph",
    "search_nodes",
    "open_nodes",
}


def _run(path: Path, *extra: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-c", "from mangostore.cli import main; main()", "mcp", str(path), *extra],
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
    )


def _session(
    params: StdioServerParameters, script: Callable[[ClientSession], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await script(session)

    anyio.run(main)


@pytest.fixture
def plain_path(tmp_path: Path) -> Path:
    """An unencrypted database file with one user, ``ann``."""
    path = tmp_path / "memory.db"
    with mangostore.create(path, encrypted=False).db as db:
        db.users.create(username="ann")
    return path


async def _call(session: ClientSession, name: str, arguments: dict[str, Any]) -> Any:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, result.content
    return result.structured_content


def test_the_reference_tools_over_stdio(plain_path: Path) -> None:
    async def script(session: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert REFERENCE_TOOLS | {"remember", "recall", "ask"} <= set(tools)
        schema = tools["create_relations"].input_schema
        item = schema["properties"]["relations"]["items"]
        if "$ref" in item:
            item = schema["$defs"][item["$ref"].rsplit("/", 1)[1]]
        assert set(item["required"]) == {"from", "to", "relationType"}
        made = await _call(
            session,
            "create_entities",
            {
                "entities": [
                    {"name": "Ann", "entityType": "person", "observations": ["prefers zsh"]},
                    {"name": "mango", "entityType": "project", "observations": []},
                ]
            },
        )
        assert [e["name"] for e in made["entities"]] == ["Ann", "mango"]
        related = await _call(
            session,
            "create_relations",
            {"relations": [{"from": "Ann", "to": "mango", "relationType": "works_on"}]},
        )
        assert related == {
            "relations": [{"from": "Ann", "to": "mango", "relationType": "works_on"}]
        }
        added = await _call(
            session,
            "add_observations",
            {"observations": [{"entityName": "mango", "contents": ["written in Python"]}]},
        )
        assert added == {
            "results": [{"entityName": "mango", "addedObservations": ["written in Python"]}]
        }
        result = await session.call_tool("read_graph", {})
        shown = json.loads(result.content[0].text)  # type: ignore[union-attr]
        assert shown == result.structured_content
        assert shown["relations"] == [{"from": "Ann", "to": "mango", "relationType": "works_on"}]
        found = await _call(session, "search_nodes", {"query": "python"})
        assert [e["name"] for e in found["entities"]] == ["mango"]
        opened = await _call(session, "open_nodes", {"names": ["Ann"]})
        assert opened["entities"][0]["observations"] == ["prefers zsh"]
        missing = await session.call_tool(
            "create_relations",
            {"relations": [{"from": "Ann", "to": "nobody", "relationType": "knows"}]},
        )
        assert missing.is_error
        assert "Entity with name nobody not found" in missing.content[0].text  # type: ignore[union-attr]
        gone = await _call(session, "delete_entities", {"entityNames": ["mango", "nobody"]})
        assert gone == {"success": True, "message": "Deleted 1 of 2 entities. Not found: nobody"}
        assert (await _call(session, "read_graph", {}))["relations"] == []

    _session(_run(plain_path, "--plain", "--no-embeddings"), script)


def test_an_encrypted_database_opens_with_the_passphrase_from_the_environment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vault.db"
    with mangostore.create(path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)).db as db:
        db.users.create(username="ann")
        db.users.create(username="bob")

    async def script(session: ClientSession) -> None:
        await _call(
            session,
            "create_entities",
            {"entities": [{"name": "kiwi", "entityType": "concept", "observations": []}]},
        )

    env = {"MANGOSTORE_PASSPHRASE": PASSPHRASE}
    _session(_run(path, "--user", "bob", "--no-embeddings", env=env), script)
    with mangostore.open(path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)) as db:
        bob = db.users.get_by_username("bob")
        assert bob is not None
        assert [e.name for e in db.kg_entities.list(user_id=bob.id)] == ["kiwi"]
