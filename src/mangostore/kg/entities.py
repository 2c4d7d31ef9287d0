"""Entities of the knowledge graph: creating them without duplicates, finding them by
name or alias, their aliases, deleting them, and describing one with its facts.

An entity is matched, in this order, by canonical name, by alias, and by a
near-duplicate name of the same type (:mod:`mangostore.kg.names`); with an embedder,
a near duplicate must also mean the same (:data:`EMBEDDING_THRESHOLD`).

``db.kg`` (:class:`~mangostore.kg.graph.KnowledgeGraph`) delegates its entity methods
here; their full contract (arguments, errors) is documented there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from mangostore.clock import Instant
from mangostore.errors import InvalidValueError, NotFoundError
from mangostore.ids import new_id
from mangostore.kg.model import ENTITY_TYPES, EntityRef, EntityView, MergeSuggestion, Upsert
from mangostore.kg.names import canonical, compact, near_duplicate, sound
from mangostore.kg.semantic import Semantic
from mangostore.kg.store import (
    HOLDS,
    OBSERVATIONS,
    RELATIONS,
    GraphStore,
    checked_confidence,
    entity_id,
    observation_from_row,
    relation_from_row,
)
from mangostore.records import KGEntity

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.ports import GraphDatabase

__all__ = [
    "AUTO_MERGE_LENGTH",
    "AUTO_MERGE_SIMILARITY",
    "EMBEDDING_THRESHOLD",
    "IDENTIFIER_TYPES",
    "Entities",
]

#: With an embedder, a trigram near duplicate must also have names at least this
#: similar (cosine of their embeddings) to be matched.
EMBEDDING_THRESHOLD = 0.8
#: Least trigram similarity of two names for a near duplicate to be merged on its own;
#: a near duplicate below it is created and suggested (:meth:`Entities.merge_suggestions`).
AUTO_MERGE_SIMILARITY = 0.7
#: Least length (letters and digits) of both names for a near duplicate to be merged on
#: its own: one letter in a short name is a large part of what identifies it.
AUTO_MERGE_LENGTH = 9
#: Types whose names are identifiers: ``kubectl`` and ``kubectx`` are two commands,
#: ``config.yml`` and ``config.yaml`` two files. Their near duplicates are only suggested.
IDENTIFIER_TYPES = frozenset({"command", "file"})
#: How many similar names are compared with a new one when looking for a near duplicate.
_NEAR_DUPLICATE_CANDIDATES = 40


class Entities:
    """The entities and aliases of one knowledge graph (``db.kg``'s entity methods).

    Args:
        db: the database (its ``kg_entities`` repository writes the rows).
        store: the shared row access; reads are counted through ``store.access``.
        semantic: the embedder that confirms near-duplicate names.
    """

    def __init__(self, db: GraphDatabase, store: GraphStore, semantic: Semantic) -> None:
        self._db = db
        self._store = store
        self._semantic = semantic

    def upsert_entity(
        self,
        user_id: str,
        type: str,
        name: str,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        confidence: float | None = None,
        project_id: str | None = None,
        aliases: Iterable[str] = (),
        dedup: bool = True,
    ) -> Upsert:
        """Return the user's entity of this type and name, creating it if there is none.

        A matched entity gains what is new: a description it lacked, metadata keys, the
        higher confidence, and ``name`` as an alias when it was matched by similarity.

        Raises:
            InvalidValueError: unknown type, empty name, confidence outside 0..1.
            ForeignKeyError: no such user or project.
        """
        if type not in ENTITY_TYPES:
            raise InvalidValueError(
                f"entity type must be one of {', '.join(ENTITY_TYPES)}; got {type!r}",
                field="type",
            )
        key = canonical(name) if isinstance(name, str) else ""
        if not key:
            raise InvalidValueError("an entity needs a non-empty name", field="name")
        if confidence is not None:
            confidence = checked_confidence(confidence)
        extra_aliases = [a for a in aliases if canonical(a)]
        with self._store.transaction() as conn:
            self._store.fill_canonical_names(conn, user_id)
            found = self._match(conn, user_id, type, name, key) if dedup else None
            suggest: tuple[str, float, str] | None = None
            if found is not None and found[1] == "similar":
                reason = _why_not_merged(
                    type, name, self._store.entity_in(conn, found[0]), found[2]
                )
                if reason is not None:
                    suggest = (found[0], found[2], reason)
                    found = None
            if found is None:
                fields: dict[str, Any] = {
                    "user_id": user_id,
                    "entity_type": type,
                    "name": name,
                    "description": description,
                    "metadata": metadata,
                    "project_id": project_id,
                }
                if confidence is not None:
                    fields["confidence_score"] = confidence
                entity = self._db.kg_entities.insert_in(conn, fields)
                conn.execute(
                    "UPDATE kg_entity_names SET canonical_name = ?, sound = ? WHERE entity_id = ?",
                    (key, sound(name), entity.id),
                )
                for alias in extra_aliases:
                    self.add_alias_in(conn, entity, alias, "user")
                suggestion = None
                if suggest is not None:
                    suggestion = self._suggest_in(conn, entity, *suggest)
                result = Upsert(entity, created=True, suggestion=suggestion)
            else:
                matched_id, how, similarity = found
                entity = self._store.entity_in(conn, matched_id)
                changes: dict[str, Any] = {}
                if description and not entity.description:
                    changes["description"] = description
                if metadata:
                    merged = dict(entity.metadata or {})
                    for k, v in metadata.items():
                        merged.setdefault(k, v)
                    if merged != (entity.metadata or {}):
                        changes["metadata"] = merged
                if confidence is not None and confidence > (entity.confidence_score or 0):
                    changes["confidence_score"] = confidence
                if changes:
                    entity = self._db.kg_entities.update_in(conn, entity.id, changes)
                if how == "similar":
                    self.add_alias_in(conn, entity, name, "similar")
                for alias in extra_aliases:
                    self.add_alias_in(conn, entity, alias, "user")
                result = Upsert(entity, created=False, matched_by=how, similarity=similarity)
        self._store.access.record([result.entity.id])
        return result

    def _match(
        self, conn: Connection, user_id: str, type: str, name: str, key: str
    ) -> tuple[str, Literal["canonical", "alias", "similar"], float] | None:
        row = conn.execute(
            "SELECT entity_id FROM kg_entity_names "
            "WHERE user_id = ? AND canonical_name = ? AND entity_type = ? LIMIT 1",
            (user_id, key, type),
        ).fetchone()
        if row is not None:
            return row[0], "canonical", 1.0
        row = conn.execute(
            "SELECT a.entity_id FROM kg_aliases a JOIN kg_entities e ON e.id = a.entity_id "
            "WHERE a.user_id = ? AND a.canonical_alias = ? AND e.entity_type = ? LIMIT 1",
            (user_id, key, type),
        ).fetchone()
        if row is not None:
            return row[0], "alias", 1.0
        best: tuple[str, str, float] | None = None
        for candidate_id, candidate in self._store.similar_names(
            conn, user_id, name, type, _NEAR_DUPLICATE_CANDIDATES
        ):
            score = near_duplicate(name, candidate)
            if score is not None and (best is None or score > best[2]):
                best = (candidate_id, candidate, score)
        if best is None:
            return None
        embedder = self._semantic.embedder
        if embedder is not None:
            vectors = embedder.embed([name, best[1]])
            if float(vectors[0] @ vectors[1]) < EMBEDDING_THRESHOLD:
                return None
        return best[0], "similar", best[2]

    def _suggest_in(
        self, conn: Connection, entity: KGEntity, candidate_id: str, similarity: float, reason: str
    ) -> MergeSuggestion:
        suggestion = MergeSuggestion(
            new_id(), entity.id, candidate_id, similarity, reason, self._store.now()
        )
        conn.execute(
            "INSERT INTO kg_merge_suggestions (id, user_id, entity_id, candidate_id, similarity, "
            "reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                suggestion.id,
                entity.user_id,
                entity.id,
                candidate_id,
                similarity,
                reason,
                suggestion.created_at,
            ),
        )
        return suggestion

    def merge_suggestions(self, user_id: str) -> list[MergeSuggestion]:
        """Return the user's near duplicates that were neither merged nor dismissed."""
        with self._store.reading() as conn:
            rows = conn.execute(
                "SELECT id, entity_id, candidate_id, similarity, reason, created_at "
                "FROM kg_merge_suggestions WHERE user_id = ? AND dismissed_at IS NULL "
                "ORDER BY created_at DESC, id",
                (user_id,),
            ).fetchall()
        return [MergeSuggestion(*row) for row in rows]

    def dismiss_suggestion(self, suggestion_id: str) -> None:
        """Mark a suggestion as not a duplicate.

        Raises:
            NotFoundError: no such suggestion.
        """
        with self._store.transaction() as conn:
            cursor = conn.execute(
                "UPDATE kg_merge_suggestions SET dismissed_at = ? WHERE id = ?",
                (self._store.now(), suggestion_id),
            )
            if not cursor.rowcount:
                raise NotFoundError(f"no merge suggestion has id {suggestion_id!r}")

    def get(self, entity: EntityRef) -> KGEntity:
        """Return the entity and count the read.

        Raises:
            NotFoundError: no such entity.
        """
        wanted = entity_id(entity)
        with self._store.reading() as conn:
            record = self._store.entity_in(conn, wanted)
        self._store.access.record([record.id])
        return record

    def find(self, user_id: str, name: str, type: str | None = None) -> KGEntity | None:
        """Return the user's entity with this name or alias (canonical match), or None.

        When several types share the name and ``type`` is not given, the most recently
        updated entity is returned.
        """
        key = canonical(name)
        if not key:
            return None
        self._store.ensure_canonical_names(user_id)
        type_clause = " AND e.entity_type = ?" if type is not None else ""
        params: list[Any] = [user_id, key]
        if type is not None:
            params.append(type)
        with self._store.reading() as conn:
            row = conn.execute(
                "SELECT e.id FROM kg_entity_names n JOIN kg_entities e ON e.id = n.entity_id "
                f"WHERE n.user_id = ? AND n.canonical_name = ?{type_clause} "
                "ORDER BY e.updated_at DESC LIMIT 1",
                params,
            ).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT e.id FROM kg_aliases a JOIN kg_entities e ON e.id = a.entity_id "
                    f"WHERE a.user_id = ? AND a.canonical_alias = ?{type_clause} "
                    "ORDER BY e.updated_at DESC LIMIT 1",
                    params,
                ).fetchone()
            if row is None:
                return None
            record = self._store.entity_in(conn, row[0])
        self._store.access.record([record.id])
        return record

    def resolve(self, user_id: str, entity: str, type: str | None = None) -> KGEntity:
        """Return the entity with this id, else the one with this name or alias.

        Raises:
            NotFoundError: neither matches.
        """
        with self._store.reading() as conn:
            row = conn.execute(
                "SELECT id FROM kg_entities WHERE id = ? AND user_id = ?", (entity, user_id)
            ).fetchone()
        if row is not None:
            return self.get(row[0])
        found = self.find(user_id, entity, type)
        if found is None:
            raise NotFoundError(f"no entity named {entity!r}")
        return found

    def add_alias(self, entity: EntityRef, alias: str, *, source: str | None = "user") -> bool:
        """Make ``alias`` another name of the entity; return False if it already was.

        Raises:
            InvalidValueError: an empty alias.
            NotFoundError: no such entity.
        """
        if not canonical(alias):
            raise InvalidValueError("an alias must not be empty", field="alias")
        with self._store.transaction() as conn:
            record = self._store.entity_in(conn, entity_id(entity))
            return self.add_alias_in(conn, record, alias, source)

    def add_alias_in(
        self,
        conn: Connection,
        entity: KGEntity,
        alias: str,
        source: str | None,
        merge_id: str | None = None,
    ) -> bool:
        """Add an alias inside the caller's transaction; return False if it was known.

        An alias equal to the entity's own name (canonically) is not added.

        Args:
            source: where the alias came from (``"user"``, ``"similar"``, ``"merge"``...).
            merge_id: the merge that added it, so that undoing the merge removes it.
        """
        key = canonical(alias)
        if not key or key == canonical(entity.name):
            return False
        cursor = conn.execute(
            "INSERT OR IGNORE INTO kg_aliases (id, entity_id, user_id, alias, canonical_alias, "
            "sound, source, merge_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new_id(),
                entity.id,
                entity.user_id,
                alias,
                key,
                sound(alias),
                source,
                merge_id,
                self._store.now(),
            ),
        )
        return bool(cursor.rowcount)

    def aliases(self, entity: EntityRef) -> list[str]:
        """Return the entity's aliases, oldest first."""
        with self._store.reading() as conn:
            rows = conn.execute(
                "SELECT alias FROM kg_aliases WHERE entity_id = ? ORDER BY created_at, id",
                (entity_id(entity),),
            ).fetchall()
        return [r[0] for r in rows]

    def remove_alias(self, entity: EntityRef, alias: str) -> bool:
        """Remove an alias; return whether it existed."""
        with self._store.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM kg_aliases WHERE entity_id = ? AND canonical_alias = ?",
                (entity_id(entity), canonical(alias)),
            )
            return bool(cursor.rowcount)

    def delete_entity(self, entity: EntityRef) -> None:
        """Delete an entity with its relations, observations, aliases and embeddings.

        The full-text indexes follow through their triggers.

        Raises:
            NotFoundError: no such entity.
        """
        doomed = entity_id(entity)
        with self._store.transaction() as conn:
            self._store.entity_in(conn, doomed)
            conn.execute(
                "DELETE FROM kg_relations WHERE subject_id = ? OR object_id = ?",
                (doomed, doomed),
            )
            conn.execute("DELETE FROM kg_observations WHERE entity_id = ?", (doomed,))
            conn.execute("DELETE FROM kg_entities WHERE id = ?", (doomed,))

    def describe(self, entity: EntityRef, *, as_of: Instant | None = None) -> EntityView:
        """Return the entity with its aliases, and the observations and relations valid
        at ``as_of`` (default: now). Counts one read.

        Raises:
            NotFoundError: no such entity.
        """
        wanted = entity_id(entity)
        t = self._store.at(as_of)
        with self._store.reading() as conn:
            record = self._store.entity_in(conn, wanted)
            observations = [
                observation_from_row(r)
                for r in conn.execute(
                    f"{OBSERVATIONS} WHERE o.entity_id = ? AND {HOLDS} ORDER BY v.valid_from, o.id",
                    (wanted, t, t),
                ).fetchall()
            ]
            outgoing = [
                relation_from_row(r)
                for r in conn.execute(
                    f"{RELATIONS} WHERE r.subject_id = ? AND {HOLDS} ORDER BY r.predicate, r.id",
                    (wanted, t, t),
                ).fetchall()
            ]
            incoming = [
                relation_from_row(r)
                for r in conn.execute(
                    f"{RELATIONS} WHERE r.object_id = ? AND {HOLDS} ORDER BY r.predicate, r.id",
                    (wanted, t, t),
                ).fetchall()
            ]
            others = {r.object_id for r in outgoing} | {r.subject_id for r in incoming}
            names = {k: v.name for k, v in self._store.entities_in(conn, others).items()}
        self._store.access.record([record.id])
        return EntityView(
            entity=record,
            aliases=self.aliases(record),
            observations=observations,
            outgoing=outgoing,
            incoming=incoming,
            names=names,
        )


def _why_not_merged(type: str, name: str, found: KGEntity, similarity: float) -> str | None:
    """Say why a near duplicate is only suggested, or None when it may be merged."""
    if type in IDENTIFIER_TYPES:
        return f"{type} names are identifiers: a near miss may be another {type}"
    if similarity < AUTO_MERGE_SIMILARITY:
        return f"names {similarity:.2f} alike, below {AUTO_MERGE_SIMILARITY} for merging"
    if min(len(compact(name)), len(compact(found.name))) < AUTO_MERGE_LENGTH:
        return f"names shorter than {AUTO_MERGE_LENGTH} letters differ in much of what they say"
    return None
