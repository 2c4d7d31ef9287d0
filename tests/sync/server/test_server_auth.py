"""The sync server's proof of membership and its bearer tokens, refused every wrong way.

Each refusal is checked for its status, its error code, a message saying what to do,
and that the store kept nothing of it (no vault made, no device admitted, no batch).
The raw HTTP tests run on both stores; the device side (HttpTransport) on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.sync.server.api_helpers import Member, Server, bearer, new_device, refused, serve

import mangostore
from mangostore.errors import SyncAuthError
from mangostore.sync.identity import b64encode
from mangostore.sync.server.settings import ServerSettings
from mangostore.sync.server.sql_store import SqlRelayStore
from mangostore.sync.server.store import StoreStats

EMPTY = StoreStats(vaults=0, devices=0, batches=0, batch_bytes=0, snapshot_bytes=0, blob_bytes=0)


@pytest.fixture
def server(relay_store: SqlRelayStore) -> Server:
    """The app over a fresh store, once per engine."""
    return serve(relay_store)


@pytest.fixture
def device() -> Iterator[mangostore.Database]:
    """The first device of a new vault."""
    db = new_device()
    yield db
    db.close()


# -- challenges ----------------------------------------------------------------------------


def test_a_challenge_for_an_unknown_vault_is_issued_and_tells_nothing(server: Server) -> None:
    stranger = Member()
    known = Member()
    known.token(server.client)
    answers = [
        server.client.post(
            f"/v1/vaults/{m.vault_id}/challenge", json={"device_id": m.device_id}
        ).json()
        for m in (stranger, known)
    ]
    assert [sorted(a) for a in answers] == [["challenge", "expires_at"]] * 2
    assert answers[0]["expires_at"] == answers[1]["expires_at"]
    assert server.store.vault(stranger.vault_id) is None


def test_a_forged_signature_is_refused_and_creates_no_vault(server: Server) -> None:
    member = Member()
    body = member.answer(member.challenge(server.client))
    body["signature"] = b64encode(bytes(64))
    refused(member.ask_token(server.client, body), 401, "unauthorised", "challenge")
    assert server.store.vault(member.vault_id) is None
    assert server.store.stats() == EMPTY


def test_a_signature_by_another_key_than_the_one_offered_creates_no_vault(
    server: Server,
) -> None:
    member, forger = Member(), Member()
    body = member.answer(member.challenge(server.client))
    body["public_key"] = forger.public_key
    refused(member.ask_token(server.client, body), 401, "unauthorised", "device of this vault")
    assert server.store.stats() == EMPTY


def test_a_replayed_challenge_is_refused(server: Server) -> None:
    member = Member()
    body = member.answer(member.challenge(server.client))
    assert member.ask_token(server.client, body).status_code == 200
    refused(member.ask_token(server.client, body), 401, "challenge_invalid", "used")
    assert server.store.stats().devices == 1
    assert len(server.store.devices(member.vault_id)) == 1


def test_a_challenge_issued_to_another_device_is_refused(server: Server) -> None:
    member = Member()
    member.token(server.client)
    other = member.device("d-other")
    challenge = member.challenge(server.client)  # issued to member's device
    refused(
        other.ask_token(server.client, other.answer(challenge)),
        401,
        "challenge_invalid",
        "unknown, used or expired",
    )
    assert [d.device_id for d in server.store.devices(member.vault_id)] == [member.device_id]


def test_a_challenge_issued_for_another_vault_is_refused(server: Server) -> None:
    member, elsewhere = Member(), Member()
    challenge = elsewhere.challenge(server.client)
    twin = Member(member.vault_id, elsewhere.device_id, member.key)
    refused(
        twin.ask_token(server.client, twin.answer(challenge)),
        401,
        "challenge_invalid",
        "unknown, used or expired",
    )
    assert server.store.stats() == EMPTY


def test_an_expired_challenge_is_refused(server: Server) -> None:
    member = Member()
    challenge = member.challenge(server.client)
    server.clock.advance(server.settings.challenge_ttl_s * 1000 + 1)
    refused(
        member.ask_token(server.client, member.answer(challenge)),
        401,
        "challenge_invalid",
        "expired",
    )
    assert server.store.stats() == EMPTY


def test_token_requests_that_are_not_base64_are_malformed(server: Server) -> None:
    member = Member()
    body = member.answer(member.challenge(server.client))
    body["signature"] = "not base64!"
    refused(member.ask_token(server.client, body), 422, "malformed", "base64")
    assert server.store.stats() == EMPTY


# -- attaching ---------------------------------------------------------------------------


def test_the_first_token_with_a_public_key_attaches_the_vault(server: Server) -> None:
    member = Member()
    response = member.ask_token(server.client, member.answer(member.challenge(server.client)))
    assert response.status_code == 200
    assert response.json()["created"] is True
    vault = server.store.vault(member.vault_id)
    assert vault is not None
    assert b64encode(vault.public_key) == member.public_key
    again = member.ask_token(server.client, member.answer(member.challenge(server.client)))
    assert again.json()["created"] is False


def test_without_a_public_key_an_unknown_vault_is_refused(server: Server) -> None:
    member = Member()
    body = member.answer(member.challenge(server.client), attach=False)
    refused(member.ask_token(server.client, body), 401, "unauthorised", "device of this vault")
    assert server.store.stats() == EMPTY


def test_another_key_for_an_attached_vault_is_refused(server: Server) -> None:
    owner = Member()
    owner.token(server.client)
    usurper = Member(owner.vault_id, "d-usurper")
    body = usurper.answer(usurper.challenge(server.client))
    refused(usurper.ask_token(server.client, body), 401, "unauthorised", "device of this vault")
    vault = server.store.vault(owner.vault_id)
    assert vault is not None
    assert b64encode(vault.public_key) == owner.public_key
    assert [d.device_id for d in server.store.devices(owner.vault_id)] == [owner.device_id]


def test_http_transport_refused_by_another_key_raises_sync_auth_error(
    sqlite_server: Server, device: mangostore.Database
) -> None:
    squatter = Member(device.sync.vault_id, "d-squatter")
    squatter.token(sqlite_server.client)  # the vault id is taken under another key
    with pytest.raises(SyncAuthError, match="refused this device's signature"):
        sqlite_server.transport(device).authenticate(attach=True)
    assert [d.device_id for d in sqlite_server.store.devices(device.sync.vault_id)] == [
        "d-squatter"
    ]
    assert sqlite_server.store.escrow(device.sync.vault_id) is None


def test_attach_end_to_end_keeps_the_escrow_and_syncs(
    sqlite_server: Server, device: mangostore.Database
) -> None:
    url = device.sync.attach("http://testserver", client=sqlite_server.client)
    vault_id = device.sync.vault_id
    assert url == f"http://testserver/vaults/{vault_id}"
    assert device.sync.relay == "http://testserver"
    assert sqlite_server.store.escrow(vault_id) is not None
    device.users.create(username="ann")
    report = device.sync.sync()
    assert report.pushed_batches >= 1
    assert sqlite_server.store.stats().batches == report.pushed_batches
    assert [d.device_id for d in sqlite_server.store.devices(vault_id)] == [device.sync.device_id]


# -- bearer tokens -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "unauthenticated"),
        ("Basic dXNlcjpwYXNz", "unauthenticated"),
        ("Bearer ", "unauthenticated"),
        ("Bearer garbage-token", "token_invalid"),
    ],
)
def test_a_missing_or_garbage_bearer_is_refused(
    server: Server, header: str | None, code: str
) -> None:
    member = Member()
    member.token(server.client)
    headers = {} if header is None else {"Authorization": header}
    response = server.client.post(
        f"/v1/vaults/{member.vault_id}/batches",
        json={"device_id": member.device_id, "number": 1, "schema_version": 1, "body": "AA=="},
        headers=headers,
    )
    refused(response, 401, code, "oken")
    assert server.store.stats().batches == 0


def test_an_expired_token_is_refused(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    server.clock.advance(server.settings.token_ttl_s * 1000 + 1)
    response = server.client.get(f"/v1/vaults/{member.vault_id}/devices", headers=bearer(token))
    refused(response, 401, "token_invalid", "expired")
    assert member.push(server.client, token, 1, b"x").status_code == 401
    assert server.store.stats().batches == 0


def test_http_transport_renews_an_expired_token(
    sqlite_server: Server, device: mangostore.Database
) -> None:
    transport = sqlite_server.transport(device)
    transport.authenticate(attach=True)
    sqlite_server.clock.advance(sqlite_server.settings.token_ttl_s * 1000 + 1)
    assert [d["device_id"] for d in transport.devices()] == [device.sync.device_id]
    assert sqlite_server.statuses("/devices") == [401, 200]
    assert sqlite_server.statuses("/token") == [200, 200]


def test_a_removed_devices_token_stops_at_once(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    other = member.device("d-other")
    other_token = other.token(server.client)
    removed = server.client.delete(
        f"/v1/vaults/{member.vault_id}/devices/{other.device_id}", headers=bearer(token)
    )
    assert removed.status_code == 204
    refused(other.push(server.client, other_token, 1, b"x"), 401, "token_invalid", "revoked")
    body = other.answer(other.challenge(server.client))
    refused(other.ask_token(server.client, body), 403, "device_removed", "removed")
    assert server.store.stats().batches == 0
    assert server.store.stats().devices == 1


def test_http_transport_of_a_removed_device_raises_sync_auth_error(
    sqlite_server: Server, device: mangostore.Database
) -> None:
    first = sqlite_server.transport(device)
    first.authenticate(attach=True)
    second_db, _ = device.sync.new_device(":memory:", "another passphrase 123")
    try:
        second = sqlite_server.transport(second_db)
        second.authenticate()
        first.remove_device(second_db.sync.device_id)
        with pytest.raises(SyncAuthError, match="removed"):
            second.devices()
    finally:
        second_db.close()
    assert sqlite_server.statuses("/devices") == [204, 401]
    assert sqlite_server.statuses("/token")[-1] == 403


# -- one vault's token on another's routes -------------------------------------------------


@pytest.mark.parametrize("victim_exists", [True, False])
def test_a_token_of_vault_a_opens_nothing_of_vault_b(server: Server, victim_exists: bool) -> None:
    intruder, victim = Member(), Member()
    token = intruder.token(server.client)
    if victim_exists:
        victim_token = victim.token(server.client)
        assert victim.push(server.client, victim_token, 1, b"sealed").status_code == 200
    before = server.store.stats()
    base = f"/v1/vaults/{victim.vault_id}"
    push_body = {"device_id": intruder.device_id, "number": 1, "schema_version": 1, "body": "AA=="}
    part_body = {"cursor": 0, "schema_version": 1, "last": True, "body": "AA=="}
    answers = [
        server.client.get(f"{base}/batches", headers=bearer(token)),
        server.client.post(f"{base}/batches", json=push_body, headers=bearer(token)),
        server.client.get(f"{base}/devices", headers=bearer(token)),
        server.client.delete(f"{base}/devices/{victim.device_id}", headers=bearer(token)),
        server.client.get(f"{base}/snapshots/latest", headers=bearer(token)),
        server.client.put(f"{base}/snapshots/s1/parts/0", json=part_body, headers=bearer(token)),
        server.client.get(f"{base}/snapshots/s1/parts/0", headers=bearer(token)),
        server.client.put(f"{base}/escrow", json={"escrow": {"x": 1}}, headers=bearer(token)),
        server.client.post(
            f"{base}/blobs/missing", json={"names": ["a" * 64]}, headers=bearer(token)
        ),
        server.client.put(
            f"{base}/blobs/{'a' * 64}",
            params={"owner": "1" * 32},
            content=b"sealed",
            headers=bearer(token),
        ),
        server.client.get(f"{base}/blobs/{'a' * 64}", headers=bearer(token)),
        server.client.delete(f"{base}/blobs", params={"owner": "1" * 32}, headers=bearer(token)),
    ]
    for response in answers:
        refused(response, 403, "forbidden", "not for that vault")
    # The answers are the same whether vault B exists or not: nothing about it leaks.
    assert len({r.text for r in answers}) == 1
    assert server.store.stats() == before
    assert server.store.escrow(victim.vault_id) is None
    if victim_exists:
        assert [d.removed_at for d in server.store.devices(victim.vault_id)] == [None]


def test_escrow_is_the_one_unauthenticated_vault_route(server: Server) -> None:
    """The escrow copy is served to whoever names the vault id: it is the master key
    wrapped under Argon2id (what a joining device needs before it can prove anything),
    so the vault id is its only gate. An unknown vault and a vault with no escrow copy
    get the same 404."""
    member, keyless = Member(), Member()
    token = member.token(server.client)
    keyless.token(server.client)
    escrow = {"format": "opaque to the server", "vault_id": member.vault_id}
    put = server.client.put(
        f"/v1/vaults/{member.vault_id}/escrow", json={"escrow": escrow}, headers=bearer(token)
    )
    assert put.status_code == 204
    assert server.client.get(f"/v1/vaults/{member.vault_id}/escrow").json() == {"escrow": escrow}
    unknown = server.client.get(f"/v1/vaults/{Member().vault_id}/escrow")
    without = server.client.get(f"/v1/vaults/{keyless.vault_id}/escrow")
    refused(unknown, 404, "not_found", "no vault")
    assert (unknown.status_code, unknown.text) == (without.status_code, without.text)


def test_blob_routes_refuse_bad_names_owners_and_bodies(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    base = f"/v1/vaults/{member.vault_id}/blobs"
    before = server.store.stats()
    answers = [
        server.client.get(f"{base}/{'A' * 64}", headers=bearer(token)),
        server.client.get(f"{base}/abc", headers=bearer(token)),
        server.client.put(
            f"{base}/{'a' * 64}", params={"owner": "x"}, content=b"s", headers=bearer(token)
        ),
        server.client.put(
            f"{base}/{'a' * 64}", params={"owner": "1" * 32}, content=b"", headers=bearer(token)
        ),
        server.client.post(
            f"{base}/missing", json={"names": ["a" * 64] * 1025}, headers=bearer(token)
        ),
        server.client.delete(base, params={"owner": "' OR 1=1 --"}, headers=bearer(token)),
    ]
    assert [r.status_code for r in answers] == [422] * 6
    assert {r.json()["error"] for r in answers} == {"malformed"}
    assert server.store.stats() == before
    missing = server.client.get(f"{base}/{'a' * 64}", headers=bearer(token))
    refused(missing, 404, "not_found", "no such chunk")


def test_a_device_pushes_only_its_own_batches(server: Server) -> None:
    member = Member()
    token = member.token(server.client)
    impostor = member.device("d-someone-else")
    refused(impostor.push(server.client, token, 1, b"x"), 403, "forbidden", "own batches")
    assert server.store.stats().batches == 0
    assert server.store.pull(member.vault_id, 0, 10) == []


def test_the_sweep_drops_expired_challenges_and_tokens(relay_store: SqlRelayStore) -> None:
    server = serve(relay_store, ServerSettings(address_burst=1000))
    member = Member()
    member.token(server.client)
    member.challenge(server.client)
    server.clock.advance(server.settings.token_ttl_s * 1000 + 1)
    assert relay_store.sweep(server.clock.now_ms()) == 2
