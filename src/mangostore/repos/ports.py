"""What the repositories use of the database, as protocols.

The repositories are typed against these protocols, not against
:class:`mangostore.Database`: the database module imports the repositories (it
mixes in :class:`~mangostore.repos.RepositoryAccess`), so importing it back, even
only for type checking, would put every repository in an import cycle with it.
:class:`mangostore.Database` conforms; the type checker verifies it wherever a
repository is made from it (``db.users`` and the other tables).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mangostore.clock import Clock
from mangostore.engine.connection import Row
from mangostore.engine.store import Params, Store
from mangostore.records import SecurityEvent
from mangostore.settings import Settings

__all__ = ["AuditTrail", "RepositoryDatabase"]


class AuditTrail(Protocol):
    """The audit log methods ``db.security_events`` writes through.

    :class:`mangostore.security.audit.AuditLog` conforms; it is not imported here
    because the audit log itself uses the repositories.
    """

    def append(
        self,
        event_type: str,
        severity: str,
        source_component: str,
        *,
        user_id: str | None = None,
        event_data: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
        risk_score: float = 0.0,
    ) -> SecurityEvent:
        """Append one event to the log and return it."""
        ...

    def resolve(self, event_id: str, resolved_by: str) -> SecurityEvent:
        """Mark an event resolved by ``resolved_by``; return it as now stored."""
        ...


class RepositoryDatabase(Protocol):
    """The database as the repositories see it: store, clock, settings, SQL, audit log."""

    @property
    def store(self) -> Store:
        """The connections, transactions and query cache of the file."""
        ...

    @property
    def clock(self) -> Clock:
        """Where every timestamp comes from."""
        ...

    @property
    def settings(self) -> Settings:
        """The settings the database was opened with."""
        ...

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        ...

    @property
    def audit(self) -> AuditTrail:
        """The tamper-evident security event log."""
        ...

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a read-only statement and return its rows."""
        ...
