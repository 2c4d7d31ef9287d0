"""What the audit chain is made of: the table's layout, the canonical encoding, the MAC.

::

    mac[n] = HMAC-SHA256(audit key, mac[n-1] || canonical(event n))
    mac[0] = HMAC-SHA256(audit key, "mangostore/audit/genesis/v1")

The encoding is the one thing every reader and writer of the chain must agree on, so
it lives here alone, with the column order it reads rows in.
"""

from __future__ import annotations

import hmac
import struct
from typing import Any, Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.sql import placeholders

__all__ = [
    "ANCHOR_COMPONENT",
    "BATCH_ROWS",
    "COLUMNS",
    "ERASURE_COMPONENT",
    "INSERT",
    "RESERVED_PREFIX",
    "RESOLUTION_COMPONENT",
    "SELECT",
    "TABLE",
    "Col",
    "canonical_event",
    "chain_mac",
    "encode",
    "genesis_mac",
    "tip",
]

TABLE: Final = "security_events"
#: ``source_component`` values starting with this are written by mangostore only.
RESERVED_PREFIX: Final = "audit."
#: The anchor a retention run appends before removing the head of the chain.
ANCHOR_COMPONENT: Final = "audit.retention"
#: The event appended when another event is resolved.
RESOLUTION_COMPONENT: Final = "audit.resolution"
#: The event appended when a user is erased (it names no user).
ERASURE_COMPONENT: Final = "audit.erasure"

#: Rows read per batch when the log is walked or listed.
BATCH_ROWS: Final = 2_000

_LABEL: Final = b"mangostore/audit/v1"
_GENESIS: Final = b"mangostore/audit/genesis/v1"

COLUMNS: Final = (
    "id",
    "user_id",
    "event_type",
    "severity",
    "source_component",
    "event_data",
    "client_info",
    "risk_score",
    "resolved",
    "resolved_at",
    "resolved_by",
    "timestamp",
    "seq",
    "mac",
)
#: The column list every read of whole events selects, in :data:`COLUMNS` order.
SELECT: Final = ", ".join(f'"{c}"' for c in COLUMNS)
INSERT: Final = f"INSERT INTO {TABLE} ({SELECT}) VALUES ({placeholders(len(COLUMNS))})"


class Col:
    """Positions of the columns in rows selected with :data:`SELECT`."""

    ID: Final = 0
    USER: Final = 1
    TYPE: Final = 2
    SEVERITY: Final = 3
    COMPONENT: Final = 4
    DATA: Final = 5
    CLIENT: Final = 6
    RISK: Final = 7
    RESOLVED: Final = 8
    RESOLVED_AT: Final = 9
    RESOLVED_BY: Final = 10
    TIMESTAMP: Final = 11
    SEQ: Final = 12
    MAC: Final = 13


def encode(value: Any) -> bytes:
    """Encode one value with a type tag and, for variable sizes, an 8-byte length.

    Raises:
        TypeError: the value is not NULL, a bool, an integer, a float, text or bytes.
    """
    if value is None:
        return b"\x00"
    if isinstance(value, bool):
        return b"\x05" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x02" + value.to_bytes(8, "big", signed=True)
    if isinstance(value, float):
        return b"\x03" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        return b"\x01" + len(raw).to_bytes(8, "big") + raw
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return b"\x04" + len(raw).to_bytes(8, "big") + raw
    raise TypeError(f"cannot encode {type(value).__name__} for the audit chain")


def canonical_event(row: tuple[Any, ...] | list[Any]) -> bytes:
    """Return the bytes an event's MAC covers, from a row selected in column order.

    The encoding is unambiguous: every value carries a type tag (NULL, text, integer,
    real, blob) and text and blobs a length, so no two different events share one.
    ``resolved``, ``resolved_at``, ``resolved_by`` and the MAC itself are not covered.
    """
    parts = (
        row[Col.SEQ],
        row[Col.ID],
        row[Col.USER],
        row[Col.TYPE],
        row[Col.SEVERITY],
        row[Col.COMPONENT],
        row[Col.DATA],
        row[Col.CLIENT],
        row[Col.RISK],
        row[Col.TIMESTAMP],
    )
    return _LABEL + b"".join(encode(p) for p in parts)


def chain_mac(key: bytes, prev: bytes, row: tuple[Any, ...] | list[Any]) -> bytes:
    """Return the MAC of the event ``row`` chained from the MAC ``prev`` before it."""
    return hmac.digest(key, prev + canonical_event(row), "sha256")


def genesis_mac(key: bytes) -> bytes:
    """Return the value the first event of a chain is chained from."""
    return hmac.digest(key, _GENESIS, "sha256")


def tip(conn: Connection) -> tuple[int, bytes | None]:
    """Return the next sequence number and the MAC the next event chains from
    (``None``: from the genesis value, or from an event stored without a MAC)."""
    with driver_errors("reading the audit log"):
        row = conn.execute(f"SELECT seq, mac FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        return 1, None
    return int(row[0]) + 1, None if row[1] is None else bytes(row[1])
