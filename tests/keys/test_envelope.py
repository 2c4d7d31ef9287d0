"""The field envelope: layout, round trips, and every way a tampered value must fail."""

from __future__ import annotations

import dataclasses
import secrets
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from mangostore.errors import KeyManagementError, TamperedDataError
from mangostore.keys import envelope
from mangostore.keys.envelope import (
    HEADER_BYTES,
    MIN_ENVELOPE_BYTES,
    NONCE_BYTES,
    FieldContext,
    associated_data,
    length_prefixed,
    open_envelope,
    parse_header,
    seal,
)

KEY = bytes(range(32))
KEY_ID = uuid.UUID("01900000-0000-7000-8000-000000000001")
CONTEXT = FieldContext(
    vault_id="5b0c8a3e-vault",
    table="users",
    column="security_profile",
    row_id="row-1",
    user_id="user-1",
)
SECRET = b'{"mfa_seed": "JBSWY3DPEHPK3PXP-very-secret"}'


def lookup(key_id: bytes) -> bytes | None:
    return KEY if key_id == KEY_ID.bytes else None


def sealed() -> bytes:
    return seal(KEY, KEY_ID, SECRET, CONTEXT)


# -- layout and round trips ----------------------------------------------------------------


def test_layout_is_version_alg_key_id_nonce_ciphertext_and_tag() -> None:
    blob = sealed()
    assert blob[0] == 1
    assert blob[1] == 1
    assert blob[2:18] == KEY_ID.bytes
    assert len(blob) == MIN_ENVELOPE_BYTES + len(SECRET)
    nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    aad = associated_data(blob[:HEADER_BYTES], CONTEXT)
    # Any AES-GCM implementation opens it from the documented layout alone.
    assert AESGCM(KEY).decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES :], aad) == SECRET


def test_associated_data_is_the_header_then_length_prefixed_context() -> None:
    header = sealed()[:HEADER_BYTES]
    expected = header
    for part in ("5b0c8a3e-vault", "users", "security_profile", "row-1", "user-1"):
        expected += len(part.encode()).to_bytes(4, "big") + part.encode()
    assert associated_data(header, CONTEXT) == expected


def test_parse_header_returns_version_alg_and_key_id() -> None:
    assert parse_header(sealed()) == (1, 1, KEY_ID)


def test_every_seal_uses_a_fresh_nonce() -> None:
    nonces = {sealed()[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES] for _ in range(50)}
    assert len(nonces) == 50


def test_key_id_may_be_given_as_bytes() -> None:
    blob = seal(KEY, KEY_ID.bytes, SECRET, CONTEXT)
    assert open_envelope(lookup, blob, CONTEXT) == SECRET


@pytest.mark.parametrize("bad_key", [b"", b"k" * 16, b"k" * 33])
def test_seal_refuses_a_key_that_is_not_256_bits(bad_key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(bad_key, KEY_ID, SECRET, CONTEXT)


def test_seal_refuses_a_key_id_that_is_not_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        seal(KEY, b"short", SECRET, CONTEXT)


contexts = st.builds(FieldContext, st.text(), st.text(), st.text(), st.text(), st.text())


@given(
    key=st.binary(min_size=32, max_size=32),
    key_id=st.uuids(),
    plaintext=st.binary(max_size=4096),
    context=contexts,
)
def test_every_plaintext_and_context_survives_seal_and_open(
    key: bytes, key_id: uuid.UUID, plaintext: bytes, context: FieldContext
) -> None:
    blob = seal(key, key_id, plaintext, context)
    assert parse_header(blob)[2] == key_id
    assert open_envelope(lambda k: key if k == key_id.bytes else None, blob, context) == plaintext


@given(
    context=contexts,
    other=contexts,
)
def test_a_value_opens_only_in_the_context_it_was_sealed_for(
    context: FieldContext, other: FieldContext
) -> None:
    blob = seal(KEY, KEY_ID, SECRET, context)
    if other == context:
        assert open_envelope(lookup, blob, other) == SECRET
    else:
        with pytest.raises(TamperedDataError):
            open_envelope(lookup, blob, other)


def test_lone_surrogates_in_a_context_are_encoded_not_refused() -> None:
    odd = dataclasses.replace(CONTEXT, row_id="\udc80")
    assert open_envelope(lookup, seal(KEY, KEY_ID, SECRET, odd), odd) == SECRET


@given(st.lists(st.text(), max_size=6), st.lists(st.text(), max_size=6))
def test_length_prefixed_encoding_is_unambiguous(a: list[str], b: list[str]) -> None:
    assert (length_prefixed(*a) == length_prefixed(*b)) == (a == b)


def test_moving_characters_between_context_fields_changes_the_associated_data() -> None:
    header = sealed()[:HEADER_BYTES]
    one = dataclasses.replace(CONTEXT, table="ab", column="c")
    two = dataclasses.replace(CONTEXT, table="a", column="bc")
    assert associated_data(header, one) != associated_data(header, two)


# -- tampering -----------------------------------------------------------------------------


def test_flipping_any_byte_fails() -> None:
    blob = sealed()
    for position in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            altered = bytearray(blob)
            altered[position] ^= mask
            with pytest.raises(TamperedDataError):
                open_envelope(lookup, bytes(altered), CONTEXT)


def test_flipping_a_header_byte_fails_even_when_every_key_id_finds_the_key() -> None:
    # The header is part of the associated data, so a key lookup that ignores the id
    # (or two ids sharing a key) does not let an edited header through.
    blob = sealed()
    for position in range(HEADER_BYTES):
        altered = bytearray(blob)
        altered[position] ^= 0x01
        with pytest.raises(TamperedDataError):
            open_envelope(lambda _key_id: KEY, bytes(altered), CONTEXT)


def test_truncating_at_any_length_fails() -> None:
    blob = sealed()
    for length in range(len(blob)):
        with pytest.raises(TamperedDataError):
            open_envelope(lookup, blob[:length], CONTEXT)


def test_appending_bytes_fails() -> None:
    with pytest.raises(TamperedDataError):
        open_envelope(lookup, sealed() + b"\x00", CONTEXT)


def _genuine_with_header(version: int, alg: int) -> bytes:
    """An envelope that authenticates under its header, whatever the header says."""
    header = bytes((version, alg)) + KEY_ID.bytes
    nonce = secrets.token_bytes(NONCE_BYTES)
    return header + nonce + AESGCM(KEY).encrypt(nonce, SECRET, associated_data(header, CONTEXT))


@pytest.mark.parametrize(("version", "alg"), [(0, 1), (2, 1), (255, 1), (1, 0), (1, 2), (1, 255)])
def test_an_unknown_version_or_algorithm_fails(version: int, alg: int) -> None:
    with pytest.raises(TamperedDataError):
        open_envelope(lookup, _genuine_with_header(version, alg), CONTEXT)


def test_the_genuine_header_opens() -> None:
    assert open_envelope(lookup, _genuine_with_header(1, 1), CONTEXT) == SECRET


def test_an_unknown_key_id_fails() -> None:
    blob = seal(KEY, uuid.uuid4(), SECRET, CONTEXT)
    with pytest.raises(TamperedDataError):
        open_envelope(lookup, blob, CONTEXT)


def test_a_destroyed_key_fails() -> None:
    keys = {KEY_ID.bytes: KEY}
    blob = sealed()
    assert open_envelope(keys.get, blob, CONTEXT) == SECRET
    del keys[KEY_ID.bytes]
    with pytest.raises(TamperedDataError):
        open_envelope(keys.get, blob, CONTEXT)


def test_the_wrong_key_fails() -> None:
    with pytest.raises(TamperedDataError):
        open_envelope(lambda _key_id: b"\x00" * 32, sealed(), CONTEXT)


def test_a_malformed_key_from_the_lookup_fails() -> None:
    with pytest.raises(TamperedDataError):
        open_envelope(lambda _key_id: b"short", sealed(), CONTEXT)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("row_id", "row-2"),
        ("column", "preferences"),
        ("table", "projects"),
        ("user_id", "user-2"),
        ("vault_id", "another-vault"),
    ],
    ids=["other row", "other column", "other table", "other user", "other vault"],
)
def test_a_value_moved_elsewhere_fails(field: str, value: str) -> None:
    elsewhere = dataclasses.replace(CONTEXT, **{field: value})
    with pytest.raises(TamperedDataError):
        open_envelope(lookup, sealed(), elsewhere)


def test_swapping_two_rows_values_fails_both_ways() -> None:
    other = dataclasses.replace(CONTEXT, row_id="row-2")
    mine, theirs = sealed(), seal(KEY, KEY_ID, b"other", other)
    with pytest.raises(TamperedDataError):
        open_envelope(lookup, theirs, CONTEXT)
    with pytest.raises(TamperedDataError):
        open_envelope(lookup, mine, other)


@pytest.mark.parametrize("value", ["text stored as text", 42, None, 1.5, [b"x"]])
def test_a_value_that_is_not_bytes_fails(value: object) -> None:
    with pytest.raises(TamperedDataError):
        open_envelope(lookup, value, CONTEXT)
    with pytest.raises(TamperedDataError):
        parse_header(value)


def test_bytearray_and_memoryview_are_accepted() -> None:
    blob = sealed()
    assert open_envelope(lookup, bytearray(blob), CONTEXT) == SECRET
    assert open_envelope(lookup, memoryview(blob), CONTEXT) == SECRET


def test_the_error_is_a_key_management_error() -> None:
    assert issubclass(TamperedDataError, KeyManagementError)


def _failures() -> list[TamperedDataError]:
    blob = sealed()
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    cases: list[tuple[envelope.KeyLookup, object]] = [
        (lookup, bytes(flipped)),
        (lookup, blob[:10]),
        (lookup, _genuine_with_header(2, 1)),
        (lookup, _genuine_with_header(1, 9)),
        (lambda _key_id: None, blob),
        (lambda _key_id: b"\x01" * 32, blob),
        (lookup, "not bytes"),
    ]
    errors = []
    for key_lookup, value in cases:
        with pytest.raises(TamperedDataError) as caught:
            open_envelope(key_lookup, value, CONTEXT)
        errors.append(caught.value)
    return errors


def test_every_failure_has_the_same_message_naming_only_the_place() -> None:
    errors = _failures()
    messages = {str(e) for e in errors}
    assert len(messages) == 1
    message = messages.pop()
    assert "users.security_profile" in message
    assert "row-1" in message


def test_the_message_holds_no_plaintext_key_or_ciphertext() -> None:
    blob = sealed()
    for error in _failures():
        text = str(error)
        assert SECRET.decode() not in text
        assert "JBSWY3DP" not in text
        for secret in (KEY, blob, blob[HEADER_BYTES:]):
            assert secret.hex() not in text
            assert secret.hex().upper() not in text
        assert repr(KEY) not in text
        assert error.__cause__ is None
        assert error.__suppress_context__ or error.__context__ is None
