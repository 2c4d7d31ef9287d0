"""The device's way to a sync server over HTTP(S): :class:`HttpTransport` (httpx).

It implements :class:`~mangostore.sync.transport.SyncTransport` (push, pull) and the
server's other routes: attaching a vault, the escrow copy, snapshots, devices. It
signs the server's challenge with the vault's key for a bearer token, and gets a new
one when the token expires. Requests that fail on the way (connection refused or
reset, timeouts, 502/503/504, 429) are retried with exponential backoff and full
jitter, honouring ``Retry-After``; a refusal (4xx) is not retried. With an
``https://`` URL, TLS certificates are verified (``verify=`` names a CA bundle, for a
server with its own certificate authority).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mangostore.errors import (
    ConfigurationError,
    SyncAuthError,
    SyncCompactedError,
    SyncTransportError,
)
from mangostore.sync.batches import Batch
from mangostore.sync.identity import VaultSigner, b64decode, b64encode
from mangostore.sync.transport import Pulled

__all__ = ["HttpTransport", "fetch_escrow", "split_join_url"]

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_MAX_WAIT_S = 30.0


def split_join_url(url: str) -> tuple[str, str | None]:
    """Split ``https://host/vaults/<vault id>`` (what attaching prints) into the
    server's base URL and the vault id; a URL without ``/vaults/`` has no vault id.

    Raises:
        ConfigurationError: not an http(s) URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"a sync server URL starts with https:// (or http:// on this machine): {url!r}"
        )
    path = parts.path.rstrip("/")
    base_path, sep, vault = path.rpartition("/vaults/")
    if not sep:
        return f"{parts.scheme}://{parts.netloc}{path}", None
    return f"{parts.scheme}://{parts.netloc}{base_path}", vault or None


class _Requests:
    """One httpx client with retries, shared by the calls below."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retries: int,
        backoff_s: float,
        verify: bool | str,
        client: httpx.Client | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base, _vault = split_join_url(base_url)
        self.base = base
        self.retries = retries
        self.backoff_s = backoff_s
        #: A client passed in belongs to the caller, who closes it.
        self.owns_client = client is None
        self.client = client or httpx.Client(timeout=timeout, verify=verify)
        self.sleep = sleep

    def close(self) -> None:
        """Close the client if it was made here."""
        if self.owns_client:
            self.client.close()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; return the final answer (any status)."""
        attempt = 0
        while True:
            try:
                response = self.client.request(method, self.base + path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise SyncTransportError(
                        f"the sync server at {self.base} cannot be reached "
                        f"({type(exc).__name__}); sync will try again later"
                    ) from None
                wait = None
            else:
                if response.status_code not in _RETRY_STATUS or attempt >= self.retries:
                    return response
                wait = _retry_after(response)
            attempt += 1
            self.sleep(wait if wait is not None else self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        # Full jitter: devices that failed together do not come back together.
        return random.uniform(0, min(_MAX_WAIT_S, self.backoff_s * 2**attempt))  # noqa: S311


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return min(float(value), _MAX_WAIT_S) if value.isdigit() else None


def _refusal(response: httpx.Response, doing: str) -> SyncTransportError:
    """The error for a refused request, with the server's message."""
    try:
        message = str(response.json().get("message"))
    except (ValueError, AttributeError):
        message = response.text[:200]
    text = f"the sync server refused {doing} ({response.status_code}): {message}"
    if response.status_code == 410:
        return SyncCompactedError(text)
    if response.status_code in (401, 403):
        return SyncAuthError(text)
    return SyncTransportError(text)


def fetch_escrow(
    url: str,
    vault_id: str,
    *,
    timeout: float = 30.0,
    verify: bool | str = True,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """The escrow copy of ``vault_id``'s wrapped master key, for joining a device.

    Raises:
        SyncTransportError: the server cannot be reached, or keeps no such vault.
    """
    requests = _Requests(
        url, timeout=timeout, retries=3, backoff_s=0.5, verify=verify, client=client
    )
    try:
        response = requests.send("GET", f"/v1/vaults/{quote(vault_id, safe='')}/escrow")
    finally:
        requests.close()
    if response.status_code != 200:
        raise _refusal(response, "to give the vault's key")
    escrow = response.json().get("escrow")
    if not isinstance(escrow, dict):
        raise SyncTransportError("the sync server's answer has no escrow copy")
    return escrow


class HttpTransport:
    """A sync server reached over HTTP(S), as one device of one vault.

    ``db.sync.server(url)`` makes one for a database. Args: ``url`` the server (a join
    URL's ``/vaults/<id>`` is ignored); ``signer`` the vault's key; ``timeout`` seconds
    per request; ``retries`` after the first try, for requests that failed on the way
    (waiting ``backoff_s`` doubled each time, with full jitter, or ``Retry-After``);
    ``verify`` ``True``, ``False`` or a CA bundle's path; ``client`` an httpx client
    to use (its owner closes it); ``sleep`` how to wait between tries.
    """

    def __init__(
        self,
        url: str,
        *,
        signer: VaultSigner,
        vault_id: str,
        device_id: str,
        timeout: float = 30.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        verify: bool | str = True,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._requests = _Requests(
            url,
            timeout=timeout,
            retries=retries,
            backoff_s=backoff_s,
            verify=verify,
            client=client,
            sleep=sleep,
        )
        self._signer = signer
        self.vault_id = vault_id
        self.device_id = device_id
        self._token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<mangostore HttpTransport {self.url} vault={self.vault_id}>"

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._requests.base

    @property
    def join_url(self) -> str:
        """The URL other devices join this vault with (``sync join``)."""
        return f"{self.url}/vaults/{self.vault_id}"

    def close(self) -> None:
        """Close the connections (the database closes the transport it is connected
        to); a ``client`` passed in is left to its owner."""
        self._requests.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- credentials ----------------------------------------------------------------------

    def _vault_path(self, rest: str = "") -> str:
        return f"/v1/vaults/{quote(self.vault_id, safe='')}{rest}"

    def authenticate(self, *, attach: bool = False) -> bool:
        """Get a bearer token by signing a challenge; with ``attach``, offer the vault's
        public key so that the first device attaches the vault. Returns whether this
        call attached it.

        Raises:
            SyncAuthError: the server refused the signature (a vault attached with
                another key, a removed device).
        """
        response = self._requests.send(
            "POST", self._vault_path("/challenge"), json={"device_id": self.device_id}
        )
        if response.status_code != 200:
            raise _refusal(response, "to give a challenge")
        challenge = b64decode(str(response.json()["challenge"]))
        body: dict[str, Any] = {
            "device_id": self.device_id,
            "challenge": b64encode(challenge),
            "signature": b64encode(self._signer.sign(self.vault_id, self.device_id, challenge)),
        }
        if attach:
            body["public_key"] = b64encode(self._signer.public_key)
        response = self._requests.send("POST", self._vault_path("/token"), json=body)
        if response.status_code != 200:
            raise _refusal(response, "this device's signature")
        doc = response.json()
        with self._lock:
            self._token = str(doc["token"])
        return bool(doc.get("created"))

    def _call(
        self, method: str, rest: str, doing: str, *, missing_ok: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """An authenticated request; a token refused as expired is renewed once. With
        ``missing_ok``, a 404 answer is returned rather than raised."""
        for fresh in (False, True):
            with self._lock:
                token = self._token
            if token is None or fresh:
                self.authenticate()
                with self._lock:
                    token = self._token
            response = self._requests.send(
                method,
                self._vault_path(rest),
                headers={"Authorization": f"Bearer {token}"},
                **kwargs,
            )
            if response.status_code != 401 or fresh:
                break
        if response.status_code >= 300 and not (missing_ok and response.status_code == 404):
            raise _refusal(response, doing)
        return response

    # -- SyncTransport -----------------------------------------------------------------

    def push(self, batch: Batch) -> int:
        """Store ``batch`` on the server; return its cursor."""
        self._same_vault(batch.vault_id)
        response = self._call(
            "POST",
            "/batches",
            f"batch {batch.number}",
            json={
                "device_id": batch.device_id,
                "number": batch.number,
                "schema_version": batch.schema_version,
                "body": b64encode(batch.body),
            },
        )
        return int(response.json()["cursor"])

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        """Up to ``limit`` batches after cursor ``after``.

        Raises:
            SyncCompactedError: the server dropped batches after ``after``.
        """
        self._same_vault(vault_id)
        response = self._call(
            "GET", "/batches", "to give batches", params={"after": after, "limit": limit}
        )
        return [
            Pulled(
                int(b["cursor"]),
                Batch(
                    vault_id,
                    str(b["device_id"]),
                    int(b["number"]),
                    int(b["schema_version"]),
                    b64decode(str(b["body"])),
                ),
            )
            for b in response.json()["batches"]
        ]

    # -- stored files' chunks (mangostore.filestore.remote.BlobRelay) ------------------

    def missing_blobs(self, vault_id: str, names: Sequence[str]) -> list[str]:
        """Those of ``names`` the server does not hold for the vault."""
        self._same_vault(vault_id)
        response = self._call(
            "POST", "/blobs/missing", "to list file chunks", json={"names": list(names)}
        )
        return [str(name) for name in response.json()["missing"]]

    def put_blob(self, vault_id: str, name: str, owner_tag: str, data: bytes) -> None:
        """Send a sealed chunk of a stored file."""
        self._same_vault(vault_id)
        self._call(
            "PUT",
            f"/blobs/{quote(name, safe='')}",
            "a file chunk",
            params={"owner": owner_tag},
            content=data,
        )

    def get_blob(self, vault_id: str, name: str) -> bytes | None:
        """A sealed chunk of a stored file, or ``None`` when the server has none."""
        self._same_vault(vault_id)
        response = self._call(
            "GET", f"/blobs/{quote(name, safe='')}", "a file chunk", missing_ok=True
        )
        if response.status_code == 404:
            return None
        return response.content

    def forget_blobs(self, vault_id: str, owner_tag: str) -> int:
        """Have the server drop every chunk of an erased owner."""
        self._same_vault(vault_id)
        response = self._call(
            "DELETE", "/blobs", "to drop file chunks", params={"owner": owner_tag}
        )
        return int(response.json()["dropped"])

    def _same_vault(self, vault_id: str) -> None:
        if vault_id != self.vault_id:
            raise ConfigurationError("this transport serves another vault")

    # -- the vault on the server -------------------------------------------------------

    def put_escrow(self, escrow: dict[str, Any]) -> None:
        """Keep the escrow copy of the vault's wrapped master key on the server."""
        self._call("PUT", "/escrow", "the vault's key", json={"escrow": escrow})

    def devices(self) -> list[dict[str, Any]]:
        """The vault's devices as the server knows them."""
        devices: list[dict[str, Any]] = self._call("GET", "/devices", "to list devices").json()[
            "devices"
        ]
        return devices

    def remove_device(self, device_id: str) -> None:
        """Remove a device from the vault on the server: its tokens stop at once."""
        self._call("DELETE", f"/devices/{quote(device_id, safe='')}", f"to remove {device_id}")

    def latest_snapshot(self) -> dict[str, Any] | None:
        """The latest complete snapshot's description, or ``None``."""
        response = self._call("GET", "/snapshots/latest", "snapshots", missing_ok=True)
        if response.status_code == 404:
            return None
        doc: dict[str, Any] = response.json()
        return doc

    def snapshot_part(self, snapshot_id: str, part: int) -> bytes:
        """One sealed part of a snapshot."""
        response = self._call(
            "GET", f"/snapshots/{quote(snapshot_id, safe='')}/parts/{part}", "a snapshot part"
        )
        return b64decode(str(response.json()["body"]))

    def put_snapshot_part(
        self,
        snapshot_id: str,
        part: int,
        *,
        cursor: int,
        schema_version: int,
        last: bool,
        body: bytes,
    ) -> bool:
        """Upload one sealed part of a snapshot (in order); return whether it completed it."""
        response = self._call(
            "PUT",
            f"/snapshots/{quote(snapshot_id, safe='')}/parts/{part}",
            "a snapshot part",
            json={
                "cursor": cursor,
                "schema_version": schema_version,
                "last": last,
                "body": b64encode(body),
            },
        )
        return bool(response.json()["complete"])
