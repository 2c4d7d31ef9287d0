"""Import and export of the Model Context Protocol "memory" server's JSONL file.

That file holds one JSON object a line::

    {"type": "entity", "name": "John_Smith", "entityType": "person",
     "observations": ["Speaks fluent Spanish"]}
    {"type": "relation", "from": "John_Smith", "to": "Anthropic", "relationType": "works_at"}

Mapping:

- ``entityType`` values the schema accepts (person, project, command, file, concept,
  in any case) are kept. Common others are mapped (:data:`TYPE_MAP`: organization,
  place, event... to ``concept``; repository to ``project``; tool to ``command``;
  document to ``file``; user to ``person``), and anything else becomes ``concept``.
  Whenever the stored type differs from the file's, the original is kept in the
  entity's metadata under ``mcp_entity_type`` and written back on export.
- Each observation string becomes a ``fact`` observation.
- ``relationType`` becomes a predicate: lower case, camelCase split, every run of
  other characters an underscore (``worksAt`` and ``works at`` both ``works_at``).
- Entities are matched by canonical name and type, so importing a file twice changes
  nothing; no similarity matching is applied, since the file's names are distinct keys.
- A relation naming an entity the file and the database do not have is skipped and
  counted.

Export writes the entities, their observations and the relations that hold now.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from mangostore.errors import ValidationError
from mangostore.kg.model import ENTITY_TYPES, EntityRef, Observation, Relation, Upsert
from mangostore.progress import Progress, Reporter
from mangostore.records import KGEntity

if TYPE_CHECKING:
    from mangostore.kg.ports import GraphDatabase

__all__ = [
    "REPORT_EVERY",
    "TYPE_MAP",
    "GraphWriter",
    "export_jsonl",
    "import_jsonl",
    "map_entity_type",
    "map_relation_type",
]

#: Entity types of the MCP world mapped onto the schema's; unlisted ones become concept.
TYPE_MAP = {
    "people": "person",
    "user": "person",
    "human": "person",
    "contact": "person",
    "repository": "project",
    "repo": "project",
    "codebase": "project",
    "tool": "command",
    "cli": "command",
    "program": "command",
    "document": "file",
    "path": "file",
    "directory": "file",
    "folder": "file",
}
_METADATA_KEY = "mcp_entity_type"
#: Items (entities or relations) imported between two progress reports.
REPORT_EVERY = 100


class GraphWriter(Protocol):
    """What an import needs of the knowledge graph (``db.kg`` provides it).

    The import goes through these public methods, not around them, so that the text
    of the file is checked as any caller's would be (a lone surrogate in a name is
    refused naming ``name``).
    """

    def find(self, user_id: str, name: str, type: str | None = None) -> KGEntity | None:
        """Return the user's entity with this name or alias, or None."""
        ...

    def upsert_entity(
        self,
        user_id: str,
        type: str,
        name: str,
        *,
        metadata: dict[str, Any] | None = None,
        dedup: bool = True,
    ) -> Upsert:
        """Return the user's entity of this type and name, creating it if there is none."""
        ...

    def observe(self, entity: EntityRef, type: str, content: str) -> Observation:
        """Record an observation about an entity, or confirm it."""
        ...

    def relate(self, subject: EntityRef, predicate: str, object: EntityRef) -> Relation:
        """Record ``subject -predicate-> object``, or strengthen it."""
        ...


def map_entity_type(entity_type: str) -> str:
    """Return the schema type for an MCP ``entityType``."""
    key = entity_type.strip().casefold()
    if key in ENTITY_TYPES:
        return key
    return TYPE_MAP.get(key, "concept")


def map_relation_type(relation_type: str) -> str:
    """Return the predicate for an MCP ``relationType`` (a lowercase identifier)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", relation_type.strip())
    predicate = re.sub(r"[^a-z0-9]+", "_", spaced.casefold()).strip("_")
    return predicate or "related_to"


def _parse(lines: Iterable[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entities: list[dict[str, Any]] = []
    relations: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"line {number} is not JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise ValidationError(f"line {number} is not a JSON object")
        kind = item.get("type")
        if kind == "entity":
            name, entity_type = item.get("name"), item.get("entityType", "concept")
            observations = item.get("observations", [])
            if not isinstance(name, str) or not name.strip() or not isinstance(entity_type, str):
                raise ValidationError(f"line {number}: an entity needs a name and an entityType")
            if not isinstance(observations, list) or not all(
                isinstance(o, str) for o in observations
            ):
                raise ValidationError(f"line {number}: observations must be a list of strings")
            entities.append(item)
        elif kind == "relation":
            if not all(isinstance(item.get(key), str) for key in ("from", "to", "relationType")):
                raise ValidationError(
                    f"line {number}: a relation needs from, to and relationType strings"
                )
            relations.append(item)
        else:
            raise ValidationError(f"line {number}: type must be 'entity' or 'relation'")
    return entities, relations


def import_jsonl(
    db: GraphDatabase,
    kg: GraphWriter,
    user_id: str,
    lines: Iterable[str],
    *,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Import MCP memory JSONL lines for ``user_id`` in one transaction.

    Args:
        db: the database whose transaction holds the whole import.
        kg: the knowledge graph that stores the entities, observations and relations.
        user_id: the user whose graph receives the file.
        lines: the file's lines.
        progress: told of the stages ``"importing entities"`` and ``"importing
            relations"`` every :data:`REPORT_EVERY` items, inside the import's
            transaction: a callback that raises rolls the whole import back.

    Returns counts: ``entities_created``, ``entities_matched``, ``observations``,
    ``relations`` and ``relations_skipped``.

    Raises:
        ValidationError: a line is not valid JSON or not an entity or relation;
            nothing was imported.
    """
    entities, relations = _parse(lines)
    counts = dict.fromkeys(
        ("entities_created", "entities_matched", "observations", "relations", "relations_skipped"),
        0,
    )
    by_name: dict[str, str] = {}
    report = Reporter(progress, every=REPORT_EVERY)
    with db.transaction():
        report.begin("importing entities", len(entities))
        for item in entities:
            original = item.get("entityType", "concept")
            stored = map_entity_type(original)
            metadata = {_METADATA_KEY: original} if original != stored else None
            existing = kg.find(user_id, item["name"], stored)
            if existing is not None and existing.name == item["name"]:
                entity = existing
                counts["entities_matched"] += 1
            else:
                entity = kg.upsert_entity(
                    user_id, stored, item["name"], metadata=metadata, dedup=False
                ).entity
                counts["entities_created"] += 1
            by_name[item["name"]] = entity.id
            for content in item.get("observations", []):
                if content.strip():
                    kg.observe(entity, "fact", content)
                    counts["observations"] += 1
            report.advance()
        report.end()
        report.begin("importing relations", len(relations))
        for item in relations:
            report.advance()
            ends = []
            for key in ("from", "to"):
                entity_id = by_name.get(item[key])
                if entity_id is None:
                    found = kg.find(user_id, item[key])
                    entity_id = found.id if found is not None else None
                ends.append(entity_id)
            if ends[0] is None or ends[1] is None:
                counts["relations_skipped"] += 1
                continue
            kg.relate(ends[0], map_relation_type(item["relationType"]), ends[1])
            counts["relations"] += 1
        report.end()
    return counts


def export_jsonl(db: GraphDatabase, user_id: str) -> Iterator[str]:
    """Yield the user's graph as MCP memory JSONL lines (without newlines).

    Entities come first (oldest first), each with the observations that hold now
    (by the database's clock), then the relations that hold now.
    """
    now = db.clock.now_ms()
    names: dict[str, str] = {}
    entities = db.kg_entities.list(user_id=user_id, order_by=["created_at", "id"])
    observations: dict[str, list[str]] = {}
    for entity_id, content in db.query(
        "SELECT o.entity_id, o.content FROM kg_observations o "
        "JOIN kg_observation_validity v ON v.observation_id = o.id "
        "WHERE o.user_id = ? AND v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?) "
        "ORDER BY v.valid_from, o.id",
        (user_id, now, now),
    ):
        observations.setdefault(entity_id, []).append(content)
    for entity in entities:
        names[entity.id] = entity.name
        metadata = entity.metadata if isinstance(entity.metadata, dict) else {}
        original = metadata.get(_METADATA_KEY)
        yield json.dumps(
            {
                "type": "entity",
                "name": entity.name,
                "entityType": original if isinstance(original, str) else entity.entity_type,
                "observations": observations.get(entity.id, []),
            },
            ensure_ascii=False,
        )
    for subject, predicate, obj in db.query(
        "SELECT r.subject_id, r.predicate, r.object_id FROM kg_relations r "
        "JOIN kg_relation_validity v ON v.relation_id = r.id "
        "WHERE r.user_id = ? AND v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?) "
        "ORDER BY r.created_at, r.id",
        (user_id, now, now),
    ):
        if subject in names and obj in names:
            yield json.dumps(
                {
                    "type": "relation",
                    "from": names[subject],
                    "to": names[obj],
                    "relationType": predicate,
                },
                ensure_ascii=False,
            )
