"""Column specifications derived from the record classes: the identifier allow-list."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from mangostore.errors import InvalidValueError, UnknownColumnError
from mangostore.records import ENCRYPTED_MARK, JSON_MARK, Record
from mangostore.sql import quote_identifier

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
        if value is None:
            if not self.nullable:
                raise InvalidValueError(f"{table}.{self.name} must not be None", field=self.name)
            return None
        kind = self.kind
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

    def column(self, name: str) -> ColumnSpec:
        """Return a column's spec, refusing names that are not in the schema.

        Raises:
            UnknownColumnError: naming the table and listing its columns.
        """
        spec = self.columns.get(name) if isinstance(name, str) else None
        if spec is None:
            raise UnknownColumnError(
                f"{self.name} has no column {name!r}; its columns are {', '.join(self.names)}",
                field=name if isinstance(name, str) else None,
            )
        return spec

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
    )
