"""``mangostore rotate-keys``: give every user a new data key and re-encrypt their values."""

from __future__ import annotations

from pathlib import Path

import click

from mangostore.cli.common import (
    CommandError,
    Feature,
    existing_database,
    is_unencrypted_sqlite,
    key_file_option,
    open_for,
)
from mangostore.cli.output import emit_json, json_option
from mangostore.cli.progress import progress_bar
from mangostore.keys.keyring import keyring_path
from mangostore.keys.rotation import rotate_field_keys

#: The schema version that marks which rotation made each key (so a rotation resumes).
ROTATION_SCHEMA_VERSION = 14

ROTATION = Feature("key rotation", ROTATION_SCHEMA_VERSION)


@click.command("rotate-keys")
@existing_database
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Rows re-encrypted per transaction (other writers wait at most one batch).",
)
@json_option
@key_file_option
def rotate_keys(path: Path, batch_size: int, as_json: bool, key_file: Path | None) -> None:
    """Rotate the field keys of the database at PATH.

    Every user gets a new data key, and every encrypted value is sealed again under
    its owner's new key; the old keys are kept (retired), so older copies of the file
    stay readable. Other programs can go on using the database meanwhile. Safe to
    interrupt: running the command again finishes the rotation.
    """
    if not keyring_path(path).exists() and is_unencrypted_sqlite(path):
        raise CommandError(
            f"{path} is unencrypted and has no field keys: there is nothing to rotate"
        )
    with (
        open_for(path, plain=False, key_file=key_file, feature=ROTATION) as db,
        progress_bar(as_json=as_json) as bar,
    ):
        report = rotate_field_keys(db, batch_size=batch_size, progress=bar)
    unreadable = [
        {"table": ref.table, "column": ref.column, "row_id": ref.row_id}
        for ref in report.unreadable
    ]
    if as_json:
        emit_json(
            {
                "rotation_id": report.rotation_id,
                "resumed": report.resumed,
                "keys_created": report.keys_created,
                "keys_retired": report.keys_retired,
                "rows_scanned": report.rows_scanned,
                "values_reencrypted": report.values_reencrypted,
                "values_current": report.values_current,
                "values_shredded": report.values_shredded,
                "unreadable": unreadable,
            }
        )
        return
    if report.resumed:
        click.echo("Finished an interrupted rotation.")
    click.echo(
        f"Users given a new key: {report.keys_created} (old keys retired: "
        f"{report.keys_retired}). Values re-encrypted: {report.values_reencrypted}, "
        f"in {report.rows_scanned} rows."
    )
    if report.values_shredded:
        click.echo(f"Left as they are, under erased users' keys: {report.values_shredded}")
    for ref in unreadable:
        click.echo(
            f"Unreadable (fails authentication, left as it is): "
            f"{ref['table']}.{ref['column']} row {ref['row_id']}"
        )
