"""The sync server's HTTP API in process: health, OpenAPI and metrics, the escrow copy
of the vault's key and joining with it, and snapshots (a new device starts from the
latest; a changed part is refused; compacted batches send a device to the snapshot).

Authentication is tested in test_server_auth.py, limits and input checks in
test_server_limits.py; helpers are in api_helpers.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.sync.server.api_helpers import URL, Member, Server, bearer, new_device, serve
from tests.sync.server.conftest import StoreTarget

import mangostore
from mangostore import Settings
from mangostore.errors import (
    ConfigurationError,
    KeyringCorruptError,
    SyncCompactedError,
    SyncTransportError,
    TamperedDataError,
    WrongPassphraseError,
)
from mangostore.keys.keyring import Keyring
from mangostore.sync.http import fetch_escrow
from mangostore.sync.identity import VaultSigner
from mangostore.sync.joining import join
from mangostore.sync.server.sql_store import SqlRelayStore

SETTINGS = Settings(kdf=FAST_KDF)


@pytest.fixture
def opened() -> Iterator[list[mangostore.Database]]:
    """Databases a test opens, closed after it."""
    made: list[mangostore.Database] = []
    yield made
    for db in made:
        db.close()


def _attached(server: Server, opened: list[mangostore.Database]) -> mangostore.Database:
    """The first device of a new vault, attached to ``server``."""
    first = new_device()
    opened.append(first)
    first.sync.attach(URL, client=server.client)
    return first


def _other(
    server: Server, first: mangostore.Database, opened: list[mangostore.Database]
) -> mangostore.Database:
    """Another (empty) device of ``first``'s vault, connected to ``server``."""
    other: mangostore.Database = first.sync.new_device(":memory:", PASSPHRASE, settings=SETTINGS)[0]
    opened.append(other)
    other.sync.connect(server.transport(other))
    return other


def _usernames(db: mangostore.Database) -> list[str]:
    return sorted(str(u.username) for u in db.users.list())


# -- health, OpenAPI, metrics ------------------------------------------------------------


def test_health_answers_ok(relay_store: SqlRelayStore) -> None:
    server = serve(relay_store)
    response = server.client.get("/v1/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_openapi_lists_every_route(sqlite_server: Server) -> None:
    doc = sqlite_server.client.get("/openapi.json").json()
    routes = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    vault = "/v1/vaults/{vault_id}"
    assert routes == {
        ("/v1/health", "get"),
        (f"{vault}/challenge", "post"),
        (f"{vault}/token", "post"),
        (f"{vault}/escrow", "put"),
        (f"{vault}/escrow", "get"),
        (f"{vault}/batches", "post"),
        (f"{vault}/batches", "get"),
        (f"{vault}/snapshots/{{snapshot_id}}/parts/{{part}}", "put"),
        (f"{vault}/snapshots/{{snapshot_id}}/parts/{{part}}", "get"),
        (f"{vault}/snapshots/latest", "get"),
        (f"{vault}/devices", "get"),
        (f"{vault}/devices/{{device_id}}", "delete"),
        (f"{vault}/blobs/missing", "post"),
        (f"{vault}/blobs/{{name}}", "put"),
        (f"{vault}/blobs/{{name}}", "get"),
        (f"{vault}/blobs", "delete"),
    }


def test_metrics_count_requests_and_report_the_store(relay_store: SqlRelayStore) -> None:
    server = serve(relay_store)
    member = Member()
    token = member.token(server.client)
    assert member.push(server.client, token, 1, b"12345").status_code == 200
    assert member.push(server.client, token, 2, b"x").status_code == 200
    server.client.get(f"/v1/vaults/{member.vault_id}/devices", headers={"Authorization": "x"})
    chunk = server.client.put(
        f"/v1/vaults/{member.vault_id}/blobs/{'a' * 64}",
        params={"owner": "1" * 32},
        content=b"sealed",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert chunk.status_code == 204
    text = server.client.get("/metrics").text
    lines = set(text.splitlines())
    batches = "/v1/vaults/{vault_id}/batches"
    assert f'mangostore_sync_requests_total{{route="{batches}",status="200"}} 2.0' in lines
    devices = "/v1/vaults/{vault_id}/devices"
    assert f'mangostore_sync_requests_total{{route="{devices}",status="401"}} 1.0' in lines
    assert "mangostore_sync_store_vaults 1.0" in lines
    assert "mangostore_sync_store_devices 1.0" in lines
    assert "mangostore_sync_store_batches 2.0" in lines
    assert "mangostore_sync_store_batch_bytes 6.0" in lines
    assert "mangostore_sync_pushed_bytes_total 6.0" in lines  # batches only
    assert "mangostore_sync_blob_bytes_total 6.0" in lines
    assert "mangostore_sync_store_blob_bytes 6.0" in lines
    assert any(line.startswith("mangostore_sync_request_seconds_bucket") for line in lines)
    assert token not in text
    assert member.vault_id not in text


# -- the escrow copy and joining -------------------------------------------------------------


def test_the_escrow_copy_opens_with_the_passphrase_or_recovery_key_only(
    sqlite_server: Server,
) -> None:
    first, recovery_key = mangostore.create(":memory:", passphrase=PASSPHRASE, settings=SETTINGS)
    try:
        first.sync.attach(URL, client=sqlite_server.client)
        vault_id = first.sync.vault_id
        escrow = fetch_escrow(URL, vault_id, client=sqlite_server.client)
    finally:
        first.close()
    stored = sqlite_server.store.vault(vault_id)
    assert stored is not None
    assert recovery_key is not None
    assert PASSPHRASE not in str(escrow)
    assert recovery_key not in str(escrow)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        Keyring.from_escrow(escrow, passphrase="not the passphrase at all")
    for ring in (
        Keyring.from_escrow(escrow, passphrase=PASSPHRASE),
        Keyring.from_escrow(escrow, recovery_key=recovery_key),
    ):
        assert ring.vault_id == vault_id
        # The unwrapped key signs as the vault: it is the vault's master key.
        assert VaultSigner(ring).public_key == stored.public_key


def _tampered(escrow: dict[str, Any], what: str) -> dict[str, Any]:
    changed: dict[str, Any] = {**escrow, "kdf": dict(escrow["kdf"])}
    if what == "page_encryption":
        changed["page_encryption"] = not escrow["page_encryption"]
    elif what == "kdf iterations":
        changed["kdf"]["iterations"] = int(escrow["kdf"]["iterations"]) + 1
    elif what == "kdf algorithm":
        changed["kdf"]["alg"] = "pbkdf2"
    elif what == "mac":
        changed["mac"] = escrow["mac"][::-1]
    elif what == "format":
        changed["format"] = "something else"
    return changed


@pytest.mark.parametrize(
    "what", ["page_encryption", "kdf iterations", "kdf algorithm", "mac", "format"]
)
def test_a_changed_escrow_copy_is_refused(sqlite_server: Server, what: str) -> None:
    first = new_device()
    try:
        first.sync.attach(URL, client=sqlite_server.client)
        escrow = fetch_escrow(URL, first.sync.vault_id, client=sqlite_server.client)
    finally:
        first.close()
    with pytest.raises((KeyringCorruptError, WrongPassphraseError)):
        Keyring.from_escrow(_tampered(escrow, what), passphrase=PASSPHRASE)


def test_fetching_the_escrow_of_an_unknown_vault_says_so(sqlite_server: Server) -> None:
    with pytest.raises(SyncTransportError, match="404"):
        fetch_escrow(URL, Member().vault_id, client=sqlite_server.client)


@pytest.mark.parametrize("url", ["http://testserver", "http://testserver/v1/", "https://h/x"])
def test_join_needs_a_url_naming_the_vault(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="/vaults/<vault id>"):
        join(url, tmp_path / "joined.db", passphrase=PASSPHRASE, settings=SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_join_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="https://"):
        join("ftp://host/vaults/v1", tmp_path / "joined.db", passphrase=PASSPHRASE)


# -- snapshots -------------------------------------------------------------------------------


def test_a_new_device_starts_from_the_latest_snapshot(
    sqlite_server: Server, opened: list[mangostore.Database]
) -> None:
    first = _attached(sqlite_server, opened)
    _other(sqlite_server, first, opened).sync.pull()  # a device at 0 keeps every batch
    for name in ("ann", "bob", "cy"):
        first.users.create(username=name)
        first.sync.sync()
    snapshot_cursor = first.sync.upload_snapshot()
    assert snapshot_cursor == 3
    first.users.create(username="dee")
    first.sync.sync()
    vault_id = first.sync.vault_id
    assert [b.cursor for b in sqlite_server.store.pull(vault_id, 0, 10)] == [1, 2, 3, 4]

    fresh = _other(sqlite_server, first, opened)
    seen_before = len(sqlite_server.seen)
    assert fresh.sync.bootstrap() >= 1
    assert fresh.sync.status().cursor == snapshot_cursor
    assert _usernames(fresh) == ["ann", "bob", "cy"]
    fresh.sync.pull()
    assert fresh.sync.status().cursor == 4
    assert _usernames(fresh) == ["ann", "bob", "cy", "dee"]
    pulls = [
        int(s.params["after"])
        for s in sqlite_server.seen[seen_before:]
        if s.method == "GET" and s.path.endswith("/batches")
    ]
    assert pulls
    assert min(pulls) == snapshot_cursor


def test_a_changed_snapshot_part_is_refused_and_applies_nothing(
    relay_target: StoreTarget, relay_store: SqlRelayStore, opened: list[mangostore.Database]
) -> None:
    server = serve(relay_store)
    first = _attached(server, opened)
    first.users.create(username="ann")
    first.sync.sync()
    assert first.sync.upload_snapshot() == 1
    latest = relay_store.latest_snapshot(first.sync.vault_id)
    assert latest is not None
    part = relay_store.snapshot_part(first.sync.vault_id, latest.snapshot_id, 0)
    assert part is not None
    changed = part[:-1] + bytes([part[-1] ^ 1])
    mark = "?" if relay_target.kind == "sqlite" else "%s"
    other = relay_target.open()  # a second store on the same data, as an intruder would
    try:
        with other.transaction() as conn:
            conn.execute(
                f"UPDATE relay_snapshot_parts SET body = {mark} "
                f"WHERE snapshot_id = {mark} AND part = 0",
                (changed, latest.snapshot_id),
            )
    finally:
        other.close()

    fresh = _other(server, first, opened)
    with pytest.raises(TamperedDataError, match="snapshot"):
        fresh.sync.pull()
    assert fresh.users.count() == 0
    assert fresh.sync.status().cursor == 0


def test_compacted_batches_send_a_device_to_the_snapshot(
    sqlite_server: Server, opened: list[mangostore.Database], tmp_path: Path
) -> None:
    first = _attached(sqlite_server, opened)
    path = tmp_path / "second.db"
    second, _ = first.sync.new_device(path, PASSPHRASE, settings=SETTINGS)
    second.sync.connect(sqlite_server.transport(second, client=sqlite_server.new_client()))
    first.users.create(username="ann")
    first.sync.sync()
    second.sync.sync()
    behind = second.sync.status().cursor
    assert behind >= 1
    second.close()
    old = tmp_path / "old"
    old.mkdir()
    for made in tmp_path.glob("second.db*"):
        shutil.copy(made, old / made.name)  # a copy of the device as it is now
    second = mangostore.open(path, passphrase=PASSPHRASE, settings=SETTINGS)
    opened.append(second)
    second.sync.connect(sqlite_server.transport(second))

    for name in ("bob", "cy"):
        first.users.create(username=name)
        first.sync.sync()
    second.sync.sync()
    first.sync.sync()
    vault_id = first.sync.vault_id
    snapshot_cursor = first.sync.upload_snapshot()
    assert snapshot_cursor is not None
    assert snapshot_cursor > behind
    vault = sqlite_server.store.vault(vault_id)
    # Compacted up to where every device was (and the snapshot covers), past the old copy.
    assert vault is not None
    assert behind < vault.floor <= snapshot_cursor
    assert [b.cursor for b in sqlite_server.store.pull(vault_id, 0, 100)] == list(
        range(vault.floor + 1, vault.last_cursor + 1)
    )

    with pytest.raises(SyncCompactedError, match="compacted; start from the latest snapshot"):
        second.sync.server(URL, client=sqlite_server.client).pull(vault_id, 0, 100)
    assert sqlite_server.statuses("/batches")[-1] == 410

    restored = mangostore.open(old / "second.db", passphrase=PASSPHRASE, settings=SETTINGS)
    opened.append(restored)
    restored.sync.connect(sqlite_server.transport(restored))
    assert restored.sync.status().cursor == behind
    restored.sync.pull()
    assert restored.sync.status().cursor == vault.last_cursor
    assert _usernames(restored) == ["ann", "bob", "cy"]
    assert 410 in sqlite_server.statuses("/batches")[-4:]


def test_snapshot_routes_need_a_token_and_answer_404_before_any(sqlite_server: Server) -> None:
    member = Member()
    token = member.token(sqlite_server.client)
    base = f"/v1/vaults/{member.vault_id}/snapshots"
    assert sqlite_server.client.get(f"{base}/latest").status_code == 401
    latest = sqlite_server.client.get(f"{base}/latest", headers=bearer(token))
    assert (latest.status_code, latest.json()["error"]) == (404, "not_found")
    part = sqlite_server.client.get(f"{base}/s1/parts/0", headers=bearer(token))
    assert (part.status_code, part.json()["error"]) == (404, "not_found")
