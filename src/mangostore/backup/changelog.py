"""The change log incremental backups read: which rows changed since a backup, without
reading the database.

Triggers on every logged table (made here, from the tables the database has; the tables
they write come from migration ``0021_backup_log``) record each write's *key* in
``backup_log``: its block of rowids (``rowid >> LOG_SHIFT``, 4 rowids, the unit
incremental backups send) or, for a table ``WITHOUT ROWID``, its primary key's literals. Each entry
carries the *epoch* current when it was last written, and the rows inserted into and
deleted from it during that epoch; when a backup ends the epoch those sums move to
``backup_log_counts`` (per table and epoch), so a manifest's row counts need no
``count(*)``. One upsert a written row is the whole cost of a write.

A backup *cuts* the log (:func:`cut`): in one write transaction it bumps the epoch from
``k`` to ``k + 1``, and its snapshot starts before that commit
(:meth:`mangostore.engine.store.Store.snapshot_after`). No other write can come between,
so the snapshot holds exactly the writes tagged ``k`` or less, and every later write is
tagged ``k + 1`` or more. The manifest records ``k``; the next incremental backup sends
the blocks and keys tagged after it.

What the triggers cannot see, and how it is handled:

- SQLite writes a virtual table's shadow tables and ``sqlite_sequence`` itself (a
  trigger on an FTS5 shadow table is not allowed to fire safely): those tables are
  compared with the parent's index instead (:mod:`mangostore.backup.tables`), as is a
  table with a unique index on an expression (see the next point).
- A row that ``INSERT OR REPLACE`` (or ``UPDATE OR REPLACE``) removes to make room is
  deleted without its delete trigger (SQLite fires it only with ``recursive_triggers``
  on): a ``BEFORE`` trigger logs every row that the new values collide with on the
  rowid, the primary key or a unique index, before SQLite removes it, and marks the
  table's count uncertain, so that the backup counts that table itself.
- ``VACUUM`` may renumber the rowids of tables without an ``INTEGER PRIMARY KEY``. A
  probe row kept at a high rowid of a table of its own would move with them; :func:`cut`
  checks it, and starts a new log when it moved.
- A table the triggers do not cover (made by a migration since the last backup, or
  rebuilt): :func:`cut` makes its triggers and starts a new log.

A new log has a new id: a backup whose manifest names another log id (an older log, or
the database this one was restored from) cannot be the parent of an incremental backup,
and the next one is full. Entries older than :data:`KEEP_EPOCHS` backups are pruned; a
parent older than that is not used either.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from mangostore.backup.snapshot import (
    LOG_TRIGGER_PREFIX,
    Key,
    SchemaPlan,
    TablePlan,
    read_plan,
)
from mangostore.engine.pragmas import Connection
from mangostore.ids import new_id
from mangostore.schema import introspect
from mangostore.sql import quote_identifier

__all__ = [
    "KEEP_EPOCHS",
    "LOG_SHIFT",
    "LogMark",
    "RowDelta",
    "changed_keys",
    "cut",
    "logged_tables",
    "row_deltas",
    "trigger_sql",
    "written_since",
]

#: Backups (epochs) whose entries the log keeps; older parents cannot serve an
#: incremental backup (the next one is full).
KEEP_EPOCHS: Final = 1000
#: The log's blocks: ``2**LOG_SHIFT`` rowids (recorded with the log; a log kept with
#: other blocks is started again). Blocks of 4: changes scattered over a table resend
#: at most 4 rows each, and the log holds at most one entry per 4 rows written (blocks
#: of 16 made a 200,000-command incremental of 10,000 scattered changes take 1.1 s
#: instead of 0.75 s; single rows, 0.8 s with four times the entries).
LOG_SHIFT: Final = 2
#: The probe row's rowid: far from 1, where a renumbering ``VACUUM`` would move it.
_PROBE_ROWID: Final = 1_000_003
_PROBE_TABLE: Final = "backup_log_probe"


@dataclass(frozen=True, slots=True)
class LogMark:
    """Where a backup cut the log.

    Attributes:
        log_id: the log's id (a new one after anything the log could not follow).
        epoch: every write tagged with this epoch or an earlier one is in the backup's
            snapshot, and none tagged later.
        pruned_to: entries tagged with this epoch or an earlier one may be gone: a
            parent cut before it cannot serve an incremental backup.
        shift: the log's blocks hold ``2**shift`` rowids.
    """

    log_id: str
    epoch: int
    pruned_to: int
    shift: int

    def serves(self, log_id: str | None, epoch: int | None) -> bool:
        """Whether a backup cut at ``(log_id, epoch)`` can be the parent of one cut here."""
        return log_id == self.log_id and epoch is not None and self.pruned_to <= epoch <= self.epoch


def _trigger(table: TablePlan, event: str) -> str:
    return quote_identifier(f"{LOG_TRIGGER_PREFIX}{event}_{table.name}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _log_key(table: TablePlan, key: str, counted: str = "", where: str = "") -> str:
    """An upsert of one key into ``backup_log``, tagged with the current epoch, adding
    one to its ``counted`` column (``added`` or ``removed``) when given."""
    columns, values, update = "", "", ""
    if counted:
        columns, values, update = f", {counted}", ", 1", f", {counted} = {counted} + 1"
    return (
        f"INSERT INTO backup_log (tbl, key, epoch{columns}) SELECT {_literal(table.name)}, "
        f"{key}, s.epoch{values} FROM backup_log_state AS s WHERE s.id = 1{where} "
        f"ON CONFLICT (tbl, key) DO UPDATE SET epoch = excluded.epoch{update}"
        + ("" if counted else " WHERE epoch < excluded.epoch")
        + ";"
    )


def _collision_match(conn: Connection, table: TablePlan) -> tuple[str, list[str]]:
    """The condition on ``t`` (a row of ``table``) that the new values ``NEW`` collide
    with, on the rowid or primary key or any unique index; and the columns involved."""
    parts, columns = [], []
    if table.by_rowid:
        parts.append("t.rowid = NEW.rowid")
    for index in introspect.indexes(conn, table.name):
        if index.unique:
            names = [str(c) for c in index.columns]
            columns += names
            parts.append(
                " AND ".join(f"t.{quote_identifier(c)} = NEW.{quote_identifier(c)}" for c in names)
            )
    return " OR ".join(f"({p})" for p in parts), columns


def _collision_trigger(table: TablePlan, trigger: str, when: str, match: str) -> str:
    """A BEFORE trigger that, when the new values collide with rows (what ``OR
    REPLACE`` would delete with no trigger), logs those rows and marks the table's count
    for this epoch uncertain: whether the statement replaces, ignores or updates them is
    not known here, so the backup counts that table itself. The ``WHEN`` test keeps the
    usual write, which collides with nothing, to one index lookup."""
    name, lit = quote_identifier(table.name), _literal(table.name)
    return (
        f"CREATE TRIGGER {trigger} {when} ON {name} "
        f"WHEN EXISTS (SELECT 1 FROM {name} AS t WHERE {match}) BEGIN "
        f"INSERT INTO backup_log (tbl, key, epoch) SELECT {lit}, "
        f"{table.key_sql('t.', LOG_SHIFT)}, s.epoch FROM {name} AS t, backup_log_state AS s "
        f"WHERE s.id = 1 AND ({match}) ON CONFLICT (tbl, key) DO UPDATE "
        "SET epoch = excluded.epoch WHERE epoch < excluded.epoch; "
        f"INSERT INTO backup_log_counts (tbl, epoch, uncertain) SELECT {lit}, s.epoch, 1 "
        "FROM backup_log_state AS s WHERE s.id = 1 "
        "ON CONFLICT (tbl, epoch) DO UPDATE SET uncertain = 1; END"
    )


def trigger_sql(conn: Connection, table: TablePlan) -> list[str]:
    """The CREATE TRIGGER statements that log the writes of ``table``: one upsert a row
    (the count of rows added or removed rides on the key's entry)."""
    name = quote_identifier(table.name)
    new, old = table.key_sql("NEW.", LOG_SHIFT), table.key_sql("OLD.", LOG_SHIFT)
    match, columns = _collision_match(conn, table)
    if not table.by_rowid:
        columns += table.key
    itself = "t.rowid <> OLD.rowid" if table.by_rowid else f"({table.key_sql('t.')}) <> ({old})"
    statements = [
        f"CREATE TRIGGER {_trigger(table, 'i')} AFTER INSERT ON {name} BEGIN "
        f"{_log_key(table, new, 'added')} END",
        f"CREATE TRIGGER {_trigger(table, 'u')} AFTER UPDATE ON {name} BEGIN "
        f"{_log_key(table, new)} {_log_key(table, old, where=f' AND ({old}) IS NOT ({new})')} END",
        f"CREATE TRIGGER {_trigger(table, 'd')} AFTER DELETE ON {name} BEGIN "
        f"{_log_key(table, old, 'removed')} END",
        _collision_trigger(table, _trigger(table, "bi"), "BEFORE INSERT", match),
    ]
    if columns:
        # Only an update of a unique or key column can collide with another row.
        listed = ", ".join(quote_identifier(c) for c in dict.fromkeys(columns))
        statements.append(
            _collision_trigger(
                table,
                _trigger(table, "bu"),
                f"BEFORE UPDATE OF {listed}",
                f"({match}) AND {itself}",
            )
        )
    return statements


def logged_tables(conn: Connection, plan: SchemaPlan) -> frozenset[str]:
    """The tables of ``plan`` whose writes the log records: every table SQLite does not
    write itself, except one with a unique index on an expression (whose collisions no
    trigger can find); the others are compared with the parent's index."""
    unsearchable = introspect.unique_expression_tables(conn)
    return frozenset(t.name for t in plan.tables if t.logged and t.name not in unsearchable)


def _installed(conn: Connection) -> set[str]:
    return {
        o.name
        for o in introspect.schema_objects(conn, "trigger")
        if o.name.startswith(LOG_TRIGGER_PREFIX)
    }


def _install(conn: Connection, plan: SchemaPlan) -> bool:
    """Make the triggers of every logged table that lacks them; whether any was missing."""
    have = _installed(conn)
    missing = False
    logged = logged_tables(conn, plan)
    for table in plan.tables:
        if table.name not in logged:
            continue
        if all(f"{LOG_TRIGGER_PREFIX}{e}_{table.name}" in have for e in ("i", "u", "d", "bi")):
            continue
        missing = True
        for event in ("i", "u", "d", "bi", "bu"):
            conn.execute(f"DROP TRIGGER IF EXISTS {_trigger(table, event)}")
        for statement in trigger_sql(conn, table):
            conn.execute(statement)
    return missing


def _probe_moved(conn: Connection) -> bool:
    row = conn.execute(f"SELECT max(rowid) FROM {_PROBE_TABLE}").fetchone()
    return bool(row[0] != _PROBE_ROWID)


def cut(conn: Connection) -> LogMark:
    """Cut the log for a backup whose snapshot starts as this write transaction commits
    (run inside it; see :meth:`Store.snapshot_after`).

    Makes the triggers of any table that lacks them; then, when the log cannot be
    trusted (it never existed, a table was not covered, a ``VACUUM`` moved rowids),
    starts a new one, else bumps the epoch and prunes entries older than
    :data:`KEEP_EPOCHS` backups.
    """
    plan = read_plan(conn)
    state = conn.execute(
        "SELECT log_id, epoch, pruned_to, shift FROM backup_log_state WHERE id = 1"
    ).fetchone()
    if state is not None and state[3] != LOG_SHIFT:
        for name in _installed(conn):  # made for other blocks: made again
            conn.execute(f"DROP TRIGGER {quote_identifier(name)}")
    missing = _install(conn, plan)
    if state is None or missing or _probe_moved(conn):
        conn.execute("DELETE FROM backup_log")
        conn.execute("DELETE FROM backup_log_counts")
        conn.execute("DELETE FROM backup_log_state")
        conn.execute(f"DELETE FROM {_PROBE_TABLE}")
        conn.execute(f"INSERT INTO {_PROBE_TABLE} (rowid, placed) VALUES (?, 1)", (_PROBE_ROWID,))
        log_id = new_id()
        # The snapshot holds everything up to now (epoch 1); the log records what
        # follows (epoch 2).
        conn.execute(
            "INSERT INTO backup_log_state (id, log_id, epoch, pruned_to, shift) "
            "VALUES (1, ?, 2, 1, ?)",
            (log_id, LOG_SHIFT),
        )
        return LogMark(log_id, 1, 1, LOG_SHIFT)
    log_id, epoch, pruned_to = str(state[0]), int(state[1]), int(state[2])
    conn.execute("UPDATE backup_log_state SET epoch = epoch + 1 WHERE id = 1")
    # The counts of the epoch that ends move from its entries to backup_log_counts, so
    # an entry written again later counts from zero. The snapshot starts before this
    # commits: it reads them still on the entries (see row_deltas).
    conn.execute(
        "INSERT INTO backup_log_counts (tbl, epoch, added, removed) "
        "SELECT tbl, epoch, sum(added), sum(removed) FROM backup_log WHERE epoch = ? "
        "AND (added > 0 OR removed > 0) GROUP BY tbl "
        "ON CONFLICT (tbl, epoch) DO UPDATE SET added = added + excluded.added, "
        "removed = removed + excluded.removed",
        (epoch,),
    )
    conn.execute(
        "UPDATE backup_log SET added = 0, removed = 0 WHERE epoch = ? "
        "AND (added > 0 OR removed > 0)",
        (epoch,),
    )
    horizon = epoch - KEEP_EPOCHS
    if horizon > pruned_to:
        conn.execute("DELETE FROM backup_log WHERE epoch <= ?", (horizon,))
        conn.execute("DELETE FROM backup_log_counts WHERE epoch <= ?", (horizon,))
        conn.execute("UPDATE backup_log_state SET pruned_to = ? WHERE id = 1", (horizon,))
        pruned_to = horizon
    return LogMark(log_id, epoch, pruned_to, LOG_SHIFT)


def changed_keys(conn: Connection, since: int) -> dict[str, list[Key]]:
    """The keys (blocks, or primary key literals) written after epoch ``since``, by
    table, sorted; read in the backup's snapshot."""
    found: dict[str, list[Key]] = defaultdict(list)
    cursor = conn.execute("SELECT tbl, key FROM backup_log WHERE epoch > ?", (since,))
    cursor.row_factory = None
    for table, key in cursor:
        found[str(table)].append(key)
    for keys in found.values():
        keys.sort()
    return dict(found)


def written_since(conn: Connection, log_id: str | None, epoch: int | None) -> bool:
    """Whether the database changed after the cut ``(log_id, epoch)`` of a backup; true
    when the log cannot tell (another log, or none yet)."""
    state = conn.execute("SELECT log_id FROM backup_log_state WHERE id = 1").fetchone()
    if state is None or epoch is None or str(state[0]) != log_id:
        return True
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM backup_log WHERE epoch > ?)", (epoch,)
    ).fetchone()
    return bool(row[0])


@dataclass(frozen=True, slots=True)
class RowDelta:
    """Rows a table gained and lost since a backup, as its triggers counted them.

    Attributes:
        added, removed: rows inserted and deleted.
        uncertain: a write met a row on a unique key (``OR REPLACE``, ``OR IGNORE``,
            an upsert), which may have deleted it without a trigger: count the table.
    """

    added: int = 0
    removed: int = 0
    uncertain: bool = False


def row_deltas(conn: Connection, since: int) -> dict[str, RowDelta]:
    """What each table gained and lost after epoch ``since``: the counts of the epochs
    cut since, and those still on the entries of the epoch this snapshot ends."""
    cursor = conn.execute(
        "SELECT tbl, sum(added), sum(removed), max(uncertain) FROM ("
        " SELECT tbl, added, removed, uncertain FROM backup_log_counts WHERE epoch > ?1"
        " UNION ALL SELECT tbl, added, removed, 0 FROM backup_log WHERE epoch > ?1"
        " AND (added > 0 OR removed > 0)"
        ") GROUP BY tbl",
        (since,),
    )
    cursor.row_factory = None
    return {str(t): RowDelta(int(a), int(r), bool(u)) for t, a, r, u in cursor}
