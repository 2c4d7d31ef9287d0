"""Copying one table into a backup's streams: every row (a full backup), or what changed
since the parent (an incremental one): the blocks and keys the change log names
(:func:`copy_logged`, every table it covers) or what differs from the parent's index
(:func:`copy_table` with ``before``: the tables SQLite writes itself).

Data records of a table: ``T`` (``{"t": name}``), then, in an incremental backup, the
rows to remove, then ``R`` records (``(..),(..)`` literal rows for an ``INSERT``).
Rows to remove are ``D`` records (a JSON list of primary keys, tables ``WITHOUT
ROWID``) or ``E`` records (a JSON list of ``[first, last]`` rowid ranges, tables read in
blocks; format version 2). Every removal of a table comes before any of its inserts, so
that a unique value that moved from one row to another never meets itself.

A table with a rowid is sent block by block: a changed block is emptied and written
again whole, unchanged neighbours included. A table ``WITHOUT ROWID`` is sent row by
row.
"""

from __future__ import annotations

import bisect
import itertools
import json
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from mangostore.backup.changelog import RowDelta
from mangostore.backup.index import (
    DIGEST_BYTES,
    Hasher,
    IndexWriter,
    OldTable,
    block_digests,
    row_digests,
)
from mangostore.backup.snapshot import (
    BLOCK_SHIFT,
    RECORD_BYTES,
    Key,
    TablePlan,
    block_rows,
    read_groups,
    read_literals,
    scan_blocks,
    scan_rows,
)
from mangostore.backup.stream import StreamWriter, frame
from mangostore.engine.pragmas import Connection
from mangostore.sql import batches, quote_identifier

__all__ = ["HOLD_BYTES", "Copied", "copy_all", "copy_logged", "copy_table"]

#: Keys (or rowid ranges) per removal record.
_DELETE_KEYS: Final = 2000
#: An incremental backup keeps the text of changed blocks in memory up to this many
#: bytes while it scans; the others are read again (same snapshot) once it is done.
HOLD_BYTES: Final = 32 << 20
#: Every rowid SQLite allows: the range that empties a table.
_ALL_ROWIDS: Final = [-(1 << 63), (1 << 63) - 1]


@dataclass(frozen=True, slots=True)
class Copied:
    """What :func:`copy_table` wrote of one table.

    Attributes:
        rows: the table's rows at the snapshot.
        written: rows written (every row in a full backup; in an incremental one, the
            rows of changed blocks or the changed rows).
        deleted: rows the backup removes on restore that it does not write again.
    """

    rows: int
    written: int
    deleted: int


def copy_table(
    conn: Connection,
    table: TablePlan,
    data: StreamWriter,
    index: IndexWriter,
    hasher: Hasher,
    before: OldTable | None,
    *,
    utf8: bool,
) -> Copied:
    """Write one table's rows (all of them, or what changed since ``before``, the
    parent's entries) and its index entries: a table the change log does not cover."""
    if table.by_rowid:
        return _copy_blocks(conn, table, data, index, hasher, before, utf8)
    return _copy_rows(conn, table, data, index, hasher, before, utf8)


def copy_logged(
    conn: Connection,
    table: TablePlan,
    data: StreamWriter,
    keys: Sequence[Key],
    rows_before: int,
    delta: RowDelta,
    *,
    shift: int,
    utf8: bool,
) -> Copied:
    """Write what an incremental backup holds of a table the change log covers: every
    block of ``2**shift`` rowids (or key) in ``keys``, sorted, removed on restore and
    written again as the snapshot has it. The table had ``rows_before`` rows at the
    parent's snapshot; ``delta`` is what the log counted since (when it is uncertain,
    the table is counted)."""
    count = rows_before + delta.added - delta.removed
    if delta.uncertain:
        row = conn.execute(f"SELECT count(*) FROM {quote_identifier(table.name)}").fetchone()
        count = int(row[0])
    if not keys:
        return Copied(count, 0, delta.removed)
    _table_record(data, table)
    rows = _RowsBuffer(data)
    written = 0
    if table.by_rowid:
        ranges = list(_ranges((int(k) for k in keys), shift))
        _removals(data, b"E", list(ranges))
        sql = table.range_sql(utf8=utf8)
        for first, last in ranges:
            for parts in read_literals(conn, sql, (first, last), utf8=utf8):
                rows.add(parts)
                written += len(parts)
    else:
        _removals(data, b"D", list(keys))
        for chunk in batches(keys, _DELETE_KEYS):
            for parts in read_literals(conn, table.keyed_sql(chunk, utf8=utf8), utf8=utf8):
                rows.add(parts)
                written += len(parts)
    rows.flush()
    return Copied(count, written, delta.removed)


def copy_all(conn: Connection, table: TablePlan, data: StreamWriter, *, utf8: bool) -> Copied:
    """Write every row of ``table``, with no index entries: the full copy of a table
    the change log covers (the next incremental reads the log, not digests)."""
    _table_record(data, table)
    count = 0
    if table.by_rowid:
        # A group of rows, joined by SQLite, is one record (up to 1,000 rows).
        for joined, rows_in in read_groups(conn, table, utf8=utf8):
            data.write(frame(b"R", joined))
            count += rows_in
        return Copied(count, count, 0)
    rows = _RowsBuffer(data)
    sql = f"SELECT {table.literal_sql(utf8=utf8)} FROM {quote_identifier(table.name)}"
    for parts in read_literals(conn, sql, utf8=utf8):
        rows.add(parts)
        count += len(parts)
    rows.flush()
    return Copied(count, count, 0)


def _table_record(data: StreamWriter, table: TablePlan) -> None:
    data.write(frame(b"T", json.dumps({"t": table.name}).encode()))


def _removals(data: StreamWriter, kind: bytes, items: list[object]) -> None:
    for start in range(0, len(items), _DELETE_KEYS):
        data.write(frame(kind, json.dumps(items[start : start + _DELETE_KEYS]).encode()))


def _copy_blocks(
    conn: Connection,
    table: TablePlan,
    data: StreamWriter,
    index: IndexWriter,
    hasher: Hasher,
    before: OldTable | None,
    utf8: bool,
) -> Copied:
    index.start(table.name, BLOCK_SHIFT)
    if before is None or before.shift != BLOCK_SHIFT:
        # A full backup; or a parent that indexed this table another way: empty the
        # table and write it whole.
        _table_record(data, table)
        if before is not None:
            _removals(data, b"E", [_ALL_ROWIDS])
        rows = _RowsBuffer(data)
        count = 0
        for batch in scan_blocks(conn, table, shift=BLOCK_SHIFT, utf8=utf8):
            index.add_blocks(batch, block_digests(hasher, batch))
            for block in batch:
                rows.add(block.parts)
                count += block.rows
        rows.flush()
        had = sum(before.rows.values()) if before is not None else 0
        return Copied(count, count, max(0, had - count))
    old, old_rows = before.digests, before.rows
    changed: list[int] = []
    erase: list[int] = []
    held: dict[int, list[bytes]] = {}
    held_bytes = count = written = deleted = 0
    for batch in scan_blocks(conn, table, shift=BLOCK_SHIFT, utf8=utf8):
        digests = block_digests(hasher, batch)
        index.add_blocks(batch, digests)
        for block, digest in zip(batch, digests, strict=True):
            count += block.rows
            previous = old.pop(block.number, None)
            if previous == digest:
                continue
            changed.append(block.number)
            written += block.rows
            if previous is not None:
                erase.append(block.number)
                deleted += max(0, old_rows.get(block.number, 0) - block.rows)
            if held_bytes < HOLD_BYTES:
                held[block.number] = block.parts
                held_bytes += sum(map(len, block.parts))
    for number in old:  # blocks that are gone
        erase.append(int(number))
        deleted += old_rows.get(int(number), 0)
    if changed or erase:
        _table_record(data, table)
        _removals(data, b"E", list(_ranges(sorted(erase), BLOCK_SHIFT)))
        rows = _RowsBuffer(data)
        for number in changed:
            parts = held.pop(number, None)
            rows.add(
                parts
                if parts is not None
                else block_rows(conn, table, number, shift=BLOCK_SHIFT, utf8=utf8).parts
            )
        rows.flush()
    return Copied(count, written, deleted)


def _ranges(blocks: Iterable[int], shift: int) -> Iterable[list[int]]:
    """The rowid ranges ``[first, last]`` of sorted blocks of ``2**shift`` rowids,
    neighbours merged."""
    current: list[int] | None = None
    size = 1 << shift
    for number in blocks:
        first = number << shift
        if current is not None and current[1] + 1 == first:
            current[1] = first + size - 1
            continue
        if current is not None:
            yield current
        current = [first, first + size - 1]
    if current is not None:
        yield current


def _copy_rows(
    conn: Connection,
    table: TablePlan,
    data: StreamWriter,
    index: IndexWriter,
    hasher: Hasher,
    before: OldTable | None,
    utf8: bool,
) -> Copied:
    index.start(table.name, None)
    count = 0
    if before is None:
        _table_record(data, table)
        rows = _RowsBuffer(data)
        for batch in scan_rows(conn, table, utf8=utf8):
            keys, literals = zip(*batch, strict=True)
            index.add_rows(keys, row_digests(hasher, literals))
            rows.add(literals)
            count += len(batch)
        rows.flush()
        return Copied(count, count, 0)
    old = before.digests
    changed: set[Key] = set()
    for batch in scan_rows(conn, table, utf8=utf8):
        keys, literals = zip(*batch, strict=True)
        digests = row_digests(hasher, literals)
        index.add_rows(keys, digests)
        for n, key in enumerate(keys):
            if old.pop(key, None) != digests[DIGEST_BYTES * n : DIGEST_BYTES * (n + 1)]:
                changed.add(key)
        count += len(batch)
    deleted = list(old)
    if not changed and not deleted:
        return Copied(count, 0, 0)
    _table_record(data, table)
    _removals(data, b"D", [*deleted, *changed])
    if changed:
        rows = _RowsBuffer(data)
        for batch in scan_rows(conn, table, utf8=utf8):
            rows.add([literal for key, literal in batch if key in changed])
        rows.flush()
    return Copied(count, len(changed), len(deleted))


class _RowsBuffer:
    """Gathers literal rows (or blocks of them) into ``R`` records of about
    :data:`RECORD_BYTES`."""

    def __init__(self, out: StreamWriter) -> None:
        self._out = out
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, parts: Sequence[bytes]) -> None:
        # Each row costs its length and a separator. A record is sent with the row that
        # brings it to the size: it exceeds the size by one row at most, so the INSERT a
        # restore runs stays far below SQLite's statement limit. The running sums and
        # the search for that row run in C (accumulate, bisect), not once a row here.
        ends = list(itertools.accumulate(map(operator.add, map(len, parts), itertools.repeat(1))))
        start, before = 0, 0
        while start < len(parts):
            last = bisect.bisect_left(ends, RECORD_BYTES - self._size + before, lo=start)
            if last >= len(parts):  # the rest fits: no record fills up
                self._parts.extend(parts[start:])
                self._size += ends[-1] - before
                return
            self._parts.extend(parts[start : last + 1])
            self._size += ends[last] - before
            self.flush()
            start, before = last + 1, ends[last]

    def flush(self) -> None:
        if self._parts:
            self._out.write(frame(b"R", b",".join(self._parts)))
            self._parts, self._size = [], 0
