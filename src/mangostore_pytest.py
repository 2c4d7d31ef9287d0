"""The pytest plugin of mangostore, registered by the ``pytest11`` entry point.

A top-level module, not part of the ``mangostore`` package: pytest imports plugins
before a coverage tool starts, so this module imports only pytest, and mangostore
itself when a fixture is first used.

It adds fixtures and nothing else (no hooks, no options, no markers), all named
``mango_*`` so they cannot shadow a project's own; a test suite that asks for none of
them runs as before. The library is imported when a fixture is first used.

- ``mango_db``: a new in-memory, unencrypted database, every migration applied;
- ``mango_encrypted_db``: a new encrypted database file (pages, WAL and fields) in the
  test's ``tmp_path``, made with the fast test key derivation;
- ``mango_make``: a :class:`~mangostore.testing.factories.Factory` on ``mango_db``;
- ``mango_factory``: ``mango_factory(db)`` gives a factory on any database;
- ``mango_settings``: :class:`~mangostore.Settings` with the fast test key derivation;
- ``mango_passphrase``: the passphrase of ``mango_encrypted_db``.

Each database is closed when its test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mangostore import Database, Settings
    from mangostore.testing.factories import Factory

__all__ = [
    "mango_db",
    "mango_encrypted_db",
    "mango_factory",
    "mango_make",
    "mango_passphrase",
    "mango_settings",
]


@pytest.fixture
def mango_passphrase() -> str:
    """The passphrase ``mango_encrypted_db`` is created with."""
    from mangostore.testing.databases import TEST_PASSPHRASE

    return TEST_PASSPHRASE


@pytest.fixture
def mango_settings() -> Settings:
    """Default settings with the cheapest key derivation the library accepts."""
    from mangostore.testing.databases import fast_test_settings

    return fast_test_settings()


@pytest.fixture
def mango_db() -> Iterator[Database]:
    """A new in-memory, unencrypted database at the latest schema."""
    from mangostore.testing.databases import open_memory_test_db

    db = open_memory_test_db()
    yield db
    db.close()


@pytest.fixture
def mango_encrypted_db(
    tmp_path: Path, mango_settings: Settings, mango_passphrase: str
) -> Iterator[Database]:
    """A new encrypted database file ``tmp_path/mango.db`` (with its keyring beside it),
    at the latest schema; its recovery key is not kept."""
    from mangostore.testing.databases import create_encrypted_test_db

    db = create_encrypted_test_db(
        tmp_path / "mango.db", passphrase=mango_passphrase, settings=mango_settings
    )
    yield db
    db.close()


@pytest.fixture
def mango_factory() -> Callable[[Database], Factory]:
    """``mango_factory(db)``: a factory of valid records on any database."""
    from mangostore.testing.factories import Factory

    return Factory


@pytest.fixture
def mango_make(mango_db: Database) -> Factory:
    """A factory of valid records on ``mango_db``: ``mango_make.user()``, ..."""
    from mangostore.testing.factories import Factory

    return Factory(mango_db)
