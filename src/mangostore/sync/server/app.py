"""The sync server's HTTP API (FastAPI): ``create_app(store)``.

Every route but health, metrics and the escrow copy needs a bearer token, which a
device gets by signing a challenge with the vault's key (:mod:`mangostore.sync.identity`).
A token opens its own vault only; a removed device's tokens stop at once. Answers
about a vault go only to its devices: an unknown vault and a wrong signature get the
same refusal. Errors are JSON ``{"error": code, "message": text}``. docs/sync-server.md
describes the routes; the OpenAPI document is at ``/openapi.json``.
"""

# Annotations are evaluated at once (no ``from __future__ import annotations``): FastAPI
# reads the route signatures, whose dependencies are local to create_app.
import hashlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mangostore.clock import Clock, SystemClock
from mangostore.errors import ValidationError
from mangostore.sync.identity import b64decode, b64encode, verify_signature
from mangostore.sync.server.limits import BodyLimit, RateLimiter, retry_after
from mangostore.sync.server.metrics import StoreCollector
from mangostore.sync.server.settings import ServerSettings
from mangostore.sync.server.store import RelayStore

__all__ = ["ApiError", "create_app"]

#: Vault and device ids: what devices make (UUIDs, hex), nothing that could be a path.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
VaultId = Annotated[str, Path(pattern=ID_PATTERN)]
DeviceText = Annotated[str, Field(pattern=ID_PATTERN)]
_UNAUTHORISED = "the challenge was not answered by a device of this vault"


class ApiError(Exception):
    """An error answer: HTTP status, a code and a message saying what to do."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ChallengeRequest(BaseModel):
    device_id: DeviceText


class TokenRequest(BaseModel):
    device_id: DeviceText
    challenge: str = Field(max_length=128)
    signature: str = Field(max_length=256)
    #: Only when attaching: the vault's public key (kept by the first device to attach).
    public_key: str | None = Field(default=None, max_length=128)


class EscrowBody(BaseModel):
    escrow: dict[str, Any]


class PushRequest(BaseModel):
    device_id: DeviceText
    number: int = Field(ge=1)
    schema_version: int = Field(ge=1)
    body: str


#: A stored file's chunk name and its owner's tag: keyed hashes, lowercase hex.
BlobName = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
OwnerTag = Annotated[str, Query(pattern=r"^[0-9a-f]{32}$")]
RawBody = Annotated[bytes, Body(media_type="application/octet-stream", min_length=1)]


class BlobQuery(BaseModel):
    names: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(max_length=1024)


class SnapshotPart(BaseModel):
    cursor: int = Field(ge=0)
    schema_version: int = Field(ge=1)
    last: bool
    body: str


def create_app(
    store: RelayStore, settings: ServerSettings | None = None, *, clock: Clock | None = None
) -> FastAPI:
    """The sync server's ASGI app over ``store``."""
    conf = settings or ServerSettings()
    now = (clock or SystemClock()).now_ms
    devices = RateLimiter(conf.device_rate, conf.device_burst, now=lambda: now() / 1000)
    addresses = RateLimiter(conf.address_rate, conf.address_burst, now=lambda: now() / 1000)
    registry = CollectorRegistry()
    requests = Counter(
        "mangostore_sync_requests",
        "Requests by route and status",
        ["route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "mangostore_sync_request_seconds",
        "Request duration by route",
        ["route"],
        registry=registry,
    )
    pushed = Counter("mangostore_sync_pushed_bytes", "Batch bytes stored", registry=registry)
    blobs_in = Counter(
        "mangostore_sync_blob_bytes", "Stored files' chunk bytes received", registry=registry
    )
    registry.register(StoreCollector(store))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()

        def sweep() -> None:
            while not stop.wait(conf.sweep_interval_s):
                store.sweep(now())

        sweeper = threading.Thread(target=sweep, name="mangostore-relay-sweep", daemon=True)
        sweeper.start()
        yield
        stop.set()

    app = FastAPI(
        title="mangostore sync server",
        description="Relays sealed batches between the devices of a vault; reads none of them.",
        version="1",
        lifespan=lifespan,
    )
    app.state.store = store

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (no such route or method, a body that is not text)
        # in the same shape as every other error.
        if exc.status_code == 400:
            return JSONResponse(
                {"error": "malformed", "message": f"malformed request: {exc.detail}"}, 422
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "refused")
        message = "no such route: see /openapi.json" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(
            {"error": code, "message": message}, exc.status_code, headers=exc.headers
        )

    @app.exception_handler(ValidationError)
    async def refused(_request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"error": "refused", "message": str(exc)}, 409)

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error": "malformed", "message": f"malformed request at {where}: {first.get('msg')}"},
            422,
        )

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(route, str(response.status_code)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
        return response

    def limit(limiter: RateLimiter, key: str) -> None:
        wait = limiter.take(key)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests; wait {retry_after(wait)} s and try again",
                {"Retry-After": retry_after(wait)},
            )

    def by_address(request: Request) -> None:
        limit(addresses, request.client.host if request.client else "unknown")

    def caller(request: Request, vault_id: VaultId) -> str:
        """The device id of the request's bearer token, which must be of ``vault_id``."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "send 'Authorization: Bearer <token>'")
        owner = store.token_owner(_token_hash(token.strip()), now())
        if owner is None:
            raise ApiError(401, "token_invalid", "the token expired or was revoked; get a new one")
        if owner[0] != vault_id:
            raise ApiError(403, "forbidden", "this token is not for that vault")
        limit(devices, f"{owner[0]}/{owner[1]}")
        return owner[1]

    Device = Annotated[str, Depends(caller)]
    Limited = Depends(by_address)

    @app.get("/v1/health")
    def health() -> dict[str, str]:
        """Whether the server and its store answer."""
        store.vault("-")
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/vaults/{vault_id}/challenge", dependencies=[Limited])
    def challenge(vault_id: VaultId, body: ChallengeRequest) -> dict[str, Any]:
        """A random challenge for the device to sign (issued whether or not the vault
        exists, so it tells nothing about it)."""
        value = secrets.token_bytes(32)
        expires = now() + conf.challenge_ttl_s * 1000
        store.add_challenge(value, vault_id, body.device_id, expires)
        return {"challenge": b64encode(value), "expires_at": expires}

    @app.post("/v1/vaults/{vault_id}/token", dependencies=[Limited])
    def token(vault_id: VaultId, body: TokenRequest) -> dict[str, Any]:
        """A bearer token for a device that signed its challenge with the vault's key;
        with ``public_key``, the first such request attaches the vault."""
        challenge, signature, offered = _decode(body.challenge, body.signature, body.public_key)
        if not store.take_challenge(challenge, vault_id, body.device_id, now()):
            raise ApiError(401, "challenge_invalid", "the challenge is unknown, used or expired")
        vault = store.vault(vault_id)
        key = vault.public_key if vault is not None else offered
        if key is None or not verify_signature(key, vault_id, body.device_id, challenge, signature):
            raise ApiError(401, "unauthorised", _UNAUTHORISED)
        created = vault is None
        if created:
            store.create_vault(vault_id, key, now())
        if not store.admit_device(vault_id, body.device_id, now()):
            raise ApiError(403, "device_removed", "this device was removed from the vault")
        value = secrets.token_urlsafe(32)
        expires = now() + conf.token_ttl_s * 1000
        store.add_token(_token_hash(value), vault_id, body.device_id, expires)
        return {"token": value, "expires_at": expires, "created": created}

    @app.put("/v1/vaults/{vault_id}/escrow", status_code=204)
    def put_escrow(vault_id: VaultId, body: EscrowBody, _device: Device) -> None:
        """Keep the vault's escrow copy (the master key wrapped under Argon2id)."""
        data = json.dumps(body.escrow, separators=(",", ":")).encode()
        if len(data) > conf.max_escrow_bytes:
            raise ApiError(413, "too_large", "the escrow copy is larger than a keyring's")
        store.put_escrow(vault_id, data)

    @app.get("/v1/vaults/{vault_id}/escrow", dependencies=[Limited])
    def get_escrow(vault_id: VaultId) -> dict[str, Any]:
        """The escrow copy, for a device joining with the passphrase or recovery key."""
        data = store.escrow(vault_id)
        if data is None:
            raise ApiError(404, "not_found", "no vault with that id keeps a key here")
        return {"escrow": json.loads(data)}

    @app.post("/v1/vaults/{vault_id}/batches")
    def push(vault_id: VaultId, body: PushRequest, device: Device) -> dict[str, int]:
        """Store a batch; a repeated (device, number) returns its first cursor."""
        if body.device_id != device:
            raise ApiError(403, "forbidden", "a device pushes only its own batches")
        data = _bytes(body.body, "body")
        cursor = store.push(vault_id, device, body.number, body.schema_version, data, now())
        pushed.inc(len(data))
        return {"cursor": cursor}

    @app.get("/v1/vaults/{vault_id}/batches")
    def pull(
        vault_id: VaultId,
        device: Device,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1)] = 100,
    ) -> dict[str, Any]:
        """Batches after ``after``, in order; 410 when they were compacted away."""
        vault = store.vault(vault_id)
        assert vault is not None  # a token exists only for an attached vault
        if after < vault.floor:
            raise ApiError(
                410,
                "compacted",
                f"batches up to {vault.floor} were compacted; start from the latest snapshot",
            )
        store.note_cursor(vault_id, device, after, now())
        page = store.pull(vault_id, after, min(limit, conf.max_page))
        if not page:
            store.compact(vault_id, now())
        return {
            "batches": [
                {
                    "cursor": b.cursor,
                    "device_id": b.device_id,
                    "number": b.number,
                    "schema_version": b.schema_version,
                    "body": b64encode(b.body),
                }
                for b in page
            ],
            "last_cursor": vault.last_cursor,
        }

    @app.put("/v1/vaults/{vault_id}/snapshots/{snapshot_id}/parts/{part}")
    def put_part(
        vault_id: VaultId,
        snapshot_id: Annotated[str, Path(pattern=ID_PATTERN)],
        part: Annotated[int, Path(ge=0)],
        body: SnapshotPart,
        device: Device,
    ) -> dict[str, bool]:
        """Store a snapshot's parts in order; the last one makes it the latest."""
        done = store.put_snapshot_part(
            vault_id,
            snapshot_id,
            device,
            body.cursor,
            body.schema_version,
            part,
            body.last,
            _bytes(body.body, "body"),
            now(),
        )
        if done is not None:
            store.compact(vault_id, now())
        return {"complete": done is not None}

    @app.get("/v1/vaults/{vault_id}/snapshots/latest")
    def latest(vault_id: VaultId, _device: Device) -> dict[str, Any]:
        """The latest complete snapshot's description."""
        info = store.latest_snapshot(vault_id)
        if info is None:
            raise ApiError(404, "not_found", "the vault has no snapshot yet")
        return {
            "snapshot_id": info.snapshot_id,
            "device_id": info.device_id,
            "cursor": info.cursor,
            "schema_version": info.schema_version,
            "parts": info.parts,
            "size": info.size,
            "created_at": info.created_at,
        }

    @app.get("/v1/vaults/{vault_id}/snapshots/{snapshot_id}/parts/{part}")
    def get_part(
        vault_id: VaultId,
        snapshot_id: Annotated[str, Path(pattern=ID_PATTERN)],
        part: Annotated[int, Path(ge=0)],
        _device: Device,
    ) -> dict[str, str]:
        """One part of a complete snapshot."""
        data = store.snapshot_part(vault_id, snapshot_id, part)
        if data is None:
            raise ApiError(
                404, "not_found", "no such snapshot part (a newer snapshot replaced it?)"
            )
        return {"body": b64encode(data)}

    @app.post("/v1/vaults/{vault_id}/blobs/missing")
    def missing_blobs(vault_id: VaultId, body: BlobQuery, _device: Device) -> dict[str, Any]:
        """Which of these stored files' chunks the vault does not hold yet."""
        return {"missing": store.missing_blobs(vault_id, body.names)}

    # Chunks travel as raw bytes (a chunk is up to 4 MiB: base64 in JSON would add a
    # third to every transfer and an encoding pass at each end).
    @app.put("/v1/vaults/{vault_id}/blobs/{name}", status_code=204)
    def put_blob(
        vault_id: VaultId, name: BlobName, owner: OwnerTag, body: RawBody, _device: Device
    ) -> None:
        """Keep a sealed chunk of a stored file, sent as the raw request body (one
        already held stays as it is)."""
        store.put_blob(vault_id, name, owner, body, now())
        blobs_in.inc(len(body))

    @app.get(
        "/v1/vaults/{vault_id}/blobs/{name}",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def get_blob(vault_id: VaultId, name: BlobName, _device: Device) -> Response:
        """A sealed chunk of a stored file, as the raw response body."""
        data = store.blob(vault_id, name)
        if data is None:
            raise ApiError(404, "not_found", "the vault holds no such chunk (not sent yet?)")
        return Response(data, media_type="application/octet-stream")

    @app.delete("/v1/vaults/{vault_id}/blobs")
    def forget_blobs(vault_id: VaultId, owner: OwnerTag, _device: Device) -> dict[str, int]:
        """Drop every chunk of one owner (an erased user's)."""
        return {"dropped": store.forget_blobs(vault_id, owner)}

    @app.get("/v1/vaults/{vault_id}/devices")
    def list_devices(vault_id: VaultId, _device: Device) -> dict[str, Any]:
        """The vault's devices."""
        return {
            "devices": [
                {
                    "device_id": d.device_id,
                    "first_seen": d.first_seen,
                    "last_seen": d.last_seen,
                    "cursor": d.cursor,
                    "removed_at": d.removed_at,
                }
                for d in store.devices(vault_id)
            ]
        }

    @app.delete("/v1/vaults/{vault_id}/devices/{device_id}", status_code=204)
    def remove_device(
        vault_id: VaultId,
        device_id: Annotated[str, Path(pattern=ID_PATTERN)],
        _device: Device,
    ) -> None:
        """Remove a device: its tokens stop working at once."""
        if not store.remove_device(vault_id, device_id, now()):
            raise ApiError(404, "not_found", f"the vault has no device {device_id}")

    app.add_middleware(BodyLimit, max_bytes=conf.max_body_bytes)
    return app


def _token_hash(token: str) -> bytes:
    """Tokens are kept hashed: a copy of the store holds no usable token."""
    return hashlib.sha256(token.encode()).digest()


def _bytes(text: str, field: str) -> bytes:
    try:
        return b64decode(text)
    except ValueError:
        raise ApiError(422, "malformed", f"{field} is not base64") from None


def _decode(
    challenge: str, signature: str, public_key: str | None
) -> tuple[bytes, bytes, bytes | None]:
    try:
        return (
            b64decode(challenge),
            b64decode(signature),
            None if public_key is None else b64decode(public_key),
        )
    except ValueError:
        raise ApiError(422, "malformed", "challenge, signature and key are base64") from None
