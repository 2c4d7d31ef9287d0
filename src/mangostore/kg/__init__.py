"""The knowledge graph: entities, relations, observations, validity, merges, traversal,
hybrid search and embeddings. Use it as ``db.kg`` (a :class:`KnowledgeGraph`)."""

from __future__ import annotations

# Modules only: the names of this namespace are the package's public ones (its tests
# compare them with __all__).
import importlib
import typing

from mangostore.kg.model import (
    EntityView,
    Evidence,
    Explanation,
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

if typing.TYPE_CHECKING:
    from mangostore.kg.embedding import (
        Embedder,
        HashingEmbedder,
        MiniLMEmbedder,
        default_embedder,
    )
    from mangostore.kg.graph import KnowledgeGraph

#: Names whose modules import NumPy and the whole graph, imported when first asked
#: for: other parts of the package (sync, the CLI) import small modules of this one,
#: and opening a database should neither pay for those imports nor need NumPy when
#: ``db.kg`` is never used.
_LAZY: typing.Final = {
    "Embedder": "mangostore.kg.embedding",
    "HashingEmbedder": "mangostore.kg.embedding",
    "MiniLMEmbedder": "mangostore.kg.embedding",
    "default_embedder": "mangostore.kg.embedding",
    "KnowledgeGraph": "mangostore.kg.graph",
}

__all__ = [
    "Embedder",
    "EntityView",
    "Evidence",
    "Explanation",
    "GraphPath",
    "HashingEmbedder",
    "Hit",
    "KnowledgeGraph",
    "MergeReport",
    "MergeSuggestion",
    "MiniLMEmbedder",
    "Neighbor",
    "Observation",
    "Relation",
    "Subgraph",
    "Upsert",
    "default_embedder",
]


def __getattr__(name: str) -> object:
    """Import the module of a lazily exported name (see ``_LAZY``) and return the name."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups find it without this function
    return value
