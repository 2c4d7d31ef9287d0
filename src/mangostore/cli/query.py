"""``mangostore query`` and ``mangostore key``: see the data of a database from the shell.

``query`` runs one SQL statement on a reader connection, which SQLite itself keeps
read-only (``PRAGMA query_only``); ``--write`` runs it on the writer instead. ``key``
prints the SQLCipher page key, only when asked by name, for tools that open the file
themselves (the ``sqlcipher`` shell, DB Browser for SQLite).
"""

from __future__ import annotations

import base64
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

import mangostore
from mangostore.cli.common import (
    CommandError,
    console,
    existing_database,
    is_unencrypted_sqlite,
    key_file_option,
    open_existing,
    plain_option,
)
from mangostore.cli.output import emit_json, json_option, warn
from mangostore.db import page_key_of
from mangostore.engine.connection import (
    driver_errors,
    is_transaction_control,
    statement_context,
)
from mangostore.errors import QueryError
from mangostore.keys.keyring import keyring_path
from mangostore.privacy.archive import encode_value

#: Statements a read-only query refuses although SQLite's query_only allows them:
#: ATTACH creates the file it names.
_FILE_STATEMENTS = re.compile(r"^\s*(?:ATTACH|DETACH)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one statement: its column names, its rows, the rows it changed."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    changed: int


def run_statement(
    db: mangostore.Database, sql: str, params: tuple[str, ...], *, write: bool
) -> Result:
    """Run ``sql`` with ``params`` read-only, or on the writer when ``write``.

    Raises:
        CommandError: a transaction statement, a file statement, or a write without
            ``write``.
        QueryError: SQLite rejected the statement.
    """
    if is_transaction_control(sql):
        raise CommandError(
            "BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE are not run by 'query': each "
            "statement runs in a transaction of its own"
        )
    if write:
        with db.store.transaction() as conn, driver_errors(statement_context(sql)):
            cursor = conn.execute(sql, params)
            rows = [tuple(row) for row in cursor.fetchall()]
            return Result(_names(cursor), rows, max(int(cursor.rowcount), 0))
    if _FILE_STATEMENTS.match(sql):
        raise CommandError("ATTACH and DETACH are refused by a read-only query: pass --write")
    try:
        with db.store.snapshot() as conn:
            cursor = conn.execute(sql, params)
            rows = [tuple(row) for row in cursor.fetchall()]
            return Result(_names(cursor), rows, 0)
    except QueryError as exc:
        if str(getattr(exc.__cause__, "sqlite_errorname", "")).startswith("SQLITE_READONLY"):
            raise CommandError(
                "this statement would change the database, and 'query' is read-only unless "
                "--write is given: pass --write to run it"
            ) from None
        raise


def _names(cursor: Any) -> list[str]:
    return [str(d[0]) for d in cursor.description or ()]


@click.command()
@existing_database
@click.argument("sql")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="VALUE",
    help="A value (as text) for the next ? placeholder of SQL; repeat for each.",
)
@click.option("--write", is_flag=True, help="Let the statement change the database.")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV with a header line.")
@plain_option
@key_file_option
def query(
    path: Path,
    sql: str,
    params: tuple[str, ...],
    write: bool,
    as_json: bool,
    as_csv: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Run one SQL statement on the database at PATH and print its rows.

    Read-only unless --write is given: the statement runs on a connection SQLite
    keeps read-only, and a write is refused. Values stored encrypted (sensitive
    fields) are shown as the ciphertext they are on disk. Nothing is migrated.
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    with open_existing(path, plain=plain, key_file=key_file) as db:
        result = run_statement(db, sql, params, write=write)
    if as_json:
        if result.columns:
            emit_json([_json_row(result.columns, row) for row in result.rows])
        else:
            emit_json({"changed": result.changed})
    elif as_csv:
        _print_csv(result)
    else:
        _print_table(result, write=write)


def _json_row(columns: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    return {name: encode_value(value) for name, value in zip(columns, row, strict=True)}


def _print_csv(result: Result) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([_csv_value(value) for value in row])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _print_table(result: Result, *, write: bool) -> None:
    out = console()
    if not result.columns:
        out.print(f"{result.changed:,} row{'s' if result.changed != 1 else ''} changed.")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for name in result.columns:
        table.add_column(Text(name), overflow="fold")
    for row in result.rows:
        table.add_row(*(_cell(value) for value in row))
    out.print(table)
    count = len(result.rows)
    tail = f"; {result.changed:,} changed" if write and result.changed else ""
    out.print(f"{count:,} row{'s' if count != 1 else ''}{tail}.")


def _cell(value: Any) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    if isinstance(value, bytes | bytearray | memoryview):
        return Text(f"<{len(value):,} bytes>", style="dim")
    return Text(str(value))


# -- key -----------------------------------------------------------------------------------


@click.command()
@existing_database
@click.option(
    "--show-raw-key",
    is_flag=True,
    help="Print the raw page key, which opens the file without the passphrase.",
)
@json_option
@key_file_option
def key(path: Path, show_raw_key: bool, as_json: bool, key_file: Path | None) -> None:
    """Say how the pages of PATH are encrypted; print the raw page key if asked.

    The page key is derived from the passphrase (Argon2id, then HKDF), so the
    sqlcipher shell and DB Browser cannot open the file with the passphrase itself:
    they need this key, in SQLCipher 4's raw-key form x'...'. It opens every page
    for as long as the database exists (a passphrase change keeps it): it is printed
    only with --show-raw-key, with a warning on stderr.
    """
    if is_unencrypted_sqlite(path) and not keyring_path(path).exists():
        raise CommandError(
            f"{path} is unencrypted, so it has no page key: any SQLite shell opens it"
        )
    with open_existing(path, plain=False, key_file=key_file) as db:
        page_key = page_key_of(db.keyring)
    if page_key is None:
        raise CommandError(
            f"the pages of {path} are not encrypted: any SQLite shell opens it (its "
            "sensitive fields are still encrypted)"
        )
    raw = f"x'{page_key.hex()}'"
    if show_raw_key:
        warn(
            "this is the raw page key of the database: it opens every page without the "
            "passphrase, and changing the passphrase does not change it; do not store it "
            "or paste it anywhere others can read"
        )
    if as_json:
        emit_json(
            {
                "path": str(path),
                "cipher": "SQLCipher 4 (default settings), raw 256-bit key",
                "raw_key": raw if show_raw_key else None,
            }
        )
    elif show_raw_key:
        click.echo(raw)
    else:
        console().print(
            f"The pages of {path.name} are encrypted by SQLCipher 4 (default settings) under "
            "a raw 256-bit key derived from the passphrase. To open the file in the "
            f"sqlcipher shell, 'mangostore key {path} --show-raw-key' prints it; see "
            "docs/cli.md."
        )
