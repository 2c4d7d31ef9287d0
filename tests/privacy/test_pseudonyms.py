"""Pseudonyms, re-identification, anonymising retention and the analytics export.

Canary identifiers are planted in every kind of column that can name a person and the
database file's bytes are scanned afterwards: pages are plain (``encrypted=False``
with a passphrase keeps the keyring, so pseudonyms are keyed and sensitive fields
sealed), so anything left over would show.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

import mangostore
from mangostore.clock import ManualClock
from mangostore.errors import (
    ConfigurationError,
    InvalidValueError,
    NotFoundError,
    TamperedDataError,
    ValidationError,
)
from mangostore.privacy import RetentionPolicy
from mangostore.privacy.pseudonyms import (
    ANALYTICS_COLUMNS,
    ANONYMOUS_USER_ID,
    ReidentificationKey,
)
from mangostore.testing import TEST_PASSPHRASE, Factory, fast_test_settings

NAME = "zqcanaryuser"
EMAIL = "zq.canarymail@example.org"
IP = "203.0.113.77"
DAY = 86_400_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000_000)


@pytest.fixture
def plain_keyed(tmp_path: Path, clock: ManualClock) -> Iterator[mangostore.Database]:
    """A file database with plain pages and a keyring, on a manual clock."""
    db = mangostore.create(
        tmp_path / "vault.db",
        passphrase=TEST_PASSPHRASE,
        encrypted=False,
        settings=fast_test_settings(),
        clock=clock,
    ).db
    yield db
    db.close()


def file_bytes(db: mangostore.Database) -> bytes:
    """The database file and its WAL, as a thief with a copy would read them."""
    db.checkpoint(truncate=True)
    path = Path(db.path)
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def leftovers(data: bytes, *canaries: str) -> list[str]:
    lowered = data.lower()
    return [c for c in canaries if c.lower().encode() in lowered]


def plant(make: Factory) -> str:
    """A user whose identifiers appear in every column pseudonymisation covers."""
    user = make.user(username=NAME, email=EMAIL)
    project = make.project(
        user=user, name=f"{NAME}-site", path=f"/home/{NAME}/site", metadata={"owner": NAME}
    )
    session = make.terminal_session(user=user, project=project, working_directory=f"/home/{NAME}")
    make.command(
        user=user,
        project=project,
        session=session,
        command=f"cat /home/{NAME}/notes.txt",
        output=f"mail {EMAIL} or {NAME.upper()}",
        working_directory=f"/home/{NAME}/site",
    )
    make.notification(user=user, title=f"Hello {NAME}", message=f"sent to {EMAIL}")
    make.ai_memory(user=user, key_name="name", value_data={"name": NAME, "mail": [EMAIL]})
    entity = make.kg_entity(user=user, entity_type="person", name=NAME, description=EMAIL)
    make.kg_observation(user=user, entity=entity, content=f"{NAME} prefers fish")
    make.user_session(user=user, ip_address=IP, user_agent=f"term ({NAME})")
    return user.id


def test_pseudonymised_identifiers_are_gone_from_the_file(
    plain_keyed: mangostore.Database,
) -> None:
    db = plain_keyed
    user_id = plant(Factory(db))
    canaries = (NAME, EMAIL, "zq.canarymail", IP)
    # The scan sees them while they are there ...
    assert leftovers(file_bytes(db), *canaries) == list(canaries)
    report = db.privacy.pseudonymize(user_id, ReidentificationKey.generate())
    # ... and not after.
    assert leftovers(file_bytes(db), *canaries) == []
    pseudonym = report.pseudonym
    assert db.users.get(user_id).username == pseudonym
    assert db.users.get(user_id).email is None
    assert db.projects.find_by_user(user_id)[0].path == f"/home/{pseudonym}/site"
    command = db.command_history.find_by_user(user_id)[0]
    assert command.output == f"mail {pseudonym} or {pseudonym}"
    assert db.ai_memory.find_by_user(user_id)[0].value_data == {
        "name": pseudonym,
        "mail": [pseudonym],
    }
    assert db.user_sessions.find_by_user(user_id)[0].ip_address is None
    assert report.rows_changed["command_history"] == 1
    assert db.command_history.search(user_id, "notes.txt")  # the index follows
    assert db.audit.verify().ok


def test_pseudonyms_are_stable_in_a_vault_and_differ_between_vaults(
    plain_keyed: mangostore.Database, tmp_path: Path
) -> None:
    db = plain_keyed
    user = Factory(db).user()
    pseudonym = db.privacy.pseudonym_of(user.id)
    assert pseudonym == db.privacy.pseudonym_of(user.id)
    assert pseudonym.startswith("p-")
    assert len(pseudonym) == 22
    assert user.id not in pseudonym
    assert db.keyring is not None
    same_vault = mangostore.create(
        ":memory:",
        passphrase="another passphrase",
        vault_of=db.keyring,
        settings=fast_test_settings(),
    ).db
    other_vault = mangostore.create(
        ":memory:", passphrase=TEST_PASSPHRASE, settings=fast_test_settings()
    ).db
    try:
        assert same_vault.privacy.pseudonym_of(user.id) == pseudonym
        assert other_vault.privacy.pseudonym_of(user.id) != pseudonym
    finally:
        same_vault.close()
        other_vault.close()


def test_reidentification_needs_the_key_kept_apart(plain_keyed: mangostore.Database) -> None:
    db = plain_keyed
    make = Factory(db)
    ann, bob = make.user(username="ann-smith", email="ann@example.org"), make.user()
    key = ReidentificationKey.generate()
    kept = db.privacy.pseudonymize(ann.id, key)
    found = db.privacy.reidentify(kept.pseudonym, ReidentificationKey.from_text(key.to_text()))
    assert (found.user_id, found.username, found.email) == (ann.id, "ann-smith", "ann@example.org")
    with pytest.raises(TamperedDataError, match="does not open with this key"):
        db.privacy.reidentify(kept.pseudonym, ReidentificationKey.generate())
    lost = db.privacy.pseudonymize(bob.id)  # no key: cannot be undone
    assert lost.key_id is None
    with pytest.raises(NotFoundError, match="no re-identifiable pseudonymisation"):
        db.privacy.reidentify(lost.pseudonym, key)
    assert key.to_text() not in repr(key)
    assert repr(key) == f"<ReidentificationKey {key.key_id}>"
    # Pseudonymising again changes nothing.
    assert db.privacy.pseudonymize(ann.id).rows_changed == {}


def test_a_short_user_name_is_replaced_only_as_a_path_segment(
    plain_keyed: mangostore.Database,
) -> None:
    db = plain_keyed
    make = Factory(db)
    user = make.user(username="ed", email=None)
    make.command(user=user, command="ls /home/ed/edits", output="edited by ed")
    pseudonym = db.privacy.pseudonymize(user.id).pseudonym
    command = db.command_history.find_by_user(user.id)[0]
    assert command.command == f"ls /home/{pseudonym}/edits"
    assert command.output == "edited by ed"


def test_bad_keys_and_keyless_databases_are_refused(mango_db: mangostore.Database) -> None:
    with pytest.raises(InvalidValueError, match="starts with 'mrk1-'"):
        ReidentificationKey.from_text("nope")
    with pytest.raises(InvalidValueError, match="32 bytes"):
        ReidentificationKey.from_text("mrk1-AAAA")
    user = Factory(mango_db).user()
    with pytest.raises(ConfigurationError, match="no keyring"):
        mango_db.privacy.pseudonymize(user.id)


def test_anonymising_retention_keeps_statistics_and_drops_identifiers(
    plain_keyed: mangostore.Database, clock: ManualClock
) -> None:
    db = plain_keyed
    make = Factory(db)
    user = make.user(username=NAME, email=None)
    project = make.project(user=user, name="zqsecretproject")
    for code in (0, 1):
        make.command(
            user=user,
            project=project,
            command=f"/usr/bin/git push zqsecretremote {code}",
            output="zqsecretoutput",
            working_directory="/srv/zqsecretdir",
            exit_code=code,
            execution_time=40,
            timestamp=clock.now_ms() - 40 * DAY + 1234,
        )
    make.command(user=user, command=NAME, output="recent", timestamp=clock.now_ms() - 45 * DAY)
    recent = make.command(user=user, command="make")
    before = db.command_history.count()
    secrets = ("zqsecretremote", "zqsecretoutput", "zqsecretdir")
    assert leftovers(file_bytes(db), *secrets) == list(secrets)
    policy = RetentionPolicy("command_history", 30, anonymize=True)
    report = db.privacy.apply_retention(policies=[policy])
    entry = report.table("command_history")
    assert (entry.anonymized, entry.archived, entry.deleted) == (3, 0, 0)
    assert db.command_history.count() == before
    anonymous = db.command_history.find_by_user(ANONYMOUS_USER_ID)
    assert sorted(c.command for c in anonymous) == ["[anonymized]", "git", "git"]
    assert {c.output for c in anonymous} == {None}
    assert {(c.project_id, c.working_directory, c.terminal_session_id) for c in anonymous} == {
        (None, None, None)
    }
    assert sorted(c.exit_code for c in anonymous) == [0, 0, 1]
    assert all(c.timestamp % DAY == 0 for c in anonymous)
    assert [c.id for c in db.command_history.find_by_user(user.id)] == [recent.id]
    assert leftovers(file_bytes(db), *secrets) == []
    # A second run finds nothing more to do.
    again = db.privacy.apply_retention(policies=[policy]).table("command_history")
    assert again.anonymized == 0


def test_only_command_history_can_be_anonymised() -> None:
    with pytest.raises(InvalidValueError, match="notifications cannot be anonymised"):
        RetentionPolicy("notifications", 30, anonymize=True)


def test_the_analytics_export_is_pseudonymised_by_construction(
    plain_keyed: mangostore.Database, tmp_path: Path, clock: ManualClock
) -> None:
    db = plain_keyed
    user_id = plant(Factory(db))
    Factory(db).command(user=user_id, command="pytest -x", exit_code=1, execution_time=900)
    exported = db.privacy.export_analytics(tmp_path / "analytics.csv")
    data = exported.path.read_bytes()
    assert leftovers(data, NAME, EMAIL, "notes.txt", "/home", user_id) == []
    with exported.path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == ANALYTICS_COLUMNS
    assert exported.rows == len(rows) == 2
    assert {r["user"] for r in rows} == {db.privacy.pseudonym_of(user_id)}
    assert [r["program"] for r in rows] == ["cat", "pytest"]
    assert rows[1]["exit_code"] == "1"
    assert rows[1]["execution_time_ms"] == "900"
    assert rows[0]["project"].startswith("q-")
    assert rows[1]["project"] == ""
    later = db.privacy.export_analytics(tmp_path / "later.csv", since=clock.now_ms() + 1)
    assert later.rows == 0
    with pytest.raises(ValidationError, match="exists"):
        db.privacy.export_analytics(exported.path)
