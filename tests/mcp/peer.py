"""The same scripted session against the reference memory server and ``mangostore mcp``.

Used by test_mcp_peer.py (the reference tools give the same results) and, run as a
program, to compare search quality and latency at a size::

    python -m tests.mcp.peer /path/to/server-memory/dist/index.js --entities 1000

The reference server is the npm package ``@modelcontextprotocol/server-memory``
(``npm install @modelcontextprotocol/server-memory``; give its ``dist/index.js``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import mangostore
from mcp import ClientSession, StdioServerParameters, stdio_client

#: The scripted session: (tool, arguments), each answered with structured content.
SESSION: list[tuple[str, dict[str, Any]]] = [
    (
        "create_entities",
        {
            "entities": [
                {"name": "John_Smith", "entityType": "person", "observations": ["Speaks Spanish"]},
                {"name": "Anthropic", "entityType": "organization", "observations": []},
                {"name": "falcon", "entityType": "project", "observations": ["written in Rust"]},
            ]
        },
    ),
    (
        "create_entities",
        {"entities": [{"name": "falcon", "entityType": "project", "observations": []}]},
    ),
    (
        "create_relations",
        {
            "relations": [
                {"from": "John_Smith", "to": "Anthropic", "relationType": "works_at"},
                {"from": "John_Smith", "to": "falcon", "relationType": "maintains"},
            ]
        },
    ),
    (
        "create_relations",
        {"relations": [{"from": "John_Smith", "to": "Anthropic", "relationType": "works_at"}]},
    ),
    (
        "add_observations",
        {
            "observations": [
                {"entityName": "falcon", "contents": ["written in Rust", "deploys on friday"]}
            ]
        },
    ),
    ("read_graph", {}),
    ("search_nodes", {"query": "rust"}),
    ("search_nodes", {"query": "PERSON"}),
    ("open_nodes", {"names": ["falcon", "nobody"]}),
    (
        "delete_observations",
        {"deletions": [{"entityName": "falcon", "observations": ["deploys on friday"]}]},
    ),
    (
        "delete_relations",
        {"relations": [{"from": "John_Smith", "to": "falcon", "relationType": "maintains"}]},
    ),
    ("delete_entities", {"entityNames": ["Anthropic"]}),
    ("read_graph", {}),
]


def reference_server(script: Path, folder: Path) -> StdioServerParameters:
    """The reference server at ``script`` (its dist/index.js), keeping its file in ``folder``."""
    return StdioServerParameters(
        command="node",
        args=[str(script)],
        env={"PATH": os.environ.get("PATH", ""), "MEMORY_FILE_PATH": str(folder / "memory.jsonl")},
    )


def mangostore_server(folder: Path, *extra: str) -> StdioServerParameters:
    """``mangostore mcp`` over a new unencrypted database with one user, in ``folder``."""
    path = folder / "memory.db"
    if not path.exists():
        with mangostore.create(path, encrypted=False).db as db:
            db.users.create(username="ann")
    return StdioServerParameters(
        command=sys.executable,
        args=["-c", "from mangostore.cli import main; main()", "mcp", str(path), "--plain", *extra],
        env={"PATH": os.environ.get("PATH", "")},
    )


def talk(params: StdioServerParameters, script: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Run ``script`` on a session with the server of ``params``; return what it returns."""
    out: list[Any] = []

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            out.append(await script(session))

    anyio.run(main)
    return out[0]


def run_session(params: StdioServerParameters) -> list[Any]:
    """The structured result of every step of :data:`SESSION`."""

    async def script(session: ClientSession) -> list[Any]:
        results = []
        for tool, arguments in SESSION:
            result = await session.call_tool(tool, arguments)
            results.append(result.structured_content)
        return results

    return talk(params, script)


# -- measurement ------------------------------------------------------------------------

LANGUAGES = ["rust", "python", "go", "java", "kotlin", "haskell", "ocaml", "elixir"]
TEAMS = ["kiwi", "mango", "papaya", "guava", "lychee", "durian", "quince", "feijoa"]


def _word(i: int) -> str:
    """A made-up word per entity (no word is a substring of another's)."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    letters = []
    for _ in range(4):
        letters.append(consonants[i % len(consonants)] + vowels[(i // 7) % len(vowels)])
        i //= 5
    return "".join(letters) + "x"


def corpus(count: int) -> list[dict[str, Any]]:
    """``count`` project entities, each with three observations and a codename."""
    return [
        {
            "name": f"service-{i:05d}",
            "entityType": "project",
            "observations": [
                f"written in {LANGUAGES[i % len(LANGUAGES)]}",
                f"owned by team {TEAMS[(i // 8) % len(TEAMS)]}",
                f"codename {_word(i)} {i}",
            ],
        }
        for i in range(count)
    ]


def measure(params: StdioServerParameters, count: int, queries: int = 20) -> dict[str, Any]:
    """Load ``count`` entities, then time and score three kinds of search."""
    entities = corpus(count)
    picks = [entities[(j * 7919) % count] for j in range(queries)]
    kinds = {
        "exact name": [(e["name"], e["name"]) for e in picks],
        "codename word": [(e["observations"][2].split()[1], e["name"]) for e in picks],
        "question": [
            (f"which service has the codename {e['observations'][2].split()[1]}", e["name"])
            for e in picks
        ],
    }

    async def script(session: ClientSession) -> dict[str, Any]:
        started = time.perf_counter()
        for start in range(0, count, 500):
            await session.call_tool("create_entities", {"entities": entities[start : start + 500]})
        report: dict[str, Any] = {"load_s": time.perf_counter() - started}
        for kind, pairs in kinds.items():
            times, found, sizes = [], 0, []
            for query, expected in pairs:
                began = time.perf_counter()
                result = await session.call_tool("search_nodes", {"query": query})
                times.append(time.perf_counter() - began)
                names = [e["name"] for e in (result.structured_content or {}).get("entities", [])]
                found += expected in names
                sizes.append(len(names))
            report[kind] = {
                "found": f"{found}/{len(pairs)}",
                "median_ms": round(statistics.median(times) * 1000, 1),
                "mean_returned": round(statistics.mean(sizes), 1),
            }
        return report

    return talk(params, script)


def main() -> None:
    """Print both servers' figures at one size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("reference", type=Path, help="the reference server's dist/index.js")
    parser.add_argument("--entities", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as ref_dir, tempfile.TemporaryDirectory() as own_dir:
        print("reference", measure(reference_server(args.reference, Path(ref_dir)), args.entities))
        print(
            "mangostore",
            measure(mangostore_server(Path(own_dir), "--no-embeddings"), args.entities),
        )


if __name__ == "__main__":
    main()
