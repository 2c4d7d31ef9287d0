"""Column specifications derived from the record classes: the identifier allow-list,
and the pieces of SQL and the values built from it (filters, ordering, JSON text)."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from mangostore.errors import (
    InvalidValueError,
    JSONValueError,
    MissingFieldError,
    UnknownColumnError,
)
from mangostore.records import ENCRYPTED_MARK, JSON_MARK, Record
from mangostore.sql import placeholders, quote_identifier

Kind = Literal["text", "int", "float", "bool", "json", "encrypted", "blob"]
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_PLAIN_KINDS: dict[Any, Kind] = {
    str: "text",
    int: "int",
    float: "float",
    bool: "bool",
    bytes: "blob",
}


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """How one column is stored and what it accepts."""

    name: str
    kind: Kind
    nullable: bool
    choices: tuple[str, ...] | None

    def check(self, table: str, value: Any) -> Any:
        """Validate a plain (non-JSON) value and return what to bind for it.

        Raises:
            InvalidValueError: naming the column, the expected type and any allowed values.
        """
        kind = self.kind
        if value is None:
            if not self.nullable:
                raise InvalidValueError(f"{table}.{self.name} must not be None", field=self.name)
            return None
        if kind == "text":
            if not isinstance(value, str):
                raise self._wrong(table, value, "a string")
            if not encodable(value):
                raise InvalidValueError(
                    f"{table}.{self.name} contains characters that are not valid Unicode "
                    "(an unpaired surrogate)",
                    field=self.name,
                )
            if self.choices is not None and value not in self.choices:
                raise InvalidValueError(
                    f"{table}.{self.name} must be one of {', '.join(self.choices)}; got {value!r}",
                    field=self.name,
                )
            return value
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise self._wrong(table, value, "an integer")
            if not INT64_MIN <= value <= INT64_MAX:
                raise InvalidValueError(
                    f"{table}.{self.name} must fit in 64 bits (SQLite's integer range)",
                    field=self.name,
                )
            return value
        if kind == "float":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise self._wrong(table, value, "a number")
            if not math.isfinite(value):
                # SQLite would silently store NaN as NULL.
                raise InvalidValueError(
                    f"{table}.{self.name} must be a finite number", field=self.name
                )
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise self._wrong(table, value, "True or False")
            return int(value)
        if kind == "blob":
            if not isinstance(value, bytes | bytearray | memoryview):
                raise self._wrong(table, value, "bytes")
            return bytes(value)
        return value  # json and encrypted are serialised by the repository

    def _wrong(self, table: str, value: Any, expected: str) -> InvalidValueError:
        return InvalidValueError(
            f"{table}.{self.name} must be {expected}, not {type(value).__name__}", field=self.name
        )


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table as the repository layer sees it."""

    name: str
    record: type[Record]
    columns: dict[str, ColumnSpec]
    names: tuple[str, ...]
    #: Quoted, comma-separated column list in record field order.
    select_list: str
    quoted_table: str
    json_idx: tuple[int, ...]
    bool_idx: tuple[int, ...]
    encrypted_idx: tuple[int, ...]
    #: Column naming the owning user (``id`` for users, ``user_id`` elsewhere), if any.
    owner: str | None
    #: Position of ``owner`` in a row selected with ``select_list``.
    owner_idx: int | None
    #: Column name -> its :meth:`ColumnSpec.check` for this table, for the plain (not
    #: JSON, not encrypted) columns.
    checkers: Mapping[str, Callable[[Any], Any]] = field(
        default_factory=dict, repr=False, compare=False
    )
    #: Text columns that take any string (no enumeration), and integer columns: the
    #: common valid values of these are recognised by exact type in :func:`encode_fields`.
    free_text: frozenset[str] = frozenset()
    integers: frozenset[str] = frozenset()

    def column(self, name: str) -> ColumnSpec:
        """Return a column's spec, refusing names that are not in the schema.

        Raises:
            UnknownColumnError: naming the table and listing its columns.
        """
        spec = self.columns.get(name) if isinstance(name, str) else None
        if spec is None:
            close = (
                difflib.get_close_matches(name, self.names, n=1) if isinstance(name, str) else []
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownColumnError(
                f"{self.name} has no column {name!r}{hint}; its columns are "
                f"{', '.join(self.names)}",
                field=name if isinstance(name, str) else None,
            )
        return spec

    def refuse_missing(self, given: Iterable[str], required: Sequence[str]) -> NoReturn:
        """Refuse fields that leave out a required column, naming an unknown one first.

        A misspelt required column (``usernme``) is both unknown and missing: the
        spelling that was given is what the caller has to fix, so it is reported.

        Raises:
            UnknownColumnError: a name in ``given`` is not a column.
            MissingFieldError: otherwise, naming the first required column not given.
        """
        names = list(given)
        for name in names:
            self.column(name)
        missing = [c for c in required if c not in names]
        raise MissingFieldError(f"{self.name} needs {', '.join(missing)}", field=missing[0])

    @property
    def encrypted(self) -> tuple[str, ...]:
        """Names of the columns encrypted at field level."""
        return tuple(self.names[i] for i in self.encrypted_idx)


def encodable(text: str) -> bool:
    """Tell whether ``text`` can be stored as UTF-8 (lone surrogates cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _column(name: str, hint: Any) -> ColumnSpec:
    nullable = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        nullable = True
        (hint,) = (a for a in args if a is not type(None))
    choices = None
    if typing.get_origin(hint) is typing.Annotated:
        meta = hint.__metadata__
        kind: Kind = "encrypted" if ENCRYPTED_MARK in meta else "json"
        assert ENCRYPTED_MARK in meta or JSON_MARK in meta
    elif typing.get_origin(hint) is Literal:
        kind = "text"
        choices = tuple(typing.get_args(hint))
    else:
        kind = _PLAIN_KINDS[hint]
    return ColumnSpec(name, kind, nullable, choices)


@functools.cache
def table_spec(record: type[Record]) -> TableSpec:
    """Build (once) the spec of ``record``'s table from its annotations."""
    hints = typing.get_type_hints(record, include_extras=True)
    names = tuple(f.name for f in dataclasses.fields(record))
    columns = {n: _column(n, hints[n]) for n in names}
    kinds = [columns[n].kind for n in names]
    owner = "id" if record.__table__ == "users" else ("user_id" if "user_id" in columns else None)
    return TableSpec(
        name=record.__table__,
        record=record,
        columns=columns,
        names=names,
        select_list=", ".join(quote_identifier(n) for n in names),
        quoted_table=quote_identifier(record.__table__),
        json_idx=tuple(i for i, k in enumerate(kinds) if k == "json"),
        bool_idx=tuple(i for i, k in enumerate(kinds) if k == "bool"),
        encrypted_idx=tuple(i for i, k in enumerate(kinds) if k == "encrypted"),
        owner=owner,
        owner_idx=names.index(owner) if owner is not None else None,
        checkers={
            n: functools.partial(c.check, record.__table__)
            for n, c in columns.items()
            if c.kind not in ("json", "encrypted")
        },
        free_text=frozenset(n for n, c in columns.items() if c.kind == "text" and not c.choices),
        integers=frozenset(n for n, c in columns.items() if c.kind == "int"),
    )


def dump_json(table: str, name: str, value: Any, nullable: bool, limit_bytes: int) -> str | None:
    """Serialise a JSON (or, before sealing, an encrypted) column's value.

    Raises:
        InvalidValueError: ``None`` for a column that is not nullable.
        JSONValueError: not serialisable, nested too deeply, not valid Unicode, or
            larger than ``limit_bytes`` (``Settings.json_max_bytes``).
    """
    label = f"{table}.{name}"
    if value is None:
        if not nullable:
            raise InvalidValueError(f"{label} must not be None", field=name)
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise JSONValueError(f"{label} must be JSON-serialisable: {exc}", field=name) from None
    except RecursionError:
        raise JSONValueError(f"{label} is nested too deeply to store", field=name) from None
    if not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise JSONValueError(
                f"{label} contains characters that are not valid Unicode (an unpaired surrogate)",
                field=name,
            ) from None
    else:
        size = len(text)
    if size > limit_bytes:
        raise JSONValueError(
            f"{label} is larger than the {limit_bytes}-byte limit (Settings.json_max_bytes)",
            field=name,
        )
    return text


def encode_fields(
    spec: TableSpec, fields: Mapping[str, Any], json_limit_bytes: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a write's ``fields`` and return what to bind for them.

    Returns:
        ``(column -> value to bind, encrypted column -> its plaintext)``: JSON and
        encrypted columns are bound as JSON text (encrypted ones are sealed later).

    Raises:
        UnknownColumnError, InvalidValueError, JSONValueError: naming the field.
    """
    checkers, free_text, integers = spec.checkers, spec.free_text, spec.integers
    values: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for name, value in fields.items():
        # This runs for every value written: the common valid cases (an ASCII string
        # for a free-text column, an integer in range) by exact type first.
        cls = type(value)
        if cls is str:
            if name in free_text and value.isascii():
                values[name] = value
                continue
        elif cls is int and name in integers and INT64_MIN <= value <= INT64_MAX:
            values[name] = value
            continue
        check = checkers.get(name)
        if check is not None:
            values[name] = check(value)
            continue
        column = spec.column(name)  # raises UnknownColumnError
        values[name] = dump_json(spec.name, name, value, column.nullable, json_limit_bytes)
        if column.kind == "encrypted" and value is not None:
            secrets[name] = value
    return values, secrets


def where_clause(spec: TableSpec, filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Return `` WHERE ...`` matching every filter (``column=value``) and its parameters.

    ``None`` matches NULL; a list, tuple or set matches any of its values.

    Raises:
        UnknownColumnError: a name is not a column.
        InvalidValueError: a value has the wrong type, or targets a JSON or encrypted
            column (which cannot be compared in SQL).
    """
    if not filters:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    for name, value in filters.items():
        column = spec.column(name)
        if column.kind in ("json", "encrypted"):
            raise InvalidValueError(
                f"{spec.name}.{name} holds {column.kind} data and cannot be filtered on",
                field=name,
            )
        quoted = quote_identifier(name)
        if value is None:
            clauses.append(f"{quoted} IS NULL")
        elif isinstance(value, list | tuple | set | frozenset):
            items = [column.check(spec.name, v) for v in value]
            if items:
                clauses.append(f"{quoted} IN ({placeholders(len(items))})")
                params.extend(items)
            else:
                clauses.append("0")
        else:
            clauses.append(f"{quoted} = ?")
            params.append(column.check(spec.name, value))
    return " WHERE " + " AND ".join(clauses), params


def order_clause(spec: TableSpec, order_by: str | Sequence[str] | None) -> str:
    """Return `` ORDER BY ...`` for column names (``"-name"`` descending), or ``""``.

    Raises:
        UnknownColumnError: a name is not a column.
        InvalidValueError: ``order_by`` holds something other than names.
    """
    if order_by is None:
        return ""
    keys = [order_by] if isinstance(order_by, str) else list(order_by)
    parts = []
    for key in keys:
        if not isinstance(key, str):
            raise InvalidValueError("order_by takes column names", field="order_by")
        descending = key.startswith("-")
        name = key[1:] if descending else key
        spec.column(name)
        parts.append(f"{quote_identifier(name)} {'DESC' if descending else 'ASC'}")
    return " ORDER BY " + ", ".join(parts) if parts else ""


def limit_clause(limit: int | None, offset: int | None) -> str:
    """Return `` LIMIT n OFFSET m`` for validated integers, or ``""``.

    Raises:
        InvalidValueError: ``limit`` or ``offset`` is not a non-negative integer.
    """
    for name, value in (("limit", limit), ("offset", offset)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise InvalidValueError(f"{name} must be a non-negative integer", field=name)
    if limit is None and offset is None:
        return ""
    # Both are validated integers, so formatting them into the SQL cannot inject.
    return f" LIMIT {-1 if limit is None else limit} OFFSET {offset or 0}"
