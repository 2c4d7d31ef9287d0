"""Naming the column behind a constraint SQLite refused a write for.

SQLite's message names the columns of a UNIQUE index, but not which foreign key of a
row points nowhere, nor which rows still refer to a row that cannot be deleted. These
find out, on the failure path only, so that every error names its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mangostore.engine.pragmas import Connection
from mangostore.errors import ForeignKeyError, UniqueConstraintError
from mangostore.schema import introspect
from mangostore.sql import quote_identifier

__all__ = ["References", "explain_unique"]


def explain_unique(table: str, exc: UniqueConstraintError) -> UniqueConstraintError:
    """Return the error for a UNIQUE clash on ``table``, naming its column(s)."""
    # SQLite says "UNIQUE constraint failed: users.username[, users.x]".
    detail = str(exc).split(":", 1)[-1].split("(")[0]
    columns = [part.strip().split(".")[-1] for part in detail.split(",") if part.strip()]
    names = " and ".join(columns) or "a unique column"
    return UniqueConstraintError(
        f"{table}.{names} must be unique: another record already has this value",
        field=columns[0] if columns else None,
    )


class References:
    """The foreign keys of one table (read once) and the rows that refer to it."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._foreign_keys: list[tuple[str, str, str]] | None = None

    def explain(
        self, conn: Connection, values: Mapping[str, Any], exc: ForeignKeyError
    ) -> ForeignKeyError:
        """Return the error for a write of ``values`` that SQLite refused for a foreign
        key, naming the first column that refers to a row that does not exist."""
        for column, table, target in self._references(conn):
            value = values.get(column)
            if value is None:
                continue
            sql = f"SELECT 1 FROM {quote_identifier(table)} WHERE {quote_identifier(target)} = ?"
            if conn.execute(sql, (value,)).fetchone() is None:
                return ForeignKeyError(
                    f"{self.table}.{column} refers to {table} {value!r}, which does not exist",
                    field=column,
                )
        return exc

    def referrer(self, conn: Connection, id: str) -> tuple[str, str] | None:
        """Find a (table, column) whose rows still refer to record ``id``; failure path only."""
        tables = [t.name for t in introspect.schema_objects(conn, "table") if not t.internal]
        for table in tables:
            for key in introspect.foreign_keys(conn, table):
                if key.parent != self.table or (key.target or "id") != "id":
                    continue
                column = key.column
                sql = (
                    f"SELECT 1 FROM {quote_identifier(table)} "
                    f"WHERE {quote_identifier(column)} = ? LIMIT 1"
                )
                if conn.execute(sql, (id,)).fetchone() is not None:
                    return table, column
        return None

    def _references(self, conn: Connection) -> list[tuple[str, str, str]]:
        if self._foreign_keys is None:
            self._foreign_keys = [
                (key.column, key.parent, key.target or "id")
                for key in introspect.foreign_keys(conn, self.table)
            ]
        return self._foreign_keys
