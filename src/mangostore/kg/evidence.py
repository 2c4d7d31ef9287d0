"""What the evidence for each candidate answer says: its text scores, the question's
words it explains, the path that fits best, and the factors of its score.

:mod:`mangostore.kg.search` gathers the evidence and ranks with these.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from mangostore.kg.answers import Answer
from mangostore.kg.linking import Link
from mangostore.kg.model import Component, Evidence, Explanation
from mangostore.kg.predicate_cues import word_stems
from mangostore.kg.query_text import porter_stem, query_words
from mangostore.kg.time_cues import TimeScope
from mangostore.records import KGEntity

__all__ = [
    "MORE_NAMED_HOPS",
    "SUPERSEDED_FACTOR",
    "TYPED_HOP",
    "TYPE_WORDS",
    "VECTOR_FLOOR",
    "VECTOR_FULL",
    "EntityWords",
    "Question",
    "Ranked",
    "asks_how",
    "best_path",
    "entity_text",
    "explained_words",
    "explanation_of",
    "factors_of",
    "idf",
    "observation_in_scope",
    "stems_of",
    "text_scores",
    "vector_strength",
]

#: How well a hop fits whose predicate the question does not name but whose end holds
#: a word of the question that nothing else explains (see :func:`best_path`).
TYPED_HOP = 0.9
#: Raises a path for each predicate it follows that the question names, past the first.
MORE_NAMED_HOPS = 0.2

#: Multiplies a value that no longer holds (a superseded value) when asking about now.
SUPERSEDED_FACTOR = 0.4

#: Vector similarity at which text evidence starts to count, and at which it is full.
VECTOR_FLOOR = 0.15
VECTOR_FULL = 0.5


@dataclass
class Ranked:
    """One retriever's ordered results: entity id -> (raw score, evidence)."""

    order: list[str] = field(default_factory=list)
    found: dict[str, tuple[float, Evidence]] = field(default_factory=dict)
    #: The best matching observation of each entity, when one matched at all.
    observations: dict[str, Evidence] = field(default_factory=dict)

    def add(self, entity_id: str, score: float, evidence: Evidence) -> None:
        if entity_id not in self.found:
            self.order.append(entity_id)
            self.found[entity_id] = (score, evidence)
        if evidence.kind == "observation":
            self.observations.setdefault(entity_id, evidence)


@dataclass
class Question:
    """A question taken apart: its words, time, predicate cues and speaker."""

    text: str
    words: list[str]
    scope: TimeScope
    cues: dict[str, frozenset[str]]
    speaker: str | None
    t: int
    fixed_time: bool
    #: Rows of the full-text index, and in how many of them each word's stem occurs.
    rows: int = 0
    known: dict[str, int] = field(default_factory=dict)

    def frequency(self, word: str) -> int:
        """Return in how many rows of the full-text index ``word`` (its stem) occurs."""
        return self.known.get(porter_stem(word), 0)


class EntityWords:
    """The question's words that each entity's name, description and type hold."""

    def __init__(self, words: list[str], entities: dict[str, KGEntity]) -> None:
        self._forms = {w: word_stems(w) for w in words}
        self._entities = entities
        self._known: dict[str, set[str]] = {}

    def __call__(self, entity_id: str) -> set[str]:
        found = self._known.get(entity_id)
        if found is None:
            entity = self._entities.get(entity_id)
            text = "" if entity is None else entity_text(entity)
            stems = stems_of(text)
            found = {w for w, forms in self._forms.items() if forms & stems}
            self._known[entity_id] = found
        return found

    def is_person(self, entity_id: str) -> bool:
        entity = self._entities.get(entity_id)
        return entity is not None and entity.entity_type == "person"


#: Words by which people ask for each type of entity ("which *tools* do I use").
TYPE_WORDS = {
    "person": "person people colleague engineer teammate someone",
    "project": "project service app application repo repository library job system",
    "command": "command tool program app cli utility",
    "file": "file config script notes document doc path",
    "concept": "concept idea practice thing topic",
}


def entity_text(entity: KGEntity) -> str:
    kind = TYPE_WORDS.get(entity.entity_type, entity.entity_type)
    return f"{entity.name} {entity.description or ''} {kind}"


def best_path(
    paths: list[Answer], words_of: EntityWords, content: set[str], q: Question
) -> tuple[Answer, float]:
    """Return the path that fits the question best, with its score.

    A hop whose predicate the question does not name still fits when the entity it
    reaches holds a word of the question that nothing before it explained ("which
    *team* is the maintainer of X on": the maintainer's team), or when a "who"
    question reaches a person.
    """
    asks_who = not {"who", "whom", "whose"}.isdisjoint(q.words)
    scored: list[tuple[float, Answer]] = []
    for answer in paths:
        taken = set(answer.words)
        first = answer.path[0]
        start = first.subject_id if first.object_id == answer.ends[0] else first.object_id
        fits = []
        for i, (fit, end) in enumerate(zip(answer.fits, answer.ends, strict=True)):
            own = (words_of(end) & content) - taken
            last = i == len(answer.ends) - 1
            who = asks_who and last and words_of.is_person(end) and not words_of.is_person(start)
            if fit < 1.0 and (own or who):
                fit = TYPED_HOP
            taken |= own
            fits.append(fit)
        # A path that follows more of the predicates the question names fits it better.
        named_hops = sum(1 for fit in answer.fits if fit == 1.0)
        bonus = 1.0 + MORE_NAMED_HOPS * max(0, named_hops - 1)
        scored.append((answer.base * math.prod(fits) * bonus, answer))
    score, answer = max(scored, key=lambda item: item[0])
    return answer, score


def asks_how(words: list[str]) -> bool:
    """Tell whether the question asks how to do something with what it names."""
    return any(
        w == "how"
        and (i + 1 == len(words) or words[i + 1] not in ("many", "much", "long", "often"))
        for i, w in enumerate(words)
    )


def observation_in_scope(start: int | None, end: int | None, q: Question) -> bool:
    if start is None:
        return True
    if q.scope.mode == "before":
        return end is not None and end <= q.t
    if q.scope.mode == "during":
        lo = q.scope.start or 0
        hi = q.scope.end or q.t
        return start <= hi and (end is None or end > lo)
    return start <= q.t and (end is None or end > q.t)


def text_scores(
    lists: dict[str, Ranked], weight: dict[str, float] | None = None
) -> dict[str, float]:
    """Each entity's text evidence, 0 to 1, from BM25 and vectors.

    BM25 is scaled to the best hit; with the question's word ``weight`` s it is also
    scaled by the share of the question the matched text holds, so that a text that
    matches one common word of a long question does not count as a full match.
    """
    fts = lists.get("fts", Ranked())
    top = max((score for score, _ in fts.found.values()), default=0.0)
    mass = sum(weight.values()) if weight else 0.0
    lexical: dict[str, float] = {}
    for entity_id, (score, evidence) in fts.found.items():
        strength = score / top if top > 0 else 0.0
        if weight and mass:
            stems = stems_of(evidence.text)
            held = sum(v for w, v in weight.items() if word_stems(w) & stems)
            strength = math.sqrt(strength) * held / mass
        lexical[entity_id] = strength
    vector = {e: vector_strength(lists, e) for e in lists.get("vector", Ranked()).found}
    scores: dict[str, float] = {}
    for entity_id in lexical.keys() | vector.keys():
        a, b = lexical.get(entity_id, 0.0), vector.get(entity_id, 0.0)
        scores[entity_id] = min(1.0, max(a, b) + 0.5 * min(a, b))
    return scores


def vector_strength(lists: dict[str, Ranked], entity_id: str) -> float:
    found = lists.get("vector", Ranked()).found.get(entity_id)
    if found is None:
        return 0.0
    return max(0.0, min(1.0, (found[0] - VECTOR_FLOOR) / (VECTOR_FULL - VECTOR_FLOOR)))


def idf(df: int, total: int) -> float:
    """How much a word says, from how many of the graph's texts hold it (unknown: most)."""
    if total <= 1:
        return 1.0
    return max(0.05, min(1.0, math.log((total + 1) / (df + 0.5)) / math.log(total + 1)))


@functools.lru_cache(maxsize=16_384)
def stems_of(text: str) -> frozenset[str]:
    """Return the Porter stems of the words of ``text`` (the same texts recur: cached)."""
    return frozenset(porter_stem(w) for w in query_words(text))


def explained_words(
    q: Question,
    entity_id: str,
    entities: dict[str, KGEntity],
    answer: Answer | None,
    links: list[Link],
    lists: dict[str, Ranked],
) -> set[str]:
    """The question's words that the evidence for ``entity_id`` accounts for."""
    words: set[str] = set()
    texts: list[str] = []
    ends = {entity_id}
    if answer is not None:
        words |= answer.words
        for relation in answer.path:
            ends |= {relation.subject_id, relation.object_id}
            texts.append(relation.predicate.replace("_", " "))
    for link in links:
        if link.entity_id in ends:
            words |= link.words
    for end in ends:
        entity = entities.get(end)
        if entity is not None:
            texts.append(entity_text(entity))
    for name in ("fts", "vector"):
        ranked = lists.get(name, Ranked())
        found = ranked.found.get(entity_id)
        if found is not None:
            texts.append(found[1].text)
        if entity_id in ranked.observations:
            texts.append(ranked.observations[entity_id].text)
    stems = set().union(*(stems_of(t) for t in texts)) if texts else set()
    words |= {w for w in q.words if word_stems(w) & stems}
    return words


def factors_of(entity: KGEntity, q: Question, superseded: bool) -> dict[str, float]:
    confidence = 1.0 if entity.confidence_score is None else entity.confidence_score
    factors = {"confidence": 0.75 + 0.25 * confidence}
    if superseded:
        factors["superseded"] = SUPERSEDED_FACTOR
    if "who" in q.words or "whom" in q.words or "whose" in q.words:
        factors["type"] = 1.0 if entity.entity_type == "person" else 0.7
    return factors


def explanation_of(
    lists: dict[str, Ranked], entity_id: str, answer: Answer | None, factors: dict[str, float]
) -> Explanation:
    components: dict[str, Component] = {}
    evidence: list[Evidence] = []
    for name, ranked in lists.items():
        if entity_id in ranked.found:
            rank = ranked.order.index(entity_id) + 1
            raw, why = ranked.found[entity_id]
            components[name] = Component(rank, 1.0 / rank, raw)
            evidence.append(why)
    if answer is not None:
        path = " ; ".join(f"{r.subject_id} -{r.predicate}-> {r.object_id}" for r in answer.path)
        components["graph"] = Component(1, answer.score, answer.score)
        evidence.append(Evidence("graph", "relation", answer.path[-1].id, path, answer.score))
    return Explanation(
        sum(c.contribution for c in components.values()), components, factors, evidence
    )
