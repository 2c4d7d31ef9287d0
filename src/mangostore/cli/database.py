"""Commands that manage one database file: ``init``, ``status``, ``migrate``, ``passwd``."""

from __future__ import annotations

import dataclasses
import json
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
    console,
    existing_database,
    human_bytes,
    is_unencrypted_sqlite,
    kdf_options,
    key_file_option,
    make_kdf,
    open_existing,
    plain_option,
    read_key_file,
    resolve_passphrase,
    resolve_recovery_key,
)
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
@kdf_options(KdfParams())
def init(
    path: Path,
    plain: bool,
    key_file: Path | None,
    kdf_memory_kib: int,
    kdf_iterations: int,
    kdf_parallelism: int,
) -> None:
    """Create a new encrypted database at PATH and show its recovery key, once.

    The passphrase comes from --key-file, else MANGOSTORE_PASSPHRASE, else it is
    asked twice at a hidden prompt.
    """
    if path.exists() and path.stat().st_size > 0:
        raise CommandError(
            f"{path} already exists; inspect it with 'mangostore status {path}' "
            "or choose another path"
        )
    out = console()
    if plain:
        if key_file is not None:
            raise click.UsageError(
                "--plain creates a database without a passphrase; drop --key-file"
            )
        with mangostore.open(path, encrypted=False) as db:
            version = db.schema_version
        out.print(f"Created unencrypted database {path} (schema version {version}).")
        out.print("Nothing in it is encrypted and it has no passphrase.", style="yellow")
        return
    kdf = make_kdf(kdf_memory_kib, kdf_iterations, kdf_parallelism, base=KdfParams())
    passphrase = resolve_passphrase(
        key_file, prompt=f"New passphrase for {path.name}", confirm=True
    )
    with mangostore.open(path, passphrase, settings=Settings(kdf=kdf)) as db:
        version = db.schema_version
        recovery_key = db.take_recovery_key()
    out.print(f"Created encrypted database {path} (schema version {version}).")
    if recovery_key is not None:
        show_recovery_key(out, recovery_key)


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
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--no-check", "no_check", is_flag=True, help="Skip reading every page for damage (faster)."
)
@plain_option
@key_file_option
def status(path: Path, as_json: bool, no_check: bool, plain: bool, key_file: Path | None) -> None:
    """Describe the database at PATH: schema, sizes, encryption, key derivation, tables.

    Every page is read to look for damage (PRAGMA quick_check) unless --no-check is
    given; damage is listed and the exit status is 1. Never shows a key. The database
    is opened as it is: nothing is migrated.
    """
    with open_existing(path, plain=plain, key_file=key_file) as db:
        info = db.status(check=not no_check)
    if as_json:
        click.echo(json.dumps(status_as_json(info), indent=2))
    else:
        render_status(console(), info)
    if info.problems:
        raise CommandError(
            f"{path} is damaged ({len(info.problems)} problem(s) found): restore it from a "
            "backup, or copy what is readable out of it"
        )


def status_as_json(info: Status) -> dict[str, Any]:
    """Return what ``status --json`` prints: the status minus the reader-pool counters."""
    data = dataclasses.asdict(info)
    # The pool of a short-lived command says nothing about the database.
    data.pop("pool", None)
    return data


def render_status(out: Console, info: Status) -> None:
    """Print ``info`` as two tables: an overview, then every table with its row count."""
    overview = Table(box=box.SIMPLE, show_header=False, title="mangostore status")
    overview.add_column(style="bold")
    overview.add_column()
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

    tables = Table(box=box.SIMPLE, title="Tables")
    tables.add_column("Table")
    tables.add_column("Rows", justify="right")
    for table in info.tables:
        tables.add_row(Text(table.name), f"{table.rows:,}")
    out.print(tables)


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


# -- migrate -------------------------------------------------------------------------------


@click.command()
@existing_database
@click.option(
    "--to",
    "target",
    type=click.IntRange(min=0),
    default=None,
    help="Schema version to move to (default: the latest). A lower one reverts migrations.",
)
@plain_option
@key_file_option
def migrate(path: Path, target: int | None, plain: bool, key_file: Path | None) -> None:
    """Apply pending migrations to PATH, or revert down to --to N.

    A copy of the database is saved beside it before anything changes, and every run
    happens in one transaction: a failure leaves the schema as it was.
    """
    with open_existing(path, plain=plain, key_file=key_file) as db:
        before = db.schema_version
        done = db.migrate(target)
        after = db.schema_version
        copied = bool(done) and before > 0 and db.settings.backup_before_migrate
    out = console()
    if not done:
        out.print(f"{path.name} is already at schema version {after}; nothing to do.")
        return
    verb = "Applied" if after > before else "Reverted"
    steps = ", ".join(str(v) for v in done)
    out.print(f"{verb} migrations {steps}: schema version {before} -> {after}.")
    if copied:
        out.print(f"A copy of the database from before was saved beside {path.name}.")


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
@kdf_options(None)
def passwd(
    path: Path,
    recovery: bool,
    new_key_file: Path | None,
    key_file: Path | None,
    kdf_memory_kib: int | None,
    kdf_iterations: int | None,
    kdf_parallelism: int | None,
) -> None:
    """Change the passphrase of the database at PATH.

    Only the wrapped master key changes: no data is re-encrypted, and the recovery
    key stays valid. The current passphrase comes from --key-file, else
    MANGOSTORE_PASSPHRASE, else a prompt; with --recovery the recovery key is used.
    """
    if recovery and key_file is not None:
        raise click.UsageError(
            "--key-file gives the current passphrase and --recovery replaces it; use one"
        )
    if is_unencrypted_sqlite(path) and not keyring_path(path).exists():
        raise CommandError(f"{path} is an unencrypted database: it has no passphrase to change")
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
        if old is None:
            ring.reset_passphrase(new, kdf)
        else:
            ring.change_passphrase(old, new, kdf)
    out = console()
    how = "with the recovery key" if recovery else ""
    out.print(" ".join(f"Passphrase of {path.name} changed {how}".split()) + ".")
    out.print("The recovery key is unchanged and still unlocks the database.")
