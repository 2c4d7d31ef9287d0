"""The base repository: create, get, update, delete, list, count, exists, batches.

Every identifier in the SQL built here comes from the table's :class:`TableSpec`
(an allow-list made from the record class) and is quoted; every value is a ``?``
parameter. Encrypted columns are sealed inside the write transaction with the
owner's data key and opened on the way out.

Writes run as few statements as their guarantees allow. A ``create`` or ``update``
that is one statement joins the caller's transaction without a savepoint: a statement
that fails leaves nothing of itself behind and the transaction usable. A savepoint is
made where several statements must succeed or fail together: a subclass that writes
more than the row (its ``insert_in`` or ``update_in`` is its own), the first value
sealed for a user in a transaction (which may record a new data key), and batches.
An INSERT returns no row when :mod:`mangostore.repos.stored` proves what it stores;
otherwise, and for every UPDATE, ``RETURNING`` hands back the row as stored.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from mangostore.engine.connection import (
    driver_errors,
    is_driver_error,
    translate_error,
)
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    BatchError,
    ForeignKeyError,
    InvalidValueError,
    MangoError,
    NotFoundError,
    TamperedDataError,
    UniqueConstraintError,
)
from mangostore.ids import new_id
from mangostore.keys.field_cipher import FieldCipher
from mangostore.monitor.connection import execute_unmonitored
from mangostore.records import Record, Unreadable
from mangostore.repos.batch import StatementRefused, insert_rows, plain_rows
from mangostore.repos.constraints import References, explain_unique
from mangostore.repos.ports import RepositoryDatabase
from mangostore.repos.sealing import FieldSealer
from mangostore.repos.spec import (
    TableSpec,
    dump_json,
    encode_fields,
    limit_clause,
    order_clause,
    table_spec,
    where_clause,
)
from mangostore.repos.stored import WritePlans, check_count
from mangostore.sql import quote_identifier

__all__ = ["Repository", "UserOwnedRepository", "limit_clause"]

R = TypeVar("R", bound=Record)

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
        self._required_set = frozenset(self._required)
        self._filled = frozenset(("id", *self._now_columns))  # filled in when left out
        self._auto_order = (*self._now_columns, "id")  # the order _prepare_insert fills them
        self._sql_get = f"SELECT {spec.select_list} FROM {spec.quoted_table} WHERE id = ?"
        self._id_column = spec.column("id")
        self._plans = WritePlans(spec)
        self._references = References(spec.name)
        self._fields = FieldSealer(spec.name, lambda: db.store.field_cipher)
        # A subclass with its own insert_in / update_in writes more than the row, so
        # those several statements get a savepoint; the base ones are one statement.
        self._one_statement_insert = type(self).insert_in is Repository.insert_in
        self._one_statement_update = type(self).update_in is Repository.update_in

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
        where, params = where_clause(self.spec, filters)
        sql = f"SELECT {self.spec.select_list} FROM {self.spec.quoted_table}{where}"
        sql += order_clause(self.spec, order_by) + limit_clause(limit, offset)
        return self._select(sql, params, use_cache)

    def count(self, *, use_cache: bool | None = None, **filters: Any) -> int:
        """Return how many records match the filters (see :meth:`list`)."""
        where, params = where_clause(self.spec, filters)
        sql = f"SELECT count(*) FROM {self.spec.quoted_table}{where}"
        return int(self._db.store.rows(sql, params, use_cache, self.spec.name)[0][0])

    def exists(
        self, id: str | None = None, *, use_cache: bool | None = None, **filters: Any
    ) -> bool:
        """Tell whether a record with this id (and/or matching the filters) exists."""
        if id is not None:
            filters["id"] = id
        where, params = where_clause(self.spec, filters)
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
        Inside ``db.transaction()`` it joins the transaction; a failed ``create``
        writes nothing and leaves the transaction usable.

        Raises:
            UnknownColumnError, MissingFieldError, InvalidValueError, JSONValueError:
                the input is wrong; nothing was written.
            UniqueConstraintError, ForeignKeyError: the database refused it.
        """
        store = self._db.store
        conn = store.joined_transaction() if self._one_statement_insert else None
        if conn is not None:
            return self._insert(conn, fields, alone=True)
        with store.transaction() as conn:
            return self.insert_in(conn, fields)

    def create_many(self, items: Iterable[Mapping[str, Any]]) -> builtins.list[R]:
        """Insert many records in one transaction: all of them, or none.

        Consecutive items naming the same columns go in multi-row INSERT statements,
        after every one of them was checked (a column at a time for plain columns) and
        its encrypted values sealed. When SQLite refuses a statement, the batch is
        rolled back and tried one item at a time, to name the item. Inside a
        transaction the batch is a savepoint of it.

        Raises:
            BatchError: with ``index`` of the failing item and the reason as ``__cause__``;
                nothing of the batch was written.
        """
        rows = builtins.list(items)
        store = self._db.store
        if self._one_statement_insert:
            try:
                with store.transaction() as conn:
                    return self._insert_batch(conn, rows)
            except StatementRefused:
                pass  # SQLite refused a row of a multi-row INSERT: find which, one by one
        with store.transaction() as conn:
            return [
                _batch_item(index, lambda item=item: self.insert_in(conn, dict(item)))
                for index, item in enumerate(rows)
            ]

    def update(self, id: str, /, **fields: Any) -> R:
        """Change some columns of a record and return it; ``updated_at`` is bumped.

        Inside ``db.transaction()`` it joins the transaction; a failed ``update``
        changes nothing and leaves the transaction usable.

        Raises:
            NotFoundError: no such record.
            UnknownColumnError, InvalidValueError, JSONValueError: bad input.
            UniqueConstraintError, ForeignKeyError: the database refused it.
        """
        store = self._db.store
        conn = store.joined_transaction() if self._one_statement_update else None
        if conn is not None:
            return self._update(conn, id, fields, touch=True, alone=True)
        with store.transaction() as conn:
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
                table, column = self._references.referrer(conn, id) or ("other tables", None)
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
        """Insert a record on ``conn``, inside the caller's transaction, and return it.

        The caller's transaction (or savepoint) makes it atomic with the caller's
        other statements. Raises as :meth:`create`.
        """
        return self._insert(conn, fields, alone=False)

    def update_in(
        self, conn: Connection, id: str, fields: dict[str, Any], *, touch: bool = True
    ) -> R:
        """Update a record on ``conn``, inside the caller's transaction, and return it.

        ``touch=False`` leaves ``updated_at`` alone. Raises as :meth:`update`.
        """
        return self._update(conn, id, fields, touch=touch, alone=False)

    def _insert(self, conn: Connection, fields: dict[str, Any], *, alone: bool) -> R:
        """Validate, seal and insert one row. ``alone``: no transaction or savepoint of
        the caller's surrounds it, so this makes one where several statements run."""
        values, secrets, owner = self._prepare_insert(fields, self._db.clock.now_ms())
        if alone and secrets and not self._key_ready(owner, len(secrets)):
            # Sealing reads the owner's key and may record a new one: its row and this
            # row stand or fall together.
            with self._db.store.transaction() as conn:
                self._seal(conn, values, secrets, values["id"], owner)
                return self._insert_row(conn, values, secrets)
        if secrets:
            self._seal(conn, values, secrets, values["id"], owner)
        return self._insert_row(conn, values, secrets)

    def _prepare_insert(
        self, fields: dict[str, Any], now: int
    ) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """Fill the automatic columns and validate; return (values, secrets, owner)."""
        if not fields.keys() >= self._filled:
            for name in self._now_columns:
                if name not in fields:
                    fields[name] = now
            if "id" not in fields:
                fields["id"] = new_id()
        if not fields.keys() >= self._required_set:
            self.spec.refuse_missing(fields, self._required)
        values, secrets = self._encode(fields)
        owner = None
        if secrets:
            owner = fields["id"] if self.spec.owner == "id" else fields.get("user_id")
        return values, secrets, owner

    def _insert_row(self, conn: Connection, values: dict[str, Any], secrets: dict[str, Any]) -> R:
        """INSERT validated (and sealed) ``values``; return the record as stored."""
        bound = tuple(values.values())
        sql, shape = self._plans.insert(conn, tuple(values))
        cursor = self._execute(conn, sql, bound, values)
        if shape is not None:
            check_count(self.spec.name, cursor.rowcount, 1)
            return self.record_from_row(shape.stored(bound), secrets)
        # The INSERT returns the row. Read to the end (fetchall): a RETURNING statement
        # left unfinished can cost more to reset than to finish (10 µs, an UPDATE's).
        returned = cursor.fetchall()
        check_count(self.spec.name, len(returned), 1)
        return self.record_from_row(returned[0], secrets)

    def _insert_batch(
        self, conn: Connection, items: Sequence[Mapping[str, Any]]
    ) -> builtins.list[R]:
        """Insert every item, several to a statement: runs of items naming the same
        columns (see :meth:`create_many`)."""
        now = self._db.clock.now_ms()
        records: builtins.list[R] = []
        start = 0
        while start < len(items):
            keys = tuple(items[start])
            stop = start + 1
            while stop < len(items) and tuple(items[stop]) == keys:
                stop += 1
            records += self._insert_run(conn, items, start, stop, keys, now)
            start = stop
        return records

    def _insert_run(
        self,
        conn: Connection,
        items: Sequence[Mapping[str, Any]],
        start: int,
        stop: int,
        keys: tuple[str, ...],
        now: int,
    ) -> builtins.list[R]:
        """Insert ``items[start:stop]``, which all name ``keys``: checked a column at a
        time when these are plain columns (:func:`~mangostore.repos.batch.plain_rows`),
        else one by one."""
        run = items[start:stop]
        spec = self.spec
        auto = [name for name in self._auto_order if name not in keys]  # "id" comes last
        columns = (*keys, *auto)
        rows = plain_rows(spec, keys, run) if self._required_set.issubset(keys) else None
        shape = None if rows is None else self._plans.insert(conn, columns)[1]
        if rows is None or shape is None:
            return self._insert_checked(conn, run, start, now)
        if auto:
            filled = tuple(now for name in auto if name != "id")
            if "id" in auto:
                rows = [row + filled + (new_id(),) for row in rows]
            else:
                rows = [row + filled for row in rows]
        insert_rows(conn, spec.name, spec.quoted_table, columns, rows)
        record = self._record
        return [record(*shape.record(row)) for row in rows]

    def _insert_checked(
        self, conn: Connection, run: Sequence[Mapping[str, Any]], start: int, now: int
    ) -> builtins.list[R]:
        """Check (and seal) a run of items one by one, then insert them; ``start`` is the
        index of the first in the batch, for :class:`BatchError`."""
        prepared = []
        for offset, item in enumerate(run):
            try:
                values, secrets, owner = self._prepare_insert(dict(item), now)
                if secrets:
                    self._seal(conn, values, secrets, values["id"], owner)
            except MangoError as exc:
                raise _batch_error(start + offset, exc) from exc
            prepared.append((values, secrets))
        _, shape = self._plans.insert(conn, tuple(prepared[0][0]))
        if shape is None:  # what is stored cannot be known without reading it: row by row
            return [self._insert_row(conn, values, secrets) for values, secrets in prepared]
        bound = [tuple(values.values()) for values, _ in prepared]
        spec = self.spec
        insert_rows(conn, spec.name, spec.quoted_table, tuple(prepared[0][0]), bound)
        record = self.record_from_row
        return [
            record(shape.stored(row), secrets)
            for row, (_, secrets) in zip(bound, prepared, strict=True)
        ]

    def _update(
        self, conn: Connection, id: str, fields: dict[str, Any], *, touch: bool, alone: bool
    ) -> R:
        """Validate, seal and update one row (``alone`` as for :meth:`_insert`)."""
        spec = self.spec
        if "id" in fields:
            raise InvalidValueError(f"{spec.name}.id cannot be changed", field="id")
        if touch and self._touch_column is not None:
            fields.setdefault(self._touch_column, self._db.clock.now_ms())
        values, secrets = self._encode(fields)
        key = self._id_column.check(spec.name, id)
        if not values:
            return self.get_in(conn, id)  # nothing to change
        owner_column = spec.owner or "id"
        moving = owner_column != "id" and owner_column in values
        owner = None
        if spec.encrypted_idx and (secrets or moving) and self._cipher() is not None:
            owner = id if owner_column == "id" else self._owner_of(conn, key)
            if moving and owner != values[owner_column]:
                owner = values[owner_column]
                # Ciphertexts are bound to their owner: moving a row re-seals them all.
                current = self.get_in(conn, id)
                for name in spec.encrypted:
                    value = getattr(current, name)
                    if name not in values and value is not None:
                        values[name] = dump_json(
                            spec.name, name, value, True, self._db.settings.json_max_bytes
                        )
                        secrets[name] = value
            if secrets and alone and not self._key_ready(owner, len(secrets)):
                with self._db.store.transaction() as conn:
                    return self._update_row(conn, id, key, values, secrets, owner)
        return self._update_row(conn, id, key, values, secrets, owner)

    def _update_row(
        self,
        conn: Connection,
        id: str,
        key: Any,
        values: dict[str, Any],
        secrets: dict[str, Any],
        owner: Any,
    ) -> R:
        if secrets:
            self._seal(conn, values, secrets, id, owner)
        sql = self._plans.update(tuple(values))
        returned = self._execute(conn, sql, (*values.values(), key), values).fetchall()
        if not returned:
            raise NotFoundError(f"no {self.spec.name} record has id {id!r}")
        return self.record_from_row(returned[0], secrets)

    def _owner_of(self, conn: Connection, key: Any) -> Any:
        """The owner the row has now (its encrypted values are sealed for them)."""
        spec = self.spec
        assert spec.owner is not None  # only tables with encrypted columns ask
        sql = f"SELECT {quote_identifier(spec.owner)} FROM {spec.quoted_table} WHERE id = ?"
        # The repository's own bookkeeping, run for every sealed update: not timed.
        try:
            rows = execute_unmonitored(conn, sql, (key,)).fetchall()
        except Exception as exc:
            if is_driver_error(exc):
                translate_error(exc, spec.name)
            raise
        if not rows:
            raise NotFoundError(f"no {spec.name} record has id {key!r}")
        return rows[0][0]

    def get_in(self, conn: Connection, id: str) -> R:
        key = self._id_column.check(self.spec.name, id)
        with driver_errors(self.spec.name):
            row = conn.execute(self._sql_get, (key,)).fetchone()
        if row is None:
            raise NotFoundError(f"no {self.spec.name} record has id {id!r}")
        return self.record_from_row(row)

    def _encode(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate ``fields``; return (column -> bound value, encrypted column -> plaintext)."""
        return encode_fields(self.spec, fields, self._db.settings.json_max_bytes)

    def _key_ready(self, owner: Any, values: int) -> bool:
        return self._fields.key_ready(owner, values)

    def _cipher(self) -> FieldCipher | None:
        return self._fields.cipher()

    def _seal(
        self,
        conn: Connection,
        values: dict[str, Any],
        secrets: Mapping[str, Any],
        row_id: str,
        owner: Any,
    ) -> None:
        self._fields.seal(conn, values, secrets, row_id, owner)

    def _decrypt(self, name: str, values: Sequence[Any], stored: Any) -> Any:
        spec = self.spec
        owner = values[spec.owner_idx] if spec.owner_idx is not None else ""
        return self._fields.open(name, values[0], owner, stored)

    def _execute(
        self, conn: Connection, sql: str, params: Sequence[Any], values: Mapping[str, Any]
    ) -> Any:
        """Run a write and return its cursor; constraint errors name the field."""
        try:
            return conn.execute(sql, params)
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            try:
                translate_error(exc, self.spec.name)
            except UniqueConstraintError as unique:
                raise explain_unique(self.spec.name, unique) from exc
            except ForeignKeyError as foreign:
                raise self._references.explain(conn, values, foreign) from exc

    def _required_columns(self) -> tuple[str, ...]:
        """Columns that must be given to ``create``."""
        # No column of the design is NOT NULL with a DEFAULT, so "not nullable" means "required".
        return tuple(
            name
            for name, column in self.spec.columns.items()
            if not column.nullable and name not in _AUTO_COLUMNS and name not in self._now_columns
        )


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


def _batch_error(index: int, exc: MangoError) -> BatchError:
    return BatchError(f"batch item {index} failed: {exc}; nothing was written", index=index)


def _batch_item(index: int, run: Any) -> Any:
    try:
        return run()
    except MangoError as exc:
        raise _batch_error(index, exc) from exc
