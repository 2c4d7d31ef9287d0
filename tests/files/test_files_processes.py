"""The file store with a second process: a put killed half-way, and a sweep while
another process puts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE
from tests.files.conftest import Vault, chunk_files, noise

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("files_worker.py")
ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def start(vault: Vault, size: int, seed: int, release: Path | None = None) -> subprocess.Popen[str]:
    """Start a worker storing ``size`` bytes for ann."""
    env = {**os.environ, "MANGOSTORE_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(WORKER), str(vault.path), vault.ann, str(size), str(seed)]
    if release is not None:
        args.append(str(release))
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_chunks(vault: Vault, proc: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(chunk_files(vault.db)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the worker wrote no chunks"
        time.sleep(0.02)


def test_a_put_killed_half_way_leaves_no_file_and_check_removes_its_chunks(
    vault: Vault,
) -> None:
    kept = vault.db.files.put(vault.ann, noise(2 * MiB, seed=1))
    before = set(chunk_files(vault.db))
    proc = start(vault, 400 * MiB, seed=2)
    try:
        wait_for_chunks(vault, proc, len(before) + 3)
        # The worker's put holds the folder's lock: nothing of it is swept meanwhile.
        assert vault.db.files.sweep().deferred
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert [r.id for r in vault.db.files.list(vault.ann)] == [kept.id]
    leaked = set(chunk_files(vault.db)) - before
    assert leaked
    report = vault.db.files.check()
    assert report.ok
    assert not report.sweep.deferred
    assert report.sweep.orphans_removed == len(leaked)
    assert set(chunk_files(vault.db)) == before
    assert vault.db.files.read(kept.id) == noise(2 * MiB, seed=1)
    assert vault.db.files.check().sweep.orphans_removed == 0


def test_a_sweep_while_another_process_puts_keeps_that_puts_chunks(
    vault: Vault, tmp_path: Path
) -> None:
    # The worker stores the same bytes as a file ann deletes meanwhile: the chunks it
    # reuses and the ones it wrote must all survive the sweeps run during its put.
    size = 20 * MiB
    shared = vault.db.files.put(vault.ann, noise(size, seed=3))
    release = tmp_path / "release"
    proc = start(vault, size, seed=3, release=release)
    try:
        waiting = Path(str(release) + ".waiting")
        deadline = time.monotonic() + 60
        while not waiting.exists():  # the worker found its first window's chunks stored
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        vault.db.files.delete(shared.id)  # marks them dead: the worker holds the lock
        assert vault.db.files.check().sweep.deferred
        release.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    file_id = out.strip()
    assert vault.db.files.read(file_id) == noise(size, seed=3)
    report = vault.db.files.check()
    assert report.ok
    assert report.sweep.orphans_removed == 0
    assert vault.db.files.read(file_id) == noise(size, seed=3)


def test_two_processes_storing_the_same_bytes_share_their_chunks(vault: Vault) -> None:
    size = 10 * MiB  # below the point where the worker slows down
    proc = start(vault, size, seed=4)
    mine = vault.db.files.put(vault.ann, noise(size, seed=4)).id  # meanwhile, here
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ids = [mine, out.strip()]
    for file_id in ids:
        assert vault.db.files.read(file_id) == noise(size, seed=4)
    assert vault.db.files.usage(vault.ann).stored_bytes < 1.1 * size  # one copy, not two
    vault.db.files.delete(ids[0])
    assert vault.db.files.read(ids[1]) == noise(size, seed=4)
    report = vault.db.files.check()
    assert report.ok
    assert report.chunks_checked == len(chunk_files(vault.db))


FETCH = """
import hashlib, sys
import mangostore
from mangostore.sync import FolderRelay
from tests.files.conftest import SETTINGS
from tests.conftest import PASSPHRASE
with mangostore.open(sys.argv[1], passphrase=PASSPHRASE, settings=SETTINGS) as db:
    db.sync.connect(FolderRelay(sys.argv[2]))
    db.sync.sync()
    print(hashlib.sha256(db.files.read(sys.argv[3])).hexdigest())
"""


def test_another_process_fetches_a_synced_file_through_a_relay_folder(
    vault: Vault, tmp_path: Path
) -> None:
    from mangostore.sync import FolderRelay

    relay = tmp_path / "relay"
    relay.mkdir()
    data = noise(3 * MiB, seed=21)
    stored = vault.db.files.put(vault.ann, data)
    vault.db.sync.enable(FolderRelay(relay))
    other, _ = vault.db.sync.new_device(tmp_path / "other.db", PASSPHRASE)
    other.close()
    vault.db.sync.sync()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", FETCH, str(tmp_path / "other.db"), str(relay), stored.id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == stored.digest
    assert data[1000:1100] not in b"".join(p.read_bytes() for p in relay.rglob("*") if p.is_file())


def test_syncing_a_database_that_stores_no_file_makes_no_chunk_folder(
    vault: Vault, tmp_path: Path
) -> None:
    from mangostore.filestore.transfer import chunk_folder_exists
    from mangostore.sync import FolderRelay

    vault.db.sync.enable(FolderRelay(tmp_path / "relay", create=True))
    vault.db.sync.sync()
    assert not chunk_folder_exists(vault.path)
    assert not vault.db.files.in_use()  # so db.maintenance() skips the file sweep
