"""Helpers of the sync server's HTTP tests: the app in process, raw members of vaults.

:func:`serve` puts :func:`~mangostore.sync.server.app.create_app` behind a
``TestClient`` (an ``httpx.Client``) on a manual clock, noting every request it
answers, so a test drives it either by raw HTTP or through
:class:`~mangostore.sync.http.HttpTransport` (``client=server.client``).
:class:`Member` is a vault's signing key without a database, for tests of the
challenge and token routes that need no device.
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.exceptions import StarletteDeprecationWarning
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.sync.http import HttpTransport
from mangostore.sync.identity import b64decode, b64encode, challenge_message
from mangostore.sync.server.app import create_app
from mangostore.sync.server.settings import ServerSettings
from mangostore.sync.server.store import RelayStore

with warnings.catch_warnings():
    # Starlette would rather use httpx2; HttpTransport takes an httpx client, which the
    # TestClient is as long as httpx2 is not installed.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = [
    "URL",
    "Member",
    "Seen",
    "Server",
    "TestClient",
    "bearer",
    "new_device",
    "refused",
    "serve",
]

#: The base URL the TestClient answers.
URL = "http://testserver"
#: When every server clock of these tests starts.
START_MS = 1_700_000_000_000


@dataclass(frozen=True)
class Seen:
    """One request the server answered."""

    method: str
    path: str
    params: dict[str, str]
    status: int


@dataclass
class Server:
    """The app over ``store``, its manual clock and a client noting each answer."""

    store: RelayStore
    settings: ServerSettings
    clock: ManualClock
    client: TestClient
    seen: list[Seen] = field(default_factory=list)

    def transport(self, db: mangostore.Database, **options: Any) -> HttpTransport:
        """``db``'s transport to this server (no real sleeps: tiny back-off), through
        the shared client (which closing ``db`` leaves open: its owner is the test)."""
        options.setdefault("backoff_s", 0.001)
        options.setdefault("client", self.client)
        return db.sync.server(URL, **options)

    def new_client(self) -> TestClient:
        """Another client of the same app, noting its answers in :attr:`seen` too."""
        client = TestClient(self.client.app)
        client.event_hooks = {"request": [], "response": [self.note]}
        return client

    def note(self, response: httpx.Response) -> None:
        """Note an answered request (a response hook of the clients)."""
        url = response.request.url
        self.seen.append(
            Seen(response.request.method, url.path, dict(url.params), response.status_code)
        )

    def statuses(self, path_part: str) -> list[int]:
        """The statuses of the answered requests whose path holds ``path_part``."""
        return [s.status for s in self.seen if path_part in s.path]


def serve(store: RelayStore, settings: ServerSettings | None = None) -> Server:
    """The sync server app over ``store`` behind a TestClient on a manual clock."""
    conf = settings or ServerSettings(address_burst=1000)
    clock = ManualClock(START_MS)
    client = TestClient(create_app(store, conf, clock=clock))
    server = Server(store, conf, clock, client)
    client.event_hooks = {"request": [], "response": [server.note]}
    return server


@dataclass
class Member:
    """A vault's signing key and one of its device ids, held by the test."""

    vault_id: str = field(default_factory=lambda: f"v{uuid.uuid4().hex}")
    device_id: str = field(default_factory=lambda: f"d{uuid.uuid4().hex}")
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_key(self) -> str:
        """The public key as the token route takes it."""
        return b64encode(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def device(self, device_id: str) -> Member:
        """Another device of the same vault (same key)."""
        return Member(self.vault_id, device_id, self.key)

    def challenge(self, client: httpx.Client) -> bytes:
        """A challenge the server issued to this device."""
        response = client.post(
            f"/v1/vaults/{self.vault_id}/challenge", json={"device_id": self.device_id}
        )
        assert response.status_code == 200, response.text
        return b64decode(response.json()["challenge"])

    def answer(self, challenge: bytes, *, attach: bool = True) -> dict[str, Any]:
        """The token request answering ``challenge``, signed with this member's key."""
        signature = self.key.sign(challenge_message(self.vault_id, self.device_id, challenge))
        body: dict[str, Any] = {
            "device_id": self.device_id,
            "challenge": b64encode(challenge),
            "signature": b64encode(signature),
        }
        if attach:
            body["public_key"] = self.public_key
        return body

    def ask_token(self, client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
        """Post a token request for this member's vault."""
        return client.post(f"/v1/vaults/{self.vault_id}/token", json=body)

    def token(self, client: httpx.Client, *, attach: bool = True) -> str:
        """A bearer token for this device (attaching the vault when it is new)."""
        response = self.ask_token(client, self.answer(self.challenge(client), attach=attach))
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def push(self, client: httpx.Client, token: str, number: int, body: bytes) -> httpx.Response:
        """Push one (opaque) batch as this device."""
        return client.post(
            f"/v1/vaults/{self.vault_id}/batches",
            json={
                "device_id": self.device_id,
                "number": number,
                "schema_version": 1,
                "body": b64encode(body),
            },
            headers=bearer(token),
        )


def refused(response: httpx.Response, status: int, code: str, words: str) -> None:
    """``response`` is the JSON error ``code`` with ``status``, its message naming ``words``."""
    assert response.status_code == status, response.text
    doc = response.json()
    assert doc.get("error") == code, doc
    assert words in doc["message"], doc


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def new_device() -> mangostore.Database:
    """A new in-memory encrypted database (the first device of a new vault)."""
    return mangostore.create(":memory:", passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)).db
