"""Shared set-up of the knowledge graph tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import mangostore
from mangostore.clock import ManualClock
from mangostore.kg import KnowledgeGraph


@dataclass
class Graph:
    """An in-memory database, its knowledge graph (no embedder), a user and the clock."""

    db: mangostore.Database
    kg: KnowledgeGraph
    user: str
    clock: ManualClock


def open_graph() -> Iterator[Graph]:
    """Yield a fresh :class:`Graph` and close it afterwards (the body of each ``graph`` fixture)."""
    clock = ManualClock()
    db = mangostore.open(":memory:", encrypted=False, clock=clock)
    db.kg.set_embedder(None)
    user = db.users.create(username="ann").id
    yield Graph(db, db.kg, user, clock)
    db.close()
