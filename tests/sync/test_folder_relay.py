"""The folder relay: batches in a folder several processes share, published atomically."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import SyncTransportError
from mangostore.sync import SyncTransport
from mangostore.sync import folder as folder_module
from mangostore.sync.batches import Batch
from mangostore.sync.folder import FORMAT, MARKER_NAME, FolderRelay

VAULT = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def batch(number: int, device: str = "dev-a", body: bytes | None = None) -> Batch:
    return Batch(
        VAULT, device, number, 17, body if body is not None else f"{device}/{number}".encode()
    )


def batch_file(root: Path, cursor: int) -> Path:
    return root / VAULT / "batches" / f"{(cursor - 1) // 1000:09d}" / f"{cursor:012d}.batch"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty relay folder."""
    path = tmp_path / "relay"
    path.mkdir()
    return path


@pytest.fixture
def no_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without hard links, as FAT and exFAT are."""

    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(os, "link", refuse)


def test_a_folder_relay_is_a_sync_transport(root: Path) -> None:
    assert isinstance(FolderRelay(root), SyncTransport)


# -- pushing and pulling ---------------------------------------------------------------------


def test_batches_come_back_whole_and_in_cursor_order(root: Path) -> None:
    relay = FolderRelay(root)
    sent = [batch(1), batch(1, "dev-b", b"\x00\n\xff" * 100), batch(2), batch(3, body=b"")]

    cursors = [relay.push(b) for b in sent]

    assert cursors == [1, 2, 3, 4]
    pulled = relay.pull(VAULT, 0, 10)
    assert [p.cursor for p in pulled] == [1, 2, 3, 4]
    assert [p.batch for p in pulled] == sent
    assert relay.highest_cursor(VAULT) == 4


def test_pull_pages_after_a_cursor(root: Path) -> None:
    relay = FolderRelay(root)
    for number in range(1, 8):
        relay.push(batch(number))

    assert [p.cursor for p in relay.pull(VAULT, 2, 3)] == [3, 4, 5]
    assert [p.cursor for p in relay.pull(VAULT, 5, 50)] == [6, 7]
    assert relay.pull(VAULT, 7, 50) == []
    assert relay.pull(VAULT, 0, 0) == []
    assert [p.cursor for p in relay.pull(VAULT, -3, 1)] == [1]


def test_another_instance_sees_the_same_batches(root: Path) -> None:
    FolderRelay(root).push(batch(1))
    assert [p.batch for p in FolderRelay(root).pull(VAULT, 0, 10)] == [batch(1)]


def test_a_vault_nobody_pushed_to_has_nothing(root: Path) -> None:
    assert FolderRelay(root).pull(VAULT, 0, 10) == []
    FolderRelay(root).push(batch(1))
    assert FolderRelay(root).pull("another-vault", 0, 10) == []


def test_a_repeated_push_returns_the_first_cursor_and_stores_nothing(root: Path) -> None:
    relay = FolderRelay(root)
    first = relay.push(batch(1))
    relay.push(batch(2))

    again = relay.push(batch(1, body=b"sealed again after a lost answer"))

    assert again == first == 1
    assert FolderRelay(root).push(batch(1)) == 1  # another process, too
    pulled = relay.pull(VAULT, 0, 10)
    assert [p.batch for p in pulled] == [batch(1), batch(2)]  # the first copy is kept


def test_cursors_carry_on_across_shards(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_module, "SHARD_FILES", 2)
    relay = FolderRelay(root)

    assert [relay.push(batch(n)) for n in range(1, 6)] == [1, 2, 3, 4, 5]

    assert len(list((root / VAULT / "batches").iterdir())) == 3
    assert [p.cursor for p in relay.pull(VAULT, 1, 10)] == [2, 3, 4, 5]
    assert relay.push(batch(3)) == 3


def test_the_folder_holds_a_marker_with_its_format(root: Path) -> None:
    FolderRelay(root).push(batch(1))
    lines = (root / MARKER_NAME).read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{FORMAT} marker"
    assert json.loads(lines[1]) == {"publish": "link"}
    assert batch_file(root, 1).read_bytes().startswith(f"{FORMAT} batch\n".encode())


def test_two_devices_sync_through_the_folder(root: Path, fast_settings: Settings) -> None:
    first, _ = mangostore.create(":memory:", passphrase=PASSPHRASE, settings=fast_settings)
    first.sync.enable(FolderRelay(root))
    other, _ = first.sync.new_device(":memory:", PASSPHRASE, settings=fast_settings)
    other.sync.connect(FolderRelay(root))  # its own instance, as another process has
    try:
        user = first.users.create(username="alice", email="alice@example.org")
        first.sync.sync()
        other.sync.sync()
        assert other.users.get(user.id).email == "alice@example.org"
    finally:
        first.close()
        other.close()
    stored = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert b"alice" not in stored


# -- processes at once -------------------------------------------------------------------------

PUSHER = """
import json, pathlib, sys, time
from mangostore.sync.batches import Batch
from mangostore.sync.folder import FolderRelay
root, vault, device, count, go = sys.argv[1:6]
relay = FolderRelay(root)
while not pathlib.Path(go).exists():
    time.sleep(0.001)
cursors = [
    relay.push(Batch(vault, device, n, 17, f"{device}/{n}".encode()))
    for n in range(1, int(count) + 1)
]
print(json.dumps(cursors))
"""


def push_at_once(root: Path, devices: list[str], count: int) -> list[list[int]]:
    """Start one process per device, let them push ``count`` batches each at once."""
    go = root.parent / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUSHER, str(root), VAULT, device, str(count), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for device in devices
    ]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def lock_marker(root: Path) -> None:
    """Mark ``root`` as a folder whose names are given by rename under a lock."""
    (root / MARKER_NAME).write_text(f'{FORMAT} marker\n{{"publish": "lock"}}\n', encoding="utf-8")


@pytest.mark.parametrize("publish", ["link", "lock"])
def test_two_processes_pushing_at_once_never_share_a_cursor(root: Path, publish: str) -> None:
    if publish == "lock":
        lock_marker(root)
    count = 40

    got = push_at_once(root, ["dev-a", "dev-b"], count)

    assert sorted(got[0] + got[1]) == list(range(1, 2 * count + 1))
    pulled = FolderRelay(root).pull(VAULT, 0, 1000)
    assert [p.cursor for p in pulled] == list(range(1, 2 * count + 1))
    for device, cursors in zip(["dev-a", "dev-b"], got, strict=True):
        for number, cursor in enumerate(cursors, 1):
            assert pulled[cursor - 1].batch == Batch(
                VAULT, device, number, 17, f"{device}/{number}".encode()
            )
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_two_processes_pushing_the_same_batches_agree_on_their_cursors(root: Path) -> None:
    FolderRelay(root).check()

    first, second = push_at_once(root, ["dev-a", "dev-a"], 30)

    assert first == second
    pulled = FolderRelay(root).pull(VAULT, 0, 1000)
    for number, cursor in enumerate(first, 1):
        assert pulled[cursor - 1].batch == batch(number)


# -- file systems without hard links ---------------------------------------------------------


def test_without_hard_links_names_are_given_under_a_lock(root: Path, no_links: None) -> None:
    relay = FolderRelay(root)

    assert [relay.push(batch(n)) for n in (1, 2, 1)] == [1, 2, 1]

    assert json.loads((root / MARKER_NAME).read_text().splitlines()[1]) == {"publish": "lock"}
    assert [p.batch for p in relay.pull(VAULT, 0, 10)] == [batch(1), batch(2)]
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_a_machine_without_links_on_a_folder_that_uses_them_is_told(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FolderRelay(root).check()  # made where hard links work

    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(os, "link", refuse)

    with pytest.raises(SyncTransportError, match="gives names by hard links"):
        FolderRelay(root).push(batch(1))


def test_a_lock_left_by_a_dead_process_is_removed(root: Path) -> None:
    lock_marker(root)
    shard = batch_file(root, 1).parent
    shard.mkdir(parents=True)
    (shard / ".lock").write_text("held by a process that died", encoding="utf-8")

    assert FolderRelay(root, lock_stale_s=0.05).push(batch(1)) == 1
    assert not (shard / ".lock").exists()


def test_a_lock_held_too_long_is_a_clear_error(root: Path) -> None:
    lock_marker(root)
    shard = batch_file(root, 1).parent
    shard.mkdir(parents=True)
    (shard / ".lock").write_text("busy", encoding="utf-8")

    with pytest.raises(SyncTransportError, match=r"stayed locked .* delete the lock file"):
        FolderRelay(root, lock_wait_s=0.05, lock_stale_s=60).push(batch(1))


# -- temporary files and damage ----------------------------------------------------------------


def test_temporary_files_of_a_crash_are_ignored_then_cleaned(root: Path) -> None:
    relay = FolderRelay(root)
    relay.push(batch(1))
    folder = root / VAULT / "batches"
    old, young = folder / ".tmp-0123456789abcdef", folder / ".tmp-fedcba9876543210"
    old.write_bytes(b"half a batch")
    young.write_bytes(b"a push in progress")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    assert [p.cursor for p in relay.pull(VAULT, 0, 10)] == [1]
    relay.push(batch(2))

    assert not old.exists()
    assert young.exists()
    assert [p.cursor for p in relay.pull(VAULT, 0, 10)] == [1, 2]


def test_files_the_relay_did_not_write_are_ignored(root: Path) -> None:
    relay = FolderRelay(root)
    relay.push(batch(1))
    (batch_file(root, 1).parent / ".DS_Store").write_bytes(b"\x00\x01")
    (batch_file(root, 1).parent / "._000000000002.batch").write_bytes(b"\x00\x01")

    assert relay.push(batch(2)) == 2
    assert [p.cursor for p in relay.pull(VAULT, 0, 10)] == [1, 2]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-3])
    elif how == "cut in the header":
        path.write_bytes(data[:40])
    elif how == "changed":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif how == "not a batch":
        path.write_bytes(b"hello\n")
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("truncated", "holds 4 of its 7 body bytes"),
        ("cut in the header", "not readable"),
        ("changed", "checksum"),
        ("not a batch", "not a relay batch file"),
        ("empty", "not a relay batch file"),
    ],
)
def test_a_damaged_batch_file_is_a_clear_error(root: Path, how: str, says: str) -> None:
    relay = FolderRelay(root)
    relay.push(batch(1))
    relay.push(batch(2))
    damage(batch_file(root, 2), how)

    with pytest.raises(SyncTransportError) as caught:
        relay.pull(VAULT, 0, 10)

    message = str(caught.value)
    assert says in message
    assert str(batch_file(root, 2)) in message
    assert "no device can pull past cursor 2" in message
    assert [p.cursor for p in relay.pull(VAULT, 0, 1)] == [1]


def test_a_batch_file_from_a_newer_mangostore_asks_for_an_upgrade(root: Path) -> None:
    relay = FolderRelay(root)
    relay.push(batch(1))
    path = batch_file(root, 1)
    path.write_bytes(path.read_bytes().replace(b"relay/1 batch", b"relay/2 batch", 1))

    with pytest.raises(SyncTransportError, match=r"newer mangostore.*upgrade"):
        relay.pull(VAULT, 0, 10)


def test_a_batch_file_moved_to_another_vault_is_refused(root: Path) -> None:
    relay = FolderRelay(root)
    relay.push(batch(1))
    other = root / "another-vault" / "batches" / "000000000"
    other.mkdir(parents=True)
    os.rename(batch_file(root, 1), other / "000000000001.batch")

    with pytest.raises(SyncTransportError, match=f"belongs to vault {VAULT}"):
        relay.pull("another-vault", 0, 10)


def test_a_missing_batch_file_is_an_error_not_the_end(root: Path) -> None:
    relay = FolderRelay(root)
    for number in (1, 2, 3):
        relay.push(batch(number))
    batch_file(root, 2).unlink()

    with pytest.raises(SyncTransportError, match="missing, though later batches"):
        relay.pull(VAULT, 1, 10)


def test_a_damaged_cursor_record_is_a_clear_error(root: Path) -> None:
    relay = FolderRelay(root)
    relay.push(batch(1))
    record = root / VAULT / "pushed" / "dev-a" / "000000000" / "000000000001.cursor"
    record.write_bytes(record.read_bytes()[:30])

    with pytest.raises(SyncTransportError, match="damaged"):
        relay.push(batch(1))


def test_a_marker_from_a_newer_mangostore_asks_for_an_upgrade(root: Path) -> None:
    (root / MARKER_NAME).write_text("mangostore-folder-relay/9 marker\n{}\n", encoding="utf-8")
    with pytest.raises(SyncTransportError, match="newer mangostore"):
        FolderRelay(root).pull(VAULT, 0, 10)


# -- the folder itself -------------------------------------------------------------------------


def test_a_missing_folder_is_unreachable_not_empty(tmp_path: Path) -> None:
    relay = FolderRelay(tmp_path / "stick" / "relay")

    for call in (lambda: relay.pull(VAULT, 0, 10), lambda: relay.push(batch(1)), relay.check):
        with pytest.raises(SyncTransportError, match="does not exist: mount the shared folder"):
            call()


def test_create_makes_the_folder_but_not_its_parent(tmp_path: Path) -> None:
    FolderRelay(tmp_path / "relay", create=True).check()
    assert (tmp_path / "relay" / MARKER_NAME).is_file()

    with pytest.raises(SyncTransportError, match="cannot be made"):
        FolderRelay(tmp_path / "stick" / "relay", create=True).check()


def test_a_file_is_not_a_relay_folder(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(SyncTransportError, match="is a file, not a folder"):
        FolderRelay(path).push(batch(1))


@pytest.mark.parametrize(
    ("code", "says"),
    [(errno.EACCES, "writable"), (errno.ENOSPC, "is full"), (errno.EIO, "still reachable")],
)
def test_a_folder_that_cannot_be_written_is_a_clear_error(
    root: Path, monkeypatch: pytest.MonkeyPatch, code: int, says: str
) -> None:
    FolderRelay(root).check()
    real_open = os.open

    def failing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)

    with pytest.raises(SyncTransportError, match=says) as caught:
        FolderRelay(root).push(batch(1))
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.parametrize("vault", ["../escape", "Upper-Case", "", ".hidden", "a/b"])
def test_ids_that_cannot_name_a_folder_are_refused(root: Path, vault: str) -> None:
    relay = FolderRelay(root)
    with pytest.raises(SyncTransportError, match="cannot store a batch"):
        relay.push(Batch(vault, "dev-a", 1, 17, b"x"))
    with pytest.raises(SyncTransportError, match="cannot store a batch"):
        relay.pull(vault, 0, 10)
    assert list(root.iterdir()) == []


def test_the_repr_names_the_folder_only(root: Path) -> None:
    assert repr(FolderRelay(root)) == f"<mangostore FolderRelay {str(root)!r}>"
