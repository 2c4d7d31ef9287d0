"""Batches: sealed under the vault's sync key, bound to their header, refused when damaged."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from mangostore.errors import SyncError, TamperedDataError
from mangostore.sync.batches import Batch, chunk, open_batch, seal_batch
from mangostore.sync.changes import Cell, RowState, decode_state, encode_state

KEY = os.urandom(32)


def _batch(**overrides: Any) -> Batch:
    state = RowState(
        "users",
        "u1",
        42,
        "dev-a",
        False,
        {"id": "u1", "username": "alice", "voice_print": b"\x00\xffsealed"},
        {"username": Cell(50, "dev-b", 42)},
        {},
    )
    args: dict[str, Any] = {
        "vault_id": "vault",
        "device_id": "dev-a",
        "number": 1,
        "schema_version": 17,
        "states": [encode_state(state)],
        "erasures": [("u9", 7)],
        "keys": [("k1", "u1", b"wrapped")],
        "ack": 3,
    }
    args.update(overrides)
    return seal_batch(KEY, **args)


def test_a_batch_opens_to_what_was_sealed() -> None:
    body = open_batch(KEY, _batch())
    assert body.states[0].values["voice_print"] == b"\x00\xffsealed"
    assert body.states[0].cells == {"username": Cell(50, "dev-b", 42)}
    assert (body.erasures, body.keys, body.ack) == ([("u9", 7)], [("k1", "u1", b"wrapped")], 3)
    assert b"alice" not in _batch().body


@pytest.mark.parametrize(
    "change",
    [
        {"vault_id": "other vault"},
        {"device_id": "dev-z"},
        {"number": 2},
        {"schema_version": 18},
    ],
)
def test_a_body_moved_to_another_header_fails_authentication(change: dict[str, Any]) -> None:
    moved = dataclasses.replace(_batch(), **change)
    with pytest.raises(TamperedDataError, match="failed authentication"):
        open_batch(KEY, moved)


def test_a_flipped_bit_or_a_cut_body_is_refused() -> None:
    batch = _batch()
    body = bytearray(batch.body)
    body[20] ^= 1
    with pytest.raises(TamperedDataError):
        open_batch(KEY, dataclasses.replace(batch, body=bytes(body)))
    with pytest.raises(TamperedDataError, match="truncated"):
        open_batch(KEY, dataclasses.replace(batch, body=b"short"))


def test_another_vaults_key_cannot_open_it() -> None:
    with pytest.raises(TamperedDataError):
        open_batch(os.urandom(32), _batch())


def test_a_sealed_body_that_is_not_a_batch_says_so() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    batch = _batch()
    nonce = os.urandom(12)
    junk = nonce + AESGCM(KEY).encrypt(nonce, b"not zstd", batch.header())
    with pytest.raises(SyncError, match="cannot be read"):
        open_batch(KEY, dataclasses.replace(batch, body=junk))


def test_states_round_trip_through_their_encoding() -> None:
    state = RowState(
        "kg_entities",
        "e1",
        1,
        "d",
        False,
        {"id": "e1", "access_count": 3},
        {},
        {"access_count": {"d": (3, 9)}},
    )
    assert decode_state(encode_state(state)) == state


def test_chunks_respect_the_count_and_the_byte_cap() -> None:
    items = [([i], 10) for i in range(250)]
    assert [len(g) for g in chunk(items, max_changes=100, max_bytes=10**9)] == [100, 100, 50]
    assert [len(g) for g in chunk(items[:5], max_changes=100, max_bytes=25)] == [2, 2, 1]
    assert [len(g) for g in chunk([([0], 99)], max_changes=100, max_bytes=10)] == [1]
