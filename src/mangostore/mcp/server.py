"""The MCP server: ``create_server(db, user_id)``, on the official ``mcp`` SDK.

Tools with the names, arguments and results of the reference memory server
(``@modelcontextprotocol/server-memory``), so an assistant configured for it works
unchanged (:mod:`mangostore.mcp.graph` says where the two differ), plus mangostore's
own: ``remember`` and ``recall`` (``db.memory``) and ``ask`` (the knowledge graph's
search, which answers questions about the past: "what did I use before zsh").

Every tool's result carries its JSON both as text and as structured content, as the
reference does. A refused call is an error result whose text says what was wrong.
"""

# Annotations are evaluated at once (no ``from __future__ import annotations``): the SDK
# reads the tool signatures, whose models are local to create_server.
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

import mangostore
from mangostore import Database
from mangostore.errors import MangoError
from mangostore.mcp.graph import ReferenceGraph

__all__ = ["SERVER_NAME", "create_server"]

SERVER_NAME = "mangostore-memory"
T = TypeVar("T")


class Entity(BaseModel):
    name: str = Field(description="The name of the entity")
    entityType: str = Field(description="The type of the entity")
    observations: list[str] = Field(
        description="An array of observation contents associated with the entity"
    )


class Relation(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="The name of the entity where the relation starts")
    to: str = Field(description="The name of the entity where the relation ends")
    relationType: str = Field(description="The type of the relation")


class ObservationAddition(BaseModel):
    entityName: str = Field(description="The name of the entity to add the observations to")
    contents: list[str] = Field(description="An array of observation contents to add")


class ObservationDeletion(BaseModel):
    entityName: str = Field(description="The name of the entity containing the observations")
    observations: list[str] = Field(description="An array of observations to delete")


class AddedObservations(BaseModel):
    entityName: str
    addedObservations: list[str]


class EntitiesResult(BaseModel):
    entities: list[Entity]


class RelationsResult(BaseModel):
    relations: list[Relation]


class ObservationsResult(BaseModel):
    results: list[AddedObservations]


class DeletionResult(BaseModel):
    success: bool
    message: str


class GraphResult(BaseModel):
    entities: list[Entity]
    relations: list[Relation]


class Remembered(BaseModel):
    id: str
    key: str
    value: Any
    memory_type: str
    confidence: float


class Recalled(BaseModel):
    key: str
    value: Any
    memory_type: str
    score: float


class RecallResult(BaseModel):
    memories: list[Recalled]


class Answer(BaseModel):
    name: str
    entityType: str
    confidence: float
    fact: str | None = Field(description="the relation or observation that answers, in words")
    valid_from: int | None = Field(description="when the fact began to hold (epoch ms)")
    valid_to: int | None = Field(description="when it stopped holding (epoch ms), or null")


class AnswerResult(BaseModel):
    answers: list[Answer]


def _result(structured: dict[str, Any], text: str | None = None) -> CallToolResult:
    """What the reference answers: the JSON as text (or a message), and as structure."""
    shown = text if text is not None else json.dumps(structured, indent=2, ensure_ascii=False)
    return CallToolResult(
        content=[TextContent(type="text", text=shown)], structured_content=structured
    )


def _refusing(action: Callable[[], T]) -> T:
    """Run ``action``; a library refusal becomes the tool's error result."""
    try:
        return action()
    except MangoError as exc:
        raise ToolError(" ".join(str(exc).split())) from exc


def _hints(
    *, read_only: bool, destructive: bool = False, idempotent: bool = False
) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def create_server(db: Database, user_id: str) -> MCPServer:
    """An MCP server over the knowledge graph and memory of ``user_id`` in ``db``
    (which the caller opens and closes). Run it with ``.run()`` (stdio)."""
    graph = ReferenceGraph(db, user_id)
    server: MCPServer = MCPServer(
        name=SERVER_NAME,
        version=mangostore.__version__,
        instructions="Long-term memory as a knowledge graph (entities, relations, "
        "observations) in an encrypted mangostore database, plus remember/recall of "
        "keyed memories and ask for questions the graph can answer.",
    )

    @server.tool(
        title="Create Entities",
        description="Create multiple new entities in the knowledge graph",
        annotations=_hints(read_only=False),
    )
    def create_entities(entities: list[Entity]) -> Annotated[CallToolResult, EntitiesResult]:
        made = _refusing(lambda: graph.create_entities([e.model_dump() for e in entities]))
        return _result({"entities": made})

    @server.tool(
        title="Create Relations",
        description="Create multiple new relations between entities in the knowledge graph. "
        "Relations should be in active voice",
        annotations=_hints(read_only=False),
    )
    def create_relations(relations: list[Relation]) -> Annotated[CallToolResult, RelationsResult]:
        given = [r.model_dump(by_alias=True) for r in relations]
        return _result({"relations": _refusing(lambda: graph.create_relations(given))})

    @server.tool(
        title="Add Observations",
        description="Add new observations to existing entities in the knowledge graph",
        annotations=_hints(read_only=False),
    )
    def add_observations(
        observations: list[ObservationAddition],
    ) -> Annotated[CallToolResult, ObservationsResult]:
        given = [o.model_dump() for o in observations]
        return _result({"results": _refusing(lambda: graph.add_observations(given))})

    @server.tool(
        title="Delete Entities",
        description="Delete multiple entities and their associated relations from the "
        "knowledge graph",
        annotations=_hints(read_only=False, destructive=True, idempotent=True),
    )
    def delete_entities(
        entityNames: Annotated[list[str], Field(description="An array of entity names to delete")],
    ) -> Annotated[CallToolResult, DeletionResult]:
        deleted, missing = _refusing(lambda: graph.delete_entities(entityNames))
        message = (
            "Entities deleted successfully"
            if not missing
            else f"Deleted {len(deleted)} of {len(entityNames)} entities. "
            f"Not found: {', '.join(missing)}"
        )
        return _result({"success": True, "message": message}, message)

    @server.tool(
        title="Delete Observations",
        description="Delete specific observations from entities in the knowledge graph",
        annotations=_hints(read_only=False, destructive=True, idempotent=True),
    )
    def delete_observations(
        deletions: list[ObservationDeletion],
    ) -> Annotated[CallToolResult, DeletionResult]:
        given = [d.model_dump() for d in deletions]
        count, missing = _refusing(lambda: graph.delete_observations(given))
        requested = sum(len(d.observations) for d in deletions)
        message = "Observations deleted successfully"
        if count != requested:
            message = f"Deleted {count} of {requested} observations." + (
                f" Entities not found: {', '.join(missing)}" if missing else ""
            )
        return _result({"success": True, "message": message}, message)

    @server.tool(
        title="Delete Relations",
        description="Delete multiple relations from the knowledge graph",
        annotations=_hints(read_only=False, destructive=True, idempotent=True),
    )
    def delete_relations(
        relations: Annotated[list[Relation], Field(description="An array of relations to delete")],
    ) -> Annotated[CallToolResult, DeletionResult]:
        given = [r.model_dump(by_alias=True) for r in relations]
        count = _refusing(lambda: graph.delete_relations(given))
        message = (
            "Relations deleted successfully"
            if count == len(relations)
            else f"Deleted {count} of {len(relations)} relations. The rest matched nothing."
        )
        return _result({"success": True, "message": message}, message)

    @server.tool(
        title="Read Graph",
        description="Read the entire knowledge graph",
        annotations=_hints(read_only=True, idempotent=True),
    )
    def read_graph() -> Annotated[CallToolResult, GraphResult]:
        return _result(_refusing(graph.read_graph))

    @server.tool(
        title="Search Nodes",
        description="Search for nodes in the knowledge graph based on a query",
        annotations=_hints(read_only=True, idempotent=True),
    )
    def search_nodes(
        query: Annotated[
            str,
            Field(
                max_length=2048,
                description="The search query to match against entity names, types, and "
                "observation content",
            ),
        ],
    ) -> Annotated[CallToolResult, GraphResult]:
        return _result(_refusing(lambda: graph.search_nodes(query)))

    @server.tool(
        title="Open Nodes",
        description="Open specific nodes in the knowledge graph by their names",
        annotations=_hints(read_only=True, idempotent=True),
    )
    def open_nodes(
        names: Annotated[list[str], Field(description="An array of entity names to retrieve")],
    ) -> Annotated[CallToolResult, GraphResult]:
        return _result(_refusing(lambda: graph.open_nodes(names)))

    @server.tool(
        title="Remember",
        description="Remember a value under a key (a preference, fact, skill or context); "
        "a new value for the key replaces the old one, which is kept as history",
        annotations=_hints(read_only=False),
    )
    def remember(
        key: Annotated[str, Field(min_length=1, max_length=512)],
        value: Annotated[Any, Field(description="any JSON value")],
        memory_type: Literal["fact", "preference", "skill", "context"] = "fact",
        confidence: Annotated[float, Field(ge=0, le=1)] = 1.0,
        ttl_ms: Annotated[int | None, Field(ge=1, description="forget after this many ms")] = None,
    ) -> Annotated[CallToolResult, Remembered]:
        memory = _refusing(
            lambda: db.memory.remember(
                user_id, key, value, memory_type=memory_type, confidence=confidence, ttl=ttl_ms
            )
        )
        return _result(
            {
                "id": memory.id,
                "key": memory.key_name,
                "value": memory.value_data,
                "memory_type": memory.memory_type,
                "confidence": memory.confidence_score,
            }
        )

    @server.tool(
        title="Recall",
        description="Recall memories by exact key, or by the words of a query, best first",
        annotations=_hints(read_only=False),
    )
    def recall(
        query: Annotated[str | None, Field(max_length=1000)] = None,
        key: Annotated[str | None, Field(max_length=512)] = None,
        k: Annotated[int, Field(ge=1, le=100)] = 5,
    ) -> Annotated[CallToolResult, RecallResult]:
        if (query is None) == (key is None):
            raise ToolError("give either query or key")
        hits = _refusing(lambda: db.memory.recall(user_id, key, query=query, k=k))
        return _result(
            {
                "memories": [
                    {
                        "key": h.key,
                        "value": h.value,
                        "memory_type": h.memory.memory_type,
                        "score": h.score,
                    }
                    for h in hits
                ]
            }
        )

    @server.tool(
        title="Ask",
        description="Answer a question from the knowledge graph (facts as answers, with when "
        "they held; 'before', 'used to', 'last week' ask about the past); no answer when "
        "the graph does not know",
        annotations=_hints(read_only=True, idempotent=True),
    )
    def ask(
        question: Annotated[str, Field(min_length=1, max_length=1000)],
        k: Annotated[int, Field(ge=1, le=50)] = 5,
        as_of: Annotated[int | None, Field(ge=0, description="answer as of this epoch ms")] = None,
    ) -> Annotated[CallToolResult, AnswerResult]:
        hits = _refusing(lambda: db.kg.search(user_id, question, k=k, as_of=as_of))
        answers = []
        for hit in hits:
            fact = hit.fact
            answers.append(
                {
                    "name": hit.entity.name,
                    "entityType": hit.entity.entity_type,
                    "confidence": hit.confidence,
                    "fact": _fact_text(db, fact),
                    "valid_from": getattr(fact, "valid_from", None),
                    "valid_to": getattr(fact, "valid_to", None),
                }
            )
        return _result({"answers": answers})

    return server


def _fact_text(db: Database, fact: Any) -> str | None:
    """A relation as ``subject predicate object``, an observation as its content."""
    if fact is None:
        return None
    if hasattr(fact, "predicate"):
        subject, obj = db.kg.get(fact.subject_id), db.kg.get(fact.object_id)
        return f"{subject.name} {fact.predicate} {obj.name}"
    return str(fact.content)
