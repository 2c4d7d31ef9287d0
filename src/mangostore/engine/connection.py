"""Opening sqlcipher3 connections and translating driver errors into mangostore errors."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from typing import NoReturn

import sqlcipher3

from mangostore.engine.pragmas import Connection, apply_key, quiet_cipher_log
from mangostore.errors import (
    CheckConstraintError,
    ConstraintError,
    DatabaseError,
    DatabaseLockedError,
    DiskFullError,
    ForeignKeyError,
    MangoError,
    NotADatabaseError,
    NotNullError,
    QueryError,
    UniqueConstraintError,
)
from mangostore.schema.introspect import count_objects

Row = sqlcipher3.Row

#: Prepared statements each connection keeps. The driver's cache, once full, evicts the
#: statement it added last, so past this many distinct statements every new one is
#: prepared again on each run (a fresh database's migrations alone are about 400).
STATEMENT_CACHE_SIZE = 1024


class UndecodableText(bytes):
    """The bytes of a TEXT value that is not valid UTF-8 (written around mangostore).

    The driver would raise for the whole result instead, so that one damaged cell
    made every row of a table unreadable; the damaged value is returned as these
    bytes, and the field cipher refuses it as tampered. The repr shows no content:
    such a cell is often an encrypted value that was cast to text.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<undecodable text, {len(self)} bytes>"

    __str__ = __repr__


def decode_text(raw: bytes) -> str | UndecodableText:
    """The connections' ``text_factory``: UTF-8 text, or :class:`UndecodableText`."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UndecodableText(raw)


def connect(
    path: str,
    page_key: bytes | None,
    setup: list[Callable[[Connection], None]],
    *,
    check: Callable[[Connection], None] | None = None,
    factory: type | None = None,
    cached_statements: int = STATEMENT_CACHE_SIZE,
) -> Connection:
    """Open one connection, apply the page key, prove it can read, then run ``setup``.

    ``check`` runs before ``setup``, which changes the file (WAL): a caller that must
    first make sure the file is its own refuses it there, leaving it untouched.
    ``factory`` is a subclass of the driver's connection to make instead (the
    monitor's instrumented connection). ``cached_statements``: how many prepared
    statements it keeps (0 for a connection made for one long read: see
    :meth:`mangostore.engine.store.Store.snapshot_after`).

    Raises:
        NotADatabaseError: the file is not SQLite, is damaged, or the key does not
            decrypt it.
        DatabaseError: any other failure of the driver.
    """
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for
        # writers); the driver's implicit transactions would hide the lock acquisition.
        conn = sqlcipher3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            uri=path.startswith("file:"),
            factory=factory or sqlcipher3.Connection,
            cached_statements=cached_statements,
        )
    except sqlcipher3.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from exc
    try:
        if page_key is not None:
            quiet_cipher_log(conn)
            apply_key(conn, page_key)
        _probe(conn, path, encrypted=page_key is not None)
        if check is not None:
            check(conn)
        for step in setup:
            step(conn)
    except BaseException as exc:
        conn.close()
        if is_driver_error(exc):
            _refuse_when_disk_full(exc, path)
            translate_error(exc, path)
        raise
    conn.row_factory = sqlcipher3.Row
    conn.text_factory = decode_text
    return conn


def is_plain_sqlite(path: str) -> bool:
    """Tell whether ``path`` is an SQLite database readable without a key.

    Asked of SQLite itself (read-only, never creating the file): reading the file's
    header directly would open a descriptor of it, and closing that descriptor drops
    the POSIX locks of any connection of this process to the same file.
    """
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return False
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlcipher3.connect(uri, uri=True)
    except sqlcipher3.Error:
        return False
    try:
        count_objects(conn)
    except sqlcipher3.Error:
        return False
    finally:
        conn.close()
    return True


def _probe(conn: Connection, path: str, *, encrypted: bool) -> None:
    """Read page 1, where a wrong key, a foreign file or a cut-short one shows.

    Raises:
        NotADatabaseError: SQLite reports the file is not a database, or is corrupt.
    """
    try:
        count_objects(conn)
    except sqlcipher3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith("SQLITE_NOTADB"):
            hint = (
                "it is encrypted or damaged, or belongs to another keyring"
                if encrypted
                else "it may be an encrypted database: open it with its passphrase"
            )
        elif name.startswith("SQLITE_CORRUPT"):
            hint = "it is damaged or cut short: restore it from a backup"
        else:
            raise
        raise NotADatabaseError(f"{path} is not a readable mangostore database: {hint}") from exc


#: Free bytes below which an I/O error while opening is reported as a full disk:
#: SQLite needs room for the WAL and its index before the first read.
_NEARLY_FULL_BYTES = 1024 * 1024


def _refuse_when_disk_full(exc: BaseException, path: str) -> None:
    """Report an I/O error while opening as :class:`DiskFullError` when the disk is full.

    SQLite says "disk I/O error" when it cannot make the ``-shm`` or ``-wal`` file,
    which tells a person nothing; free space on the file's disk tells them what to do.
    """
    name = getattr(exc, "sqlite_errorname", "")
    if not isinstance(name, str) or not name.startswith(("SQLITE_IOERR", "SQLITE_FULL")):
        return
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return
    if free < _NEARLY_FULL_BYTES or name.startswith("SQLITE_FULL"):
        raise DiskFullError(
            f"cannot open {path}: the disk holding it has {free:,} bytes free; SQLite needs "
            "room for its write-ahead log: free some space and try again"
        ) from exc


def translate_error(exc: BaseException, context: str = "") -> NoReturn:
    """Raise the mangostore error that corresponds to a driver exception.

    The driver's exception is kept as ``__cause__``. Constraint messages from SQLite
    name the table and column (``UNIQUE constraint failed: users.username``), which
    is passed on, with the column as ``field``, so the caller learns what was wrong.
    """
    if isinstance(exc, MangoError):
        raise exc
    message = str(exc)
    where = f" ({context})" if context else ""
    if isinstance(exc, sqlcipher3.IntegrityError):
        raise _constraint_class(message)(f"{message}{where}", field=_field(message)) from exc
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
        raise DiskFullError(
            f"the disk is full{where}; nothing of the failed statement was written: free "
            "some space and try again"
        ) from exc
    if _is_lock_error(exc):
        raise DatabaseLockedError(
            f"the database is locked by another writer{where}; retry later or raise "
            "Settings.busy_timeout_ms"
        ) from exc
    if isinstance(exc, _QUERY_ERRORS):
        raise QueryError(f"{message}{where}") from exc
    if isinstance(exc, sqlcipher3.Error):
        raise DatabaseError(f"{message}{where}") from exc
    raise exc


# The driver raises Warning, which is not an Error, for two statements in one string.
_DRIVER_ERRORS = (sqlcipher3.Error, sqlcipher3.Warning)
_QUERY_ERRORS = (
    sqlcipher3.OperationalError,
    sqlcipher3.ProgrammingError,
    sqlcipher3.InterfaceError,
    sqlcipher3.Warning,
)


def _constraint_class(message: str) -> type[ConstraintError]:
    """Pick the ConstraintError subclass from SQLite's message, which is stable."""
    for prefix, cls in _CONSTRAINT_PREFIXES:
        if message.startswith(prefix):
            return cls
    return ConstraintError


_CONSTRAINT_PREFIXES: tuple[tuple[str, type[ConstraintError]], ...] = (
    ("UNIQUE", UniqueConstraintError),
    ("PRIMARY KEY", UniqueConstraintError),
    ("FOREIGN KEY", ForeignKeyError),
    ("CHECK", CheckConstraintError),
    ("NOT NULL", NotNullError),
)
_CONSTRAINT_COLUMN = re.compile(r"^(?:UNIQUE|NOT NULL) constraint failed: [^.,\s]+\.([^,\s]+)")


def _field(message: str) -> str | None:
    """Return the (first) column a UNIQUE or NOT NULL message names, if any."""
    match = _CONSTRAINT_COLUMN.match(message)
    return match.group(1) if match else None


def _is_lock_error(exc: BaseException) -> bool:
    """Tell SQLITE_BUSY and SQLITE_LOCKED (and their extended codes) from other errors.

    The error name is used rather than the message, which may quote a table name.
    """
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str):
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    message = str(exc)
    return isinstance(exc, sqlcipher3.OperationalError) and (
        message.startswith("database is locked") or message.startswith("database table is locked")
    )


_WRITE_TARGET = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
    r"\s+((?:\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|[\w.]+))",
    re.IGNORECASE,
)


def statement_context(sql: str) -> str:
    """Describe a statement for an error message: the table it writes, else nothing.

    SQLite's FOREIGN KEY and CHECK messages do not name the table; this does. Only
    the table name is taken from the SQL, never values (which are parameters).
    """
    match = _WRITE_TARGET.search(sql)
    return f"writing {match.group(1)}" if match else ""


_TRANSACTION_CONTROL = re.compile(
    r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*(?:BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b",
    re.IGNORECASE | re.DOTALL,
)


def is_transaction_control(sql: str) -> bool:
    """Tell whether ``sql`` begins, ends or marks a transaction (``BEGIN``, ``COMMIT``...).

    Such statements would end the writer's transaction behind its back, so that
    later writes of the block would commit on their own.
    """
    return _TRANSACTION_CONTROL.match(sql) is not None


@contextlib.contextmanager
def driver_errors(context: str = "") -> Iterator[None]:
    """Translate driver exceptions raised inside the block."""
    try:
        yield
    except _DRIVER_ERRORS as exc:
        translate_error(exc, context)


def is_driver_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` comes from the driver."""
    return isinstance(exc, _DRIVER_ERRORS)
