"""``mangostore serve-sync`` and the sync commands that talk to a sync server:
``sync join``, ``sync devices``, ``sync remove-device``, ``sync snapshot``.

See docs/sync-server.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich import box
from rich.table import Table

import mangostore
from mangostore import KdfParams, Settings
from mangostore.cli.common import (
    CommandError,
    check_new_database_path,
    check_passphrase_strength,
    console,
    existing_database,
    kdf_options,
    key_file_option,
    make_kdf,
    resolve_passphrase,
    resolve_recovery_key,
    weak_passphrase_option,
)
from mangostore.cli.database import show_recovery_key
from mangostore.cli.output import emit_json, iso_time, json_option
from mangostore.cli.progress import progress_bar
from mangostore.cli.sync import open_synced, sync
from mangostore.sync.http import HttpTransport, split_join_url
from mangostore.sync.server.settings import DEFAULT_DEVICE_RATE, ServerSettings

__all__ = ["serve_sync"]

STORE_ENV = "MANGOSTORE_SYNC_STORE"


def _server(db: mangostore.Database, path: Path) -> HttpTransport:
    """The sync server this database was joined to."""
    relay = db.sync.relay
    if not relay or not relay.startswith(("http://", "https://")):
        raise CommandError(
            f"{path} does not sync through a sync server: run 'mangostore sync join URL {path}'"
        )
    transport = db.sync.server(relay)
    db.sync.connect(transport)
    return transport


@sync.command("join")
@click.argument("url")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--recovery-key",
    "use_recovery",
    is_flag=True,
    help="Unlock the vault with its recovery key (from MANGOSTORE_RECOVERY_KEY, else "
    "asked for) instead of its passphrase.",
)
@click.option(
    "--new-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="This device's own passphrase, from FILE (default: the vault's passphrase; "
    "with --recovery-key it is asked twice).",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check the server's TLS certificate against this CA bundle (https URLs).",
)
@key_file_option
@weak_passphrase_option
@kdf_options(KdfParams())
@json_option
def join(
    url: str,
    path: Path,
    use_recovery: bool,
    new_key_file: Path | None,
    ca_bundle: Path | None,
    key_file: Path | None,
    weak_ok: bool,
    kdf_memory_kib: int,
    kdf_iterations: int,
    kdf_parallelism: int,
    as_json: bool,
) -> None:
    """Sync the database at PATH through the sync server at URL.

    On an existing database, attach its vault to the server (the first device does
    this with the server's address) and print the URL the other devices join with.
    Where PATH does not exist yet, make it a new device of the vault at URL (that
    join URL, https://host/vaults/<vault id>), unlocked with the vault's passphrase
    or --recovery-key, then sync it: it starts from the server's latest snapshot.
    Afterwards 'mangostore sync now PATH' syncs with the saved server.
    """
    verify: bool | str = str(ca_bundle) if ca_bundle is not None else True
    if path.exists() and path.stat().st_size > 0:
        _attach(url, path, key_file, verify, as_json)
        return
    check_new_database_path(path)
    _base, vault_id = split_join_url(url)
    if vault_id is None:
        raise CommandError(
            f"{path} does not exist, so it would join a vault: give the join URL the first "
            "device printed (https://host/vaults/<vault id>)"
        )
    kdf = make_kdf(kdf_memory_kib, kdf_iterations, kdf_parallelism, base=KdfParams())
    if use_recovery:
        recovery, vault_pass = resolve_recovery_key(), None
        own = resolve_passphrase(
            new_key_file, prompt=f"New passphrase for {path.name}", confirm=True
        )
    else:
        recovery = None
        vault_pass = resolve_passphrase(key_file, prompt="The vault's passphrase")
        own = vault_pass if new_key_file is None else resolve_passphrase(new_key_file, prompt="")
    check_passphrase_strength(own, weak_ok=weak_ok)
    from mangostore.sync.joining import join as join_vault

    with progress_bar(as_json=as_json) as bar:
        if bar is not None:
            bar(0, None, "joining")
        db, recovery_key = join_vault(
            url,
            path,
            passphrase=vault_pass,
            recovery_key=recovery,
            new_passphrase=own,
            settings=Settings(kdf=kdf),
            verify=verify,
        )
        with db:
            state = db.sync.status()
            relay = db.sync.relay
    data = {
        "path": str(path),
        "joined": True,
        "server": relay,
        "vault_id": state.vault_id,
        "device_id": state.device_id,
        "cursor": state.cursor,
        "recovery_key": recovery_key,
    }
    if as_json:
        emit_json(data)
        return
    out = console()
    out.print(
        f"{path} joined vault {state.vault_id} as device {state.device_id} and synced "
        f"up to batch {state.cursor}.",
        soft_wrap=True,
    )
    if recovery_key is not None:
        show_recovery_key(out, recovery_key)


def _attach(url: str, path: Path, key_file: Path | None, verify: bool | str, as_json: bool) -> None:
    _base, vault_id = split_join_url(url)
    with open_synced(path, key_file) as db:
        if vault_id is not None and vault_id != db.sync.vault_id:
            raise CommandError(
                f"{path} belongs to vault {db.sync.vault_id}, not {vault_id}: to join that "
                "vault, give a path where no database exists yet"
            )
        join_url = db.sync.attach(url, verify=verify)
        state = db.sync.status()
        server = db.sync.relay
    if as_json:
        emit_json(
            {
                "path": str(path),
                "joined": False,
                "server": server,
                "join_url": join_url,
                "vault_id": state.vault_id,
                "device_id": state.device_id,
            }
        )
        return
    console().print(
        f"{path} now syncs through {url} (vault {state.vault_id}). Sync it with "
        f"'mangostore sync now {path}'. Other machines join with:\n"
        f"  mangostore sync join {join_url} NEW_PATH",
        soft_wrap=True,
    )


@sync.command("devices")
@existing_database
@json_option
@key_file_option
def devices(path: Path, as_json: bool, key_file: Path | None) -> None:
    """List the devices of the vault as its sync server knows them."""
    with open_synced(path, key_file) as db:
        found = _server(db, path).devices()
        own = db.sync.device_id
    rows = [
        {
            "device_id": d["device_id"],
            "first_seen": iso_time(d["first_seen"]),
            "last_seen": iso_time(d["last_seen"]),
            "cursor": d["cursor"],
            "removed": iso_time(d["removed_at"]),
            "this_device": d["device_id"] == own,
        }
        for d in found
    ]
    if as_json:
        emit_json({"path": str(path), "devices": rows})
        return
    table = Table(box=box.SIMPLE, title="Devices of the vault")
    for column in ("Device", "First seen", "Last seen", "Pulled up to", "State"):
        table.add_column(column, overflow="fold")
    for d in rows:
        state = "removed" if d["removed"] else ("this device" if d["this_device"] else "")
        seen = [str(t or "").replace("T", " ")[:19] for t in (d["first_seen"], d["last_seen"])]
        table.add_row(d["device_id"], *seen, str(d["cursor"]), state)
    console().print(table)


@sync.command("remove-device")
@existing_database
@click.argument("device_id")
@json_option
@key_file_option
def remove_device(path: Path, device_id: str, as_json: bool, key_file: Path | None) -> None:
    """Remove DEVICE_ID from the vault: the server refuses it at once, and the vault's
    compaction stops waiting for it.

    A removed device still holds the master key: someone holding that machine can
    read what it had. Change the passphrase of the other devices if it was stolen.
    """
    with open_synced(path, key_file) as db:
        if device_id == db.sync.device_id:
            raise CommandError("this is the device at PATH: remove it from another device")
        _server(db, path).remove_device(device_id)
        db.sync.forget_device(device_id)
    if as_json:
        emit_json({"path": str(path), "removed": device_id})
        return
    click.echo(f"Removed device {device_id} from the vault.")


@sync.command("snapshot")
@existing_database
@json_option
@key_file_option
def snapshot(path: Path, as_json: bool, key_file: Path | None) -> None:
    """Upload a snapshot of PATH's synced state now (sync does this now and then), so
    that new devices start from it and the server can drop older batches."""
    with open_synced(path, key_file) as db, progress_bar(as_json=as_json) as bar:
        _server(db, path)
        if bar is not None:
            bar(0, None, "uploading a snapshot")
        cursor = db.sync.upload_snapshot()
    if as_json:
        emit_json({"path": str(path), "cursor": cursor})
        return
    click.echo(f"Uploaded a snapshot of {path} at batch {cursor}.")


@click.command("serve-sync")
@click.option(
    "--store",
    envvar=STORE_ENV,
    default="mangostore-sync.db",
    show_default=True,
    help=f"Where the server keeps batches: a SQLite file (a path or sqlite:///path) or "
    f"postgresql://user@host/db (also from ${STORE_ENV}).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key.")
@click.option(
    "--max-body-mb",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Largest request body accepted.",
)
@click.option(
    "--rate",
    default=DEFAULT_DEVICE_RATE,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Requests a second each device may make (bursts of ten times as many).",
)
@click.option("--log-level", default="info", show_default=True)
def serve_sync(
    store: str,
    host: str,
    port: int,
    certfile: str | None,
    keyfile: str | None,
    max_body_mb: int,
    rate: float,
    log_level: str,
) -> None:
    """Run the sync server: it relays the sealed batches of every vault attached to it
    and can read none of them. OpenAPI at /docs; health at /v1/health; Prometheus
    metrics at /metrics. See docs/sync-server.md."""
    try:
        from mangostore.sync.server.run import open_store, serve
    except ImportError:
        raise CommandError(
            "the sync server needs the server extra: pip install 'mangostore[server]'"
        ) from None
    if (certfile is None) != (keyfile is None):
        raise CommandError("TLS needs both --certfile and --keyfile")
    if host not in ("127.0.0.1", "localhost", "::1") and certfile is None:
        click.echo(
            "warning: serving without TLS on a network address; put a TLS proxy in front",
            err=True,
        )
    opened = open_store(os.path.abspath(store) if "://" not in store else store)
    serve(
        opened,
        host=host,
        port=port,
        settings=ServerSettings(
            max_body_bytes=max_body_mb * 1024 * 1024,
            device_rate=rate,
            device_burst=max(int(rate * 10), 1),
        ),
        log_level=log_level,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
