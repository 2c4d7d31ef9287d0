"""What the authentication service uses of the database, as a protocol.

It reaches the session service (:attr:`mangostore.Database.sessions`), so it is kept
apart from :mod:`mangostore.security.service_ports`, which the session service
imports. :class:`mangostore.Database` conforms; the type checker verifies it where
the database builds :class:`~mangostore.security.auth.AuthService`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mangostore.security.ports import KeyedDatabase, NamedDatabase, QueryDatabase, StoredDatabase
from mangostore.security.service_ports import AuditedDatabase

if TYPE_CHECKING:
    from mangostore.repos.users import UserRepository
    from mangostore.security.sessions import SessionService

__all__ = ["AuthDatabase"]


class AuthDatabase(
    AuditedDatabase, KeyedDatabase, QueryDatabase, StoredDatabase, NamedDatabase, Protocol
):
    """What the authentication service uses: users, sessions, audit, SQL, keys, store."""

    @property
    def users(self) -> UserRepository:
        """The ``users`` table."""
        ...

    @property
    def sessions(self) -> SessionService:
        """The session service, which issues, steps up and revokes sessions."""
        ...
