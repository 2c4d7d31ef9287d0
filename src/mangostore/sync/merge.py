"""Merging row states from other devices into this one (docs/sync.md, "Merge rules").

Every rule is a function of the two states alone, so every device reaches the same
rows whatever the order in which batches arrive:

* **Lives.** A row's life is the (timestamp, device) of the insert that made it. A
  later life replaces an earlier one entirely (a re-creation starts afresh); an
  earlier one is ignored. A delete ends the life: within one life, a tombstone wins
  over every update, older or concurrent.
* **Cells.** Within one life each column is last-writer-wins by (timestamp, device);
  a column without a cell has the life's timestamp.
* **JSON objects** merged key by key (``TableSpec.json_merge``) keep one cell per key.
* **Counters** keep each device's share; the column is their sum.
* **Manual columns** (``db.sync.set_strategy``) merge like the others, and the value
  that lost to a concurrent one is kept in ``sync_conflicts``.
* **Unique keys** two devices both used, and **children of rows deleted elsewhere**,
  are settled by :mod:`mangostore.sync.settle`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from mangostore.engine.pragmas import Connection
from mangostore.errors import UniqueConstraintError
from mangostore.ids import new_id
from mangostore.schema import introspect
from mangostore.sql import execute_rows, quote_identifier, repeated_rows
from mangostore.sync.capture import KEY_SEPARATOR
from mangostore.sync.changes import Cell, RowState, read_sites, read_state
from mangostore.sync.clock import HybridClock
from mangostore.sync.settle import update_row, write_row, write_rows
from mangostore.sync.tables import SYNCED, SYNCED_BY_NAME, TableSpec
from mangostore.sync.writes import SchemaCache

__all__ = ["MergeCounts", "Merger"]

_ORDER = {spec.name: i for i, spec in enumerate(SYNCED)}
#: Keys looked up in one statement when reading which rows have bookkeeping.
_PREFETCH = 500
#: Synced tables whose rows about a user outlive the user's erasure (the synced part of
#: ``mangostore.privacy.ownership.KEPT_ON_ERASURE``): the records of destroyed keys.
#: They merge like any row: every device that applies an erasure marks the keys
#: destroyed at its own time, and skipping the others' records would leave each
#: device with its own ``destroyed_at``.
_KEPT_ON_ERASURE = frozenset({"field_keys"})
#: Fewer new rows of one table in a row than this are adopted one at a time: the
#: savepoint around a set-based adoption costs more than it saves below it.
_RUN_MIN = 4
_INSERTING = frozenset({"INSERT"})
_UPDATING = frozenset({"UPDATE"})
_SET_META = (
    "INSERT INTO sync_rows (tbl, pk, life, life_site, dead, seq) "
    "VALUES (?, ?, ?, ?, ?, NULL) "
    "ON CONFLICT (tbl, pk) DO UPDATE SET life = excluded.life, "
    "life_site = excluded.life_site, dead = excluded.dead"
)


@functools.lru_cache(maxsize=16)
def _adopt_meta(rows: int) -> str:
    """The upsert of the lives of ``rows`` rows adopted in a run, with the relay
    position of their batch (what the caller would otherwise set after the merge, a
    statement a row)."""
    return (
        "INSERT INTO sync_rows (tbl, pk, life, life_site, dead, seq, pos) VALUES "
        + repeated_rows("(?, ?, ?, ?, 0, NULL, ?)", rows)
        + " ON CONFLICT (tbl, pk) DO UPDATE SET life = excluded.life, "
        "life_site = excluded.life_site, dead = excluded.dead, pos = CASE WHEN excluded.pos "
        "IS NULL THEN sync_rows.pos ELSE max(coalesce(sync_rows.pos, 0), excluded.pos) END"
    )


@functools.lru_cache(maxsize=16)
def _store_cells(rows: int) -> str:
    """The upsert of ``rows`` cells' clocks."""
    return (
        "INSERT INTO sync_cells (tbl, pk, col, hlc, site, prev) VALUES "
        + repeated_rows("(?, ?, ?, ?, ?, ?)", rows)
        + " ON CONFLICT (tbl, pk, col) DO UPDATE SET hlc = excluded.hlc, "
        "site = excluded.site, prev = excluded.prev"
    )


_STORE_CELL = _store_cells(1)


@dataclass(slots=True)
class MergeCounts:
    """What one merge did."""

    applied: int = 0
    ignored: int = 0
    conflicts: int = 0
    skipped_erased: int = 0

    def add(self, other: MergeCounts) -> None:
        """Add ``other``'s counts to these."""
        self.applied += other.applied
        self.ignored += other.ignored
        self.conflicts += other.conflicts
        self.skipped_erased += other.skipped_erased


@dataclass
class Merger:
    """Merges states into the tables on ``conn``, inside the caller's transaction,
    with capture off."""

    conn: Connection
    clock: HybridClock
    now_ms: int
    erased: set[str]
    manual: set[tuple[str, str]]
    counts: MergeCounts = field(default_factory=MergeCounts)
    schema: SchemaCache = field(default_factory=SchemaCache)
    #: Opens a savepoint of the caller's transaction (``Store.transaction``). Given,
    #: runs of rows this device has never seen are adopted a statement per step for
    #: the whole run; a run that fails is rolled back and adopted row by row.
    savepoint: Callable[[], AbstractContextManager[object]] | None = None
    #: The relay position of the batch merged (``None``: a snapshot's, a held one's).
    position: int | None = None
    #: The rows whose ``sync_rows.pos`` the merge set to ``position`` already.
    positioned: set[tuple[str, str]] = field(default_factory=set)
    #: Whether every row this merge wrote so far was a new one, adopted where that
    #: can break no reference but its own (see :mod:`mangostore.sync.writes`).
    only_new: bool = True
    _sites: dict[str, int] = field(default_factory=dict)
    #: The inverse of _sites (site number to device), kept beside it.
    _devices: dict[int, str] = field(default_factory=dict)
    #: New rows queued to be adopted together (see merge), and their keys.
    _run: list[RowState] = field(default_factory=list)
    _run_keys: set[str] = field(default_factory=set)
    #: The rows of the states of a merge_all known to have no bookkeeping here, read
    #: once (only _set_meta adds bookkeeping while merging, and it takes them out).
    _unseen: set[tuple[str, str]] = field(default_factory=set)
    #: The tables some row of which was folded into another (None: not read yet).
    _redirected: set[str] | None = None

    def __post_init__(self) -> None:
        self._devices = read_sites(self.conn)
        self._sites = {device: site for site, device in self._devices.items()}

    # -- bookkeeping -------------------------------------------------------------------

    def site(self, device: str) -> int:
        """The site number of ``device``, made on first sight."""
        found = self._sites.get(device)
        if found is None:
            found = int(
                self.conn.execute("SELECT coalesce(max(site), 0) + 1 FROM sync_sites").fetchone()[0]
            )
            self.conn.execute(
                "INSERT INTO sync_sites (site, device_id) VALUES (?, ?)", (found, device)
            )
            self._sites[device] = found
            self._devices[found] = device
        return found

    def columns(self, table: str) -> list[str]:
        """The synced columns of ``table``, key first."""
        return self.schema.columns(self.conn, table)

    def foreign_keys(self, table: str) -> list[introspect.ForeignKey]:
        """The foreign keys of ``table`` (read once per pull)."""
        return self.schema.foreign_keys(self.conn, table)

    def children(self, table: str) -> list[str]:
        """The tables with a foreign key to ``table`` (read once per pull)."""
        return self.schema.children(self.conn, table)

    def local(self, table: str, pk: str) -> RowState | None:
        """This device's state of a row."""
        if (table, pk) in self._unseen:
            return None  # no bookkeeping: a row this device has never seen
        return read_state(self.conn, table, pk, self._devices, self.columns(table))

    def local_known(self, table: str, pk: str) -> bool:
        """Whether the row may have bookkeeping here (``False`` only when known not to)."""
        return (table, pk) not in self._unseen

    def redirected(self, table: str) -> bool:
        """Whether some row of ``table`` was folded into another (so references to
        it may need following)."""
        if self._redirected is None:
            self._redirected = {
                str(t) for (t,) in self.conn.execute("SELECT DISTINCT tbl FROM sync_redirects")
            }
        return table in self._redirected

    def note_redirect(self, table: str) -> None:
        """Record that a row of ``table`` was just folded into another."""
        if self._redirected is not None:
            self._redirected.add(table)

    def _prefetch(self, states: list[RowState]) -> None:
        """Read which of ``states``' rows have bookkeeping here, a table at a time:
        a row that has none (most rows of a first pull) needs no further lookup."""
        wanted: dict[str, list[str]] = {}
        for state in states:
            wanted.setdefault(state.table, []).append(state.pk)
        for table, pks in wanted.items():
            for start in range(0, len(pks), _PREFETCH):
                part = pks[start : start + _PREFETCH]
                marks = ", ".join("?" for _ in part)
                seen = {
                    str(pk)
                    for (pk,) in self.conn.execute(
                        f"SELECT pk FROM sync_rows WHERE tbl = ? AND pk IN ({marks})",
                        (table, *part),
                    )
                }
                self._unseen.update((table, pk) for pk in part if pk not in seen)

    def merge_all(self, states: list[RowState]) -> None:
        """Merge ``states``: endings children first, then the rest parents first."""
        ended = sorted((s for s in states if s.dead), key=lambda s: -_ORDER[s.table])
        alive = sorted((s for s in states if not s.dead), key=lambda s: _ORDER[s.table])
        self._prefetch(states)
        for state in ended + alive:
            self.merge(state)
        self._adopt_run()

    def merge(self, remote: RowState) -> None:
        """Merge one remote state into this device.

        A live row this device has never seen is queued behind the ones just before
        it of the same table, and they are adopted together, in order, at the next
        state that is not one of them or when :meth:`merge_all` ends.
        """
        run = self._run
        new = self._new(remote)
        if run and (not new or remote.table != run[0].table or remote.pk in self._run_keys):
            self._adopt_run()
            # A second state of a row just adopted is not new any more.
            new = new and self._new(remote)
        if new:
            self._run.append(remote)
            self._run_keys.add(remote.pk)
            return
        self._merge_one(remote)

    def _new(self, state: RowState) -> bool:
        """Whether ``state`` is a live row this device has never seen, that
        :meth:`merge` would adopt whole with nothing to add up or skip."""
        if state.dead or state.counters or (state.table, state.pk) not in self._unseen:
            return False
        if SYNCED_BY_NAME[state.table].counters or self.savepoint is None:
            return False
        owner = state.values.get("user_id") if state.table != "users" else state.pk
        return owner not in self.erased or state.table in _KEPT_ON_ERASURE

    def _adopt_run(self) -> None:
        """Adopt the queued new rows of one table as :meth:`merge` would one by one,
        with one statement per step for them all. Any error (a unique key another row
        holds) rolls the run back, and its rows are merged one by one, which settles
        it."""
        run = self._run
        self._run, self._run_keys = [], set()
        if len(run) < _RUN_MIN:
            for state in run:
                self._merge_one(state)
            return
        assert self.savepoint is not None
        for state in run:
            self._see_clocks(state)
        # Sites are made outside the savepoint: a run rolled back must not leave the
        # cache naming a site the table no longer has.
        metas = [(s.table, s.pk, s.life, self.site(s.life_device), self.position) for s in run]
        cells = [
            (s.table, s.pk, col, cell.hlc, self.site(cell.device), cell.prev)
            for s in run
            for col, cell in s.cells.items()
        ]
        table = run[0].table
        try:
            with self.savepoint():
                execute_rows(self.conn, _adopt_meta, metas)
                execute_rows(self.conn, _store_cells, cells)
                if self.only_new and not self._quietly_written(run):
                    self.only_new = False
                write_rows(self, SYNCED_BY_NAME[table], [s.values for s in run])
        except UniqueConstraintError:
            # A clash with a row already here: merged one by one, the unique-key rules
            # settle it. Anything else would fail one by one too; and if SQLite ended the
            # whole transaction, nothing may be written outside it.
            if not self.conn.in_transaction:
                raise
            for state in run:
                self._merge_one(state)
            return
        adopted = [(s.table, s.pk) for s in run]
        self._unseen.difference_update(adopted)
        if self.position is not None:
            self.positioned.update(adopted)
        self.counts.applied += len(run)

    def _quietly_written(self, run: list[RowState]) -> bool:
        """Whether upserting ``run``'s rows can break no reference but theirs: the
        table's insert triggers (and its update ones, if a row is there already)
        write nothing another row refers to (see :mod:`mangostore.sync.writes`)."""
        table = run[0].table
        if self.schema.quiet(self.conn, table, _INSERTING | _UPDATING):
            return True
        if not self.schema.quiet(self.conn, table, _INSERTING):
            return False
        # Rows the schema's own triggers made (a relation's validity row) are
        # updated by the upsert, which fires the update triggers.
        spec = SYNCED_BY_NAME[table]
        marks = ", ".join("?" for _ in run)
        there = self.conn.execute(
            f"SELECT 1 FROM {quote_identifier(table)} WHERE {quote_identifier(spec.key)} "
            f"IN ({marks}) LIMIT 1",
            [s.pk for s in run],
        ).fetchone()
        return there is None

    def _merge_one(self, remote: RowState) -> None:
        """Merge one remote state into this device, now."""
        self._see_clocks(remote)
        spec = SYNCED_BY_NAME[remote.table]
        owner = remote.values.get("user_id") if remote.table != "users" else remote.pk
        if owner in self.erased and remote.table not in _KEPT_ON_ERASURE:
            self.counts.skipped_erased += 1
            return
        local = self.local(remote.table, remote.pk)
        if local is None or remote.life_clock > local.life_clock:
            self._adopt(spec, remote, exists=local is not None and not local.dead)
        elif remote.life_clock < local.life_clock or local.dead:
            self.counts.ignored += 1
        elif remote.dead:
            self._end(spec, remote, local)
        else:
            self._merge_cells(spec, remote, local)

    def _see_clocks(self, state: RowState) -> None:
        self.clock.receive(state.life)
        for cell in state.cells.values():
            self.clock.receive(cell.hlc)

    def _set_meta(self, state: RowState) -> None:
        self._unseen.discard((state.table, state.pk))
        self.conn.execute(
            _SET_META,
            (state.table, state.pk, state.life, self.site(state.life_device), int(state.dead)),
        )

    def _forget_cells(self, table: str, pk: str) -> None:
        self.conn.execute("DELETE FROM sync_cells WHERE tbl = ? AND pk = ?", (table, pk))
        self.conn.execute("DELETE FROM sync_counters WHERE tbl = ? AND pk = ?", (table, pk))

    def _store_cell(self, table: str, pk: str, col: str, cell: Cell) -> None:
        self.conn.execute(
            _STORE_CELL, (table, pk, col, cell.hlc, self.site(cell.device), cell.prev)
        )

    def _store_counters(self, state: RowState) -> None:
        for col, shares in state.counters.items():
            for device, (amount, hlc) in shares.items():
                self.conn.execute(
                    "INSERT INTO sync_counters (tbl, pk, col, site, amount, hlc) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tbl, pk, col, site) DO UPDATE SET "
                    "amount = excluded.amount, hlc = excluded.hlc "
                    "WHERE excluded.hlc > sync_counters.hlc",
                    (state.table, state.pk, col, self.site(device), amount, hlc),
                )

    def _counter_value(self, table: str, pk: str, col: str) -> int:
        return int(
            self.conn.execute(
                "SELECT coalesce(sum(amount), 0) FROM sync_counters "
                "WHERE tbl = ? AND pk = ? AND col = ?",
                (table, pk, col),
            ).fetchone()[0]
        )

    def _adopt(self, spec: TableSpec, remote: RowState, *, exists: bool) -> None:
        """Take ``remote`` whole: a row this device has not seen, or a later life."""
        self.only_new = False
        if self.local_known(remote.table, remote.pk):
            self._forget_cells(remote.table, remote.pk)
        self._set_meta(remote)
        self.counts.applied += 1
        if remote.dead:
            self._delete_row(spec, remote.pk)
            return
        for col, cell in remote.cells.items():
            self._store_cell(remote.table, remote.pk, col, cell)
        self._store_counters(remote)
        values = dict(remote.values)
        for col in spec.counters:
            if col in values:
                values[col] = self._counter_value(remote.table, remote.pk, col)
        # Always an upsert: the schema's own triggers may have made the row already
        # (a relation's validity row comes with the relation).
        write_row(self, spec, remote, values, replace=True)

    def _end(self, spec: TableSpec, remote: RowState, local: RowState) -> None:
        self.only_new = False
        self._forget_cells(remote.table, remote.pk)
        self._set_meta(remote)
        self._delete_row(spec, remote.pk)
        self.counts.applied += 1

    def _delete_row(self, spec: TableSpec, pk: str) -> None:
        self.conn.execute(
            f"DELETE FROM {quote_identifier(spec.name)} WHERE {quote_identifier(spec.key)} = ?",
            (pk,),
        )

    def _merge_cells(self, spec: TableSpec, remote: RowState, local: RowState) -> None:
        """Same life, both alive: column by column."""
        self.only_new = False
        taken: dict[str, Any] = {}
        implicit_remote = Cell(remote.life, remote.life_device)
        implicit_local = Cell(local.life, local.life_device)
        for col in self.columns(spec.name)[1:]:
            if col in spec.counters or col not in remote.values:
                continue
            if col in spec.json_merge:
                changes, merged = self._merge_object(spec, col, remote, local)
                if changes:
                    taken[col] = merged
                continue
            rcell = remote.cells.get(col, implicit_remote)
            lcell = local.cells.get(col, implicit_local)
            if _wins(rcell, lcell):
                self._store_cell(spec.name, remote.pk, col, rcell)
                taken[col] = remote.values[col]
                kept, lost, lost_cell, won_cell = (
                    remote.values[col],
                    local.values.get(col),
                    lcell,
                    rcell,
                )
            else:
                kept, lost, lost_cell, won_cell = (
                    local.values.get(col),
                    remote.values[col],
                    rcell,
                    lcell,
                )
            concurrent = _concurrent(won_cell, lost_cell, remote.life)
            if (spec.name, col) in self.manual and kept != lost and concurrent:
                self.conflict("manual", spec.name, remote.pk, col, kept, lost, lost_cell.device)
        if remote.counters:
            self._store_counters(remote)
        for col in spec.counters:
            if col in remote.counters:
                taken[col] = self._counter_value(spec.name, remote.pk, col)
        changed = {c: v for c, v in taken.items() if v != local.values.get(c)}
        if changed:
            update_row(self, spec, remote, changed)
            self.counts.applied += 1
        else:
            self.counts.ignored += 1

    def _merge_object(
        self, spec: TableSpec, col: str, remote: RowState, local: RowState
    ) -> tuple[bool, Any]:
        """Merge a JSON object column key by key; return whether the value here changes,
        and the new value."""
        rtext, ltext = remote.values.get(col), local.values.get(col)
        # NULL is the empty object, as the capture triggers see it (a key removed by
        # setting the column to NULL has a cell): merged key by key like any object,
        # so the order in which devices merge does not matter.
        robj = {} if rtext is None else _as_object(rtext)
        lobj = {} if ltext is None else _as_object(ltext)
        rcol = remote.cells.get(col, Cell(remote.life, remote.life_device))
        lcol = local.cells.get(col, Cell(local.life, local.life_device))
        prefix = col + KEY_SEPARATOR
        remote_won = _wins(rcol, lcol)
        if remote_won:
            self._store_cell(spec.name, remote.pk, col, rcol)
        if robj is None or lobj is None:  # not both objects: the whole value, by its cell
            if not remote_won:
                return False, ltext
            # The keys' timestamps go with the value they date, or a later merge of
            # keys would weigh this value by the other one's timestamps.
            self.conn.execute(
                "DELETE FROM sync_cells WHERE tbl = ? AND pk = ? AND substr(col, 1, ?) = ?",
                (spec.name, remote.pk, len(prefix), prefix),
            )
            for name, cell in remote.cells.items():
                if name.startswith(prefix):
                    self._store_cell(spec.name, remote.pk, name, cell)
            return rtext != ltext, rtext
        keys = set(robj) | set(lobj)
        keys |= {k[len(prefix) :] for k in remote.cells if k.startswith(prefix)}
        keys |= {k[len(prefix) :] for k in local.cells if k.startswith(prefix)}
        merged = dict(lobj)
        for key in sorted(keys):
            rcell = remote.cells.get(prefix + key, Cell(remote.life, remote.life_device))
            lcell = local.cells.get(prefix + key, Cell(local.life, local.life_device))
            if not _wins(rcell, lcell):
                continue
            self._store_cell(spec.name, remote.pk, prefix + key, rcell)
            if key in robj:
                merged[key] = robj[key]
            else:
                merged.pop(key, None)
        text = _object_text(merged, rtext, robj, ltext, lobj, remote_won=remote_won)
        return text != ltext, text

    def conflict(
        self,
        kind: str,
        table: str,
        pk: str,
        col: str | None,
        kept: Any,
        lost: Any,
        lost_device: str | None,
    ) -> None:
        """Keep a value that lost, for ``db.sync.conflicts()``."""
        self.conn.execute(
            "INSERT INTO sync_conflicts (id, kind, tbl, pk, col, kept, lost, lost_device, "
            "detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id(), kind, table, pk, col, _text(kept), _text(lost), lost_device, self.now_ms),
        )
        self.counts.conflicts += 1


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: ``1``, ``1.0`` and ``true`` are three values, as the capture
    triggers see them (Python's ``==`` would take them for one)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _object_text(
    merged: dict[str, Any],
    rtext: Any,
    robj: dict[str, Any],
    ltext: Any,
    lobj: dict[str, Any],
    *,
    remote_won: bool,
) -> Any:
    """The text of a merged JSON object, the same on every device.

    Devices store the text, not the object, and the repository writes keys in the
    order they were set: sorting the keys of every merge would leave the writer's
    text different from everyone else's. So a merge that ends with one side's object
    keeps that side's text (both sides': the text whose column timestamp is later),
    and only an object that is neither side's gets a text of its own, from the
    object alone (keys sorted), which every device that merges the same sides makes.
    """
    if _same(merged, robj) and _same(merged, lobj):
        return rtext if remote_won else ltext
    if _same(merged, robj):
        return rtext
    if _same(merged, lobj):
        return ltext
    return json.dumps(merged, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _wins(a: Cell, b: Cell) -> bool:
    return (a.hlc, a.device) > (b.hlc, b.device)


def _concurrent(winner: Cell, loser: Cell, life: int) -> bool:
    """Whether the winning write was made without having seen the losing one (a cell
    without ``prev`` replaced the row's first value, made at ``life``)."""
    seen = winner.prev if winner.prev is not None else life
    return seen < loser.hlc


def _as_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(value: Any) -> str | None:
    """A value as conflicts keep it: JSON text (bytes as hex, never decrypted)."""
    if value is None:
        return None
    return json.dumps(value, default=_hex)


def _hex(value: Any) -> Any:
    """Bytes (ciphertext, kept sealed) as JSON: ``{"hex": ...}``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    raise TypeError(f"{type(value).__name__} is not a column value")
