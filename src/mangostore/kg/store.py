"""Row access shared by every part of the knowledge graph.

Entities, facts, traversal, merges and search all read and write through one
:class:`GraphStore`: it opens the transactions, tells the time, turns rows into
:class:`~mangostore.kg.model.Relation` and :class:`~mangostore.kg.model.Observation`
values, reads entities, relations and observations by id, keeps the canonical names
filled in, and looks names up by trigrams. Keeping this in one place is what lets the
parts agree on what a row means and on which facts hold at a time (:data:`HOLDS`).

The SQL here is built only from fixed fragments; every value is a ``?`` parameter.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mangostore.clock import Instant, epoch_ms
from mangostore.errors import InvalidValueError, NotFoundError
from mangostore.kg.access import AccessCounter
from mangostore.kg.model import EntityRef, Observation, Relation
from mangostore.kg.names import canonical, sound
from mangostore.kg.names import words as name_words
from mangostore.records import KGEntity
from mangostore.sql import batches, placeholders

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.ports import GraphDatabase

__all__ = [
    "HOLDS",
    "OBSERVATIONS",
    "RELATIONS",
    "GraphStore",
    "checked_confidence",
    "entity_id",
    "noisy_or",
    "observation_from_row",
    "relation_from_row",
]

#: How many of each word's trigrams (the rarest) look up similar names.
_TRIGRAMS_PER_WORD = 4
#: Most index rows the chosen trigrams may match together when looking for a near
#: duplicate (search passes its own, smaller budget): words whose every trigram is more
#: common than this are left to the full-text search.
_TRIGRAM_ROW_BUDGET = 2_000

_RELATION_COLUMNS = (
    "r.id, r.user_id, r.subject_id, r.predicate, r.object_id, r.weight, r.confidence_score, "
    "r.source, r.created_at, r.last_confirmed, v.valid_from, v.valid_to, v.invalidated_at, "
    "v.invalidation_reason, v.superseded_by, v.confirmations"
)
#: Relations ("r") with their validity ("v"), in the column order of :func:`relation_from_row`.
RELATIONS = (
    f"SELECT {_RELATION_COLUMNS} FROM kg_relations r "
    "JOIN kg_relation_validity v ON v.relation_id = r.id"
)
#: Observations ("o") with their validity ("v"), in the order of :func:`observation_from_row`.
OBSERVATIONS = (
    "SELECT o.id, o.entity_id, o.user_id, o.observation_type, o.content, o.context, "
    "o.confidence_score, o.verified, o.verified_at, o.created_at, v.valid_from, v.valid_to, "
    "v.invalidated_at, v.invalidation_reason, v.superseded_by, v.confirmations "
    "FROM kg_observations o JOIN kg_observation_validity v ON v.observation_id = o.id"
)
#: "v" holds at time ?: the validity filter used by every read.
HOLDS = "(v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?))"


def relation_from_row(row: Sequence[Any]) -> Relation:
    """Return the relation in a row selected by :data:`RELATIONS`."""
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


def observation_from_row(row: Sequence[Any]) -> Observation:
    """Return the observation in a row selected by :data:`OBSERVATIONS`."""
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


def entity_id(entity: EntityRef) -> str:
    """Return the id of an entity given as its id or as a record.

    Raises:
        InvalidValueError: neither a non-empty string nor a :class:`KGEntity`.
    """
    if isinstance(entity, KGEntity):
        return entity.id
    if isinstance(entity, str) and entity:
        return entity
    raise InvalidValueError("an entity is given as its id or as a KGEntity", field="entity")


def checked_confidence(value: float, name: str = "confidence") -> float:
    """Return ``value`` as a float if it is a number from 0 to 1.

    Raises:
        InvalidValueError: anything else (booleans too), naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidValueError(f"{name} must be a number from 0 to 1", field=name)
    return float(value)


def noisy_or(a: float, b: float) -> float:
    """Combine two independent confidences in the same fact (never above 1)."""
    return 1.0 - (1.0 - a) * (1.0 - b)


class GraphStore:
    """Transactions, the clock and the shared reads of one knowledge graph.

    Args:
        db: the database.
        access: counts the reads of entities; every part records its reads here.
    """

    def __init__(self, db: GraphDatabase, access: AccessCounter) -> None:
        self._db = db
        self.access = access

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Write on the writer connection, joining the caller's transaction if any.

        Raises:
            DatabaseClosedError: the database is closed.
        """
        self._db.store.check_open()
        with self._db.store.transaction() as conn:
            yield conn

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """Read, seeing the caller's uncommitted writes inside its transaction.

        Raises:
            DatabaseClosedError: the database is closed.
        """
        self._db.store.check_open()
        with self._db.store.reading() as conn:
            yield conn

    def now(self) -> int:
        """Return the database clock's time, in epoch milliseconds."""
        return self._db.clock.now_ms()

    def at(self, moment: Instant | None, field: str = "as_of") -> int:
        """Return ``moment`` in epoch milliseconds, or the clock's time when it is ``None``.

        Raises:
            InvalidValueError: ``moment`` is not a time (see :func:`mangostore.clock.epoch_ms`).
        """
        return self.now() if moment is None else epoch_ms(moment, field)

    def entity_in(self, conn: Connection, entity_id: str) -> KGEntity:
        """Return one entity read on ``conn`` (the read is not counted).

        Raises:
            NotFoundError: no such entity.
        """
        try:
            return self._db.kg_entities.get_in(conn, entity_id)
        except NotFoundError:
            raise NotFoundError(f"no knowledge graph entity has id {entity_id!r}") from None

    def entities_in(self, conn: Connection, ids: Iterable[str]) -> dict[str, KGEntity]:
        """Return the entities among ``ids`` that exist, by id (missing ones are left out)."""
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

    def relation_in(self, conn: Connection, relation_id: str) -> Relation:
        """Return one relation, whatever its validity.

        Raises:
            NotFoundError: no such relation.
        """
        row = conn.execute(f"{RELATIONS} WHERE r.id = ?", (relation_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no relation has id {relation_id!r}")
        return relation_from_row(row)

    def relations_in(self, conn: Connection, ids: Iterable[str]) -> dict[str, Relation]:
        """Return the relations among ``ids`` that exist, by id, whatever their validity."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Relation] = {}
        for chunk in batches(wanted):
            rows = conn.execute(
                f"{RELATIONS} WHERE r.id IN ({placeholders(len(chunk))})", chunk
            ).fetchall()
            found.update((r[0], relation_from_row(r)) for r in rows)
        return found

    def observation_in(self, conn: Connection, observation_id: str) -> Observation:
        """Return one observation, whatever its validity.

        Raises:
            NotFoundError: no such observation.
        """
        row = conn.execute(f"{OBSERVATIONS} WHERE o.id = ?", (observation_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no observation has id {observation_id!r}")
        return observation_from_row(row)

    def fill_canonical_names(self, conn: Connection, user_id: str) -> None:
        """Compute the canonical names the triggers left NULL (new or renamed entities).

        The triggers cannot compute them: the canonical form is Unicode normalisation
        and case folding done in Python (:func:`~mangostore.kg.names.canonical`).
        """
        rows = conn.execute(
            "SELECT n.entity_id, e.name FROM kg_entity_names n "
            "JOIN kg_entities e ON e.id = n.entity_id "
            "WHERE n.user_id = ? AND n.canonical_name IS NULL",
            (user_id,),
        ).fetchall()
        if rows:
            conn.executemany(
                "UPDATE kg_entity_names SET canonical_name = ?, sound = ? WHERE entity_id = ?",
                [(canonical(name), sound(name), entity_id) for entity_id, name in rows],
            )
        aliases = conn.execute(
            "SELECT id, alias FROM kg_aliases WHERE user_id = ? AND sound IS NULL", (user_id,)
        ).fetchall()
        if aliases:
            conn.executemany(
                "UPDATE kg_aliases SET sound = ? WHERE id = ?",
                [(sound(alias), alias_id) for alias_id, alias in aliases],
            )

    def ensure_canonical_names(self, user_id: str) -> None:
        """Fill in the user's missing canonical names before a lookup by name.

        Checked on a reader first, so the common case (none missing) takes no write lock.
        """
        with self.reading() as conn:
            pending = conn.execute(
                "SELECT 1 FROM kg_entity_names WHERE user_id = ? AND canonical_name IS NULL "
                "UNION ALL SELECT 1 FROM kg_aliases WHERE user_id = ? AND sound IS NULL "
                "LIMIT 1",
                (user_id, user_id),
            ).fetchone()
        if pending is not None:
            with self.transaction() as conn:
                self.fill_canonical_names(conn, user_id)

    def similar_names(
        self,
        conn: Connection,
        user_id: str,
        text: str,
        type: str | None,
        limit: int,
        budget: int = _TRIGRAM_ROW_BUDGET,
    ) -> list[tuple[str, str]]:
        """Return (entity id, name or alias) sharing the most trigrams with ``text``.

        Only the rarest few trigrams of each word are searched for: a common trigram
        ("ser", "ing") matches a large part of all names and would make the search
        slow without making it better.

        Args:
            type: only entities of this type (``None``: any).
            limit: most pairs returned, best first.
            budget: most trigram-index rows the chosen trigrams may match together.
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

    def entities_named(
        self, conn: Connection, user_id: str, keys: Iterable[str]
    ) -> list[tuple[str, str]]:
        """Return (entity id, key) for each canonical name or alias among ``keys``."""
        packed = json.dumps(sorted(set(keys)))
        rows = conn.execute(
            "SELECT entity_id, canonical_name FROM kg_entity_names WHERE user_id = ? "
            "AND canonical_name IN (SELECT value FROM json_each(?)) "
            "UNION SELECT entity_id, canonical_alias FROM kg_aliases WHERE user_id = ? "
            "AND canonical_alias IN (SELECT value FROM json_each(?))",
            (user_id, packed, user_id, packed),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def entities_sounding(
        self, conn: Connection, user_id: str, codes: Iterable[str]
    ) -> list[tuple[str, str, str]]:
        """Return (entity id, name or alias, code) for each name or alias whose Metaphone
        code is in ``codes``."""
        packed = json.dumps(sorted(set(codes)))
        rows = conn.execute(
            "SELECT n.entity_id, e.name, n.sound FROM kg_entity_names n "
            "JOIN kg_entities e ON e.id = n.entity_id WHERE n.user_id = ? "
            "AND n.sound IN (SELECT value FROM json_each(?)) "
            "UNION SELECT entity_id, alias, sound FROM kg_aliases WHERE user_id = ? "
            "AND sound IN (SELECT value FROM json_each(?))",
            (user_id, packed, user_id, packed),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def name_frequencies(
        self, conn: Connection, words: Iterable[str]
    ) -> tuple[int, dict[str, int]]:
        """Return how many names and aliases there are, and in how many each word occurs.

        Counted over every user's names (the index does not separate them): a word's
        share of all names is what says how specific it is. The rows of the full-text
        index stand in for the count of names (counting them would read them all).
        """
        return _frequencies(conn, "kg_name_vocab", words)

    def text_frequencies(
        self, conn: Connection, stems: Iterable[str]
    ) -> tuple[int, dict[str, int]]:
        """Return how many rows the full-text index has, and in how many each stem occurs."""
        return _frequencies(conn, "kg_search_vocab", stems)

    def names_starting(
        self, conn: Connection, user_id: str, prefix: str, limit: int
    ) -> list[tuple[str, str]]:
        """Return (entity id, name or alias) with a word starting with ``prefix``.

        ``prefix`` is one word of letters and digits; it is quoted for FTS5.
        """
        rows = conn.execute(
            "SELECT n.entity_id, n.name FROM kg_name_index n "
            "JOIN kg_entities e ON e.id = n.entity_id "
            "WHERE kg_name_index MATCH ? AND e.user_id = ? LIMIT ?",
            ('name : "' + prefix.replace('"', '""') + '" *', user_id, limit),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]


#: The fts5vocab tables whose counts :func:`_frequencies` reads (an allow-list: the
#: name goes into the SQL text).
_VOCABULARIES = frozenset({"kg_name_vocab", "kg_search_vocab"})


def _frequencies(
    conn: Connection, vocabulary: str, terms: Iterable[str]
) -> tuple[int, dict[str, int]]:
    """Return the rows of the full-text indexes, and the documents of each term."""
    if vocabulary not in _VOCABULARIES:
        raise ValueError(f"not a vocabulary of the knowledge graph: {vocabulary!r}")
    total = int(conn.execute("SELECT max(id) FROM kg_search_rows").fetchone()[0] or 0)
    counts = dict(
        conn.execute(
            f"SELECT term, doc FROM {vocabulary} WHERE term IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(set(terms))),),
        ).fetchall()
    )
    return total, counts
