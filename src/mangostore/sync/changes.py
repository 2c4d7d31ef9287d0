"""Row states: what a device sends of each changed row, read from the tables and the
capture bookkeeping, and their encoding.

A change travels as the whole state of its row (state-based replication): its life,
whether the life ended, every synced column's current value, the timestamps of the
columns changed since the row was made, and the counters' shares by device. Merging
states is commutative, associative and idempotent, so batches may arrive twice, late
or out of order and every device still ends with the same rows. Sending the whole row
also compacts a change set for free: ten edits of one row before a push are one state.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from mangostore.engine.pragmas import Connection
from mangostore.sql import quote_identifier
from mangostore.sync.capture import synced_columns
from mangostore.sync.tables import SYNCED_BY_NAME

__all__ = [
    "Cell",
    "RowState",
    "decode_state",
    "encode_state",
    "has_unpushed",
    "pending_states",
    "read_sites",
    "read_state",
    "read_states",
]

#: The types SQLite gives a value that travel as they are (bytes do not).
_SCALARS = frozenset({str, int, float, type(None)})
#: Rows read with one statement by :func:`read_states` (below SQLite's variable limit).
_READ_MANY = 500


@dataclass(frozen=True, slots=True)
class Cell:
    """The timestamp of a column's value (or a JSON key's), and the device that wrote it."""

    hlc: int
    device: str
    #: The timestamp of the value it replaced (``None``: the row's first value).
    prev: int | None = None


@dataclass(slots=True)
class RowState:
    """One row as a device knows it."""

    table: str
    pk: str
    life: int
    life_device: str
    dead: bool
    #: Every synced column's value (empty for an ended life).
    values: dict[str, Any] = field(default_factory=dict)
    #: Cells changed since the row was made; others have the life's timestamp.
    cells: dict[str, Cell] = field(default_factory=dict)
    #: Counter column -> device -> (its share, the timestamp of that share).
    counters: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)

    @property
    def life_clock(self) -> tuple[int, str]:
        """The order of lives: by timestamp, then device."""
        return (self.life, self.life_device)


def read_sites(conn: Connection) -> dict[int, str]:
    """Site number -> device id."""
    return {int(s): str(d) for s, d in conn.execute("SELECT site, device_id FROM sync_sites")}


def read_state(
    conn: Connection, table: str, pk: str, sites: dict[int, str], columns: list[str]
) -> RowState | None:
    """The state of one row from the bookkeeping and the table, or ``None`` if unknown."""
    return read_states(conn, table, [pk], sites, columns).get(pk)


def read_states(
    conn: Connection, table: str, pks: list[str], sites: dict[int, str], columns: list[str]
) -> dict[str, RowState]:
    """The states of many rows of one table, from the bookkeeping and the table (rows
    with no bookkeeping are left out; a row removed without capture, when a parent
    was deleted elsewhere, is ended here), with one statement per step for 500 rows."""
    states: dict[str, RowState] = {}
    spec = SYNCED_BY_NAME[table]
    select = (
        f"SELECT {', '.join(quote_identifier(c) for c in columns)} FROM "
        f"{quote_identifier(table)} WHERE {quote_identifier(spec.key)} IN "
    )
    for start in range(0, len(pks), _READ_MANY):
        part = pks[start : start + _READ_MANY]
        marks = "(" + ", ".join("?" for _ in part) + ")"
        alive: dict[str, RowState] = {}
        for pk, life, site, dead in conn.execute(
            f"SELECT pk, life, life_site, dead FROM sync_rows WHERE tbl = ? AND pk IN {marks}",
            (table, *part),
        ).fetchall():
            state = RowState(table, str(pk), int(life), sites[int(site)], bool(dead))
            states[state.pk] = state
            if not state.dead:
                alive[state.pk] = state
        if not alive:
            continue
        keys = list(alive)
        marks = "(" + ", ".join("?" for _ in keys) + ")"
        found: set[str] = set()
        for row in conn.execute(select + marks, keys).fetchall():
            values = dict(zip(columns, tuple(row), strict=True))
            state = alive[str(values[spec.key])]
            state.values = values
            found.add(state.pk)
        for pk in keys:
            if pk not in found:  # removed without capture: ended here
                alive.pop(pk).dead = True
        if not alive:
            continue
        for pk, col, hlc, site, prev in conn.execute(
            "SELECT pk, col, hlc, site, prev FROM sync_cells WHERE tbl = ? "
            f"AND pk IN {marks} ORDER BY pk, col",
            (table, *keys),
        ).fetchall():
            if str(pk) in alive:
                alive[str(pk)].cells[str(col)] = Cell(
                    int(hlc), sites[int(site)], None if prev is None else int(prev)
                )
        for pk, col, site, amount, hlc in conn.execute(
            "SELECT pk, col, site, amount, hlc FROM sync_counters WHERE tbl = ? "
            f"AND pk IN {marks} ORDER BY pk, col, site",
            (table, *keys),
        ).fetchall():
            if str(pk) in alive:
                shares = alive[str(pk)].counters.setdefault(str(col), {})
                shares[sites[int(site)]] = (int(amount), int(hlc))
    return states


def pending_states(conn: Connection, limit: int) -> Iterator[tuple[RowState, int]]:
    """The states of rows changed here and not yet pushed, oldest first, with their
    local sequence numbers (at most ``limit``), read a table at a time."""
    sites = read_sites(conn)
    rows = conn.execute(
        "SELECT tbl, pk, seq FROM sync_rows WHERE seq IS NOT NULL ORDER BY seq LIMIT ?", (limit,)
    ).fetchall()
    wanted: dict[str, list[str]] = {}
    for table, pk, _seq in rows:
        if str(table) in SYNCED_BY_NAME:
            wanted.setdefault(str(table), []).append(str(pk))
    states = {
        table: read_states(conn, table, pks, sites, synced_columns(conn, SYNCED_BY_NAME[table]))
        for table, pks in wanted.items()
    }
    for table, pk, seq in rows:
        state = states.get(str(table), {}).get(str(pk))
        if state is not None:
            yield state, int(seq)


def has_unpushed(conn: Connection, erased: Collection[str] = ()) -> bool:
    """Whether the device has a change the relay does not have yet: a row changed here
    and not pushed, an erasure not pushed, or one of ``erased`` (the users the keyring
    holds as erased) not yet noted as an erasure at all.

    The last is a user erased here since the last push: the keyring knows it at once,
    ``sync_erasures`` only once the next push notes it (``Pusher.note_erasures``).
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM sync_rows WHERE seq IS NOT NULL) "
        "OR EXISTS (SELECT 1 FROM sync_erasures WHERE pushed = 0) "
        "OR EXISTS (SELECT 1 FROM json_each(?) AS e WHERE NOT EXISTS "
        "(SELECT 1 FROM sync_erasures AS s WHERE s.user_id = e.value))",
        (json.dumps(sorted(set(erased))),),
    ).fetchone()
    return bool(row[0])


def _value(value: Any) -> Any:
    # SQLite values are scalars, so a dict can only mean bytes.
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _unvalue(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["b"])
    return value


def encode_state(state: RowState) -> list[Any]:
    """A JSON-ready form of ``state``."""
    values = state.values
    if not _SCALARS.issuperset(map(type, values.values())):
        values = {k: _value(v) for k, v in values.items()}
    return [
        state.table,
        state.pk,
        state.life,
        state.life_device,
        int(state.dead),
        dict(values),
        {k: [c.hlc, c.device, c.prev] for k, c in state.cells.items()},
        {k: {d: list(share) for d, share in v.items()} for k, v in state.counters.items()},
    ]


def decode_state(raw: list[Any]) -> RowState:
    """The inverse of :func:`encode_state`.

    Raises:
        ValueError, TypeError, KeyError: ``raw`` is not an encoded state.
    """
    table, pk, life, device, dead, values, cells, counters = raw
    if not isinstance(table, str) or not isinstance(pk, str) or not isinstance(device, str):
        raise ValueError("a row state names its table, row and device as text")
    return RowState(
        table,
        pk,
        int(life),
        device,
        bool(dead),
        # JSON object keys are text already, and the decoded document is this
        # state's own: only bytes (which travel as objects) make a new dict.
        (
            {str(k): _unvalue(v) for k, v in values.items()}
            if dict in map(type, values.values())
            else values
        ),
        {
            str(k): Cell(int(c[0]), str(c[1]), None if c[2] is None else int(c[2]))
            for k, c in cells.items()
        }
        if cells != {}
        else {},
        {
            str(k): {str(d): (int(s[0]), int(s[1])) for d, s in v.items()}
            for k, v in counters.items()
        }
        if counters != {}
        else {},
    )
