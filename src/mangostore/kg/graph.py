"""The knowledge graph service, ``db.kg``: entities, aliases, relations, observations,
validity, merges, traversal and search.

Every write runs in one transaction on the writer connection (joining the caller's
``db.transaction()`` when there is one). Reads of entities are counted through
:class:`~mangostore.kg.access.AccessCounter`, which writes the counts in batches.
The SQL here is built only from fixed fragments; every value is a ``?`` parameter.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from mangostore.errors import (
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    ValidationError,
)
from mangostore.kg.access import AccessCounter
from mangostore.kg.embedding import Embedder, NumpyIndex, VectorIndex, default_embedder
from mangostore.kg.inputs import checks_text_arguments
from mangostore.kg.model import (
    ENTITY_TYPES,
    OBSERVATION_TYPES,
    EntityView,
    GraphPath,
    MergeReport,
    Neighbor,
    Observation,
    Relation,
    Subgraph,
    Upsert,
)
from mangostore.kg.names import canonical, near_duplicate
from mangostore.kg.names import words as name_words
from mangostore.records import KGEntity
from mangostore.repos.base import new_id
from mangostore.sql import batches, placeholders, quote_identifier

if TYPE_CHECKING:
    from mangostore.db import Database
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.search import Hit

__all__ = ["EMBEDDING_THRESHOLD", "KnowledgeGraph"]

Direction = Literal["out", "in", "both"]
EntityRef = str | KGEntity
_PREDICATE = re.compile(r"[a-z0-9_]+")
_SOURCES = ("user", "inference", "observation")
#: With an embedder, a trigram near duplicate must also have names at least this
#: similar (cosine of their embeddings) to be matched.
EMBEDDING_THRESHOLD = 0.8
#: How many of each word's trigrams (the rarest) look up similar names.
_TRIGRAMS_PER_WORD = 4
#: Most index rows the chosen trigrams may match together when looking for a near
#: duplicate (search passes its own, smaller budget): words whose every trigram is more
#: common than this are left to the full-text search.
_TRIGRAM_ROW_BUDGET = 2_000
#: Most rows a traversal may produce before it stops (a guard for dense graphs).
_MAX_WALK_ROWS = 100_000

_RELATION_COLUMNS = (
    "r.id, r.user_id, r.subject_id, r.predicate, r.object_id, r.weight, r.confidence_score, "
    "r.source, r.created_at, r.last_confirmed, v.valid_from, v.valid_to, v.invalidated_at, "
    "v.invalidation_reason, v.superseded_by, v.confirmations"
)
_RELATIONS = (
    f"SELECT {_RELATION_COLUMNS} FROM kg_relations r "
    "JOIN kg_relation_validity v ON v.relation_id = r.id"
)
_OBSERVATIONS = (
    "SELECT o.id, o.entity_id, o.user_id, o.observation_type, o.content, o.context, "
    "o.confidence_score, o.verified, o.verified_at, o.created_at, v.valid_from, v.valid_to, "
    "v.invalidated_at, v.invalidation_reason, v.superseded_by, v.confirmations "
    "FROM kg_observations o JOIN kg_observation_validity v ON v.observation_id = o.id"
)
#: "v" holds at time ?: the validity filter used by every read.
_HOLDS = "(v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?))"


def _relation(row: Sequence[Any]) -> Relation:
    return Relation(
        id=row[0],
        user_id=row[1],
        subject_id=row[2],
        predicate=row[3],
        object_id=row[4],
        weight=1.0 if row[5] is None else float(row[5]),
        confidence=1.0 if row[6] is None else float(row[6]),
        source=row[7],
        created_at=row[8],
        last_confirmed=row[9],
        valid_from=row[10],
        valid_to=row[11],
        invalidated_at=row[12],
        invalidation_reason=row[13],
        superseded_by=row[14],
        confirmations=row[15],
    )


def _observation(row: Sequence[Any]) -> Observation:
    return Observation(
        id=row[0],
        entity_id=row[1],
        user_id=row[2],
        observation_type=row[3],
        content=row[4],
        context=json.loads(row[5]) if row[5] is not None else None,
        confidence=1.0 if row[6] is None else float(row[6]),
        verified=bool(row[7]),
        verified_at=row[8],
        created_at=row[9],
        valid_from=row[10],
        valid_to=row[11],
        invalidated_at=row[12],
        invalidation_reason=row[13],
        superseded_by=row[14],
        confirmations=row[15],
    )


def _ref(entity: EntityRef) -> str:
    if isinstance(entity, KGEntity):
        return entity.id
    if isinstance(entity, str) and entity:
        return entity
    raise InvalidValueError("an entity is given as its id or as a KGEntity", field="entity")


def _fact_id(fact: str | Relation | Observation) -> str:
    if isinstance(fact, Relation | Observation):
        return fact.id
    if isinstance(fact, str) and fact:
        return fact
    raise InvalidValueError("a fact is given as its id, a Relation or an Observation")


def _confidence(value: float, name: str = "confidence") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidValueError(f"{name} must be a number from 0 to 1", field=name)
    return float(value)


def _noisy_or(a: float, b: float) -> float:
    """Combine two independent confidences in the same fact (never above 1)."""
    return 1.0 - (1.0 - a) * (1.0 - b)


@checks_text_arguments
class KnowledgeGraph:
    """The knowledge graph of a database: obtain it as ``db.kg``.

    Args:
        db: the database.
        embedder: turns text into vectors for semantic search and duplicate checks;
            ``"default"`` uses :func:`~mangostore.kg.embedding.default_embedder` (the
            offline MiniLM model when ``mangostore[embeddings]`` is installed, else
            none); ``None`` turns semantic search off.
        vector_index: how nearest neighbours are found (default: :class:`NumpyIndex`).
    """

    def __init__(
        self,
        db: Database,
        *,
        embedder: Embedder | Literal["default"] | None = "default",
        vector_index: VectorIndex | None = None,
    ) -> None:
        self._db = db
        self._embedder_choice = embedder
        self._embedder_lock = threading.Lock()
        self._embedder_loaded = embedder != "default"
        self._embedder: Embedder | None = None if embedder == "default" else embedder
        self.access = AccessCounter(db)
        self.vector_index: VectorIndex = vector_index or NumpyIndex(db)

    # -- configuration -----------------------------------------------------------------

    @property
    def embedder(self) -> Embedder | None:
        """The embedder in use, loading the default one on first use (``None``: no vectors)."""
        if not self._embedder_loaded:
            with self._embedder_lock:
                if not self._embedder_loaded:
                    self._embedder = default_embedder()
                    self._embedder_loaded = True
        return self._embedder

    def set_embedder(self, embedder: Embedder | None) -> None:
        """Use ``embedder`` from now on (``None`` turns semantic search off)."""
        with self._embedder_lock:
            self._embedder = embedder
            self._embedder_loaded = True
        self.vector_index.invalidate()

    def close(self) -> None:
        """Write the buffered access counts. Call before the database closes."""
        self.access.flush()

    def flush(self) -> int:
        """Write the buffered access counts now; return how many entities were updated."""
        return self.access.flush()

    # -- plumbing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        self._db.store.check_open()
        with self._db.store.transaction() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        self._db.store.check_open()
        with self._db.store.reading() as conn:
            yield conn

    def _now(self) -> int:
        return self._db.clock.now_ms()

    def _entity_row(self, conn: Connection, entity_id: str) -> KGEntity:
        try:
            return self._db.kg_entities.get_in(conn, entity_id)
        except NotFoundError:
            raise NotFoundError(f"no knowledge graph entity has id {entity_id!r}") from None

    def _entities(self, conn: Connection, ids: Iterable[str]) -> dict[str, KGEntity]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, KGEntity] = {}
        repo = self._db.kg_entities
        for chunk in batches(wanted):
            sql = (
                f"SELECT {repo.spec.select_list} FROM kg_entities "
                f"WHERE id IN ({placeholders(len(chunk))})"
            )
            for row in conn.execute(sql, chunk).fetchall():
                record = repo.record_from_row(row)
                found[record.id] = record
        return found

    def _fill_canonical_names(self, conn: Connection, user_id: str) -> None:
        """Compute the canonical names the triggers left NULL (new or renamed entities)."""
        rows = conn.execute(
            "SELECT n.entity_id, e.name FROM kg_entity_names n "
            "JOIN kg_entities e ON e.id = n.entity_id "
            "WHERE n.user_id = ? AND n.canonical_name IS NULL",
            (user_id,),
        ).fetchall()
        if rows:
            conn.executemany(
                "UPDATE kg_entity_names SET canonical_name = ? WHERE entity_id = ?",
                [(canonical(name), entity_id) for entity_id, name in rows],
            )

    def _ensure_canonical(self, user_id: str) -> None:
        with self._read() as conn:
            pending = conn.execute(
                "SELECT 1 FROM kg_entity_names WHERE user_id = ? AND canonical_name IS NULL "
                "LIMIT 1",
                (user_id,),
            ).fetchone()
        if pending is not None:
            with self._write() as conn:
                self._fill_canonical_names(conn, user_id)

    # -- entities ------------------------------------------------------------------------

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

        An existing entity is matched, in this order, by canonical name, by alias, and
        by a near-duplicate name of the same type (see :mod:`mangostore.kg.names`; with
        an embedder, the names' embeddings must also agree, cosine at least
        :data:`EMBEDDING_THRESHOLD`). A matched entity gains what is new: a description
        it lacked, metadata keys, the higher confidence, and ``name`` as an alias when
        it was matched by similarity. ``aliases`` are added either way.

        Raises:
            InvalidValueError: unknown type, empty name, confidence outside 0..1, a surrogate.
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
            confidence = _confidence(confidence)
        extra_aliases = [a for a in aliases if canonical(a)]
        with self._write() as conn:
            self._fill_canonical_names(conn, user_id)
            found = self._match(conn, user_id, type, name, key) if dedup else None
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
                    "UPDATE kg_entity_names SET canonical_name = ? WHERE entity_id = ?",
                    (key, entity.id),
                )
                for alias in extra_aliases:
                    self._add_alias(conn, entity, alias, "user")
                result = Upsert(entity, created=True)
            else:
                entity_id, how, similarity = found
                entity = self._entity_row(conn, entity_id)
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
                    self._add_alias(conn, entity, name, "similar")
                for alias in extra_aliases:
                    self._add_alias(conn, entity, alias, "user")
                result = Upsert(entity, created=False, matched_by=how, similarity=similarity)
        self.access.record([result.entity.id])
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
        for entity_id, candidate in self._trigram_candidates(conn, user_id, name, type, 40):
            score = near_duplicate(name, candidate)
            if score is not None and (best is None or score > best[2]):
                best = (entity_id, candidate, score)
        if best is None:
            return None
        embedder = self.embedder
        if embedder is not None:
            vectors = embedder.embed([name, best[1]])
            if float(vectors[0] @ vectors[1]) < EMBEDDING_THRESHOLD:
                return None
        return best[0], "similar", best[2]

    def _trigram_candidates(
        self,
        conn: Connection,
        user_id: str,
        text: str,
        type: str | None,
        limit: int,
        budget: int = _TRIGRAM_ROW_BUDGET,
    ) -> list[tuple[str, str]]:
        """Names and aliases sharing the most trigrams with ``text`` (via the trigram index).

        Only the rarest few trigrams of each word are searched for: a common trigram
        ("ser", "ing") matches a large part of all names and would make the search
        slow without making it better.
        """
        per_word: list[list[str]] = []
        for word in name_words(text):
            grams = sorted({word[i : i + 3] for i in range(len(word) - 2)})
            if grams:
                per_word.append(grams)
        if not per_word:
            return []
        counts = dict(
            conn.execute(
                "SELECT term, doc FROM kg_trigram_vocab WHERE term IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(sorted({g for grams in per_word for g in grams})),),
            ).fetchall()
        )
        # Each word's rarest trigrams first, round by round, while the rows they match
        # stay within budget: ranking those rows is what the search costs.
        queues = [sorted((counts[g], g) for g in grams if counts.get(g)) for grams in per_word]
        chosen: set[str] = set()
        spent = 0
        for turn in range(_TRIGRAMS_PER_WORD):
            for known in queues:
                if turn < len(known):
                    docs, gram = known[turn]
                    if gram not in chosen and spent + docs <= budget:
                        chosen.add(gram)
                        spent += docs
        if not chosen:
            return []
        match = " OR ".join('"' + g.replace('"', '""') + '"' for g in sorted(chosen))
        type_clause = " AND e.entity_type = ?" if type is not None else ""
        params: list[Any] = [match, user_id]
        if type is not None:
            params.append(type)
        params.append(limit)
        rows = conn.execute(
            "SELECT t.entity_id, t.name FROM kg_trigram_index t "
            "JOIN kg_entities e ON e.id = t.entity_id "
            f"WHERE kg_trigram_index MATCH ? AND e.user_id = ?{type_clause} "
            "ORDER BY t.rank LIMIT ?",
            params,
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def get(self, entity: EntityRef) -> KGEntity:
        """Return the entity (and count the read).

        Raises:
            NotFoundError: no such entity.
        """
        entity_id = _ref(entity)
        with self._read() as conn:
            record = self._entity_row(conn, entity_id)
        self.access.record([record.id])
        return record

    def find(self, user_id: str, name: str, type: str | None = None) -> KGEntity | None:
        """Return the user's entity with this name or alias (canonical match), or None.

        When several types share the name and ``type`` is not given, the most recently
        updated entity is returned.
        """
        key = canonical(name)
        if not key:
            return None
        self._ensure_canonical(user_id)
        type_clause = " AND e.entity_type = ?" if type is not None else ""
        params: list[Any] = [user_id, key]
        if type is not None:
            params.append(type)
        with self._read() as conn:
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
            record = self._entity_row(conn, row[0])
        self.access.record([record.id])
        return record

    def resolve(self, user_id: str, entity: str, type: str | None = None) -> KGEntity:
        """Return the entity with this id, else the one with this name or alias.

        Raises:
            NotFoundError: neither matches.
        """
        with self._read() as conn:
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
        with self._write() as conn:
            record = self._entity_row(conn, _ref(entity))
            return self._add_alias(conn, record, alias, source)

    def _add_alias(
        self,
        conn: Connection,
        entity: KGEntity,
        alias: str,
        source: str | None,
        merge_id: str | None = None,
    ) -> bool:
        key = canonical(alias)
        if not key or key == canonical(entity.name):
            return False
        cursor = conn.execute(
            "INSERT OR IGNORE INTO kg_aliases "
            "(id, entity_id, user_id, alias, canonical_alias, source, merge_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id(), entity.id, entity.user_id, alias, key, source, merge_id, self._now()),
        )
        return bool(cursor.rowcount)

    def aliases(self, entity: EntityRef) -> list[str]:
        """Return the entity's aliases, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT alias FROM kg_aliases WHERE entity_id = ? ORDER BY created_at, id",
                (_ref(entity),),
            ).fetchall()
        return [r[0] for r in rows]

    def remove_alias(self, entity: EntityRef, alias: str) -> bool:
        """Remove an alias; return whether it existed."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM kg_aliases WHERE entity_id = ? AND canonical_alias = ?",
                (_ref(entity), canonical(alias)),
            )
            return bool(cursor.rowcount)

    def delete_entity(self, entity: EntityRef) -> None:
        """Delete an entity with its relations, observations, aliases and embeddings.

        Prefer :meth:`invalidate` for facts that stopped being true: deleting loses the
        history. The full-text indexes follow through their triggers.

        Raises:
            NotFoundError: no such entity.
        """
        entity_id = _ref(entity)
        with self._write() as conn:
            self._entity_row(conn, entity_id)
            conn.execute(
                "DELETE FROM kg_relations WHERE subject_id = ? OR object_id = ?",
                (entity_id, entity_id),
            )
            conn.execute("DELETE FROM kg_observations WHERE entity_id = ?", (entity_id,))
            conn.execute("DELETE FROM kg_entities WHERE id = ?", (entity_id,))

    def describe(self, entity: EntityRef, *, as_of: int | None = None) -> EntityView:
        """Return the entity with its aliases, and the observations and relations valid
        at ``as_of`` (default: now). Counts one read.

        Raises:
            NotFoundError: no such entity.
        """
        entity_id = _ref(entity)
        t = self._now() if as_of is None else as_of
        with self._read() as conn:
            record = self._entity_row(conn, entity_id)
            observations = [
                _observation(r)
                for r in conn.execute(
                    f"{_OBSERVATIONS} WHERE o.entity_id = ? AND {_HOLDS} "
                    "ORDER BY v.valid_from, o.id",
                    (entity_id, t, t),
                ).fetchall()
            ]
            outgoing = [
                _relation(r)
                for r in conn.execute(
                    f"{_RELATIONS} WHERE r.subject_id = ? AND {_HOLDS} ORDER BY r.predicate, r.id",
                    (entity_id, t, t),
                ).fetchall()
            ]
            incoming = [
                _relation(r)
                for r in conn.execute(
                    f"{_RELATIONS} WHERE r.object_id = ? AND {_HOLDS} ORDER BY r.predicate, r.id",
                    (entity_id, t, t),
                ).fetchall()
            ]
            others = {r.object_id for r in outgoing} | {r.subject_id for r in incoming}
            names = {k: v.name for k, v in self._entities(conn, others).items()}
        self.access.record([record.id])
        return EntityView(
            entity=record,
            aliases=self.aliases(record),
            observations=observations,
            outgoing=outgoing,
            incoming=incoming,
            names=names,
        )

    # -- predicates and relations --------------------------------------------------------------

    def declare_predicate(
        self, predicate: str, *, single_valued: bool = True, description: str | None = None
    ) -> None:
        """Declare how a predicate behaves, for every user of the database.

        A single-valued predicate (``preferred_shell``) has at most one valid object per
        subject: relating a new object closes the old relation (its ``valid_to`` set,
        ``superseded_by`` pointing at the new one) instead of keeping both.

        Raises:
            InvalidValueError: the predicate is not a lowercase identifier.
        """
        self._check_predicate(predicate)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO kg_predicates (predicate, single_valued, description, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (predicate) DO UPDATE SET "
                "single_valued = excluded.single_valued, description = excluded.description",
                (predicate, int(bool(single_valued)), description, self._now()),
            )

    def single_valued(self, predicate: str) -> bool:
        """Tell whether ``predicate`` was declared single-valued."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT single_valued FROM kg_predicates WHERE predicate = ?", (predicate,)
            ).fetchone()
        return bool(row[0]) if row is not None else False

    @staticmethod
    def _check_predicate(predicate: str) -> None:
        if not isinstance(predicate, str) or not _PREDICATE.fullmatch(predicate):
            raise InvalidValueError(
                "a predicate is a lowercase identifier (letters, digits, underscores), "
                f"got {predicate!r}",
                field="predicate",
            )

    def relate(
        self,
        subject: EntityRef,
        predicate: str,
        object: EntityRef,
        *,
        weight: float = 1.0,
        confidence: float = 1.0,
        source: str | None = "user",
        valid_from: int | None = None,
        project_id: str | None = None,
    ) -> Relation:
        """Record ``subject -predicate-> object``, or strengthen it if it already holds.

        Repeating a relation that holds adds ``weight`` to its weight, counts a
        confirmation, combines the confidences (noisy-or) and sets ``last_confirmed``;
        no second row is made. For a single-valued predicate, a relation to another
        object that still holds is closed at ``valid_from`` and marked superseded.

        Args:
            valid_from: when the fact started to hold (epoch ms; default now).

        Raises:
            InvalidValueError: bad predicate, weight, confidence or source.
            NotFoundError: no such entity.
            ValidationError: the entities belong to different users.
        """
        self._check_predicate(predicate)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise InvalidValueError("weight must be a positive number", field="weight")
        confidence = _confidence(confidence)
        if source is not None and source not in _SOURCES:
            raise InvalidValueError(f"source must be one of {', '.join(_SOURCES)}", field="source")
        now = self._now()
        start = now if valid_from is None else valid_from
        with self._write() as conn:
            s = self._entity_row(conn, _ref(subject))
            o = self._entity_row(conn, _ref(object))
            if s.user_id != o.user_id:
                raise ValidationError("a relation joins entities of the same user")
            current = conn.execute(
                f"{_RELATIONS} WHERE r.subject_id = ? AND r.predicate = ? AND r.object_id = ? "
                f"AND {_HOLDS} ORDER BY v.valid_from DESC LIMIT 1",
                (s.id, predicate, o.id, start, start),
            ).fetchone()
            if current is not None:
                old = _relation(current)
                conn.execute(
                    "UPDATE kg_relations SET weight = ?, confidence_score = ?, last_confirmed = ? "
                    "WHERE id = ?",
                    (old.weight + weight, _noisy_or(old.confidence, confidence), now, old.id),
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
                    conn.execute(
                        "UPDATE kg_relation_validity SET valid_from = ? WHERE relation_id = ?",
                        (start, relation_id),
                    )
            return self._relation_row(conn, relation_id)

    def _relation_row(self, conn: Connection, relation_id: str) -> Relation:
        row = conn.execute(f"{_RELATIONS} WHERE r.id = ?", (relation_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no relation has id {relation_id!r}")
        return _relation(row)

    def relations(
        self,
        entity: EntityRef,
        *,
        direction: Direction = "both",
        predicates: Sequence[str] | None = None,
        as_of: int | None = None,
        include_invalid: bool = False,
    ) -> list[Relation]:
        """Return the entity's relations that hold at ``as_of`` (default now), or all of
        them with ``include_invalid``, oldest first."""
        entity_id = _ref(entity)
        t = self._now() if as_of is None else as_of
        sides = {"out": ["r.subject_id = ?"], "in": ["r.object_id = ?"]}.get(
            direction, ["r.subject_id = ?", "r.object_id = ?"]
        )
        clauses = [f"({' OR '.join(sides)})"]
        params: list[Any] = [entity_id] * len(sides)
        if predicates is not None:
            clauses.append(f"r.predicate IN ({placeholders(len(predicates))})")
            params.extend(predicates)
        if not include_invalid:
            clauses.append(_HOLDS)
            params.extend((t, t))
        with self._read() as conn:
            rows = conn.execute(
                f"{_RELATIONS} WHERE {' AND '.join(clauses)} ORDER BY v.valid_from, r.id", params
            ).fetchall()
        return [_relation(r) for r in rows]

    def relation(self, relation_id: str) -> Relation:
        """Return one relation, whatever its validity.

        Raises:
            NotFoundError: no such relation.
        """
        with self._read() as conn:
            return self._relation_row(conn, relation_id)

    # -- observations --------------------------------------------------------------------

    def observe(
        self,
        entity: EntityRef,
        type: str,
        content: str,
        *,
        confidence: float = 1.0,
        context: dict[str, Any] | None = None,
        valid_from: int | None = None,
    ) -> Observation:
        """Record an observation about an entity, or confirm it if it already holds.

        An observation of the same type whose content has the same canonical form and
        still holds is confirmed (confidence combined, confirmations counted) instead of
        stored twice.

        Raises:
            InvalidValueError: unknown type, empty content, confidence outside 0..1.
            NotFoundError: no such entity.
        """
        if type not in OBSERVATION_TYPES:
            raise InvalidValueError(
                f"observation type must be one of {', '.join(OBSERVATION_TYPES)}; got {type!r}",
                field="type",
            )
        if not isinstance(content, str) or not canonical(content):
            raise InvalidValueError("an observation needs non-empty content", field="content")
        confidence = _confidence(confidence)
        now = self._now()
        start = now if valid_from is None else valid_from
        key = canonical(content)
        with self._write() as conn:
            record = self._entity_row(conn, _ref(entity))
            for row in conn.execute(
                f"{_OBSERVATIONS} WHERE o.entity_id = ? AND o.observation_type = ? AND {_HOLDS}",
                (record.id, type, start, start),
            ).fetchall():
                old = _observation(row)
                if canonical(old.content) == key:
                    conn.execute(
                        "UPDATE kg_observations SET confidence_score = ? WHERE id = ?",
                        (_noisy_or(old.confidence, confidence), old.id),
                    )
                    conn.execute(
                        "UPDATE kg_observation_validity SET confirmations = confirmations + 1 "
                        "WHERE observation_id = ?",
                        (old.id,),
                    )
                    return self._observation_row(conn, old.id)
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
            if start != now:
                conn.execute(
                    "UPDATE kg_observation_validity SET valid_from = ? WHERE observation_id = ?",
                    (start, observation.id),
                )
            return self._observation_row(conn, observation.id)

    def _observation_row(self, conn: Connection, observation_id: str) -> Observation:
        row = conn.execute(f"{_OBSERVATIONS} WHERE o.id = ?", (observation_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no observation has id {observation_id!r}")
        return _observation(row)

    def observation(self, observation_id: str) -> Observation:
        """Return one observation, whatever its validity.

        Raises:
            NotFoundError: no such observation.
        """
        with self._read() as conn:
            return self._observation_row(conn, observation_id)

    def observations(
        self,
        entity: EntityRef,
        *,
        as_of: int | None = None,
        include_invalid: bool = False,
    ) -> list[Observation]:
        """Return the entity's observations that hold at ``as_of`` (default now), or all."""
        t = self._now() if as_of is None else as_of
        sql = f"{_OBSERVATIONS} WHERE o.entity_id = ?"
        params: list[Any] = [_ref(entity)]
        if not include_invalid:
            sql += f" AND {_HOLDS}"
            params += [t, t]
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY v.valid_from, o.id", params).fetchall()
        return [_observation(r) for r in rows]

    def verify(self, observation: str | Observation) -> Observation:
        """Mark an observation verified (by the user) and return it.

        Raises:
            NotFoundError: no such observation.
        """
        observation_id = _fact_id(observation)
        with self._write() as conn:
            self._observation_row(conn, observation_id)
            conn.execute(
                "UPDATE kg_observations SET verified = 1, verified_at = ? WHERE id = ?",
                (self._now(), observation_id),
            )
            return self._observation_row(conn, observation_id)

    def invalidate(
        self,
        fact: str | Relation | Observation,
        *,
        at: int | None = None,
        reason: str | None = None,
    ) -> Relation | Observation:
        """End a relation's or observation's validity at ``at`` (default now); keep the row.

        The fact stays readable with ``include_invalid=True`` and in ``as_of`` queries
        about the time it held. Invalidating an already closed fact moves its end earlier
        only.

        Raises:
            NotFoundError: no relation or observation has this id.
        """
        fact_id = _fact_id(fact)
        now = self._now()
        end = now if at is None else at
        with self._write() as conn:
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
                        return self._relation_row(conn, fact_id)
                    return self._observation_row(conn, fact_id)
        raise NotFoundError(f"no relation or observation has id {fact_id!r}")

    # -- traversal ------------------------------------------------------------------------

    def _walk_sql(
        self,
        direction: Direction,
        predicates: Sequence[str] | None,
        *,
        seeds_json: bool = False,
        stop_at_target: bool = False,
    ) -> tuple[str, list[str]]:
        """Build the recursive walk; return (sql, the order of its named parameter slots).

        Each row of ``walk`` is a simple path from a seed: ``path`` lists the entity ids
        visited (``/a/b/``), so a relation back to a visited entity is not followed
        (the cycle guard); ``rels`` lists the relation ids taken.
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
                _HOLDS,
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
        return sql, slots

    @staticmethod
    def _bind(slots: list[str], values: dict[str, Any]) -> list[Any]:
        params: list[Any] = []
        predicate_index = 0
        for slot in slots:
            if slot == "predicate":
                predicates = values["predicates"]
                params.append(predicates[predicate_index % len(predicates)])
                predicate_index += 1
            else:
                params.append(values[slot])
        return params

    def _relations_by_id(self, conn: Connection, ids: Iterable[str]) -> dict[str, Relation]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Relation] = {}
        for chunk in batches(wanted):
            rows = conn.execute(
                f"{_RELATIONS} WHERE r.id IN ({placeholders(len(chunk))})", chunk
            ).fetchall()
            found.update((r[0], _relation(r)) for r in rows)
        return found

    def neighbors(
        self,
        entity: EntityRef,
        *,
        depth: int = 1,
        predicates: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: int | None = None,
        limit: int | None = None,
    ) -> list[Neighbor]:
        """Return the entities within ``depth`` hops, nearest first, each with one
        shortest path to it. Only relations that hold at ``as_of`` (default now) are
        followed; cycles are never followed round.

        Raises:
            InvalidValueError: depth below 1 or an unknown direction.
            NotFoundError: no such entity.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise InvalidValueError("depth must be a positive integer", field="depth")
        if direction not in ("out", "in", "both"):
            raise InvalidValueError("direction is 'out', 'in' or 'both'", field="direction")
        start = _ref(entity)
        t = self._now() if as_of is None else as_of
        if predicates is not None and not predicates:
            return []
        with self._read() as conn:
            origin = self._entity_row(conn, start)
            walk, slots = self._walk_sql(direction, predicates)
            values = {
                "start": start,
                "depth": depth,
                "user": origin.user_id,
                "t": t,
                "predicates": list(predicates or ()),
                "limit": _MAX_WALK_ROWS,
            }
            rows = conn.execute(
                walk + "SELECT node, depth, rels FROM walk WHERE depth > 0 ORDER BY depth",
                self._bind(slots, values),
            ).fetchall()
            best: dict[str, tuple[int, list[str]]] = {}
            for node, hops, rels in rows:
                if node != start and node not in best:
                    best[node] = (hops, [x for x in rels.split(",") if x])
            entities = self._entities(conn, best)
            relations = self._relations_by_id(conn, (r for _, p in best.values() for r in p))
        ordered = sorted(
            (n for n in best if n in entities),
            key=lambda n: (best[n][0], -sum(relations[r].weight for r in best[n][1])),
        )
        if limit is not None:
            ordered = ordered[:limit]
        result = [
            Neighbor(entities[n], best[n][0], [relations[r] for r in best[n][1]]) for n in ordered
        ]
        self.access.record(n.entity.id for n in result)
        return result

    def paths(
        self,
        a: EntityRef,
        b: EntityRef,
        *,
        max_depth: int = 4,
        predicates: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: int | None = None,
        limit: int = 10,
    ) -> list[GraphPath]:
        """Return up to ``limit`` simple paths from ``a`` to ``b``, shortest first.

        Raises:
            InvalidValueError: max_depth below 1.
            NotFoundError: either entity is missing.
        """
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise InvalidValueError("max_depth must be a positive integer", field="max_depth")
        start, target = _ref(a), _ref(b)
        t = self._now() if as_of is None else as_of
        with self._read() as conn:
            origin = self._entity_row(conn, start)
            self._entity_row(conn, target)
            walk, slots = self._walk_sql(direction, predicates, stop_at_target=True)
            values = {
                "start": start,
                "depth": max_depth,
                "user": origin.user_id,
                "t": t,
                "target": target,
                "predicates": list(predicates or ()),
                "limit": _MAX_WALK_ROWS,
            }
            rows = conn.execute(
                walk + "SELECT path, rels FROM walk WHERE node = ? AND depth > 0 "
                "ORDER BY depth, rels LIMIT ?",
                [*self._bind(slots, values), target, limit],
            ).fetchall()
            relations = self._relations_by_id(
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
        as_of: int | None = None,
    ) -> Subgraph:
        """Return the entities within ``depth`` hops of any seed and the relations among
        them that hold at ``as_of`` (default now).

        Raises:
            InvalidValueError: depth below 0.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise InvalidValueError("depth must be a non-negative integer", field="depth")
        seeds = list(dict.fromkeys(_ref(e) for e in entities))
        if not seeds:
            return Subgraph([], [])
        t = self._now() if as_of is None else as_of
        with self._read() as conn:
            found = self._entities(conn, seeds)
            if not found:
                return Subgraph([], [])
            user_id = next(iter(found.values())).user_id
            nodes = set(found)
            if depth > 0:
                walk, slots = self._walk_sql("both", predicates, seeds_json=True)
                values = {
                    "seeds": json.dumps(list(found)),
                    "depth": depth,
                    "user": user_id,
                    "t": t,
                    "predicates": list(predicates or ()),
                    "limit": _MAX_WALK_ROWS,
                }
                rows = conn.execute(
                    walk + "SELECT DISTINCT node FROM walk", self._bind(slots, values)
                ).fetchall()
                nodes.update(r[0] for r in rows)
            members = json.dumps(sorted(nodes))
            predicate_clause = ""
            params: list[Any] = [members, members, t, t]
            if predicates is not None:
                predicate_clause = f" AND r.predicate IN ({placeholders(len(predicates))})"
                params.extend(predicates)
            relation_rows = conn.execute(
                f"{_RELATIONS} WHERE r.subject_id IN (SELECT value FROM json_each(?)) "
                f"AND r.object_id IN (SELECT value FROM json_each(?)) AND {_HOLDS}"
                f"{predicate_clause} ORDER BY r.id",
                params,
            ).fetchall()
            records = self._entities(conn, nodes)
        ordered = sorted(records.values(), key=lambda e: (e.id not in found, e.name, e.id))
        self.access.record(e.id for e in ordered)
        return Subgraph(ordered, [_relation(r) for r in relation_rows])

    # -- merging ---------------------------------------------------------------------------

    def merge(self, keep: EntityRef, drop: EntityRef, *, dry_run: bool = False) -> MergeReport:
        """Fold ``drop`` into ``keep``: re-point its relations, observations and aliases,
        keep its name as an alias, then delete it. The merge is logged; undo it with
        :meth:`undo_merge`. ``dry_run`` reports what would change and writes nothing.

        Relations that ``keep`` already has (same predicate and other end, still
        holding) absorb the dropped copy's weight and confirmations; relations between
        the two would become self-loops and are removed.

        Raises:
            NotFoundError: either entity is missing.
            ValidationError: the same entity twice, or entities of different users.
        """
        keep_id, drop_id = _ref(keep), _ref(drop)
        if keep_id == drop_id:
            raise ValidationError("an entity cannot be merged into itself")
        merge_id = None if dry_run else new_id()
        now = self._now()
        with self._write() as conn:
            kept = self._entity_row(conn, keep_id)
            dropped = self._entity_row(conn, drop_id)
            if kept.user_id != dropped.user_id:
                raise ValidationError("only entities of the same user can be merged")
            report, snapshot = self._plan_merge(conn, kept, dropped, now, merge_id)
            if dry_run:
                # Everything above only read; nothing to undo.
                return report
            self._apply_merge(conn, kept, dropped, snapshot, merge_id or "", now)
        return report

    def _plan_merge(
        self,
        conn: Connection,
        kept: KGEntity,
        dropped: KGEntity,
        now: int,
        merge_id: str | None,
    ) -> tuple[MergeReport, dict[str, Any]]:
        keep_id, drop_id = kept.id, dropped.id
        columns = self._db.kg_entities.spec.names
        entity_row = conn.execute(
            f"SELECT {', '.join(map(quote_identifier, columns))} FROM kg_entities WHERE id = ?",
            (drop_id,),
        ).fetchone()
        relation_rows = conn.execute(
            f"{_RELATIONS} WHERE r.subject_id = ? OR r.object_id = ? ORDER BY r.id",
            (drop_id, drop_id),
        ).fetchall()
        repointed: list[dict[str, Any]] = []
        combined: list[dict[str, Any]] = []
        loops: list[dict[str, Any]] = []
        for row in relation_rows:
            rel = _relation(row)
            subject = keep_id if rel.subject_id == drop_id else rel.subject_id
            obj = keep_id if rel.object_id == drop_id else rel.object_id
            raw = self._raw_relation(conn, rel.id)
            if subject == obj:
                loops.append(raw)
                continue
            twin = None
            if rel.holds_at(now):
                twin_row = conn.execute(
                    f"{_RELATIONS} WHERE r.subject_id = ? AND r.predicate = ? AND r.object_id = ? "
                    f"AND r.id <> ? AND {_HOLDS} LIMIT 1",
                    (subject, rel.predicate, obj, rel.id, now, now),
                ).fetchone()
                twin = _relation(twin_row) if twin_row is not None else None
            if twin is not None:
                combined.append(
                    {
                        "dropped": raw,
                        "into": twin.id,
                        "before": {
                            "weight": twin.weight,
                            "confidence_score": twin.confidence,
                            "last_confirmed": twin.last_confirmed,
                            "confirmations": twin.confirmations,
                        },
                    }
                )
            else:
                repointed.append(
                    {
                        "id": rel.id,
                        "subject": rel.subject_id == drop_id,
                        "object": rel.object_id == drop_id,
                    }
                )
        observations = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM kg_observations WHERE entity_id = ? ORDER BY id", (drop_id,)
            ).fetchall()
        ]
        kept_aliases = {
            r[0]
            for r in conn.execute(
                "SELECT canonical_alias FROM kg_aliases WHERE entity_id = ?", (keep_id,)
            ).fetchall()
        }
        aliases_moved: list[str] = []
        aliases_dropped: list[dict[str, Any]] = []
        for alias_row in conn.execute(
            "SELECT id, alias, canonical_alias, source, merge_id, created_at FROM kg_aliases "
            "WHERE entity_id = ? ORDER BY id",
            (drop_id,),
        ).fetchall():
            if alias_row[2] in kept_aliases or alias_row[2] == canonical(kept.name):
                aliases_dropped.append(
                    dict(
                        zip(
                            ("id", "alias", "canonical_alias", "source", "merge_id", "created_at"),
                            alias_row,
                            strict=True,
                        )
                    )
                )
            else:
                aliases_moved.append(alias_row[0])
        moved_keys = {
            r[0]
            for r in conn.execute(
                "SELECT canonical_alias FROM kg_aliases WHERE entity_id = ?", (drop_id,)
            ).fetchall()
        }
        name_key = canonical(dropped.name)
        alias_added = (
            dropped.name
            if name_key != canonical(kept.name) and name_key not in kept_aliases | moved_keys
            else None
        )
        report = MergeReport(
            keep_id=keep_id,
            drop_id=drop_id,
            dry_run=merge_id is None,
            merge_id=merge_id,
            relations_repointed=[r["id"] for r in repointed],
            relations_combined=[(c["dropped"]["id"], c["into"]) for c in combined],
            self_loops_removed=[r["id"] for r in loops],
            observations_moved=observations,
            aliases_moved=aliases_moved,
            alias_added=alias_added,
        )
        snapshot = {
            "entity": dict(zip(columns, entity_row, strict=True)),
            "keep_before": {
                "description": kept.description,
                "metadata": kept.metadata,
                "access_count": kept.access_count,
                "confidence_score": kept.confidence_score,
            },
            "repointed": repointed,
            "combined": combined,
            "loops": loops,
            "observations": observations,
            "aliases_moved": aliases_moved,
            "aliases_dropped": aliases_dropped,
        }
        return report, snapshot

    def _raw_relation(self, conn: Connection, relation_id: str) -> dict[str, Any]:
        row = conn.execute(
            "SELECT r.id, r.user_id, r.project_id, r.subject_id, r.predicate, r.object_id, "
            "r.weight, r.confidence_score, r.created_at, r.last_confirmed, r.source, "
            "v.valid_from, v.valid_to, v.invalidated_at, v.invalidation_reason, "
            "v.superseded_by, v.confirmations FROM kg_relations r "
            "JOIN kg_relation_validity v ON v.relation_id = r.id WHERE r.id = ?",
            (relation_id,),
        ).fetchone()
        keys = [
            "id",
            "user_id",
            "project_id",
            "subject_id",
            "predicate",
            "object_id",
            "weight",
            "confidence_score",
            "created_at",
            "last_confirmed",
            "source",
            "valid_from",
            "valid_to",
            "invalidated_at",
            "invalidation_reason",
            "superseded_by",
            "confirmations",
        ]
        return dict(zip(keys, row, strict=True))

    def _apply_merge(
        self,
        conn: Connection,
        kept: KGEntity,
        dropped: KGEntity,
        snapshot: dict[str, Any],
        merge_id: str,
        now: int,
    ) -> None:
        keep_id, drop_id = kept.id, dropped.id
        for item in snapshot["combined"]:
            dropped_rel = item["dropped"]
            before = item["before"]
            conn.execute(
                "UPDATE kg_relations SET weight = ?, confidence_score = ?, "
                "last_confirmed = max(coalesce(last_confirmed, 0), ?) WHERE id = ?",
                (
                    before["weight"] + (dropped_rel["weight"] or 1.0),
                    _noisy_or(
                        before["confidence_score"],
                        dropped_rel["confidence_score"]
                        if dropped_rel["confidence_score"] is not None
                        else 1.0,
                    ),
                    dropped_rel["last_confirmed"] or dropped_rel["created_at"],
                    item["into"],
                ),
            )
            conn.execute(
                "UPDATE kg_relation_validity SET confirmations = confirmations + ? "
                "WHERE relation_id = ?",
                (dropped_rel["confirmations"], item["into"]),
            )
            conn.execute("DELETE FROM kg_relations WHERE id = ?", (dropped_rel["id"],))
        for loop in snapshot["loops"]:
            conn.execute("DELETE FROM kg_relations WHERE id = ?", (loop["id"],))
        for item in snapshot["repointed"]:
            if item["subject"]:
                conn.execute(
                    "UPDATE kg_relations SET subject_id = ? WHERE id = ?", (keep_id, item["id"])
                )
            if item["object"]:
                conn.execute(
                    "UPDATE kg_relations SET object_id = ? WHERE id = ?", (keep_id, item["id"])
                )
        conn.executemany(
            "UPDATE kg_observations SET entity_id = ? WHERE id = ?",
            [(keep_id, o) for o in snapshot["observations"]],
        )
        for alias in snapshot["aliases_dropped"]:
            conn.execute("DELETE FROM kg_aliases WHERE id = ?", (alias["id"],))
        conn.executemany(
            "UPDATE kg_aliases SET entity_id = ? WHERE id = ?",
            [(keep_id, a) for a in snapshot["aliases_moved"]],
        )
        changes: dict[str, Any] = {
            "access_count": (kept.access_count or 0) + (dropped.access_count or 0)
        }
        if not kept.description and dropped.description:
            changes["description"] = dropped.description
        if dropped.metadata:
            merged = dict(kept.metadata or {})
            for k, v in dropped.metadata.items():
                merged.setdefault(k, v)
            changes["metadata"] = merged
        if (dropped.confidence_score or 0) > (kept.confidence_score or 0):
            changes["confidence_score"] = dropped.confidence_score
        conn.execute("DELETE FROM kg_entities WHERE id = ?", (drop_id,))
        self._db.kg_entities.update_in(conn, keep_id, changes)
        self._add_alias(conn, kept, dropped.name, "merge", merge_id)
        conn.execute(
            "INSERT INTO kg_merges (id, user_id, keep_id, drop_id, drop_name, snapshot, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (merge_id, kept.user_id, keep_id, drop_id, dropped.name, json.dumps(snapshot), now),
        )

    def merges(self, user_id: str, *, include_undone: bool = False) -> list[dict[str, Any]]:
        """Return the user's merges, newest first: id, keep_id, drop_id, drop_name,
        created_at, undone_at."""
        sql = (
            "SELECT id, keep_id, drop_id, drop_name, created_at, undone_at FROM kg_merges "
            "WHERE user_id = ?"
        )
        if not include_undone:
            sql += " AND undone_at IS NULL"
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY id DESC", (user_id,)).fetchall()
        keys = ("id", "keep_id", "drop_id", "drop_name", "created_at", "undone_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def undo_merge(self, merge_id: str) -> KGEntity:
        """Undo a merge: bring the dropped entity back, with its relations, observations
        and aliases, and restore the kept entity as it was. Returns the restored entity.

        Raises:
            NotFoundError: no such merge.
            InvalidTransitionError: it was already undone, a later merge involving
                either entity has not been undone, or the kept entity is gone.
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT keep_id, drop_id, snapshot, undone_at, user_id FROM kg_merges WHERE id = ?",
                (merge_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no merge has id {merge_id!r}")
            keep_id, drop_id, snapshot_text, undone_at, _ = row
            if undone_at is not None:
                raise InvalidTransitionError(f"merge {merge_id} was already undone")
            later = conn.execute(
                "SELECT id FROM kg_merges WHERE id > ? AND undone_at IS NULL "
                "AND (keep_id IN (?, ?) OR drop_id IN (?, ?)) ORDER BY id DESC LIMIT 1",
                (merge_id, keep_id, drop_id, keep_id, drop_id),
            ).fetchone()
            if later is not None:
                raise InvalidTransitionError(
                    f"merge {later[0]} came later and involves the same entities; undo it first"
                )
            if (
                conn.execute("SELECT 1 FROM kg_entities WHERE id = ?", (keep_id,)).fetchone()
                is None
            ):
                raise InvalidTransitionError(
                    "the kept entity was deleted since the merge; it cannot be undone"
                )
            snapshot = json.loads(snapshot_text)
            entity = snapshot["entity"]
            columns = list(entity)
            conn.execute(
                f"INSERT INTO kg_entities ({', '.join(map(quote_identifier, columns))}) "
                f"VALUES ({placeholders(len(columns))})",
                [entity[c] for c in columns],
            )
            conn.execute(
                "UPDATE kg_entity_names SET canonical_name = ? WHERE entity_id = ?",
                (canonical(entity["name"]), drop_id),
            )
            before = snapshot["keep_before"]
            conn.execute(
                "UPDATE kg_entities SET description = ?, metadata = ?, access_count = ?, "
                "confidence_score = ? WHERE id = ?",
                (
                    before["description"],
                    json.dumps(before["metadata"]) if before["metadata"] is not None else None,
                    before["access_count"],
                    before["confidence_score"],
                    keep_id,
                ),
            )
            for item in snapshot["repointed"]:
                if item["subject"]:
                    conn.execute(
                        "UPDATE kg_relations SET subject_id = ? WHERE id = ? AND subject_id = ?",
                        (drop_id, item["id"], keep_id),
                    )
                if item["object"]:
                    conn.execute(
                        "UPDATE kg_relations SET object_id = ? WHERE id = ? AND object_id = ?",
                        (drop_id, item["id"], keep_id),
                    )
            for item in snapshot["combined"]:
                self._restore_relation(conn, item["dropped"])
                prior = item["before"]
                conn.execute(
                    "UPDATE kg_relations SET weight = ?, confidence_score = ?, last_confirmed = ? "
                    "WHERE id = ?",
                    (
                        prior["weight"],
                        prior["confidence_score"],
                        prior["last_confirmed"],
                        item["into"],
                    ),
                )
                conn.execute(
                    "UPDATE kg_relation_validity SET confirmations = ? WHERE relation_id = ?",
                    (prior["confirmations"], item["into"]),
                )
            for loop in snapshot["loops"]:
                self._restore_relation(conn, loop)
            conn.executemany(
                "UPDATE kg_observations SET entity_id = ? WHERE id = ? AND entity_id = ?",
                [(drop_id, o, keep_id) for o in snapshot["observations"]],
            )
            conn.execute("DELETE FROM kg_aliases WHERE merge_id = ?", (merge_id,))
            conn.executemany(
                "UPDATE kg_aliases SET entity_id = ? WHERE id = ? AND entity_id = ?",
                [(drop_id, a, keep_id) for a in snapshot["aliases_moved"]],
            )
            for alias in snapshot["aliases_dropped"]:
                conn.execute(
                    "INSERT OR IGNORE INTO kg_aliases (id, entity_id, user_id, alias, "
                    "canonical_alias, source, merge_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        alias["id"],
                        drop_id,
                        entity["user_id"],
                        alias["alias"],
                        alias["canonical_alias"],
                        alias["source"],
                        alias["merge_id"],
                        alias["created_at"],
                    ),
                )
            conn.execute("UPDATE kg_merges SET undone_at = ? WHERE id = ?", (self._now(), merge_id))
            restored = self._entity_row(conn, drop_id)
        return restored

    @staticmethod
    def _restore_relation(conn: Connection, raw: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO kg_relations (id, user_id, project_id, subject_id, predicate, object_id, "
            "weight, confidence_score, created_at, last_confirmed, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(
                raw[k]
                for k in [
                    "id",
                    "user_id",
                    "project_id",
                    "subject_id",
                    "predicate",
                    "object_id",
                    "weight",
                    "confidence_score",
                    "created_at",
                    "last_confirmed",
                    "source",
                ]
            ),
        )
        conn.execute(
            "UPDATE kg_relation_validity SET valid_from = ?, valid_to = ?, invalidated_at = ?, "
            "invalidation_reason = ?, superseded_by = ?, confirmations = ? WHERE relation_id = ?",
            (
                raw["valid_from"],
                raw["valid_to"],
                raw["invalidated_at"],
                raw["invalidation_reason"],
                raw["superseded_by"],
                raw["confirmations"],
                raw["id"],
            ),
        )

    # -- search and embeddings ---------------------------------------------------------------

    def search(
        self,
        user_id: str,
        query: str,
        *,
        k: int = 10,
        types: Sequence[str] | None = None,
        as_of: int | None = None,
        explain: bool = False,
        retrievers: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Find the user's entities that answer ``query``, best first.

        Full text (BM25 over names, aliases and observations), trigram similarity of
        names, vectors (when an embedder is available) and graph proximity to the
        entities the query names are fused with reciprocal rank fusion, then reranked by
        confidence, recency and access counts. Facts that did not hold at ``as_of``
        (default now) are not used as evidence. See :mod:`mangostore.kg.search`.

        Args:
            k: how many hits to return.
            types: only entities of these types.
            explain: fill each hit's ``explanation`` with the score breakdown and the
                evidence (which row or relation matched, and how).
            retrievers: a subset of ``("fts", "trigram", "vector", "graph")``.

        Raises:
            InvalidValueError: k below 1, an unknown type or retriever, a surrogate in text.
        """
        from mangostore.kg.search import HybridSearch

        return HybridSearch(self).search(
            user_id, query, k=k, types=types, as_of=as_of, explain=explain, retrievers=retrievers
        )

    def embed_pending(self, user_id: str | None = None, *, batch: int = 256) -> int:
        """Embed the entities and observations whose text changed since they were embedded.

        Text whose SHA-256 already has a vector for this model is not embedded again.
        Returns how many texts were embedded (0 without an embedder).
        """
        from mangostore.kg.vectors import EmbeddingSync

        embedder = self.embedder
        if embedder is None:
            return 0
        return EmbeddingSync(self._db, embedder).run(user_id, batch=batch)

    # -- interchange ----------------------------------------------------------------------

    def import_jsonl(self, user_id: str, lines: Iterable[str]) -> dict[str, int]:
        """Import the MCP memory server's JSONL format; see :mod:`mangostore.kg.mcp_jsonl`."""
        from mangostore.kg.mcp_jsonl import import_jsonl

        return import_jsonl(self, user_id, lines)

    def export_jsonl(self, user_id: str) -> Iterator[str]:
        """Export the user's graph as MCP memory server JSONL lines (no newlines)."""
        from mangostore.kg.mcp_jsonl import export_jsonl

        return export_jsonl(self, user_id)
