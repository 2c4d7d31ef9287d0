"""The knowledge graph: entities, relations, observations, validity, merges, traversal,
hybrid search and embeddings. Use it as ``db.kg`` (a :class:`KnowledgeGraph`)."""

from __future__ import annotations

from mangostore.kg.embedding import Embedder, HashingEmbedder, MiniLMEmbedder, default_embedder
from mangostore.kg.graph import KnowledgeGraph
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
