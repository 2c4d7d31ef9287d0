"""Named database fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import mangostore
from mangostore import KdfParams, Settings
from mangostore.clock import ManualClock
from mangostore.security.auth import AuthPolicy
from mangostore.security.passwords import PasswordParams

# Hypothesis runs more examples in CI than on a laptop, never with a deadline
# (tests do not assert wall-clock times).
settings.register_profile(
    "ci", max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

PASSPHRASE = "correct horse battery staple"

#: Set by .ci/run: what tests would skip for lack of an optional dependency must be
#: there, so CI never skips them silently.
REQUIRE_OPTIONAL = os.environ.get("MANGOSTORE_TEST_REQUIRE_OPTIONAL") == "1"


def skip_unless_available(available: bool, reason: str) -> None:
    """Skip the calling test when ``available`` is false; fail instead under CI."""
    if available:
        return
    if REQUIRE_OPTIONAL:
        pytest.fail(f"{reason}, and MANGOSTORE_TEST_REQUIRE_OPTIONAL=1 makes it mandatory")
    pytest.skip(reason)


#: The weakest Argon2id parameters the library accepts: keeps tests fast.
FAST_KDF = KdfParams(memory_kib=19 * 1024, iterations=2, parallelism=1)


@pytest.fixture
def fast_settings() -> Settings:
    """Settings with the cheapest allowed KDF, for tests that open many databases."""
    return Settings(kdf=FAST_KDF)


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand (``clock.advance(ms)``)."""
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a file-backed test database lives (nothing is created yet)."""
    return tmp_path / "vault.db"


@pytest.fixture
def plain_db() -> Iterator[mangostore.Database]:
    """An in-memory, unencrypted database at the latest schema."""
    db = mangostore.open(":memory:", encrypted=False)
    yield db
    db.close()


@pytest.fixture
def memory_db(fast_settings: Settings) -> Iterator[mangostore.Database]:
    """An in-memory database with a keyring, so sensitive fields are encrypted."""
    db = mangostore.open(":memory:", passphrase=PASSPHRASE, settings=fast_settings)
    yield db
    db.close()


@pytest.fixture
def encrypted_db(db_path: Path, fast_settings: Settings) -> Iterator[mangostore.Database]:
    """A new file-backed encrypted database (pages, WAL and fields encrypted)."""
    db = mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings)
    yield db
    db.close()


#: Password hashing as cheap as the library allows, for tests that hash many passwords.
CHEAP_PASSWORDS = AuthPolicy(password=PasswordParams(memory_kib=64, time_cost=1, parallelism=1))


@pytest.fixture
def auth_db(
    db_path: Path, clock: ManualClock, fast_settings: Settings
) -> Iterator[mangostore.Database]:
    """A file database on a manual clock, with cheap password hashing and no back-off sleep."""
    database = mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings, clock=clock)
    database.auth.configure(policy=CHEAP_PASSWORDS, sleep=lambda seconds: None)
    yield database
    database.close()
