"""The query tier: results of reads, keyed by (SQL, parameters), never served stale.

**What a statement reads** comes from SQLite's authorizer, not from the SQL text: the
first time a text is seen, it is compiled as ``EXPLAIN <statement>`` on the
connection that serves it, and every table (and virtual table) the compiler reports
reading becomes a tag of the cached result. Views report the tables under them. A
statement is not cached when it reads anything else (a ``pragma_*`` table, another
schema such as ``temp``), calls a function whose result changes on its own
(``random()``, the date and time functions, ``changes()``...) or is not a plain
read. The result is remembered per SQL text, so the driver's statement cache,
which skips recompiling and so the authorizer, does not matter.

**What a write changes** is learnt the same way on the writer connection: the
tables a statement inserts into, updates or deletes from, including those written
by its triggers (full-text indexes, audit rows) and foreign-key actions
(``ON DELETE CASCADE``), which SQLite compiles into the statement. They are
collected during the writer's transaction and their entries are dropped when it
commits, before the transaction's ``with`` block returns; a rollback discards them.
DDL (``CREATE``, ``DROP``, ``ALTER``...) flushes the whole tier. A read that was
running while a write committed is not stored afterwards: :meth:`MemoryCache.guard`.

**Writes by another process** (or another ``mangostore.open`` of the same file)
are detected with ``PRAGMA data_version`` before a cached result is served. It is
asked of the writer connection, whose value changes only when *another* connection
commits (this database's readers never write), so this process's own commits do not
flush the tier. To keep a hit from waiting for the writer, a
:class:`~mangostore.engine.commits.CommitWatch` (``data_version`` of a connection that
never writes, so it moves on every commit anywhere) is compared first: while it is
unchanged since the last check nothing was committed anywhere. When it moved, the
writer's ``data_version`` is read (when the writer is busy with another thread's
transaction, the read bypasses the tier). A change flushes the tier. Each commit of
this process checks itself off right after COMMIT, still holding the writer, so the
reads that follow find the watch verified. The watch is read before the writer's
``data_version``, so a commit that lands between the two is caught by one or the
other.

Virtual tables are tagged with their own name and with ``*virtual*``; a write to any
virtual table drops every cached read of one, which covers ``fts5vocab`` tables
reading another full-text index. An external-content FTS table (``content=``) is
also tagged with its content table.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from mangostore.cache.memory import MISSING, MemoryCache, TierStats
from mangostore.clock import Clock
from mangostore.engine.commits import CommitWatch
from mangostore.engine.connection import is_transaction_control
from mangostore.monitor.connection import (
    Action,
    InstrumentedConnection,
    capture_actions,
    execute_unmonitored,
    fetch_rows,
)
from mangostore.schema.introspect import SCHEMA_TABLE_NAMES, schema_objects, table_list

if TYPE_CHECKING:
    from mangostore.engine.writer import Writer

# Authorizer action codes (sqlite3.h).
_DELETE, _INSERT, _PRAGMA, _READ, _SELECT, _TRANSACTION, _UPDATE = 9, 18, 19, 20, 21, 22, 23
_ANALYZE, _FUNCTION, _SAVEPOINT, _RECURSIVE = 28, 31, 32, 33
#: Actions that change the schema: the whole tier, and what it knows of statements, go.
_SCHEMA_ACTIONS: Final = frozenset({*range(1, 9), *range(10, 18), 24, 25, 26, 27, 29, 30})
#: Actions of a write statement that change no table's rows.
_NEUTRAL_WRITE_ACTIONS: Final = frozenset(
    {_READ, _SELECT, _TRANSACTION, _PRAGMA, _FUNCTION, _SAVEPOINT, _RECURSIVE, _ANALYZE}
)

#: Built-in functions whose result is not determined by their arguments.
NONDETERMINISTIC_FUNCTIONS: Final = frozenset(
    {
        "random",
        "randomblob",
        "changes",
        "total_changes",
        "last_insert_rowid",
        "date",
        "time",
        "datetime",
        "julianday",
        "unixepoch",
        "strftime",
        "timediff",
        "current_date",
        "current_time",
        "current_timestamp",
        "sqlite_offset",
        "load_extension",
    }
)
#: Table-valued functions whose rows depend only on their arguments.
_PURE_TABLE_FUNCTIONS: Final = frozenset({"json_each", "json_tree", "jsonb_each", "jsonb_tree"})
#: Virtual table modules whose content changes only through writes to the table itself.
_SELF_CONTAINED_MODULES: Final = frozenset(
    {"fts3", "fts4", "fts5", "fts5vocab", "rtree", "rtree_i32", "geopoly", "vec0"}
)
#: The tag every read of a virtual table carries (see the module docstring).
VIRTUAL_TAG: Final = "*virtual*"
#: SQL texts whose table sets are remembered; the memo is emptied past this.
_MAX_TEXTS: Final = 10_000
#: Rows of a result looked at to estimate its size.
_SIZE_SAMPLE: Final = 64
#: Bytes counted per parameter of a key (the value, its type, the tuples holding them).
_KEY_OVERHEAD: Final = 96

#: A statement's tags: ``None`` when it cannot be cached.
Tags = frozenset[str] | None
_FLUSH: Final = frozenset({"*flush*"})
_UNKNOWN: Final[Any] = object()

Reading = Callable[[], AbstractContextManager[Any]]


class QueryCache:
    """The query tier and its invalidation (see the module docstring).

    Args:
        writer: the database's writer; its transactions report their writes here.
        path: the database file (``":memory:"``: no other process can write).
        commits: the database's commit watch (see the module docstring).
        max_bytes, ttl_ms: the tier's bounds (the TTL only bounds memory: entries
            are invalidated exactly, not by age).
        clock: the time source of the TTL.
        default: whether reads use the tier when the caller does not say.
    """

    def __init__(
        self,
        writer: Writer,
        path: str,
        commits: CommitWatch,
        *,
        max_bytes: int,
        ttl_ms: int,
        clock: Clock,
        default: bool = True,
    ) -> None:
        self.store = MemoryCache(max_bytes=max_bytes, ttl_ms=ttl_ms, clock=clock, tier="query")
        self.default = default
        self._writer = writer
        self._memory = path == ":memory:"
        self._commits = commits
        self._verified: int | None = None
        self._data_version: int | None = None
        self._schema_version: int | None = None
        self._verify_lock = threading.Lock()
        self._reads: dict[str, Tags] = {}
        self._writes: dict[str, frozenset[str]] = {}
        self._schema: dict[str, frozenset[str]] | None = None
        self._pending: set[str] = set()
        self._pending_flush = False
        self._autocommit = False
        self._writer_conn: Any = None

    # -- reading ----------------------------------------------------------------------

    def read(self, sql: str, params: Any, reading: Reading, context: str = "") -> list[Any]:
        """Return the rows of ``sql`` with ``params``, from the tier when it holds them.

        ``reading`` lends a connection (``Store.reading``) for a miss.

        Raises:
            QueryError, DatabaseError: as the statement itself would.
        """
        key = _key(sql, params)
        known = self._reads.get(sql, _UNKNOWN)
        if (
            key is None
            or known is None
            or self._writer.owned_by_current_thread()
            or not self._fresh()
        ):
            # Inside a transaction a read must see its own uncommitted writes, which
            # must never be cached; the other cases cannot be cached or checked.
            self.store.count_bypass()
            with reading() as conn:
                return fetch_rows(conn, sql, params, context)
        value = self.store.get(key)
        if value is not MISSING:
            return list(value)
        with reading() as conn:
            tags = known if known is not _UNKNOWN else self._resolve_reads(conn, sql, params)
            if tags is None:
                return fetch_rows(conn, sql, params, context)
            guard = self.store.guard(tags)
            rows = fetch_rows(conn, sql, params, context)
        stored = tuple(rows)
        size = _result_size(key, stored)  # type: ignore[arg-type]
        self.store.set(key, stored, tags=tags, guard=guard, size_bytes=size)
        return rows

    def tables_read(self, sql: str) -> Tags:
        """Return the tags of ``sql`` once it has been cached (for tests and reports)."""
        value = self._reads.get(sql, _UNKNOWN)
        return None if value is _UNKNOWN else value

    def _resolve_reads(self, conn: Any, sql: str, params: Any) -> Tags:
        if not isinstance(conn, InstrumentedConnection):
            return None
        calls = capture_actions(conn, sql, params)
        if calls is None:
            return None  # SQLite refused it (it will fail to run too): not remembered
        tags = classify_reads(calls, self._schema_of(conn))
        self._remember(self._reads, sql, tags)
        return tags

    # -- freshness against other processes ---------------------------------------------

    def _fresh(self) -> bool:
        """Tell whether the tier reflects every commit made so far (flushing it if not)."""
        if self._memory:
            return True
        seen = self._commits.version()
        if seen is not None and seen == self._verified:
            return True
        with self._verify_lock:
            if seen is not None and seen == self._verified:
                return True  # another thread verified it meanwhile
            # Never waits: when another thread's transaction holds the writer, this
            # read bypasses the tier instead.
            return self._writer.run_if_idle(self._verify) is not None

    def _verify(self, conn: Any) -> bool:
        """Check the writer's ``data_version`` and record the watch's count as verified.

        The caller holds the verify lock and the writer. The watch is read first: a
        commit after that read is caught by the ``data_version`` check or, failing
        that, makes the watch differ at the next read. Returns ``True``.
        """
        seen = self._commits.version()
        self._check_versions(conn)
        self._verified = seen
        return True

    def _check_versions(self, conn: Any) -> bool:
        """Read ``data_version`` on the writer connection ``conn``: flush when another
        connection committed, and forget the table sets when it changed the schema.

        The caller holds the verify lock and the writer. Returns ``True``.
        """
        version = _data_version(conn)
        previous, self._data_version = self._data_version, version
        if previous is None:
            self._schema_version = _schema_version(conn)
        elif previous != version:
            schema = _schema_version(conn)
            if schema != self._schema_version:
                self._schema_version = schema
                self._forget_statements()
            self.flush()
        return True

    # -- writer hooks (called by the writer, under its lock) ---------------------------

    def begun(self, conn: Any) -> None:
        """A write transaction began."""
        self._pending.clear()
        self._pending_flush = False
        self._writer_conn = conn

    def committed(self) -> None:
        """The transaction committed: drop what it changed before its block returns.

        Then the commit is checked off: ``data_version`` is read now, while this
        thread holds the writer, so that the next read finds the commit watch
        verified instead of waiting for the writer (a commit by another process since
        the last check is caught here too, and flushes the tier).
        """
        try:
            if self._pending_flush:
                self._forget_statements()
                self.flush()
            elif self._pending:
                self.store.invalidate_tags(self._pending)
            conn = self._writer_conn
            if not self._memory and conn is not None:
                with self._verify_lock:
                    self._verify(conn)
        except BaseException:
            self.store.clear()
            raise
        finally:
            self._pending.clear()
            self._pending_flush = False
            self._writer_conn = None

    def rolled_back(self) -> None:
        """The transaction rolled back: nothing it did is visible, nothing to drop."""
        self._pending.clear()
        self._pending_flush = False
        self._writer_conn = None

    def before(self, conn: InstrumentedConnection, sql: str, params: Any) -> bool:
        """Note the tables ``sql`` writes (the writer connection calls this)."""
        tables = self._writes.get(sql)
        if tables is None:
            tables = self._resolve_writes(conn, sql, params)
        if not tables:
            return False
        if tables is _FLUSH:
            self._pending_flush = True
        else:
            self._pending.update(tables)
        if not conn.in_transaction:
            self._autocommit = True  # it commits by itself: invalidate right after
            self._writer_conn = conn
            return True
        return False

    def after(self) -> None:
        """A statement that committed by itself has run."""
        if self._autocommit:
            self._autocommit = False
            self.committed()

    def script(self, conn: InstrumentedConnection) -> None:
        """A script is about to run on the writer: its writes cannot be known."""
        self._pending_flush = True
        if not conn.in_transaction:
            self._autocommit = True
            self._writer_conn = conn
            self.after()

    def _resolve_writes(self, conn: Any, sql: str, params: Any) -> frozenset[str]:
        if is_transaction_control(sql):
            tables: frozenset[str] = frozenset()
        else:
            calls = capture_actions(conn, sql, params)
            if calls is None:
                return _FLUSH  # not remembered: SQLite refused it, it will fail anyway
            tables = classify_writes(calls, self._schema_of(conn))
        self._remember(self._writes, sql, tables)
        return tables

    # -- management --------------------------------------------------------------------

    def flush(self) -> int:
        """Drop every cached result; return how many there were."""
        return self.store.clear()

    def stats(self) -> TierStats:
        """Return the tier's counters."""
        return self.store.stats()

    def _forget_statements(self) -> None:
        self._reads = {}
        self._writes = {}
        self._schema = None

    def _schema_of(self, conn: Any) -> dict[str, frozenset[str]]:
        schema = self._schema
        if schema is None:
            schema = self._schema = _load_schema(conn)
        return schema

    @staticmethod
    def _remember(memo: dict[str, Any], sql: str, value: Any) -> None:
        if len(memo) >= _MAX_TEXTS:
            memo.clear()
        memo[sql] = value


def classify_reads(calls: list[Action], schema: dict[str, frozenset[str]]) -> Tags:
    """Turn a read statement's authorizer callbacks into its tags, or ``None`` when it
    must not be cached (see the module docstring)."""
    tags: set[str] = set()
    for action, arg1, arg2, db, _source in calls:
        if action == _READ:
            if db not in (None, "main") or arg1 is None:
                return None
            implied = schema.get(arg1)
            if implied is None:
                if arg1 in _PURE_TABLE_FUNCTIONS:
                    continue
                return None
            tags.update(implied)
        elif action == _FUNCTION:
            if (arg2 or "").lower() in NONDETERMINISTIC_FUNCTIONS:
                return None
        elif action not in (_SELECT, _RECURSIVE):
            return None
    return frozenset(tags)


def classify_writes(calls: list[Action], schema: dict[str, frozenset[str]]) -> frozenset[str]:
    """Turn a statement's authorizer callbacks into the tags its writes invalidate.

    Returns a flush marker for schema changes and writes to the schema table.
    """
    tags: set[str] = set()
    for action, arg1, _arg2, _db, _source in calls:
        if action in (_INSERT, _UPDATE, _DELETE):
            if arg1 is None or arg1 in SCHEMA_TABLE_NAMES:
                return _FLUSH
            tags.update(schema.get(arg1, (arg1,)))
        elif action in _SCHEMA_ACTIONS or action not in _NEUTRAL_WRITE_ACTIONS:
            return _FLUSH
    return frozenset(tags)


def _load_schema(conn: Any) -> dict[str, frozenset[str]]:
    """Map every table and view a read may be tagged by to the tags it implies.

    A virtual table whose module is not known to keep to itself is left out, so
    reads of it are not cached. The shadow tables that hold a virtual table's data
    (``ai_memory_fts_data``...) are written by the module itself, out of the
    authorizer's sight, whenever the virtual table is written: they carry the
    virtual tag, and a write to one counts as a write to every virtual table.
    """
    kinds = {table.name: table.kind for table in table_list(conn)}
    schema: dict[str, frozenset[str]] = {name: frozenset({name}) for name in SCHEMA_TABLE_NAMES}
    for found in schema_objects(conn, "table", "view"):
        name = found.name
        if found.virtual:
            if found.module not in _SELF_CONTAINED_MODULES:
                continue
            tags = {name, VIRTUAL_TAG}
            if found.content_table is not None:
                tags.add(found.content_table)
            schema[name] = frozenset(tags)
        elif kinds.get(name) == "shadow":
            schema[name] = frozenset({name, VIRTUAL_TAG})
        elif not found.internal:
            # SQLite's own tables (sqlite_sequence, sqlite_stat1...) are written behind
            # the authorizer's back (AUTOINCREMENT, PRAGMA optimize): never cached.
            schema[name] = frozenset({name})
    return schema


def _data_version(conn: Any) -> int:
    """Return ``PRAGMA data_version`` of ``conn`` (see the module docstring)."""
    return int(execute_unmonitored(conn, "PRAGMA data_version").fetchone()[0])


def _schema_version(conn: Any) -> int:
    return int(execute_unmonitored(conn, "PRAGMA schema_version").fetchone()[0])


def _result_size(key: tuple[Any, ...], rows: tuple[Any, ...]) -> int:
    """Estimate the bytes of a cached result: its key, its rows and their values.

    Cheaper than :func:`estimate_size`, as a statement returns only rows of plain
    values; a long result is sized from a sample of its rows.
    """
    size = sys.getsizeof(key[0]) + _KEY_OVERHEAD * (1 + len(key[1])) + sys.getsizeof(rows)
    if not rows:
        return size
    sample = rows if len(rows) <= _SIZE_SAMPLE else rows[:: len(rows) // _SIZE_SAMPLE]
    getsize = sys.getsizeof
    per_row = sum(getsize(row) + sum(map(getsize, row)) for row in sample) / len(sample)
    return size + int(per_row * len(rows))


def _key(sql: str, params: Any) -> Hashable | None:
    """Return the cache key of a statement and its parameters, or ``None`` when a
    parameter cannot be hashed. Parameter types are part of the key: SQLite binds
    ``1`` and ``1.0`` differently."""
    if isinstance(params, dict):
        items = tuple(sorted(params.items()))
        key: Hashable = (sql, items, tuple(type(v) for _, v in items), "named")
    else:
        values = tuple(params)
        key = (sql, values, tuple(map(type, values)))
    try:
        hash(key)
    except TypeError:
        return None
    return key
