"""Full and incremental backups restore exactly the database as it was."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tests.backup.conftest import SETTINGS, fill, logical, restored
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup import (
    BackupPolicy,
    Destination,
    FsspecDestination,
    MemoryDestination,
    changelog,
)
from mangostore.backup.manifest import Manifest
from mangostore.clock import ManualClock
from mangostore.errors import BackupError, ConfigurationError


def test_destinations_conform_to_the_interface(folder: Path) -> None:
    assert isinstance(MemoryDestination(), Destination)
    assert isinstance(FsspecDestination(str(folder)), Destination)


def test_full_backup_restores_every_table(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    made = vault.backup.create(folder)
    assert made.kind == "full"
    assert made.parent is None
    assert made.tables["users"] == 2
    assert restored(vault, folder, tmp_path / "r.db") == logical(vault)


def test_restored_database_reads_encrypted_fields(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    user = vault.users.list()[0]
    vault.backup.create(folder)
    report = vault.backup.restore(
        tmp_path / "r.db", passphrase="another passphrase", to=folder, settings=SETTINGS
    )
    assert report.recovery_key
    assert "recovery_key=<hidden>" in repr(report)
    with mangostore.open(tmp_path / "r.db", passphrase="another passphrase") as restored:
        assert restored.users.get(user.id).security_profile == user.security_profile


def test_incremental_backups_carry_only_changes(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    full = vault.backup.create(folder)
    user = vault.users.list()[0]
    vault.users.update(user.id, email="new@example.org")
    vault.execute("DELETE FROM command_history WHERE rowid % 5 = 0")
    inc = vault.backup.create(folder)
    assert inc.kind == "incremental"
    assert inc.parent == full.id
    assert inc.depth == 1
    assert inc.deleted_rows >= 20
    assert inc.changed_rows < full.changed_rows
    # A full backup keeps its index (roll-ups build on it); an incremental's is
    # dropped once it has a child.
    vault.execute("DELETE FROM command_history WHERE rowid % 7 = 0")
    child = vault.backup.create(folder)
    catalog = vault.backup.list(folder)
    assert child.parent == inc.id
    assert catalog.get(full.id).objects_of("index")
    assert not catalog.get(inc.id).objects_of("index")
    assert restored(vault, folder, tmp_path / "r.db") == logical(vault)


def test_a_changed_schema_starts_a_new_full_backup(
    vault: mangostore.Database, folder: Path
) -> None:
    vault.backup.create(folder)
    vault.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY, note TEXT)")
    assert vault.backup.create(folder).kind == "full"
    vault.execute("CREATE TABLE extra2 (id INTEGER PRIMARY KEY)")
    with pytest.raises(BackupError, match="schema"):
        vault.backup.create(folder, kind="incremental")


def _series(vault: mangostore.Database, folder: Path, count: int) -> list[Manifest]:
    """``count`` backups with fanout 2, a command recorded before each."""
    vault.backup.configure(BackupPolicy(fanout=2))
    made = []
    for n in range(count):
        vault.command_history.record(vault.users.list()[0].id, f"ls {n}")
        made.append(vault.backup.create(folder))
    return made


def test_incrementals_form_levels_so_a_restore_reads_few_backups(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    made = _series(vault, folder, 9)
    full = made[0]
    assert [m.kind for m in made] == ["full", *["incremental"] * 8]
    assert [m.seq for m in made] == list(range(9))
    # With fanout 2, the n-th incremental is built on the newest backup whose level
    # (the trailing zero bits of its seq) is at least its own: 2, 4 and 8 on the full
    # backup, 3 on 2, 5 and 6 on 4, 7 on 6.
    parents = [m.parent for m in made[1:]]
    ids = [m.id for m in made]
    assert parents == [ids[0], ids[0], ids[2], ids[0], ids[4], ids[4], ids[6], ids[0]]
    assert [m.depth for m in made] == [0, 1, 1, 2, 1, 2, 2, 3, 1]
    # A level-3 incremental holds every change of the seven before it.
    assert made[8].changed_rows >= made[4].changed_rows >= made[2].changed_rows
    catalog = vault.backup.list(folder)
    assert [len(catalog.chain(m)) for m in made] == [m.depth + 1 for m in made]
    # Only the backups a later one may be built on keep their index: the newest,
    # and the full backup (every level rolls up onto it).
    indexed = {m.id for m in catalog.backups if m.objects_of("index")}
    assert indexed == {full.id, made[8].id}
    for manifest in made:
        assert vault.backup.verify(folder, manifest.id).ok
    assert restored(vault, folder, tmp_path / "r.db") == logical(vault)


def test_the_indexes_kept_are_those_a_later_incremental_builds_on(
    vault: mangostore.Database, folder: Path
) -> None:
    made = _series(vault, folder, 7)
    # seq 6 (level 1, on 4) is the newest. The backups of its chain a later one may be
    # built on keep their index: 6, 4 (level 2), the full one; 1, 2, 3 and 5 drop it.
    catalog = vault.backup.list(folder)
    indexed = {m.seq for m in catalog.backups if m.objects_of("index")}
    assert indexed == {0, 4, 6}
    vault.command_history.record(vault.users.list()[0].id, "ls again")
    assert vault.backup.create(folder).parent == made[6].id


def test_a_broken_chain_under_the_newest_backup_makes_a_full_one(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    made = _series(vault, folder, 4)
    assert made[3].parent == made[2].id
    # Backup 2 (which 3 builds on) is lost: nothing can be built on 3's chain.
    (folder / f"manifests/{made[2].id}.json").unlink()
    vault.command_history.record(vault.users.list()[0].id, "ls again")
    with pytest.raises(BackupError, match="chain is broken"):
        vault.backup.create(folder, kind="incremental")
    again = vault.backup.create(folder)
    assert again.kind == "full"
    assert restored(vault, folder, tmp_path / "r.db") == logical(vault)


def test_a_full_backup_is_made_when_its_chain_cannot_be_rolled_up(
    vault: mangostore.Database, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log keeps one backup's entries: by the roll-up, the full backup's are gone.
    monkeypatch.setattr(changelog, "KEEP_EPOCHS", 1)
    vault.backup.configure(BackupPolicy(fanout=2))
    vault.backup.create(folder)
    vault.execute("UPDATE projects SET name = 'renamed'")
    assert vault.backup.create(folder).kind == "incremental"
    vault.execute("UPDATE projects SET name = 'again'")
    # The second incremental (level 1) is built on the full backup.
    with pytest.raises(BackupError, match=r"builds on backup.*change log does not reach back"):
        vault.backup.create(folder, kind="incremental")
    assert vault.backup.create(folder).kind == "full"


@pytest.mark.parametrize("seed", [1, 2])
def test_restoring_at_each_point_gives_the_database_as_it_was(
    tmp_path: Path, clock: ManualClock, seed: int
) -> None:
    rng = random.Random(seed)
    db = mangostore.create(
        tmp_path / "v.db", passphrase=PASSPHRASE, settings=SETTINGS, clock=clock
    ).db
    folder = tmp_path / "bk"
    db.backup.configure(BackupPolicy(fanout=2))
    fill(db, users=1, commands=5)
    points: list[tuple[int, dict]] = []
    for _ in range(9):  # with fanout 2, levels 0 to 3
        for _ in range(rng.randint(1, 6)):
            users = db.users.list()
            action = rng.choice(["add", "edit", "delete", "user"])
            if action == "add" or not users:
                fill(db, users=1, commands=rng.randint(0, 4))
            elif action == "edit":
                u = rng.choice(users)
                db.users.update(
                    u.id, email=f"{rng.random()}@x.org", preferences={"n": rng.random()}
                )
            elif action == "delete":
                db.execute(
                    "DELETE FROM command_history WHERE rowid IN "
                    "(SELECT rowid FROM command_history ORDER BY random() LIMIT 3)"
                )
            else:
                db.projects.create(
                    user_id=rng.choice(users).id, name="p", path=f"/p/{rng.random()}"
                )
        clock.advance(3_600_000)
        made = db.backup.create(folder)
        points.append((made.created_at, logical(db)))
        clock.advance(60_000)
    for n, (moment, expected) in enumerate(points):
        assert restored(db, folder, tmp_path / f"r{n}.db", at=moment + 30_000) == expected
    db.close()


def test_restore_refuses_to_overwrite_without_force(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    vault.backup.create(folder)
    target = tmp_path / "r.db"
    target.write_bytes(b"precious")
    with pytest.raises(BackupError, match="already exists"):
        vault.backup.restore(target, passphrase=PASSPHRASE, to=folder, settings=SETTINGS)
    assert target.read_bytes() == b"precious"
    vault.backup.restore(target, passphrase=PASSPHRASE, to=folder, settings=SETTINGS, force=True)
    with mangostore.open(target, passphrase=PASSPHRASE) as restored:
        assert restored.users.count() == 2


def test_restore_before_the_first_backup_is_refused(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    made = vault.backup.create(folder)
    with pytest.raises(BackupError, match="no backup"):
        vault.backup.restore(
            tmp_path / "r.db", passphrase=PASSPHRASE, to=folder, at=made.created_at - 1
        )


def test_a_database_without_keyring_cannot_be_backed_up(folder: Path) -> None:
    with mangostore.open(":memory:", encrypted=False) as db, pytest.raises(ConfigurationError):
        db.backup.create(folder)


def test_in_memory_destination_round_trip(vault: mangostore.Database, tmp_path: Path) -> None:
    dest = MemoryDestination()
    vault.backup.create(dest)
    assert any(n.startswith("manifests/") for n in dest.objects)
    assert vault.backup.verify(dest).ok
