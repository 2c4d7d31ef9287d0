"""``mangostore privacy``: retention, export of a user's data, erasure of a user."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mangostore.cli.common import (
    CommandError,
    Feature,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
    resolve_user,
    stdin_is_interactive,
)
from mangostore.cli.output import deprecated_form, emit_json, iso_time, json_option, output_option
from mangostore.cli.progress import progress_bar
from mangostore.privacy import DEFAULT_POLICIES, RetentionPolicy

#: The schema version that made security_events a chain (retention anchors need it).
PRIVACY_SCHEMA_VERSION = 7
_DEFAULT_DAYS = {p.table: p.days for p in DEFAULT_POLICIES}
F = TypeVar("F", bound=Callable[..., Any])


PRIVACY = Feature("privacy commands", PRIVACY_SCHEMA_VERSION)


@click.group()
def privacy() -> None:
    """Retention policies, export of a user's data, and erasure of a user."""


def _days(table: str) -> Callable[[F], F]:
    default = _DEFAULT_DAYS[table]
    return click.option(
        f"--{table.replace('_', '-')}-days",
        table,
        type=click.IntRange(min=0),
        default=default,
        show_default="keep" if default is None else default,
        help=f"Keep {table} this many days.",
    )


@privacy.command("retention")
@existing_database
@_days("command_history")
@_days("notifications")
@_days("security_events")
@click.option(
    "--archive-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where archive files go (default: PATH.archive beside the database).",
)
@json_option
@plain_option
@key_file_option
def retention(
    path: Path,
    command_history: int | None,
    notifications: int | None,
    security_events: int | None,
    archive_dir: Path | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Apply the retention policies to the database at PATH.

    Command history and security events older than their cut-off are written to
    an encrypted archive file and then deleted (security events behind an anchor
    that keeps the audit chain verifiable); old notifications are deleted.
    """
    policies = [
        RetentionPolicy("command_history", command_history),
        RetentionPolicy("notifications", notifications),
        RetentionPolicy("security_events", security_events),
    ]
    with (
        open_for(path, plain=plain, key_file=key_file, feature=PRIVACY) as db,
        progress_bar(as_json=as_json) as bar,
    ):
        report = db.privacy.apply_retention(
            policies=policies, archive_dir_path=archive_dir, progress=bar
        )
    rows = [
        {
            "table": t.table,
            "cutoff": iso_time(t.cutoff),
            "archived": t.archived,
            "deleted": t.deleted,
            "archive": None if t.archive is None else str(t.archive),
        }
        for t in report.tables
    ]
    if as_json:
        emit_json({"tables": rows, "anchor_seq": report.anchor_seq})
        return
    for row in rows:
        line = f"{row['table']}: {row['deleted']} deleted"
        if row["archived"]:
            line += f", {row['archived']} archived to {row['archive']}"
        click.echo(line)


@privacy.command("export")
@existing_database
@click.option("--user", "user", required=True, help="The user: a user id or a user name.")
@output_option("the export (a new or empty directory)", file_okay=False, dir_okay=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The older name of -o/--output (deprecated).",
)
@json_option
@plain_option
@key_file_option
def export(
    path: Path,
    user: str,
    output: Path | None,
    out_dir: Path | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Export every row of --user, decrypted, as JSON Lines with a SHA-256 manifest.

    The files go to the directory -o DIR, which must be new or empty. They hold the
    user's personal data in plaintext: keep them accordingly.
    """
    if out_dir is not None:
        if output is not None:
            raise click.UsageError("name the directory once: -o DIR (--out is the old name)")
        deprecated_form("--out", "-o/--output")
        output = out_dir
    if output is None or str(output) == "-":
        raise click.UsageError("name the directory to write the export to with -o DIR")
    with (
        open_for(path, plain=plain, key_file=key_file, feature=PRIVACY) as db,
        progress_bar(as_json=as_json) as bar,
    ):
        manifest = db.privacy.export_user(resolve_user(db, user), output, progress=bar)
    if as_json:
        emit_json(
            {
                "user_id": manifest.user_id,
                "directory": str(manifest.directory),
                "created": iso_time(manifest.created_at),
                "schema_version": manifest.schema_version,
                "files": [
                    {"name": f.name, "table": f.table, "rows": f.rows, "sha256": f.sha256}
                    for f in manifest.files
                ],
            }
        )
        return
    total = sum(f.rows for f in manifest.files)
    click.echo(f"Exported {total} rows in {len(manifest.files)} files to {output}")
    for entry in manifest.files:
        if entry.rows:
            click.echo(f"  {entry.name}: {entry.rows}")


@privacy.command("erase")
@existing_database
@click.option("--user", "user", required=True, help="The user: a user id or a user name.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@plain_option
@key_file_option
def erase(
    path: Path, user: str, yes: bool, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """Erase --user: delete their rows everywhere and destroy their data key.

    Irreversible. Asks for confirmation unless --yes is given (and refuses to go on
    without --yes when there is no terminal to ask).
    """
    with open_for(path, plain=plain, key_file=key_file, feature=PRIVACY) as db:
        user_id = resolve_user(db, user, erased_ok=True)
        if not yes:
            if not stdin_is_interactive():
                raise CommandError(
                    "erasure cannot be undone: pass --yes to confirm it without a terminal"
                )
            click.confirm(
                f"Erase user {user} for good (their rows and their data key)?",
                abort=True,
                err=True,
            )
        report = db.privacy.erase_user(user_id)
    if as_json:
        emit_json(
            {
                "subject": report.subject,
                "rows_deleted": report.rows_deleted,
                "keys_destroyed": report.keys_destroyed,
                "wal_truncated": report.wal_truncated,
                "copies_not_reached": [str(c) for c in report.copies_not_reached],
            }
        )
        return
    click.echo(
        f"Erased {user}: {report.total_deleted} rows deleted, "
        f"{report.keys_destroyed} keys destroyed"
    )
    if not report.wal_truncated:
        click.echo("The WAL could not be truncated (a reader was busy): run erase again later.")
    for copy in report.copies_not_reached:
        click.echo(f"Not reached (delete it, or open it to erase again): {copy}")
