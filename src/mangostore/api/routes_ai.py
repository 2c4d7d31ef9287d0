"""Routes of the assistant's data: AI memory, conversations and the knowledge graph.

Every one needs a permission on the resource type ``ai`` for the caller's own user
id (``read`` to look, ``write`` to change); a grant on ``'*'`` covers it.
"""

# Annotations are evaluated at once (no ``from __future__ import annotations``): FastAPI
# reads the route signatures, whose dependencies are local to the factory.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from mangostore.api.pagination import in_order, page_ids
from mangostore.api.security import ApiContext, Caller
from mangostore.api.shapes import as_json, etagged, page
from mangostore.errors import NotFoundError
from mangostore.records import KGEntity

__all__ = ["ai_routes"]

Id = Annotated[str, Path(min_length=1, max_length=64)]
Ref = Annotated[str, Path(min_length=1, max_length=1024)]
ShortText = Annotated[str, Field(max_length=1024)]
MemoryType = Literal["fact", "preference", "skill", "context"]
Confidence = Annotated[float, Field(ge=0, le=1)]
TTL = Annotated[int, Field(ge=1, le=100 * 365 * 86_400_000, description="milliseconds")]


class MemoryBody(BaseModel):
    key: Annotated[str, Field(min_length=1, max_length=512)]
    value: Any
    memory_type: MemoryType = "fact"
    confidence: Confidence = 1.0
    ttl_ms: TTL | None = None
    project_id: ShortText | None = None
    conversation_id: ShortText | None = None
    source: Literal["user_input", "inference", "observation"] | None = None


class ConversationBody(BaseModel):
    title: ShortText | None = None
    project_id: ShortText | None = None
    context_type: Literal["general", "project", "terminal", "voice"] = "general"
    data: Any = None
    ttl_ms: TTL | None = None


class MessageBody(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=1_048_576)]
    token_count: Annotated[int, Field(ge=0, le=2**31)] | None = None


class EntityBody(BaseModel):
    type: Literal["person", "project", "command", "file", "concept"]
    name: Annotated[str, Field(min_length=1, max_length=1024)]
    description: Annotated[str, Field(max_length=8192)] | None = None
    aliases: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=1024)]], Field(max_length=64)
    ] = []
    metadata: dict[str, Any] | None = None
    confidence: Confidence | None = None


class RelationBody(BaseModel):
    subject: Annotated[str, Field(min_length=1, max_length=1024, description="id or name")]
    predicate: Annotated[str, Field(min_length=1, max_length=128)]
    object: Annotated[str, Field(min_length=1, max_length=1024, description="id or name")]
    weight: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    confidence: Confidence = 1.0


class ObservationBody(BaseModel):
    type: Literal["fact", "behavior", "preference", "pattern"] = "fact"
    content: Annotated[str, Field(min_length=1, max_length=8192)]
    confidence: Confidence = 1.0
    slot: Annotated[str, Field(min_length=1, max_length=128)] | None = None


def _recall_json(hit: Any) -> dict[str, Any]:
    return {
        "key": hit.key,
        "value": as_json(hit.value),
        "score": hit.score,
        "relevance": hit.relevance,
        "confidence": hit.confidence,
        "recency": hit.recency,
        "scope": hit.scope,
        "memory": as_json(hit.memory),
    }


def ai_routes(ctx: ApiContext) -> APIRouter:
    """The routes of AI memory, conversations and the knowledge graph."""
    db = ctx.db
    router = APIRouter()
    CallerDep = Annotated[Caller, Depends(ctx.caller)]
    Limit = Annotated[int, Query(ge=1, le=ctx.settings.max_page_size)]
    Cursor = Annotated[str | None, Query(max_length=128)]
    K = Annotated[int, Query(ge=1, le=100)]
    default_limit = ctx.settings.page_size

    def conversation(caller: Caller, conversation_id: str) -> Any:
        found = db.ai_conversations.get(conversation_id)
        if found.user_id != caller.user_id:
            raise NotFoundError(f"no ai_conversations record has id {conversation_id!r}")
        return found

    def entity(caller: Caller, ref: str) -> KGEntity:
        found = db.kg.resolve(caller.user_id, ref)
        if found.user_id != caller.user_id:
            raise NotFoundError(f"the knowledge graph has no entity {ref!r}")
        return found

    # -- memory ---------------------------------------------------------------------------

    @router.post("/v1/memory", status_code=201, tags=["memory"])
    def remember(caller: CallerDep, body: MemoryBody) -> dict[str, Any]:
        """Remember a value under a key (a new value supersedes the current one)."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        memory = db.memory.remember(
            caller.user_id,
            body.key,
            body.value,
            memory_type=body.memory_type,
            confidence=body.confidence,
            ttl=body.ttl_ms,
            project_id=body.project_id,
            conversation_id=body.conversation_id,
            source=body.source,
        )
        return as_json(memory)  # type: ignore[no-any-return]

    @router.get("/v1/memory/recall", tags=["memory"])
    def recall(
        caller: CallerDep,
        key: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
        k: K = 10,
        project_id: Annotated[str | None, Query(max_length=64)] = None,
        memory_type: MemoryType | None = None,
    ) -> dict[str, Any]:
        """Recall by exact ``key`` or by the words of ``q``, best first (counts access)."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        hits = db.memory.recall(
            caller.user_id,
            key,
            query=q,
            k=k,
            project_id=project_id,
            memory_type=memory_type,
        )
        return {"items": [_recall_json(hit) for hit in hits]}

    @router.get("/v1/memory", tags=["memory"])
    def list_memory(
        caller: CallerDep,
        limit: Limit = default_limit,
        project_id: Annotated[str | None, Query(max_length=64)] = None,
        memory_type: MemoryType | None = None,
    ) -> dict[str, Any]:
        """The caller's current memories, by key (does not count access)."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        found = db.memory.list(
            caller.user_id, memory_type=memory_type, project_id=project_id, limit=limit
        )
        return {"items": as_json(found)}

    @router.delete("/v1/memory/{key}", tags=["memory"])
    def forget(
        caller: CallerDep,
        key: Annotated[str, Path(min_length=1, max_length=512)],
        project_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, int]:
        """Forget every version of a key (hidden now, purged after the grace period)."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        return {"forgotten": db.memory.forget(caller.user_id, key, project_id=project_id)}

    # -- conversations --------------------------------------------------------------------

    @router.post("/v1/conversations", status_code=201, tags=["conversations"])
    def create_conversation(caller: CallerDep, body: ConversationBody) -> dict[str, Any]:
        """Start a conversation (its data is stored encrypted)."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        made = db.conversations.create(
            caller.user_id,
            title=body.title,
            project_id=body.project_id,
            context_type=body.context_type,
            data=body.data,
            ttl=body.ttl_ms,
        )
        return as_json(made)  # type: ignore[no-any-return]

    @router.get("/v1/conversations", tags=["conversations"])
    def list_conversations(
        caller: CallerDep,
        cursor: Cursor = None,
        limit: Limit = default_limit,
        status: Literal["active", "archived", "deleted"] | None = None,
    ) -> dict[str, Any]:
        """The caller's conversations, newest first."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        ids, after = page_ids(
            db, "ai_conversations", caller.user_id, cursor, limit, {"status": status}
        )
        return page(in_order(db.ai_conversations.list(id=ids), ids), after)

    @router.get("/v1/conversations/{conversation_id}", tags=["conversations"])
    def get_conversation(caller: CallerDep, conversation_id: Id, request: Request) -> Response:
        """One conversation (with an ETag)."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        return etagged(request, conversation(caller, conversation_id))

    @router.post(
        "/v1/conversations/{conversation_id}/messages", status_code=201, tags=["conversations"]
    )
    def append_message(caller: CallerDep, conversation_id: Id, body: MessageBody) -> dict[str, Any]:
        """Append a message (stored encrypted) to an active conversation."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        conversation(caller, conversation_id)
        message = db.conversations.append(
            conversation_id, body.role, body.content, token_count=body.token_count
        )
        return as_json(message)  # type: ignore[no-any-return]

    @router.get("/v1/conversations/{conversation_id}/messages", tags=["conversations"])
    def messages(
        caller: CallerDep,
        conversation_id: Id,
        after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Limit = default_limit,
    ) -> dict[str, Any]:
        """Messages in order after ``after_seq``; ``next_after_seq`` continues."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        conversation(caller, conversation_id)
        found = db.conversations.messages(conversation_id, after_seq=after_seq, limit=limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return {
            "items": as_json(found),
            "next_after_seq": found[-1].seq if more and found else None,
        }

    @router.post("/v1/conversations/{conversation_id}/archive", tags=["conversations"])
    def archive(caller: CallerDep, conversation_id: Id) -> dict[str, Any]:
        """Archive a conversation: readable, takes no new messages."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        conversation(caller, conversation_id)
        return as_json(db.conversations.archive(conversation_id))  # type: ignore[no-any-return]

    # -- knowledge graph ------------------------------------------------------------------

    @router.get("/v1/kg/search", tags=["knowledge graph"])
    def search(
        caller: CallerDep,
        q: Annotated[str, Query(min_length=1, max_length=1000)],
        k: K = 10,
        types: Annotated[
            list[Literal["person", "project", "command", "file", "concept"]] | None, Query()
        ] = None,
        explain: bool = False,
        min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.3,
    ) -> dict[str, Any]:
        """Answer a question from the caller's graph: entities, the facts that say so,
        confidences (and with ``explain``, the evidence)."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        hits = db.kg.search(
            caller.user_id, q, k=k, types=types, explain=explain, min_confidence=min_confidence
        )
        return {"items": as_json(hits)}

    @router.post("/v1/kg/entities", tags=["knowledge graph"])
    def upsert_entity(caller: CallerDep, body: EntityBody) -> dict[str, Any]:
        """Create an entity, or return the one that already is (same name, alias or a
        slip of it); ``created`` tells which."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        done = db.kg.upsert_entity(
            caller.user_id,
            body.type,
            body.name,
            description=body.description,
            metadata=body.metadata,
            confidence=body.confidence,
            aliases=body.aliases,
        )
        return as_json(done)  # type: ignore[no-any-return]

    @router.get("/v1/kg/entities/{ref}", tags=["knowledge graph"])
    def describe(caller: CallerDep, ref: Ref) -> dict[str, Any]:
        """An entity (by id or name) with its aliases, observations and relations."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        return as_json(db.kg.describe(entity(caller, ref)))  # type: ignore[no-any-return]

    @router.post("/v1/kg/relations", tags=["knowledge graph"])
    def relate(caller: CallerDep, body: RelationBody) -> dict[str, Any]:
        """Record ``subject -predicate-> object`` (ids or names), or strengthen it."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        made = db.kg.relate(
            entity(caller, body.subject),
            body.predicate,
            entity(caller, body.object),
            weight=body.weight,
            confidence=body.confidence,
        )
        return as_json(made)  # type: ignore[no-any-return]

    @router.post("/v1/kg/entities/{ref}/observations", tags=["knowledge graph"])
    def observe(caller: CallerDep, ref: Ref, body: ObservationBody) -> dict[str, Any]:
        """Record an observation about an entity, or confirm it."""
        ctx.allow(caller, "ai", caller.user_id, "write")
        made = db.kg.observe(
            entity(caller, ref),
            body.type,
            body.content,
            confidence=body.confidence,
            slot=body.slot,
        )
        return as_json(made)  # type: ignore[no-any-return]

    @router.get("/v1/kg/entities/{ref}/neighbors", tags=["knowledge graph"])
    def neighbors(
        caller: CallerDep,
        ref: Ref,
        depth: Annotated[int, Query(ge=1, le=4)] = 1,
        direction: Literal["in", "out", "both"] = "both",
        predicates: Annotated[list[str] | None, Query(max_length=32)] = None,
        limit: Limit = default_limit,
    ) -> dict[str, Any]:
        """The entities within ``depth`` hops, nearest first, each with one shortest path."""
        ctx.allow(caller, "ai", caller.user_id, "read")
        found = db.kg.neighbors(
            entity(caller, ref),
            depth=depth,
            direction=direction,
            predicates=predicates,
            limit=limit,
        )
        return {"items": as_json(found)}

    return router
