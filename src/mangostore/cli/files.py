"""``mangostore files``: encrypted files stored beside a database (docs/files.md).

Files are stored for a user (a user name or id), encrypted under that user's data
key, in the folder ``PATH.files`` beside the database.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from mangostore.cli.common import (
    CommandError,
    Feature,
    console,
    existing_database,
    human_bytes,
    key_file_option,
    open_for,
    resolve_user,
)
from mangostore.cli.output import emit_json, iso_time, json_option
from mangostore.cli.progress import progress_bar
from mangostore.cli.sync import connect_relay
from mangostore.filestore import CheckReport, FileRecord

__all__ = ["files"]

FILES = Feature("file storage", 19)


@click.group()
def files() -> None:
    """Encrypted files stored beside the database (PATH.files), per user."""


def _record_json(record: FileRecord) -> dict[str, Any]:
    out = record.to_dict()
    out["created_at"] = iso_time(record.created_at)
    return out


@files.command("put")
@existing_database
@click.argument("user")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--name", help="The file's name (default: SOURCE's base name).")
@click.option("--media-type", help="Its media type (default: guessed from the name).")
@click.option("--metadata", metavar="JSON", help="A JSON object kept with the file.")
@json_option
@key_file_option
def put(
    path: Path,
    user: str,
    source: Path,
    name: str | None,
    media_type: str | None,
    metadata: str | None,
    as_json: bool,
    key_file: Path | None,
) -> None:
    """Store SOURCE (a file, or - for standard input) for USER, encrypted."""
    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError:
            raise click.BadParameter("give a JSON object", param_hint="--metadata") from None
    with open_for(path, plain=False, key_file=key_file, feature=FILES) as db:
        user_id = resolve_user(db, user)
        with progress_bar(as_json=as_json, units="bytes") as progress:
            if str(source) == "-":
                record = db.files.put(
                    user_id,
                    sys.stdin.buffer,
                    name=name,
                    media_type=media_type,
                    metadata=meta,
                    progress=progress,
                )
            else:
                if not source.is_file():
                    raise CommandError(f"there is no file at {source}")
                record = db.files.put(
                    user_id,
                    source,
                    name=name,
                    media_type=media_type,
                    metadata=meta,
                    progress=progress,
                )
    if as_json:
        emit_json(_record_json(record))
        return
    console().print(
        f"Stored {record.id}: {human_bytes(record.size)} in {record.chunk_count} chunks.",
        soft_wrap=True,
    )


@files.command("get")
@existing_database
@click.argument("file_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the file here ('-' or left out: standard output).",
)
@click.option("--overwrite", is_flag=True, help="Replace the file at --output if there is one.")
@json_option
@key_file_option
def get(
    path: Path,
    file_id: str,
    output: Path | None,
    overwrite: bool,
    as_json: bool,
    key_file: Path | None,
) -> None:
    """Write the plaintext of stored file FILE_ID to --output or standard output."""
    to_stdout = output is None or str(output) == "-"
    if as_json and to_stdout:
        raise click.UsageError("--json prints the file's record: give --output FILE too")
    with open_for(path, plain=False, key_file=key_file, feature=FILES) as db:
        if db.sync.relay and db.sync.enabled:
            # A synced file's chunks this device never fetched come from its relay.
            connect_relay(db, None)
        if output is None or str(output) == "-":
            out = sys.stdout.buffer
            with db.files.open(file_id) as stream:
                while block := stream.read_chunked():
                    out.write(block)
            out.flush()
            return
        if output.exists() and not overwrite:
            raise CommandError(f"{output} exists; pass --overwrite to replace it")
        with progress_bar(as_json=as_json, units="bytes") as progress:
            record = db.files.export(file_id, output, overwrite=True, progress=progress)
    if as_json:
        emit_json({**_record_json(record), "output": str(output)})
        return
    console().print(f"Wrote {human_bytes(record.size)} to {output}.", soft_wrap=True)


@files.command("ls")
@existing_database
@click.argument("user")
@click.option("--media-type", help="Only files of this media type.")
@json_option
@key_file_option
def ls(path: Path, user: str, media_type: str | None, as_json: bool, key_file: Path | None) -> None:
    """List USER's stored files, oldest first, with their usage and quota."""
    with open_for(path, plain=False, key_file=key_file, feature=FILES) as db:
        user_id = resolve_user(db, user)
        found = db.files.list(user_id, media_type=media_type)
        usage = db.files.usage(user_id)
    if as_json:
        emit_json(
            {
                "files": [_record_json(r) for r in found],
                "usage": {
                    "files": usage.files,
                    "bytes": usage.bytes,
                    "stored_bytes": usage.stored_bytes,
                    "quota": usage.quota,
                },
            }
        )
        return
    grid = Table()
    for column in ("id", "name", "media type", "size", "created"):
        grid.add_column(column)
    for r in found:
        grid.add_row(r.id, r.name or "", r.media_type, human_bytes(r.size), iso_time(r.created_at))
    out = console()
    out.print(grid)
    quota = "no quota" if usage.quota is None else f"quota {human_bytes(usage.quota)}"
    out.print(
        f"{usage.files} files, {human_bytes(usage.bytes)} ({human_bytes(usage.stored_bytes)} "
        f"on disk), {quota}",
        soft_wrap=True,
    )


@files.command("rm")
@existing_database
@click.argument("file_id")
@json_option
@key_file_option
def rm(path: Path, file_id: str, as_json: bool, key_file: Path | None) -> None:
    """Delete stored file FILE_ID; chunks no other file uses are removed."""
    with open_for(path, plain=False, key_file=key_file, feature=FILES) as db:
        record = db.files.get(file_id)
        db.files.delete(file_id)
    if as_json:
        emit_json({"deleted": record.id, "size": record.size})
        return
    console().print(f"Deleted {record.id} ({human_bytes(record.size)}).", soft_wrap=True)


def _check_json(report: CheckReport) -> dict[str, Any]:
    sweep = report.sweep
    return {
        "ok": report.ok,
        "files_checked": report.files_checked,
        "chunks_checked": report.chunks_checked,
        "missing": list(report.missing),
        "corrupt": list(report.corrupt),
        "damaged_files": list(report.damaged_files),
        "not_fetched": report.not_fetched,
        "sweep": {
            "chunks_removed": sweep.chunks_removed,
            "orphans_removed": sweep.orphans_removed,
            "temp_removed": sweep.temp_removed,
            "bytes_freed": sweep.bytes_freed,
            "deferred": sweep.deferred,
        },
    }


@files.command("check")
@existing_database
@click.option("--quick", is_flag=True, help="Check that chunks are there; do not decrypt them.")
@click.option("--no-repair", is_flag=True, help="Report only; remove nothing.")
@json_option
@key_file_option
def check(path: Path, quick: bool, no_repair: bool, as_json: bool, key_file: Path | None) -> None:
    """Check every stored file's chunks; remove orphaned ones. Exit status 1 when a
    file is damaged."""
    with open_for(path, plain=False, key_file=key_file, feature=FILES) as db:
        report = db.files.check(verify=not quick, repair=not no_repair)
    if as_json:
        emit_json(_check_json(report))
    else:
        sweep = report.sweep
        console().print(
            f"{report.files_checked} files, {report.chunks_checked} chunks checked; "
            f"{len(report.missing)} missing, {len(report.corrupt)} corrupt; removed "
            f"{sweep.chunks_removed} unused and {sweep.orphans_removed} orphaned chunks "
            f"({human_bytes(sweep.bytes_freed)})"
            + (
                f"; {report.not_fetched} chunks of synced files are on the relay, fetched "
                "when their files are opened"
                if report.not_fetched
                else ""
            )
            + ("; a put was running, so the sweep was put off" if sweep.deferred else ""),
            soft_wrap=True,
        )
    if not report.ok:
        raise CommandError(
            f"{len(report.damaged_files)} stored files are damaged: "
            + ", ".join(report.damaged_files)
            + "; restore them from a backup or delete them with 'mangostore files rm'"
        )
