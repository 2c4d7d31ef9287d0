"""Test databases: the cheapest key derivation the library accepts, refused outside pytest.

A database with a keyring derives its key-encryption key with Argon2id, tuned to take
about 0.2 s on a laptop. A test suite that opens hundreds of databases uses
:data:`FAST_KDF` instead: the floor the library enforces (19 MiB, 2 passes), about
ten times cheaper. :func:`fast_test_settings` hands it out only while pytest runs a
test, so an application cannot ship it by accident.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Final

from mangostore import Database, KdfParams, Settings
from mangostore import create as create_database
from mangostore import open as open_database
from mangostore.clock import Clock
from mangostore.errors import ConfigurationError

__all__ = [
    "FAST_KDF",
    "TEST_PASSPHRASE",
    "create_encrypted_test_db",
    "fast_test_settings",
    "open_memory_test_db",
]

#: The weakest Argon2id parameters the library accepts: keeps tests fast.
FAST_KDF: Final = KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1)
#: The passphrase of the test databases (a test secret, never a real one).
TEST_PASSPHRASE: Final = "correct horse battery staple"  # noqa: S105 - a test secret


def fast_test_settings(settings: Settings | None = None) -> Settings:
    """Return ``settings`` (default: the defaults) with the cheapest accepted KDF.

    Only while pytest runs a test (``PYTEST_CURRENT_TEST`` is set during a test's
    setup, call and teardown): cheap key derivation makes a stolen keyring cheaper
    to attack, so it is not handed out to a running application.

    Raises:
        ConfigurationError: called outside a pytest test.
    """
    if "PYTEST_CURRENT_TEST" not in os.environ:
        raise ConfigurationError(
            "fast key derivation is for tests only: call fast_test_settings() inside a "
            "pytest test or fixture, and use the default KdfParams in an application"
        )
    return dataclasses.replace(settings or Settings(), kdf=FAST_KDF)


def open_memory_test_db(*, clock: Clock | None = None) -> Database:
    """Open a new in-memory, unencrypted database with every migration applied."""
    return open_database(":memory:", encrypted=False, clock=clock)


def create_encrypted_test_db(
    path: str | os.PathLike[str],
    *,
    passphrase: str = TEST_PASSPHRASE,
    clock: Clock | None = None,
    settings: Settings | None = None,
) -> Database:
    """Create an encrypted database file at ``path`` (pages, WAL and fields encrypted)
    with the fast test KDF and every migration applied; its recovery key is dropped.

    Raises:
        ConfigurationError: called outside a pytest test (see :func:`fast_test_settings`).
    """
    created = create_database(
        Path(path), passphrase=passphrase, settings=fast_test_settings(settings), clock=clock
    )
    created.db.discard_recovery_key()
    return created.db
