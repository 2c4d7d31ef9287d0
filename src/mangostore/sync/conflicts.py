"""Conflicts: the values that lost a merge and were kept, and the columns whose
losers are kept (``manual``). Used by ``db.sync``; see docs/sync.md."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mangostore.errors import NotFoundError, ValidationError
from mangostore.schema import introspect
from mangostore.sql import quote_identifier
from mangostore.sync.tables import SYNCED_BY_NAME

if TYPE_CHECKING:
    from mangostore.engine.store import Store

__all__ = ["Conflict", "list_conflicts", "resolve", "set_strategy"]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A value that lost a merge, kept for review (``db.sync.conflicts()``)."""

    id: str
    kind: str
    table: str
    row_id: str
    column: str | None
    kept: Any
    lost: Any
    lost_device: str | None
    detected_at: int
    resolved_at: int | None
    resolution: str | None


def list_conflicts(store: Store, *, include_resolved: bool = False) -> list[Conflict]:
    """The values that lost a merge and were kept, newest first."""
    where = "" if include_resolved else "WHERE resolved_at IS NULL"
    with store.reading() as conn:
        rows = conn.execute(
            f"SELECT * FROM sync_conflicts {where} ORDER BY detected_at DESC, id DESC"
        ).fetchall()
    return [_conflict(row) for row in rows]


def resolve(store: Store, conflict_id: str, choose: Literal["kept", "lost"] = "kept") -> Conflict:
    """Settle a conflict: ``kept`` leaves the merged value, ``lost`` writes the value
    that lost back (as a new local change, which then syncs everywhere).

    Raises:
        NotFoundError: no open conflict has that id.
        ValidationError: ``choose`` is neither, or ``lost`` for a conflict that
            has no single column value to restore.
    """
    if choose not in ("kept", "lost"):
        raise ValidationError("choose must be 'kept' or 'lost'", field="choose")
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM sync_conflicts WHERE id = ? AND resolved_at IS NULL", (conflict_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no open sync conflict {conflict_id!r}; see db.sync.conflicts()")
        found = _conflict(row)
        if choose == "lost":
            spec = SYNCED_BY_NAME.get(found.table)
            if found.kind != "manual" or found.column is None or spec is None:
                raise ValidationError(
                    "only a manual conflict of one column can take the value that lost; "
                    "edit the row instead",
                    field="choose",
                )
            if found.column not in {c.name for c in introspect.columns(conn, found.table)}:
                raise ValidationError(f"{found.table} has no column {found.column!r}")
            conn.execute(
                f"UPDATE {quote_identifier(found.table)} "
                f"SET {quote_identifier(found.column)} = ? "
                f"WHERE {quote_identifier(spec.key)} = ?",
                (_stored(found.lost), found.row_id),
            )
        conn.execute(
            "UPDATE sync_conflicts SET resolved_at = ?, resolution = ? WHERE id = ?",
            (store.clock.now_ms(), choose, conflict_id),
        )
    return _resolved(found, choose, store.clock.now_ms())


def set_strategy(store: Store, table: str, column: str, strategy: Literal["lww", "manual"]) -> None:
    """Make ``table.column`` keep the values that lose (``manual``), or not (``lww``).

    Every device should be told the same: the merged value is the same either way
    (last writer wins), only the keeping of losers differs.

    Raises:
        ValidationError: an unknown table, column or strategy.
    """
    spec = SYNCED_BY_NAME.get(table)
    if spec is None:
        raise ValidationError(f"{table!r} is not a synced table", field="table")
    with store.transaction() as conn:
        names = {c.name for c in introspect.columns(conn, table)}
        if column not in names or column == spec.key or column in spec.counters:
            raise ValidationError(
                f"{table} has no column {column!r} that can be merged manually", field="column"
            )
        if strategy == "manual":
            conn.execute(
                "INSERT OR IGNORE INTO sync_strategies (tbl, col, strategy) "
                "VALUES (?, ?, 'manual')",
                (table, column),
            )
        elif strategy == "lww":
            conn.execute("DELETE FROM sync_strategies WHERE tbl = ? AND col = ?", (table, column))
        else:
            raise ValidationError("strategy must be 'lww' or 'manual'", field="strategy")


def _conflict(row: Any) -> Conflict:
    return Conflict(
        id=str(row["id"]),
        kind=str(row["kind"]),
        table=str(row["tbl"]),
        row_id=str(row["pk"]),
        column=row["col"],
        kept=_json(row["kept"]),
        lost=_json(row["lost"]),
        lost_device=row["lost_device"],
        detected_at=int(row["detected_at"]),
        resolved_at=row["resolved_at"],
        resolution=row["resolution"],
    )


def _resolved(found: Conflict, choose: str, now_ms: int) -> Conflict:
    return dataclasses.replace(found, resolution=choose, resolved_at=now_ms)


def _stored(value: Any) -> Any:
    """A conflict's value as the column stores it (bytes were kept as hex)."""
    if isinstance(value, dict) and set(value) == {"hex"}:
        return bytes.fromhex(value["hex"])
    return value


def _json(text: Any) -> Any:
    return None if text is None else json.loads(text)
