"""``mangostore sync``: sync a database with its other devices through a relay folder.

The relay is a folder every device can reach (a shared folder, a USB stick; see
:class:`mangostore.sync.folder.FolderRelay`). Each command is its own process, so the
folder is named on every command that needs it, with ``--relay DIR`` or, once for a
shell, the ``MANGOSTORE_SYNC_RELAY`` environment variable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

import mangostore
from mangostore import KdfParams, Settings
from mangostore.cli.common import (
    CommandError,
    Feature,
    check_new_database_path,
    check_passphrase_strength,
    console,
    existing_database,
    is_unencrypted_sqlite,
    kdf_options,
    key_file_option,
    make_kdf,
    open_for,
    resolve_passphrase,
    utc_text,
    weak_passphrase_option,
)
from mangostore.cli.database import show_recovery_key
from mangostore.cli.output import emit_json, iso_time, json_option, warn
from mangostore.cli.progress import progress_bar
from mangostore.errors import NotFoundError, SyncTransportError
from mangostore.keys.keyring import keyring_path
from mangostore.sync import Conflict, SyncStatus
from mangostore.sync.folder import FolderRelay

#: The schema version that brought change capture and the sync tables.
SYNC_SCHEMA_VERSION = 17
SYNC = Feature("sync", SYNC_SCHEMA_VERSION)
RELAY_ENV = "MANGOSTORE_SYNC_RELAY"
#: Longest value of a conflict shown in text (``--json`` shows them whole).
_VALUE_CHARS = 80


@click.group()
def sync() -> None:
    """Sync a database with its other devices through a relay folder.

    Every device of one vault (made with 'sync new-device') syncs through the same
    folder: a shared folder, or a USB stick carried between machines. The folder
    holds only sealed batches; it never sees a key or a value. Name it with --relay
    DIR, or set MANGOSTORE_SYNC_RELAY once.
    """


def _relay_option(func: Any) -> Any:
    return click.option(
        "--relay",
        envvar=RELAY_ENV,
        help="The relay: a sync server URL (https://...) or a relay folder (default: "
        f"${RELAY_ENV}, else the one saved by 'sync enable' or 'sync join').",
    )(func)


def _relay(relay: str | None, *, create: bool = False) -> FolderRelay:
    """The relay folder ``--relay`` names.

    Raises:
        click.UsageError: neither ``--relay`` nor the environment variable names one.
    """
    if relay is None or not str(relay):
        raise click.UsageError(
            f"name the relay folder with --relay DIR, or set {RELAY_ENV}: the folder every "
            "device of this vault syncs through"
        )
    return FolderRelay(Path(relay), create=create)


def connect_relay(db: mangostore.Database, relay: str | None) -> str:
    """Connect ``db`` to the relay ``--relay`` names, else to its saved one; return it.

    Raises:
        click.UsageError: no relay named and none saved.
    """
    chosen = relay or db.sync.relay
    if not chosen:
        raise click.UsageError(
            f"name the relay with --relay (a sync server URL or a folder), or set {RELAY_ENV}"
        )
    if chosen.startswith(("http://", "https://")):
        db.sync.connect(db.sync.server(chosen))
    else:
        db.sync.connect(_relay(chosen))
    return chosen


def open_synced(path: Path, key_file: Path | None) -> mangostore.Database:
    """Open the database at ``path`` for sync, refusing an unencrypted one first."""
    if not keyring_path(path).exists() and is_unencrypted_sqlite(path):
        raise CommandError(
            f"{path} is an unencrypted database: sync needs an encrypted one, since the "
            "batches are sealed with its vault's key"
        )
    return open_for(path, plain=False, key_file=key_file, feature=SYNC)


def _not_enabled(path: Path) -> CommandError:
    return CommandError(
        f"sync is not enabled on {path}: run 'mangostore sync enable {path} --relay DIR' first"
    )


@sync.command("enable")
@existing_database
@_relay_option
@json_option
@key_file_option
def enable(path: Path, relay: str | None, as_json: bool, key_file: Path | None) -> None:
    """Start syncing the database at PATH through the relay folder.

    From now on every change is recorded for sync; the first 'sync now' sends the
    whole database. The relay folder is made when missing (its parent must exist).
    Enabling again changes nothing.
    """
    folder = _relay(relay, create=True)
    folder.check()
    with open_synced(path, key_file) as db:
        before = db.sync.enabled
        marked = db.sync.enable()
        db.sync.save_relay(str(folder.path))
        state = db.sync.status()
    if as_json:
        emit_json(
            {
                "path": str(path),
                "relay": str(folder.path),
                "device_id": state.device_id,
                "vault_id": state.vault_id,
                "enabled": True,
                "already_enabled": before,
                "marked": marked,
                "pending_changes": state.pending_changes,
            }
        )
        return
    out = console()
    said = "was already enabled" if before else "enabled"
    out.print(
        f"Sync {said} on {path} (device {state.device_id}, vault {state.vault_id}).",
        soft_wrap=True,
    )
    out.print(
        f"{state.pending_changes} change(s) to send: run 'mangostore sync now {path} "
        f"--relay {folder.path}'.",
        soft_wrap=True,
    )


@sync.command("status")
@existing_database
@_relay_option
@json_option
@key_file_option
def status(path: Path, relay: str | None, as_json: bool, key_file: Path | None) -> None:
    """Describe the sync of the database at PATH: device, pending changes, conflicts.

    With a relay folder (--relay or MANGOSTORE_SYNC_RELAY), also how many batches
    wait there to be pulled; a relay that cannot be reached is reported, not an error.
    """
    with open_synced(path, key_file) as db:
        state = db.sync.status()
        relay = relay or db.sync.relay
    on_relay = None if not relay else _relay_state(relay, state)
    data = _status_json(path, state, on_relay)
    if as_json:
        emit_json(data)
        return
    _render_status(data)


def _relay_state(relay: str, state: SyncStatus) -> dict[str, Any]:
    """What the relay folder holds for this vault, or why it cannot be read (a sync
    server is only named: 'sync devices' asks it)."""
    found: dict[str, Any] = {"path": relay, "batches": None, "to_pull": None, "error": None}
    if state.vault_id is None or relay.startswith(("http://", "https://")):
        return found
    try:
        highest = FolderRelay(Path(relay)).highest_cursor(state.vault_id)
    except SyncTransportError as exc:
        found["error"] = str(exc)
        return found
    found["batches"] = highest
    found["to_pull"] = max(highest - state.cursor, 0)
    return found


def _status_json(path: Path, state: SyncStatus, relay: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "path": str(path),
        "device_id": state.device_id,
        "vault_id": state.vault_id,
        "enabled": state.enabled,
        "pending_changes": state.pending_changes,
        "last_push": iso_time(state.last_push_at),
        "last_pull": iso_time(state.last_pull_at),
        "cursor": state.cursor,
        "conflicts_open": state.conflicts_open,
        "held_batches": state.held_batches,
        "clock": state.clock,
        "clock_time": iso_time(state.clock_ms or None),
        "clock_ahead_ms": state.clock_ahead_ms,
        "last_error": state.last_error,
        "relay": relay,
    }


def _render_status(data: dict[str, Any]) -> None:
    table = Table(box=box.SIMPLE, show_header=False, title="mangostore sync")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # ids and paths are folded, never cut
    path = data["path"]
    enabled = "yes" if data["enabled"] else f"no (run 'mangostore sync enable {path}')"
    rows = [
        ("Path", path),
        ("Device", data["device_id"]),
        ("Vault", data["vault_id"] or "none (unencrypted)"),
        ("Enabled", enabled),
        ("Pending changes", str(data["pending_changes"])),
        ("Last push", _when(data["last_push"])),
        ("Last pull", _when(data["last_pull"])),
        ("Cursor", str(data["cursor"])),
        ("Open conflicts", str(data["conflicts_open"])),
    ]
    if data["held_batches"]:
        rows.append(("Held batches", f"{data['held_batches']} (from a newer schema)"))
    if data["clock_ahead_ms"] > 60_000:
        rows.append(("Clock", f"another device is {data['clock_ahead_ms']} ms ahead"))
    if data["last_error"]:
        rows.append(("Last error", data["last_error"]))
    relay = data["relay"]
    if relay is not None:
        if relay["error"]:
            rows.append(("Relay", f"{relay['path']}: {relay['error']}"))
        elif relay["to_pull"] is None:
            rows.append(("Relay", relay["path"]))
        else:
            rows.append(("Relay", f"{relay['path']}: {relay['to_pull']} batch(es) to pull"))
    for label, value in rows:
        table.add_row(label, Text(value))
    console().print(table)


def _when(iso: str | None) -> str:
    return "never" if iso is None else iso.replace("T", " ")[:19] + " UTC"


@sync.command("now")
@existing_database
@_relay_option
@json_option
@key_file_option
def now(path: Path, relay: str | None, as_json: bool, key_file: Path | None) -> None:
    """Sync the database at PATH now: push its changes, then pull the other devices'.

    Safe to interrupt and to run again: what was sent or applied stays so, and the
    rest goes next time.
    """
    with open_synced(path, key_file) as db, progress_bar(as_json=as_json) as bar:
        if not db.sync.enabled:
            raise _not_enabled(path)
        relay = connect_relay(db, relay)
        if bar is not None:
            bar(0, None, "syncing")
        report = db.sync.sync()
        state = db.sync.status()
    data = {
        "path": str(path),
        "relay": relay,
        "pushed_batches": report.pushed_batches,
        "pushed_changes": report.pushed_changes,
        "pulled_batches": report.pulled_batches,
        "applied": report.applied,
        "ignored": report.ignored,
        "conflicts": report.conflicts,
        "conflicts_open": state.conflicts_open,
        "cursor": state.cursor,
    }
    if as_json:
        emit_json(data)
        return
    click.echo(
        f"Pushed {report.pushed_changes} change(s) in {report.pushed_batches} batch(es); "
        f"pulled {report.pulled_batches} batch(es): {report.applied} applied, "
        f"{report.ignored} older or already here, {report.conflicts} conflict(s)."
    )
    if state.conflicts_open:
        click.echo(
            f"{state.conflicts_open} open conflict(s): see 'mangostore sync conflicts {path}'."
        )


@sync.command("conflicts")
@existing_database
@click.option("--all", "show_all", is_flag=True, help="List resolved conflicts too.")
@json_option
@key_file_option
def conflicts(path: Path, show_all: bool, as_json: bool, key_file: Path | None) -> None:
    """List the values that lost a merge and were kept, newest first.

    Only columns set to 'manual' (see 'sync strategy') keep them. Settle each with
    'sync resolve'.
    """
    with open_synced(path, key_file) as db:
        found = db.sync.conflicts(include_resolved=show_all)
    if as_json:
        emit_json({"conflicts": [_conflict_json(c) for c in found]})
        return
    if not found:
        click.echo("No conflicts." if show_all else "No open conflicts.")
        return
    for conflict in found:
        where = conflict.table + (f".{conflict.column}" if conflict.column else "")
        settled = (
            f", resolved ({conflict.resolution}) {utc_text(conflict.resolved_at)} UTC"
            if conflict.resolved_at is not None
            else ""
        )
        click.echo(
            f"{conflict.id}  {where} of row {conflict.row_id} ({conflict.kind}, "
            f"{utc_text(conflict.detected_at)} UTC{settled})"
        )
        device = f" (from device {conflict.lost_device})" if conflict.lost_device else ""
        click.echo(f"  kept: {_short(conflict.kept)}")
        click.echo(f"  lost: {_short(conflict.lost)}{device}")


def _conflict_json(conflict: Conflict) -> dict[str, Any]:
    return {
        "id": conflict.id,
        "kind": conflict.kind,
        "table": conflict.table,
        "row_id": conflict.row_id,
        "column": conflict.column,
        "kept": conflict.kept,
        "lost": conflict.lost,
        "lost_device": conflict.lost_device,
        "detected": iso_time(conflict.detected_at),
        "resolved": iso_time(conflict.resolved_at),
        "resolution": conflict.resolution,
    }


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


@sync.command("resolve")
@existing_database
@click.argument("conflict_id", metavar="ID")
@click.option(
    "--choose",
    type=click.Choice(["kept", "lost"]),
    required=True,
    help="kept: leave the merged value; lost: write the value that lost back.",
)
@json_option
@key_file_option
def resolve(
    path: Path, conflict_id: str, choose: str, as_json: bool, key_file: Path | None
) -> None:
    """Settle the open conflict ID of the database at PATH.

    --choose kept leaves the value the merge kept; --choose lost writes back the
    value that lost, as a new change that the next 'sync now' sends to every device.
    """
    with open_synced(path, key_file) as db:
        try:
            done = db.sync.resolve(conflict_id, "lost" if choose == "lost" else "kept")
        except NotFoundError:
            raise CommandError(
                f"{path} has no open sync conflict {conflict_id!r}: list them with "
                f"'mangostore sync conflicts {path}'"
            ) from None
    if as_json:
        emit_json(_conflict_json(done))
        return
    if choose == "lost":
        click.echo(
            f"Resolved {done.id}: the value that lost is back; 'mangostore sync now' sends "
            "it to the other devices."
        )
    else:
        click.echo(f"Resolved {done.id}: the merged value stays.")


@sync.command("strategy")
@existing_database
@click.argument("table")
@click.argument("column")
@click.argument("strategy", metavar="STRATEGY", type=click.Choice(["lww", "manual"]))
@json_option
@key_file_option
def strategy(
    path: Path, table: str, column: str, strategy: str, as_json: bool, key_file: Path | None
) -> None:
    """Set how TABLE.COLUMN merges: lww (the last write wins) or manual (the last
    write wins too, and the value that lost is kept as a conflict to review).

    Set the same on every device of the vault.
    """
    with open_synced(path, key_file) as db:
        db.sync.set_strategy(table, column, "manual" if strategy == "manual" else "lww")
    if as_json:
        emit_json({"path": str(path), "table": table, "column": column, "strategy": strategy})
        return
    if strategy == "manual":
        click.echo(
            f"{table}.{column}: manual; values that lose a merge are kept (see "
            f"'mangostore sync conflicts {path}'). Set the same on every device."
        )
    else:
        click.echo(f"{table}.{column}: lww; the last write wins. Set the same on every device.")


@sync.command("new-device")
@existing_database
@click.argument("new_path", metavar="NEW_PATH", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--new-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the new device's passphrase from FILE (default: MANGOSTORE_PASSPHRASE, "
    "else it is asked twice).",
)
@key_file_option
@weak_passphrase_option
@kdf_options(KdfParams())
@json_option
def new_device(
    path: Path,
    new_path: Path,
    new_key_file: Path | None,
    key_file: Path | None,
    weak_ok: bool,
    kdf_memory_kib: int,
    kdf_iterations: int,
    kdf_parallelism: int,
    as_json: bool,
) -> None:
    """Create NEW_PATH as another device of the vault of the database at PATH.

    The new database is empty, with its own passphrase and recovery key (shown once,
    as by 'init') and sync enabled; 'sync now' on PATH and then on NEW_PATH fills it.
    The new passphrase comes from --new-key-file, else MANGOSTORE_PASSPHRASE, else it
    is asked twice; it needs at least 8 characters unless --weak-passphrase is given.
    """
    if new_path.exists() and new_path.stat().st_size > 0:
        raise CommandError(f"{new_path} already exists: choose another path for the new device")
    check_new_database_path(new_path)
    kdf = make_kdf(kdf_memory_kib, kdf_iterations, kdf_parallelism, base=KdfParams())
    with open_synced(path, key_file) as db:
        passphrase = resolve_passphrase(
            new_key_file, prompt=f"New passphrase for {new_path.name}", confirm=True
        )
        check_passphrase_strength(passphrase, weak_ok=weak_ok)
        source_enabled = db.sync.enabled
        created, recovery_key = db.sync.new_device(new_path, passphrase, settings=Settings(kdf=kdf))
        with created:
            device_id, vault_id = created.sync.device_id, created.sync.vault_id
            version = created.schema_version
    if not source_enabled:
        warn(
            f"sync is not enabled on {path}: its data reaches the new device only after "
            f"'mangostore sync enable {path} --relay DIR'"
        )
    if as_json:
        emit_json(
            {
                "path": str(new_path),
                "source": str(path),
                "vault_id": vault_id,
                "device_id": device_id,
                "schema_version": version,
                "keyring": str(keyring_path(new_path)),
                "recovery_key": recovery_key,
            }
        )
        return
    out = console()
    out.print(
        f"Created {new_path}: device {device_id} of vault {vault_id} (schema version {version}).",
        soft_wrap=True,
    )
    if recovery_key is not None:
        show_recovery_key(out, recovery_key)
    out.print(
        f"Fill it: 'mangostore sync now {path} --relay DIR', then "
        f"'mangostore sync now {new_path} --relay DIR'.",
        soft_wrap=True,
    )
