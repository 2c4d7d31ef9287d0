"""What the session and access services use of the database, as protocols.

These protocols reach another service, :attr:`mangostore.Database.audit`, so they
are kept apart from :mod:`mangostore.security.ports`, which the audit log itself
imports. :class:`mangostore.Database` conforms; the type checker verifies it where
the database builds each service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mangostore.security.ports import (
    ClockedDatabase,
    KeyedDatabase,
    NamedDatabase,
    QueryDatabase,
    StoredDatabase,
)

if TYPE_CHECKING:
    from mangostore.engine.commits import CommitWatch
    from mangostore.records import Permission, UserSession
    from mangostore.repos.base import UserOwnedRepository
    from mangostore.repos.users import UserRepository
    from mangostore.security.audit.log import AuditLog

__all__ = ["AccessDatabase", "AuditedDatabase", "SessionsDatabase"]


class AuditedDatabase(ClockedDatabase, Protocol):
    """A database whose audit log a service appends its events to."""

    @property
    def audit(self) -> AuditLog:
        """The tamper-evident audit log."""
        ...


class SessionsDatabase(AuditedDatabase, KeyedDatabase, StoredDatabase, NamedDatabase, Protocol):
    """What the session service uses: audit, clock, keyring, store, path and two tables."""

    @property
    def users(self) -> UserRepository:
        """The ``users`` table."""
        ...

    @property
    def user_sessions(self) -> UserOwnedRepository[UserSession]:
        """The ``user_sessions`` table."""
        ...


class AccessDatabase(AuditedDatabase, QueryDatabase, StoredDatabase, NamedDatabase, Protocol):
    """What the permission service uses: audit, clock, SQL, store, path, commits, grants."""

    @property
    def permissions(self) -> UserOwnedRepository[Permission]:
        """The ``permissions`` table."""
        ...

    @property
    def commits(self) -> CommitWatch:
        """The counter of commits, which tells whether the cached checks are current."""
        ...
