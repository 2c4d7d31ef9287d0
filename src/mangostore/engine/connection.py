"""Opening sqlcipher3 connections and translating driver errors into mangostore errors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import sqlcipher3

from mangostore.engine.pragmas import Connection, apply_key, quiet_cipher_log
from mangostore.errors import (
    CheckConstraintError,
    ConstraintError,
    DatabaseError,
    DatabaseLockedError,
    ForeignKeyError,
    MangoError,
    NotADatabaseError,
    NotNullError,
    QueryError,
    UniqueConstraintError,
)

Row = sqlcipher3.Row


def connect(
    path: str,
    page_key: bytes | None,
    setup: list[Callable[[Connection], None]],
) -> Connection:
    """Open one connection, apply the page key, prove it can read, then run ``setup``.

    Raises:
        NotADatabaseError: the file is not SQLite, or the key does not decrypt it.
        DatabaseError: any other failure of the driver.
    """
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for
        # writers); the driver's implicit transactions would hide the lock acquisition.
        conn = sqlcipher3.connect(
            path, isolation_level=None, check_same_thread=False, uri=path.startswith("file:")
        )
    except sqlcipher3.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from exc
    try:
        if page_key is not None:
            quiet_cipher_log(conn)
            apply_key(conn, page_key)
        # The first read decrypts page 1: this is where a wrong key or a foreign file shows.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        for step in setup:
            step(conn)
    except sqlcipher3.DatabaseError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            hint = (
                "it is encrypted or damaged, or belongs to another keyring"
                if page_key is not None
                else "it may be an encrypted database: open it with its passphrase"
            )
            raise NotADatabaseError(
                f"{path} is not a readable mangostore database: {hint}"
            ) from exc
        translate_error(exc, path)
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlcipher3.Row
    return conn


def translate_error(exc: BaseException, context: str = "") -> NoReturn:
    """Raise the mangostore error that corresponds to a driver exception.

    The driver's exception is kept as ``__cause__``. Constraint messages from SQLite
    name the table and column (``UNIQUE constraint failed: users.username``), which
    is passed on so the caller learns which field was wrong.
    """
    if isinstance(exc, MangoError):
        raise exc
    message = str(exc)
    where = f" ({context})" if context else ""
    if isinstance(exc, sqlcipher3.IntegrityError):
        cls: type[ConstraintError] = ConstraintError
        if message.startswith("UNIQUE") or message.startswith("PRIMARY KEY"):
            cls = UniqueConstraintError
        elif message.startswith("FOREIGN KEY"):
            cls = ForeignKeyError
        elif message.startswith("CHECK"):
            cls = CheckConstraintError
        elif message.startswith("NOT NULL"):
            cls = NotNullError
        raise cls(f"{message}{where}") from exc
    if isinstance(exc, sqlcipher3.OperationalError):
        if "locked" in message or "busy" in message:
            raise DatabaseLockedError(
                f"the database is locked by another writer{where}; retry later or raise "
                "Settings.busy_timeout_ms"
            ) from exc
        raise QueryError(f"{message}{where}") from exc
    if isinstance(exc, sqlcipher3.ProgrammingError | sqlcipher3.InterfaceError):
        raise QueryError(f"{message}{where}") from exc
    if isinstance(exc, sqlcipher3.Error):
        raise DatabaseError(f"{message}{where}") from exc
    raise exc


@contextlib.contextmanager
def driver_errors(context: str = "") -> Iterator[None]:
    """Translate driver exceptions raised inside the block."""
    try:
        yield
    except sqlcipher3.Error as exc:
        translate_error(exc, context)


def is_driver_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` comes from the driver."""
    return isinstance(exc, sqlcipher3.Error)


def fetch_all(conn: Connection, sql: str, params: Any) -> list[Any]:
    """Run a read and return all rows, translating driver errors."""
    with driver_errors():
        return list(conn.execute(sql, params).fetchall())
