"""Writing merged rows, and settling what two devices could not both have: a unique
key both used, and a child whose parent was deleted elsewhere (docs/sync.md).

* **Unique keys.** The row created first, by (life timestamp, device), keeps the key.
  The other, by its table's rule (``TableSpec.unique_rule``): ``merge`` — it is
  folded into the first (rows that refer to it are pointed at the first, now and
  when they arrive later, through ``sync_redirects``) and its values are kept as a
  ``unique`` conflict; ``rename`` — its unique text gets a suffix from its own id
  and its other unique columns are cleared (a ``unique`` conflict keeps what they
  held); ``retire`` — it stops being the primary one; ``renumber`` — it moves past
  the highest number. Every device that sees the clash makes the same choice, from
  the two rows alone, and sends it as its own change (new timestamps; the folded
  row's end as a deletion): a device that changed or deleted one of the two before
  the other reached it never sees them clash, and takes the choice from the others.
* **Parents deleted elsewhere.** Foreign keys are checked at the end of the merge
  (deferred). A reference to a row merged into another follows the redirect; an
  optional reference to a row gone is cleared (not one that is part of the row's
  own key); a child that needs its parent is removed with it, kept as an ``orphan``
  conflict, and its life marked ended so that it does not come back.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

from mangostore.engine.connection import is_driver_error
from mangostore.errors import DatabaseError
from mangostore.schema import introspect
from mangostore.sql import execute_rows, quote_identifier, repeated_rows
from mangostore.sync.tables import SYNCED_BY_NAME, TableSpec
from mangostore.sync.writes import SchemaCache, any_broken

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.sync.changes import RowState


class Merger(Protocol):
    """What settling uses of the merge in progress (:class:`mangostore.sync.merge.Merger`)."""

    conn: Connection
    schema: SchemaCache
    #: Whether every row the merge wrote was a new one, adopted where that can break
    #: no reference but its own.
    only_new: bool

    def local(self, table: str, pk: str) -> RowState | None:
        """This device's state of a row."""
        ...

    def foreign_keys(self, table: str) -> list[introspect.ForeignKey]:
        """The foreign keys of ``table``, read once per merge."""
        ...

    def children(self, table: str) -> list[str]:
        """The tables with a foreign key to ``table``."""
        ...

    def redirected(self, table: str) -> bool:
        """Whether some row of ``table`` was folded into another."""
        ...

    def note_redirect(self, table: str) -> None:
        """Record that a row of ``table`` was just folded into another."""
        ...

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
        """Keep a value that lost."""
        ...


__all__ = ["fix_references", "record_redirect", "update_row", "write_row", "write_rows"]

_MAX_FIX_ROUNDS = 20


def _is_unique_violation(exc: BaseException) -> bool:
    return is_driver_error(exc) and "UNIQUE constraint failed" in str(exc)


def write_row(
    merger: Merger, spec: TableSpec, state: RowState, values: dict[str, Any], *, replace: bool
) -> None:
    """Insert (or replace) the row of ``state`` with ``values``, settling unique clashes."""
    conn = merger.conn
    values = _follow_redirects(merger, spec, values)
    for _attempt in range(3):
        try:
            _upsert(conn, spec, values, replace=replace)
            return
        except Exception as exc:
            if not _is_unique_violation(exc):
                raise
            clash = _clashing_row(conn, spec, values)
            if clash is None:
                raise
            settled = _settle_clash(merger, spec, state, values, clash)
            if settled is None:
                return
            values = settled
    raise DatabaseError(f"sync could not settle a unique key of {spec.name} row {state.pk}")


def write_rows(merger: Merger, spec: TableSpec, rows: list[dict[str, Any]]) -> None:
    """Upsert the rows of states this device has never seen, as :func:`write_row`
    would one by one, with one statement for each run of rows of one shape (in order).

    Settles nothing: a unique clash raises, and the caller, which holds a savepoint,
    rolls back and writes the rows one by one with :func:`write_row`.
    """
    conn = merger.conn
    follow = any(
        fk.parent in SYNCED_BY_NAME and merger.redirected(fk.parent)
        for fk in merger.foreign_keys(spec.name)
    )
    shape: tuple[str, ...] = ()
    params: list[tuple[Any, ...]] = []
    for values in rows:
        if follow:
            values = _follow_redirects(merger, spec, values)
        cols = tuple(values)
        if cols != shape and params:
            _upsert_many(conn, spec, shape, params)
            params = []
        shape = cols
        params.append(tuple(values.values()))
    if params:
        _upsert_many(conn, spec, shape, params)


def _upsert_many(
    conn: Any, spec: TableSpec, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Upsert ``rows`` (values of ``cols``) with multi-row statements, in order.

    Not ``executemany``: every execution of a statement that fires triggers opens a
    statement savepoint, at which a full-text table flushes its pending terms, so a
    trigger feeding one (``command_history``'s) wrote an index segment a row.
    """
    execute_rows(conn, functools.partial(_upsert_sql, spec.name, spec.key, cols, True), rows)


def update_row(merger: Merger, spec: TableSpec, state: RowState, changed: dict[str, Any]) -> None:
    """Update the columns ``changed`` of an existing row, settling unique clashes."""
    conn = merger.conn
    changed = _follow_redirects(merger, spec, changed)
    sets = ", ".join(f"{quote_identifier(c)} = ?" for c in changed)
    sql = f"UPDATE {quote_identifier(spec.name)} SET {sets} WHERE {quote_identifier(spec.key)} = ?"
    try:
        cur = conn.execute(sql, (*changed.values(), state.pk))
    except Exception as exc:
        if not _is_unique_violation(exc):
            raise
        full = dict(merger.local(spec.name, state.pk).values)  # type: ignore[union-attr]
        full.update(changed)
        write_row(merger, spec, state, full, replace=True)
        return
    if cur.rowcount == 0:  # alive in the bookkeeping, absent from the table: write it whole
        full = dict(state.values)
        full.update(changed)
        write_row(merger, spec, state, full, replace=False)


def _upsert(conn: Any, spec: TableSpec, values: dict[str, Any], *, replace: bool) -> None:
    cols = tuple(values)
    conn.execute(_upsert_sql(spec.name, spec.key, cols, replace), tuple(values.values()))


@functools.lru_cache(maxsize=256)
def _upsert_sql(
    table: str, key_column: str, cols: tuple[str, ...], replace: bool, rows: int = 1
) -> str:
    """The statement writing ``cols`` of ``rows`` rows of ``table`` (made once per shape
    and size: applying a batch writes thousands of rows of a few shapes)."""
    names = ", ".join(quote_identifier(c) for c in cols)
    marks = repeated_rows("(" + ", ".join("?" for _ in cols) + ")", rows)
    key = quote_identifier(key_column)
    rest = [c for c in cols if c != key_column]
    if replace and rest:
        sets = ", ".join(f"{quote_identifier(c)} = excluded.{quote_identifier(c)}" for c in rest)
        tail = f" ON CONFLICT ({key}) DO UPDATE SET {sets}"
    else:
        tail = f" ON CONFLICT ({key}) DO NOTHING" if replace else ""
    return f"INSERT INTO {quote_identifier(table)} ({names}) VALUES {marks}{tail}"


def _clashing_row(
    conn: Any, spec: TableSpec, values: dict[str, Any]
) -> tuple[str, tuple[str, ...]] | None:
    """The key of the local row holding one of ``values``' unique keys, and its columns."""
    for index in introspect.indexes(conn, spec.name):
        if not index.unique or index.origin == "pk" or (index.partial and not spec.partial_unique):
            continue
        cols = index.columns
        if any(c is None or c not in values for c in cols):
            continue
        names = tuple(str(c) for c in cols)
        where = " AND ".join(f"{quote_identifier(c)} = ?" for c in names)
        if index.partial:
            where += f" AND {spec.partial_unique}"
        row = conn.execute(
            f"SELECT {quote_identifier(spec.key)} FROM {quote_identifier(spec.name)} "
            f"WHERE {where} AND {quote_identifier(spec.key)} <> ?",
            (*(values[c] for c in names), values[spec.key]),
        ).fetchone()
        if row is not None:
            return str(row[0]), names
    return None


def _settle_clash(
    merger: Merger,
    spec: TableSpec,
    state: RowState,
    values: dict[str, Any],
    clash: tuple[str, tuple[str, ...]],
) -> dict[str, Any] | None:
    """Settle a clash between the incoming row and a local one; return the values to
    write for the incoming row, or ``None`` when it is not to be written."""
    conn = merger.conn
    other_pk, unique_cols = clash
    other = merger.local(spec.name, other_pk)
    incoming_first = other is None or state.life_clock < other.life_clock
    if spec.unique_rule == "merge":
        if incoming_first:
            _fold(
                merger,
                spec,
                loser=other_pk,
                winner=state.pk,
                lost_values=other.values if other else {},
            )
            return values
        _redirect(merger, spec.name, state.pk, other_pk)
        merger.conflict("unique", spec.name, state.pk, None, other_pk, values, state.life_device)
        # The incoming row may be here already (an update that moved it onto the
        # other's key, or an earlier life): folded, it goes.
        conn.execute(
            f"DELETE FROM {quote_identifier(spec.name)} WHERE {quote_identifier(spec.key)} = ?",
            (state.pk,),
        )
        _end_life(merger, spec.name, state.pk, send=True)
        return None
    # What the rules below change is written as this device's own change (new
    # timestamps, sent on the next push), not only re-derived by every device: whether
    # a device sees two rows clash depends on what it held when the second arrived
    # (one may have been renamed, or had its e-mail changed, in between), so a
    # decision made on some devices only must reach the others.
    if spec.unique_rule == "rename":
        # The conflict keeps the values the rename replaced: a cleared e-mail is a
        # write the device acknowledged, and ``lost`` is where it can be found again.
        if incoming_first:
            before = other.values if other else {}
            renamed = _renamed(spec, before, other_pk)
            _settle_local(merger, spec, other_pk, renamed)
            merger.conflict(
                "unique",
                spec.name,
                other_pk,
                None,
                renamed,
                {c: before.get(c) for c in renamed},
                other.life_device if other else None,
            )
            return values
        renamed = _renamed(spec, values, state.pk)
        _as_local_change(merger, spec.name, state.pk, list(renamed))
        merger.conflict(
            "unique",
            spec.name,
            state.pk,
            None,
            renamed,
            {c: values.get(c) for c in renamed},
            state.life_device,
        )
        return {**values, **renamed}
    if spec.unique_rule == "retire":
        # Both rows stay (a retired data key still opens what it sealed); the later
        # leaves the index, with values taken from itself, the same on every device.
        if incoming_first:
            assert other is not None
            retired = _retired(spec, other.values)
            _settle_local(merger, spec, other_pk, retired)
            return values
        retired = _retired(spec, values)
        _as_local_change(merger, spec.name, state.pk, list(retired))
        return {**values, **retired}
    if spec.unique_rule == "renumber" and spec.numbered:
        group = [c for c in unique_cols if c != spec.numbered]
        where = " AND ".join(f"{quote_identifier(c)} = ?" for c in group) or "1"
        top = conn.execute(
            f"SELECT coalesce(max({quote_identifier(spec.numbered)}), 0) + 1 FROM "
            f"{quote_identifier(spec.name)} WHERE {where}",
            tuple(values[c] for c in group),
        ).fetchone()[0]
        if incoming_first:
            _settle_local(merger, spec, other_pk, {spec.numbered: int(top)})
            return values
        _as_local_change(merger, spec.name, state.pk, [spec.numbered])
        return {**values, spec.numbered: int(top)}
    raise DatabaseError(
        f"two devices made {spec.name} rows with the same {', '.join(unique_cols)}; "
        "this table has no rule to settle it"
    )


def _retired(spec: TableSpec, values: dict[str, Any]) -> dict[str, Any]:
    return {
        col: values.get(v[1:]) if isinstance(v, str) and v.startswith("=") else v
        for col, v in spec.retired
    }


def _renamed(spec: TableSpec, values: dict[str, Any], pk: str) -> dict[str, Any]:
    suffix = "~" + pk.replace("-", "")[-6:]
    # A row renamed once keeps its one suffix when it clashes again (on another unique
    # column, or on a device that renamed it too): renaming is the same, however often.
    out: dict[str, Any] = {
        c: v if isinstance(v, str) and v.endswith(suffix) else f"{v}{suffix}"
        for c, v in ((c, values.get(c)) for c in spec.renamed)
    }
    out.update(dict.fromkeys(spec.cleared))
    return out


def _settle_local(merger: Merger, spec: TableSpec, pk: str, values: dict[str, Any]) -> None:
    """Change a local row as a settlement decided, as this device's own change."""
    _update(merger.conn, spec, pk, values)
    _as_local_change(merger, spec.name, pk, list(values))


def _as_local_change(merger: Merger, table: str, pk: str, columns: list[str]) -> None:
    """Give ``columns`` of a row timestamps of this device above those they replace,
    as the capture triggers do, and make the row a pending change."""
    conn = merger.conn
    life = conn.execute(
        "SELECT life FROM sync_rows WHERE tbl = ? AND pk = ?", (table, pk)
    ).fetchone()
    for col in columns:
        old = conn.execute(
            "SELECT hlc FROM sync_cells WHERE tbl = ? AND pk = ? AND col = ?", (table, pk, col)
        ).fetchone()
        floor = int(old[0] if old is not None else (life[0] if life is not None else 0)) + 1
        conn.execute(
            "INSERT INTO sync_cells (tbl, pk, col, hlc, site, prev) "
            "VALUES (?, ?, ?, max(mango_sync_tick(), ?), 0, ?) "
            "ON CONFLICT (tbl, pk, col) DO UPDATE SET hlc = excluded.hlc, site = 0, "
            "prev = excluded.prev",
            (table, pk, col, floor, None if old is None else int(old[0])),
        )
    conn.execute(
        "UPDATE sync_rows SET seq = (SELECT coalesce(max(seq), 0) + 1 FROM sync_rows "
        "WHERE seq IS NOT NULL) WHERE tbl = ? AND pk = ?",
        (table, pk),
    )


def _update(conn: Any, spec: TableSpec, pk: str, values: dict[str, Any]) -> None:
    sets = ", ".join(f"{quote_identifier(c)} = ?" for c in values)
    conn.execute(
        f"UPDATE {quote_identifier(spec.name)} SET {sets} WHERE {quote_identifier(spec.key)} = ?",
        (*values.values(), pk),
    )


def _fold(
    merger: Merger, spec: TableSpec, *, loser: str, winner: str, lost_values: dict[str, Any]
) -> None:
    """Fold local row ``loser`` into ``winner`` (which is about to be written)."""
    conn = merger.conn
    _redirect(merger, spec.name, loser, winner)
    merger.conflict("unique", spec.name, loser, None, winner, lost_values, None)
    conn.execute(
        f"DELETE FROM {quote_identifier(spec.name)} WHERE {quote_identifier(spec.key)} = ?",
        (loser,),
    )
    _end_life(merger, spec.name, loser, send=True)


def _end_life(merger: Merger, table: str, pk: str, *, send: bool = False) -> None:
    """Mark a row's life ended here; with ``send``, as a change of this device's.

    A fold is sent: a device that deleted the survivor before the folded row reached
    it never sees the two clash, and would keep the folded row. An orphan is not: every
    device removes it when its parent's deletion arrives.
    """
    merger.conn.execute(
        "UPDATE sync_rows SET dead = 1, seq = CASE WHEN ? THEN (SELECT coalesce(max(seq), 0) "
        "+ 1 FROM sync_rows WHERE seq IS NOT NULL) END WHERE tbl = ? AND pk = ?",
        (send, table, pk),
    )
    merger.conn.execute("DELETE FROM sync_cells WHERE tbl = ? AND pk = ?", (table, pk))


def _redirect(merger: Merger, table: str, from_pk: str, to_pk: str) -> None:
    merger.note_redirect(table)
    record_redirect(merger.conn, table, from_pk, to_pk)


def record_redirect(
    conn: Connection, table: str, from_pk: str, to_pk: str, *, keep: bool = False
) -> bool:
    """Record, in the caller's transaction, that row ``from_pk`` of ``table`` was folded
    into ``to_pk``; return whether it was recorded.

    The redirect leads to the last survivor: to ``to_pk``'s own survivor when that row
    was folded too, and the redirects that led to ``from_pk`` now lead there as well.
    Recorded one at a time this way, no redirect ever leads to a folded row, so a chain
    of folds is followed in one step. With ``keep``, a redirect already held for
    ``from_pk`` stays as it is (and nothing is recorded). A redirect that would lead a
    row back to itself is not recorded (folds go from a later row to an earlier one, so
    none should).
    """
    held = conn.execute(
        "SELECT to_pk FROM sync_redirects WHERE tbl = ? AND from_pk = ?", (table, to_pk)
    ).fetchone()
    target = to_pk if held is None else str(held[0])
    if target == from_pk:
        return False
    if keep:
        own = conn.execute(
            "SELECT 1 FROM sync_redirects WHERE tbl = ? AND from_pk = ?", (table, from_pk)
        ).fetchone()
        if own is not None:
            return False
    conn.execute(
        "INSERT INTO sync_redirects (tbl, from_pk, to_pk) VALUES (?, ?, ?) "
        "ON CONFLICT (tbl, from_pk) DO UPDATE SET to_pk = excluded.to_pk",
        (table, from_pk, target),
    )
    # Redirects that led to the folded row now lead to its survivor.
    conn.execute(
        "UPDATE sync_redirects SET to_pk = ? WHERE tbl = ? AND to_pk = ?", (target, table, from_pk)
    )
    return True


def _follow_redirects(merger: Merger, spec: TableSpec, values: dict[str, Any]) -> dict[str, Any]:
    """Point ``values``' references at the survivors of folded rows."""
    conn = merger.conn
    out = dict(values)
    for fk in merger.foreign_keys(spec.name):
        ref = out.get(fk.column)
        if ref is None or fk.parent not in SYNCED_BY_NAME or not merger.redirected(fk.parent):
            continue
        row = conn.execute(
            "SELECT to_pk FROM sync_redirects WHERE tbl = ? AND from_pk = ?", (fk.parent, ref)
        ).fetchone()
        if row is not None:
            out[fk.column] = row[0]
    return out


def fix_references(merger: Merger, states: list[RowState]) -> None:
    """Settle the foreign keys the merge of ``states`` left broken (checked deferred).

    A reference to a folded row is pointed at its survivor; a row whose parent is
    gone is removed (synced rows: their life ends, an ``orphan`` conflict keeps
    them; device-local rows such as login sessions: removed).

    Only the tables the merge can have broken are checked: those it wrote, and the
    children of those it deleted rows from (deletions, folds, orphans removed here).
    Checking every table would read the whole database at each batch.

    Raises:
        DatabaseError: references that cannot be settled; the merge is rolled back.
    """
    conn = merger.conn
    if merger.only_new:
        # Nothing but new rows, written where no other row's reference can break:
        # only theirs can be broken, so only theirs are read (the whole tables would
        # be, a batch at a time). Anything broken is settled as below.
        by_table: dict[str, list[str]] = {}
        for state in states:
            by_table.setdefault(state.table, []).append(state.pk)
        if not any(any_broken(conn, merger.schema, t, pks) for t, pks in by_table.items()):
            return
    written = {s.table for s in states}
    removing = {s.table for s in states if s.dead}
    removing |= {t for t in written if SYNCED_BY_NAME[t].unique_rule == "merge"}
    for _round in range(_MAX_FIX_ROUNDS):
        tables = set(written)
        for parent in removing:
            tables.update(merger.children(parent))
        broken = [
            row
            for table in sorted(tables)
            for row in conn.execute(
                f"PRAGMA foreign_key_check({quote_identifier(table)})"
            ).fetchall()
        ]
        if not broken:
            return
        for table, rowid, parent, fkid in broken:
            if _fix_one(merger, str(table), rowid, str(parent), int(fkid)):
                removing.add(str(table))
    raise DatabaseError("sync could not settle the references of the rows it merged")


def _survivor(conn: Any, parent: str, pk: Any) -> str | None:
    """The row that ``parent`` row ``pk`` was folded into, if it was."""
    row = conn.execute(
        "SELECT to_pk FROM sync_redirects WHERE tbl = ? AND from_pk = ?", (parent, pk)
    ).fetchone()
    if row is None and parent == "kg_entities":
        # Twin entities are folded by the graph's own merge (mangostore.sync.graph), a
        # local change on each device whose record, kg_merges, syncs: a fact that
        # arrives after its entity was folded here follows it to the survivor, as the
        # graph's merge moved it on the device that folded first, instead of going as
        # an orphan here only.
        row = conn.execute(
            "SELECT keep_id FROM kg_merges WHERE drop_id = ? AND undone_at IS NULL "
            "AND keep_id <> drop_id ORDER BY created_at, id LIMIT 1",
            (pk,),
        ).fetchone()
    return None if row is None else str(row[0])


def _fix_one(merger: Merger, table: str, rowid: Any, parent: str, fkid: int) -> bool:
    """Settle one broken reference; return whether its row was removed."""
    conn = merger.conn
    t = quote_identifier(table)
    spec = SYNCED_BY_NAME.get(table)
    column = next(fk.column for fk in merger.foreign_keys(table) if fk.id == fkid)
    ref = conn.execute(
        f"SELECT {quote_identifier(column)} FROM {t} WHERE rowid = ?", (rowid,)
    ).fetchone()
    if ref is None:
        return False
    target = _survivor(conn, parent, ref[0])
    if target is not None:
        conn.execute(
            f"UPDATE {t} SET {quote_identifier(column)} = ? WHERE rowid = ?", (target, rowid)
        )
        return False
    # A reference that names the row (part of its primary key: a validity row of an
    # observation) is not optional even where SQLite lets a TEXT PRIMARY KEY be NULL:
    # cleared, it would leave a row with no key; the row goes with its parent instead.
    optional = not any(
        c.not_null or c.primary_key for c in introspect.columns(conn, table) if c.name == column
    )
    if optional:  # an optional reference to a row gone elsewhere is cleared
        conn.execute(f"UPDATE {t} SET {quote_identifier(column)} = NULL WHERE rowid = ?", (rowid,))
        return False
    if spec is None:  # a device-local row (a login session) goes with its parent
        conn.execute(f"DELETE FROM {t} WHERE rowid = ?", (rowid,))
        return True
    key = conn.execute(
        f"SELECT {quote_identifier(spec.key)} FROM {t} WHERE rowid = ?", (rowid,)
    ).fetchone()
    orphan = merger.local(table, str(key[0]))
    merger.conflict(
        "orphan", table, str(key[0]), column, None, orphan.values if orphan else None, None
    )
    conn.execute(f"DELETE FROM {t} WHERE rowid = ?", (rowid,))
    _end_life(merger, table, str(key[0]))
    return True
