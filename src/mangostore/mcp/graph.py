"""The reference MCP memory server's operations, on one user's knowledge graph.

The tools of ``@modelcontextprotocol/server-memory`` (create_entities,
create_relations, add_observations, delete_entities, delete_observations,
delete_relations, read_graph, search_nodes, open_nodes) take and return its shapes:
entities ``{name, entityType, observations}`` and relations ``{from, to,
relationType}``. :class:`ReferenceGraph` does each on ``db.kg``, writing and reading
through the MCP memory JSONL mapping ``db.kg.import_jsonl`` / ``export_jsonl`` already
use (:mod:`mangostore.kg.mcp_jsonl`), so the two agree on every name and type.

Where mangostore's graph differs from the reference's file, on purpose:

- names are matched canonically (case, width and spacing: ``Ann`` and ``ann`` are one
  entity) and by alias, where the reference compares them exactly;
- a relation type is stored as a lowercase identifier (``worksAt`` becomes
  ``works_at``), which is what reading the graph returns;
- an observation already held with another case or spacing is confirmed rather than
  stored twice;
- ``search_nodes`` returns what the reference's substring match finds; when that is
  nothing, the entities mangostore's hybrid search answers the query with (by words,
  meaning, spoken forms, facts), with the relations that touch any of them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from typing import Any

from mangostore import Database
from mangostore.errors import NotFoundError
from mangostore.kg.mcp_jsonl import map_relation_type
from mangostore.records import KGEntity

__all__ = ["Graph", "ReferenceGraph"]

Graph = dict[str, list[dict[str, Any]]]


class ReferenceGraph:
    """The reference memory server's operations on the graph of ``user_id`` in ``db``."""

    def __init__(self, db: Database, user_id: str) -> None:
        self.db = db
        self.user_id = user_id
        # The last graph read, and the commit count it was read at: searches and
        # opens reuse it until anything is committed, by any process.
        self._cached: tuple[int, Graph] | None = None

    # -- writes ---------------------------------------------------------------------------

    def create_entities(self, entities: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create the entities whose names are new; return those created, as given."""
        created: list[dict[str, Any]] = []
        seen: set[str] = set()
        for item in entities:
            name = item["name"]
            # Two spellings of one name in a batch are one entity, as in the graph.
            spelling = " ".join(name.casefold().split())
            if spelling in seen or self._find(name) is not None:
                continue
            seen.add(spelling)
            created.append(
                {
                    "name": name,
                    "entityType": item["entityType"],
                    "observations": list(item.get("observations", [])),
                }
            )
        self._import({"type": "entity", **e} for e in created)
        return created

    def create_relations(self, relations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create the relations that do not hold yet; return those created, as given.

        Raises:
            NotFoundError: an end names no entity (nothing is created then).
        """
        ends = {r[key] for r in relations for key in ("from", "to")}
        found = {name: self._require(name) for name in sorted(ends)}
        created: list[dict[str, Any]] = []
        seen: set[tuple[str, str, str]] = set()
        for item in relations:
            subject, obj = found[item["from"]], found[item["to"]]
            predicate = map_relation_type(item["relationType"])
            key = (subject.id, predicate, obj.id)
            if key in seen or self._relation_ids(subject, predicate, obj):
                continue
            seen.add(key)
            created.append(
                {"from": item["from"], "to": item["to"], "relationType": item["relationType"]}
            )
        # Written with the names the entities are stored under: the import looks names
        # up canonically too, and this keeps an alias from meaning another entity.
        self._import(
            {
                "type": "relation",
                "from": found[r["from"]].name,
                "to": found[r["to"]].name,
                "relationType": r["relationType"],
            }
            for r in created
        )
        return created

    def add_observations(self, observations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add the observations an entity does not hold yet; return, per entity, those added.

        Raises:
            NotFoundError: an entity does not exist (nothing is added then).
        """
        kg = self.db.kg
        results: list[dict[str, Any]] = []
        with self.db.transaction():
            for item in observations:
                entity = self._require(item["entityName"])
                held = {o.content for o in kg.observations(entity)}
                added: list[str] = []
                for content in item["contents"]:
                    if content in held or not content.strip():
                        continue
                    kg.observe(entity, "fact", content)
                    held.add(content)
                    added.append(content)
                results.append({"entityName": item["entityName"], "addedObservations": added})
        return results

    def delete_entities(self, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """Delete entities with their relations and observations; return the names
        deleted and those not found."""
        deleted: list[str] = []
        missing: list[str] = []
        with self.db.transaction():
            for name in names:
                entity = self._find(name)
                if entity is None:
                    missing.append(name)
                    continue
                self.db.kg.delete_entity(entity)
                deleted.append(name)
        return deleted, missing

    def delete_observations(self, deletions: Sequence[dict[str, Any]]) -> tuple[int, list[str]]:
        """Delete the named observations; return how many went and the entities not found."""
        count = 0
        missing: list[str] = []
        with self.db.transaction():
            for item in deletions:
                entity = self._find(item["entityName"])
                if entity is None:
                    missing.append(item["entityName"])
                    continue
                doomed = set(item["observations"])
                for observation in self.db.kg.observations(entity):
                    if observation.content in doomed:
                        count += int(self.db.kg_observations.delete(observation.id))
        return count, missing

    def delete_relations(self, relations: Sequence[dict[str, Any]]) -> int:
        """Delete the relations given; return how many went."""
        count = 0
        with self.db.transaction():
            for item in relations:
                subject, obj = self._find(item["from"]), self._find(item["to"])
                if subject is None or obj is None:
                    continue
                predicate = map_relation_type(item["relationType"])
                for relation_id in self._relation_ids(subject, predicate, obj):
                    count += int(self.db.kg_relations.delete(relation_id))
        return count

    # -- reads ----------------------------------------------------------------------------

    def read_graph(self) -> Graph:
        """The whole graph: entities with the observations that hold now, then relations."""
        return copy.deepcopy(self._graph())

    def _graph(self) -> Graph:
        """The graph as last read, read again when anything was committed since; shared
        with the cache, so callers copy what they hand out."""
        version = self.db.commits.version()
        if version is not None and self._cached is not None and self._cached[0] == version:
            return self._cached[1]
        graph = self._read()
        if version is not None:
            self._cached = (version, graph)
        return graph

    def _read(self) -> Graph:
        entities: list[dict[str, Any]] = []
        relations: list[dict[str, Any]] = []
        for line in self.db.kg.export_jsonl(self.user_id):
            item = json.loads(line)
            kind = item.pop("type")
            (entities if kind == "entity" else relations).append(item)
        return {"entities": entities, "relations": relations}

    def search_nodes(self, query: str, *, k: int = 10) -> Graph:
        """Entities whose name, type or an observation holds ``query`` (case-insensitive),
        else those hybrid search answers ``query`` with; and the relations touching them.

        A question ("which service is written in rust") is rarely a substring of
        anything: the knowledge graph's search answers it instead of nothing."""
        graph = self._graph()
        needle = query.lower()
        chosen = [
            e
            for e in graph["entities"]
            if needle in e["name"].lower()
            or needle in e["entityType"].lower()
            or any(needle in o.lower() for o in e["observations"])
        ]
        if not chosen and query.strip():
            by_name = {e["name"]: e for e in graph["entities"]}
            for hit in self.db.kg.search(self.user_id, query, k=k):
                entity = by_name.get(hit.entity.name)
                if entity is not None and entity not in chosen:
                    chosen.append(entity)
        return _with_relations(chosen, graph["relations"])

    def open_nodes(self, names: Iterable[str]) -> Graph:
        """The entities with these names and the relations touching them."""
        graph = self._graph()
        wanted = set(names)
        return _with_relations(
            [e for e in graph["entities"] if e["name"] in wanted], graph["relations"]
        )

    # -- helpers --------------------------------------------------------------------------

    def _find(self, name: str) -> KGEntity | None:
        return self.db.kg.find(self.user_id, name)

    def _require(self, name: str) -> KGEntity:
        entity = self._find(name)
        if entity is None:
            raise NotFoundError(f"Entity with name {name} not found")
        return entity

    def _relation_ids(self, subject: KGEntity, predicate: str, obj: KGEntity) -> list[str]:
        return [
            r.id
            for r in self.db.kg.relations(subject, direction="out", predicates=[predicate])
            if r.object_id == obj.id
        ]

    def _import(self, items: Iterable[dict[str, Any]]) -> None:
        lines = [json.dumps(item, ensure_ascii=False) for item in items]
        if lines:
            self.db.kg.import_jsonl(self.user_id, lines)


def _with_relations(entities: list[dict[str, Any]], relations: list[dict[str, Any]]) -> Graph:
    """The entities and the relations touching them, copied out of the cached graph."""
    names = {e["name"] for e in entities}
    return copy.deepcopy(
        {
            "entities": entities,
            "relations": [r for r in relations if r["from"] in names or r["to"] in names],
        }
    )
