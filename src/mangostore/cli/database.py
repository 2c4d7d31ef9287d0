"""Commands that manage one database file: ``init``, ``status``, ``passwd``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import mangostore
from mangostore import KdfParams, Settings, Status
from mangostore.cli.common import (
    RECOVERY_KEY_ENV,
    CommandError,
    ask_secret,
    check_new_database_path,
    check_passphrase_strength,
    console,
    existing_database,
    human_bytes,
    is_internal_table,
    is_unencrypted_sqlite,
    kdf_options,
    key_file_option,
    make_kdf,
    open_existing,
    plain_option,
    read_key_file,
    refuse_foreign_keyring,
    resolve_passphrase,
    resolve_recovery_key,
    weak_passphrase_option,
)
from mangostore.cli.output import emit_json, json_option
from mangostore.errors import ConfigurationError
from mangostore.keys.keyring import keyring_path

# -- init ----------------------------------------------------------------------------------


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--plain",
    is_flag=True,
    help="Create an unencrypted database: no passphrase, no recovery key, nothing encrypted.",
)
@key_file_option
@weak_passphrase_option
@kdf_options(KdfParams())
@json_option
def init(
    path: Path,
    plain: bool,
    key_file: Path | None,
    weak_ok: bool,
    kdf_memory_kib: int,
    kdf_iterations: int,
    kdf_parallelism: int,
    as_json: bool,
) -> None:
    """Create a new encrypted database at PATH and show its recovery key, once.

    The passphrase comes from --key-file, else MANGOSTORE_PASSPHRASE, else it is
    asked twice at a hidden prompt. It needs at least 8 characters (the rule for
    user passwords) unless --weak-passphrase is given.
    """
    if path.exists() and path.stat().st_size > 0:
        raise CommandError(
            f"{path} already exists; inspect it with 'mangostore status {path}' "
            "or choose another path"
        )
    check_new_database_path(path)
    out = console()
    if plain:
        if key_file is not None:
            raise click.UsageError(
                "--plain creates a database without a passphrase; drop --key-file"
            )
        with mangostore.create(path, encrypted=False) as (db, _no_key):
            version = db.schema_version
        if as_json:
            emit_json(_created(path, version, encrypted=False, recovery_key=None))
            return
        out.print(f"Created unencrypted database {path} (schema version {version}).")
        out.print("Nothing in it is encrypted and it has no passphrase.", style="yellow")
        return
    kdf = make_kdf(kdf_memory_kib, kdf_iterations, kdf_parallelism, base=KdfParams())
    passphrase = resolve_passphrase(
        key_file, prompt=f"New passphrase for {path.name}", confirm=True
    )
    check_passphrase_strength(passphrase, weak_ok=weak_ok)
    with mangostore.create(path, passphrase, settings=Settings(kdf=kdf)) as (db, recovery_key):
        version = db.schema_version
    if as_json:
        emit_json(_created(path, version, encrypted=True, recovery_key=recovery_key))
        return
    out.print(f"Created encrypted database {path} (schema version {version}).")
    if recovery_key is not None:
        show_recovery_key(out, recovery_key)


def _created(
    path: Path, version: int, *, encrypted: bool, recovery_key: str | None
) -> dict[str, Any]:
    """What ``init --json`` prints: the recovery key too, since it is shown only now."""
    return {
        "path": str(path),
        "schema_version": version,
        "page_encryption": encrypted,
        "field_encryption": encrypted,
        "keyring": str(keyring_path(path)) if encrypted else None,
        "recovery_key": recovery_key,
    }


def show_recovery_key(out: Console, recovery_key: str) -> None:
    """Print the recovery key on a line of its own, with the warning that goes with it."""
    out.print()
    out.print("Recovery key (shown only this once):", style="bold")
    out.print()
    # soft_wrap: a narrow terminal must not fold the key into pieces that are hard to copy.
    out.print(Text("    " + recovery_key, style="bold"), soft_wrap=True)
    out.print()
    out.print(
        Panel(
            "Store the recovery key somewhere safe, apart from the passphrase: a password "
            "manager or paper. It is the only way back in if the passphrase is lost "
            "('mangostore passwd --recovery'). mangostore keeps no copy of it and cannot "
            "show it again.",
            title="Warning",
            border_style="yellow",
        )
    )


# -- status --------------------------------------------------------------------------------


@click.command()
@existing_database
@json_option
@click.option(
    "--no-check", "no_check", is_flag=True, help="Skip reading every page for damage (faster)."
)
@click.option(
    "--all", "show_all", is_flag=True, help="List mangostore's internal tables one by one too."
)
@plain_option
@key_file_option
def status(
    path: Path, as_json: bool, no_check: bool, show_all: bool, plain: bool, key_file: Path | None
) -> None:
    """Describe the database at PATH: schema, sizes, encryption, key derivation, tables.

    The application's tables are listed with their row counts; mangostore's internal
    ones (bookkeeping, search structures, key material) are summed on one line unless
    --all is given. Every page is read to look for damage (PRAGMA quick_check) unless
    --no-check is given; damage is listed and the exit status is 1. Never shows a key.
    The database is opened as it is: nothing is migrated.
    """
    with open_existing(path, plain=plain, key_file=key_file) as db:
        info = db.status(check=not no_check)
    if as_json:
        emit_json(status_as_json(info))
    else:
        render_status(console(), info, show_all=show_all)
    if info.problems:
        raise CommandError(
            f"{path} is damaged ({len(info.problems)} problem(s) found): restore it from a "
            "backup, or copy what is readable out of it"
        )


def status_as_json(info: Status) -> dict[str, Any]:
    """Return what ``status --json`` prints: the status minus the reader-pool counters.

    Every table is listed, each marked ``internal`` or not.
    """
    data = dataclasses.asdict(info)
    # The pool of a short-lived command says nothing about the database.
    data.pop("pool", None)
    for table in data["tables"]:
        table["internal"] = is_internal_table(table["name"])
    return data


def render_status(out: Console, info: Status, *, show_all: bool = False) -> None:
    """Print ``info`` as two tables: an overview, then the tables with their row counts.

    Internal tables are summed on one line unless ``show_all``.
    """
    overview = Table(box=box.SIMPLE, show_header=False, title="mangostore status")
    overview.add_column(style="bold", no_wrap=True)
    overview.add_column(overflow="fold")  # a long path is folded, never cut
    schema = f"{info.schema_version} of {info.latest_version}"
    if info.schema_version < info.latest_version:
        schema += " (run 'mangostore migrate' to upgrade)"
    rows: list[tuple[str, str]] = [
        ("Path", info.path),
        ("Schema version", schema),
        ("File size", human_bytes(info.file_bytes)),
        ("WAL size", human_bytes(info.wal_bytes)),
        ("Page encryption", "on (pages, WAL and indexes)" if info.page_encryption else "off"),
        ("Field encryption", "on (sensitive columns)" if info.field_encryption else "off"),
    ]
    rows += _keyring_rows(info.keyring)
    if info.problems is not None:
        rows.append(("Integrity", "ok" if not info.problems else "DAMAGED: " + info.problems[0]))
    for label, value in rows:
        overview.add_row(label, Text(value))
    out.print(overview)

    tables = Table(
        box=box.SIMPLE,
        title="Tables",
        caption=None if show_all else "internal: mangostore's own tables; --all lists them",
    )
    tables.add_column("Table", no_wrap=True)
    tables.add_column("Rows", justify="right", no_wrap=True)
    if show_all:
        tables.add_column("Kind", no_wrap=True)
    internal = [t for t in info.tables if is_internal_table(t.name)]
    for table in info.tables:
        if show_all:
            kind = "internal" if table in internal else "data"
            tables.add_row(Text(table.name), _rows(table.rows), kind)
        elif table not in internal:
            tables.add_row(Text(table.name), _rows(table.rows))
    if internal and not show_all:
        total = sum(max(t.rows, 0) for t in internal)
        tables.add_row(
            Text(f"internal ({len(internal)} tables)", style="dim"),
            Text(f"{total:,}", style="dim"),
        )
    out.print(tables)


def _rows(count: int) -> str:
    return f"{count:,}" if count >= 0 else "?"


def _keyring_rows(ring: dict[str, Any] | None) -> list[tuple[str, str]]:
    if ring is None:
        return [("Keyring", "none (opened without a passphrase)")]
    rows: list[tuple[str, str]] = []
    kdf = ring.get("kdf")
    if isinstance(kdf, dict):
        rows.append(
            (
                "Key derivation",
                f"{kdf.get('alg', '?')}: {kdf.get('memory_kib', '?')} KiB memory, "
                f"{kdf.get('iterations', '?')} iterations, "
                f"parallelism {kdf.get('parallelism', '?')}",
            )
        )
    if "vault_id" in ring:
        rows.append(("Vault id", str(ring["vault_id"])))
    if "format_version" in ring:
        rows.append(("Keyring format", str(ring["format_version"])))
    if "data_keys" in ring:
        rows.append(("User data keys", str(ring["data_keys"])))
    return rows


# -- passwd --------------------------------------------------------------------------------


@click.command()
@existing_database
@click.option(
    "--recovery",
    is_flag=True,
    help=(
        f"Unlock with the recovery key (asked, or read from {RECOVERY_KEY_ENV}) "
        "instead of the current passphrase."
    ),
)
@click.option(
    "--new-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the new passphrase from FILE instead of asking for it twice.",
)
@key_file_option
@weak_passphrase_option
@kdf_options(None)
@json_option
def passwd(
    path: Path,
    recovery: bool,
    new_key_file: Path | None,
    key_file: Path | None,
    weak_ok: bool,
    kdf_memory_kib: int | None,
    kdf_iterations: int | None,
    kdf_parallelism: int | None,
    as_json: bool,
) -> None:
    """Change the passphrase of the database at PATH.

    Only the wrapped master key changes: no data is re-encrypted, and the recovery
    key stays valid. The current passphrase comes from --key-file, else
    MANGOSTORE_PASSPHRASE, else a prompt; with --recovery the recovery key is used.
    The new one needs at least 8 characters unless --weak-passphrase is given.
    """
    if recovery and key_file is not None:
        raise click.UsageError(
            "--key-file gives the current passphrase and --recovery replaces it; use one"
        )
    if is_unencrypted_sqlite(path) and not keyring_path(path).exists():
        raise CommandError(f"{path} is an unencrypted database: it has no passphrase to change")
    if keyring_path(path).exists():
        refuse_foreign_keyring(keyring_path(path))
    old: str | None = None
    if recovery:
        key = resolve_recovery_key()
        db = mangostore.open(path, recovery_key=key, create=False, migrate=False)
    else:
        old = resolve_passphrase(key_file, prompt=f"Current passphrase for {path.name}")
        db = mangostore.open(path, old, create=False, migrate=False)
    with db:
        ring = db.keyring
        if ring is None:  # opened with a secret, so there is always a keyring
            raise ConfigurationError(f"{path} has no keyring, so it has no passphrase")
        # Options left out keep the database's current cost: a passphrase change must
        # never weaken the key derivation behind the person's back.
        kdf = make_kdf(kdf_memory_kib, kdf_iterations, kdf_parallelism, base=ring.kdf)
        if new_key_file is not None:
            new = read_key_file(new_key_file)
        else:
            new = ask_secret(
                f"New passphrase for {path.name}",
                confirm=True,
                missing=(
                    "no new passphrase given: pass --new-key-file FILE, "
                    "or run in a terminal to be asked"
                ),
            )
        check_passphrase_strength(new, weak_ok=weak_ok)
        if old is None:
            ring.reset_passphrase(new, kdf)
        else:
            ring.change_passphrase(old, new, kdf)
    if as_json:
        emit_json(
            {
                "path": str(path),
                "changed": True,
                "with_recovery_key": recovery,
                "kdf": kdf.to_json(),
                "recovery_key_unchanged": True,
            }
        )
        return
    out = console()
    how = "with the recovery key" if recovery else ""
    out.print(" ".join(f"Passphrase of {path.name} changed {how}".split()) + ".")
    out.print("The recovery key is unchanged and still unlocks the database.")
