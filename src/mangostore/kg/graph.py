"""The knowledge graph service, ``db.kg``: entities, aliases, relations, observations,
validity, merges, traversal and search.

:class:`KnowledgeGraph` is the public face: it checks every text argument
(:func:`~mangostore.kg.inputs.checks_text_arguments`), documents the contract, and hands
each call to the part that owns it:

========================================  ==============================================
:mod:`~mangostore.kg.store`               transactions, the clock, shared row reads
:mod:`~mangostore.kg.semantic`            the embedder and the vector index
:mod:`~mangostore.kg.entities`            entities, de-duplication, aliases, ``describe``
:mod:`~mangostore.kg.facts`               predicates, relations, observations, validity
:mod:`~mangostore.kg.traversal`           neighbours, paths, subgraphs
:mod:`~mangostore.kg.merging`             merges and their undoing
:mod:`~mangostore.kg.search`              hybrid search
:mod:`~mangostore.kg.mcp_jsonl`           the MCP memory server's JSONL format
========================================  ==============================================

The parts never import this module; it imports them and wires them together.

Every write runs in one transaction on the writer connection (joining the caller's
``db.transaction()`` when there is one). Reads of entities are counted through
:class:`~mangostore.kg.access.AccessCounter`, which writes the counts in batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from mangostore.clock import Instant
from mangostore.kg.access import AccessCounter
from mangostore.kg.embedding import Embedder, NumpyIndex, VectorIndex
from mangostore.kg.entities import EMBEDDING_THRESHOLD, Entities
from mangostore.kg.facts import Facts
from mangostore.kg.inputs import checks_text_arguments
from mangostore.kg.mcp_jsonl import export_jsonl, import_jsonl
from mangostore.kg.merging import Merges
from mangostore.kg.model import (
    Direction,
    EntityRef,
    EntityView,
    GraphPath,
    Hit,
    MergeReport,
    MergeSuggestion,
    Neighbor,
    Observation,
    Relation,
    Subgraph,
    Upsert,
)
from mangostore.kg.search import MIN_CONFIDENCE, HybridSearch
from mangostore.kg.semantic import Semantic
from mangostore.kg.speakers import Speakers
from mangostore.kg.store import GraphStore, entity_id
from mangostore.kg.traversal import Traversal
from mangostore.progress import Progress
from mangostore.records import KGEntity

if TYPE_CHECKING:
    from mangostore.kg.ports import GraphDatabase

__all__ = ["EMBEDDING_THRESHOLD", "KnowledgeGraph"]


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
        db: GraphDatabase,
        *,
        embedder: Embedder | Literal["default"] | None = "default",
        vector_index: VectorIndex | None = None,
    ) -> None:
        self._db = db
        self.access = AccessCounter(db)
        self._semantic = Semantic(db, embedder, vector_index or NumpyIndex(db))
        self._store = GraphStore(db, self.access)
        self._entities = Entities(db, self._store, self._semantic)
        self._facts = Facts(db, self._store)
        self._traversal = Traversal(self._store)
        self._merges = Merges(db, self._store, self._entities)
        self._speakers = Speakers(self._store)
        self._search = HybridSearch(self._store, self._semantic, self._speakers)

    # -- configuration -----------------------------------------------------------------

    @property
    def embedder(self) -> Embedder | None:
        """The embedder in use, loading the default one on first use (``None``: no vectors)."""
        return self._semantic.embedder

    def set_embedder(self, embedder: Embedder | None) -> None:
        """Use ``embedder`` from now on (``None`` turns semantic search off)."""
        self._semantic.set_embedder(embedder)

    @property
    def vector_index(self) -> VectorIndex:
        """How nearest neighbours are found; assign another index to replace it."""
        return self._semantic.vector_index

    @vector_index.setter
    def vector_index(self, index: VectorIndex) -> None:
        self._semantic.vector_index = index

    def close(self) -> None:
        """Write the buffered access counts. Call before the database closes."""
        self.access.flush()

    def flush(self) -> int:
        """Write the buffered access counts now; return how many entities were updated."""
        return self.access.flush()

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
        return self._entities.upsert_entity(
            user_id,
            type,
            name,
            description=description,
            metadata=metadata,
            confidence=confidence,
            project_id=project_id,
            aliases=aliases,
            dedup=dedup,
        )

    def get(self, entity: EntityRef) -> KGEntity:
        """Return the entity (and count the read).

        Raises:
            NotFoundError: no such entity.
        """
        return self._entities.get(entity)

    def find(self, user_id: str, name: str, type: str | None = None) -> KGEntity | None:
        """Return the user's entity with this name or alias (canonical match), or None.

        When several types share the name and ``type`` is not given, the most recently
        updated entity is returned.
        """
        return self._entities.find(user_id, name, type)

    def resolve(self, user_id: str, entity: str, type: str | None = None) -> KGEntity:
        """Return the entity with this id, else the one with this name or alias.

        Raises:
            NotFoundError: neither matches.
        """
        return self._entities.resolve(user_id, entity, type)

    def add_alias(self, entity: EntityRef, alias: str, *, source: str | None = "user") -> bool:
        """Make ``alias`` another name of the entity; return False if it already was.

        Raises:
            InvalidValueError: an empty alias.
            NotFoundError: no such entity.
        """
        return self._entities.add_alias(entity, alias, source=source)

    def aliases(self, entity: EntityRef) -> list[str]:
        """Return the entity's aliases, oldest first."""
        return self._entities.aliases(entity)

    def remove_alias(self, entity: EntityRef, alias: str) -> bool:
        """Remove an alias; return whether it existed."""
        return self._entities.remove_alias(entity, alias)

    def delete_entity(self, entity: EntityRef) -> None:
        """Delete an entity with its relations, observations, aliases and embeddings.

        Prefer :meth:`invalidate` for facts that stopped being true: deleting loses the
        history. The full-text indexes follow through their triggers.

        Raises:
            NotFoundError: no such entity.
        """
        self._entities.delete_entity(entity)

    def describe(self, entity: EntityRef, *, as_of: Instant | None = None) -> EntityView:
        """Return the entity with its aliases, and the observations and relations valid
        at ``as_of`` (default: now). Counts one read.

        Raises:
            NotFoundError: no such entity.
        """
        return self._entities.describe(entity, as_of=as_of)

    # -- predicates and relations --------------------------------------------------------

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
        self._facts.declare_predicate(
            predicate, single_valued=single_valued, description=description
        )

    def single_valued(self, predicate: str) -> bool:
        """Tell whether ``predicate`` was declared single-valued."""
        return self._facts.single_valued(predicate)

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

        Repeating a relation that holds adds ``weight`` to its weight, counts a
        confirmation, combines the confidences (noisy-or) and sets ``last_confirmed``;
        no second row is made. For a single-valued predicate, a relation to another
        object that still holds is closed at ``valid_from`` and marked superseded.

        Args:
            valid_from: when the fact started to hold (epoch ms or aware datetime; default now).

        Raises:
            InvalidValueError: bad predicate, weight, confidence or source.
            NotFoundError: no such entity.
            ValidationError: the entities belong to different users.
        """
        return self._facts.relate(
            subject,
            predicate,
            object,
            weight=weight,
            confidence=confidence,
            source=source,
            valid_from=valid_from,
            project_id=project_id,
        )

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
        return self._facts.relations(
            entity,
            direction=direction,
            predicates=predicates,
            as_of=as_of,
            include_invalid=include_invalid,
        )

    def relation(self, relation_id: str) -> Relation:
        """Return one relation, whatever its validity.

        Raises:
            NotFoundError: no such relation.
        """
        return self._facts.relation(relation_id)

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

        An observation of the same type whose content has the same canonical form and
        still holds is confirmed (confidence combined, confirmations counted) instead of
        stored twice. With a ``slot`` ("editor"), the observation is single-valued: it
        closes the entity's observation of that slot that held until then.

        Raises:
            InvalidValueError: unknown type, empty content, confidence outside 0..1.
            NotFoundError: no such entity.
        """
        return self._facts.observe(
            entity,
            type,
            content,
            confidence=confidence,
            context=context,
            valid_from=valid_from,
            slot=slot,
        )

    def observation(self, observation_id: str) -> Observation:
        """Return one observation, whatever its validity.

        Raises:
            NotFoundError: no such observation.
        """
        return self._facts.observation(observation_id)

    def observations(
        self,
        entity: EntityRef,
        *,
        as_of: Instant | None = None,
        include_invalid: bool = False,
    ) -> list[Observation]:
        """Return the entity's observations that hold at ``as_of`` (default now), or all."""
        return self._facts.observations(entity, as_of=as_of, include_invalid=include_invalid)

    def verify(self, observation: str | Observation) -> Observation:
        """Mark an observation verified (by the user) and return it.

        Raises:
            NotFoundError: no such observation.
        """
        return self._facts.verify(observation)

    def invalidate(
        self,
        fact: str | Relation | Observation,
        *,
        at: Instant | None = None,
        reason: str | None = None,
    ) -> Relation | Observation:
        """End a relation's or observation's validity at ``at`` (default now); keep the row.

        The fact stays readable with ``include_invalid=True`` and in ``as_of`` queries
        about the time it held. Invalidating an already closed fact moves its end earlier
        only.

        Raises:
            NotFoundError: no relation or observation has this id.
        """
        return self._facts.invalidate(fact, at=at, reason=reason)

    # -- traversal ------------------------------------------------------------------------

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
        shortest path to it. Only relations that hold at ``as_of`` (default now) are
        followed; cycles are never followed round.

        Raises:
            InvalidValueError: depth below 1 or an unknown direction.
            NotFoundError: no such entity.
        """
        return self._traversal.neighbors(
            entity,
            depth=depth,
            predicates=predicates,
            direction=direction,
            as_of=as_of,
            limit=limit,
        )

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
        return self._traversal.paths(
            a,
            b,
            max_depth=max_depth,
            predicates=predicates,
            direction=direction,
            as_of=as_of,
            limit=limit,
        )

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
        return self._traversal.subgraph(entities, depth=depth, predicates=predicates, as_of=as_of)

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
        return self._merges.merge(keep, drop, dry_run=dry_run)

    def merges(self, user_id: str, *, include_undone: bool = False) -> list[dict[str, Any]]:
        """Return the user's merges, newest first: id, keep_id, drop_id, drop_name,
        created_at, undone_at."""
        return self._merges.merges(user_id, include_undone=include_undone)

    def undo_merge(self, merge_id: str) -> KGEntity:
        """Undo a merge: bring the dropped entity back, with its relations, observations
        and aliases, and restore the kept entity as it was. Returns the restored entity.

        Raises:
            NotFoundError: no such merge.
            InvalidTransitionError: it was already undone, a later merge involving
                either entity has not been undone, or the kept entity is gone.
        """
        return self._merges.undo_merge(merge_id)

    # -- search and embeddings ---------------------------------------------------------------

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
        speaker: EntityRef | None = None,
        min_confidence: float = MIN_CONFIDENCE,
        record_access: bool = False,
    ) -> list[Hit]:
        """Answer a question from the user's graph: the entities that answer it, best first.

        Full text, trigram names, vectors (with an embedder) and the facts around the
        entities the question names (by name, alias, sound, spoken form; "I"/"my" as
        the speaker) are combined; each hit carries the fact that answers it and a
        confidence. The question's own time words ("before", "used to", "last week")
        choose the facts that count. See :mod:`mangostore.kg.search`.

        Args:
            k: how many hits to return.
            types: only entities of these types.
            as_of: answer as of this time (epoch ms or aware datetime), not the question's.
            explain: fill each hit's ``explanation`` with the score and its evidence.
            retrievers: a subset of ``("fts", "trigram", "vector", "graph")``.
            speaker: the person entity that "I" means (default: :meth:`set_speaker`'s).
            min_confidence: below this confidence of the best hit, return ``[]``.
            record_access: count the hits as reads of their entities.

        Raises:
            InvalidValueError: k below 1, an unknown type or retriever, a surrogate in
                text, min_confidence outside 0..1, a speaker not a person of the user.
            NotFoundError: no such speaker entity.
        """
        return self._search.search(
            user_id,
            query,
            k=k,
            types=types,
            as_of=as_of,
            explain=explain,
            retrievers=retrievers,
            speaker=None if speaker is None else entity_id(speaker),
            min_confidence=min_confidence,
            record_access=record_access,
        )

    def set_speaker(self, user_id: str, entity: EntityRef | None) -> None:
        """Say which person entity is the user themself ("I", "my" in questions).

        Raises:
            InvalidValueError: the entity is not a person of this user.
            NotFoundError: no such entity.
        """
        self._speakers.set_speaker(user_id, None if entity is None else entity_id(entity))

    def merge_suggestions(self, user_id: str) -> list[MergeSuggestion]:
        """Return the user's possible duplicates that were not merged, newest first."""
        return self._entities.merge_suggestions(user_id)

    def dismiss_suggestion(self, suggestion_id: str) -> None:
        """Mark a merge suggestion as not a duplicate; it is not suggested again.

        Raises:
            NotFoundError: no such suggestion.
        """
        self._entities.dismiss_suggestion(suggestion_id)

    def embed_pending(
        self, user_id: str | None = None, *, batch: int = 256, progress: Progress | None = None
    ) -> int:
        """Embed the entities and observations whose text changed since they were embedded.

        Text whose SHA-256 already has a vector for this model is not embedded again.
        :meth:`search` does this first; call it beforehand to show ``progress`` (stages:
        :meth:`~mangostore.kg.semantic.Semantic.embed_pending`). Returns how many texts
        were embedded (0 without an embedder).
        """
        return self._semantic.embed_pending(user_id, batch=batch, progress=progress)

    # -- interchange ----------------------------------------------------------------------

    def import_jsonl(
        self, user_id: str, lines: Iterable[str], *, progress: Progress | None = None
    ) -> dict[str, int]:
        """Import the MCP memory server's JSONL format; see :mod:`mangostore.kg.mcp_jsonl`."""
        # The import writes through this object's public methods, so that the file's
        # text is checked like any other argument.
        return import_jsonl(self._db, self, user_id, lines, progress=progress)

    def export_jsonl(self, user_id: str) -> Iterator[str]:
        """Export the user's graph as MCP memory server JSONL lines (no newlines)."""
        return export_jsonl(self._db, user_id)
