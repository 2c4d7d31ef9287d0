"""The sealed chunk: one chunk of a file, compressed when that helps, then encrypted.

Byte layout of a chunk file::

    offset  size  field
    0       4     magic       b"MGC1"
    4       1     flags       bit 0: the plaintext was compressed with zstd
    5       16    key_id      the owner's data key, as its 16 raw bytes
    21      12    nonce       random for every sealing
    33      n+16  ciphertext  AES-256-GCM of the (compressed) chunk, then its tag

Each chunk is sealed with a key of its own, derived with HKDF-SHA256 from the
owner's per-user data key and bound to the vault, the owner and the chunk's name, so
no key is ever near AES-GCM's limit on random nonces however many chunks an owner
stores. The associated data is the 21-byte header followed by the length-prefixed
vault id, owner id and chunk name: a chunk renamed, moved to another owner or
another vault, or with an edited header fails authentication, and so does any flipped
bit or a truncated file. Every failure raises the same :class:`TamperedDataError`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Final

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mangostore.errors import TamperedDataError
from mangostore.keys.envelope import length_prefixed

__all__ = ["HEADER_BYTES", "MAGIC", "ChunkContext", "open_chunk", "seal_chunk", "tampered"]

MAGIC: Final = b"MGC1"
FLAG_ZSTD: Final = 0x01
KEY_ID_BYTES: Final = 16
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
HEADER_BYTES: Final = len(MAGIC) + 1 + KEY_ID_BYTES
_INFO: Final = b"mangostore/files/chunk/v1"
#: Compression is kept only when it saves at least this share of the chunk.
_WORTH_IT: Final = 0.97
#: zstd level: fast enough to stay far ahead of the disk, and most of the gain.
_LEVEL: Final = 3
#: Bytes of each sample that decides whether a chunk is worth compressing.
_SAMPLE: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class ChunkContext:
    """What a chunk is bound to: its vault, its owner and its name."""

    vault_id: str
    owner: str
    name: str

    def associated(self, header: bytes) -> bytes:
        """The associated data of a chunk with ``header``."""
        return header + length_prefixed(self.vault_id, self.owner, self.name)


def tampered(what: str = "a stored chunk") -> TamperedDataError:
    """The one error every failure to open a chunk raises (names no content)."""
    return TamperedDataError(
        f"{what} of a stored file cannot be decrypted: it was altered, truncated, "
        "swapped with another chunk, moved from another user or database, or its key was "
        "destroyed; run db.files.check() and restore the file from a backup if it is "
        "still needed"
    )


def _chunk_key(data_key: bytes, context: ChunkContext) -> AESGCM:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=_INFO + length_prefixed(context.vault_id, context.owner, context.name),
    )
    return AESGCM(hkdf.derive(data_key))


def _compressible(chunk: memoryview) -> bool:
    """Whether zstd is worth trying on ``chunk``: a few small samples compress.

    Compressed audio, images and archives, most of what a large stored file is, do
    not compress; trying zstd on a whole chunk of them costs about as much as
    encrypting it. A chunk whose every sample (start, middle, end) saves less than
    :data:`_WORTH_IT` is stored as it is; any other is compressed whole and kept
    compressed when that saves enough.
    """
    if len(chunk) <= 3 * _SAMPLE:
        return True  # small: trying the whole chunk costs little
    packer = zstandard.ZstdCompressor(level=1)
    for at in (0, (len(chunk) - _SAMPLE) // 2, len(chunk) - _SAMPLE):
        if len(packer.compress(chunk[at : at + _SAMPLE])) < _SAMPLE * _WORTH_IT:
            return True
    return False


def seal_chunk(
    data_key: bytes,
    key_id: uuid.UUID,
    chunk: bytes | bytearray | memoryview,
    context: ChunkContext,
    *,
    compress: bool = True,
) -> bytearray:
    """Compress ``chunk`` when that saves space, encrypt it, and return the chunk file's bytes."""
    flags = 0
    body: bytes | memoryview = memoryview(chunk)
    if compress and len(body) and _compressible(memoryview(chunk)):
        packed = zstandard.ZstdCompressor(level=_LEVEL).compress(body)
        if len(packed) < len(body) * _WORTH_IT:
            body, flags = packed, FLAG_ZSTD
    header = MAGIC + bytes((flags,)) + key_id.bytes
    nonce = secrets.token_bytes(NONCE_BYTES)
    # Encrypted in place after the header and nonce: no copy of the sealed bytes.
    out = bytearray(HEADER_BYTES + NONCE_BYTES + len(body) + TAG_BYTES)
    out[: HEADER_BYTES + NONCE_BYTES] = header + nonce
    _chunk_key(data_key, context).encrypt_into(
        nonce, body, context.associated(header), memoryview(out)[HEADER_BYTES + NONCE_BYTES :]
    )
    return out


def key_id_of(blob: bytes) -> uuid.UUID:
    """The data key id named in a chunk file's header.

    Raises:
        TamperedDataError: ``blob`` is too short or not a chunk file.
    """
    if len(blob) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES or blob[:4] != MAGIC:
        raise tampered()
    return uuid.UUID(bytes=bytes(blob[5:HEADER_BYTES]))


def open_chunk(data_key: bytes, blob: bytes, context: ChunkContext, size: int) -> bytes:
    """Authenticate and decrypt a chunk file's bytes; return the plaintext chunk.

    Args:
        data_key: the owner's data key named in the header.
        blob: the chunk file's bytes.
        context: where the chunk is expected to belong.
        size: the plaintext length the database records for it.

    Raises:
        TamperedDataError: anything about the chunk is not as it was sealed.
    """
    key_id_of(blob)
    header = bytes(blob[:HEADER_BYTES])
    flags = header[4]
    if flags & ~FLAG_ZSTD:
        raise tampered()
    nonce = bytes(blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES])
    try:
        body = _chunk_key(data_key, context).decrypt(
            nonce, memoryview(blob)[HEADER_BYTES + NONCE_BYTES :], context.associated(header)
        )
    except InvalidTag:
        raise tampered() from None
    if flags & FLAG_ZSTD:
        try:
            body = zstandard.ZstdDecompressor().decompress(body, max_output_size=size)
        except zstandard.ZstdError:
            raise tampered() from None
    if len(body) != size:
        raise tampered()
    return body
