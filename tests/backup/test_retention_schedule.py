"""Retention never deletes what a kept backup needs; the schedule catches up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.backup.conftest import SETTINGS
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import BackupPolicy
from mangostore.clock import ManualClock
from mangostore.errors import ValidationError

DAY_MS = 86_400_000


def _write(db: mangostore.Database, n: int) -> None:
    db.command_history.record(db.users.list()[0].id, f"cmd {n}")


def test_prune_keeps_every_backup_a_kept_one_needs(
    clocked_vault: mangostore.Database, folder: Path, clock: ManualClock, tmp_path: Path
) -> None:
    db = clocked_vault
    db.backup.configure(BackupPolicy(retention_days=2))
    made = []
    for day in range(5):
        _write(db, day)
        made.append(db.backup.create(folder))
        clock.advance(DAY_MS)
    # One chain: the full backup of day 0 is old, but the kept incrementals need it.
    report = db.backup.prune(folder)
    kept = {m.id for m in db.backup.list(folder).backups}
    assert made[0].id in kept
    assert made[-1].id in kept
    assert report.deleted == []
    db.backup.restore(tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, settings=SETTINGS)


def test_old_restore_points_are_thinned_to_one_an_hour(
    clocked_vault: mangostore.Database, folder: Path, clock: ManualClock, tmp_path: Path
) -> None:
    db = clocked_vault
    db.backup.configure(BackupPolicy(fanout=4, keep_all_days=1, thin_every_s=3600))
    made = []
    for n in range(18):  # every 10 minutes for three hours
        _write(db, n)
        made.append(db.backup.create(folder))
        clock.advance(600_000)
    clock.advance(2 * DAY_MS)
    _write(db, 99)
    newest = db.backup.create(folder, kind="full")
    report = db.backup.prune(folder)
    catalog = db.backup.list(folder)
    kept = {m.id: m for m in catalog.backups}
    assert report.deleted
    assert newest.id in kept
    # Each hour of the old day keeps the point whose restore reads the fewest backups
    # (the newest of those), with its chain; the incrementals in between are gone.
    for hour in range(3):
        slot = made[hour * 6 : hour * 6 + 6]
        best = min(m.depth for m in slot)
        chosen = [m for m in slot if m.depth == best][-1]
        assert chosen.id in kept
        assert all(p.id in kept for p in catalog.chain(kept[chosen.id]))
    assert len(kept) < len(made)
    # Whatever is kept still verifies and restores.
    assert db.backup.verify(folder).ok
    for manifest in catalog.backups:
        assert db.backup.verify(folder, manifest.id).ok
    at = made[7].created_at + 1
    db.backup.restore(tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, settings=SETTINGS, at=at)


def test_prune_deletes_old_chains_and_orphans(
    clocked_vault: mangostore.Database, folder: Path, clock: ManualClock
) -> None:
    db = clocked_vault
    db.backup.configure(BackupPolicy(retention_days=2, orphan_grace_s=3600))
    old_full = db.backup.create(folder)
    _write(db, 1)
    old_inc = db.backup.create(folder)
    orphan = folder / "objects" / old_inc.id.replace(old_inc.id[:8], "01800000") / "data.00000"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by an interrupted backup")
    clock.advance(5 * DAY_MS)
    new_full = db.backup.create(folder, kind="full")
    dry = db.backup.prune(folder, dry_run=True)
    assert set(dry.deleted) == {old_full.id, old_inc.id}
    assert (folder / f"manifests/{old_full.id}.json").exists()
    report = db.backup.prune(folder)
    assert set(report.deleted) == {old_full.id, old_inc.id}
    assert [m.id for m in db.backup.list(folder).backups] == [new_full.id]
    assert not orphan.exists()
    assert db.backup.verify(folder).ok


def test_tick_makes_what_is_due_and_catches_up_once_after_sleep(
    clocked_vault: mangostore.Database, folder: Path, clock: ManualClock
) -> None:
    db = clocked_vault
    db.backup.configure(BackupPolicy(incremental_every_s=3600, full_every_s=86400))
    assert db.backup.tick(folder).kind == "full"  # type: ignore[union-attr]
    assert db.backup.tick(folder) is None
    clock.advance(3_600_000)
    _write(db, 1)
    assert db.backup.tick(folder).kind == "incremental"  # type: ignore[union-attr]
    clock.advance(10 * 3_600_000)  # the machine slept through ten periods
    assert db.backup.tick(folder).kind == "incremental"  # type: ignore[union-attr]
    assert db.backup.tick(folder) is None
    clock.advance(DAY_MS)
    assert db.backup.tick(folder).kind == "full"  # type: ignore[union-attr]


def test_the_background_schedule_makes_a_backup(vault: mangostore.Database, folder: Path) -> None:
    schedule = vault.backup.start_schedule(folder, check_every_s=0.05)
    try:
        for _ in range(200):
            if schedule.made:
                break
            time.sleep(0.05)
    finally:
        vault.backup.stop_schedule()
    assert schedule.made >= 1
    assert schedule.failures == 0
    assert len(vault.backup.list(folder).backups) == 1


def test_backups_can_follow_the_writes(
    clocked_vault: mangostore.Database, folder: Path, clock: ManualClock
) -> None:
    db = clocked_vault
    db.backup.configure(BackupPolicy(after_writes_s=300))
    first = db.backup.tick(folder)
    assert first is not None
    assert first.kind == "full"
    clock.advance(60_000)
    _write(db, 1)
    assert db.backup.tick(folder) is None  # changed, but the newest backup is recent
    clock.advance(300_000)
    follow = db.backup.tick(folder)
    assert follow is not None
    assert follow.kind == "incremental"
    clock.advance(600_000)
    assert db.backup.tick(folder) is None  # nothing written since: nothing to back up
    db.backup.configure(BackupPolicy(after_writes_s=None))
    _write(db, 2)
    assert db.backup.tick(folder) is None  # without after_writes_s: hourly
    # By default, restore points follow the writes a minute apart.
    db.backup.configure(BackupPolicy())
    assert db.backup.tick(folder) is not None


def test_after_writes_s_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="after_writes_s"):
        BackupPolicy(after_writes_s=0)
