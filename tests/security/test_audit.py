"""The audit log: an append-only HMAC chain over ``security_events``.

Tampering is done with raw SQL after the append-only triggers are dropped, as an
attacker with write access to the file (and the page key) could; the triggers
themselves are tested first.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.errors import (
    ConfigurationError,
    ConstraintError,
    InvalidTransitionError,
    InvalidValueError,
    JSONValueError,
    NotFoundError,
    TamperedDataError,
    ValidationError,
)
from mangostore.keys.rotation import rotate_field_keys
from mangostore.security.audit import AuditCheckpoint, AuditReport

TRIGGERS = (
    "security_events_append_only_insert",
    "security_events_append_only_update",
    "security_events_append_only_delete",
)

pytestmark = pytest.mark.database("clocked_memory_db")


def fill(db: mangostore.Database, n: int = 6) -> list[Any]:
    """Append ``n`` events alternating between a user and no user; return them."""
    user = db.users.create(username=f"user-{uuid.uuid4()}")
    events = []
    for i in range(n):
        events.append(
            db.audit.append(
                ("auth", "access", "data")[i % 3],
                "info" if i % 2 else "warning",
                "auth",
                user_id=user.id if i % 2 == 0 else None,
                event_data={"i": i, "ip": f"10.0.0.{i}"},
                client_info={"agent": "test"} if i % 3 == 0 else None,
                risk_score=float(i),
            )
        )
    return events


def unlock(db: mangostore.Database) -> None:
    """Remove the append-only triggers, as someone editing the file directly would."""
    for name in TRIGGERS:
        db.execute(f"DROP TRIGGER {name}")


def broken(report: AuditReport) -> int | None:
    assert not report.ok
    assert report.reason
    return report.first_broken_seq


# -- appending ------------------------------------------------------------------------------


def test_append_numbers_events_without_gaps_and_returns_plaintext(
    db: mangostore.Database,
) -> None:
    events = fill(db)
    assert [e.seq for e in events] == list(range(1, 7))
    assert all(isinstance(e.mac, bytes) and len(e.mac) == 32 for e in events)
    assert events[0].event_data == {"i": 0, "ip": "10.0.0.0"}
    assert db.audit.get(events[0].id).to_dict() == events[0].to_dict()
    assert [e.to_dict() for e in db.audit.events()] == [e.to_dict() for e in events]


def test_event_data_is_stored_sealed(db: mangostore.Database) -> None:
    user = db.users.create(username="alice")
    event = db.audit.append("auth", "info", "auth", user_id=user.id, event_data={"ip": "PLAIN-1"})
    system = db.audit.append("auth", "info", "auth", client_info={"ip": "PLAIN-2"})
    for row_id, column in ((event.id, "event_data"), (system.id, "client_info")):
        (stored,) = db.query(f"SELECT {column} FROM security_events WHERE id = ?", (row_id,))[0]
        assert isinstance(stored, bytes)
        assert b"PLAIN" not in stored
    assert db.security_events.get(system.id).client_info == {"ip": "PLAIN-2"}
    assert db.security_events.get(event.id).event_data == {"ip": "PLAIN-1"}


def test_append_joins_the_callers_transaction(db: mangostore.Database) -> None:
    seen = []

    def append_then_fail() -> None:
        with db.transaction():
            db.audit.append("auth", "info", "auth", event_data={"a": 1})
            seen.append(db.audit.count())  # visible inside the transaction
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        append_then_fail()
    assert seen == [1]
    assert db.audit.count() == 0
    with db.transaction():
        first = db.audit.append("auth", "info", "auth")
        second = db.audit.append("auth", "info", "auth")
    assert (first.seq, second.seq) == (1, 2)
    assert db.audit.verify().ok


def test_append_outside_a_transaction_commits_on_its_own(db_path: Path) -> None:
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
    ).db as db:
        db.audit.append("auth", "info", "auth", event_data={"x": 1})
    with mangostore.open(db_path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)) as db:
        assert db.audit.count() == 1
        assert db.audit.events()[0].event_data == {"x": 1}
        assert db.audit.verify().ok


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"event_type": "login"}, InvalidValueError),
        ({"severity": "fatal"}, InvalidValueError),
        ({"source_component": ""}, InvalidValueError),
        ({"source_component": "audit.retention"}, InvalidValueError),
        ({"risk_score": -1.0}, InvalidValueError),
        ({"risk_score": math.nan}, InvalidValueError),
        ({"risk_score": True}, InvalidValueError),
        ({"user_id": ""}, InvalidValueError),
        ({"event_data": ["not", "an", "object"]}, JSONValueError),
        ({"event_data": {"x": {1, 2}}}, JSONValueError),
        ({"client_info": {"big": "x" * 2048}}, JSONValueError),
    ],
)
def test_append_refuses_bad_input_and_writes_nothing(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    settings = Settings(kdf=FAST_KDF, json_max_bytes=1024)
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=settings) as db:
        args = {"event_type": "auth", "severity": "info", "source_component": "auth", **kwargs}
        positional = (args.pop("event_type"), args.pop("severity"), args.pop("source_component"))
        with pytest.raises(error):
            db.audit.append(*positional, **args)
        assert db.audit.count() == 0


@settings(max_examples=25)
@given(
    data=st.none()
    | st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=8,
        ),
        max_size=4,
    ),
    risk=st.floats(min_value=0, max_value=1e6),
)
def test_every_event_survives_the_round_trip(data: Any, risk: float) -> None:
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)) as db:
        user = db.users.create(username="u")
        event = db.audit.append(
            "data", "info", "x", user_id=user.id, event_data=data, client_info=data, risk_score=risk
        )
        again = db.audit.get(event.id)
        assert again.event_data == data
        assert again.client_info == data
        assert again.risk_score == risk
        assert db.audit.verify().ok


def test_threads_appending_at_once_keep_the_chain_whole(db_path: Path) -> None:
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=Settings(kdf=FAST_KDF)
    ).db as db:

        def work(n: int) -> None:
            for i in range(25):
                db.audit.append("access", "info", f"worker-{n}", event_data={"i": i})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seqs = [int(r[0]) for r in db.query("SELECT seq FROM security_events ORDER BY seq")]
        assert seqs == list(range(1, 101))
        assert db.audit.verify() == AuditReport(
            ok=True,
            events_checked=100,
            first_broken_seq=None,
            reason=None,
            first_seq=1,
            last_seq=100,
        )


def test_a_clock_moved_backwards_does_not_break_the_chain(
    db: mangostore.Database, clock: ManualClock
) -> None:
    first = db.audit.append("auth", "info", "auth")
    clock.set(clock.now_ms() - 3_600_000)
    second = db.audit.append("auth", "info", "auth")
    assert second.timestamp < first.timestamp
    assert second.seq == first.seq + 1
    assert db.audit.verify().ok


def test_key_rotation_leaves_audit_events_readable_and_chained(db: mangostore.Database) -> None:
    events = fill(db)
    stored = db.query("SELECT event_data FROM security_events ORDER BY seq")
    report = rotate_field_keys(db)
    assert report.unreadable == ()
    assert db.query("SELECT event_data FROM security_events ORDER BY seq") == stored
    assert [e.event_data for e in db.audit.events()] == [e.event_data for e in events]
    assert db.audit.verify().ok


# -- the triggers ---------------------------------------------------------------------------


def test_triggers_refuse_update_delete_and_out_of_order_inserts(db: mangostore.Database) -> None:
    events = fill(db, 3)
    with pytest.raises(ConstraintError, match="append-only"):
        db.execute("UPDATE security_events SET severity = 'critical' WHERE seq = 2")
    with pytest.raises(ConstraintError, match="append-only"):
        db.execute("UPDATE security_events SET event_data = NULL WHERE seq = 1")
    with pytest.raises(ConstraintError, match="append-only"):
        db.execute("DELETE FROM security_events WHERE seq = 3")
    with pytest.raises(ConstraintError, match="append-only"):
        db.execute(
            "INSERT INTO security_events (id, event_type, severity, source_component, "
            "timestamp, seq) VALUES ('forged', 'auth', 'info', 'x', 1, 2)"
        )
    assert [e.to_dict() for e in db.audit.events()] == [e.to_dict() for e in events]
    assert db.audit.verify().ok


def test_the_repository_writes_through_the_chain(db: mangostore.Database) -> None:
    user = db.users.create(username="alice")
    created = db.security_events.create(
        event_type="auth",
        severity="info",
        source_component="login",
        user_id=user.id,
        event_data={"ok": True},
    )
    assert created.seq == 1
    assert created.mac is not None
    assert db.security_events.get(created.id).event_data == {"ok": True}
    with pytest.raises(InvalidValueError):
        db.security_events.create(event_type="auth", severity="info", source_component="x", seq=7)
    with pytest.raises(InvalidValueError, match="append-only"):
        db.security_events.update(created.id, severity="critical")
    with pytest.raises(ConstraintError, match="append-only"):
        db.security_events.delete(created.id)
    resolved = db.security_events.update(created.id, resolved=True, resolved_by=user.id)
    assert resolved.resolved
    assert resolved.resolved_by == user.id
    assert db.audit.verify().ok


# -- resolution -----------------------------------------------------------------------------


def test_resolve_records_a_chained_resolution(db: mangostore.Database, clock: ManualClock) -> None:
    events = fill(db, 3)
    clock.advance(5_000)
    resolved = db.audit.resolve(events[1].id, "admin-1")
    assert resolved.resolved is True
    assert resolved.resolved_by == "admin-1"
    assert resolved.resolved_at == clock.now_ms()
    resolution = db.audit.events()[-1]
    assert resolution.source_component == "audit.resolution"
    assert resolution.event_data == {"resolves": events[1].id, "resolved_by": "admin-1"}
    assert db.audit.verify().ok
    with pytest.raises(InvalidTransitionError):
        db.audit.resolve(events[1].id, "admin-2")
    with pytest.raises(NotFoundError):
        db.audit.resolve("no-such-event", "admin-1")
    with pytest.raises(InvalidTransitionError):
        db.audit.resolve(resolution.id, "admin-1")


def test_resolution_columns_set_without_resolve_are_detected(db: mangostore.Database) -> None:
    events = fill(db, 3)
    # The trigger lets the resolution columns change (resolve() needs that) ...
    db.execute(
        "UPDATE security_events SET resolved = 1, resolved_at = 1, resolved_by = 'x' WHERE seq = 2"
    )
    # ... but no chained resolution says so.
    assert broken(db.audit.verify()) == events[1].seq


def test_a_resolution_edited_or_undone_is_detected(db: mangostore.Database) -> None:
    events = fill(db, 3)
    db.audit.resolve(events[0].id, "admin-1")
    unlock(db)
    db.execute("UPDATE security_events SET resolved_by = 'someone-else' WHERE seq = 1")
    assert broken(db.audit.verify()) == 1
    db.execute("UPDATE security_events SET resolved = 0, resolved_by = NULL WHERE seq = 1")
    assert broken(db.audit.verify()) == 1


# -- tampering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE security_events SET severity = 'critical' WHERE seq = 4",
        "UPDATE security_events SET risk_score = 0.5 WHERE seq = 4",
        "UPDATE security_events SET timestamp = timestamp + 1 WHERE seq = 4",
        "UPDATE security_events SET user_id = 'someone-else' WHERE seq = 4",
        "UPDATE security_events SET source_component = 'other' WHERE seq = 4",
        "UPDATE security_events SET event_data = "
        "(SELECT event_data FROM security_events WHERE seq = 2) WHERE seq = 4",
        "UPDATE security_events SET client_info = NULL WHERE seq = 4",
        "UPDATE security_events SET mac = zeroblob(32) WHERE seq = 4",
        "UPDATE security_events SET mac = NULL WHERE seq = 4",
        "UPDATE security_events SET id = 'other-id' WHERE seq = 4",
    ],
)
def test_an_edited_event_is_reported_at_its_sequence_number(
    db: mangostore.Database, edit: str
) -> None:
    fill(db)
    unlock(db)
    db.execute(edit)
    report = db.audit.verify()
    assert broken(report) == 4
    assert report.events_checked == 3


@pytest.mark.parametrize("seq", [1, 3, 6])
def test_a_deleted_event_is_reported_at_its_sequence_number(
    db: mangostore.Database, seq: int
) -> None:
    fill(db)
    unlock(db)
    db.execute("DELETE FROM security_events WHERE seq = ?", (seq,))
    if seq == 6:
        # Removing the last event leaves a shorter, valid chain: only a checkpoint
        # taken before shows it (see the truncation test).
        assert db.audit.verify().ok
    else:
        assert broken(db.audit.verify()) == seq


def test_an_inserted_event_is_reported(db: mangostore.Database) -> None:
    events = fill(db)
    unlock(db)
    # Make room after event 3 and copy a genuine event (with its MAC) into the gap.
    db.execute("UPDATE security_events SET seq = seq + 100 WHERE seq > 3")
    db.execute("UPDATE security_events SET seq = seq - 99 WHERE seq > 100")
    db.execute(
        "INSERT INTO security_events (id, user_id, event_type, severity, source_component, "
        "event_data, client_info, risk_score, resolved, timestamp, seq, mac) "
        "SELECT 'inserted', user_id, event_type, severity, source_component, event_data, "
        "client_info, risk_score, 0, timestamp, 4, mac FROM security_events WHERE seq = 2"
    )
    assert db.query("SELECT count(*) FROM security_events")[0][0] == len(events) + 1
    assert broken(db.audit.verify()) == 4


def test_an_event_appended_by_hand_is_reported(db: mangostore.Database) -> None:
    fill(db)
    unlock(db)
    db.execute(
        "INSERT INTO security_events (id, event_type, severity, source_component, timestamp, "
        "seq, mac) VALUES ('forged', 'auth', 'info', 'x', 1, 7, randomblob(32))"
    )
    assert broken(db.audit.verify()) == 7


def test_reordered_events_are_reported(db: mangostore.Database) -> None:
    fill(db)
    unlock(db)
    db.execute("UPDATE security_events SET seq = -1 WHERE seq = 2")
    db.execute("UPDATE security_events SET seq = 2 WHERE seq = 3")
    db.execute("UPDATE security_events SET seq = 3 WHERE seq = -1")
    assert broken(db.audit.verify()) == 2


def test_a_truncated_tail_is_found_against_a_checkpoint(db: mangostore.Database) -> None:
    fill(db)
    checkpoint = AuditCheckpoint.from_json(db.audit.checkpoint().to_json())
    assert checkpoint.seq == 6
    assert db.audit.verify(checkpoint).ok
    fill(db, 2)  # the log may grow after the checkpoint
    assert db.audit.verify(checkpoint).ok
    unlock(db)
    db.execute("DELETE FROM security_events WHERE seq >= 5")
    assert db.audit.verify().ok  # the chain alone cannot tell
    report = db.audit.verify(checkpoint)
    assert broken(report) == 5
    assert report.checkpoint_seq == 6


def test_a_log_rewritten_after_the_checkpoint_is_found(db: mangostore.Database) -> None:
    fill(db)
    checkpoint = db.audit.checkpoint()
    unlock(db)
    db.execute("DELETE FROM security_events")
    fill(db, 7)  # a whole new, valid chain, longer than the old one
    assert db.audit.verify().ok
    assert broken(db.audit.verify(checkpoint)) == 6


def test_a_forged_checkpoint_is_refused(db: mangostore.Database) -> None:
    fill(db)
    doc = json.loads(db.audit.checkpoint().to_json())
    forged = dict(doc, seq=2)
    with pytest.raises(TamperedDataError, match="not genuine"):
        db.audit.verify(AuditCheckpoint.from_json(json.dumps(forged)))
    flipped = dict(doc, mac="00" * 32)
    with pytest.raises(TamperedDataError):
        db.audit.verify(AuditCheckpoint.from_json(json.dumps(flipped)))
    with pytest.raises(TamperedDataError):
        db.audit.verify(AuditCheckpoint.from_json(json.dumps(dict(doc, vault_id="other"))))


def test_a_checkpoint_of_another_database_is_refused(
    db: mangostore.Database, fast_settings: Settings
) -> None:
    fill(db)
    with mangostore.open(":memory:", passphrase=PASSPHRASE, settings=fast_settings) as other:
        fill(other)
        with pytest.raises(TamperedDataError):
            db.audit.verify(other.audit.checkpoint())


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": "something-else"}',
        '{"format": "mangostore-audit-checkpoint", "version": 2}',
        '{"format": "mangostore-audit-checkpoint", "version": 1, "vault_id": "v", "seq": -1, '
        '"created_at": 0, "mac": "00", "signature": "00"}',
        '{"format": "mangostore-audit-checkpoint", "version": 1, "vault_id": "v", "seq": 1, '
        '"created_at": 0, "mac": "zz", "signature": "00"}',
        '{"format": "mangostore-audit-checkpoint", "version": 1, "vault_id": "v", "seq": 1, '
        '"created_at": 0, "mac": "00", "signature": "00"}',
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        AuditCheckpoint.from_json(text)


def test_a_forged_retention_anchor_does_not_hide_a_deleted_head(db: mangostore.Database) -> None:
    fill(db)
    unlock(db)
    db.execute("DELETE FROM security_events WHERE seq <= 2")
    assert broken(db.audit.verify()) == 1
    # An anchor claiming to account for the gap, but not made with the audit key.
    db.execute(
        "INSERT INTO security_events (id, event_type, severity, source_component, event_data, "
        "timestamp, seq, mac) VALUES ('anchor', 'data', 'info', 'audit.retention', ?, 1, 7, "
        "randomblob(32))",
        (json.dumps({"removed_through_seq": 2, "chain_from": "00" * 32}),),
    )
    assert broken(db.audit.verify()) == 1


# -- without a keyring ----------------------------------------------------------------------


def test_without_a_keyring_events_are_numbered_but_cannot_be_verified(
    plain_db: mangostore.Database,
) -> None:
    events = fill(plain_db, 3)
    assert [e.seq for e in events] == [1, 2, 3]
    assert all(e.mac is None for e in events)
    (stored,) = plain_db.query("SELECT event_data FROM security_events WHERE seq = 1")[0]
    assert json.loads(stored) == {"i": 0, "ip": "10.0.0.0"}
    report = plain_db.audit.verify()
    assert (report.ok, report.keyed, report.last_seq) == (False, False, 3)
    assert "no audit key" in (report.reason or "")
    with pytest.raises(ConfigurationError):
        plain_db.audit.checkpoint()


# -- migration ------------------------------------------------------------------------------


def test_events_written_before_the_chain_are_numbered_and_unsealed(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, backup_before_migrate=False)
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=settings, migrate=False
    ).db as db:
        db.migrate(to=6)
        for i in range(3):
            db.execute(
                "INSERT INTO security_events (id, event_type, severity, source_component, "
                "event_data, timestamp) VALUES (?, 'auth', 'info', 'old', ?, ?)",
                (f"old-{i}", json.dumps({"i": i}), 1000 + i),
            )
        db.migrate()
        assert [tuple(r) for r in db.query("SELECT id, seq FROM security_events ORDER BY seq")] == [
            ("old-0", 1),
            ("old-1", 2),
            ("old-2", 3),
        ]
        db.audit.append("auth", "info", "new")
        report = db.audit.verify()
        assert report.ok
        assert (report.unsealed, report.events_checked, report.last_seq) == (3, 1, 4)
        db.migrate(to=6)  # and back down, keeping the plain JSON events
        assert db.query("SELECT count(*) FROM security_events")[0][0] == 4


def test_events_from_before_the_chain_are_unverified_until_sealed(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, backup_before_migrate=False)
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=settings, migrate=False
    ).db as db:
        db.migrate(to=6)
        db.execute(
            "INSERT INTO security_events (id, event_type, severity, source_component, "
            "timestamp) VALUES ('old', 'auth', 'info', 'old', 1)"
        )
        db.migrate()
        report = db.audit.verify()
        assert (report.ok, report.first_broken_seq, report.unsealed) == (False, 1, 1)
        assert "append an event" in (report.reason or "")
        checkpoint = db.audit.checkpoint()
        db.audit.append("auth", "info", "new")  # chains over the old event: seals it
        assert db.audit.verify(checkpoint).ok


def test_removing_every_mac_does_not_pass_for_events_from_before_the_chain(
    db: mangostore.Database,
) -> None:
    fill(db)
    unlock(db)
    db.execute("UPDATE security_events SET mac = NULL, severity = 'error' WHERE seq <= 3")
    assert broken(db.audit.verify()) == 4  # the first MAC vouches for what came before
    db.execute("UPDATE security_events SET mac = NULL")
    assert broken(db.audit.verify()) == 1  # nothing vouches for any of them


def test_retention_of_events_from_before_the_chain_keeps_it_verifiable(
    db_path: Path, tmp_path: Path
) -> None:
    settings = Settings(kdf=FAST_KDF, backup_before_migrate=False)
    clock = ManualClock()
    year = 400 * 86_400_000
    with mangostore.create(
        db_path, passphrase=PASSPHRASE, settings=settings, migrate=False, clock=clock
    ).db as db:
        db.migrate(to=6)
        # Two old events and one recent one, all from before the chain.
        for i, at in enumerate((clock.now_ms(), clock.now_ms() + 1, clock.now_ms() + year)):
            db.execute(
                "INSERT INTO security_events (id, event_type, severity, source_component, "
                "timestamp) VALUES (?, 'auth', 'info', 'old', ?)",
                (f"old-{i}", at),
            )
        db.migrate()
        clock.advance(year)
        db.audit.append("auth", "info", "new")
        assert db.audit.verify().ok
        db.privacy.apply_retention(archive_dir_path=tmp_path)
        report = db.audit.verify()
        assert report.ok
        # The kept chain starts in the middle of the old events, where the anchor says.
        assert (report.first_seq, report.unsealed, report.last_seq) == (3, 1, 5)
        db.execute("DROP TRIGGER security_events_append_only_update")
        db.execute("UPDATE security_events SET severity = 'error' WHERE seq = 3")
        assert broken(db.audit.verify()) == 4  # an old event edited: found by the first MAC
