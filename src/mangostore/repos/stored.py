"""What an INSERT stores, known without reading the row back.

A repository returns every record as stored. Reading it back costs a statement, and
``RETURNING`` costs about as much (SQLite collects the returned rows in a temporary
table first): several microseconds a row, more than the INSERT itself. For most
tables the stored row is known already: the values the repository binds are stored
as they are, or changed in a known way, and the columns left out get constant
defaults. :func:`stored_form` proves that from the live schema, once per table and
schema version; the repository then builds the record from what it bound. Where the
proof fails, the repository keeps ``RETURNING``. Either way the record is the row as the
INSERT wrote it: like ``RETURNING``, it does not show what an ``AFTER`` trigger changes
in the row afterwards (``BEFORE`` triggers cannot change it).

The proof asks of the table:

- every column of the record is an ordinary column (not generated) whose declared
  type gives an affinity that keeps the values the repository binds for its kind
  (see :data:`_KEEPS`); a REAL column turns an integer into a float, which is applied
  (``-0.0`` becomes ``0.0``, as SQLite stores it);
- its definition has no ``ON CONFLICT`` clause (``IGNORE`` would skip the row
  silently, ``REPLACE`` on a NOT NULL column would store the default instead of the
  value) and none of its triggers can skip the row (``RAISE(IGNORE)``);
- a column left out has no default, or a literal one whose value the affinity keeps
  (``NULL``, an integer, a string): anything else (``CURRENT_TIMESTAMP``, an
  expression, a rowid alias) is unknown, and an INSERT leaving it out keeps
  ``RETURNING``.

A schema change moves ``PRAGMA schema_version``, which the repository compares before
each use, so a proof never outlives the schema it was made from. The row count of each
INSERT is checked too.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mangostore.engine.pragmas import Connection
from mangostore.errors import DatabaseError
from mangostore.monitor.connection import execute_unmonitored
from mangostore.repos.spec import INT64_MAX, INT64_MIN, TableSpec
from mangostore.schema import introspect
from mangostore.sql import placeholders, quote_identifier

__all__ = [
    "UNKNOWN",
    "RowShape",
    "StoredForm",
    "WritePlans",
    "affinity",
    "check_count",
    "schema_version",
    "stored_form",
]

#: The value of a column whose default cannot be known without reading the row.
UNKNOWN: Final[Any] = object()


#: The affinities that store the value a repository binds for each kind unchanged.
#: (A blob is never converted; text, JSON text and envelopes keep TEXT or no affinity;
#: integers and booleans, bound as 0 or 1, keep INTEGER, NUMERIC or no affinity.)
_KEEPS: Final[Mapping[str, frozenset[str]]] = {
    "text": frozenset({"TEXT", "BLOB"}),
    "json": frozenset({"TEXT", "BLOB"}),
    "encrypted": frozenset({"TEXT", "BLOB"}),
    "int": frozenset({"INTEGER", "NUMERIC", "BLOB"}),
    "bool": frozenset({"INTEGER", "NUMERIC", "BLOB"}),
    "blob": frozenset({"TEXT", "BLOB", "INTEGER", "NUMERIC", "REAL"}),
    "float": frozenset(),
}
_INTEGER_LITERAL: Final = re.compile(r"[+-]?[0-9]+\Z")
_STRING_LITERAL: Final = re.compile(r"'((?:[^']|'')*)'\Z")
_RAISE_IGNORE: Final = re.compile(r"\bRAISE\s*\(\s*IGNORE\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class StoredForm:
    """How an INSERT into one table stores the values its repository binds.

    Attributes:
        schema_version: ``PRAGMA schema_version`` when the proof was made.
        defaults: for each column of the record (in record order), the value it gets
            when left out, or :data:`UNKNOWN`.
        to_float: positions (in record order) of REAL columns: a bound integer is
            stored as a float.
    """

    schema_version: int
    defaults: tuple[Any, ...]
    to_float: frozenset[int]

    def covers(self, given: Collection[str], names: tuple[str, ...]) -> bool:
        """Tell whether every column of ``names`` missing from ``given`` has a known default."""
        defaults = self.defaults
        return all(defaults[i] is not UNKNOWN for i, name in enumerate(names) if name not in given)

    def shape(self, columns: tuple[str, ...], spec: TableSpec) -> RowShape:
        """Return how the rows of an INSERT naming ``columns`` are stored.

        Raises:
            ValueError: a column left out has no known default (see :meth:`covers`).
        """
        return RowShape(self, columns, spec)


class RowShape:
    """The row an INSERT naming ``columns`` stores, put together from the values it
    binds (a sequence in ``columns`` order) and the defaults of the other columns, in
    record order."""

    def __init__(self, form: StoredForm, columns: tuple[str, ...], spec: TableSpec) -> None:
        names = spec.names
        given = {name: i for i, name in enumerate(columns)}
        omitted = [name for name in names if name not in given]
        tail = tuple(form.defaults[names.index(name)] for name in omitted)
        if any(value is UNKNOWN for value in tail):
            raise ValueError("a column left out has no known default")
        self._tail = tail
        # The defaults as a record holds them (JSON decoded, booleans as bool).
        self._record_tail = tuple(
            _as_record(spec.columns[name].kind, value)
            for name, value in zip(omitted, tail, strict=True)
        )
        where = {**given, **{name: len(columns) + k for k, name in enumerate(omitted)}}
        self._pick = operator.itemgetter(*(where[name] for name in names))
        # Only bound values need it: the defaults were converted by _default.
        self._floats = [i for i in form.to_float if names[i] in given]

    def stored(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """The row as stored: for :meth:`Repository.record_from_row`."""
        return self._convert(self._pick(values + self._tail))

    def record(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """The record's values, when every bound value is one of a plain text,
        integer or float column (kept as a record holds it)."""
        return self._convert(self._pick(values + self._record_tail))

    def _convert(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self._floats:
            return row
        converted = list(row)
        for i in self._floats:
            if converted[i] is not None:
                converted[i] = float(converted[i]) + 0.0  # SQLite stores -0.0 as 0.0
        return tuple(converted)


def _as_record(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "json":
        return json.loads(value)
    if kind == "bool":
        return bool(value)
    return value


class WritePlans:
    """The INSERT and UPDATE statements of each set of columns a repository writes,
    made once; INSERTs with the proof of what they store, kept until the schema
    version moves."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self._plans: dict[tuple[str, ...], tuple[str, RowShape | None]] = {}
        self._updates: dict[tuple[str, ...], str] = {}
        self._version: int | None = None
        self._form: StoredForm | None = None

    def update(self, columns: tuple[str, ...]) -> str:
        """Return ``UPDATE ... SET`` the ``columns ... WHERE id = ? RETURNING`` every column."""
        sql = self._updates.get(columns)
        if sql is None:
            spec = self.spec
            assignments = ", ".join(f"{quote_identifier(c)} = ?" for c in columns)
            sql = self._updates[columns] = (
                f"UPDATE {spec.quoted_table} SET {assignments} WHERE id = ? "
                f"RETURNING {spec.select_list}"
            )
        return sql

    def insert(self, conn: Connection, columns: tuple[str, ...]) -> tuple[str, RowShape | None]:
        """Return the INSERT naming ``columns`` and the shape of the row it stores.

        Without a proof (``None``) the INSERT ends in ``RETURNING`` every column.
        """
        version = schema_version(conn)
        if version != self._version:
            self._plans.clear()
            self._form = stored_form(conn, self.spec)
            self._version = version
        plan = self._plans.get(columns)
        if plan is None:
            spec = self.spec
            form = self._form
            shape = None
            if form is not None and form.covers(columns, spec.names):
                shape = form.shape(columns, spec)
            sql = (
                f"INSERT INTO {spec.quoted_table} ({', '.join(map(quote_identifier, columns))}) "
                f"VALUES ({placeholders(len(columns))})"
            )
            if shape is None:
                sql += f" RETURNING {spec.select_list}"
            plan = self._plans[columns] = (sql, shape)
        return plan


def check_count(table: str, stored: int, expected: int) -> None:
    """Refuse an INSERT that stored another number of rows than it named.

    The proof rules this out (no conflict clause, no ``RAISE(IGNORE)``); a write must
    still never return records of rows it did not store.

    Raises:
        DatabaseError: naming the table.
    """
    if stored != expected:
        raise DatabaseError(
            f"{table}: an INSERT of {expected} rows stored {stored}; nothing of it is returned"
        )


def affinity(declared_type: str) -> str:
    """Return the column affinity SQLite derives from a declared type (its rules, in order)."""
    declared = declared_type.upper()
    if "INT" in declared:
        return "INTEGER"
    if "CHAR" in declared or "CLOB" in declared or "TEXT" in declared:
        return "TEXT"
    if "BLOB" in declared or not declared:
        return "BLOB"
    if "REAL" in declared or "FLOA" in declared or "DOUB" in declared:
        return "REAL"
    return "NUMERIC"


def schema_version(conn: Connection) -> int:
    """Return ``PRAGMA schema_version`` (moved by every schema change, by any connection)."""
    return int(execute_unmonitored(conn, "PRAGMA schema_version").fetchone()[0])


def stored_form(conn: Connection, spec: TableSpec) -> StoredForm | None:
    """Prove, from the live schema, how an INSERT into ``spec``'s table stores its values.

    Returns ``None`` when it cannot be proven (see the module docstring): the
    repository then reads each row back with ``RETURNING``.
    """
    version = schema_version(conn)
    table = spec.name
    found = {column.name: column for column in introspect.columns(conn, table, hidden=True)}
    definition = next(
        (o for o in introspect.schema_objects(conn, "table") if o.name == table), None
    )
    if definition is None or "ON CONFLICT" in definition.sql.upper():
        return None
    if any(
        _RAISE_IGNORE.search(trigger.sql)
        for trigger in introspect.schema_objects(conn, "trigger")
        if trigger.table == table
    ):
        return None
    defaults: list[Any] = []
    to_float = set()
    for position, name in enumerate(spec.names):
        column = found.get(name)
        if column is None or column.hidden:
            return None
        kind = spec.columns[name].kind
        kept = affinity(column.declared_type)
        if kind == "float" and kept == "REAL":
            to_float.add(position)
        elif kept not in _KEEPS[kind]:
            return None
        # A sealed column's default could not be opened: only NULL is known.
        default = _default(column, kept)
        defaults.append(UNKNOWN if kind == "encrypted" and default is not None else default)
    return StoredForm(version, tuple(defaults), frozenset(to_float))


def _default(column: introspect.Column, kept: str) -> Any:
    """The value an omitted column gets, when a literal the affinity keeps; else UNKNOWN."""
    if column.primary_key and kept == "INTEGER":
        return UNKNOWN  # an INTEGER PRIMARY KEY left out becomes the new rowid
    text = column.default
    if text is None or text.upper() == "NULL":
        return None
    if _INTEGER_LITERAL.match(text):
        number = int(text)
        if not INT64_MIN <= number <= INT64_MAX:
            return UNKNOWN  # SQLite reads a longer literal as a REAL
        if kept in ("INTEGER", "NUMERIC", "BLOB"):
            return number
        if kept == "REAL":
            return float(number) + 0.0
        return UNKNOWN
    string = _STRING_LITERAL.match(text)
    if string is not None and kept in ("TEXT", "BLOB"):
        return string.group(1).replace("''", "'")
    return UNKNOWN
