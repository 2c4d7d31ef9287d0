"""``mangostore dump``: the database as SQL text, as the ``sqlite3`` shell's ``.dump`` writes it.

The dump is read in one read transaction through the database's own connections (the
file is never opened behind SQLite's back), so it is consistent while other
processes write. Its statements rebuild the database in any SQLite: tables with
their rows, then virtual tables (entered into the schema directly, their contents
being in their shadow tables), then indexes, triggers and views.

Sensitive fields stay the ciphertext they are on disk unless ``--decrypt-fields``
is given; then each is opened with its owner's data key, through the field cipher
the privacy export uses, and written as the JSON text an unencrypted database would
hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

import mangostore
from mangostore.cli.common import (
    console,
    existing_database,
    key_file_option,
    open_existing,
    plain_option,
)
from mangostore.cli.output import emit_json, file_output, iso_time, json_option, output_option, warn
from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import TamperedDataError
from mangostore.files import write_private
from mangostore.keys.field_cipher import FieldCipher, field_cipher_for
from mangostore.schema.introspect import SCHEMA_TABLE, schema_objects
from mangostore.schema.introspect import columns as table_columns
from mangostore.schema.sensitive import ALL_SENSITIVE_FIELDS, OWNER_COLUMN, SYSTEM_OWNER
from mangostore.sql import quote_identifier, quote_text


@dataclass(slots=True)
class DumpCounts:
    """What a dump wrote, counted while it is written."""

    tables: int = 0
    rows: int = 0
    decrypted: int = 0
    #: Encrypted values that could not be opened (an erased user's), left as ciphertext.
    left_encrypted: int = 0


def dump_statements(
    db: mangostore.Database, counts: DumpCounts, *, decrypt_fields: bool
) -> Iterator[str]:
    """Yield the statements of a logical dump of ``db``, one per item, each ending in ``;``."""
    cipher = field_cipher_for(db) if decrypt_fields else None
    with db.store.snapshot() as conn:
        with driver_errors("reading the schema"):
            objects = [
                (o.kind, o.name, o.sql) for o in schema_objects(conn, order="creation") if o.sql
            ]
        yield "PRAGMA foreign_keys=OFF;"
        yield "BEGIN TRANSACTION;"
        virtual: list[tuple[str, str]] = []
        for kind, name, sql in objects:
            if kind != "table":
                continue
            if name == "sqlite_sequence":
                yield "DELETE FROM sqlite_sequence;"
            elif name == "sqlite_stat1":
                yield f"ANALYZE {SCHEMA_TABLE};"
            elif name.startswith("sqlite_"):
                continue
            elif sql.upper().startswith("CREATE VIRTUAL TABLE"):
                # Its rows live in its shadow tables, dumped as ordinary tables.
                virtual.append((name, sql))
                continue
            else:
                yield f"{sql};"
            counts.tables += 1
            yield from _inserts(conn, name, counts, cipher)
        if virtual:
            yield "PRAGMA writable_schema=ON;"
            for name, sql in virtual:
                yield (
                    f"INSERT INTO {SCHEMA_TABLE}(type,name,tbl_name,rootpage,sql) VALUES("
                    f"'table',{quote_text(name)},{quote_text(name)},0,{quote_text(sql)});"
                )
            yield "PRAGMA writable_schema=OFF;"
        for kind, _name, sql in objects:
            if kind in ("index", "trigger", "view"):
                yield f"{sql};"
        yield "COMMIT;"


def _inserts(
    conn: Connection, table: str, counts: DumpCounts, cipher: FieldCipher | None
) -> Iterator[str]:
    with driver_errors(f"dumping {table}"):
        columns = [c.name for c in table_columns(conn, table)]  # not generated or hidden
    sealed = [c for c in ALL_SENSITIVE_FIELDS.get(table, ()) if c in columns]
    if cipher is None:
        sealed = []
    owner = OWNER_COLUMN.get(table, "user_id")
    # quote() renders every value as SQL; sealed columns come raw as well, to open them.
    selected = [f"quote({quote_identifier(c)})" for c in columns]
    if sealed:
        selected += [quote_identifier(c) for c in (*sealed, "id", owner)]
    head = (
        f"INSERT INTO {quote_identifier(table)}({','.join(quote_identifier(c) for c in columns)})"
    )
    with driver_errors(f"dumping {table}"):
        cursor = conn.execute(f"SELECT {', '.join(selected)} FROM {quote_identifier(table)}")
    for row in cursor:
        values = [str(v) for v in row[: len(columns)]]
        if sealed and cipher is not None:
            raw = row[len(columns) :]
            row_id, row_owner = raw[len(sealed)], raw[len(sealed) + 1]
            for offset, column in enumerate(sealed):
                opened = _open(cipher, table, column, row_id, row_owner, raw[offset], counts)
                if opened is not None:
                    values[columns.index(column)] = opened
        counts.rows += 1
        yield f"{head} VALUES({','.join(values)});"


def _open(
    cipher: FieldCipher,
    table: str,
    column: str,
    row_id: Any,
    owner: Any,
    value: Any,
    counts: DumpCounts,
) -> str | None:
    """Return the SQL literal of a sealed value's plaintext, or ``None`` to keep it as is."""
    if not isinstance(value, bytes):
        return None  # NULL, or plaintext written by a database without a keyring
    user = SYSTEM_OWNER if owner is None else str(owner)
    try:
        plaintext = cipher.decrypt(table, column, str(row_id), user, value)
    except TamperedDataError:
        counts.left_encrypted += 1
        return None
    counts.decrypted += 1
    return quote_text(plaintext.decode("utf-8"))


@click.command()
@existing_database
@output_option("the dump")
@click.option(
    "--decrypt-fields",
    is_flag=True,
    help="Decrypt sensitive fields with their owners' keys (the dump then holds them as text).",
)
@json_option
@plain_option
@key_file_option
def dump(
    path: Path,
    output: Path | None,
    decrypt_fields: bool,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Print the database at PATH as SQL statements (a logical dump).

    The dump is plain text: the page encryption does not carry over. Sensitive fields
    stay encrypted unless --decrypt-fields is given. Written with -o FILE, the file
    is readable by you only. Nothing is changed or migrated.
    """
    counts = DumpCounts()
    target = file_output(output)
    to_stdout = target is None
    if decrypt_fields:
        warn("the dump holds the decrypted sensitive fields in plain text: keep it private")
    with open_existing(path, plain=plain, key_file=key_file) as db:
        header = [
            f"-- mangostore dump of {path.name}, schema version {db.schema_version}, "
            f"made {iso_time(db.clock.now_ms())}",
            "-- sensitive fields: "
            + ("decrypted" if decrypt_fields else "as stored (encrypted under user keys)"),
        ]
        statements = dump_statements(db, counts, decrypt_fields=decrypt_fields)
        if to_stdout and not as_json:
            for line in (*header, *statements):
                click.echo(line)
            lines: list[str] = []
        else:
            lines = [*header, *statements]
    if target is not None:
        write_private(target, "".join(line + "\n" for line in lines).encode("utf-8"))
    if counts.left_encrypted:
        warn(
            f"{counts.left_encrypted} encrypted values could not be opened (their user was "
            "erased, or they do not authenticate) and are left as ciphertext"
        )
    if as_json:
        result: dict[str, Any] = {
            "path": str(path),
            "output": None if to_stdout else str(output),
            "tables": counts.tables,
            "rows": counts.rows,
            "decrypted_fields": counts.decrypted,
            "left_encrypted": counts.left_encrypted,
        }
        if to_stdout:
            result["statements"] = lines
        emit_json(result)
    elif not to_stdout:
        console().print(
            f"Wrote {counts.tables} tables and {counts.rows:,} rows to {output} (readable by "
            "you only; not encrypted)."
        )
