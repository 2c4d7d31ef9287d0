"""A put that fails half-way (a full disk, a failed flush) leaves nothing visible and
nothing on disk; streams and helpers describe themselves without secrets."""

from __future__ import annotations

import errno
import io
import os

import pytest
from tests.files.conftest import NoiseStream, Vault, chunk_files, noise

from mangostore.errors import DiskFullError, FileStoreError, TamperedDataError
from mangostore.filestore import chunkstore
from mangostore.filestore.lanes import Lane

MiB = 1024 * 1024


def leftovers(vault: Vault) -> list[str]:
    tmp = vault.db.files.folder / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


def test_a_full_disk_during_a_put_leaves_nothing(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = vault.db.files.put(vault.ann, noise(MiB, seed=1))
    before = chunk_files(vault.db)
    real_write = os.write
    calls = {"n": 0}

    def full(fd: int, data: bytes | memoryview) -> int:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(chunkstore.os, "write", full)
    with pytest.raises(DiskFullError, match="disk"):
        vault.db.files.put(vault.ann, NoiseStream(24 * MiB, seed=2))
    monkeypatch.undo()
    assert [r.id for r in vault.db.files.list(vault.ann)] == [kept.id]
    assert chunk_files(vault.db) == before
    assert leftovers(vault) == []


def test_a_failed_flush_in_the_pool_fails_the_put(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = vault.db.files.put(vault.ann, b"made ann's data key")
    before = chunk_files(vault.db)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(chunkstore.os, "fsync", broken)
    with pytest.raises(FileStoreError, match="writing a file chunk failed"):
        vault.db.files.put(vault.ann, noise(12 * MiB, seed=3))
    monkeypatch.undo()
    assert [r.id for r in vault.db.files.list(vault.ann)] == [kept.id]
    assert chunk_files(vault.db) == before
    assert leftovers(vault) == []


def test_an_empty_file_with_a_wrong_digest_is_refused(vault: Vault) -> None:
    record = vault.db.files.put(vault.ann, b"")
    vault.db.execute("UPDATE files SET digest = ? WHERE id = ?", ["0" * 64, record.id])
    with pytest.raises(TamperedDataError):
        vault.db.files.open(record.id)


def test_streams_read_into_buffers_and_describe_themselves(vault: Vault) -> None:
    data = noise(5 * MiB, seed=4)
    record = vault.db.files.put(vault.ann, data)
    with vault.db.files.open(record.id) as stream:
        assert repr(stream) == f"<FileStream {len(data)} bytes at 0>"
        buffer = bytearray(3 * MiB)
        assert stream.readinto(buffer) == 3 * MiB
        assert bytes(buffer) == data[: 3 * MiB]
        assert stream.readall() == data[3 * MiB :]
        assert stream.readinto(buffer) == 0
        reader = io.BufferedReader(stream)  # usable wherever a binary file is
        reader.seek(10)
        assert reader.read(5) == data[10:15]
    assert repr(stream).endswith("closed>")
    assert "key" not in repr(vault.db.files.chunks).lower()
    writer = vault.db.files.chunks.writer()
    assert repr(writer) == "<ChunkWriter 0 chunks in flight>"
    writer.close(flush=False)
    lane = Lane("test")
    assert repr(lane) == "<Lane 0 waiting>"
    lane.close()


def test_erasing_a_user_without_files_touches_no_chunk(vault: Vault) -> None:
    vault.db.files.put(vault.ann, noise(MiB, seed=5))
    before = chunk_files(vault.db)
    vault.db.privacy.erase_user(vault.bob)
    assert chunk_files(vault.db) == before
