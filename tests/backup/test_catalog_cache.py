"""A database reads each manifest and key block once, not at every check of the schedule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from tests.backup.conftest import SETTINGS, fill
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import MemoryDestination, open_destination
from mangostore.backup.catalog import ManifestCache, load_catalog
from mangostore.backup.manifest import manifest_name


class CountingDestination(MemoryDestination):
    """Counts the objects read, by folder."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[IO[bytes]]:
        self.reads.append(name)
        with super().reading(name) as src:
            yield src


def _reads(dest: CountingDestination, folder: str) -> int:
    return sum(1 for name in dest.reads if name.startswith(folder))


def _look(vault: mangostore.Database, dest: CountingDestination) -> list[str]:
    """What the schedule's look at the destination reads (prune reads the catalog)."""
    dest.reads.clear()
    vault.backup.prune(dest, dry_run=True)
    return [name for name in dest.reads if name.startswith("manifests/")]


def test_a_manifest_is_read_again_only_when_it_changed(vault: mangostore.Database) -> None:
    dest = CountingDestination()
    made = [vault.backup.create(dest)]
    for n in range(4):
        vault.command_history.record(vault.users.list()[0].id, f"ls {n}")
        made.append(vault.backup.create(dest))
    _look(vault, dest)
    assert _look(vault, dest) == []
    # A backup writes its own manifest and re-signs those whose index it drops: the
    # next look reads only those.
    vault.command_history.record(vault.users.list()[0].id, "ls more")
    before = dict(dest.objects)
    vault.backup.create(dest)
    changed = {
        n for n in dest.objects if n.startswith("manifests/") and before.get(n) != dest.objects[n]
    }
    assert len(changed) == 2
    assert set(_look(vault, dest)) == changed
    # A manifest changed by someone else is read again, and still checked.
    name = manifest_name(made[2].id)
    dest.objects[name] = dest.objects[name].replace(b'"changed_rows": ', b'"changed_rows": 1')
    assert _look(vault, dest) == [name]
    catalog = vault.backup.list(dest)
    assert [n for n, _ in catalog.problems] == [name]


def test_list_and_verify_read_every_manifest_again(vault: mangostore.Database) -> None:
    # What they report is what the destination holds now, whatever a cache kept.
    dest = CountingDestination()
    vault.backup.create(dest)
    vault.command_history.record(vault.users.list()[0].id, "ls")
    vault.backup.create(dest)
    for look in (lambda: vault.backup.list(dest), lambda: vault.backup.verify(dest)):
        dest.reads.clear()
        look()
        assert _reads(dest, "manifests/") == 2


def test_a_cache_gives_what_a_fresh_read_gives(vault: mangostore.Database) -> None:
    dest = MemoryDestination()
    fill(vault, users=1, commands=3)
    vault.backup.create(dest)
    vault.command_history.record(vault.users.list()[0].id, "ls")
    vault.backup.create(dest)
    ring = vault.store.keyring
    assert ring is not None
    key = ring.subkey("backup")
    cache = ManifestCache()
    first = load_catalog(dest, key, ring.vault_id, cache)
    again = load_catalog(dest, key, ring.vault_id, cache)
    fresh = load_catalog(dest, key, ring.vault_id)
    assert again.backups == first.backups == fresh.backups
    # A deleted manifest is gone from the cache too.
    dest.delete(manifest_name(first.backups[-1].id))
    assert [m.id for m in load_catalog(dest, key, ring.vault_id, cache).backups] == [
        first.backups[0].id
    ]


def test_a_folder_object_gets_a_new_stamp_when_written_again(tmp_path: Path) -> None:
    dest = open_destination(tmp_path / "bk")
    with dest.writing("manifests/a.json") as out:
        out.write(b"one")
    before = dest.stamps("manifests/")
    assert set(before) == {"manifests/a.json"}
    assert before["manifests/a.json"]
    with dest.writing("manifests/a.json") as out:
        out.write(b"two")
    assert dest.stamps("manifests/") != before
    assert dest.names("manifests/") == ["manifests/a.json"]


def test_key_blocks_known_clean_are_not_read_again(vault: mangostore.Database) -> None:
    dest = CountingDestination()
    users = fill(vault, users=3, commands=2)
    vault.backup.create(dest)
    vault.command_history.record(users[0], "ls")
    vault.backup.create(dest)
    vault.privacy.erase_user(users[1])
    assert len(vault.backup.apply_erasures(dest)) == 2
    dest.reads.clear()
    assert vault.backup.apply_erasures(dest) == []
    assert _reads(dest, "objects/") == 0
    # Another erasure reads (and rewrites) them again.
    vault.privacy.erase_user(users[2])
    assert len(vault.backup.apply_erasures(dest)) == 2
    assert _reads(dest, "objects/") == 2


@pytest.mark.parametrize("name", ["manifests/x.json.tmp-1", "manifests/y.txt"])
def test_listing_skips_what_is_not_a_manifest(tmp_path: Path, name: str) -> None:
    dest = open_destination(tmp_path / "bk")
    with dest.writing(name) as out:
        out.write(b"{}")
    ring = mangostore.create(tmp_path / "v.db", passphrase=PASSPHRASE, settings=SETTINGS).db
    keyring = ring.store.keyring
    assert keyring is not None
    catalog = load_catalog(dest, keyring.subkey("backup"), keyring.vault_id, ManifestCache())
    assert catalog.backups == []
    assert catalog.problems == []
    ring.close()
