"""``mangostore audit``: verify the tamper-evident audit log, and take checkpoints of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from mangostore.cli.common import (
    CommandError,
    Feature,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
)
from mangostore.cli.output import emit_json, file_output, json_option, output_option
from mangostore.files import write_private
from mangostore.security.audit import AuditCheckpoint

#: The schema version that made security_events a chain.
AUDIT_SCHEMA_VERSION = 7


AUDIT = Feature("the audit chain", AUDIT_SCHEMA_VERSION)


@click.group()
def audit() -> None:
    """Verify the audit log and take signed checkpoints of it.

    Every security event carries a sequence number and a MAC chaining it to the one
    before; verification walks the chain. A checkpoint, kept somewhere else, also
    shows events removed from the end of the log.
    """


@audit.command("verify")
@existing_database
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check the log against this checkpoint (from 'mangostore audit checkpoint').",
)
@json_option
@plain_option
@key_file_option
def verify(
    path: Path,
    checkpoint_file: Path | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Verify the audit chain of the database at PATH.

    Exits 0 when the chain (and the checkpoint, if given) verifies, and 1 with the
    first broken sequence number otherwise. A forged or foreign checkpoint is
    refused (exit 1).
    """
    checkpoint = None
    if checkpoint_file is not None:
        try:
            text = checkpoint_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read checkpoint {checkpoint_file}: {exc}") from None
        checkpoint = AuditCheckpoint.from_json(text)
    with open_for(path, plain=plain, key_file=key_file, feature=AUDIT) as db:
        report = db.audit.verify(checkpoint)
    if as_json:
        emit_json(dict(sorted(dataclasses.asdict(report).items())))
    else:
        first = report.first_seq if report.first_seq is not None else "-"
        last = report.last_seq if report.last_seq is not None else "-"
        click.echo(f"Events checked: {report.events_checked} (sequence {first} to {last})")
        if report.unsealed:
            click.echo(f"Written before the chain existed (no MAC): {report.unsealed}")
        if report.checkpoint_seq is not None:
            click.echo(f"Checkpoint: event {report.checkpoint_seq}")
        if report.ok:
            click.echo("The audit log verifies.")
    if not report.ok:
        where = (
            f" at event {report.first_broken_seq}" if report.first_broken_seq is not None else ""
        )
        raise CommandError(f"the audit log does not verify{where}: {report.reason}")


@audit.command("checkpoint")
@existing_database
@output_option("the checkpoint (mode 0600)")
@json_option
@plain_option
@key_file_option
def checkpoint(
    path: Path, output: Path | None, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """Print a signed checkpoint of the audit log of the database at PATH.

    Keep it away from the database (another machine, a printout): given to 'audit
    verify --checkpoint', it shows any event removed or rewritten since. The
    checkpoint is a JSON object; with -o FILE and --json, where it was written is
    printed as JSON.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=AUDIT) as db:
        text = db.audit.checkpoint().to_json()
    target = file_output(output)
    if target is None:
        click.echo(text)
        return
    try:
        write_private(target, (text + "\n").encode("utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror}") from None
    if as_json:
        emit_json({"output": str(output)})
        return
    click.echo(f"Checkpoint written to {output}")
