"""The change log incremental backups read: which rows changed since a backup, without
reading the database.

Triggers on every logged table (made here, from the tables the database has; the tables
they write come from migration ``0021_backup_log``) record each write's *key* in
``backup_log``: its block of rowids (``rowid >> LOG_SHIFT``, 4 rowids, the unit
incremental backups send) or, for a table ``WITHOUT ROWID``, its primary key's
literals. Each entry carries the *epoch* current when it was last written (an entry
already tagged with the current epoch is not written again). ``backup_log_counts`` adds
up the rows inserted and deleted per table and epoch, so a manifest's row counts need
no ``count(*)``.

A backup *cuts* the log (:func:`cut`): in one short write transaction it bumps the epoch
from ``k`` to ``k + 1``, and its snapshot starts before that commit
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
  on): ``BEFORE`` triggers log every row that the new values collide with on the rowid,
  the primary key or a unique index (under the index's collation), before SQLite
  removes it, and mark the table's count uncertain, so that the backup counts that
  table itself.
- ``VACUUM`` may renumber the rowids of tables without an ``INTEGER PRIMARY KEY``. A
  probe row kept at a high rowid of a table of its own would move with them; :func:`cut`
  checks it, and starts a new log when it moved.
- A schema or triggers changed since the triggers were made (a table made, renamed or
  rebuilt, a unique index added, a trigger dropped): the log keeps a digest of both, and
  :func:`cut` makes every trigger again and starts a new log when it differs.

A new log has a new id: a backup whose manifest names another log id (an older log, or
the database this one was restored from) cannot be the parent of an incremental backup,
and the next one is full. Entries older than :data:`KEEP_EPOCHS` backups are pruned; a
parent older than that is not used either.
"""

from __future__ import annotations

import hashlib
import json
import re
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
from mangostore.errors import BackupCorruptError
from mangostore.ids import new_id
from mangostore.schema import introspect
from mangostore.sql import quote_identifier, quote_text

__all__ = [
    "KEEP_EPOCHS",
    "LOG_SHIFT",
    "LogMark",
    "RowDelta",
    "changed_keys",
    "collision_match",
    "current_log_id",
    "cut",
    "logged_tables",
    "restart",
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
#: One SQL literal as ``quote()`` renders it: NULL, a number, a text, a blob.
_LITERAL: Final = r"(?:NULL|-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|'(?:[^']|'')*'|X'[0-9A-F]*')"
#: A primary key as the triggers log it: its columns' literals joined by ``,``. Keys go
#: into a statement as the literals they are (TablePlan.keyed_sql), so nothing else may.
_KEY_LITERALS: Final = re.compile(rf"{_LITERAL}(?:,{_LITERAL})*", re.DOTALL)
_ONE_LITERAL: Final = re.compile(_LITERAL, re.DOTALL)
#: The blocks rowids fall in (a rowid is a signed 64-bit integer).
_MIN_BLOCK: Final = -(1 << 63) >> LOG_SHIFT
_MAX_BLOCK: Final = ((1 << 63) - 1) >> LOG_SHIFT


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


def _log_key(table: TablePlan, key: str, where: str = "") -> str:
    """An upsert of one key into ``backup_log``, tagged with the current epoch (an entry
    already tagged with it is not written again)."""
    return (
        f"INSERT INTO backup_log (tbl, key, epoch) SELECT {quote_text(table.name)}, {key}, "
        f"s.epoch FROM backup_log_state AS s WHERE s.id = 1{where} "
        "ON CONFLICT (tbl, key) DO UPDATE SET epoch = excluded.epoch "
        "WHERE epoch < excluded.epoch;"
    )


def _count(table: TablePlan, column: str) -> str:
    """Add one to this table's ``column`` (``added``, ``removed``) for the epoch."""
    return (
        f"INSERT INTO backup_log_counts (tbl, epoch, {column}) SELECT {quote_text(table.name)}, "
        "s.epoch, 1 FROM backup_log_state AS s WHERE s.id = 1 "
        f"ON CONFLICT (tbl, epoch) DO UPDATE SET {column} = {column} + 1;"
    )


def _collision_terms(conn: Connection, table: TablePlan) -> tuple[str, list[str]]:
    """The condition on ``t`` (a row of ``table``) that the new values ``NEW`` collide
    with, on the rowid or primary key or any unique index (each column compared under
    the index's own collation); and the columns involved."""
    parts, columns = [], []
    if table.by_rowid:
        parts.append("t.rowid = NEW.rowid")
    for index in introspect.indexes(conn, table.name):
        if not index.unique:
            continue
        names = [str(c) for c in index.columns]
        columns += names
        parts.append(" AND ".join(map(_equal, names, index.collations)))
    return " OR ".join(f"({p})" for p in parts), columns


def collision_match(conn: Connection, table: TablePlan) -> str:
    """The condition on ``t``, a row of ``table``, that a row ``NEW`` would collide
    with on its rowid, primary key or a unique index."""
    return _collision_terms(conn, table)[0]


def _equal(column: str, collation: str) -> str:
    """``t.column = NEW.column`` as a unique index compares them. A collation is named
    only when it is not SQLite's default: naming one, even ``BINARY``, keeps SQLite from
    serving an ``OR`` of such terms with several indexes (it would scan the table); a
    column declared with a looser collation than its index's only finds more rows,
    which costs a recount, never a missed one."""
    term = f"t.{quote_identifier(column)} = NEW.{quote_identifier(column)}"
    return (
        term if collation.upper() == "BINARY" else f"{term} COLLATE {quote_identifier(collation)}"
    )


def _collision_trigger(table: TablePlan, trigger: str, when: str, match: str) -> str:
    """A BEFORE trigger that, when the new values collide with rows (what ``OR
    REPLACE`` would delete with no trigger), logs those rows and marks the table's count
    for this epoch uncertain: whether the statement replaces, ignores or updates them is
    not known here, so the backup counts that table itself. The ``WHEN`` test keeps the
    usual write, which collides with nothing, to an index lookup or two."""
    name, lit = quote_identifier(table.name), quote_text(table.name)
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
    """The CREATE TRIGGER statements that log the writes of ``table``."""
    name = quote_identifier(table.name)
    new, old = table.key_sql("NEW.", LOG_SHIFT), table.key_sql("OLD.", LOG_SHIFT)
    match, columns = _collision_terms(conn, table)
    if table.by_rowid:
        itself, moved = "t.rowid <> OLD.rowid", ["NEW.rowid <> OLD.rowid"]
    else:
        itself, moved = f"({table.key_sql('t.')}) <> ({old})", []
        columns += table.key
    # Only an update that changes the rowid, the key or a unique column can collide.
    moved += [f"NEW.{quote_identifier(c)} IS NOT OLD.{quote_identifier(c)}" for c in columns]
    return [
        f"CREATE TRIGGER {_trigger(table, 'i')} AFTER INSERT ON {name} BEGIN "
        f"{_log_key(table, new)} {_count(table, 'added')} END",
        f"CREATE TRIGGER {_trigger(table, 'u')} AFTER UPDATE ON {name} BEGIN "
        f"{_log_key(table, new)} {_log_key(table, old, f' AND ({old}) IS NOT ({new})')} END",
        f"CREATE TRIGGER {_trigger(table, 'd')} AFTER DELETE ON {name} BEGIN "
        f"{_log_key(table, old)} {_count(table, 'removed')} END",
        _collision_trigger(table, _trigger(table, "bi"), "BEFORE INSERT", match),
        _collision_trigger(
            table,
            _trigger(table, "bu"),
            "BEFORE UPDATE",
            f"({' OR '.join(dict.fromkeys(moved))}) AND ({match}) AND {itself}",
        ),
    ]


def logged_tables(conn: Connection, plan: SchemaPlan) -> frozenset[str]:
    """The tables of ``plan`` whose writes the log records: every table SQLite does not
    write itself, except one with a unique index on an expression (whose collisions no
    trigger can find); the others are compared with the parent's index."""
    unsearchable = introspect.unique_expression_tables(conn)
    return frozenset(t.name for t in plan.tables if t.logged and t.name not in unsearchable)


def _installed(conn: Connection) -> list[tuple[str, str]]:
    """The log's triggers: name and SQL, in name order."""
    return sorted(
        (o.name, o.sql)
        for o in introspect.schema_objects(conn, "trigger")
        if o.name.startswith(LOG_TRIGGER_PREFIX)
    )


def _digest(conn: Connection, plan: SchemaPlan) -> str:
    """What the log's soundness rests on: the schema, the blocks and the triggers."""
    state = json.dumps([plan.digest, LOG_SHIFT, _installed(conn)])
    return hashlib.sha256(state.encode()).hexdigest()


def _install(conn: Connection, plan: SchemaPlan) -> None:
    """Make the triggers of every logged table again (dropping every trigger of the
    log first, such as those a renamed table took with it)."""
    introspect.drop_triggers(conn, LOG_TRIGGER_PREFIX)
    logged = logged_tables(conn, plan)
    for table in plan.tables:
        if table.name in logged:
            for statement in trigger_sql(conn, table):
                conn.execute(statement)


def _probe_moved(conn: Connection) -> bool:
    row = conn.execute(f"SELECT max(rowid) FROM {_PROBE_TABLE}").fetchone()
    return bool(row[0] != _PROBE_ROWID)


def cut(conn: Connection) -> LogMark:
    """Cut the log for a backup whose snapshot starts as this write transaction commits
    (run inside it; see :meth:`Store.snapshot_after`). It reads and writes a few rows,
    however long the log: writers wait for it no longer than for any short write.

    When the log cannot be trusted (it never existed, the schema or its triggers
    changed since they were made, a ``VACUUM`` moved rowids, its state was altered
    outside this module), makes the triggers again
    and starts a new log; else bumps the epoch and prunes entries older than
    :data:`KEEP_EPOCHS` backups.
    """
    plan = read_plan(conn)
    state = conn.execute(
        "SELECT log_id, epoch, pruned_to, digest FROM backup_log_state WHERE id = 1"
    ).fetchone()
    # A state of the wrong types was written by something other than this module:
    # the log is not trusted, as when the schema changed.
    sound = state is not None and all(map(isinstance, state[:3], (str, int, int)))
    if not sound or state[3] != _digest(conn, plan) or _probe_moved(conn):
        _install(conn, plan)
        conn.execute("DELETE FROM backup_log")
        conn.execute("DELETE FROM backup_log_counts")
        conn.execute("DELETE FROM backup_log_state")
        conn.execute(f"DELETE FROM {_PROBE_TABLE}")
        conn.execute(f"INSERT INTO {_PROBE_TABLE} (rowid, placed) VALUES (?, 1)", (_PROBE_ROWID,))
        log_id = new_id()
        # The snapshot holds everything up to now (epoch 1); the log records what
        # follows (epoch 2).
        conn.execute(
            "INSERT INTO backup_log_state (id, log_id, epoch, pruned_to, digest) "
            "VALUES (1, ?, 2, 1, ?)",
            (log_id, _digest(conn, plan)),
        )
        return LogMark(log_id, 1, 1, LOG_SHIFT)
    log_id, epoch, pruned_to = str(state[0]), int(state[1]), int(state[2])
    conn.execute("UPDATE backup_log_state SET epoch = epoch + 1 WHERE id = 1")
    horizon = epoch - KEEP_EPOCHS
    if horizon > pruned_to:
        conn.execute("DELETE FROM backup_log WHERE epoch <= ?", (horizon,))
        conn.execute("DELETE FROM backup_log_counts WHERE epoch <= ?", (horizon,))
        conn.execute("UPDATE backup_log_state SET pruned_to = ? WHERE id = 1", (horizon,))
        pruned_to = horizon
    return LogMark(log_id, epoch, pruned_to, LOG_SHIFT)


def restart(conn: Connection) -> None:
    """Have the next cut start a new log (after the log was found damaged)."""
    conn.execute("DELETE FROM backup_log_state")


def changed_keys(conn: Connection, since: int, plan: SchemaPlan) -> dict[str, list[Key]]:
    """The keys (blocks, or primary key literals) written after epoch ``since``, by
    table, sorted; read in the backup's snapshot.

    Raises:
        BackupCorruptError: an entry is not a key of its table: the log was written by
            something other than its triggers (the next backup starts a new log).
    """
    widths = {t.name: None if t.by_rowid else len(t.key) for t in plan.tables}
    found: dict[str, list[Key]] = defaultdict(list)
    cursor = conn.execute("SELECT tbl, key FROM backup_log WHERE epoch > ?", (since,))
    cursor.row_factory = None
    for table, key in cursor:
        width = widths.get(str(table), 0)
        if width is None:  # a block of rowids: it and its rowids within 64 bits
            valid = isinstance(key, int) and _MIN_BLOCK <= key <= _MAX_BLOCK
        else:  # as many literals as the primary key has columns
            valid = (
                width > 0
                and isinstance(key, str)
                and _KEY_LITERALS.fullmatch(key) is not None
                and len(_ONE_LITERAL.findall(key)) == width
            )
        if not valid:
            raise BackupCorruptError(
                f"the backup change log holds an entry that is not a row key of a table "
                f"({str(table)[:64]!r}): it was written by something other than its "
                "triggers; make a full backup (it starts a new log)"
            )
        found[str(table)].append(key)
    for keys in found.values():
        keys.sort()
    return dict(found)


def current_log_id(conn: Connection) -> str | None:
    """The id of the database's change log (``None`` before its first backup)."""
    row = conn.execute("SELECT log_id FROM backup_log_state WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def written_since(conn: Connection, epoch: int) -> bool:
    """Whether the database changed after the cut at ``epoch`` of its current log."""
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
    """What each table gained and lost after epoch ``since``."""
    cursor = conn.execute(
        "SELECT tbl, sum(added), sum(removed), max(uncertain) FROM backup_log_counts "
        "WHERE epoch > ? GROUP BY tbl",
        (since,),
    )
    cursor.row_factory = None
    return {str(t): RowDelta(int(a), int(r), bool(u)) for t, a, r, u in cursor}
