"""How ``db.memory`` ranks what a recall found: the policy, the score and its parts.

:func:`rank` computes ``relevance x confidence x recency x scope`` for each memory found
(:mod:`mangostore.kg.memory` explains each factor) and keeps the best. It reads and
writes nothing: :class:`~mangostore.kg.memory.MemoryService` finds the candidates and
counts the access, so the ranking can be tested, and tuned, on plain records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mangostore.errors import InvalidValueError
from mangostore.kg.memory_checks import is_int, is_number
from mangostore.kg.query_text import fts_query as search_query
from mangostore.records import AIMemory

__all__ = [
    "DAY_MS",
    "KEY_WEIGHT",
    "K_MAX",
    "MemoryPolicy",
    "Recall",
    "fts_query",
    "rank",
]

DAY_MS = 86_400_000
#: How much more a query word found in the key counts than one found in the value.
KEY_WEIGHT = 2.0
#: Most memories one recall returns.
K_MAX = 1_000


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """How recall ranks and how long hidden memories are kept.

    Attributes:
        half_life_ms: age after which the decaying part of ``recency`` has halved.
        recency_floor: the part of ``recency`` that never decays (0 to 1).
        global_weight: ``scope`` of a user-wide memory in a recall about a project (0 to 1).
        purge_grace_ms: how long an expired or forgotten memory is kept, hidden, before
            :meth:`MemoryService.sweep` deletes it.
        candidates: full-text matches considered per query recall before ranking.
    """

    half_life_ms: int = 30 * DAY_MS
    recency_floor: float = 0.5
    global_weight: float = 0.8
    purge_grace_ms: int = 7 * DAY_MS
    candidates: int = 200

    def __post_init__(self) -> None:
        for name in ("half_life_ms", "candidates"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise InvalidValueError(f"MemoryPolicy.{name} must be a positive integer")
        if not is_int(self.purge_grace_ms) or self.purge_grace_ms < 0:
            raise InvalidValueError("MemoryPolicy.purge_grace_ms must be a non-negative integer")
        for name in ("recency_floor", "global_weight"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value <= 1:
                raise InvalidValueError(f"MemoryPolicy.{name} must be a number from 0 to 1")


@dataclass(frozen=True, slots=True)
class Recall:
    """A memory returned by :meth:`MemoryService.recall`, with its score and the parts of it.

    ``memory`` shows the access this recall counted (``access_count`` and
    ``last_accessed``); the score was computed before it.
    """

    memory: AIMemory
    score: float
    relevance: float
    confidence: float
    recency: float
    scope: float

    @property
    def key(self) -> str:
        """The memory's key."""
        return self.memory.key_name

    @property
    def value(self) -> Any:
        """The memory's value, as a Python object."""
        return self.memory.value_data


def fts_query(text: str) -> str | None:
    """Turn any text into a safe FTS5 query over every column of ``ai_memory_fts``.

    The same rules as the knowledge graph's search (:func:`mangostore.kg.search.fts_query`):
    words, each a quoted literal, OR-ed, stopwords left out unless nothing else remains.

    Returns:
        The query, or ``None`` when the text has no words.

    Raises:
        InvalidValueError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise InvalidValueError("query must be a string", field="query")
    return search_query(text, column=None)


def rank(
    found: Iterable[tuple[AIMemory, float]],
    *,
    policy: MemoryPolicy,
    project_id: str | None,
    now: int,
    k: int,
) -> list[Recall]:
    """Score the memories found and return the ``k`` best, highest score first.

    Args:
        found: each memory with its relevance (0 to 1).
        policy: the ranking's half-life, floor and weight of user-wide memories.
        project_id: the project the recall is about (``None``: no project, every
            memory has scope 1).
        now: the time of the recall (epoch ms), which ages the memories.
        k: most results.

    Returns:
        At most ``k`` results; ties go to the newer memory, then the smaller id, so the
        order never depends on how the database returned the rows.
    """
    return sorted(
        (_score(memory, relevance, policy, project_id, now) for memory, relevance in found),
        key=lambda r: (-r.score, -r.memory.created_at, r.memory.id),
    )[:k]


def _score(
    memory: AIMemory, relevance: float, policy: MemoryPolicy, project_id: str | None, now: int
) -> Recall:
    confidence = 1.0 if memory.confidence_score is None else float(memory.confidence_score)
    touched = max(memory.created_at, memory.last_accessed or memory.created_at)
    age = max(0, now - touched)
    decay = 0.5 ** (age / policy.half_life_ms)
    recency = policy.recency_floor + (1 - policy.recency_floor) * decay
    scope = 1.0
    if project_id is not None and memory.project_id != project_id:
        scope = policy.global_weight
    score = relevance * confidence * recency * scope
    return Recall(memory, score, relevance, confidence, recency, scope)
