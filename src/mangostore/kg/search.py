"""Hybrid search over the knowledge graph: four retrievers, rank fusion, reranking.

Retrievers, each returning entities in its own order:

``fts``
    BM25 over ``kg_search_index`` (names with descriptions, aliases, observations;
    porter stemming). The query is cut into words and each word is quoted, so no
    FTS5 syntax in user input (quotes, ``*``, ``NEAR(``, ``AND``/``OR``/``NOT``, ``^``,
    ``-``, ``:``, column filters, parentheses, NUL) can change the query.
``trigram``
    Names and aliases sharing character trigrams with the query's words, scored by
    trigram similarity: finds misspelt and misheard names.
``vector``
    Cosine similarity of the query's embedding to those of entities and observations
    (only with an embedder).
``graph``
    Entities the query names (by canonical name, alias, or a trigram similarity of at
    least :data:`LINK_SIMILARITY`) are linked; their neighbours within two hops are
    ranked by distance, with relations whose predicate shares a word with the query
    first (``preferred_shell`` for "which shell").

The lists are fused with reciprocal rank fusion (:data:`RRF_K`, weights in
:data:`WEIGHTS`), and the fused score multiplied by reranking factors: confidence,
recency of the entity's last update or read (half-life :data:`HALF_LIFE_DAYS`), how
often it was read, and a penalty for an entity that the query's linked entity was
related to only by a relation that no longer holds (a superseded value).

Only facts that hold at ``as_of`` (default now) are evidence: an invalidated
observation is not matched, a closed relation is not followed.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mangostore.errors import InvalidValueError
from mangostore.kg.model import ENTITY_TYPES, Component, Evidence, Explanation, Hit
from mangostore.kg.names import canonical, trigrams
from mangostore.kg.names import words as name_words
from mangostore.kg.query_text import (
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    STOPWORDS,
    fts_query,
    porter_stem,
    query_words,
)
from mangostore.kg.semantic import Semantic
from mangostore.kg.store import GraphStore
from mangostore.kg.traversal import walk_query
from mangostore.records import KGEntity

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection

# The query-text helpers (query_text.py) and the result values (model.py) stay importable
# from here, where memory's recall, the benchmarks and older callers look for them.
__all__ = [
    "HALF_LIFE_DAYS",
    "LINK_SIMILARITY",
    "MAX_QUERY_TERMS",
    "RETRIEVERS",
    "RRF_K",
    "WEIGHTS",
    "Component",
    "Evidence",
    "Explanation",
    "Hit",
    "HybridSearch",
    "fts_query",
    "porter_stem",
]

RETRIEVERS = ("fts", "trigram", "vector", "graph")
#: The constant of reciprocal rank fusion: a hit at rank r adds weight / (RRF_K + r).
RRF_K = 60
#: How much each retriever's ranks count in the fusion.
WEIGHTS = {"fts": 1.0, "trigram": 0.6, "vector": 1.0, "graph": 1.2}
#: Multiplies the graph's contribution for an entity reached from a linked entity by a
#: relation whose predicate the query names ("who works on X": X <-works_on- person):
#: the query states both ends of the fact, the strongest evidence there is.
STRONG_BOOST = 3.0
#: Least trigram similarity for a name in the query to link its entity.
LINK_SIMILARITY = 0.75
#: How sure a link is when the query holds a whole word of a name but not all of it.
PARTIAL_LINK = 0.6
#: Most rows of the trigram index the trigram retriever's chosen trigrams may match
#: (the rarest of each word first): ranking those rows is what it costs.
TRIGRAM_ROW_BUDGET = 1_000
#: Least trigram similarity for the trigram retriever to report a name.
TRIGRAM_FLOOR = 0.35
#: A query word in more than this share of the full-text rows (and more than
#: COMMON_MIN_ROWS rows) is left out of the full-text search, if other words remain.
COMMON_SHARE = 0.02
COMMON_MIN_ROWS = 500
#: Recency half-life of the reranking factor, in days.
HALF_LIFE_DAYS = 30.0
#: Factor applied to a superseded value (see the module docstring).
SUPERSEDED_FACTOR = 0.4
_DAY_MS = 86_400_000
#: Most paths walked from one linked entity (breadth first, so the nearest are kept).
_WALK_ROWS = 500


@dataclass
class _Ranked:
    """One retriever's ordered results: entity id -> (raw score, evidence)."""

    order: list[str] = field(default_factory=list)
    found: dict[str, tuple[float, Evidence]] = field(default_factory=dict)
    #: Entities with the strongest kind of evidence (see STRONG_BOOST).
    strong: set[str] = field(default_factory=set)

    def add(self, entity_id: str, score: float, evidence: Evidence) -> None:
        if entity_id not in self.found:
            self.order.append(entity_id)
            self.found[entity_id] = (score, evidence)


class HybridSearch:
    """Searches over one knowledge graph; see the module docstring.

    Args:
        store: the shared row access; the hits are counted as reads of their entities.
        semantic: the embedder and vector index of the ``vector`` retriever.
    """

    def __init__(self, store: GraphStore, semantic: Semantic) -> None:
        self._store = store
        self._semantic = semantic

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
        """Return the user's entities that answer ``query``, best first.

        See :meth:`mangostore.kg.graph.KnowledgeGraph.search` for the arguments.

        Raises:
            InvalidValueError: k below 1, an unknown type or retriever, a query that is
                not a string.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidValueError("k must be a positive integer", field="k")
        if types is not None:
            unknown = [t for t in types if t not in ENTITY_TYPES]
            if unknown:
                raise InvalidValueError(
                    f"unknown entity type {unknown[0]!r}; types are {', '.join(ENTITY_TYPES)}",
                    field="types",
                )
        chosen = tuple(retrievers) if retrievers is not None else RETRIEVERS
        for name in chosen:
            if name not in RETRIEVERS:
                raise InvalidValueError(
                    f"unknown retriever {name!r}; choose from {', '.join(RETRIEVERS)}",
                    field="retrievers",
                )
        if not isinstance(query, str):
            raise InvalidValueError("the query must be a string", field="query")
        text = query[:MAX_QUERY_CHARS].replace("\x00", " ")
        now = self._store.now()
        t = now if as_of is None else as_of
        depth = max(50, 5 * k)
        if "graph" in chosen:
            self._store.ensure_canonical_names(user_id)
        if "vector" in chosen and self._semantic.embedder is not None:
            self._semantic.embed_pending(user_id)
        lists: dict[str, _Ranked] = {}
        stale: set[str] = set()
        with self._store.reading() as conn:
            if "fts" in chosen:
                lists["fts"] = self._fts(conn, user_id, text, t, depth)
            trigram = (
                self._trigram(conn, user_id, text, depth)
                if ("trigram" in chosen or "graph" in chosen)
                else _Ranked()
            )
            if "trigram" in chosen:
                lists["trigram"] = trigram
            if "graph" in chosen:
                lists["graph"], stale = self._graph(conn, user_id, text, trigram, t, depth)
        if "vector" in chosen:
            lists["vector"] = self._vector(user_id, text, t, depth)
        return self._fuse(lists, stale, user_id, k, types, as_of, t, explain)

    # -- retrievers ----------------------------------------------------------------------

    def _fts(self, conn: Connection, user_id: str, text: str, t: int, depth: int) -> _Ranked:
        ranked = _Ranked()
        match = fts_query(text, _common_words(conn, text))
        if match is None:
            return ranked
        rows = conn.execute(
            "SELECT s.entity_id, r.kind, r.source_id, s.content, bm25(kg_search_index) AS score "
            "FROM kg_search_index s "
            "JOIN kg_search_rows r ON r.id = s.rowid "
            "JOIN kg_entities e ON e.id = s.entity_id "
            "LEFT JOIN kg_observation_validity v "
            "ON r.kind = 'observation' AND v.observation_id = r.source_id "
            "WHERE kg_search_index MATCH ? AND e.user_id = ? "
            "AND (r.kind <> 'observation' OR "
            "(v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?))) "
            "ORDER BY score LIMIT ?",
            (match, user_id, t, t, depth * 3),
        ).fetchall()
        for entity_id, kind, source_id, content, score in rows:
            ranked.add(entity_id, -float(score), Evidence("fts", kind, source_id, content, -score))
        return ranked

    def _trigram(self, conn: Connection, user_id: str, text: str, depth: int) -> _Ranked:
        ranked = _Ranked()
        words = [w for w in query_words(text) if w not in STOPWORDS]
        if not words:
            return ranked
        candidates = self._store.similar_names(
            conn, user_id, " ".join(words), None, depth * 2, TRIGRAM_ROW_BUDGET
        )
        windows = [
            trigrams(" ".join(words[i : i + n]))
            for n in range(1, min(4, len(words)) + 1)
            for i in range(len(words) - n + 1)
        ]
        query_grams = set().union(*windows)
        scored: dict[str, tuple[float, str]] = {}
        for entity_id, name in candidates:
            grams = trigrams(name)
            # Dice against each window, counting only the grams the name shares with
            # the query at all (a much smaller set to intersect).
            shared = grams & query_grams
            size = len(grams)
            similarity = max(2 * len(w & shared) / (len(w) + size) for w in windows)
            if similarity >= TRIGRAM_FLOOR and similarity > scored.get(entity_id, (0.0, ""))[0]:
                scored[entity_id] = (similarity, name)
        for entity_id, (similarity, name) in sorted(scored.items(), key=lambda item: -item[1][0]):
            ranked.add(
                entity_id, similarity, Evidence("trigram", "name", entity_id, name, similarity)
            )
        return ranked

    def _vector(self, user_id: str, text: str, t: int, depth: int) -> _Ranked:
        ranked = _Ranked()
        embedder = self._semantic.embedder
        if embedder is None or not text.strip():
            return ranked
        vector = embedder.embed([text])[0]
        hits = self._semantic.vector_index.search(
            user_id, embedder.model_version, vector, depth * 3
        )
        observations = [h.source_id for h in hits if h.source_id != h.entity_id]
        valid: set[str] = set()
        if observations:
            with self._store.reading() as conn:  # not through the query cache: never asked twice
                rows = conn.execute(
                    "SELECT observation_id FROM kg_observation_validity "
                    "WHERE observation_id IN (SELECT value FROM json_each(?)) "
                    "AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)",
                    (_json_list(observations), t, t),
                ).fetchall()
            valid = {r[0] for r in rows}
        for hit in hits:
            is_observation = hit.source_id != hit.entity_id
            if is_observation and hit.source_id not in valid:
                continue
            kind = "observation" if is_observation else "entity"
            ranked.add(
                hit.entity_id,
                hit.similarity,
                Evidence("vector", kind, hit.source_id, "", hit.similarity),
            )
        return ranked

    def _graph(
        self,
        conn: Connection,
        user_id: str,
        text: str,
        trigram: _Ranked,
        t: int,
        depth: int,
    ) -> tuple[_Ranked, set[str]]:
        ranked = _Ranked()
        linked = self._link(conn, user_id, text, trigram)
        if not linked:
            return ranked, set()
        stems = {porter_stem(w) for w in query_words(text) if w not in STOPWORDS and len(w) >= 3}
        scores: dict[str, float] = {}
        evidence: dict[str, Evidence] = {}
        current_matched: set[str] = set()
        closed_matched: set[str] = set()
        walk = walk_query("both", None)
        relation_ids: set[str] = set()
        walks: list[tuple[str, float, list[tuple[str, int, str]]]] = []
        for entity_id, link_score in linked:
            # A partial link (a first name) walks one hop: two would reach most of a hub.
            hops_allowed = 2 if link_score >= LINK_SIMILARITY else 1
            values = {
                "start": entity_id,
                "depth": hops_allowed,
                "user": user_id,
                "t": t,
                "limit": _WALK_ROWS,
            }
            # One row per node reached: its shortest path's length and first relation
            # (with min(), SQLite takes the other columns from the row holding the min).
            paths = conn.execute(
                walk.sql + "SELECT node, min(depth), substr(rels, 1, instr(rels, ',') - 1) "
                "FROM walk WHERE depth > 0 GROUP BY node ORDER BY 2, 1",
                walk.params(values),
            ).fetchall()
            walks.append((entity_id, link_score, paths))
            relation_ids.update(first for _, _, first in paths)
            for rel_id, subject, obj, predicate in conn.execute(
                "SELECT r.id, r.subject_id, r.object_id, r.predicate FROM kg_relations r "
                "JOIN kg_relation_validity v ON v.relation_id = r.id "
                "WHERE (r.subject_id = ? OR r.object_id = ?) AND v.valid_to IS NOT NULL "
                "AND v.valid_to <= ?",
                (entity_id, entity_id, t),
            ).fetchall():
                if _predicate_matches(predicate, stems):
                    closed_matched.add(obj if subject == entity_id else subject)
                    del rel_id
        relations = self._store.relations_in(conn, relation_ids)
        for entity_id, link_score, paths in walks:
            self_score = link_score
            if self_score > scores.get(entity_id, 0.0):
                scores[entity_id] = self_score
                evidence[entity_id] = Evidence(
                    "graph", "entity", entity_id, "named in the query", self_score
                )
            for node, hops, first_id in paths:
                first = relations.get(first_id)
                if node == entity_id or first is None:
                    continue
                matched = _predicate_matches(first.predicate, stems)
                if matched:
                    current_matched.add(node)
                score = link_score * (3.0 if matched else 1.0) / hops
                score *= 1.0 + 0.1 * math.log1p(first.weight)
                if score > scores.get(node, 0.0):
                    scores[node] = score
                    evidence[node] = Evidence(
                        "graph",
                        "relation",
                        first_id,
                        f"{first.subject_id} -{first.predicate}-> {first.object_id}"
                        + (f" (+{hops - 1} hop)" if hops > 1 else ""),
                        score,
                    )
        for entity_id in sorted(scores, key=lambda e: -scores[e])[: depth * 2]:
            ranked.add(entity_id, scores[entity_id], evidence[entity_id])
        ranked.strong = current_matched & set(ranked.order)
        return ranked, closed_matched - current_matched

    def _link(
        self, conn: Connection, user_id: str, text: str, trigram: _Ranked
    ) -> list[tuple[str, float]]:
        """Return the entities the query names, with how sure the link is, best first."""
        words = query_words(text)
        grams = {
            " ".join(words[i : i + n])
            for n in range(1, min(4, len(words)) + 1)
            for i in range(len(words) - n + 1)
            if not all(w in STOPWORDS for w in words[i : i + n])
        }
        keys = sorted({canonical(g) for g in grams if g})
        links: dict[str, float] = {}
        if keys:
            packed = _json_list(keys)
            for (entity_id,) in conn.execute(
                "SELECT entity_id FROM kg_entity_names WHERE user_id = ? "
                "AND canonical_name IN (SELECT value FROM json_each(?)) "
                "UNION SELECT entity_id FROM kg_aliases WHERE user_id = ? "
                "AND canonical_alias IN (SELECT value FROM json_each(?))",
                (user_id, packed, user_id, packed),
            ).fetchall():
                links[entity_id] = 1.0
        query_set = {w for w in words if w not in STOPWORDS}
        for entity_id in trigram.order:
            similarity, why = trigram.found[entity_id]
            if similarity >= LINK_SIMILARITY:
                links.setdefault(entity_id, similarity)
            elif query_set & set(name_words(why.text)) and len(why.text) >= 3:
                # A part of a name ("Ann" for "Ann Smith") links, less surely.
                links.setdefault(entity_id, PARTIAL_LINK)
        return sorted(links.items(), key=lambda item: -item[1])[:5]

    # -- fusion and reranking -------------------------------------------------------------

    def _fuse(
        self,
        lists: dict[str, _Ranked],
        stale: set[str],
        user_id: str,
        k: int,
        types: Sequence[str] | None,
        as_of: int | None,
        t: int,
        explain: bool,
    ) -> list[Hit]:
        fused: dict[str, float] = {}
        for name, ranked in lists.items():
            weight = WEIGHTS[name]
            for rank, entity_id in enumerate(ranked.order, 1):
                boost = STRONG_BOOST if entity_id in ranked.strong else 1.0
                fused[entity_id] = fused.get(entity_id, 0.0) + boost * weight / (RRF_K + rank)
        if not fused:
            return []
        pool = sorted(fused, key=lambda e: -fused[e])[: max(3 * k, 30)]
        with self._store.reading() as conn:
            entities = self._store.entities_in(conn, pool)
            stale = stale | _superseded_values(conn, pool, t)
            successors = _successors(conn, sorted(stale & set(pool)), t)
        scored: list[tuple[float, str, dict[str, float]]] = []
        for entity_id in pool:
            entity = entities.get(entity_id)
            if entity is None or entity.user_id != user_id:
                continue
            if types is not None and entity.entity_type not in types:
                continue
            if as_of is not None and entity.created_at > t:
                continue
            factors = _factors(entity, t, entity_id in stale)
            score = fused[entity_id] * math.prod(factors.values())
            scored.append((score, entity_id, factors))
        # A superseded value whose current value is also found is left out: the
        # question is about now, and "bash" next to "zsh" would contradict it.
        found = {entity_id for _, entity_id, _ in scored}
        if as_of is None:
            scored = [s for s in scored if not successors.get(s[1], set()) & found]
        scored.sort(key=lambda item: (-item[0], item[1]))
        hits: list[Hit] = []
        for score, entity_id, factors in scored[:k]:
            explanation = None
            if explain:
                components = {}
                evidence = []
                for name, ranked in lists.items():
                    if entity_id in ranked.found:
                        rank = ranked.order.index(entity_id) + 1
                        raw, why = ranked.found[entity_id]
                        boost = STRONG_BOOST if entity_id in ranked.strong else 1.0
                        contribution = boost * WEIGHTS[name] / (RRF_K + rank)
                        components[name] = Component(rank, contribution, raw)
                        evidence.append(why)
                explanation = Explanation(fused[entity_id], components, factors, evidence)
            hits.append(Hit(entities[entity_id], score, explanation))
        self._store.access.record(h.entity.id for h in hits)
        return hits


def _factors(entity: KGEntity, t: int, superseded: bool) -> dict[str, float]:
    confidence = 1.0 if entity.confidence_score is None else entity.confidence_score
    last = max(entity.updated_at, entity.last_accessed or 0)
    age_days = max(0.0, (t - last) / _DAY_MS)
    factors = {
        "confidence": 0.5 + 0.5 * confidence,
        "recency": 0.8 + 0.2 * 0.5 ** (age_days / HALF_LIFE_DAYS),
        "access": 1.0 + 0.1 * min(1.0, math.log1p(entity.access_count or 0) / math.log1p(100)),
    }
    if superseded:
        factors["superseded"] = SUPERSEDED_FACTOR
    return factors


def _common_words(conn: Connection, text: str) -> frozenset[str]:
    """The query's words found in more than :data:`COMMON_SHARE` of the index rows.

    Searching for them costs time in proportion to their rows and adds almost nothing
    to BM25, which weighs them close to zero.
    """
    words = {w for w in query_words(text) if w not in STOPWORDS}
    if len(words) < 2:
        return frozenset()
    terms = {w: porter_stem(w) for w in words}
    total = conn.execute("SELECT max(id) FROM kg_search_rows").fetchone()[0] or 0
    limit = max(COMMON_MIN_ROWS, COMMON_SHARE * total)
    counts = dict(
        conn.execute(
            "SELECT term, doc FROM kg_search_vocab WHERE term IN (SELECT value FROM json_each(?))",
            (_json_list(sorted(set(terms.values()))),),
        ).fetchall()
    )
    common = {w for w, term in terms.items() if counts.get(term, 0) > limit}
    return frozenset(common) if common != words else frozenset()


def _superseded_values(conn: Connection, pool: Sequence[str], t: int) -> set[str]:
    """Entities that were the value of a single-valued predicate and no longer are.

    Such an entity is the object of a closed relation of a predicate declared
    single-valued, and of no relation of that predicate that holds at ``t``.
    """
    rows = conn.execute(
        "SELECT r.object_id, max(v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?)) "
        "FROM kg_relations r JOIN kg_relation_validity v ON v.relation_id = r.id "
        "JOIN kg_predicates p ON p.predicate = r.predicate AND p.single_valued = 1 "
        "WHERE r.object_id IN (SELECT value FROM json_each(?)) AND v.valid_from <= ? "
        "GROUP BY r.object_id",
        (t, t, _json_list(pool), t),
    ).fetchall()
    return {r[0] for r in rows if not r[1]}


def _successors(conn: Connection, stale: Sequence[str], t: int) -> dict[str, set[str]]:
    """Map each superseded value to the values of the same subject and single-valued
    predicate that hold at ``t`` (bash -> {zsh} once the preferred shell is zsh)."""
    if not stale:
        return {}
    rows = conn.execute(
        "SELECT old.object_id, cur.object_id FROM kg_relations old "
        "JOIN kg_relation_validity ov ON ov.relation_id = old.id "
        "JOIN kg_predicates p ON p.predicate = old.predicate AND p.single_valued = 1 "
        "JOIN kg_relations cur ON cur.subject_id = old.subject_id "
        "AND cur.predicate = old.predicate AND cur.object_id <> old.object_id "
        "JOIN kg_relation_validity cv ON cv.relation_id = cur.id "
        "WHERE old.object_id IN (SELECT value FROM json_each(?)) "
        "AND ov.valid_to IS NOT NULL AND ov.valid_to <= ? "
        "AND cv.valid_from <= ? AND (cv.valid_to IS NULL OR cv.valid_to > ?)",
        (_json_list(stale), t, t, t),
    ).fetchall()
    found: dict[str, set[str]] = {}
    for old, current in rows:
        found.setdefault(old, set()).add(current)
    return found


@functools.lru_cache(maxsize=1024)
def _predicate_stems(predicate: str) -> frozenset[str]:
    return frozenset(porter_stem(part) for part in predicate.split("_") if len(part) >= 3)


def _predicate_matches(predicate: str, stems: set[str]) -> bool:
    return not _predicate_stems(predicate).isdisjoint(stems)


def _json_list(values: Sequence[Any]) -> str:
    return json.dumps(list(values))
