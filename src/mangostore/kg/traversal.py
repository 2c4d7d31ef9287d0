"""Walking the knowledge graph: neighbours, paths between two entities, subgraphs.

Every walk is one recursive SQL query (:func:`walk_query`) that follows only the
relations holding at a time and never goes round a cycle. Search walks from the
entities a query names with the same query.

``db.kg`` (:class:`~mangostore.kg.graph.KnowledgeGraph`) delegates its traversal methods
here; their full contract (arguments, errors) is documented there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mangostore.clock import Instant
from mangostore.errors import InvalidValueError
from mangostore.kg.model import Direction, EntityRef, GraphPath, Neighbor, Subgraph
from mangostore.kg.store import HOLDS, RELATIONS, GraphStore, entity_id, relation_from_row
from mangostore.sql import placeholders

__all__ = ["MAX_WALK_ROWS", "Traversal", "WalkQuery", "walk_query"]

#: Most rows a traversal may produce before it stops (a guard for dense graphs).
MAX_WALK_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class WalkQuery:
    """A recursive walk: the ``WITH RECURSIVE walk(...)`` prefix and its parameter slots.

    Each row of ``walk`` is a simple path from a seed: ``node`` (where it ends),
    ``depth`` (hops), ``path`` (the entity ids visited, ``/a/b/``) and ``rels`` (the
    relation ids taken, ``r1,r2,``). Append the ``SELECT ... FROM walk`` that reads it.
    """

    sql: str
    slots: tuple[str, ...]

    def params(self, values: dict[str, Any]) -> list[Any]:
        """Return the parameters of :attr:`sql`, in order, from the named ``values``.

        ``values`` holds ``start`` or ``seeds`` (a JSON list), ``depth``, ``user``,
        ``t``, ``limit``, and ``target`` and ``predicates`` (a list) when the walk has them.
        """
        params: list[Any] = []
        predicate_index = 0
        for slot in self.slots:
            if slot == "predicate":
                # Each branch lists every predicate once: cycle through them.
                predicates = values["predicates"]
                params.append(predicates[predicate_index % len(predicates)])
                predicate_index += 1
            else:
                params.append(values[slot])
        return params


def walk_query(
    direction: Direction,
    predicates: Sequence[str] | None,
    *,
    seeds_json: bool = False,
    stop_at_target: bool = False,
) -> WalkQuery:
    """Build the recursive walk.

    The cycle guard: a relation back to an entity already on the path is not followed.

    Args:
        direction: follow relations from subject to object (``"out"``), back
            (``"in"``), or both.
        predicates: only relations with these predicates (``None``: any).
        seeds_json: start from every id of the JSON list ``seeds`` instead of ``start``.
        stop_at_target: do not walk on from ``target``.
    """
    slots: list[str] = []
    if seeds_json:
        seed = "SELECT value, 0, '/' || value || '/', '' FROM json_each(?)"
        slots.append("seeds")
    else:
        seed = "SELECT ?, 0, '/' || ? || '/', ''"
        slots += ["start", "start"]
    branches = []
    sides = {"out": [("subject_id", "object_id")], "in": [("object_id", "subject_id")]}.get(
        direction, [("subject_id", "object_id"), ("object_id", "subject_id")]
    )
    for here, there in sides:
        where = [
            "w.depth < ?",
            f"instr(w.path, '/' || r.{there} || '/') = 0",
            # The unary + keeps the planner off the user_id index: walking by
            # subject or object is the selective path.
            "+r.user_id = ?",
            HOLDS,
        ]
        branch_slots = ["depth", "user", "t", "t"]
        if stop_at_target:
            where.append("w.node <> ?")
            branch_slots.append("target")
        if predicates is not None:
            where.append(f"r.predicate IN ({placeholders(len(predicates))})")
            branch_slots += ["predicate"] * len(predicates)
        branches.append(
            f"SELECT r.{there}, w.depth + 1, w.path || r.{there} || '/', "
            "w.rels || r.id || ',' FROM walk w "
            f"JOIN kg_relations r ON r.{here} = w.node "
            "JOIN kg_relation_validity v ON v.relation_id = r.id "
            f"WHERE {' AND '.join(where)}"
        )
        slots += branch_slots
    sql = (
        "WITH RECURSIVE walk(node, depth, path, rels) AS ("
        f"{seed} UNION ALL {' UNION ALL '.join(branches)} LIMIT ?) "
    )
    slots.append("limit")
    return WalkQuery(sql, tuple(slots))


class Traversal:
    """Neighbours, paths and subgraphs of one knowledge graph.

    Args:
        store: the shared row access; the entities returned are counted as read.
    """

    def __init__(self, store: GraphStore) -> None:
        self._store = store

    def neighbors(
        self,
        entity: EntityRef,
        *,
        depth: int = 1,
        predicates: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: Instant | None = None,
        limit: int | None = None,
    ) -> list[Neighbor]:
        """Return the entities within ``depth`` hops, nearest first, each with one
        shortest path to it.

        Raises:
            InvalidValueError: depth below 1 or an unknown direction.
            NotFoundError: no such entity.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise InvalidValueError("depth must be a positive integer", field="depth")
        if direction not in ("out", "in", "both"):
            raise InvalidValueError("direction is 'out', 'in' or 'both'", field="direction")
        start = entity_id(entity)
        t = self._store.at(as_of)
        if predicates is not None and not predicates:
            return []
        with self._store.reading() as conn:
            origin = self._store.entity_in(conn, start)
            walk = walk_query(direction, predicates)
            values = {
                "start": start,
                "depth": depth,
                "user": origin.user_id,
                "t": t,
                "predicates": list(predicates or ()),
                "limit": MAX_WALK_ROWS,
            }
            rows = conn.execute(
                walk.sql + "SELECT node, depth, rels FROM walk WHERE depth > 0 ORDER BY depth",
                walk.params(values),
            ).fetchall()
            best: dict[str, tuple[int, list[str]]] = {}
            for node, hops, rels in rows:
                if node != start and node not in best:
                    best[node] = (hops, [x for x in rels.split(",") if x])
            entities = self._store.entities_in(conn, best)
            relations = self._store.relations_in(conn, (r for _, p in best.values() for r in p))
        ordered = sorted(
            (n for n in best if n in entities),
            key=lambda n: (best[n][0], -sum(relations[r].weight for r in best[n][1])),
        )
        if limit is not None:
            ordered = ordered[:limit]
        result = [
            Neighbor(entities[n], best[n][0], [relations[r] for r in best[n][1]]) for n in ordered
        ]
        self._store.access.record(n.entity.id for n in result)
        return result

    def paths(
        self,
        a: EntityRef,
        b: EntityRef,
        *,
        max_depth: int = 4,
        predicates: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: Instant | None = None,
        limit: int = 10,
    ) -> list[GraphPath]:
        """Return up to ``limit`` simple paths from ``a`` to ``b``, shortest first.

        Raises:
            InvalidValueError: max_depth below 1.
            NotFoundError: either entity is missing.
        """
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise InvalidValueError("max_depth must be a positive integer", field="max_depth")
        start, target = entity_id(a), entity_id(b)
        t = self._store.at(as_of)
        with self._store.reading() as conn:
            origin = self._store.entity_in(conn, start)
            self._store.entity_in(conn, target)
            walk = walk_query(direction, predicates, stop_at_target=True)
            values = {
                "start": start,
                "depth": max_depth,
                "user": origin.user_id,
                "t": t,
                "target": target,
                "predicates": list(predicates or ()),
                "limit": MAX_WALK_ROWS,
            }
            rows = conn.execute(
                walk.sql + "SELECT path, rels FROM walk WHERE node = ? AND depth > 0 "
                "ORDER BY depth, rels LIMIT ?",
                [*walk.params(values), target, limit],
            ).fetchall()
            relations = self._store.relations_in(
                conn, (x for _, rels in rows for x in rels.split(",") if x)
            )
        return [
            GraphPath(
                entity_ids=[x for x in path.split("/") if x],
                relations=[relations[x] for x in rels.split(",") if x],
            )
            for path, rels in rows
        ]

    def subgraph(
        self,
        entities: Iterable[EntityRef],
        *,
        depth: int = 1,
        predicates: Sequence[str] | None = None,
        as_of: Instant | None = None,
    ) -> Subgraph:
        """Return the entities within ``depth`` hops of any seed and the relations among
        them that hold at ``as_of`` (default now).

        Raises:
            InvalidValueError: depth below 0.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise InvalidValueError("depth must be a non-negative integer", field="depth")
        seeds = list(dict.fromkeys(entity_id(e) for e in entities))
        if not seeds:
            return Subgraph([], [])
        t = self._store.at(as_of)
        with self._store.reading() as conn:
            found = self._store.entities_in(conn, seeds)
            if not found:
                return Subgraph([], [])
            user_id = next(iter(found.values())).user_id
            nodes = set(found)
            if depth > 0:
                walk = walk_query("both", predicates, seeds_json=True)
                values = {
                    "seeds": json.dumps(list(found)),
                    "depth": depth,
                    "user": user_id,
                    "t": t,
                    "predicates": list(predicates or ()),
                    "limit": MAX_WALK_ROWS,
                }
                rows = conn.execute(
                    walk.sql + "SELECT DISTINCT node FROM walk", walk.params(values)
                ).fetchall()
                nodes.update(r[0] for r in rows)
            members = json.dumps(sorted(nodes))
            predicate_clause = ""
            params: list[Any] = [members, members, t, t]
            if predicates is not None:
                predicate_clause = f" AND r.predicate IN ({placeholders(len(predicates))})"
                params.extend(predicates)
            relation_rows = conn.execute(
                f"{RELATIONS} WHERE r.subject_id IN (SELECT value FROM json_each(?)) "
                f"AND r.object_id IN (SELECT value FROM json_each(?)) AND {HOLDS}"
                f"{predicate_clause} ORDER BY r.id",
                params,
            ).fetchall()
            records = self._store.entities_in(conn, nodes)
        ordered = sorted(records.values(), key=lambda e: (e.id not in found, e.name, e.id))
        self._store.access.record(e.id for e in ordered)
        return Subgraph(ordered, [relation_from_row(r) for r in relation_rows])
