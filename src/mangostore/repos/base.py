"""The base repository: create, get, update, delete, list, count, exists, batches.

Every identifier in the SQL built here comes from the table's :class:`TableSpec`
(an allow-list made from the record class) and is quoted; every value is a ``?``
parameter. Encrypted columns are sealed inside the write transaction with the
owner's data key and opened on the way out.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from mangostore.engine.connection import UndecodableText, driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    BatchError,
    ConfigurationError,
    ForeignKeyError,
    InvalidValueError,
    JSONValueError,
    MangoError,
    MissingFieldError,
    NotFoundError,
    TamperedDataError,
    UniqueConstraintError,
)
from mangostore.ids import new_id
from mangostore.keys.field_cipher import FieldCipher
from mangostore.records import Record, Unreadable
from mangostore.repos.ports import RepositoryDatabase
from mangostore.repos.spec import TableSpec, table_spec
from mangostore.sql import placeholders, quote_identifier

R = TypeVar("R", bound=Record)

_UNSET = object()

#: Columns a caller may leave out of ``create`` because the repository fills them.
_AUTO_COLUMNS = ("id", "created_at", "updated_at")


class Repository(Generic[R]):
    """Typed access to one table. Obtain it from the database (``db.projects``)."""

    #: Extra columns set to "now" on create when not given (e.g. ``timestamp``).
    now_on_create: tuple[str, ...] = ()

    def __init__(self, db: RepositoryDatabase, record: type[R]) -> None:
        self._db = db
        self._record = record
        self.spec: TableSpec = table_spec(record)  # type: ignore[arg-type]
        spec = self.spec
        self._now_columns = tuple(
            c for c in (*self.now_on_create, "created_at", "updated_at") if c in spec.columns
        )
        self._touch_column = "updated_at" if "updated_at" in spec.columns else None
        self._required = self._required_columns()
        self._sql_get = f"SELECT {spec.select_list} FROM {spec.quoted_table} WHERE id = ?"
        self._id_column = spec.column("id")
        self._sql_cache: dict[tuple[str, ...], str] = {}
        self._foreign_keys: builtins.list[tuple[str, str, str]] | None = None
        self._field_cipher: FieldCipher | object | None = _UNSET

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec.name}>"

    # -- reading ------------------------------------------------------------------------

    def get(self, id: str, *, use_cache: bool | None = None) -> R:
        """Return the record with this id.

        ``use_cache`` (here and in every read) chooses whether the row may come
        from the query cache (default: ``Settings.cache_queries``); rows are cached,
        and encrypted columns are decrypted on every read.

        Raises:
            NotFoundError: no such record.
        """
        key = self._id_column.check(self.spec.name, id)
        rows = self._db.store.rows(self._sql_get, (key,), use_cache, self.spec.name)
        if not rows:
            raise NotFoundError(f"no {self.spec.name} record has id {id!r}")
        return self.record_from_row(rows[0])

    def list(
        self,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        use_cache: bool | None = None,
        **filters: Any,
    ) -> builtins.list[R]:
        """Return the records matching every filter (``column=value``).

        A filter value of ``None`` matches NULL; a list, tuple or set matches any of
        its values. ``order_by`` takes column names, ``"-name"`` for descending.

        Raises:
            UnknownColumnError: a filter or order-by name is not a column.
            InvalidValueError: a filter value has the wrong type, or targets an
                encrypted or JSON column (which cannot be compared in SQL).
        """
        where, params = self._where(filters)
        sql = f"SELECT {self.spec.select_list} FROM {self.spec.quoted_table}{where}"
        sql += self._order(order_by) + limit_clause(limit, offset)
        return self._select(sql, params, use_cache)

    def count(self, *, use_cache: bool | None = None, **filters: Any) -> int:
        """Return how many records match the filters (see :meth:`list`)."""
        where, params = self._where(filters)
        sql = f"SELECT count(*) FROM {self.spec.quoted_table}{where}"
        return int(self._db.store.rows(sql, params, use_cache, self.spec.name)[0][0])

    def exists(
        self, id: str | None = None, *, use_cache: bool | None = None, **filters: Any
    ) -> bool:
        """Tell whether a record with this id (and/or matching the filters) exists."""
        if id is not None:
            filters["id"] = id
        where, params = self._where(filters)
        sql = f"SELECT EXISTS (SELECT 1 FROM {self.spec.quoted_table}{where})"
        return bool(self._db.store.rows(sql, params, use_cache, self.spec.name)[0][0])

    def first(
        self,
        *,
        order_by: str | Sequence[str] | None = None,
        use_cache: bool | None = None,
        **filters: Any,
    ) -> R | None:
        """Return the first record matching the filters, or ``None``."""
        found = self.list(order_by=order_by, limit=1, use_cache=use_cache, **filters)
        return found[0] if found else None

    # -- writing ------------------------------------------------------------------------

    def create(self, **fields: Any) -> R:
        """Insert a record and return it as stored (database defaults filled in).

        ``id`` (a UUIDv7), ``created_at`` and ``updated_at`` are filled when absent.

        Raises:
            UnknownColumnError, MissingFieldError, InvalidValueError, JSONValueError:
                the input is wrong; nothing was written.
            UniqueConstraintError, ForeignKeyError: the database refused it.
        """
        with self._db.store.transaction() as conn:
            return self.insert_in(conn, fields)

    def create_many(self, items: Iterable[Mapping[str, Any]]) -> builtins.list[R]:
        """Insert many records in one transaction: all of them, or none.

        Raises:
            BatchError: with ``index`` of the failing item and the reason as ``__cause__``;
                nothing of the batch was written.
        """
        with self._db.store.transaction() as conn:
            return [
                _batch_item(index, lambda item=item: self.insert_in(conn, dict(item)))
                for index, item in enumerate(items)
            ]

    def update(self, id: str, /, **fields: Any) -> R:
        """Change some columns of a record and return it; ``updated_at`` is bumped.

        Raises:
            NotFoundError: no such record.
            UnknownColumnError, InvalidValueError, JSONValueError: bad input.
            UniqueConstraintError, ForeignKeyError: the database refused it.
        """
        with self._db.store.transaction() as conn:
            return self.update_in(conn, id, fields)

    def update_many(self, changes: Iterable[tuple[str, Mapping[str, Any]]]) -> builtins.list[R]:
        """Apply ``(id, fields)`` updates in one transaction: all of them, or none.

        Raises:
            BatchError: as for :meth:`create_many`.
        """
        with self._db.store.transaction() as conn:
            return [
                _batch_item(
                    index, lambda change=change: self.update_in(conn, change[0], dict(change[1]))
                )
                for index, change in enumerate(changes)
            ]

    def delete(self, id: str) -> bool:
        """Delete a record; return whether it existed.

        Raises:
            ForeignKeyError: other rows still refer to it.
        """
        key = self._id_column.check(self.spec.name, id)
        sql = f"DELETE FROM {self.spec.quoted_table} WHERE id = ?"
        with self._db.store.transaction() as conn:
            try:
                with driver_errors(self.spec.name):
                    return bool(conn.execute(sql, (key,)).rowcount)
            except ForeignKeyError as exc:
                table, column = self._referrer(conn, id) or ("other tables", None)
                raise ForeignKeyError(
                    f"cannot delete {self.spec.name} {id!r}: rows of {table} still refer to it"
                    f"{f' through {column}' if column else ''}; delete or re-point them first",
                    field=column,
                ) from exc.__cause__

    # -- internals shared with subclasses -------------------------------------------------

    def _select(
        self, sql: str, params: Sequence[Any], use_cache: bool | None = None
    ) -> builtins.list[R]:
        rows = self._db.store.rows(sql, params, use_cache, self.spec.name)
        # One damaged value must not hide every other row: it is listed as Unreadable.
        return [self.record_from_row(row, strict=False) for row in rows]

    def record_from_row(
        self, row: Sequence[Any], plain: Mapping[str, Any] | None = None, *, strict: bool = True
    ) -> R:
        """Turn a row selected with ``spec.select_list`` into a record.

        An encrypted value that cannot be decrypted raises :class:`TamperedDataError`,
        or with ``strict=False`` becomes an :class:`~mangostore.records.Unreadable`.
        """
        spec = self.spec
        values = list(row)
        for i in spec.json_idx:
            if values[i] is not None:
                values[i] = json.loads(values[i])
        for i in spec.bool_idx:
            if values[i] is not None:
                values[i] = bool(values[i])
        for i in spec.encrypted_idx:
            name = spec.names[i]
            if plain is not None and name in plain:
                values[i] = plain[name]
            elif values[i] is not None:
                try:
                    values[i] = self._decrypt(name, values, values[i])
                except TamperedDataError as exc:
                    if strict:
                        raise
                    values[i] = Unreadable(str(exc))
        return self._record(*values)

    def insert_in(self, conn: Connection, fields: dict[str, Any]) -> R:
        spec = self.spec
        now = self._db.clock.now_ms()
        for name in self._now_columns:
            fields.setdefault(name, now)
        if "id" not in fields:
            fields["id"] = new_id()
        missing = [c for c in self._required if c not in fields]
        if missing:
            raise MissingFieldError(f"{spec.name} needs {', '.join(missing)}", field=missing[0])
        values, secrets = self._encode(fields)
        if secrets:
            owner = fields["id"] if spec.owner == "id" else fields.get("user_id")
            self._seal(conn, values, secrets, fields["id"], owner)
        columns = tuple(values)
        sql = self._sql_cache.get(columns)
        if sql is None:
            sql = (
                f"INSERT INTO {spec.quoted_table} ({', '.join(map(quote_identifier, columns))}) "
                f"VALUES ({placeholders(len(columns))}) RETURNING {spec.select_list}"
            )
            self._sql_cache[columns] = sql
        row = self._write(conn, sql, tuple(values.values()), values)
        return self.record_from_row(row, secrets)

    def update_in(
        self, conn: Connection, id: str, fields: dict[str, Any], *, touch: bool = True
    ) -> R:
        spec = self.spec
        if "id" in fields:
            raise InvalidValueError(f"{spec.name}.id cannot be changed", field="id")
        if touch and self._touch_column is not None:
            fields.setdefault(self._touch_column, self._db.clock.now_ms())
        values, secrets = self._encode(fields)
        if not values:
            return self.get_in(conn, id)  # nothing to change
        if spec.encrypted_idx and (secrets or (spec.owner in values and spec.owner != "id")):
            current = self.get_in(conn, id)
            owner = values.get(spec.owner, getattr(current, spec.owner))  # type: ignore[arg-type]
            if owner != getattr(current, spec.owner):  # type: ignore[arg-type]
                # Ciphertexts are bound to their owner: moving a row re-seals them all.
                for name in spec.encrypted:
                    value = getattr(current, name)
                    if name not in values and value is not None:
                        values[name] = self._dump(name, value, nullable=True)
                        secrets[name] = value
            self._seal(conn, values, secrets, id, owner)
        assignments = ", ".join(f"{quote_identifier(c)} = ?" for c in values)
        sql = (
            f"UPDATE {spec.quoted_table} SET {assignments} WHERE id = ? "
            f"RETURNING {spec.select_list}"
        )
        key = self._id_column.check(spec.name, id)
        row = self._write(conn, sql, (*values.values(), key), values)
        if row is None:
            raise NotFoundError(f"no {spec.name} record has id {id!r}")
        return self.record_from_row(row, secrets)

    def get_in(self, conn: Connection, id: str) -> R:
        key = self._id_column.check(self.spec.name, id)
        with driver_errors(self.spec.name):
            row = conn.execute(self._sql_get, (key,)).fetchone()
        if row is None:
            raise NotFoundError(f"no {self.spec.name} record has id {id!r}")
        return self.record_from_row(row)

    def _encode(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate ``fields``; return (column -> bound value, encrypted column -> plaintext)."""
        spec = self.spec
        values: dict[str, Any] = {}
        secrets: dict[str, Any] = {}
        for name, value in fields.items():
            column = spec.column(name)
            if column.kind == "json":
                values[name] = self._dump(name, value, column.nullable)
            elif column.kind == "encrypted":
                values[name] = self._dump(name, value, column.nullable)
                if value is not None:
                    secrets[name] = value
            else:
                values[name] = column.check(spec.name, value)
        return values, secrets

    def _dump(self, name: str, value: Any, nullable: bool) -> str | None:
        label = f"{self.spec.name}.{name}"
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
                    f"{label} contains characters that are not valid Unicode "
                    "(an unpaired surrogate)",
                    field=name,
                ) from None
        else:
            size = len(text)
        limit = self._db.settings.json_max_bytes
        if size > limit:
            raise JSONValueError(
                f"{label} is larger than the {limit}-byte limit (Settings.json_max_bytes)",
                field=name,
            )
        return text

    def _cipher(self) -> FieldCipher | None:
        # Looked up once per repository (the store's cipher, as field_cipher_for
        # returns it): this runs for every encrypted value read or written.
        if self._field_cipher is _UNSET:
            self._field_cipher = self._db.store.field_cipher
        return self._field_cipher  # type: ignore[return-value]

    def _seal(
        self,
        conn: Connection,
        values: dict[str, Any],
        secrets: Mapping[str, Any],
        row_id: str,
        owner: Any,
    ) -> None:
        cipher = self._cipher()
        if cipher is None:
            return  # a database without a keyring stores these columns as plain JSON
        if not isinstance(owner, str):
            raise MissingFieldError(
                f"{self.spec.name} needs user_id to encrypt its protected fields", field="user_id"
            )
        for name in secrets:
            values[name] = cipher.encrypt(
                conn, self.spec.name, name, row_id, owner, values[name].encode("utf-8")
            )

    def _decrypt(self, name: str, values: Sequence[Any], stored: Any) -> Any:
        cipher = self._cipher()
        if isinstance(stored, str | UndecodableText):
            if cipher is not None:
                # With a keyring every stored value is an envelope; text here was
                # written around mangostore and must not be trusted.
                raise TamperedDataError(
                    f"{self.spec.name}.{name} of record {values[0]!r} is not an encrypted "
                    "envelope: it was modified outside mangostore"
                )
            if isinstance(stored, UndecodableText):
                raise TamperedDataError(
                    f"{self.spec.name}.{name} of record {values[0]!r} is not valid text: "
                    "it was modified outside mangostore"
                )
            return json.loads(stored)  # stored by a database without a keyring
        if cipher is None:
            raise ConfigurationError(
                f"{self.spec.name}.{name} is encrypted; open the database with its passphrase "
                "to read it"
            )
        spec = self.spec
        owner = values[spec.owner_idx] if spec.owner_idx is not None else ""
        plaintext = cipher.decrypt(spec.name, name, values[0], owner, bytes(stored))
        return json.loads(plaintext)

    def _write(
        self, conn: Connection, sql: str, params: Sequence[Any], values: Mapping[str, Any]
    ) -> Any:
        try:
            with driver_errors(self.spec.name):
                return conn.execute(sql, params).fetchone()
        except UniqueConstraintError as exc:
            raise self._explain_unique(exc) from exc.__cause__
        except ForeignKeyError as exc:
            raise self._explain_foreign_key(conn, values, exc) from exc.__cause__

    def _explain_unique(self, exc: UniqueConstraintError) -> UniqueConstraintError:
        # SQLite says "UNIQUE constraint failed: users.username[, users.x]".
        detail = str(exc).split(":", 1)[-1].split("(")[0]
        columns = [part.strip().split(".")[-1] for part in detail.split(",") if part.strip()]
        names = " and ".join(columns) or "a unique column"
        return UniqueConstraintError(
            f"{self.spec.name}.{names} must be unique: another record already has this value",
            field=columns[0] if columns else None,
        )

    def _explain_foreign_key(
        self, conn: Connection, values: Mapping[str, Any], exc: ForeignKeyError
    ) -> ForeignKeyError:
        # SQLite does not say which reference failed; find the first dangling one.
        for column, table, target in self._references(conn):
            value = values.get(column)
            if value is None:
                continue
            sql = f"SELECT 1 FROM {quote_identifier(table)} WHERE {quote_identifier(target)} = ?"
            if conn.execute(sql, (value,)).fetchone() is None:
                return ForeignKeyError(
                    f"{self.spec.name}.{column} refers to {table} {value!r}, which does not exist",
                    field=column,
                )
        return exc

    def _referrer(self, conn: Connection, id: str) -> tuple[str, str] | None:
        """Find a (table, column) whose rows still refer to record ``id``; failure path only."""
        tables = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        ).fetchall()
        for (table,) in tables:
            for column, target_table, target in conn.execute(
                'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', (table,)
            ).fetchall():
                if target_table != self.spec.name or (target or "id") != "id":
                    continue
                sql = (
                    f"SELECT 1 FROM {quote_identifier(table)} "
                    f"WHERE {quote_identifier(column)} = ? LIMIT 1"
                )
                if conn.execute(sql, (id,)).fetchone() is not None:
                    return table, column
        return None

    def _references(self, conn: Connection) -> builtins.list[tuple[str, str, str]]:
        if self._foreign_keys is None:
            rows = conn.execute(
                'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)',
                (self.spec.name,),
            ).fetchall()
            self._foreign_keys = [(r[0], r[1], r[2] or "id") for r in rows]
        return self._foreign_keys

    def _required_columns(self) -> tuple[str, ...]:
        """Columns that must be given to ``create``."""
        # No column of the design is NOT NULL with a DEFAULT, so "not nullable" means "required".
        return tuple(
            name
            for name, column in self.spec.columns.items()
            if not column.nullable and name not in _AUTO_COLUMNS and name not in self._now_columns
        )

    def _where(self, filters: Mapping[str, Any]) -> tuple[str, builtins.list[Any]]:
        if not filters:
            return "", []
        spec = self.spec
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
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

    def _order(self, order_by: str | Sequence[str] | None) -> str:
        if order_by is None:
            return ""
        keys = [order_by] if isinstance(order_by, str) else list(order_by)
        parts = []
        for key in keys:
            if not isinstance(key, str):
                raise InvalidValueError("order_by takes column names", field="order_by")
            descending = key.startswith("-")
            name = key[1:] if descending else key
            self.spec.column(name)
            parts.append(f"{quote_identifier(name)} {'DESC' if descending else 'ASC'}")
        return " ORDER BY " + ", ".join(parts) if parts else ""


class UserOwnedRepository(Repository[R]):
    """A repository for a table with a ``user_id`` column."""

    def find_by_user(
        self,
        user_id: str,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        use_cache: bool | None = None,
    ) -> builtins.list[R]:
        """Return the user's records."""
        return self.list(
            order_by=order_by, limit=limit, offset=offset, use_cache=use_cache, user_id=user_id
        )


def _batch_item(index: int, run: Any) -> Any:
    try:
        return run()
    except MangoError as exc:
        raise BatchError(
            f"batch item {index} failed: {exc}; nothing was written", index=index
        ) from exc


def limit_clause(limit: int | None, offset: int | None) -> str:
    for name, value in (("limit", limit), ("offset", offset)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise InvalidValueError(f"{name} must be a non-negative integer", field=name)
    if limit is None and offset is None:
        return ""
    # Both are validated integers, so formatting them into the SQL cannot inject.
    return f" LIMIT {-1 if limit is None else limit} OFFSET {offset or 0}"
