"""What the security parts use of the database, as protocols (lower layers only).

The parts are typed against these protocols, not against
:class:`mangostore.Database`: the database module imports the security services, so
importing it back (even only for type checking) would put every part in an import
cycle with it. This module refers to nothing above the engine, the keys, the
settings and the clock, so every security module may import it; the protocols that
reach other services (``db.audit``, ``db.sessions``) are in
:mod:`mangostore.security.service_ports` and :mod:`mangostore.security.auth_ports`.
:class:`mangostore.Database` conforms; the type checker verifies it where the
database builds each service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mangostore.clock import Clock
    from mangostore.engine.connection import Row
    from mangostore.engine.store import Params, Store
    from mangostore.keys.keyring import Keyring
    from mangostore.settings import Settings

__all__ = [
    "AuditDatabase",
    "CipherDatabase",
    "ClockedDatabase",
    "KeyedDatabase",
    "NamedDatabase",
    "QueryDatabase",
    "StoredDatabase",
]


class KeyedDatabase(Protocol):
    """A database with a keyring (the key of the token and name digests)."""

    @property
    def keyring(self) -> Keyring | None:
        """The keyring; ``None`` for a database opened without a passphrase."""
        ...


class QueryDatabase(Protocol):
    """A database that runs read-only SQL."""

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a read-only statement and return its rows."""
        ...


class ClockedDatabase(Protocol):
    """A database with a clock, where every timestamp comes from."""

    @property
    def clock(self) -> Clock:
        """Where every timestamp comes from."""
        ...


class StoredDatabase(Protocol):
    """A database with its store: transactions, reads, snapshots, the field cipher."""

    @property
    def store(self) -> Store:
        """The connections and what every service needs from them."""
        ...


class NamedDatabase(Protocol):
    """A database with a path (shown in the services' reprs)."""

    @property
    def path(self) -> str:
        """The database file's path (``:memory:`` for an in-memory database)."""
        ...


class CipherDatabase(KeyedDatabase, StoredDatabase, Protocol):
    """What the audit event reader uses: the keyring and the store's field cipher."""


class AuditDatabase(CipherDatabase, NamedDatabase, QueryDatabase, ClockedDatabase, Protocol):
    """What the audit log uses: keyring, store, path, SQL, clock and settings."""

    @property
    def settings(self) -> Settings:
        """The database's settings (the JSON size limit)."""
        ...
