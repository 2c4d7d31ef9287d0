"""What merging reads of the schema, read once a pull: synced columns, foreign keys,
which tables refer to which, and whether adopting new rows of a table can break a
reference anywhere but in those rows.

The last lets a merge that only adopted new rows check the references of those rows
instead of whole tables (:func:`mangostore.sync.settle.fix_references`). A reference
breaks when its row is written with a parent that is missing, or when the parent is
deleted or its key changed. Writing new rows of a table ``T`` deletes nothing itself
(an upsert by ``T``'s key keeps the key), but ``T``'s triggers may write elsewhere: a
table is *quiet* for an event when every foreign key to it names its key and each of
its triggers for that event writes only tables that are harmless to write: no
foreign key to them, none that the whole-table check would read (a synced table, a
child of one whose rows a merge may fold), and triggers that write only harmless
tables. Whatever
the triggers' text does not make plain (a name it cannot find, a statement it cannot
read) counts as harmful, so the answer errs towards checking whole tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from mangostore.engine.pragmas import Connection
from mangostore.schema import introspect
from mangostore.sql import quote_identifier
from mangostore.sync.capture import synced_columns
from mangostore.sync.tables import SYNCED_BY_NAME

__all__ = ["SchemaCache", "any_broken"]

#: The event of a trigger, in the text before its body (``AFTER UPDATE OF a, b ON t``).
_EVENT: Final = re.compile(r"\b(INSERT|UPDATE|DELETE)\b(?:\s+OF\b.*?)?\s+ON\s", re.I | re.S)
_BODY: Final = re.compile(r"\bBEGIN\b", re.I)
#: ``CREATE TRIGGER [IF NOT EXISTS] name``: taken off before the event is looked for.
_NAME: Final = re.compile(
    r"^\s*CREATE\s+(?:TEMP\w*\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?:\"(?:[^\"]|\"\")+\"|`[^`]+`|\[[^\]]+\]|\S+)",
    re.I,
)
#: A statement of a trigger's body that writes a table, and the table's name.
_WRITE: Final = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
    r"\s+(\"(?:[^\"]|\"\")+\"|`[^`]+`|\[[^\]]+\]|[\w.$]+)",
    re.I,
)
#: Rows of one table checked with one statement by :func:`any_broken`.
_CHECK_MANY = 500


@dataclass
class _Trigger:
    #: ``"INSERT"``, ``"UPDATE"``, ``"DELETE"``, or ``"*"`` when the text did not say.
    event: str
    #: The tables its body writes (``None`` in the list: one it could not name).
    writes: list[str | None]


def _unquote(name: str) -> str | None:
    if name[0] in '"`[':
        name = name[1:-1].replace('""', '"')
    return None if "." in name else name


def _trigger(sql: str) -> _Trigger:
    parts = _BODY.split(sql, maxsplit=1)
    head, body = (parts[0], parts[1]) if len(parts) == 2 else (sql, sql)
    found = _EVENT.search(_NAME.sub("", head, count=1))
    writes = [
        _unquote(m.group(1))
        for m in _WRITE.finditer(body)
        if m.group(1).upper() != "SET"  # ... ON CONFLICT DO UPDATE SET: its own INSERT's table
    ]
    return _Trigger(found.group(1).upper() if found else "*", writes)


@dataclass
class SchemaCache:
    """What merging reads of the schema. Shared by the merges of one pull (the
    schema does not change while it runs), so each batch does not read it again."""

    columns_of: dict[str, list[str]] = field(default_factory=dict)
    foreign_keys_of: dict[str, list[introspect.ForeignKey]] = field(default_factory=dict)
    children_of: dict[str, list[str]] | None = None
    _triggers: dict[str, list[_Trigger]] | None = None
    _tables: set[str] = field(default_factory=set)
    _harmless: dict[str, bool] = field(default_factory=dict)
    _quiet: dict[tuple[str, frozenset[str]], bool] = field(default_factory=dict)

    def columns(self, conn: Connection, table: str) -> list[str]:
        """The synced columns of ``table``, key first."""
        if table not in self.columns_of:
            self.columns_of[table] = synced_columns(conn, SYNCED_BY_NAME[table])
        return self.columns_of[table]

    def foreign_keys(self, conn: Connection, table: str) -> list[introspect.ForeignKey]:
        """The foreign keys of ``table``."""
        found = self.foreign_keys_of.get(table)
        if found is None:
            found = self.foreign_keys_of[table] = introspect.foreign_keys(conn, table)
        return found

    def children(self, conn: Connection, table: str) -> list[str]:
        """The tables with a foreign key to ``table``."""
        children = self.children_of
        if children is None:
            children = self.children_of = {}
            for entry in introspect.table_list(conn):
                if entry.kind == "table" and not entry.internal:
                    for fk in self.foreign_keys(conn, entry.name):
                        children.setdefault(fk.parent, []).append(entry.name)
        return children.get(table, [])

    def quiet(self, conn: Connection, table: str, events: frozenset[str]) -> bool:
        """Whether writing rows of synced ``table`` by its key, with its triggers for
        ``events`` firing, can break no reference but those of the rows written."""
        known = self._quiet.get((table, events))
        if known is None:
            key = SYNCED_BY_NAME[table].key
            known = all(
                fk.target in (None, key)
                for child in self.children(conn, table)
                for fk in self.foreign_keys(conn, child)
                if fk.parent == table
            ) and all(
                self._harmless_write(conn, target, set())
                for trigger in self._triggers_of(conn, table)
                if trigger.event in events or trigger.event == "*"
                for target in trigger.writes
            )
            self._quiet[(table, events)] = known
        return known

    def _triggers_of(self, conn: Connection, table: str) -> list[_Trigger]:
        if self._triggers is None:
            self._triggers = {}
            self._tables = {entry.name for entry in introspect.table_list(conn)}
            for obj in introspect.schema_objects(conn, "trigger"):
                self._triggers.setdefault(obj.table, []).append(_trigger(obj.sql))
        return self._triggers.get(table, [])

    def _harmless_write(self, conn: Connection, table: str | None, seen: set[str]) -> bool:
        """Whether any write to ``table`` leaves every reference as it was."""
        if table is None:
            return False
        if table in seen:
            return True  # its own conditions are being checked further up
        known = self._harmless.get(table)
        if known is None:
            self._triggers_of(conn, table)
            known = (
                table in self._tables
                and not self.children(conn, table)
                and not self._checked_whole(conn, table)
                and all(
                    self._harmless_write(conn, target, seen | {table})
                    for trigger in self._triggers_of(conn, table)
                    for target in trigger.writes
                )
            )
            self._harmless[table] = known
        return known

    def _checked_whole(self, conn: Connection, table: str) -> bool:
        """Whether settling references would check ``table`` whole after a merge of
        new rows only: a synced table (it may be among those written), or a child of
        a table whose rows a merge may fold (see ``fix_references``). A row that a
        trigger writes to any other table is checked by neither way."""
        return table in SYNCED_BY_NAME or any(
            fk.parent in SYNCED_BY_NAME and SYNCED_BY_NAME[fk.parent].unique_rule == "merge"
            for fk in self.foreign_keys(conn, table)
        )


def any_broken(conn: Connection, schema: SchemaCache, table: str, pks: list[str]) -> bool:
    """Whether a row of synced ``table`` among ``pks`` refers to a row that is not
    there (what ``PRAGMA foreign_key_check`` would report of those rows). A foreign
    key this cannot check row by row (of several columns, or to a parent without a
    one-column primary key) counts as broken, so the caller checks the whole table."""
    fks = schema.foreign_keys(conn, table)
    if not fks:
        return False
    if len({fk.id for fk in fks}) != len(fks):
        return True
    t, key = quote_identifier(table), quote_identifier(SYNCED_BY_NAME[table].key)
    tests: list[str] = []
    for fk in fks:
        target = fk.target
        if target is None:
            primary = [c.name for c in introspect.columns(conn, fk.parent) if c.primary_key]
            if len(primary) != 1:
                return True
            target = primary[0]
        col = quote_identifier(fk.column)
        tests.append(
            f"(c.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {quote_identifier(fk.parent)} "
            f"AS p WHERE p.{quote_identifier(target)} = c.{col}))"
        )
    missing = f"SELECT 1 FROM {t} AS c WHERE ({' OR '.join(tests)}) AND c.{key} IN "
    for start in range(0, len(pks), _CHECK_MANY):
        part = pks[start : start + _CHECK_MANY]
        marks = "(" + ", ".join("?" for _ in part) + ") LIMIT 1"
        if conn.execute(missing + marks, part).fetchone() is not None:
            return True
    return False
