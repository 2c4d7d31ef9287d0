"""Facts of the knowledge graph: predicates, relations and observations, and their validity.

A fact is never updated in place when it stops being true: its validity row gets an end
(``valid_to``), so ``as_of`` reads still see what held at the time. Repeating a fact
that holds confirms it (weight, confirmations, noisy-or confidence) instead of storing
it twice.

``db.kg`` (:class:`~mangostore.kg.graph.KnowledgeGraph`) delegates its fact methods
here; their full contract (arguments, errors) is documented there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mangostore.clock import Instant, epoch_ms
from mangostore.errors import InvalidValueError, NotFoundError, ValidationError
from mangostore.ids import new_id
from mangostore.kg.model import OBSERVATION_TYPES, Direction, EntityRef, Observation, Relation
from mangostore.kg.names import canonical
from mangostore.kg.store import (
    HOLDS,
    OBSERVATIONS,
    RELATIONS,
    GraphStore,
    checked_confidence,
    entity_id,
    noisy_or,
    observation_from_row,
    relation_from_row,
)
from mangostore.sql import placeholders, quote_identifier

if TYPE_CHECKING:
    from mangostore.kg.ports import GraphDatabase

__all__ = ["Facts"]

_PREDICATE = re.compile(r"[a-z0-9_]+")
_SOURCES = ("user", "inference", "observation")


def _fact_id(fact: str | Relation | Observation) -> str:
    if isinstance(fact, Relation | Observation):
        return fact.id
    if isinstance(fact, str) and fact:
        return fact
    raise InvalidValueError("a fact is given as its id, a Relation or an Observation")


def _check_predicate(predicate: str) -> None:
    if not isinstance(predicate, str) or not _PREDICATE.fullmatch(predicate):
        raise InvalidValueError(
            "a predicate is a lowercase identifier (letters, digits, underscores), "
            f"got {predicate!r}",
            field="predicate",
        )


class Facts:
    """The predicates, relations and observations of one knowledge graph.

    Args:
        db: the database (its ``kg_observations`` repository writes observations).
        store: the shared row access.
    """

    def __init__(self, db: GraphDatabase, store: GraphStore) -> None:
        self._db = db
        self._store = store

    # -- predicates and relations --------------------------------------------------------

    def declare_predicate(
        self, predicate: str, *, single_valued: bool = True, description: str | None = None
    ) -> None:
        """Declare how a predicate behaves, for every user of the database.

        Raises:
            InvalidValueError: the predicate is not a lowercase identifier.
        """
        _check_predicate(predicate)
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO kg_predicates (predicate, single_valued, description, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (predicate) DO UPDATE SET "
                "single_valued = excluded.single_valued, description = excluded.description",
                (predicate, int(bool(single_valued)), description, self._store.now()),
            )

    def single_valued(self, predicate: str) -> bool:
        """Tell whether ``predicate`` was declared single-valued."""
        with self._store.reading() as conn:
            row = conn.execute(
                "SELECT single_valued FROM kg_predicates WHERE predicate = ?", (predicate,)
            ).fetchone()
        return bool(row[0]) if row is not None else False

    def relate(
        self,
        subject: EntityRef,
        predicate: str,
        object: EntityRef,
        *,
        weight: float = 1.0,
        confidence: float = 1.0,
        source: str | None = "user",
        valid_from: Instant | None = None,
        project_id: str | None = None,
    ) -> Relation:
        """Record ``subject -predicate-> object``, or strengthen it if it already holds.

        For a single-valued predicate, a relation to another object that still holds is
        closed at ``valid_from`` and marked superseded.

        Raises:
            InvalidValueError: bad predicate, weight, confidence or source.
            NotFoundError: no such entity.
            ValidationError: the entities belong to different users.
        """
        _check_predicate(predicate)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise InvalidValueError("weight must be a positive number", field="weight")
        confidence = checked_confidence(confidence)
        if source is not None and source not in _SOURCES:
            raise InvalidValueError(f"source must be one of {', '.join(_SOURCES)}", field="source")
        now = self._store.now()
        start = now if valid_from is None else epoch_ms(valid_from, "valid_from")
        with self._store.transaction() as conn:
            s = self._store.entity_in(conn, entity_id(subject))
            o = self._store.entity_in(conn, entity_id(object))
            if s.user_id != o.user_id:
                raise ValidationError("a relation joins entities of the same user")
            current = conn.execute(
                f"{RELATIONS} WHERE r.subject_id = ? AND r.predicate = ? AND r.object_id = ? "
                f"AND {HOLDS} ORDER BY v.valid_from DESC LIMIT 1",
                (s.id, predicate, o.id, start, start),
            ).fetchone()
            if current is not None:
                old = relation_from_row(current)
                conn.execute(
                    "UPDATE kg_relations SET weight = ?, confidence_score = ?, last_confirmed = ? "
                    "WHERE id = ?",
                    (old.weight + weight, noisy_or(old.confidence, confidence), now, old.id),
                )
                conn.execute(
                    "UPDATE kg_relation_validity SET confirmations = confirmations + 1 "
                    "WHERE relation_id = ?",
                    (old.id,),
                )
                relation_id = old.id
            else:
                relation_id = new_id()
                single = conn.execute(
                    "SELECT single_valued FROM kg_predicates WHERE predicate = ?", (predicate,)
                ).fetchone()
                if single is not None and single[0]:
                    conn.execute(
                        "UPDATE kg_relation_validity SET valid_to = max(valid_from, ?), "
                        "invalidated_at = ?, invalidation_reason = 'superseded', "
                        "superseded_by = ? WHERE relation_id IN ("
                        "SELECT r.id FROM kg_relations r "
                        "JOIN kg_relation_validity v ON v.relation_id = r.id "
                        "WHERE r.subject_id = ? AND r.predicate = ? AND r.object_id <> ? "
                        "AND (v.valid_to IS NULL OR v.valid_to > ?))",
                        (start, now, relation_id, s.id, predicate, o.id, start),
                    )
                conn.execute(
                    "INSERT INTO kg_relations (id, user_id, project_id, subject_id, predicate, "
                    "object_id, weight, confidence_score, created_at, last_confirmed, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        relation_id,
                        s.user_id,
                        project_id,
                        s.id,
                        predicate,
                        o.id,
                        float(weight),
                        confidence,
                        now,
                        now,
                        source,
                    ),
                )
                if start != now:
                    # The insert trigger starts validity at created_at; a fact that began
                    # earlier (or later) moves it.
                    conn.execute(
                        "UPDATE kg_relation_validity SET valid_from = ? WHERE relation_id = ?",
                        (start, relation_id),
                    )
            return self._store.relation_in(conn, relation_id)

    def relations(
        self,
        entity: EntityRef,
        *,
        direction: Direction = "both",
        predicates: Sequence[str] | None = None,
        as_of: Instant | None = None,
        include_invalid: bool = False,
    ) -> list[Relation]:
        """Return the entity's relations that hold at ``as_of`` (default now), or all of
        them with ``include_invalid``, oldest first."""
        wanted = entity_id(entity)
        t = self._store.at(as_of)
        sides = {"out": ["r.subject_id = ?"], "in": ["r.object_id = ?"]}.get(
            direction, ["r.subject_id = ?", "r.object_id = ?"]
        )
        clauses = [f"({' OR '.join(sides)})"]
        params: list[Any] = [wanted] * len(sides)
        if predicates is not None:
            clauses.append(f"r.predicate IN ({placeholders(len(predicates))})")
            params.extend(predicates)
        if not include_invalid:
            clauses.append(HOLDS)
            params.extend((t, t))
        with self._store.reading() as conn:
            rows = conn.execute(
                f"{RELATIONS} WHERE {' AND '.join(clauses)} ORDER BY v.valid_from, r.id", params
            ).fetchall()
        return [relation_from_row(r) for r in rows]

    def relation(self, relation_id: str) -> Relation:
        """Return one relation, whatever its validity.

        Raises:
            NotFoundError: no such relation.
        """
        with self._store.reading() as conn:
            return self._store.relation_in(conn, relation_id)

    # -- observations --------------------------------------------------------------------

    def observe(
        self,
        entity: EntityRef,
        type: str,
        content: str,
        *,
        confidence: float = 1.0,
        context: dict[str, Any] | None = None,
        valid_from: Instant | None = None,
        slot: str | None = None,
    ) -> Observation:
        """Record an observation about an entity, or confirm it if it already holds.

        With a ``slot``, the observation is single-valued: one of the same entity and
        slot that holds at ``valid_from`` and says something else is closed there and
        marked superseded by the new one.

        Raises:
            InvalidValueError: unknown type, empty content or slot, confidence outside 0..1.
            NotFoundError: no such entity.
        """
        if type not in OBSERVATION_TYPES:
            raise InvalidValueError(
                f"observation type must be one of {', '.join(OBSERVATION_TYPES)}; got {type!r}",
                field="type",
            )
        if not isinstance(content, str) or not canonical(content):
            raise InvalidValueError("an observation needs non-empty content", field="content")
        confidence = checked_confidence(confidence)
        if slot is not None and (not isinstance(slot, str) or not canonical(slot)):
            raise InvalidValueError("a slot must be a non-empty string", field="slot")
        slot_key = canonical(slot) if slot is not None else None
        now = self._store.now()
        start = now if valid_from is None else epoch_ms(valid_from, "valid_from")
        key = canonical(content)
        with self._store.transaction() as conn:
            record = self._store.entity_in(conn, entity_id(entity))
            for row in conn.execute(
                f"{OBSERVATIONS} WHERE o.entity_id = ? AND o.observation_type = ? AND {HOLDS}",
                (record.id, type, start, start),
            ).fetchall():
                old = observation_from_row(row)
                if canonical(old.content) == key:
                    conn.execute(
                        "UPDATE kg_observations SET confidence_score = ? WHERE id = ?",
                        (noisy_or(old.confidence, confidence), old.id),
                    )
                    conn.execute(
                        "UPDATE kg_observation_validity SET confirmations = confirmations + 1 "
                        "WHERE observation_id = ?",
                        (old.id,),
                    )
                    return self._store.observation_in(conn, old.id)
            observation = self._db.kg_observations.insert_in(
                conn,
                {
                    "entity_id": record.id,
                    "user_id": record.user_id,
                    "observation_type": type,
                    "content": content,
                    "context": context,
                    "confidence_score": confidence,
                    "created_at": now,
                },
            )
            conn.execute(
                "UPDATE kg_observation_validity SET valid_from = ?, slot = ? "
                "WHERE observation_id = ?",
                (start, slot_key, observation.id),
            )
            if slot_key is not None:
                conn.execute(
                    "UPDATE kg_observation_validity SET valid_to = max(valid_from, ?), "
                    "invalidated_at = ?, invalidation_reason = 'superseded', superseded_by = ? "
                    "WHERE slot = ? AND observation_id <> ? AND (valid_to IS NULL OR valid_to > ?) "
                    "AND observation_id IN (SELECT id FROM kg_observations WHERE entity_id = ?)",
                    (start, now, observation.id, slot_key, observation.id, start, record.id),
                )
            return self._store.observation_in(conn, observation.id)

    def observation(self, observation_id: str) -> Observation:
        """Return one observation, whatever its validity.

        Raises:
            NotFoundError: no such observation.
        """
        with self._store.reading() as conn:
            return self._store.observation_in(conn, observation_id)

    def observations(
        self,
        entity: EntityRef,
        *,
        as_of: Instant | None = None,
        include_invalid: bool = False,
    ) -> list[Observation]:
        """Return the entity's observations that hold at ``as_of`` (default now), or all."""
        t = self._store.at(as_of)
        sql = f"{OBSERVATIONS} WHERE o.entity_id = ?"
        params: list[Any] = [entity_id(entity)]
        if not include_invalid:
            sql += f" AND {HOLDS}"
            params += [t, t]
        with self._store.reading() as conn:
            rows = conn.execute(sql + " ORDER BY v.valid_from, o.id", params).fetchall()
        return [observation_from_row(r) for r in rows]

    def verify(self, observation: str | Observation) -> Observation:
        """Mark an observation verified (by the user) and return it.

        Raises:
            NotFoundError: no such observation.
        """
        observation_id = _fact_id(observation)
        with self._store.transaction() as conn:
            self._store.observation_in(conn, observation_id)
            conn.execute(
                "UPDATE kg_observations SET verified = 1, verified_at = ? WHERE id = ?",
                (self._store.now(), observation_id),
            )
            return self._store.observation_in(conn, observation_id)

    # -- validity ------------------------------------------------------------------------

    def invalidate(
        self,
        fact: str | Relation | Observation,
        *,
        at: Instant | None = None,
        reason: str | None = None,
    ) -> Relation | Observation:
        """End a relation's or observation's validity at ``at`` (default now); keep the row.

        Invalidating an already closed fact moves its end earlier only.

        Raises:
            NotFoundError: no relation or observation has this id.
        """
        fact_id = _fact_id(fact)
        now = self._store.now()
        end = now if at is None else epoch_ms(at, "at")
        with self._store.transaction() as conn:
            for table, key in (
                ("kg_relation_validity", "relation_id"),
                ("kg_observation_validity", "observation_id"),
            ):
                cursor = conn.execute(
                    f"UPDATE {quote_identifier(table)} SET "
                    "valid_to = CASE WHEN valid_to IS NULL OR valid_to > ? "
                    "THEN max(valid_from, ?) ELSE valid_to END, "
                    "invalidated_at = coalesce(invalidated_at, ?), "
                    "invalidation_reason = coalesce(?, invalidation_reason) "
                    f"WHERE {quote_identifier(key)} = ?",
                    (end, end, now, reason, fact_id),
                )
                if cursor.rowcount:
                    if table == "kg_relation_validity":
                        return self._store.relation_in(conn, fact_id)
                    return self._store.observation_in(conn, fact_id)
        raise NotFoundError(f"no relation or observation has id {fact_id!r}")
