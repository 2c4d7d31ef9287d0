"""The compliance report: every control passes on a well-kept vault, and each one
turns to fail when its evidence goes away."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import mangostore
from mangostore.backup import MemoryDestination
from mangostore.cli import cli, common
from mangostore.clock import ManualClock
from mangostore.privacy import RetentionPolicy
from mangostore.privacy.compliance import CONTROLS, ComplianceReport
from mangostore.testing import TEST_PASSPHRASE, Factory, fast_test_settings

DAY = 86_400_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000_000)


@pytest.fixture
def vault(tmp_path: Path, clock: ManualClock) -> Iterator[mangostore.Database]:
    """An encrypted file database on a manual clock, with a user and some history."""
    db = mangostore.create(
        tmp_path / "vault.db",
        passphrase=TEST_PASSPHRASE,
        settings=fast_test_settings(),
        clock=clock,
    ).db
    make = Factory(db)
    user = make.user()
    make.command(user=user)
    db.audit.append("auth", "info", "auth", user_id=user.id, event_data={"login": True})
    yield db
    db.close()


@pytest.fixture
def backups(vault: mangostore.Database) -> MemoryDestination:
    destination = MemoryDestination()
    vault.backup.create(destination)
    return destination


def statuses(report: ComplianceReport) -> dict[str, str]:
    return {c.name: c.status for c in report.controls}


def test_a_well_kept_vault_passes_every_control(
    vault: mangostore.Database, backups: MemoryDestination
) -> None:
    vault.privacy.apply_retention()
    checkpoint = vault.audit.checkpoint()
    report = vault.privacy.compliance_report(backup_to=backups, checkpoint=checkpoint)
    assert [(c.group, c.name) for c in report.controls] == list(CONTROLS)
    assert report.failed() == []
    assert report.ok
    backup = report.control("regular_backups").evidence
    assert backup["verified"] is True
    assert backup["age_hours"] == 0
    logging = report.control("access_logging").evidence
    assert logging["chain_verified"] is True
    assert logging["checkpoint_seq"] == checkpoint.seq
    retention = report.control("retention_policies").evidence
    assert retention["last_run_at"] == vault.clock.now_ms()
    assert set(retention["overdue_rows"].values()) == {0}
    minimised = report.control("data_minimisation").evidence["personal_columns"]
    assert {
        "column": "users.security_profile",
        "kind": "sensitive",
        "protection": "field encryption (per-user key)",
    } in minimised
    assert json.loads(report.to_json())["ok"] is True


def test_a_tampered_audit_log_fails_access_logging(
    vault: mangostore.Database, backups: MemoryDestination
) -> None:
    before = vault.privacy.compliance_report(backup_to=backups, verify_backup=False)
    assert before.control("access_logging").passed
    # Resolution columns can be written directly; no chained resolution vouches for it.
    vault.execute(
        "UPDATE security_events SET resolved = 1, resolved_at = 1, resolved_by = 'x' WHERE seq = 1"
    )
    after = vault.privacy.compliance_report(backup_to=backups, verify_backup=False)
    control = after.control("access_logging")
    assert not control.passed
    assert control.explanation.startswith("the audit chain does not verify")
    assert control.evidence["first_broken_seq"] == 1
    assert not after.ok


def test_no_backup_for_two_days_fails_regular_backups(
    vault: mangostore.Database, backups: MemoryDestination, clock: ManualClock
) -> None:
    clock.advance(DAY // 2)
    fresh = vault.privacy.compliance_report(backup_to=backups, verify_backup=False)
    assert fresh.control("regular_backups").passed
    clock.advance(2 * DAY)
    stale = vault.privacy.compliance_report(backup_to=backups, verify_backup=False)
    control = stale.control("regular_backups")
    assert not control.passed
    assert "60.0 hours old, more than 24" in control.explanation
    assert control.evidence["verified"] is None


def test_no_destination_or_no_backup_fails_regular_backups(vault: mangostore.Database) -> None:
    report = vault.privacy.compliance_report()
    assert "no backup destination is saved" in report.control("regular_backups").explanation
    empty = vault.privacy.compliance_report(backup_to=MemoryDestination())
    assert empty.control("regular_backups").explanation == "the destination holds no backup"


def test_retention_not_run_fails_until_it_runs(
    vault: mangostore.Database, clock: ManualClock
) -> None:
    assert vault.privacy.compliance_report().control("retention_policies").passed
    user = vault.users.list()[0]
    Factory(vault).command(user=user, timestamp=clock.now_ms() - 100 * DAY)
    control = vault.privacy.compliance_report().control("retention_policies")
    assert not control.passed
    assert control.evidence["overdue_rows"]["command_history"] == 1
    assert "retention last ran: never recorded" in control.explanation
    vault.privacy.apply_retention()
    clock.advance(3_600_000)
    control = vault.privacy.compliance_report().control("retention_policies")
    assert control.passed
    assert control.evidence["last_run_age_hours"] == 1.0
    # A stricter policy than the one that ran finds rows again.
    Factory(vault).command(user=user, timestamp=clock.now_ms() - 10 * DAY)
    stricter = [RetentionPolicy("command_history", 7)]
    assert (
        not vault.privacy.compliance_report(policies=stricter).control("retention_policies").passed
    )


def test_a_pending_erasure_fails_the_right_to_erasure(vault: mangostore.Database) -> None:
    user = vault.users.list()[0]
    keyring = vault.keyring
    assert keyring is not None
    keyring.destroy_user_keys(user.id)  # erased in the keyring, rows still there
    report = vault.privacy.compliance_report()
    assert not report.control("right_to_erasure").passed
    assert report.control("right_to_erasure").evidence["pending_erasures"] == 1
    assert not report.control("user_rights").passed
    vault.privacy.reapply_erasures()
    assert vault.privacy.compliance_report().control("right_to_erasure").passed


def test_an_unencrypted_database_fails_the_encryption_controls(
    mango_db: mangostore.Database,
) -> None:
    report = mango_db.privacy.compliance_report()
    failed = {c.name for c in report.failed()}
    assert {
        "encryption_at_rest",
        "access_logging",
        "regular_backups",
        "pseudonymisation",
        "purpose_limitation",
        "data_minimisation",
        "right_to_erasure",
    } <= failed
    assert statuses(report)["encryption_in_transit"] == "pass"  # sync is off
    assert statuses(report)["data_portability"] == "pass"


def test_sync_over_plain_http_to_another_machine_fails_in_transit(
    vault: mangostore.Database,
) -> None:
    vault.sync.enable()
    for relay, passed in (
        ("https://sync.example.org", True),
        ("http://127.0.0.1:8765", True),
        ("http://sync.example.org", False),
        ("/mnt/shared/relay", True),
    ):
        vault.sync.save_relay(relay)
        control = vault.privacy.compliance_report().control("encryption_in_transit")
        assert control.passed is passed, relay


def test_anonymised_rows_with_identifiers_fail_anonymisation(
    vault: mangostore.Database, clock: ManualClock
) -> None:
    Factory(vault).command(user=vault.users.list()[0], timestamp=clock.now_ms() - 40 * DAY)
    policies = [RetentionPolicy("command_history", 30, anonymize=True)]
    vault.privacy.apply_retention(policies=policies)
    control = vault.privacy.compliance_report(policies=policies).control("anonymisation")
    assert control.passed
    assert control.evidence["anonymised_rows"] == 1
    vault.execute("UPDATE command_history SET output = 'leak' WHERE user_id LIKE '00000000-%'")
    assert not vault.privacy.compliance_report().control("anonymisation").passed


def run_cli(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, env={common.PASSPHRASE_ENV: TEST_PASSPHRASE})


def test_the_command_prints_each_control_and_exits_1_when_one_fails(
    vault: mangostore.Database, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    vault.backup.create(str(folder))
    vault.privacy.apply_retention()
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(vault.audit.checkpoint().to_json())
    path = vault.path
    vault.close()
    args = ["compliance", path, "--backup-to", str(folder), "--checkpoint", str(checkpoint)]
    passing = run_cli([*args, "--no-verify-backup", "--max-backup-age-hours", "1"])
    assert passing.exit_code == 0, passing.output
    assert "pass  security.regular_backups: the newest backup is " in passing.output
    assert len(passing.output.splitlines()) == len(CONTROLS)
    as_json = run_cli([*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert {c["status"] for c in document["controls"]} == {"pass"}
    assert document["generated"].endswith("Z")
    backups = next(c for c in document["controls"] if c["name"] == "regular_backups")
    assert backups["evidence"]["created"].endswith("Z")
    failing = run_cli(["compliance", path, "--json"])  # no backup destination saved
    assert failing.exit_code == 1
    document = json.loads(failing.stdout)
    assert document["ok"] is False
    assert "1 of 12 controls fail: regular_backups" in failing.stderr
    missing = run_cli(["compliance", path, "--checkpoint", str(tmp_path / "none.json")])
    assert missing.exit_code == 1
    assert "cannot read checkpoint" in missing.stderr
