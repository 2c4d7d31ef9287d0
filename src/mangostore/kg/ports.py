"""What the knowledge graph, memory and conversation parts use of the database.

The parts are typed against these protocols, not against
:class:`mangostore.Database`: the database module imports these services, so
importing it back (even only for type checking) would put every part in an import
cycle with it. :class:`mangostore.Database` conforms; the type checker verifies it
where the database builds ``db.kg``, ``db.memory`` and ``db.conversations``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mangostore.records import Record

if TYPE_CHECKING:
    from mangostore.clock import Clock
    from mangostore.engine.connection import Row
    from mangostore.engine.pragmas import Connection
    from mangostore.engine.store import Params, Store
    from mangostore.records import AIConversation, AIMemory, KGEntity, KGObservation
    from mangostore.repos.spec import TableSpec
    from mangostore.settings import Settings

__all__ = [
    "ConversationDatabase",
    "GraphDatabase",
    "MemoryDatabase",
    "SqlDatabase",
    "Table",
]

R = TypeVar("R", bound=Record)


class Table(Protocol[R]):
    """The repository methods the parts call (see :class:`mangostore.repos.Repository`)."""

    @property
    def spec(self) -> TableSpec:
        """The table's columns and the SQL fragments made from them."""
        ...

    def get(self, id: str) -> R:
        """Return the record with this id; raise ``NotFoundError`` if there is none."""
        ...

    def list(
        self,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        **filters: Any,
    ) -> builtins.list[R]:
        """Return the records matching every filter."""
        ...

    # ``*args: Any, **fields: Any`` matches any signature: each table's repository
    # names its own columns (mangostore.repos.fields), which this protocol cannot.
    def create(self, *args: Any, **fields: Any) -> R:
        """Insert a record and return it as stored."""
        ...

    def update(self, id: str, /, *args: Any, **fields: Any) -> R:
        """Change some columns of a record and return it."""
        ...

    def record_from_row(self, row: Sequence[Any]) -> R:
        """Turn a row selected with ``spec.select_list`` into a record."""
        ...

    def insert_in(self, conn: Connection, fields: dict[str, Any]) -> R:
        """Insert a record on ``conn`` (inside its transaction) and return it."""
        ...

    def update_in(self, conn: Connection, id: str, fields: dict[str, Any]) -> R:
        """Change some columns of a record on ``conn`` and return it."""
        ...

    def get_in(self, conn: Connection, id: str) -> R:
        """Return the record with this id, read on ``conn``."""
        ...


class SqlDatabase(Protocol):
    """The database as the vector and access-count parts see it: clock, store, reads."""

    @property
    def clock(self) -> Clock:
        """Where every timestamp comes from."""
        ...

    @property
    def store(self) -> Store:
        """The connections: write transactions, reads, the field cipher."""
        ...

    def query(self, sql: str, params: Params = ()) -> builtins.list[Row]:
        """Run a read-only statement and return its rows."""
        ...


class GraphDatabase(SqlDatabase, Protocol):
    """The database as the knowledge graph (``db.kg``) sees it: adds its tables."""

    def transaction(self) -> AbstractContextManager[object]:
        """One write transaction; nested ones are savepoints."""
        ...

    @property
    def kg_entities(self) -> Table[KGEntity]:
        """The ``kg_entities`` table."""
        ...

    @property
    def kg_observations(self) -> Table[KGObservation]:
        """The ``kg_observations`` table."""
        ...


class MemoryDatabase(SqlDatabase, Protocol):
    """The database as the AI memory (``db.memory``) sees it."""

    def transaction(self) -> AbstractContextManager[object]:
        """One write transaction; nested ones are savepoints."""
        ...

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one writing statement in the current transaction (or its own); return rowcount."""
        ...

    @property
    def ai_memory(self) -> Table[AIMemory]:
        """The ``ai_memory`` table."""
        ...


class ConversationDatabase(SqlDatabase, Protocol):
    """The database as the AI conversations (``db.conversations``) see it."""

    @property
    def settings(self) -> Settings:
        """The limits every value is checked against."""
        ...

    def transaction(self) -> AbstractContextManager[object]:
        """One write transaction; nested ones are savepoints."""
        ...

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one writing statement in the current transaction (or its own); return rowcount."""
        ...

    @property
    def ai_conversations(self) -> Table[AIConversation]:
        """The ``ai_conversations`` table."""
        ...
