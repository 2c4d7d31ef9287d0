"""Export: every row of one user, decrypted, as JSON Lines with a checksum manifest.

The rows are found from the live schema (:mod:`mangostore.privacy.ownership`), so a
table added later is exported without a change here; the user's audit events are read
through ``db.audit``, which opens their sealed data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import ValidationError
from mangostore.files import write_private
from mangostore.privacy.archive import encode_value
from mangostore.privacy.common import select_dicts
from mangostore.privacy.ownership import (
    EXPORTED_APART,
    Ownership,
    SchemaMap,
    key_batches,
    read_schema,
)
from mangostore.progress import Progress, Reporter
from mangostore.records import RECORD_CLASSES, Record
from mangostore.schema.sensitive import ALL_SENSITIVE_FIELDS, OWNER_COLUMN
from mangostore.sql import batches, quote_identifier

if TYPE_CHECKING:
    from mangostore.privacy.ports import ExportDatabase

__all__ = [
    "EXPORT_FORMAT",
    "MANIFEST",
    "REPORT_EVERY",
    "ExportManifest",
    "ExportedFile",
    "export_user",
    "verify_export",
]

MANIFEST: Final = "manifest.json"
EXPORT_FORMAT: Final = "mangostore-export"
_RECORD_TABLES: Final = {cls.__table__: cls for cls in RECORD_CLASSES}
#: Columns holding credentials: exported as "[redacted]", never as their value.
_CREDENTIAL_WORDS: Final = ("password", "verifier", "secret")
_REDACTED: Final = "[redacted]"
#: Rows written between two progress reports.
REPORT_EVERY: Final = 500


@dataclass(frozen=True, slots=True)
class ExportedFile:
    """One JSON Lines file of an export."""

    name: str
    table: str
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """What :meth:`PrivacyService.export_user` wrote (also saved as ``manifest.json``)."""

    user_id: str
    directory: Path
    created_at: int
    schema_version: int
    files: tuple[ExportedFile, ...]

    def rows(self, table: str) -> int:
        """How many rows of ``table`` were exported."""
        return next((f.rows for f in self.files if f.table == table), 0)

    def to_json(self) -> str:
        """The manifest as JSON text."""
        return json.dumps(
            {
                "format": EXPORT_FORMAT,
                "version": 1,
                "user_id": self.user_id,
                "created_at": self.created_at,
                "schema_version": self.schema_version,
                "files": [
                    {"name": f.name, "table": f.table, "rows": f.rows, "sha256": f.sha256}
                    for f in self.files
                ],
            },
            indent=2,
            sort_keys=True,
        )


def export_user(
    db: ExportDatabase,
    user_id: str,
    dest_dir: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> ExportManifest:
    """Write every row of ``user_id`` in ``db``, decrypted, to ``dest_dir``.

    What :meth:`mangostore.privacy.PrivacyService.export_user` does; arguments,
    result and errors as there. Whatever stops an export half-way (an error, a
    ``progress`` callback that raises) removes the files it had written, and the
    directory if it made it.

    Raises:
        NotFoundError: no such user.
        ValidationError: ``dest_dir`` exists and is not empty.
        TamperedDataError: one of the user's encrypted values does not authenticate.
    """
    db.users.get(user_id)  # NotFoundError for an unknown user
    directory = Path(dest_dir)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValidationError(f"{directory} must be an empty directory or not exist yet")
    made = not directory.exists()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        manifest = _export(db, user_id, directory, written, Reporter(progress, every=REPORT_EVERY))
    except BaseException:
        # Half an export is worse than none: it looks complete and holds plaintext.
        for path in written:
            path.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):  # not empty: someone else's file is there
                directory.rmdir()
        raise
    return manifest


def _export(
    db: ExportDatabase, user_id: str, directory: Path, written: list[Path], report: Reporter
) -> ExportManifest:
    """Write the export's files into ``directory``, naming each in ``written`` first."""
    created_at = db.clock.now_ms()
    report.begin("exporting rows")
    with db.store.snapshot() as conn:
        schema = read_schema(conn)
        owned = Ownership.find(conn, schema, user_id, follow_others=False, skip=EXPORTED_APART)
        report.advance(0, total=owned.count())
        files: list[ExportedFile] = []
        for table in schema.owned_tables(EXPORTED_APART):
            rows = _export_rows(db, conn, schema, table, owned.rows.get(table, set()))
            files.append(_write_jsonl(directory, table, rows, written, report))
    report.end()
    report.begin("exporting audit events")
    events = (
        {**e.to_dict(), "mac": None if e.mac is None else e.mac.hex()}
        for e in db.audit.iter_events(user_id=user_id)
    )
    files.append(_write_jsonl(directory, "security_events", events, written, report))
    report.end()
    # The plaintext of the user's stored files, one file each (docs/files.md).
    stored = getattr(db, "files", None)
    if stored is not None:
        for name, sha256 in stored.export_user_files(user_id, directory, written):
            files.append(ExportedFile(name, "file_contents", 0, sha256))
    manifest = ExportManifest(
        user_id=user_id,
        directory=directory,
        created_at=created_at,
        schema_version=db.schema_version,
        files=tuple(sorted(files, key=lambda f: f.name)),
    )
    write_private(directory / MANIFEST, manifest.to_json().encode("utf-8"))
    return manifest


def verify_export(directory: str | os.PathLike[str]) -> list[str]:
    """Check an export against its manifest; return the names of files that differ.

    An empty list means every file is present and has the row count and SHA-256 the
    manifest records.

    Raises:
        ValidationError: the directory has no readable manifest.
    """
    folder = Path(directory)
    try:
        doc = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValidationError(f"{folder} has no readable {MANIFEST}") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValidationError(f"{folder / MANIFEST} is not a mangostore export manifest")
    bad: list[str] = []
    for entry in doc.get("files", []):
        name = str(entry.get("name"))
        try:
            data = (folder / name).read_bytes()
        except OSError:
            bad.append(name)
            continue
        rows = data.count(b"\n") if name.endswith(".jsonl") else 0  # stored files: bytes
        if hashlib.sha256(data).hexdigest() != entry.get("sha256") or rows != entry.get("rows"):
            bad.append(name)
    return bad


def _export_rows(
    db: ExportDatabase, conn: Connection, schema: SchemaMap, table: str, keys: set[Any]
) -> Iterator[dict[str, Any]]:
    if not keys:
        return
    record = _RECORD_TABLES.get(table)
    # A table with a repository is read through it, which opens its sealed columns.
    repo = getattr(db, table, None) if record is not None else None
    info = schema.tables[table]
    quoted = quote_identifier(table)
    key = info.key
    for batch in key_batches(keys):
        if repo is not None and "id" in info.columns:
            with driver_errors(f"exporting {table}"):
                ids = [
                    str(r[0])
                    for r in conn.execute(
                        f"SELECT id FROM {quoted} WHERE {key} IN "
                        f"(SELECT value FROM json_each(?)) ORDER BY {key}",
                        (batch,),
                    ).fetchall()
                ]
            for chunk in batches(ids):
                found: list[Record] = repo.list(id=list(chunk))
                by_id = {r.id: r for r in found}  # type: ignore[attr-defined]
                for row_id in chunk:
                    yield _redact(table, by_id[row_id].to_dict())
        else:
            rows = select_dicts(
                conn,
                f"SELECT * FROM {quoted} WHERE {key} IN "
                f"(SELECT value FROM json_each(?)) ORDER BY {key}",
                (batch,),
            )
            for row in rows:
                yield _redact(table, _decrypt_row(db, table, row))


def _decrypt_row(db: ExportDatabase, table: str, row: dict[str, Any]) -> dict[str, Any]:
    """Open the sealed columns of a table that has no repository."""
    columns = ALL_SENSITIVE_FIELDS.get(table, ())
    if not columns:
        return row
    cipher = db.store.field_cipher
    owner = row.get(OWNER_COLUMN.get(table, "user_id"))
    for column in columns:
        value = row.get(column)
        if value is None:
            continue
        if cipher is None or isinstance(value, str):
            continue  # stored as plaintext by a database without a keyring
        plaintext = cipher.decrypt(table, column, str(row["id"]), str(owner), value)
        text = plaintext.decode("utf-8")
        try:
            row[column] = json.loads(text)
        except ValueError:
            row[column] = text
    return row


def _redact(table: str, row: dict[str, Any]) -> dict[str, Any]:
    for name in row:
        lowered = name.lower()
        credential = any(w in lowered for w in _CREDENTIAL_WORDS) or lowered.endswith("_token")
        if credential and row[name] is not None:
            row[name] = _REDACTED
    return row


def _write_jsonl(
    directory: Path,
    table: str,
    rows: Iterator[Mapping[str, Any]],
    written: list[Path],
    report: Reporter,
) -> ExportedFile:
    name = f"{table}.jsonl"
    digest = hashlib.sha256()
    count = 0
    path = directory / name
    # O_EXCL: never write into a file someone placed there first (a link elsewhere).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written.append(path)
    with os.fdopen(fd, "wb") as out:
        for row in rows:
            line = (
                json.dumps(
                    {k: encode_value(v) for k, v in row.items()},
                    ensure_ascii=False,
                    sort_keys=True,
                    separators=(",", ":"),
                ).encode("utf-8")
                + b"\n"
            )
            out.write(line)
            digest.update(line)
            count += 1
            report.advance()
        out.flush()
        os.fsync(out.fileno())
    return ExportedFile(name, table, count, digest.hexdigest())
