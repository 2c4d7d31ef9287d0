"""db.files: round trips, streaming, seeking, deduplication, quotas, listing, deleting."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.files.conftest import NoiseStream, Vault, chunk_files, noise

import mangostore
from mangostore.errors import (
    ConfigurationError,
    DatabaseError,
    JSONValueError,
    NotFoundError,
    QuotaExceededError,
    ValidationError,
)
from mangostore.filestore.chunking import MAX_CHUNK, MIN_CHUNK, chunk_boundaries, iter_chunks

MiB = 1024 * 1024


def test_round_trip_of_sizes_at_the_edges(vault: Vault) -> None:
    sizes = [0, 1, MIN_CHUNK - 1, MIN_CHUNK, MIN_CHUNK + 1, MAX_CHUNK, MAX_CHUNK + 1, 9 * MiB + 7]
    for size in sizes:
        data = noise(size, seed=size)
        record = vault.db.files.put(vault.ann, data, name="blob.bin")
        assert record.size == size
        assert record.digest == hashlib.sha256(data).hexdigest()
        assert vault.db.files.read(record.id) == data
        assert vault.db.files.get(record.id) == record


def test_chunks_of_a_constant_file_are_cut_at_the_maximum(vault: Vault) -> None:
    data = b"\0" * (2 * MAX_CHUNK + 5)
    assert chunk_boundaries(data) == [MAX_CHUNK, MAX_CHUNK, 5]
    record = vault.db.files.put(vault.ann, data)
    assert record.chunk_count == 3
    # Equal chunks of one file are stored once, and compressed to almost nothing.
    assert len(chunk_files(vault.db)) == 2
    assert vault.db.files.usage(vault.ann).stored_bytes < 10_000
    assert vault.db.files.read(record.id) == data


def test_streaming_chunker_finds_the_whole_buffer_boundaries() -> None:
    data = noise(21 * MiB, seed=3)
    streamed = [len(c) for c in iter_chunks(io.BytesIO(data))]
    assert streamed == chunk_boundaries(data)
    assert all(MIN_CHUNK <= n <= MAX_CHUNK for n in streamed[:-1])


def test_sources_bytes_path_and_stream(vault: Vault, tmp_path: Path) -> None:
    data = noise(3 * MiB, seed=1)
    source = tmp_path / "voice.wav"
    source.write_bytes(data)
    from_path = vault.db.files.put(vault.ann, source, metadata={"take": 2})
    assert (from_path.name, from_path.media_type) == ("voice.wav", "audio/x-wav")
    assert from_path.metadata == {"take": 2}
    from_stream = vault.db.files.put(vault.ann, io.BytesIO(data), media_type="audio/wav")
    assert (from_stream.name, from_stream.media_type) == (None, "audio/wav")
    from_bytes = vault.db.files.put(vault.ann, bytearray(data), name="x")
    assert from_bytes.media_type == "application/octet-stream"
    for record in (from_path, from_stream, from_bytes):
        assert vault.db.files.read(record.id) == data


def test_random_seeks_read_the_original_bytes(vault: Vault) -> None:
    data = noise(11 * MiB, seed=4)
    record = vault.db.files.put(vault.ann, data)
    rng = random.Random(5)
    with vault.db.files.open(record.id) as stream:
        assert stream.seekable()
        assert stream.readable()
        assert stream.size == len(data)
        for _ in range(60):
            start = rng.randrange(len(data) + 10)
            length = rng.randrange(3 * MiB)
            assert stream.seek(start) == start
            assert stream.read(length) == data[start : start + length]
            assert stream.tell() == min(start + length, max(start, len(data)))
        assert stream.seek(-10, io.SEEK_END) == len(data) - 10
        assert stream.read() == data[-10:]
        stream.seek(100)
        stream.seek(50, io.SEEK_CUR)
        assert stream.read(5) == data[150:155]
        with pytest.raises(ValidationError):
            stream.seek(-1)
        with pytest.raises(ValidationError):
            stream.seek(0, 7)
    with pytest.raises(ValueError, match="closed"):
        stream.read(1)


def test_memory_stays_bounded_for_a_large_stream(vault: Vault) -> None:
    size = 96 * MiB
    tracemalloc.start()
    try:
        record = vault.db.files.put(vault.ann, NoiseStream(size, seed=9))
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        with vault.db.files.open(record.id) as stream:
            while block := stream.read(MiB):
                digest.update(block)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == record.digest
    assert record.size == size
    # A put holds the read windows its chunks in flight point into (at most ten chunks:
    # three being named, three hashed, four sealed; more of them wait when the machine
    # is busy), under ten maximal chunks and far below the file's size; a read holds
    # the chunk it returns from, the two decrypted ahead and the sealed bytes of those.
    assert put_peak < 10 * MAX_CHUNK, put_peak
    assert read_peak < 5 * MAX_CHUNK, read_peak


def test_storing_a_file_twice_adds_no_chunk(vault: Vault) -> None:
    data = noise(12 * MiB, seed=6)
    first = vault.db.files.put(vault.ann, data)
    before = vault.db.files.usage(vault.ann)
    files_before = chunk_files(vault.db)
    second = vault.db.files.put(vault.ann, data)
    after = vault.db.files.usage(vault.ann)
    assert chunk_files(vault.db) == files_before
    assert after.stored_bytes == before.stored_bytes
    assert (after.files, after.bytes) == (2, 2 * len(data))
    vault.db.files.delete(first.id)
    assert chunk_files(vault.db) == files_before  # still used by the second
    assert vault.db.files.read(second.id) == data
    vault.db.files.delete(second.id)
    assert chunk_files(vault.db) == []
    assert vault.db.files.usage(vault.ann) == mangostore.filestore.FileUsage(0, 0, 0, None)


def test_an_edit_of_1_kb_adds_only_the_chunks_around_it(vault: Vault) -> None:
    data = noise(24 * MiB, seed=7)
    vault.db.files.put(vault.ann, data)
    before = set(chunk_files(vault.db))
    edited = bytearray(data)
    edited[12 * MiB : 12 * MiB + 1024] = noise(1024, seed=8)
    record = vault.db.files.put(vault.ann, bytes(edited))
    added = set(chunk_files(vault.db)) - before
    assert 1 <= len(added) <= 2, len(added)
    assert sum(p.stat().st_size for p in added) <= 2 * MAX_CHUNK
    assert vault.db.files.read(record.id) == bytes(edited)


# Each example deletes what it stored, so one database serves them all.
@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.integers(min_value=0, max_value=2 * MiB),
    cut=st.floats(min_value=0, max_value=1),
    insert=st.binary(min_size=0, max_size=300),
    drop=st.integers(min_value=0, max_value=300),
)
def test_hypothesis_sizes_and_edits_round_trip(
    vault: Vault, size: int, cut: float, insert: bytes, drop: int
) -> None:
    data = noise(size, seed=size)
    at = int(size * cut)
    edited = data[:at] + insert + data[at + drop :]
    one = vault.db.files.put(vault.ann, data)
    two = vault.db.files.put(vault.ann, edited)
    assert vault.db.files.read(one.id) == data
    assert vault.db.files.read(two.id) == edited
    vault.db.files.delete(one.id)
    vault.db.files.delete(two.id)
    assert chunk_files(vault.db) == []


def test_compressible_files_are_stored_compressed(vault: Vault) -> None:
    text = b"".join(b"line %d of a transcript that repeats itself\n" % i for i in range(200_000))
    record = vault.db.files.put(vault.ann, text, name="transcript.txt")
    assert record.media_type == "text/plain"
    assert vault.db.files.usage(vault.ann).stored_bytes < len(text) // 4
    assert vault.db.files.read(record.id) == text


def test_canary_plaintext_never_reaches_the_chunk_folder(vault: Vault) -> None:
    canary = b"CANARY-voice-sample-7f3a9"
    data = noise(2 * MiB, seed=10) + canary * 1000 + noise(MiB, seed=11)
    vault.db.files.put(vault.ann, data, name="canary.bin", metadata={"c": canary.decode()})
    vault.db.checkpoint()
    for path in vault.db.files.folder.rglob("*"):
        if path.is_file():
            assert canary not in path.read_bytes(), path
    for path in vault.path.parent.glob("vault.db*"):
        if path.is_file():
            assert canary not in path.read_bytes(), path


def test_list_get_delete_and_not_found(vault: Vault) -> None:
    files = vault.db.files
    a = files.put(vault.ann, b"a" * 10, name="a.txt")
    b = files.put(vault.ann, b"b" * 20, name="b.wav")
    files.put(vault.bob, b"c" * 30)
    assert [r.id for r in files.list(vault.ann)] == [a.id, b.id]
    assert [r.id for r in files.list(vault.ann, media_type="text/plain")] == [a.id]
    assert [r.id for r in files.list(vault.ann, limit=1, offset=1)] == [b.id]
    files.delete(a.id)
    with pytest.raises(NotFoundError):
        files.get(a.id)
    with pytest.raises(NotFoundError):
        files.open(a.id)
    with pytest.raises(NotFoundError):
        files.delete(a.id)
    with pytest.raises(NotFoundError):
        files.put("no-such-user", b"x")
    with pytest.raises(NotFoundError):
        files.put(vault.ann, Path("/no/such/file"))
    with pytest.raises(ValidationError):
        files.put(vault.ann, 42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        files.put("", b"x")
    with pytest.raises(JSONValueError):
        files.put(vault.ann, b"x", metadata={"x": object()})
    with pytest.raises(JSONValueError):
        files.put(vault.ann, b"x", metadata=[1])  # type: ignore[arg-type]
    assert repr(files).startswith("<FileService")


def test_export_writes_the_plaintext_atomically(vault: Vault, tmp_path: Path) -> None:
    data = noise(5 * MiB, seed=12)
    record = vault.db.files.put(vault.ann, data)
    target = tmp_path / "out.bin"
    seen: list[tuple[int, int | None, str]] = []
    vault.db.files.export(record.id, target, progress=lambda *a: seen.append(a))
    assert target.read_bytes() == data
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert seen[-1] == (len(data), len(data), "exporting")
    with pytest.raises(ValidationError):
        vault.db.files.export(record.id, target)
    vault.db.files.export(record.id, target, overwrite=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_put_reports_progress(vault: Vault) -> None:
    seen: list[tuple[int, int | None, str]] = []
    vault.db.files.put(vault.ann, noise(20 * MiB), progress=lambda *a: seen.append(a))
    assert seen[0] == (0, 20 * MiB, "storing")
    assert seen[-1] == (20 * MiB, 20 * MiB, "storing")
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)


def test_quota_refuses_a_file_and_leaves_nothing_behind(vault: Vault) -> None:
    files = vault.db.files
    files.set_quota(vault.ann, 6 * MiB)
    kept = files.put(vault.ann, noise(4 * MiB, seed=13))
    stored = chunk_files(vault.db)
    with pytest.raises(QuotaExceededError) as known_size:
        files.put(vault.ann, noise(3 * MiB, seed=14))
    assert (known_size.value.limit, known_size.value.used) == (6 * MiB, 4 * MiB)
    with pytest.raises(QuotaExceededError):  # a stream: refused while it is read
        files.put(vault.ann, NoiseStream(12 * MiB, seed=15))
    assert [r.id for r in files.list(vault.ann)] == [kept.id]
    assert chunk_files(vault.db) == stored
    assert files.usage(vault.ann).quota == 6 * MiB
    files.put(vault.bob, noise(8 * MiB, seed=16))  # bob has no quota
    files.set_quota(vault.ann, None)
    files.put(vault.ann, noise(3 * MiB, seed=14))
    with pytest.raises(ValidationError):
        files.set_quota(vault.ann, -1)
    with pytest.raises(NotFoundError):
        files.set_quota("nobody", 1)


def test_a_put_inside_a_transaction_is_refused(vault: Vault) -> None:
    with vault.db.transaction(), pytest.raises(DatabaseError, match="inside a transaction"):
        vault.db.files.put(vault.ann, b"x")


def test_a_delete_inside_a_transaction_sweeps_after_it(vault: Vault) -> None:
    record = vault.db.files.put(vault.ann, b"x" * 100)
    with vault.db.transaction():
        vault.db.files.delete(record.id)
    assert len(chunk_files(vault.db)) == 1  # marked, not yet removed
    assert vault.db.files.sweep().chunks_removed == 1
    assert chunk_files(vault.db) == []


def test_a_database_without_a_passphrase_cannot_store_files() -> None:
    db = mangostore.open(":memory:", encrypted=False)
    try:
        user = db.users.create(username="ann")
        with pytest.raises(ConfigurationError, match="passphrase"):
            db.files.put(user.id, b"x")
        assert db.files.list(user.id) == []
    finally:
        db.close()


def test_an_in_memory_database_keeps_chunks_in_a_folder_removed_at_close(
    memory_db: mangostore.Database,
) -> None:
    user = memory_db.users.create(username="ann")
    record = memory_db.files.put(user.id, b"voice" * 1000)
    folder = memory_db.files.folder
    assert folder.is_dir()
    assert memory_db.files.read(record.id) == b"voice" * 1000
    memory_db.close()
    assert not folder.exists()


def test_a_reopened_database_reads_its_files(vault: Vault) -> None:
    data = noise(3 * MiB, seed=17)
    record = vault.db.files.put(vault.ann, data)
    vault.db.close()
    from tests.conftest import PASSPHRASE
    from tests.files.conftest import SETTINGS

    vault.db = mangostore.open(vault.path, passphrase=PASSPHRASE, settings=SETTINGS)
    assert vault.db.files.read(record.id) == data
    assert os.path.isdir(str(vault.path) + ".files")


def test_key_rotation_keeps_stored_files_readable(vault: Vault) -> None:
    data = noise(MiB, seed=18)
    before = vault.db.files.put(vault.ann, data)
    cipher = vault.db.store.field_cipher
    assert cipher is not None
    with vault.db.store.transaction() as conn:
        cipher.rotate_user_key(conn, vault.ann)
    after = vault.db.files.put(vault.ann, data + b"more")
    assert vault.db.files.read(before.id) == data
    assert vault.db.files.read(after.id) == data + b"more"
