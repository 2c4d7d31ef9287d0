"""The sync server's store on PostgreSQL, for several server processes behind a load
balancer: psycopg 3 with a connection pool.

Cursors are safe under any number of processes: a push increments its vault's
``last_cursor`` in its own transaction, and the row lock that takes holds every other
push of that vault until it commits (see :mod:`~mangostore.sync.server.sql_store`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mangostore.errors import ConfigurationError
from mangostore.sync.server.sql_store import SqlRelayStore, ddl

__all__ = ["PostgresRelayStore"]

#: Two processes making the tables at once are serialised by this advisory lock.
_SCHEMA_LOCK = 0x6D616E676F


class PostgresRelayStore(SqlRelayStore):
    """A relay store in the PostgreSQL database at ``dsn`` (tables made if missing)."""

    placeholder = "%s"
    lock_rows = " FOR UPDATE"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ConfigurationError(
                "the PostgreSQL sync store needs the server extra: pip install 'mangostore[server]'"
            ) from None
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._pool = ConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=False, name="mangostore-relay"
        )
        try:
            self._pool.open(wait=True, timeout=10)
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot reach the sync store's PostgreSQL ({type(exc).__name__}); "
                "check the URL, that the server runs and that the user may connect"
            ) from None
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in ddl("BYTEA", "BIGINT"):
                conn.execute(statement)

    def __repr__(self) -> str:
        return "<mangostore PostgresRelayStore>"

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        """A pooled connection in a transaction, committed when the block ends."""
        with self._pool.connection() as conn, conn.transaction():
            if not write:
                conn.execute("SET TRANSACTION READ ONLY")
            yield conn

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
