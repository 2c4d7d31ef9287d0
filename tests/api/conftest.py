"""Fixtures of the HTTP API's tests: a database with two users and a client.

``api`` is an in-memory database with a keyring on a manual clock (so rate limits
refill only when a test moves the clock), cheap password hashing, no embedder, and:

- ``ann``: every permission (``admin`` on every resource type and id);
- ``bob``: no permission at all.

``api.client`` is a ``TestClient`` over ``create_app``; ``api.headers(user)`` the
bearer header of a fresh session of that user.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from tests.conftest import CHEAP_PASSWORDS, FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.api import ApiSettings, create_app
from mangostore.clock import ManualClock
from mangostore.records import User

#: The password of both users.
PASSWORD = "a long passphrase"
RESOURCE_TYPES = ("project", "terminal", "voice", "ai")


@dataclass
class ApiWorld:
    """A database behind the API, its clock, two users and a client."""

    db: mangostore.Database
    clock: ManualClock
    client: TestClient
    ann: User
    bob: User

    def headers(self, user: User, *, security_level: str = "standard") -> dict[str, str]:
        """The ``Authorization`` header of a new session of ``user``."""
        token = self.db.sessions.issue(user.id, security_level=security_level).token
        return {"Authorization": f"Bearer {token}"}


def open_world(settings: ApiSettings) -> Iterator[ApiWorld]:
    """An :class:`ApiWorld` whose app has ``settings``."""
    clock = ManualClock()
    db = mangostore.open(
        ":memory:", passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF), clock=clock
    )
    try:
        db.auth.configure(policy=CHEAP_PASSWORDS, sleep=lambda _seconds: None)
        db.kg.set_embedder(None)
        ann = db.auth.create_user_with_password("ann", PASSWORD)
        bob = db.auth.create_user_with_password("bob", PASSWORD)
        for resource_type in RESOURCE_TYPES:
            db.access.grant(ann.id, resource_type, "*", "admin")
        with TestClient(create_app(db, settings)) as client:
            yield ApiWorld(db, clock, client, ann, bob)
    finally:
        db.close()


@pytest.fixture
def api() -> Iterator[ApiWorld]:
    """The API over a fresh database with ``ann`` (every permission) and ``bob`` (none)."""
    yield from open_world(ApiSettings(page_size=2, stream_poll_ms=10))
