"""Named database fixtures shared by the whole suite.

Each database state a test can start from is a fixture here: ``plain_db``,
``memory_db``, ``encrypted_db``, the ``clocked_*`` ones on the manual ``clock``,
``auth_db``, ``notify_world`` and the knowledge graph's ``graph``. A test that takes
``db`` gets the state its module (or the test) names with the ``database`` marker,
``plain_db`` when none does::

    pytestmark = pytest.mark.database("clocked_file_db")
    pytestmark = pytest.mark.database("plain_db", "encrypted_db")  # each test twice
    pytestmark = pytest.mark.database("clocked_db", setup=register_types)

A module that needs another starting time overrides ``clock``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from tests.kg_helpers import Graph, open_graph

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.notify import RecordingDeliverer
from mangostore.security.auth import AuthPolicy
from mangostore.security.passwords import PasswordParams
from mangostore.sync import MemoryRelay
from mangostore.testing import FAST_KDF as FAST_KDF  # imported by many tests from here
from mangostore.testing import create_encrypted_test_db, fast_test_settings, open_memory_test_db

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "database(*states, setup=None): the named database fixtures the db fixture gives "
        "(one run per state); setup(db) runs on each before the test",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test taking ``db`` once per state its ``database`` marker names."""
    marker = metafunc.definition.get_closest_marker("database")
    if "db" not in metafunc.fixturenames or marker is None or len(marker.args) < 2:
        return
    for chosen in metafunc.definition.iter_markers("parametrize"):
        names = chosen.args[0]
        if "db" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return  # the test picks its own states
    metafunc.parametrize("db", marker.args, indirect=True)


@pytest.fixture
def db(request: pytest.FixtureRequest) -> mangostore.Database:
    """The database of a test: the named state its ``database`` marker picks
    (``plain_db`` without one), after the marker's ``setup``."""
    marker = request.node.get_closest_marker("database")
    default = marker.args[0] if marker is not None and marker.args else "plain_db"
    database: mangostore.Database = request.getfixturevalue(getattr(request, "param", default))
    setup: Callable[[mangostore.Database], object] | None = (
        marker.kwargs.get("setup") if marker is not None else None
    )
    if setup is not None:
        setup(database)
    return database


@pytest.fixture
def fast_settings() -> Settings:
    """Settings with the cheapest allowed KDF, for tests that open many databases."""
    return fast_test_settings()


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
    db = open_memory_test_db()
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
    """A new file-backed encrypted database (pages, WAL and fields encrypted); its
    recovery key is not kept."""
    db = create_encrypted_test_db(db_path, passphrase=PASSPHRASE, settings=fast_settings)
    yield db
    db.close()


@pytest.fixture
def clocked_db(clock: ManualClock) -> Iterator[mangostore.Database]:
    """An in-memory, unencrypted database on the manual ``clock``."""
    database = mangostore.open(":memory:", encrypted=False, clock=clock)
    yield database
    database.close()


@pytest.fixture
def clocked_memory_db(clock: ManualClock, fast_settings: Settings) -> Iterator[mangostore.Database]:
    """An in-memory database with a keyring (sensitive fields and the audit log keyed),
    on the manual ``clock``."""
    database = mangostore.open(
        ":memory:", passphrase=PASSPHRASE, settings=fast_settings, clock=clock
    )
    yield database
    database.close()


@pytest.fixture
def clocked_file_db(
    db_path: Path, clock: ManualClock, fast_settings: Settings
) -> Iterator[mangostore.Database]:
    """A new encrypted file database (WAL, reader pool) on the manual ``clock``; its
    recovery key is not kept."""
    created = mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings, clock=clock)
    database = created.db
    yield database
    database.close()


@pytest.fixture
def clocked_plain_file_db(db_path: Path, clock: ManualClock) -> Iterator[mangostore.Database]:
    """A new unencrypted file database (WAL, reader pool) on the manual ``clock``."""
    database = mangostore.create(db_path, encrypted=False, clock=clock).db
    yield database
    database.close()


#: Password hashing as cheap as the library allows, for tests that hash many passwords.
CHEAP_PASSWORDS = AuthPolicy(password=PasswordParams(memory_kib=64, time_cost=1, parallelism=1))


class Sleeps(list[float]):
    """Records the back-off delays of failed logins instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    """The back-off delays ``auth_db`` would have slept, in seconds."""
    return Sleeps()


@pytest.fixture
def auth_db(clocked_file_db: mangostore.Database, sleeps: Sleeps) -> mangostore.Database:
    """``clocked_file_db`` with cheap password hashing; back-off delays go to ``sleeps``."""
    clocked_file_db.auth.configure(policy=CHEAP_PASSWORDS, sleep=sleeps)
    return clocked_file_db


#: When ``notify_world`` starts: 2024-06-01 12:00 UTC.
NOTIFY_START = 1_717_243_200_000


@dataclass
class NotifyWorld:
    """A database ready to send notifications: its clock, the user ``ann`` (``user``
    is her id) and a recording deliverer for ``desktop`` and for ``voice``."""

    db: mangostore.Database
    clock: ManualClock
    user: str
    desktop: RecordingDeliverer
    voice: RecordingDeliverer


@pytest.fixture
def notify_world() -> Iterator[NotifyWorld]:
    """An in-memory database at :data:`NOTIFY_START` on a manual clock of its own,
    with ``ann`` and both deliverers registered; each module registers its own types."""
    clock = ManualClock(NOTIFY_START)
    with mangostore.open(":memory:", encrypted=False, clock=clock) as db:
        user = db.users.create(username="ann")
        desktop, voice = RecordingDeliverer("desktop"), RecordingDeliverer("voice")
        db.notify.register_deliverer(desktop)
        db.notify.register_deliverer(voice)
        yield NotifyWorld(db, clock, user.id, desktop, voice)


@pytest.fixture
def graph() -> Iterator[Graph]:
    """An in-memory database, its knowledge graph (no embedder), a user and the clock."""
    yield from open_graph()


# -- sync ------------------------------------------------------------------------------------


class SteppingClock(ManualClock):
    """A manual clock that moves one millisecond at every reading."""

    def now_ms(self) -> int:
        """Return the time, then move it on by a millisecond."""
        return self.advance(1) - 1


@pytest.fixture
def relay() -> MemoryRelay:
    """An in-process relay that keeps only sealed batches."""
    return MemoryRelay()


@pytest.fixture
def devices(
    relay: MemoryRelay, fast_settings: Settings
) -> Iterator[Callable[[int], list[mangostore.Database]]]:
    """``devices(n)``: n in-memory databases of one vault, sync enabled, on ``relay``.

    The first is made with ``mangostore.create``; the others join its vault with
    ``db.sync.new_device``. Helpers: tests/sync_helpers.py.
    """
    made: list[mangostore.Database] = []
    # One clock for every device, a millisecond further at each reading: what happens
    # later in the test is later for the merge rules too, on any machine.
    clock = SteppingClock()

    def make(count: int) -> list[mangostore.Database]:
        first, _ = mangostore.create(
            ":memory:", passphrase=PASSPHRASE, settings=fast_settings, clock=clock
        )
        first.sync.enable(relay)
        made.append(first)
        group = [first]
        for _ in range(count - 1):
            other, _ = first.sync.new_device(
                ":memory:", PASSPHRASE, settings=fast_settings, clock=clock
            )
            other.sync.connect(relay)
            made.append(other)
            group.append(other)
        return group

    yield make
    for db in made:
        db.close()
