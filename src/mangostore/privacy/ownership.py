"""Which rows belong to a user: found from the live schema, so new tables are covered.

A row belongs to user ``U`` when

* it is ``U``'s row of ``users`` (``id = U``), or
* its table has a ``user_id`` column and ``user_id = U``, or
* its table has no ``user_id`` column and one of its foreign keys points at a row
  that belongs to ``U`` (``notification_actions`` through ``notifications``,
  ``ai_memory_state`` through ``ai_memory``, ...), transitively.

Rows of *other* users that point at one of ``U``'s rows are not ``U``'s: export
leaves them out; erasure sets the reference to NULL when the column allows it and
deletes the row otherwise (a relation to an entity that no longer exists).

Tables, columns and foreign keys are read with :mod:`mangostore.schema.introspect`;
virtual tables (full-text and vector indexes) and their shadow tables are derived
data, kept in step by triggers, and are not walked. A few tables
are kept on erasure on purpose (:data:`KEPT_ON_ERASURE`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.schema import introspect
from mangostore.sql import quote_identifier

__all__ = [
    "EXPORTED_APART",
    "KEPT_ON_ERASURE",
    "ForeignKey",
    "Ownership",
    "SchemaMap",
    "TableInfo",
    "key_batches",
    "read_schema",
]

#: Tables whose rows about a user are kept when the user is erased: the append-only
#: audit log (its personal data is sealed under the user's destroyed key) and the
#: metadata of the destroyed keys themselves (no key material).
KEPT_ON_ERASURE: Final = frozenset({"security_events", "field_keys"})
#: Tables an export reads through a service of their own rather than by ownership.
EXPORTED_APART: Final = frozenset({"security_events"})
_BATCH: Final = 5_000


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """``child.column`` references ``parent.target``."""

    child: str
    column: str
    parent: str
    target: str
    nullable: bool


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A real table: its columns, the column naming its owner (if any), and the SQL
    expression identifying one row (``rowid``, or the primary key of a table
    ``WITHOUT ROWID``; ``json_array(...)`` of it when it has several columns)."""

    name: str
    columns: tuple[str, ...]
    owner: str | None
    key: str = "rowid"


@dataclass(frozen=True, slots=True)
class SchemaMap:
    """The tables, their owners and foreign keys, and the full-text indexes."""

    tables: dict[str, TableInfo]
    #: Foreign keys by parent table.
    children: dict[str, tuple[ForeignKey, ...]]
    fts5: tuple[str, ...]
    virtual: tuple[str, ...]

    def owned_tables(self, skip: frozenset[str] = frozenset()) -> list[str]:
        """Tables whose rows can belong to a user (directly or through a parent),
        except those in ``skip``."""
        reachable = {t for t, info in self.tables.items() if info.owner is not None}
        changed = True
        while changed:
            changed = False
            for parent in list(reachable):
                for fk in self.children.get(parent, ()):
                    if fk.child not in reachable:
                        reachable.add(fk.child)
                        changed = True
        return sorted(reachable - skip)


def read_schema(conn: Connection) -> SchemaMap:
    """Read the live schema of the connection's main database."""
    with driver_errors("reading the schema"):
        found = [t for t in introspect.schema_objects(conn, "table") if not t.internal]
        virtual = [t.name for t in found if t.virtual]
        skipped = set(virtual) | _shadow_tables(found, virtual)
        without_rowid = {t.name for t in introspect.table_list(conn) if t.without_rowid}
        tables: dict[str, TableInfo] = {}
        foreign: list[ForeignKey] = []
        for name in (t.name for t in found if t.name not in skipped):
            columns = introspect.columns(conn, name)
            tables[name] = _table_info(name, columns, name in without_rowid)
            foreign += _foreign_keys(conn, name, columns)
    return SchemaMap(
        tables=tables,
        children=_children_by_parent(foreign, tables),
        fts5=tuple(t.name for t in found if t.module == "fts5"),
        virtual=tuple(virtual),
    )


def _shadow_tables(found: list[introspect.SchemaObject], virtual: list[str]) -> set[str]:
    """The tables holding a virtual table's data: named after it, ``<virtual>_...``."""
    return {t.name for t in found for v in virtual if t.name.startswith(f"{v}_")}


def _primary_key(columns: list[introspect.Column]) -> list[str]:
    """The primary key's columns, in key order."""
    return [c.name for c in sorted(columns, key=lambda c: c.primary_key) if c.primary_key]


def _table_info(name: str, columns: list[introspect.Column], without_rowid: bool) -> TableInfo:
    """A table's columns, owner column and row key (see :class:`TableInfo`)."""
    names = tuple(c.name for c in columns)
    owner = "id" if name == "users" else ("user_id" if "user_id" in names else None)
    key = "rowid"
    if without_rowid:  # the primary key identifies a row
        quoted = [quote_identifier(c) for c in _primary_key(columns)]
        key = quoted[0] if len(quoted) == 1 else f"json_array({', '.join(quoted)})"
    return TableInfo(name, names, owner, key)


def _foreign_keys(
    conn: Connection, name: str, columns: list[introspect.Column]
) -> list[ForeignKey]:
    """The references of table ``name`` that can make a row someone's, with whether
    each can be set to NULL."""
    pk = _primary_key(columns)
    not_null = {c.name for c in columns if c.not_null}
    found = []
    for fk in introspect.foreign_keys(conn, name):
        if fk.parent == "users" and fk.column == "user_id":
            continue  # ownership itself, already covered by the owner column
        target = fk.target or (pk[0] if len(pk) == 1 else "rowid")
        found.append(ForeignKey(name, fk.column, fk.parent, target, fk.column not in not_null))
    return found


def _children_by_parent(
    foreign: list[ForeignKey], tables: dict[str, TableInfo]
) -> dict[str, tuple[ForeignKey, ...]]:
    """Group the foreign keys by the table they point at, among the walked tables."""
    children: dict[str, list[ForeignKey]] = {}
    for fk in foreign:
        if fk.parent in tables:
            children.setdefault(fk.parent, []).append(fk)
    return {parent: tuple(keys) for parent, keys in children.items()}


@dataclass
class Ownership:
    """The rows (by row key, see :class:`TableInfo`) of one user in every table, and
    the rows of others that point at them."""

    user_id: str
    rows: dict[str, set[Any]] = field(default_factory=dict)
    #: ``(child table, column) -> row keys`` of other users' rows referencing these rows.
    references: dict[tuple[str, str], set[Any]] = field(default_factory=dict)

    def count(self) -> int:
        """How many rows belong to the user."""
        return sum(len(v) for v in self.rows.values())

    @classmethod
    def find(
        cls,
        conn: Connection,
        schema: SchemaMap,
        user_id: str,
        *,
        follow_others: bool,
        skip: frozenset[str] = frozenset(),
    ) -> Ownership:
        """Find every row of ``user_id``.

        Args:
            follow_others: with True (erasure), another user's row whose reference
                cannot be set to NULL joins the rows to delete, and rows below it follow.
            skip: tables left out.
        """
        found = cls(user_id)
        fresh: dict[str, set[Any]] = {}
        for name, info in schema.tables.items():
            if info.owner is None or name in skip:
                continue
            ids = _keys(
                conn,
                f"SELECT {info.key} FROM {quote_identifier(name)} "
                f"WHERE {quote_identifier(info.owner)} = ?",
                (user_id,),
            )
            if ids:
                found.rows[name] = set(ids)
                fresh[name] = set(ids)
        while fresh:
            parent, new = next(iter(fresh.items()))
            del fresh[parent]
            for fk in schema.children.get(parent, ()):
                if fk.child in skip:
                    continue
                child = schema.tables[fk.child]
                parent_info = schema.tables[parent]
                for rowid, owner in _referencing(conn, fk, child, parent_info, new):
                    if owner is None or owner == user_id:
                        target = found.rows.setdefault(fk.child, set())
                    elif fk.nullable or not follow_others:
                        found.references.setdefault((fk.child, fk.column), set()).add(rowid)
                        continue
                    else:
                        target = found.rows.setdefault(fk.child, set())
                    if rowid not in target:
                        target.add(rowid)
                        fresh.setdefault(fk.child, set()).add(rowid)
        return found

    def delete_order(self, schema: SchemaMap) -> list[str]:
        """Tables with rows to delete, children before their parents (cycles broken
        arbitrarily: erasure defers foreign-key checks to the commit)."""
        pending = set(self.rows)
        order: list[str] = []
        while pending:
            ready = sorted(
                t
                for t in pending
                if not any(
                    fk.child in pending and fk.child != t for fk in schema.children.get(t, ())
                )
            )
            if not ready:
                ready = [sorted(pending)[0]]
            for table in ready:
                order.append(table)
                pending.discard(table)
        return order


def _keys(conn: Connection, sql: str, params: tuple[object, ...]) -> list[Any]:
    with driver_errors("finding a user's rows"):
        return [r[0] for r in conn.execute(sql, params).fetchall()]


def _referencing(
    conn: Connection,
    fk: ForeignKey,
    child: TableInfo,
    parent: TableInfo,
    parent_rows: Iterable[Any],
) -> list[tuple[Any, object]]:
    """Rows of ``fk.child`` pointing at ``parent_rows`` of ``fk.parent``: (key, owner)."""
    owner = quote_identifier(child.owner) if child.owner is not None else "NULL"
    column = quote_identifier(fk.column)
    target = "rowid" if fk.target == "rowid" else quote_identifier(fk.target)
    sql = (
        f"SELECT {child.key}, {owner} FROM {quote_identifier(fk.child)} WHERE {column} IN "
        f"(SELECT {target} FROM {quote_identifier(fk.parent)} "
        f"WHERE {parent.key} IN (SELECT value FROM json_each(?)))"
    )
    found: list[tuple[Any, object]] = []
    with driver_errors("finding a user's rows"):
        for batch in key_batches(parent_rows):
            found += [(r[0], r[1]) for r in conn.execute(sql, (batch,)).fetchall()]
    return found


def key_batches(keys: Iterable[Any]) -> Iterable[str]:
    """Yield JSON arrays of at most 5,000 row keys, for ``key IN json_each(?)``."""
    ids = sorted(keys, key=lambda k: (isinstance(k, str), k))
    for start in range(0, len(ids), _BATCH):
        yield json.dumps(ids[start : start + _BATCH])
