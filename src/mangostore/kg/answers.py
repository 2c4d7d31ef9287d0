"""Facts as answers: the relations, one or two hops from the entities a question names,
whose predicates the question names too.

"who maintains the library the billing job depends on" links ``billing job`` and
names two predicates; the path ``billing job -depends_on-> lib <-maintains- ann`` uses
both, one per hop, so its end (``ann``) is the answer, ahead of ``lib`` (one hop, one
predicate) and of the job itself. A hop whose predicate the question does not name
still counts, much less (:data:`UNNAMED_HOP`): "tell me about the billing job" wants
the job and what is next to it.

Only facts of the question's time count (:class:`~mangostore.kg.time_cues.TimeScope`):
those that hold now; for "before" questions those that ended, the latest first and a
fact replaced by one about an entity the question names ahead of all; for a stretch
of time those that held during it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mangostore.kg.linking import Link
from mangostore.kg.model import Relation
from mangostore.kg.predicate_cues import predicate_stems
from mangostore.kg.store import RELATIONS, relation_from_row
from mangostore.kg.time_cues import TimeScope
from mangostore.sql import batches, placeholders

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection

__all__ = ["UNNAMED_HOP", "Answer", "fact_answers"]

#: What a hop whose predicate the question does not name is worth against one it names.
UNNAMED_HOP = 0.3
#: Least link weight of an entity the question surely names.
SURE_LINK = 0.6
#: What an unnamed hop may turn out to be worth, at most, once ranked.
PROMISING_HOP = 0.9
#: What a second hop is worth against a first, all else equal.
SECOND_HOP = 0.95
#: Most paths kept to one answer.
_PATHS_PER_ANSWER = 4
#: Most entities a second hop is taken from.
_MIDDLES = 40
#: Most relations read around one entity (the latest first).
_RELATIONS_PER_ENTITY = 250
_DAY_MS = 86_400_000


@dataclass(slots=True)
class Answer:
    """An entity reached from the question's entities by facts.

    Attributes:
        entity_id: the answer.
        base: the link's weight times the time and hop factors, before the hops' fit.
        fits: how well each hop's predicate is named (1.0, or :data:`UNNAMED_HOP`).
        ends: the entity each hop reaches (the last is the answer).
        path: the relations from a linked entity to the answer.
        words: the question's words the path explains (names and predicates).
        anchor: the linked entity the path starts from, when the question names the
            path's first predicate (the question is then about its fact, not about it).
    """

    entity_id: str
    base: float
    fits: list[float]
    ends: list[str]
    path: list[Relation] = field(default_factory=list)
    words: frozenset[str] = field(default_factory=frozenset)
    anchor: str | None = None

    @property
    def score(self) -> float:
        """How well the path fits the question, 0 to about 1."""
        return self.base * math.prod(self.fits)

    @property
    def promise(self) -> float:
        """The best score the path can reach, should each unnamed hop turn out to lead
        where the question asks (see the ranking)."""
        return self.base * math.prod(max(fit, PROMISING_HOP) for fit in self.fits)


def _in_scope(relation: Relation, scope: TimeScope, now: int) -> bool:
    if scope.mode == "now":
        return relation.holds_at(now)
    if scope.mode == "before":
        return relation.valid_to is not None and relation.valid_to <= now
    start = scope.start if scope.start is not None else 0
    end = scope.end if scope.end is not None else now
    return relation.valid_from <= end and (relation.valid_to is None or relation.valid_to > start)


def _around(conn: Connection, ids: Iterable[str]) -> dict[str, list[Relation]]:
    """Return the latest relations of each entity (either end), whatever their validity.

    A hub (the user's own entity may have thousands of relations) gives its
    :data:`_RELATIONS_PER_ENTITY` latest: SQLite ranks them, so only those are read.
    """
    found: dict[str, list[Relation]] = {}
    for chunk in batches(list(dict.fromkeys(ids))):
        marks = placeholders(len(chunk))
        rows = conn.execute(
            "WITH edges(rid, node) AS ("
            f"SELECT id, subject_id FROM kg_relations WHERE subject_id IN ({marks}) "
            "UNION ALL SELECT id, object_id FROM kg_relations "
            f"WHERE object_id IN ({marks}) AND subject_id <> object_id), "
            "ranked(rid, n) AS (SELECT e.rid, row_number() OVER "
            "(PARTITION BY e.node ORDER BY w.valid_from DESC, e.rid) FROM edges e "
            "JOIN kg_relation_validity w ON w.relation_id = e.rid) "
            f"{RELATIONS} JOIN ranked ON ranked.rid = r.id WHERE ranked.n <= ?",
            [*chunk, *chunk, _RELATIONS_PER_ENTITY],
        ).fetchall()
        members = set(chunk)
        unique = {row[0]: row for row in rows}  # a relation between two of them comes twice
        for relation in map(relation_from_row, unique.values()):
            for end in {relation.subject_id, relation.object_id} & members:
                found.setdefault(end, []).append(relation)
    for relations in found.values():
        relations.sort(key=lambda r: (-r.valid_from, r.id))
    return found


def _named_by(
    relation: Relation, cues: dict[str, frozenset[str]], taken: frozenset[str]
) -> frozenset[str]:
    stems = predicate_stems(relation.predicate)
    return frozenset(w for w, own in cues.items() if own & stems and w not in taken)


def _time_factor(relation: Relation, scope: TimeScope, now: int) -> float:
    """The latest fact first: by when it ended for "before", by when it began otherwise."""
    moment = relation.valid_to if scope.mode == "before" else relation.valid_from
    age_days = max(0.0, (now - (moment or now)) / _DAY_MS)
    return 0.9 + 0.1 * float(0.5 ** (age_days / 90))


def fact_answers(
    conn: Connection,
    links: Sequence[Link],
    cues: dict[str, frozenset[str]],
    scope: TimeScope,
    now: int,
) -> dict[str, list[Answer]]:
    """Return the paths to each entity the question's facts lead to, by entity id.

    Args:
        links: the entities the question names.
        cues: the stem of each question word that may name a predicate.
    """
    first = _around(conn, {link.entity_id for link in links})
    # Only a surely named entity is no answer: a word that names a few entities in part
    # ("team") may well name the answer's kind.
    linked = {link.entity_id for link in links if link.weight >= SURE_LINK}
    answers: dict[str, list[Answer]] = {}

    def offer(answer: Answer) -> None:
        # A few paths to each entity, the best first: which fits best is settled once
        # the words of the entities on each path are known (see the ranking).
        paths = answers.setdefault(answer.entity_id, [])
        paths.append(answer)
        paths.sort(key=lambda a: -a.base)
        del paths[_PATHS_PER_ANSWER:]

    onward: list[tuple[Link, Relation, str, frozenset[str], float]] = []
    for link in links:
        for relation in first.get(link.entity_id, []):
            if not _in_scope(relation, scope, now):
                continue
            other = (
                relation.object_id if relation.subject_id == link.entity_id else relation.subject_id
            )
            if other in linked and other != link.entity_id and link.how != "speaker":
                continue  # both ends named: a fact about them, not an answer
            named = _named_by(relation, cues, link.words)
            fit = 1.0 if named else UNNAMED_HOP
            base = link.weight * _time_factor(relation, scope, now)
            anchor = link.entity_id if named and link.weight >= SURE_LINK else None
            offer(Answer(other, base, [fit], [other], [relation], link.words | named, anchor))
            onward.append((link, relation, other, named, base))
    if scope.mode == "before":
        _prefer_replaced_by_named(conn, answers, links)
    # A second hop from where a first one led, when one of the two hops is named.
    # The middles worth a second hop first: reached by a named predicate, then surest.
    ranked = sorted(onward, key=lambda step: (not step[3], -step[4], step[2]))
    middles = list(dict.fromkeys(o for _, _, o, _, _ in ranked if o not in linked))[:_MIDDLES]
    if not middles or not cues:
        return answers
    second = _around(conn, middles)
    for link, relation, middle, named, base in onward:
        for hop in second.get(middle, []):
            if hop.id == relation.id or not _in_scope(hop, scope, now):
                continue
            end = hop.object_id if hop.subject_id == middle else hop.subject_id
            if end == link.entity_id or end in linked:
                continue
            more = _named_by(hop, cues, link.words | named)
            if not named and not more:
                continue
            fits = [1.0 if named else UNNAMED_HOP, 1.0 if more else UNNAMED_HOP]
            offer(
                Answer(
                    end,
                    base * SECOND_HOP * _time_factor(hop, scope, now),
                    fits,
                    [middle, end],
                    [relation, hop],
                    link.words | named | more,
                    link.entity_id if named and link.weight >= SURE_LINK else None,
                )
            )
    return answers


def _prefer_replaced_by_named(
    conn: Connection, answers: dict[str, list[Answer]], links: Sequence[Link]
) -> None:
    """Raise an ended fact that a fact about a named entity replaced ("before neovim")."""
    every = [a for paths in answers.values() for a in paths]
    successors = {a.path[-1].superseded_by for a in every if a.path[-1].superseded_by}
    if not successors:
        return
    rows = conn.execute(
        f"{RELATIONS} WHERE r.id IN ({placeholders(len(successors))})", sorted(successors)
    ).fetchall()
    by_id = {r.id: r for r in map(relation_from_row, rows)}
    named = {link.entity_id: link.words for link in links}
    for answer in every:
        successor = by_id.get(answer.path[-1].superseded_by or "")
        if successor is None:
            continue
        for end in (successor.subject_id, successor.object_id):
            if end in named and end != answer.path[0].subject_id:
                answer.base *= 1.5
                answer.words |= named[end]
                break
