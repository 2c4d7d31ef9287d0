"""The put and read pipelines: the chunker's windows whatever the size hint says, the
compression decision, and read-ahead that keeps a chunk's error for whoever reaches it."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from tests.files.conftest import Vault, chunk_files, noise

from mangostore.errors import TamperedDataError
from mangostore.filestore.chunkcrypt import ChunkContext, open_chunk, seal_chunk
from mangostore.filestore.chunking import MAX_CHUNK, chunk_boundaries, iter_chunks

MiB = 1024 * 1024


class ReadOnly:
    """A binary stream with ``read`` only (no ``readinto``), short reads included."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 300_000) if size >= 0 else size)


@pytest.mark.parametrize("hint", [None, 0, 1, 5 * MiB, 11 * MiB - 1, 11 * MiB, 40 * MiB])
def test_chunks_are_the_same_whatever_the_size_hint(hint: int | None) -> None:
    data = noise(11 * MiB, seed=11)
    chunks = list(iter_chunks(io.BytesIO(data), hint))
    assert [len(c) for c in chunks] == chunk_boundaries(data)
    assert b"".join(chunks) == data  # each view still holds its bytes
    assert all(c.readonly for c in chunks)


def test_a_stream_without_readinto_is_chunked_the_same() -> None:
    data = noise(9 * MiB + 3, seed=12)
    assert [len(c) for c in iter_chunks(ReadOnly(data))] == chunk_boundaries(data)  # type: ignore[arg-type]
    assert list(iter_chunks(io.BytesIO(b""), 0)) == []


def test_compressible_chunks_are_compressed_and_noise_is_not() -> None:
    context = ChunkContext("vault", "owner", "name")
    key, key_id = bytes(32), uuid.uuid4()
    text = b"the quick brown fox jumps over the lazy dog " * 30_000
    random_bytes = noise(MiB, seed=13)
    # Noise with text in the middle: a sample there compresses, so zstd is tried.
    mixed = random_bytes[: MiB // 2] + text[: MiB // 4] + random_bytes[MiB // 2 :]
    for chunk, compressed in ((text, True), (random_bytes, False), (mixed, True), (b"ab", False)):
        sealed = seal_chunk(key, key_id, chunk, context)
        assert bool(sealed[4] & 0x01) == compressed
        assert open_chunk(key, bytes(sealed), context, len(chunk)) == chunk


def test_a_bad_chunk_read_ahead_is_refused_only_when_reached(vault: Vault) -> None:
    data = noise(9 * MiB, seed=14)
    record = vault.db.files.put(vault.ann, data)
    rows = vault.db.query(
        "SELECT start, chunk FROM file_parts WHERE file_id = ? ORDER BY seq", [record.id]
    )
    assert len(rows) >= 4
    paths = {p.name: p for p in chunk_files(vault.db)}
    bad: Path = paths[rows[1]["chunk"]]
    blob = bytearray(bad.read_bytes())
    blob[-1] ^= 0x01
    bad.write_bytes(bytes(blob))
    with vault.db.files.open(record.id) as stream:
        # Reading the first chunk reads the broken second one ahead: no error yet.
        assert stream.read(1000) == data[:1000]
        third = rows[2]["start"]
        stream.seek(third)
        assert stream.read(MiB) == data[third : third + MiB]
        stream.seek(rows[1]["start"])
        with pytest.raises(TamperedDataError):
            stream.read(1)
    # The whole file, read in order, is refused at the broken chunk.
    with vault.db.files.open(record.id) as stream, pytest.raises(TamperedDataError):
        list(iter(lambda: stream.read(MiB), b""))


def test_whole_reads_return_every_byte_once(vault: Vault, tmp_path: Path) -> None:
    data = noise(3 * MAX_CHUNK + 12_345, seed=15)
    record = vault.db.files.put(vault.ann, io.BytesIO(data))
    assert vault.db.files.read(record.id) == data
    with vault.db.files.open(record.id) as stream:
        stream.seek(7)
        pieces = list(iter(stream.read_chunked, b""))
    assert b"".join(pieces) == data[7:]
    vault.db.files.export(record.id, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
