"""Change capture: the triggers that record, in the writing transaction, what changed.

For every synced table (:mod:`mangostore.sync.tables`) three triggers are made when
sync is enabled, from the table's columns as the schema has them then:

* after an insert, the row gets its *life*: the timestamp and site of its creation.
  No cell is written: a column without a cell has the life's timestamp, which keeps
  an insert to one extra row write (cr-sqlite writes one per column);
* after an update, one cell per changed column (and per changed key of a JSON object
  column merged key by key), each above the timestamp it replaces, so a local edit
  always beats what the device had seen, whatever its wall clock says; increments of
  counter columns are added to this device's share;
* after a delete, the row's life is marked ended (a tombstone) and its cells dropped.

Each also gives the row a new local sequence number: rows with one are the pending
changes the next push sends. The triggers fire only when ``mango_sync_on()`` says so:
never while remote changes are being applied.
"""

from __future__ import annotations

import hashlib

from mangostore.engine.pragmas import Connection
from mangostore.schema import introspect
from mangostore.sql import quote_identifier, quote_text
from mangostore.sync.tables import SYNCED, TableSpec

__all__ = ["KEY_SEPARATOR", "capture_sql", "drop_triggers", "install", "synced_columns"]

#: Between a JSON column's name and one of its keys in a cell name.
KEY_SEPARATOR = "\x1f"
_NEXT_SEQ = "(SELECT coalesce(max(seq), 0) + 1 FROM sync_rows WHERE seq IS NOT NULL)"
_EVENTS = ("insert", "update", "delete")


def synced_columns(conn: Connection, spec: TableSpec) -> list[str]:
    """The columns of ``spec``'s table that travel, key first."""
    names = [c.name for c in introspect.columns(conn, spec.name)]
    rest = [n for n in names if n != spec.key and n not in spec.local_columns]
    return [spec.key, *rest]


def _object(expr: str) -> str:
    """SQL for ``expr`` when it is a JSON object, else an empty object."""
    return (
        f"coalesce(CASE WHEN json_valid({expr}) THEN "
        f"CASE WHEN json_type({expr}) = 'object' THEN {expr} END END, '{{}}')"
    )


def _trigger_name(table: str, event: str) -> str:
    return quote_identifier(f"sync_capture_{table}_{event}")


def capture_sql(spec: TableSpec, columns: list[str]) -> list[str]:
    """The three CREATE TRIGGER statements of one table."""
    t, lit = quote_identifier(spec.name), quote_text(spec.name)
    key = quote_identifier(spec.key)
    upsert_cell = (
        " ON CONFLICT (tbl, pk, col) DO UPDATE SET hlc = max(excluded.hlc, sync_cells.hlc + 1),"
        " site = 0, prev = sync_cells.hlc;"
    )
    plain = [c for c in columns[1:] if c not in spec.counters]
    insert = [
        f"CREATE TRIGGER {_trigger_name(spec.name, 'insert')} AFTER INSERT ON {t} "
        "WHEN mango_sync_on() BEGIN",
        f"INSERT INTO sync_rows (tbl, pk, life, life_site, dead, seq) VALUES ({lit}, NEW.{key}, "
        f"mango_sync_tick(), 0, 0, {_NEXT_SEQ}) ON CONFLICT (tbl, pk) DO UPDATE SET "
        "life = max(excluded.life, sync_rows.life + 1), life_site = 0, dead = 0, "
        "seq = excluded.seq;",
    ]
    for counter in spec.counters:
        c = quote_identifier(counter)
        insert.append(
            "INSERT INTO sync_counters (tbl, pk, col, site, amount, hlc) "
            f"SELECT {lit}, NEW.{key}, {quote_text(counter)}, 0, NEW.{c}, "
            f"(SELECT life FROM sync_rows WHERE tbl = {lit} AND pk = NEW.{key}) "
            f"WHERE coalesce(NEW.{c}, 0) <> 0;"
        )
    insert.append("END")

    changed = " UNION ALL ".join(
        f"SELECT {quote_text(c)} AS col WHERE NEW.{q} IS NOT OLD.{q}"
        for c, q in ((c, quote_identifier(c)) for c in plain)
    )
    update = [
        f"CREATE TRIGGER {_trigger_name(spec.name, 'update')} AFTER UPDATE ON {t} "
        "WHEN mango_sync_on() BEGIN",
        f"INSERT INTO sync_rows (tbl, pk, life, life_site, dead, seq) VALUES ({lit}, NEW.{key}, "
        f"mango_sync_tick(), 0, 0, {_NEXT_SEQ}) "
        "ON CONFLICT (tbl, pk) DO UPDATE SET seq = excluded.seq;",
    ]
    # A column without a cell has the life's timestamp, which may come from a device
    # whose clock is ahead: its first cell must still be above it.
    life = f"(SELECT life + 1 FROM sync_rows WHERE tbl = {lit} AND pk = NEW.{key})"
    stamp = f"max(mango_sync_tick(), {life})"
    if plain:
        update.append(
            "INSERT INTO sync_cells (tbl, pk, col, hlc, site, prev) "
            f"SELECT {lit}, NEW.{key}, col, {stamp}, 0, NULL FROM ({changed}) WHERE true"
            + upsert_cell
        )
    for column in spec.json_merge:
        c = quote_identifier(column)
        prefix = f"{quote_text(column)} || char(31) || "
        new_obj, old_obj = _object(f"NEW.{c}"), _object(f"OLD.{c}")
        update.append(
            "INSERT INTO sync_cells (tbl, pk, col, hlc, site, prev) "
            f"SELECT {lit}, NEW.{key}, {prefix}n.key, {stamp}, 0, NULL "
            f"FROM json_each({new_obj}) AS n WHERE NEW.{c} IS NOT OLD.{c} AND NOT EXISTS "
            f"(SELECT 1 FROM json_each({old_obj}) AS o WHERE o.key = n.key "
            "AND o.type = n.type AND o.value IS n.value)" + upsert_cell
        )
        update.append(
            "INSERT INTO sync_cells (tbl, pk, col, hlc, site, prev) "
            f"SELECT {lit}, NEW.{key}, {prefix}o.key, {stamp}, 0, NULL "
            f"FROM json_each({old_obj}) AS o WHERE NEW.{c} IS NOT OLD.{c} AND NOT EXISTS "
            f"(SELECT 1 FROM json_each({new_obj}) AS n WHERE n.key = o.key)" + upsert_cell
        )
    for counter in spec.counters:
        c = quote_identifier(counter)
        update.append(
            "INSERT INTO sync_counters (tbl, pk, col, site, amount, hlc) "
            f"SELECT {lit}, NEW.{key}, {quote_text(counter)}, 0, "
            f"coalesce(NEW.{c}, 0) - coalesce(OLD.{c}, 0), mango_sync_tick() "
            f"WHERE NEW.{c} IS NOT OLD.{c} ON CONFLICT (tbl, pk, col, site) DO UPDATE SET "
            "amount = sync_counters.amount + excluded.amount, "
            "hlc = max(excluded.hlc, sync_counters.hlc + 1);"
        )
    update.append("END")

    delete = [
        f"CREATE TRIGGER {_trigger_name(spec.name, 'delete')} AFTER DELETE ON {t} "
        "WHEN mango_sync_on() BEGIN",
        f"INSERT INTO sync_rows (tbl, pk, life, life_site, dead, seq) VALUES ({lit}, OLD.{key}, "
        f"mango_sync_tick(), 0, 1, {_NEXT_SEQ}) ON CONFLICT (tbl, pk) DO UPDATE SET "
        "dead = 1, seq = excluded.seq;",
        f"DELETE FROM sync_cells WHERE tbl = {lit} AND pk = OLD.{key};",
        f"DELETE FROM sync_counters WHERE tbl = {lit} AND pk = OLD.{key};",
        "END",
    ]
    return ["\n".join(insert), "\n".join(update), "\n".join(delete)]


def drop_triggers(conn: Connection) -> None:
    """Remove every capture trigger (for a re-install, or when sync is switched off)."""
    for spec in SYNCED:
        for event in _EVENTS:
            conn.execute(f"DROP TRIGGER IF EXISTS {_trigger_name(spec.name, event)}")


def install(conn: Connection) -> str:
    """Make (or re-make) the capture triggers of every synced table; return their digest.

    Runs inside the caller's write transaction. The digest, kept in
    ``sync_device.triggers``, tells a later opening whether a migration changed a
    synced table's columns, so the triggers must be made again.
    """
    statements: list[str] = []
    for spec in SYNCED:
        if introspect.has_table(conn, spec.name):
            statements += capture_sql(spec, synced_columns(conn, spec))
    drop_triggers(conn)
    for statement in statements:
        conn.execute(statement)
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()


def current_digest(conn: Connection) -> str:
    """The digest :func:`install` would return now, without changing anything."""
    statements: list[str] = []
    for spec in SYNCED:
        if introspect.has_table(conn, spec.name):
            statements += capture_sql(spec, synced_columns(conn, spec))
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()


def backfill(conn: Connection) -> int:
    """Give every existing row of every synced table a life, pending; return how many.

    For a database that held data before sync was enabled: its rows are sent on the
    first push like new ones.
    """
    count = 0
    for spec in SYNCED:
        if not introspect.has_table(conn, spec.name):
            continue
        cur = conn.execute(
            "INSERT INTO sync_rows (tbl, pk, life, life_site, dead, seq) "
            f"SELECT ?, {quote_identifier(spec.key)}, mango_sync_tick(), 0, 0, "
            f"{_NEXT_SEQ} FROM {quote_identifier(spec.name)} WHERE true "
            "ON CONFLICT (tbl, pk) DO NOTHING",
            (spec.name,),
        )
        count += max(cur.rowcount, 0)
        for counter in spec.counters:
            c = quote_identifier(counter)
            conn.execute(
                "INSERT INTO sync_counters (tbl, pk, col, site, amount, hlc) "
                f"SELECT ?, t.{quote_identifier(spec.key)}, ?, 0, t.{c}, r.life "
                f"FROM {quote_identifier(spec.name)} AS t JOIN sync_rows AS r "
                f"ON r.tbl = ? AND r.pk = t.{quote_identifier(spec.key)} "
                f"WHERE coalesce(t.{c}, 0) <> 0 ON CONFLICT DO NOTHING",
                (spec.name, counter, spec.name),
            )
    return count
