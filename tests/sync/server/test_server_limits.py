"""The sync server's abuse limits and input checks, and the device side's retries.

Ids that could be paths, malformed JSON, wrong types, bad base64, oversized bodies
(declared or chunked) and floods are each refused with their status, a JSON error
code and a message saying what to do, and nothing is stored. One vault's flood does
not stop another's devices. :class:`~mangostore.sync.http.HttpTransport` retries a
429 after its ``Retry-After`` and gives up on an unreachable server after its
configured retries.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.sync.server.api_helpers import Member, Server, bearer, new_device, refused, serve

import mangostore
from mangostore.errors import ConfigurationError, SyncTransportError
from mangostore.sync.server.settings import ServerSettings
from mangostore.sync.server.sql_store import SqlRelayStore
from mangostore.sync.server.sqlite_store import SqliteRelayStore
from mangostore.sync.server.store import StoreStats

EMPTY = StoreStats(vaults=0, devices=0, batches=0, batch_bytes=0, snapshot_bytes=0, blob_bytes=0)
SMALL = ServerSettings(max_body_bytes=4096, max_escrow_bytes=512, address_burst=1000)


@pytest.fixture
def server(relay_store: SqlRelayStore) -> Server:
    """The app with small body limits over a fresh store, once per engine."""
    return serve(relay_store, SMALL)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteRelayStore]:
    """A fresh SQLite store (for the tests of the HTTP layer alone)."""
    store = SqliteRelayStore(tmp_path / "relay.sqlite")
    yield store
    store.close()


@pytest.fixture
def device() -> Iterator[mangostore.Database]:
    """The first device of a new vault."""
    db = new_device()
    yield db
    db.close()


def _push_body(sender: str, **changes: Any) -> dict[str, Any]:
    """A push request from ``sender``, with ``changes`` made to it."""
    body: dict[str, Any] = {"device_id": sender, "number": 1, "schema_version": 1}
    body["body"] = "c2VhbGVk"
    body.update(changes)
    return body


# -- ids and request shapes --------------------------------------------------------------


@pytest.mark.parametrize("vault_id", ["%2E%2E", "." * 2 + "x", "a" * 200, "-leading-dash", "a%20b"])
def test_vault_ids_that_could_be_paths_are_malformed(server: Server, vault_id: str) -> None:
    response = server.client.post(f"/v1/vaults/{vault_id}/challenge", json={"device_id": "d1"})
    refused(response, 422, "malformed", "vault_id")
    assert server.store.stats() == EMPTY


def test_an_encoded_slash_in_an_id_matches_no_route(server: Server) -> None:
    response = server.client.post("/v1/vaults/a%2Fb/challenge", json={"device_id": "d1"})
    assert response.status_code == 404
    assert server.store.stats() == EMPTY


def test_a_request_matching_no_route_gets_the_documented_error_shape(
    sqlite_store: SqliteRelayStore,
) -> None:
    server = serve(sqlite_store)
    refused(server.client.post("/v1/vaults/a%2Fb/challenge", json={}), 404, "not_found", "")


@pytest.mark.parametrize("device_id", ["..", "a/b", "d" * 200, ""])
def test_device_ids_that_could_be_paths_are_malformed(server: Server, device_id: str) -> None:
    member = Member()
    response = server.client.post(
        f"/v1/vaults/{member.vault_id}/challenge", json={"device_id": device_id}
    )
    refused(response, 422, "malformed", "device_id")
    token = member.token(server.client)
    before = server.store.stats()
    pushed = server.client.post(
        f"/v1/vaults/{member.vault_id}/batches", json=_push_body(device_id), headers=bearer(token)
    )
    refused(pushed, 422, "malformed", "device_id")
    assert server.store.stats() == before


def test_an_invalid_snapshot_id_in_a_path_is_malformed(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    response = server.client.put(
        f"/v1/vaults/{member.vault_id}/snapshots/{'s' * 200}/parts/0",
        json={"cursor": 0, "schema_version": 1, "last": True, "body": "AA=="},
        headers=bearer(token),
    )
    refused(response, 422, "malformed", "snapshot_id")
    assert server.store.latest_snapshot(member.vault_id) is None
    assert server.store.stats().snapshot_bytes == 0


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'"text"', b"", b'{"device_id": "d1"', b"{'device_id': 'd1'}"],
)
def test_malformed_json_is_refused(server: Server, content: bytes) -> None:
    member = Member()
    response = server.client.post(
        f"/v1/vaults/{member.vault_id}/challenge",
        content=content,
        headers={"content-type": "application/json"},
    )
    refused(response, 422, "malformed", "malformed request at body")
    assert server.store.stats() == EMPTY


def test_a_body_that_is_not_utf8_is_malformed(sqlite_store: SqliteRelayStore) -> None:
    server = serve(sqlite_store)
    response = server.client.post(
        "/v1/vaults/v1/challenge",
        content=b'{"device_id": "\xff"}',
        headers={"content-type": "application/json"},
    )
    assert sqlite_store.stats() == EMPTY
    refused(response, 422, "malformed", "body")


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"number": "one"}, "body.number"),
        ({"number": 0}, "body.number"),
        ({"schema_version": None}, "body.schema_version"),
        ({"body": 12}, "body.body"),
        ({"device_id": ["d1"]}, "body.device_id"),
        ({"number": 1.5}, "body.number"),
    ],
)
def test_wrong_types_are_malformed_and_store_nothing(
    server: Server, changes: dict[str, Any], where: str
) -> None:
    member = Member()
    token = member.token(server.client)
    before = server.store.stats()
    response = server.client.post(
        f"/v1/vaults/{member.vault_id}/batches",
        json=_push_body(member.device_id, **changes),
        headers=bearer(token),
    )
    refused(response, 422, "malformed", where)
    assert server.store.stats() == before
    assert server.store.pull(member.vault_id, 0, 10) == []


def test_a_body_that_is_not_base64_is_malformed(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    response = server.client.post(
        f"/v1/vaults/{member.vault_id}/batches",
        json=_push_body(member.device_id, body="*** not base64 ***"),
        headers=bearer(token),
    )
    refused(response, 422, "malformed", "base64")
    assert server.store.pull(member.vault_id, 0, 10) == []


# -- sizes ---------------------------------------------------------------------------------


def test_a_body_declared_too_large_is_refused_before_it_is_read(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    before = server.store.stats()
    big = "A" * (SMALL.max_body_bytes + 4)
    response = server.client.post(
        f"/v1/vaults/{member.vault_id}/batches",
        json=_push_body(member.device_id, body=big),
        headers=bearer(token),
    )
    refused(response, 413, "too_large", str(SMALL.max_body_bytes))
    assert "smaller" in response.json()["message"]
    assert server.store.stats() == before
    assert server.store.pull(member.vault_id, 0, 10) == []


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    before = server.store.stats()

    def chunks() -> Iterator[bytes]:
        yield b'{"device_id": "' + member.device_id.encode() + b'", "number": 1, '
        yield b'"schema_version": 1, "body": "'
        for _ in range(SMALL.max_body_bytes // 1000 + 2):
            yield b"A" * 1000
        yield b'"}'

    response = server.client.post(
        f"/v1/vaults/{member.vault_id}/batches",
        content=chunks(),
        headers={**bearer(token), "content-type": "application/json"},
    )
    assert response.request.headers.get("content-length") is None
    assert server.store.stats() == before
    refused(response, 413, "too_large", "limit")


def test_an_escrow_copy_over_its_limit_is_refused(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    escrow = {"master": "k" * (SMALL.max_escrow_bytes + 1)}
    response = server.client.put(
        f"/v1/vaults/{member.vault_id}/escrow", json={"escrow": escrow}, headers=bearer(token)
    )
    refused(response, 413, "too_large", "escrow")
    assert server.store.escrow(member.vault_id) is None


def test_unsafe_server_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        ServerSettings(max_body_bytes=0)
    with pytest.raises(ConfigurationError, match="device_rate"):
        ServerSettings(device_rate=0)
    with pytest.raises(ConfigurationError, match="lifetimes"):
        ServerSettings(token_ttl_s=0)


# -- rates -----------------------------------------------------------------------------------


def test_a_device_over_its_rate_waits_while_other_vaults_are_served(
    relay_store: SqlRelayStore,
) -> None:
    server = serve(relay_store, ServerSettings(device_rate=1, device_burst=2))
    flooder, neighbour = Member(), Member()
    token, other = flooder.token(server.client), neighbour.token(server.client)
    assert flooder.push(server.client, token, 1, b"one").status_code == 200
    assert flooder.push(server.client, token, 2, b"two").status_code == 200
    limited = flooder.push(server.client, token, 3, b"three")
    refused(limited, 429, "rate_limited", "wait 1 s")
    assert limited.headers["retry-after"] == "1"
    assert [b.number for b in server.store.pull(flooder.vault_id, 0, 10)] == [1, 2]
    assert neighbour.push(server.client, other, 1, b"next door").status_code == 200
    assert [b.number for b in server.store.pull(neighbour.vault_id, 0, 10)] == [1]


def test_http_transport_retries_a_429_after_retry_after(
    sqlite_store: SqliteRelayStore, device: mangostore.Database
) -> None:
    """One retry with a back-off of a millisecond succeeds only if the transport
    waited the ``Retry-After`` second (its waits move the server's clock)."""
    server = serve(sqlite_store, ServerSettings(device_rate=1, device_burst=2))
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        server.clock.advance(int(seconds * 1000))

    transport = server.transport(device, retries=1, backoff_s=0.001, sleep=wait)
    transport.authenticate(attach=True)
    for _ in range(3):
        assert [d["device_id"] for d in transport.devices()] == [device.sync.device_id]
    assert server.statuses("/devices") == [200, 200, 429, 200]
    assert waits == [1.0]


def test_http_transport_gives_up_on_an_unreachable_server(device: mangostore.Database) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed.
    attempts: list[str] = []
    client = httpx.Client(
        timeout=2.0, event_hooks={"request": [lambda r: attempts.append(str(r.url))]}
    )
    transport = device.sync.server(
        f"http://127.0.0.1:{port}", retries=1, backoff_s=0.001, client=client
    )
    with pytest.raises(SyncTransportError, match="cannot be reached"):
        transport.authenticate(attach=True)
    assert len(attempts) == 2
    assert all(a.endswith("/challenge") for a in attempts)
    transport.close()
