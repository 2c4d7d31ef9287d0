"""Fixtures for the sync server's stores: each test gets a fresh, empty store.

``relay_target`` names where a store lives (a SQLite file, or a PostgreSQL schema of
its own) so a test can open it again, from another thread or process; ``relay_store``
is the store opened there, run once per engine::

    def test_something(relay_store: SqlRelayStore) -> None: ...  # sqlite and postgres

PostgreSQL tests read ``MANGOSTORE_TEST_PG_DSN`` (``.ci/run`` sets it): unset, they
skip; set to a server that cannot be reached, they fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.sync.server.api_helpers import Server, serve

from mangostore.sync.server.sql_store import SqlRelayStore
from mangostore.sync.server.sqlite_store import SqliteRelayStore

PG_DSN_ENV = "MANGOSTORE_TEST_PG_DSN"


def pg_dsn() -> str:
    """The PostgreSQL server of the tests; skips the calling test when none is set."""
    dsn = os.environ.get(PG_DSN_ENV, "")
    if not dsn:
        pytest.skip(
            f"PostgreSQL tests need {PG_DSN_ENV} (for example "
            "postgresql://postgres@127.0.0.1:5432/test); it is unset"
        )
    return dsn


@dataclass(frozen=True)
class StoreTarget:
    """Where a test's store lives: ``kind`` is ``sqlite`` (``location`` a file path) or
    ``postgres`` (``location`` a DSN whose search path is the test's own schema)."""

    kind: str
    location: str
    #: The PostgreSQL schema holding the tables (empty for SQLite).
    schema: str = ""

    def open(self) -> SqlRelayStore:
        """A new store on this location (the caller closes it)."""
        if self.kind == "sqlite":
            from mangostore.sync.server.sqlite_store import SqliteRelayStore

            return SqliteRelayStore(self.location)
        from mangostore.sync.server.pg_store import PostgresRelayStore

        return PostgresRelayStore(self.location)


@dataclass(frozen=True)
class PgSchema:
    """A test's own PostgreSQL schema and a DSN whose search path is it."""

    dsn: str
    schema: str


@contextlib.contextmanager
def pg_schema() -> Iterator[PgSchema]:
    """A schema of its own on the test server, dropped afterwards."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    dsn = pg_dsn()
    schema = f"relay_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        pytest.fail(
            f"{PG_DSN_ENV} is set but its PostgreSQL cannot be reached "
            f"({type(exc).__name__}: {exc}); start the server or unset the variable"
        )
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield PgSchema(make_conninfo(dsn, options=f"-csearch_path={schema}"), schema)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres"])
def relay_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """An empty place for a store, once per engine (PostgreSQL: a fresh schema)."""
    if request.param == "sqlite":
        yield StoreTarget("sqlite", str(tmp_path / "relay.sqlite"))
        return
    with pg_schema() as made:
        yield StoreTarget("postgres", made.dsn, made.schema)


@pytest.fixture
def relay_store(relay_target: StoreTarget) -> Iterator[SqlRelayStore]:
    """A fresh, empty relay store, once on SQLite and once on PostgreSQL."""
    store = relay_target.open()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def sync_server(relay_target: StoreTarget, tmp_path: Path) -> Iterator[Any]:
    """``mangostore serve-sync`` in its own process over a fresh store, once per engine
    (a :class:`tests.sync.server.servers.ServerProcess`, started)."""
    from tests.sync.server.servers import ServerProcess, store_url

    server = ServerProcess(store_url(relay_target), log=tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    """The app over a fresh SQLite store."""
    store = SqliteRelayStore(tmp_path / "relay.sqlite")
    try:
        yield serve(store)
    finally:
        store.close()
