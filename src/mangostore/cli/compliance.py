"""``mangostore compliance``: the data-protection controls, checked, with their evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import click

from mangostore.cli.common import (
    CommandError,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
)
from mangostore.cli.output import emit_json, iso_time, json_option
from mangostore.cli.privacy import PRIVACY
from mangostore.security.audit import AuditCheckpoint

#: Times in the report (epoch ms) and the names they take in --json, in ISO 8601.
_TIMES: Final = {"generated_at": "generated", "created_at": "created", "last_run_at": "last_run"}


def _with_iso_times(data: Any) -> Any:
    """``data`` with every epoch-ms time of :data:`_TIMES` as ISO 8601 (UTC) text."""
    if isinstance(data, dict):
        return {
            _TIMES.get(k, k): iso_time(v) if k in _TIMES else _with_iso_times(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_with_iso_times(v) for v in data]
    return data


@click.command("compliance")
@existing_database
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Verify the audit log against this checkpoint (from 'mangostore audit checkpoint').",
)
@click.option(
    "--backup-to",
    "backup_to",
    help="The backup destination (default: the one saved with 'backup create --remember').",
)
@click.option(
    "--no-verify-backup",
    "no_verify",
    is_flag=True,
    help="Only list the newest backup; do not verify it (faster).",
)
@click.option(
    "--max-backup-age-hours",
    "max_age",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="The newest backup may be at most this old.",
)
@json_option
@plain_option
@key_file_option
def compliance(
    path: Path,
    checkpoint_file: Path | None,
    backup_to: str | None,
    no_verify: bool,
    max_age: float,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Check the data-protection controls of the database at PATH.

    Each control (encryption at rest and in transit, access logging, backups,
    retention, minimisation, user rights, anonymisation, pseudonymisation, portability,
    erasure) passes or fails with an explanation and its evidence. Exits 0 when every
    control passes, 1 otherwise.
    """
    checkpoint = None
    if checkpoint_file is not None:
        try:
            checkpoint = AuditCheckpoint.from_json(checkpoint_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read checkpoint {checkpoint_file}: {exc}") from None
    with open_for(path, plain=plain, key_file=key_file, feature=PRIVACY) as db:
        report = db.privacy.compliance_report(
            checkpoint=checkpoint,
            backup_to=backup_to,
            verify_backup=not no_verify,
            max_backup_age_hours=max_age,
        )
    if as_json:
        emit_json(_with_iso_times(report.to_dict()))
    else:
        for control in report.controls:
            mark = "pass" if control.passed else "FAIL"
            click.echo(f"{mark}  {control.group}.{control.name}: {control.explanation}")
    failed = report.failed()
    if failed:
        names = ", ".join(c.name for c in failed)
        raise CommandError(f"{len(failed)} of {len(report.controls)} controls fail: {names}")
