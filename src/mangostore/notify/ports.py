"""What the notification parts use of the database, as protocols.

The parts are typed against these protocols, not against
:class:`mangostore.Database`: the database module imports the notification
service, so importing it back (even only for type checking) would put every part
in an import cycle with it. :class:`mangostore.Database` conforms; the type checker
verifies it where the database builds its :class:`NotificationService`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from mangostore.clock import Clock
from mangostore.records import (
    Notification,
    NotificationAction,
    NotificationPreference,
    NotificationType,
    Project,
    Record,
    User,
)

__all__ = ["NotifyDatabase", "Table"]

R = TypeVar("R", bound=Record)


class Table(Protocol[R]):
    """The repository methods the parts call (see :class:`mangostore.repos.Repository`)."""

    def get(self, id: str) -> R:
        """Return the record with this id; raise ``NotFoundError`` if there is none."""
        ...

    def exists(self, id: str) -> bool:
        """Tell whether a record with this id exists."""
        ...

    def first(self, **filters: Any) -> R | None:
        """Return the first record matching the filters, or ``None``."""
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

    def create_many(self, items: Iterable[Mapping[str, Any]]) -> builtins.list[R]:
        """Insert many records in one transaction."""
        ...

    def update(self, id: str, /, *args: Any, **fields: Any) -> R:
        """Change some columns of a record and return it."""
        ...


class NotifyDatabase(Protocol):
    """The database as the notification parts see it: clock, SQL, transactions, tables."""

    @property
    def clock(self) -> Clock:
        """Where every timestamp comes from."""
        ...

    def transaction(self) -> AbstractContextManager[object]:
        """One write transaction; nested ones are savepoints."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        """Run a read-only statement and return its rows."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement in the current transaction (or its own); return rowcount."""
        ...

    @property
    def users(self) -> Table[User]:
        """The ``users`` table."""
        ...

    @property
    def projects(self) -> Table[Project]:
        """The ``projects`` table."""
        ...

    @property
    def notification_types(self) -> Table[NotificationType]:
        """The ``notification_types`` table."""
        ...

    @property
    def notification_preferences(self) -> Table[NotificationPreference]:
        """The ``notification_preferences`` table."""
        ...

    @property
    def notifications(self) -> Table[Notification]:
        """The ``notifications`` table."""
        ...

    @property
    def notification_actions(self) -> Table[NotificationAction]:
        """The ``notification_actions`` table."""
        ...
