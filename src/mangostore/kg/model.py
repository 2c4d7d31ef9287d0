"""The values the knowledge graph service takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mangostore.records import KGEntity

__all__ = [
    "ENTITY_TYPES",
    "OBSERVATION_TYPES",
    "Component",
    "Direction",
    "EntityRef",
    "EntityView",
    "Evidence",
    "Explanation",
    "GraphPath",
    "Hit",
    "MergeReport",
    "MergeSuggestion",
    "Neighbor",
    "Observation",
    "Relation",
    "Subgraph",
    "Upsert",
]

#: The entity types the schema accepts.
ENTITY_TYPES = ("person", "project", "command", "file", "concept")
#: The observation types the schema accepts.
OBSERVATION_TYPES = ("fact", "behavior", "preference", "pattern")

MatchKind = Literal["canonical", "alias", "similar"]
#: Which relations a walk follows: from subject to object, back, or both ways.
Direction = Literal["out", "in", "both"]
#: An entity given to the service: its id, or the record itself.
EntityRef = str | KGEntity


@dataclass(frozen=True, slots=True)
class Relation:
    """A directed edge ``subject -predicate-> object`` with its validity."""

    id: str
    user_id: str
    subject_id: str
    predicate: str
    object_id: str
    weight: float
    confidence: float
    source: str | None
    created_at: int
    last_confirmed: int | None
    valid_from: int
    valid_to: int | None
    invalidated_at: int | None
    invalidation_reason: str | None
    superseded_by: str | None
    confirmations: int

    def holds_at(self, t: int) -> bool:
        """Tell whether the relation held at ``t`` (epoch ms)."""
        return self.valid_from <= t and (self.valid_to is None or self.valid_to > t)


@dataclass(frozen=True, slots=True)
class Observation:
    """A fact observed about an entity, with its validity and verification."""

    id: str
    entity_id: str
    user_id: str
    observation_type: str
    content: str
    context: Any
    confidence: float
    verified: bool
    verified_at: int | None
    created_at: int
    valid_from: int
    valid_to: int | None
    invalidated_at: int | None
    invalidation_reason: str | None
    superseded_by: str | None
    confirmations: int

    def holds_at(self, t: int) -> bool:
        """Tell whether the observation held at ``t`` (epoch ms)."""
        return self.valid_from <= t and (self.valid_to is None or self.valid_to > t)


@dataclass(frozen=True, slots=True)
class Upsert:
    """What :meth:`KnowledgeGraph.upsert_entity` did.

    Attributes:
        entity: the entity as stored.
        created: ``True`` when a new entity was made, ``False`` when one was matched.
        matched_by: ``"canonical"``, ``"alias"`` or ``"similar"`` for a match, else None.
        similarity: the trigram similarity of a ``"similar"`` match (1.0 otherwise).
        suggestion: a near duplicate that was created anyway and suggested for a merge.
    """

    entity: KGEntity
    created: bool
    matched_by: MatchKind | None = None
    similarity: float = 1.0
    suggestion: MergeSuggestion | None = None


@dataclass(frozen=True, slots=True)
class MergeReport:
    """What a merge changed (or, with ``dry_run``, would change).

    Attributes:
        merge_id: the id to pass to :meth:`KnowledgeGraph.undo_merge`; None for a dry run.
        relations_repointed: relations of the dropped entity now attached to the kept one.
        relations_combined: relations the kept entity already had; the dropped entity's
            copy was folded into them (weight added, confirmations counted).
        self_loops_removed: relations between the two entities, which would point from the
            kept entity to itself.
        observations_moved, aliases_moved: ids moved to the kept entity.
        alias_added: the dropped entity's name, now an alias of the kept one (or None).
    """

    keep_id: str
    drop_id: str
    dry_run: bool
    merge_id: str | None
    relations_repointed: list[str] = field(default_factory=list)
    relations_combined: list[tuple[str, str]] = field(default_factory=list)
    self_loops_removed: list[str] = field(default_factory=list)
    observations_moved: list[str] = field(default_factory=list)
    aliases_moved: list[str] = field(default_factory=list)
    alias_added: str | None = None


@dataclass(frozen=True, slots=True)
class MergeSuggestion:
    """Two entities that may be one, left for the user to merge or dismiss.

    Attributes:
        id: pass it to :meth:`KnowledgeGraph.dismiss_suggestion`.
        entity_id: the newer entity.
        candidate_id: the older entity it may duplicate.
        similarity: the trigram similarity of their names.
        reason: why it was not merged on its own.
    """

    id: str
    entity_id: str
    candidate_id: str
    similarity: float
    reason: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Neighbor:
    """An entity reached from the start within ``depth`` hops, by the relations in ``path``."""

    entity: KGEntity
    depth: int
    path: list[Relation]


@dataclass(frozen=True, slots=True)
class GraphPath:
    """A chain of relations from one entity to another (followed in either direction)."""

    entity_ids: list[str]
    relations: list[Relation]

    @property
    def length(self) -> int:
        """The number of hops."""
        return len(self.relations)


@dataclass(frozen=True, slots=True)
class Subgraph:
    """Entities and the valid relations among them."""

    entities: list[KGEntity]
    relations: list[Relation]


@dataclass(frozen=True, slots=True)
class EntityView:
    """An entity with everything attached to it, as ``mangostore kg show`` prints it."""

    entity: KGEntity
    aliases: list[str]
    observations: list[Observation]
    outgoing: list[Relation]
    incoming: list[Relation]
    names: dict[str, str]  # entity id -> name, for the other ends of the relations


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a retriever found an entity.

    Attributes:
        retriever: ``"fts"``, ``"trigram"``, ``"vector"`` or ``"graph"``.
        kind: ``"entity"``, ``"alias"``, ``"observation"`` (the matched row) or
            ``"relation"`` (a graph path).
        source_id: the matched row's id (entity, alias, observation or relation).
        text: the matched text, or the path as ``a -predicate-> b`` lines.
        score: the retriever's own score (BM25, similarity, graph score).
    """

    retriever: str
    kind: str
    source_id: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class Component:
    """One retriever's part in a hit's score."""

    rank: int
    contribution: float
    raw_score: float


@dataclass(frozen=True, slots=True)
class Explanation:
    """How a hit's score was made: ``score = rrf * product(factors)``."""

    rrf: float
    components: dict[str, Component]
    factors: dict[str, float]
    evidence: list[Evidence]


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result.

    Attributes:
        entity: the answer.
        score: its score; only the order of the scores of one search means anything.
        explanation: how the score was made (with ``explain=True``).
        confidence: how much of the question the hit's evidence explains, 0 to 1.
        fact: the relation or observation that answers the question (its validity
            says when it held), or None when the entity itself is the answer.
    """

    entity: KGEntity
    score: float
    explanation: Explanation | None = None
    confidence: float = 1.0
    fact: Relation | Observation | None = None
