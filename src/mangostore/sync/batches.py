"""Batches: row states compacted, chunked, compressed and encrypted for the relay.

A batch is what leaves the device. Its header is in the clear, because the relay
orders and files batches by it: the vault, the device, the device's batch number and
the schema version. Its body is the JSON list of row states and erasures, compressed
with zstd and sealed with AES-256-GCM under the vault's ``sync`` sub-key; the header
is the associated data, so a body cannot be moved to another vault, device or number
without failing authentication. The relay stores only this.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mangostore.errors import SyncError, TamperedDataError
from mangostore.sync.changes import RowState, decode_state, encode_state

__all__ = [
    "FORMAT",
    "Batch",
    "BatchBody",
    "body_of",
    "chunk",
    "open_batch",
    "open_body",
    "open_doc",
    "pack_body",
    "seal_batch",
    "seal_doc",
    "seal_plain",
    "seal_texts",
    "unreadable",
]

FORMAT = "mangostore-sync/1"
_T = TypeVar("_T")
#: What ``json.dumps(value, separators=(",", ":"))`` uses, made once.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_NONCE_BYTES = 12
#: The largest body accepted when opening a batch (decompressed), against bombs.
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    """One sealed batch as the relay keeps it."""

    vault_id: str
    device_id: str
    #: The device's own count of batches, from 1: pushing the same number twice is
    #: the same batch (the relay keeps the first).
    number: int
    schema_version: int
    body: bytes

    def header(self) -> bytes:
        """The associated data the body is sealed with."""
        parts = (FORMAT, self.vault_id, self.device_id, self.number, self.schema_version)
        return "/".join(str(p) for p in parts).encode()


@dataclass(frozen=True, slots=True)
class BatchBody:
    """What a batch carries."""

    states: list[RowState]
    #: Users erased on the sending device: (user id, when).
    erasures: list[tuple[str, int]]
    #: Per-user data keys of the ``field_keys`` rows sent, still wrapped under the
    #: vault's field key: (key id, user id, wrapped key).
    keys: list[tuple[str, str, bytes]]
    #: The relay position the sending device had applied up to when it sent this.
    ack: int


def chunk(
    encoded: Iterable[tuple[_T, int]], *, max_changes: int, max_bytes: int
) -> Iterator[list[tuple[_T, int]]]:
    """Group encoded states (with their sizes) into lists of at most ``max_changes``
    states and about ``max_bytes`` of JSON (a single larger state is sent alone)."""
    group: list[tuple[_T, int]] = []
    size = 0
    for item in encoded:
        if group and (len(group) >= max_changes or size + item[1] > max_bytes):
            yield group
            group, size = [], 0
        group.append(item)
        size += item[1]
    if group:
        yield group


def seal_batch(
    key: bytes,
    *,
    vault_id: str,
    device_id: str,
    number: int,
    schema_version: int,
    states: list[list[Any]],
    erasures: list[tuple[str, int]],
    keys: list[tuple[str, str, bytes]],
    ack: int,
) -> Batch:
    """Compress and encrypt encoded states into a :class:`Batch`."""
    return seal_texts(
        key,
        vault_id=vault_id,
        device_id=device_id,
        number=number,
        schema_version=schema_version,
        texts=[_json(state) for state in states],
        erasures=erasures,
        keys=keys,
        ack=ack,
    )


def seal_texts(
    key: bytes,
    *,
    vault_id: str,
    device_id: str,
    number: int,
    schema_version: int,
    texts: list[str],
    erasures: list[tuple[str, int]],
    keys: list[tuple[str, str, bytes]],
    ack: int,
) -> Batch:
    """:func:`seal_batch` of states already in their JSON text (:func:`encoded`): the
    body is the same bytes, without encoding each state a second time."""
    batch = Batch(vault_id, device_id, number, schema_version, b"")
    # The document json.dumps would make of pack_body(...), key for key: the states'
    # texts are what it writes for each.
    tail = pack_body([], erasures, keys, ack)
    del tail["s"]
    plain = '{"s":[' + ",".join(texts) + "]," + _json(tail)[1:]
    body = seal_plain(key, batch.header(), plain.encode())
    return Batch(vault_id, device_id, number, schema_version, body)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def pack_body(
    states: list[list[Any]],
    erasures: list[tuple[str, int]],
    keys: list[tuple[str, str, bytes]],
    ack: int,
) -> dict[str, Any]:
    """The JSON document of a batch body (a snapshot part has the same)."""
    wrapped = [[k, u, base64.b64encode(w).decode("ascii")] for k, u, w in keys]
    return {"s": states, "e": erasures, "k": wrapped, "a": ack}


def seal_doc(key: bytes, aad: bytes, doc: dict[str, Any]) -> bytes:
    """Compress a JSON document with zstd, then seal it with AES-GCM bound to ``aad``."""
    return seal_plain(key, aad, _json(doc).encode())


def seal_plain(key: bytes, aad: bytes, plain: bytes) -> bytes:
    """Compress a document's JSON bytes with zstd, then seal them with AES-GCM bound
    to ``aad``."""
    packed = zstandard.ZstdCompressor(level=3).compress(plain)
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, packed, aad)


def open_doc(key: bytes, aad: bytes, sealed_doc: bytes, what: str) -> Any:
    """Authenticate, decrypt and decompress a JSON document sealed by :func:`seal_doc`;
    ``what`` names it in errors.

    Raises:
        TamperedDataError: the document fails authentication (changed, moved, or
            sealed by another vault).
        SyncError: it authenticates but is not compressed JSON (a newer format).
    """
    if len(sealed_doc) <= _NONCE_BYTES:
        raise TamperedDataError(f"{what} is truncated")
    nonce, sealed = sealed_doc[:_NONCE_BYTES], sealed_doc[_NONCE_BYTES:]
    try:
        packed = AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise TamperedDataError(
            f"{what} failed authentication: it was changed in storage or sealed for another vault"
        ) from None
    try:
        plain = zstandard.ZstdDecompressor().decompress(packed, max_output_size=MAX_BODY_BYTES)
        return json.loads(plain)
    except (zstandard.ZstdError, ValueError) as exc:
        raise unreadable(what, exc) from None


def body_of(doc: Any, what: str) -> BatchBody:
    """Decode an opened document made by :func:`pack_body`.

    Raises:
        SyncError: it is not such a document (a newer format).
    """
    try:
        states = [decode_state(raw) for raw in doc["s"]]
        erasures = [(str(u), int(t)) for u, t in doc["e"]]
        keys = [(str(k), str(u), base64.b64decode(w)) for k, u, w in doc["k"]]
        ack = int(doc["a"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise unreadable(what, exc) from None
    return BatchBody(states, erasures, keys, ack)


def open_body(key: bytes, aad: bytes, sealed_body: bytes, what: str) -> BatchBody:
    """Authenticate, decrypt and decode a body sealed by :func:`seal_doc` with
    :func:`pack_body`; ``what`` names it in errors.

    Raises:
        TamperedDataError: the body fails authentication (changed, moved, or sealed
            by another vault).
        SyncError: the body authenticates but cannot be read (a newer format).
    """
    return body_of(open_doc(key, aad, sealed_body, what), what)


def unreadable(what: str, exc: Exception) -> SyncError:
    """The error for a sealed document that authenticates but cannot be read."""
    return SyncError(
        f"{what} cannot be read ({type(exc).__name__}); upgrade mangostore on this device"
    )


def open_batch(key: bytes, batch: Batch) -> BatchBody:
    """Authenticate, decrypt and decode a batch.

    Raises:
        TamperedDataError: the body fails authentication (changed, moved, or sealed
            by another vault).
        SyncError: the body authenticates but is not a batch (a newer format).
    """
    what = f"sync batch {batch.number} of device {batch.device_id}"
    return open_body(key, batch.header(), batch.body, what)


def encoded(
    states: Iterable[tuple[RowState, int]],
) -> Iterator[tuple[str, int, RowState, int]]:
    """Encode states to their JSON text (for :func:`seal_texts`), with its size,
    keeping the state and its sequence."""
    for state, seq in states:
        text = _json(encode_state(state))
        yield text, len(text), state, seq
