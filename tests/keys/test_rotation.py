"""Key rotation: every value ends under its owner's new key, and an interrupted rotation
leaves everything readable and is finished by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import ConfigurationError, InvalidValueError
from mangostore.keys.envelope import parse_header
from mangostore.keys.field_cipher import FieldCipher, field_cipher_for
from mangostore.keys.rotation import FieldRef, rotate_field_keys

NOW = 1_700_000_000_000


@dataclass(frozen=True)
class Stored:
    table: str
    column: str
    row_id: str
    owner: str
    plaintext: bytes


def cipher_of(db: mangostore.Database) -> FieldCipher:
    cipher = field_cipher_for(db)
    assert cipher is not None
    return cipher


def put(db: mangostore.Database, value: Stored) -> None:
    """Encrypt ``value`` into its column, as a repository would."""
    with db.store.transaction() as conn:
        blob = cipher_of(db).encrypt(
            conn, value.table, value.column, value.row_id, value.owner, value.plaintext
        )
        conn.execute(
            f'UPDATE "{value.table}" SET "{value.column}" = ? WHERE id = ?', (blob, value.row_id)
        )


def stored_blob(db: mangostore.Database, value: Stored) -> bytes:
    rows = db.query(f'SELECT "{value.column}" FROM "{value.table}" WHERE id = ?', (value.row_id,))
    blob: bytes = rows[0][0]
    return blob


def read(db: mangostore.Database, value: Stored) -> bytes:
    return cipher_of(db).decrypt(
        value.table, value.column, value.row_id, value.owner, stored_blob(db, value)
    )


def seed(db: mangostore.Database, users: int = 2, per_user: int = 3) -> list[Stored]:
    """Users with encrypted values in several tables; returns every value stored."""
    values: list[Stored] = []
    for u in range(users):
        user = str(uuid.uuid4())
        db.execute(
            "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (user, f"user-{u}", NOW, NOW),
        )
        values.append(Stored("users", "security_profile", user, user, f"profile {u}".encode()))
        for i in range(per_user):
            project = str(uuid.uuid4())
            db.execute(
                "INSERT INTO projects (id, user_id, name, path, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (project, user, f"p{i}", f"/src/{u}/{i}", NOW, NOW),
            )
            values.append(
                Stored("projects", "security_config", project, user, f"config {u}/{i}".encode())
            )
            session = str(uuid.uuid4())
            db.execute(
                "INSERT INTO terminal_sessions (id, user_id, project_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (session, user, project, NOW),
            )
            values.append(
                Stored("terminal_sessions", "environment_variables", session, user, b"PATH=/bin")
            )
            if i % 2 == 0:  # the other column stays NULL in some rows
                values.append(
                    Stored("terminal_sessions", "session_data", session, user, f"s{i}".encode())
                )
        conversation = str(uuid.uuid4())
        db.execute(
            "INSERT INTO ai_conversations (id, user_id, created_at) VALUES (?, ?, ?)",
            (conversation, user, NOW),
        )
        values.append(Stored("ai_conversations", "conversation_data", conversation, user, b"[]"))
    for value in values:
        put(db, value)
    return values


def primaries(db: mangostore.Database) -> dict[str, uuid.UUID]:
    return {k.user_id: uuid.UUID(k.id) for k in cipher_of(db).list_keys() if k.status == "primary"}


def assert_all_readable(db: mangostore.Database, values: list[Stored]) -> None:
    for value in values:
        assert read(db, value) == value.plaintext, value


def assert_all_under_primary(db: mangostore.Database, values: list[Stored]) -> None:
    current = primaries(db)
    for value in values:
        assert parse_header(stored_blob(db, value))[2] == current[value.owner], value


def test_rotation_moves_every_value_to_a_new_key(memory_db: mangostore.Database) -> None:
    values = seed(memory_db)
    before = primaries(memory_db)
    report = rotate_field_keys(memory_db)
    after = primaries(memory_db)
    assert set(after) == set(before)
    assert all(after[u] != before[u] for u in before)
    assert_all_readable(memory_db, values)
    assert_all_under_primary(memory_db, values)
    assert report.keys_created == 2
    assert report.keys_retired == 2
    assert report.values_reencrypted == len(values)
    assert report.values_current == 0
    assert report.unreadable == ()
    assert not report.resumed
    statuses = {uuid.UUID(k.id): k.status for k in cipher_of(memory_db).list_keys()}
    assert all(statuses[k] == "retired" for k in before.values())


def test_retired_keys_stay_in_the_keyring(memory_db: mangostore.Database) -> None:
    seed(memory_db)
    before = primaries(memory_db)
    rotate_field_keys(memory_db)
    assert memory_db.keyring is not None
    for key_id in before.values():
        assert memory_db.keyring.get_data_key(str(key_id)) is not None


def test_rotation_works_in_batches_and_reports_progress(
    encrypted_db: mangostore.Database,
) -> None:
    values = seed(encrypted_db)
    rows = len({(v.table, v.row_id) for v in values})
    calls: list[tuple[int, int | None]] = []

    def record(done: int, total: int | None, stage: str) -> None:
        if stage == "re-encrypting":
            calls.append((done, total))

    report = rotate_field_keys(encrypted_db, batch_size=2, progress=record)
    assert report.rows_scanned == rows
    assert calls[-1] == (rows, rows)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert {t for _, t in calls} == {rows}
    assert len(calls) >= rows // 2
    assert_all_readable(encrypted_db, values)
    assert_all_under_primary(encrypted_db, values)


def test_new_values_during_a_rotation_use_the_new_key(memory_db: mangostore.Database) -> None:
    values = seed(memory_db, users=1)
    owner = values[0].owner
    late: list[Stored] = []

    def write_between_batches(done: int, total: int | None, stage: str) -> None:
        if stage == "re-encrypting" and done and not late:
            late.append(Stored("users", "security_profile", owner, owner, b"written late"))
            put(memory_db, late[0])

    rotate_field_keys(memory_db, batch_size=1, progress=write_between_batches)
    assert read(memory_db, late[0]) == b"written late"
    assert_all_under_primary(memory_db, late)


class Interrupted(Exception):
    pass


def stop_after_first_batch(done: int, total: int | None, stage: str) -> None:
    if stage == "re-encrypting" and done:
        raise Interrupted


def test_an_interrupted_rotation_leaves_everything_readable_and_resumes(
    encrypted_db: mangostore.Database,
) -> None:
    values = seed(encrypted_db, users=3)
    old = primaries(encrypted_db)
    with pytest.raises(Interrupted):
        rotate_field_keys(encrypted_db, batch_size=2, progress=stop_after_first_batch)
    new = primaries(encrypted_db)
    assert all(new[u] != old[u] for u in old)
    assert_all_readable(encrypted_db, values)
    key_ids = {parse_header(stored_blob(encrypted_db, v))[2] for v in values}
    assert key_ids & set(old.values())  # some values still under old keys...
    assert key_ids & set(new.values())  # ...some already moved
    report = rotate_field_keys(encrypted_db, batch_size=2)
    assert report.resumed
    assert report.keys_created == 0
    assert primaries(encrypted_db) == new  # no further keys were made
    assert_all_readable(encrypted_db, values)
    assert_all_under_primary(encrypted_db, values)
    assert len(cipher_of(encrypted_db).list_keys()) == 2 * len(old)
    # Finished: the next run is a fresh rotation.
    assert not rotate_field_keys(encrypted_db).resumed


def test_resuming_a_rotation_that_had_moved_everything_moves_nothing(
    memory_db: mangostore.Database,
) -> None:
    values = seed(memory_db, users=1)

    def stop_at_the_end(done: int, total: int | None, stage: str) -> None:
        if stage == "re-encrypting" and done == total:
            raise Interrupted

    with pytest.raises(Interrupted):
        rotate_field_keys(memory_db, batch_size=100, progress=stop_at_the_end)
    report = rotate_field_keys(memory_db)
    assert report.resumed
    assert report.values_reencrypted == 0
    assert report.values_current == len(values)


def test_values_of_an_erased_user_are_left_alone(memory_db: mangostore.Database) -> None:
    values = seed(memory_db, users=2, per_user=1)
    erased = values[0].owner
    with memory_db.store.transaction() as conn:
        cipher_of(memory_db).destroy_user_keys(conn, erased)
    theirs = [v for v in values if v.owner == erased]
    blobs = {v: stored_blob(memory_db, v) for v in theirs}
    report = rotate_field_keys(memory_db)
    assert report.keys_created == 1
    assert report.values_shredded == len(theirs)
    assert report.unreadable == ()
    assert all(stored_blob(memory_db, v) == blobs[v] for v in theirs)
    assert erased not in primaries(memory_db)
    others = [v for v in values if v.owner != erased]
    assert_all_readable(memory_db, others)
    assert_all_under_primary(memory_db, others)


def test_a_damaged_value_is_reported_and_does_not_stop_the_rotation(
    memory_db: mangostore.Database,
) -> None:
    values = seed(memory_db, users=1, per_user=2)
    victim = next(v for v in values if v.table == "projects")
    damaged = bytearray(stored_blob(memory_db, victim))
    damaged[-1] ^= 1
    memory_db.execute(
        "UPDATE projects SET security_config = ? WHERE id = ?", (bytes(damaged), victim.row_id)
    )
    memory_db.execute(
        "UPDATE projects SET security_config = ? WHERE id <> ?", (b"short", victim.row_id)
    )
    broken = [v for v in values if v.table == "projects"]
    report = rotate_field_keys(memory_db)
    assert set(report.unreadable) == {
        FieldRef("projects", "security_config", v.row_id) for v in broken
    }
    assert stored_blob(memory_db, victim) == bytes(damaged)
    rest = [v for v in values if v.table != "projects"]
    assert_all_readable(memory_db, rest)
    assert_all_under_primary(memory_db, rest)


def test_rotation_needs_a_keyring(plain_db: mangostore.Database) -> None:
    with pytest.raises(ConfigurationError):
        rotate_field_keys(plain_db)


@pytest.mark.parametrize("size", [0, -1, True, 2.5])
def test_the_batch_size_must_be_positive(memory_db: mangostore.Database, size: object) -> None:
    with pytest.raises(InvalidValueError):
        rotate_field_keys(memory_db, batch_size=size)  # type: ignore[arg-type]


def test_an_empty_database_rotates_nothing(memory_db: mangostore.Database) -> None:
    report = rotate_field_keys(memory_db)
    assert (report.keys_created, report.rows_scanned, report.values_reencrypted) == (0, 0, 0)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import mangostore
    from mangostore import KdfParams, Settings
    from mangostore.keys.rotation import rotate_field_keys

    kdf = KdfParams(memory_kib={memory}, iterations={iterations}, parallelism={parallelism})
    db = mangostore.open(sys.argv[1], passphrase={passphrase!r}, settings=Settings(kdf=kdf))

    def die(done, total, stage):
        if stage == "re-encrypting" and done:
            os.kill(os.getpid(), signal.SIGKILL)

    rotate_field_keys(db, batch_size=2, progress=die)
    """
).format(
    memory=FAST_KDF.memory_kib,
    iterations=FAST_KDF.iterations,
    parallelism=FAST_KDF.parallelism,
    passphrase=PASSPHRASE,
)


@pytest.mark.slow
def test_a_killed_rotation_leaves_everything_readable_and_the_next_run_completes(
    db_path: Path, fast_settings: Settings
) -> None:
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=fast_settings).db as db:
        values = seed(db, users=3)
        old = primaries(db)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db_path)],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=fast_settings) as db:
        assert_all_readable(db, values)
        new = primaries(db)
        assert all(new[u] != old[u] for u in old)
        report = rotate_field_keys(db)
        assert report.resumed
        assert report.values_reencrypted > 0
        assert_all_readable(db, values)
        assert_all_under_primary(db, values)
