"""``mangostore backup``: encrypted, compressed, verified backups to a folder or S3.

The destination is named with ``--to URL`` (a folder, ``file://`` or ``s3://``; S3
credentials and endpoint come from the usual ``AWS_*`` environment variables) or
saved once per database with ``backup create ... --remember``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
from rich.table import Table

import mangostore
from mangostore.backup import Manifest, restore_backup
from mangostore.cli.common import (
    CommandError,
    check_new_database_path,
    console,
    existing_database,
    human_bytes,
    key_file_option,
    open_existing,
    resolve_passphrase,
)
from mangostore.cli.database import show_recovery_key
from mangostore.cli.output import emit_json, iso_time, json_option
from mangostore.cli.progress import progress_bar
from mangostore.keys.keyring import Keyring, keyring_path

__all__ = ["backup"]


@click.group()
def backup() -> None:
    """Encrypted, compressed, verified backups to a folder or S3 storage.

    Backups are sealed with the database's vault key: only that vault's databases
    (or a copy of its keyring with the passphrase) can read them.
    """


def _to_option(func: Any) -> Any:
    return click.option(
        "--to",
        "to",
        metavar="URL",
        help="Where backups are kept: a folder, file:// or s3:// URL (default: the saved one).",
    )(func)


def _manifest_json(m: Manifest) -> dict[str, Any]:
    return {
        "id": m.id,
        "kind": m.kind,
        "parent": m.parent,
        "base": m.base,
        "depth": m.depth,
        "seq": m.seq,
        "created_at": iso_time(m.created_at),
        "since": iso_time(m.since),
        "schema_version": m.schema_version,
        "vault_id": m.vault_id,
        "plain_bytes": m.plain_bytes,
        "stored_bytes": m.stored_bytes,
        "changed_rows": m.changed_rows,
        "deleted_rows": m.deleted_rows,
        "objects": len(m.objects),
    }


def _parse_time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "give an ISO 8601 date and time, e.g. 2026-12-01T09:30:00Z", param_hint="--at"
        ) from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


@backup.command("create")
@existing_database
@_to_option
@click.option("--full", "kind", flag_value="full", help="Make a full backup.")
@click.option("--incremental", "kind", flag_value="incremental", help="Only an incremental backup.")
@click.option("--remember", is_flag=True, help="Save --to as this database's default.")
@json_option
@key_file_option
def create(
    path: Path,
    to: str | None,
    kind: str | None,
    remember: bool,
    as_json: bool,
    key_file: Path | None,
) -> None:
    """Back up the database at PATH (incremental when possible, else full).

    Writers keep going while the backup runs.
    """
    with open_existing(path, plain=False, key_file=key_file) as db:
        with progress_bar(as_json=as_json, units="bytes") as progress:
            made = db.backup.create(to, kind=kind or "auto", progress=progress)  # type: ignore[arg-type]
        if remember and to:
            db.backup.save_destination(to)
    if as_json:
        emit_json(_manifest_json(made))
        return
    console().print(
        f"Made a {made.kind} backup {made.id}: {human_bytes(made.stored_bytes)} stored "
        f"({human_bytes(made.plain_bytes)} before compression), {made.changed_rows} rows "
        f"written, {made.deleted_rows} deleted.",
        soft_wrap=True,
    )


@backup.command("list")
@existing_database
@_to_option
@json_option
@key_file_option
def list_(path: Path, to: str | None, as_json: bool, key_file: Path | None) -> None:
    """List the backups of PATH's vault at the destination, oldest first."""
    with open_existing(path, plain=False, key_file=key_file) as db:
        catalog = db.backup.list(to)
    if as_json:
        emit_json(
            {
                "backups": [_manifest_json(m) for m in catalog.backups],
                "problems": [{"object": n, "error": str(e)} for n, e in catalog.problems],
            }
        )
        return
    grid = Table()
    # An id folds onto a second line rather than be cut on a narrow terminal: it is
    # what `verify --backup` and `restore --backup` take. "reads": the backups a
    # restore of this one reads (its chain).
    grid.add_column("id", overflow="fold", min_width=14)
    grid.add_column("kind")
    grid.add_column("made", overflow="fold")
    for column in ("stored", "rows", "reads"):
        grid.add_column(column)
    for m in catalog.backups:
        grid.add_row(
            m.id,
            m.kind,
            iso_time(m.created_at),
            human_bytes(m.stored_bytes),
            str(m.changed_rows),
            str(m.depth + 1),
        )
    out = console()
    out.print(grid)
    for name, exc in catalog.problems:
        out.print(f"damaged: {name}: {exc}", soft_wrap=True)


@backup.command("verify")
@existing_database
@_to_option
@click.option("--backup", "backup_id", help="The backup to verify (default: the newest).")
@json_option
@key_file_option
def verify(
    path: Path, to: str | None, backup_id: str | None, as_json: bool, key_file: Path | None
) -> None:
    """Verify a backup: signature, every object's SHA-256, a trial restore, its
    integrity check and row counts. Exit status 1 when anything is wrong."""
    with (
        open_existing(path, plain=False, key_file=key_file) as db,
        progress_bar(as_json=as_json, units="bytes") as progress,
    ):
        report = db.backup.verify(to, backup_id, progress=progress)
    if as_json:
        emit_json(asdict(report))
    else:
        said = "is sound" if report.ok else "is DAMAGED"
        console().print(
            f"Backup {report.backup_id} {said} ({report.objects_checked} objects checked).",
            soft_wrap=True,
        )
    if not report.ok:
        raise CommandError("; ".join(report.problems) or "the backup failed verification")


@backup.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_to_option
@click.option(
    "--into",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new database to restore into.",
)
@click.option("--at", "at", help="ISO 8601 time: restore the newest backup made by then.")
@click.option("--backup", "backup_id", help="Restore this backup (default: the newest).")
@click.option("--force", is_flag=True, help="Replace the database at --into if there is one.")
@json_option
@key_file_option
def restore(
    path: Path,
    to: str | None,
    into: Path,
    at: str | None,
    backup_id: str | None,
    force: bool,
    as_json: bool,
    key_file: Path | None,
) -> None:
    """Restore a backup of PATH's vault into a new database at --into.

    The new database has PATH's passphrase and a new recovery key. When PATH itself
    is lost, its keyring (PATH.keyring) is enough. Refuses to overwrite --into
    without --force; a damaged backup is refused and nothing is written.
    """
    moment = _parse_time(at)
    check_new_database_path(into)
    if path.exists():
        with (
            open_existing(path, plain=False, key_file=key_file) as db,
            progress_bar(as_json=as_json, units="bytes") as progress,
        ):
            report = db.backup.restore(
                into,
                passphrase=resolve_passphrase(key_file, prompt="Passphrase"),
                to=to or db.backup.saved_destination(),
                at=moment,
                backup_id=backup_id,
                force=force,
                progress=progress,
            )
    else:
        ring_path = keyring_path(path)
        if not ring_path.exists() or to is None:
            raise CommandError(
                f"{path} does not exist: to restore without it, keep its keyring "
                f"({ring_path.name}) there and name the destination with --to"
            )
        passphrase = resolve_passphrase(key_file, prompt=f"Passphrase for {path.name}")
        ring = Keyring.unlock(ring_path, passphrase=passphrase)
        with progress_bar(as_json=as_json, units="bytes") as progress:
            report = restore_backup(
                to,
                ring,
                mangostore.create,
                into,
                passphrase,
                at=moment,
                backup_id=backup_id,
                force=force,
                progress=progress,
            )
    if as_json:
        emit_json(
            {
                "path": report.path,
                "backup_id": report.backup_id,
                "created_at": iso_time(report.created_at),
                "backups_read": report.backups_read,
                "bytes_read": report.bytes_read,
                "erasures_reapplied": report.erasures_reapplied,
                "recovery_key": report.recovery_key,
            }
        )
        return
    out = console()
    out.print(
        f"Restored backup {report.backup_id} (made {iso_time(report.created_at)}) into "
        f"{report.path} from {report.backups_read} backup(s).",
        soft_wrap=True,
    )
    if report.recovery_key:
        show_recovery_key(out, report.recovery_key)


@backup.command("prune")
@existing_database
@_to_option
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0, min_open=True),
    help="Keep backups younger than this (default: 30), with every backup they need.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@json_option
@key_file_option
def prune(
    path: Path,
    to: str | None,
    retention_days: float | None,
    dry_run: bool,
    as_json: bool,
    key_file: Path | None,
) -> None:
    """Delete backups older than the retention period, never one a kept backup needs,
    and rewrite old backups' key blocks after erasures."""
    with open_existing(path, plain=False, key_file=key_file) as db:
        if retention_days is not None:
            db.backup.configure(replace(db.backup.policy, retention_days=retention_days))
        report = db.backup.prune(to, dry_run=dry_run)
    if as_json:
        emit_json(asdict(report))
        return
    verb = "Would delete" if dry_run else "Deleted"
    console().print(
        f"{verb} {len(report.deleted)} backup(s) and {len(report.orphans)} orphaned "
        f"object(s); kept {len(report.kept)}.",
        soft_wrap=True,
    )
