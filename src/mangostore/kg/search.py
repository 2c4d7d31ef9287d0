"""Search over the knowledge graph for spoken questions: retrievers, facts as answers,
a calibrated confidence.

Retrievers, each finding entities in its own way:

``fts``
    BM25 over ``kg_search_index`` (names with descriptions, aliases, observations;
    porter stemming). Each word is quoted, so no FTS5 syntax in user input (quotes,
    ``*``, ``NEAR(``, ``AND``/``OR``/``NOT``, ``^``, ``-``, ``:``, column filters,
    parentheses, NUL) can change the query.
``trigram``
    Names and aliases sharing character trigrams with the question's words.
``vector``
    Cosine similarity of the question's embedding to those of entities and
    observations (only with an embedder).
``graph``
    The entities the question names (:mod:`~mangostore.kg.linking`: by name, alias,
    sound, spoken form or part of a name, weighted by how specific the words are; "I"
    and "my" name the speaker) and the facts one or two hops from them whose
    predicates the question names (:mod:`~mangostore.kg.answers`).

An entity's score is its best graph evidence (the path that fits the question best, or
being named) plus :data:`TEXT_WEIGHT` times its text evidence (BM25 and vectors,
each scaled to the best hit). The question's time (:mod:`~mangostore.kg.time_cues`)
decides which facts count: now by default, ended ones for "before"/"previously"/"used
to", a stretch for "last week"/"in march"; ``as_of`` overrides it with a fixed time.

**Confidence.** Each hit's confidence says how much of the question it explains: the
share of the question's specific words (weighted by their inverse document frequency
in the graph's text; a word the graph has never seen weighs most) that its evidence
accounts for (the names linked, the predicates followed, the words of the entities on
the path and of the matching observation), or its vector similarity when that is
higher. When the best hit's confidence is below ``min_confidence``
(:data:`MIN_CONFIDENCE` by default) search returns nothing: "what is my cat's name"
has no answer in a graph that knows no cat, and saying so is better than noise.

Search reads only: it neither counts reads of the entities it returns nor changes what
later searches rank first, unless it is called with ``record_access=True``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mangostore.clock import Instant, epoch_ms
from mangostore.errors import InvalidValueError
from mangostore.kg.answers import SURE_LINK, Answer, fact_answers
from mangostore.kg.evidence import (
    EntityWords,
    Question,
    Ranked,
    asks_how,
    best_path,
    explained_words,
    explanation_of,
    factors_of,
    idf,
    observation_in_scope,
    text_scores,
    vector_strength,
)
from mangostore.kg.linking import PRONOUNS, Link, Linker, speaker_words
from mangostore.kg.model import ENTITY_TYPES, Evidence, Hit
from mangostore.kg.names import trigrams
from mangostore.kg.predicate_cues import cue_stems
from mangostore.kg.query_text import (
    FILLERS,
    MAX_QUERY_CHARS,
    STOPWORDS,
    fts_query,
    porter_stem,
    query_words,
)
from mangostore.kg.semantic import Semantic
from mangostore.kg.speakers import Speakers
from mangostore.kg.store import GraphStore
from mangostore.kg.time_cues import TimeScope, time_scope

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection

__all__ = ["MIN_CONFIDENCE", "RETRIEVERS", "TEXT_WEIGHT", "HybridSearch"]

RETRIEVERS = ("fts", "trigram", "vector", "graph")
#: Most candidates ranked from the facts found, and from text.
POOL = 60
TEXT_POOL = 40
#: Below this confidence of the best hit, search returns nothing.
MIN_CONFIDENCE = 0.3
#: Multiplies the confidence of a hit that leaves unexplained a word the graph's text
#: has never held.
UNKNOWN_WORD_FACTOR = 0.5
#: The same for its vector similarity, which a paraphrase may well need.
UNKNOWN_WORD_VECTOR_FACTOR = 0.7
#: What text evidence (BM25, vectors) adds to graph evidence.
TEXT_WEIGHT = 0.5
#: How much being named in the question is worth against a fact that answers it.
NAMED = 0.9
#: Multiplies the speaker's own entity as an answer: "my editor" is not about me.
SPEAKER_AS_ANSWER = 0.3
#: Multiplies an entity the question names together with a predicate of one of its
#: facts: "which shell does Ann prefer" asks for the shell, not for Ann.
ANCHOR_FACTOR = 0.5
#: Most rows of the trigram index the trigram retriever's chosen trigrams may match.
TRIGRAM_ROW_BUDGET = 1_000
#: Least trigram similarity for the trigram retriever to report a name.
TRIGRAM_FLOOR = 0.35
#: A query word in more than this share of the full-text rows (and more than
#: COMMON_MIN_ROWS rows) is left out of the full-text search, if other words remain.
COMMON_SHARE = 0.02
COMMON_MIN_ROWS = 500


class HybridSearch:
    """Searches over one knowledge graph; see the module docstring.

    Args:
        store: the shared row access.
        semantic: the embedder and vector index of the ``vector`` retriever.
        speakers: who "I" is for each user.
    """

    def __init__(self, store: GraphStore, semantic: Semantic, speakers: Speakers) -> None:
        self._store = store
        self._semantic = semantic
        self._speakers = speakers
        self._linker = Linker(store)

    def search(
        self,
        user_id: str,
        query: str,
        *,
        k: int = 10,
        types: Sequence[str] | None = None,
        as_of: Instant | None = None,
        explain: bool = False,
        retrievers: Sequence[str] | None = None,
        speaker: str | None = None,
        min_confidence: float = MIN_CONFIDENCE,
        record_access: bool = False,
    ) -> list[Hit]:
        """Return the user's entities that answer ``query``, best first.

        See :meth:`mangostore.kg.graph.KnowledgeGraph.search` for the arguments.

        Raises:
            InvalidValueError: k below 1, an unknown type or retriever, a query that is
                not a string, min_confidence outside 0..1, a speaker that is not a
                person of this user.
        """
        chosen = _checked(k, types, retrievers, query, min_confidence)
        text = query[:MAX_QUERY_CHARS].replace("\x00", " ")
        words = query_words(text)
        now = self._store.now()
        t = now if as_of is None else epoch_ms(as_of, "as_of")
        scope = TimeScope() if as_of is not None else time_scope(words, now)
        depth = max(50, 5 * k)
        self._store.ensure_canonical_names(user_id)
        if "vector" in chosen and self._semantic.embedder is not None:
            self._semantic.embed_pending(user_id)
        lists: dict[str, Ranked] = {}
        with self._store.reading() as conn:
            if speaker is not None:
                self._speakers.check_speaker(conn, user_id, speaker)
            who = speaker
            if who is None and speaker_words(words):  # found only when the question says "I"
                who = self._speakers.speaker_in(conn, user_id)
            cue_words = [
                w for w in words if w not in scope.words and w not in PRONOUNS and w not in FILLERS
            ]
            rows, known = self._store.text_frequencies(conn, {porter_stem(w) for w in words})
            q = Question(
                text, words, scope, cue_stems(cue_words), who, t, as_of is not None, rows, known
            )
            if "fts" in chosen:
                lists["fts"] = self._fts(conn, user_id, q, depth)
            similar = (
                self._trigram(conn, user_id, words, depth)
                if "trigram" in chosen or "graph" in chosen
                else Ranked()
            )
            if "trigram" in chosen:
                lists["trigram"] = similar
            links: list[Link] = []
            answers: dict[str, list[Answer]] = {}
            if "graph" in chosen:
                pairs = [(e, ev.text, sc) for e, (sc, ev) in similar.found.items()]
                links = self._linker.link(conn, user_id, words, pairs, who, q.known)
                answers = fact_answers(conn, links, q.cues, scope, t)
        if "vector" in chosen:
            lists["vector"] = self._vector(user_id, q, depth)
        hits = self._rank(q, lists, links, answers, user_id, k, types, explain, min_confidence)
        if record_access:
            self._store.access.record(h.entity.id for h in hits)
        return hits

    # -- retrievers ----------------------------------------------------------------------

    def _fts(self, conn: Connection, user_id: str, q: Question, depth: int) -> Ranked:
        ranked = Ranked()
        match = fts_query(q.text, _common_words(q))
        if match is None:
            return ranked
        rows = conn.execute(
            "SELECT s.entity_id, r.kind, r.source_id, s.content, bm25(kg_search_index) AS score, "
            "v.valid_from, v.valid_to "
            "FROM kg_search_index s "
            "JOIN kg_search_rows r ON r.id = s.rowid "
            "JOIN kg_entities e ON e.id = s.entity_id "
            "LEFT JOIN kg_observation_validity v "
            "ON r.kind = 'observation' AND v.observation_id = r.source_id "
            "WHERE kg_search_index MATCH ? AND e.user_id = ? "
            "ORDER BY score LIMIT ?",
            (match, user_id, depth * 3),
        ).fetchall()
        for entity_id, kind, source_id, content, score, start, end in rows:
            if kind == "observation" and not observation_in_scope(start, end, q):
                continue
            ranked.add(entity_id, -float(score), Evidence("fts", kind, source_id, content, -score))
        return ranked

    def _trigram(self, conn: Connection, user_id: str, words: list[str], depth: int) -> Ranked:
        ranked = Ranked()
        content = [w for w in words if w not in STOPWORDS]
        if not content:
            return ranked
        candidates = self._store.similar_names(
            conn, user_id, " ".join(content), None, depth * 2, TRIGRAM_ROW_BUDGET
        )
        windows = [
            trigrams(" ".join(content[i : i + n]))
            for n in range(1, min(4, len(content)) + 1)
            for i in range(len(content) - n + 1)
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

    def _vector(self, user_id: str, q: Question, depth: int) -> Ranked:
        ranked = Ranked()
        embedder = self._semantic.embedder
        if embedder is None or not q.text.strip():
            return ranked
        vector = embedder.embed([q.text])[0]
        hits = self._semantic.vector_index.search(
            user_id, embedder.model_version, vector, depth * 2
        )
        observations = [h.source_id for h in hits if h.source_id != h.entity_id]
        facts: dict[str, tuple[str, int, int | None]] = {}
        if observations:
            with self._store.reading() as conn:  # not through the query cache: never asked twice
                rows = conn.execute(
                    "SELECT o.id, o.content, v.valid_from, v.valid_to FROM kg_observations o "
                    "JOIN kg_observation_validity v ON v.observation_id = o.id "
                    "WHERE o.id IN (SELECT value FROM json_each(?))",
                    (json.dumps(observations),),
                ).fetchall()
            facts = {r[0]: (r[1], r[2], r[3]) for r in rows}
        for hit in hits:
            kind, text = "entity", ""
            if hit.source_id != hit.entity_id:
                fact = facts.get(hit.source_id)
                if fact is None or not observation_in_scope(fact[1], fact[2], q):
                    continue
                kind, text = "observation", fact[0]
            ranked.add(
                hit.entity_id,
                hit.similarity,
                Evidence("vector", kind, hit.source_id, text, hit.similarity),
            )
        return ranked

    # -- ranking ---------------------------------------------------------------------------

    def _rank(
        self,
        q: Question,
        lists: dict[str, Ranked],
        links: list[Link],
        answers: dict[str, list[Answer]],
        user_id: str,
        k: int,
        types: Sequence[str] | None,
        explain: bool,
        min_confidence: float,
    ) -> list[Hit]:
        named = {
            link.entity_id: link.weight * (SPEAKER_AS_ANSWER if link.how == "speaker" else NAMED)
            for link in links
        }
        # The best text matches by each text retriever's own order: their scores are
        # weighed against the question once its content words are known, below.
        matched = [
            e for name in ("fts", "vector") for e in lists.get(name, Ranked()).order[:TEXT_POOL]
        ]
        sure_words = {link.entity_id: set(link.words) for link in links if link.weight >= SURE_LINK}
        # The answers worth ranking: those whose paths could fit best once their hops
        # are read, then the best text matches.
        likely = sorted(answers, key=lambda e: -max(a.promise for a in answers[e]))[:POOL]
        pool = list(dict.fromkeys([*likely, *named, *matched]))
        if not pool:
            return []
        # The words that say what is asked: the question's content words, and the
        # everyday words that named a predicate of a fact found ("use", "work").
        cues = {w for paths in answers.values() for a in paths for w in a.words}
        content = [
            w
            for w in dict.fromkeys(q.words)
            if (w not in STOPWORDS or w in cues)
            and w not in PRONOUNS
            and w not in FILLERS
            and w not in q.scope.words
        ]
        on_paths = {end for paths in answers.values() for a in paths for end in a.ends}
        on_paths |= {a.path[0].subject_id for paths in answers.values() for a in paths}
        on_paths |= {a.path[0].object_id for paths in answers.values() for a in paths}
        with self._store.reading() as conn:
            entities = self._store.entities_in(conn, [*pool, *on_paths])
            stale: set[str] = set()
            successors: dict[str, set[str]] = {}
            if q.scope.mode == "now":
                stale = _superseded_values(conn, pool, q.t)
                successors = _successors(conn, sorted(stale), q.t)
        weight = {w: idf(q.frequency(w), q.rows) for w in content}
        mass = sum(weight.values())
        text = text_scores(lists, weight)
        unknown = {w for w in content if len(w) >= 3 and not q.frequency(w)}
        words_of = EntityWords(q.words, entities)
        best = {e: best_path(answers[e], words_of, set(content), q) for e in pool if e in answers}
        anchors = {a.anchor for a, _ in best.values() if a.anchor is not None}
        if asks_how(q.words):
            anchors = set()  # "how do I use curl" is about curl, whoever uses it
        scored: list[tuple[float, float, str, dict[str, float]]] = []
        for entity_id in pool:
            entity = entities.get(entity_id)
            if entity is None or entity.user_id != user_id:
                continue
            if types is not None and entity.entity_type not in types:
                continue
            if q.fixed_time and entity.created_at > q.t:
                continue
            answer, fitted = best.get(entity_id, (None, 0.0))
            graph = max(fitted, named.get(entity_id, 0.0))
            factors = factors_of(entity, q, entity_id in stale and entity_id not in named)
            if entity_id in anchors:
                factors["anchor"] = ANCHOR_FACTOR
            explained = explained_words(q, entity_id, entities, answer, links, lists)
            coverage = sum(weight[w] for w in content if w in explained) / mass if mass else 1.0
            factors["coverage"] = 0.25 + 0.75 * coverage
            # The text that matched a named entity's name is the link again: only what
            # its text explains beyond the words that named it counts twice.
            own_text = text.get(entity_id, 0.0)
            if entity_id in sure_words and not (explained & set(content)) - sure_words[entity_id]:
                own_text = 0.0
            score = (graph + TEXT_WEIGHT * own_text) * math.prod(factors.values())
            vector = vector_strength(lists, entity_id)
            lexical = coverage * (0.7 + 0.3 * min(1.0, score))
            if unknown - explained:
                # The question names something the graph has never heard of ("my
                # cat", "the unicorn job"): what its other words match is not the
                # answer, unless the whole question means the same as a text.
                lexical *= UNKNOWN_WORD_FACTOR
                vector *= UNKNOWN_WORD_VECTOR_FACTOR
            confidence = max(lexical, vector)
            scored.append((score, confidence, entity_id, factors))
        # A superseded value whose current value is also found is left out: the
        # question is about now, and "bash" next to "zsh" would contradict it. One the
        # question names is what it is about, and stays.
        found = {entity_id for _, _, entity_id, _ in scored}
        scored = [s for s in scored if s[2] in named or not successors.get(s[2], set()) & found]
        scored.sort(key=lambda item: (-item[0], item[2]))
        if not scored or scored[0][1] < min_confidence:
            return []
        hits: list[Hit] = []
        for score, confidence, entity_id, factors in scored[:k]:
            answer, fitted = best.get(entity_id, (None, 0.0))
            fact = (
                answer.path[-1]
                if answer is not None and fitted >= named.get(entity_id, 0.0)
                else None
            )
            explanation = explanation_of(lists, entity_id, answer, factors) if explain else None
            hits.append(Hit(entities[entity_id], score, explanation, confidence, fact))
        self._attach_observations(hits, lists)
        return hits

    def _attach_observations(self, hits: list[Hit], lists: dict[str, Ranked]) -> None:
        """Give a hit found by an observation (and by no fact) that observation as its fact."""
        wanted: dict[int, str] = {}
        for i, hit in enumerate(hits):
            if hit.fact is not None:
                continue
            for name in ("fts", "vector"):
                found = lists.get(name, Ranked()).observations.get(hit.entity.id)
                if found is not None:
                    wanted[i] = found.source_id
                    break
        if not wanted:
            return
        with self._store.reading() as conn:
            for i, observation_id in wanted.items():
                hit = hits[i]
                fact = self._store.observation_in(conn, observation_id)
                hits[i] = Hit(hit.entity, hit.score, hit.explanation, hit.confidence, fact)


def _checked(
    k: int,
    types: Sequence[str] | None,
    retrievers: Sequence[str] | None,
    query: Any,
    min_confidence: float,
) -> tuple[str, ...]:
    """Check search's arguments; return the retrievers to run."""
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
    if (
        isinstance(min_confidence, bool)
        or not isinstance(min_confidence, int | float)
        or not 0 <= min_confidence <= 1
    ):
        raise InvalidValueError(
            "min_confidence must be a number from 0 to 1", field="min_confidence"
        )
    return chosen


def _common_words(q: Question) -> frozenset[str]:
    """The question's words found in more than :data:`COMMON_SHARE` of the index rows.

    Searching for them costs time in proportion to their rows and adds almost nothing
    to BM25, which weighs them close to zero.
    """
    content = {w for w in q.words if w not in STOPWORDS}
    if len(content) < 2:
        return frozenset()
    limit = max(COMMON_MIN_ROWS, COMMON_SHARE * q.rows)
    common = {w for w in content if q.frequency(w) > limit}
    return frozenset(common) if common != content else frozenset()


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
        (t, t, json.dumps(list(pool)), t),
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
        (json.dumps(list(stale)), t, t, t),
    ).fetchall()
    found: dict[str, set[str]] = {}
    for old, current in rows:
        found.setdefault(old, set()).add(current)
    return found
