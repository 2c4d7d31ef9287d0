"""Connection setup, one small named function per setting, each with the reason for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Connection = Any  # a sqlcipher3 connection; the driver ships no type stubs


def apply_key(conn: Connection, page_key: bytes) -> None:
    """Give SQLCipher the raw 256-bit page key, skipping its own PBKDF2.

    The key was already stretched by Argon2id and split by HKDF; a raw hex key makes
    opening a connection cheap, which the reader pool relies on.
    """
    conn.execute(f"PRAGMA key = \"x'{page_key.hex()}'\"")


def quiet_cipher_log(conn: Connection) -> None:
    """Stop SQLCipher printing decryption failures to stderr; we raise typed errors instead."""
    conn.execute("PRAGMA cipher_log_level = NONE")


def use_wal(conn: Connection) -> None:
    """WAL lets readers run while the single writer commits."""
    conn.execute("PRAGMA journal_mode = WAL")


def enforce_foreign_keys(conn: Connection) -> None:
    """SQLite ignores FOREIGN KEY clauses unless asked, per connection."""
    conn.execute("PRAGMA foreign_keys = ON")


def set_busy_timeout(conn: Connection, busy_timeout_ms: int) -> None:
    """Wait for another process's lock instead of failing at once."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


def wait_when_busy(busy_timeout_ms: int) -> Callable[[Connection], None]:
    """Return the setup step that applies ``busy_timeout_ms`` (see :func:`set_busy_timeout`)."""

    def busy_timeout(conn: Connection) -> None:
        """Wait for another process's lock instead of failing at once."""
        set_busy_timeout(conn, busy_timeout_ms)

    return busy_timeout


def sync_normal(conn: Connection) -> None:
    """In WAL mode NORMAL is durable against application crashes and far cheaper than FULL."""
    conn.execute("PRAGMA synchronous = NORMAL")


def secure_delete(conn: Connection) -> None:
    """Overwrite deleted content, so erased rows leave no plaintext in free pages."""
    conn.execute("PRAGMA secure_delete = ON")


def temp_in_memory(conn: Connection) -> None:
    """Keep temporary tables and sort spills off disk, where they would be unencrypted."""
    conn.execute("PRAGMA temp_store = MEMORY")


def read_only(conn: Connection) -> None:
    """Reader connections refuse writes, so a write can never bypass the writer lock."""
    conn.execute("PRAGMA query_only = ON")


def writer_setup(busy_timeout_ms: int) -> list[Callable[[Connection], None]]:
    """Return the setup steps of the writer connection, in order."""
    return [
        use_wal,
        enforce_foreign_keys,
        wait_when_busy(busy_timeout_ms),
        sync_normal,
        secure_delete,
        temp_in_memory,
    ]


def reader_setup(busy_timeout_ms: int) -> list[Callable[[Connection], None]]:
    """Return the setup steps of a reader connection, in order.

    Readers get the writer's settings too: the last connection to close runs the
    WAL checkpoint, and it may be a reader. ``query_only`` comes last.
    """
    return [
        enforce_foreign_keys,
        wait_when_busy(busy_timeout_ms),
        sync_normal,
        secure_delete,
        temp_in_memory,
        read_only,
    ]
