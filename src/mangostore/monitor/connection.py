"""Connections that time every statement and report what the writer writes.

The engine opens its writer and reader connections as :class:`InstrumentedConnection`,
a subclass of the driver's connection, so every statement run through mangostore,
by a repository, a service or raw SQL, goes through :meth:`InstrumentedConnection.execute`:

- with a :class:`StatementSink` attached (the monitor), the statement is timed from
  the start of ``execute`` until its rows are read: the cursor is a
  :class:`TimedCursor` that reports once, when the rows run out, ``fetchall``
  returns, or the cursor is closed or dropped (then up to its last fetch);
- with a :class:`WriteSink` attached (the writer's side of the query cache), the sink
  sees each statement before it runs, to learn which tables it writes.

A permanent SQLite authorizer lets :func:`capture_actions` learn, from SQLite's own
compiler, what a statement reads and writes: it prepares ``EXPLAIN <statement>``
(never running the statement) while collecting the authorizer's callbacks. It is
prepared outside the driver's statement cache, which would hand back an
already-prepared statement (calling no authorizer at all) and which, once full,
evicts the statement it added last: one-off texts kept there would make every new
statement of the application be prepared again on each run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

import sqlcipher3

from mangostore.engine.connection import driver_errors

#: Runs a statement on a connection without timing it (the monitor's own statements).
execute_unmonitored = sqlcipher3.Connection.execute
_executemany = sqlcipher3.Connection.executemany
_executescript = sqlcipher3.Connection.executescript
_cursor_execute = sqlcipher3.Cursor.execute
_cursor_executemany = sqlcipher3.Cursor.executemany
_fetchone = sqlcipher3.Cursor.fetchone
_fetchmany = sqlcipher3.Cursor.fetchmany
_fetchall = sqlcipher3.Cursor.fetchall
_next = sqlcipher3.Cursor.__next__
_close = sqlcipher3.Cursor.close
_clock = time.perf_counter_ns

#: One authorizer callback: (action code, argument 1, argument 2, database, trigger or view).
Action = tuple[int, str | None, str | None, str | None, str | None]


class StatementSink(Protocol):
    """Receives the timing of every statement (the monitor)."""

    def record(self, sql: str, elapsed_ns: int, rows: int, conn: Any) -> None:
        """Count one run of ``sql`` that took ``elapsed_ns`` and returned ``rows`` rows."""
        ...

    def record_error(self, sql: str, elapsed_ns: int) -> None:
        """Count one run of ``sql`` that raised."""
        ...


class WriteSink(Protocol):
    """Learns what the writer connection writes (the query cache's invalidation)."""

    def before(self, conn: InstrumentedConnection, sql: str, params: Any) -> bool:
        """See ``sql`` before it runs; return ``True`` to be told via :meth:`after`."""
        ...

    def after(self) -> None:
        """Called after a statement for which :meth:`before` returned ``True``."""
        ...

    def script(self, conn: InstrumentedConnection) -> None:
        """A script of unknown statements is about to run."""
        ...


class _Authorizer:
    """The permanent authorizer: allows everything, and records while capturing."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: list[Action] | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        calls = self.calls
        if calls is not None:
            calls.append((action, arg1, arg2, db, source))
        return 0  # SQLITE_OK


class TimedCursor(sqlcipher3.Cursor):  # type: ignore[misc]
    """A cursor that reports its statement's time and row count to the monitor, once."""

    __slots__ = ("_m_conn", "_m_open", "_m_rows", "_m_sink", "_m_sql", "_m_t0", "_m_t1")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._m_open = False  # nothing to report until start_timing (a failed execute)

    def start_timing(self, sink: Any, sql: str, conn: Any, started: float) -> None:
        """Begin reporting ``sql``, started at ``started``, to ``sink`` (the executing
        connection calls this once the statement ran): at once when there is nothing
        to fetch, otherwise when the last row has been fetched."""
        self._m_sink = sink
        self._m_sql = sql
        self._m_conn = conn
        self._m_t0 = started
        self._m_t1 = _clock()
        self._m_rows = 0
        self._m_open = self.description is not None
        if not self._m_open:
            # Nothing to fetch (a write without RETURNING, DDL): it is finished.
            sink.record(sql, _clock() - started, 0, conn)

    def fetchone(self) -> Any:
        """Return the next row (or ``None``), counting it."""
        row = _fetchone(self)
        if self._m_open:
            self._m_t1 = _clock()
            if row is None:
                self._m_done()
            else:
                self._m_rows += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """Return up to ``size`` more rows, counting them."""
        rows: list[Any] = _fetchmany(self) if size is None else _fetchmany(self, size)
        if self._m_open:
            self._m_t1 = _clock()
            self._m_rows += len(rows)
            if not rows or (size is not None and len(rows) < size):
                self._m_done()
        return rows

    def fetchall(self) -> list[Any]:
        """Return the remaining rows and report the statement."""
        rows: list[Any] = _fetchall(self)
        if self._m_open:
            self._m_t1 = _clock()
            self._m_rows += len(rows)
            self._m_done()
        return rows

    def __next__(self) -> Any:
        try:
            row = _next(self)
        except StopIteration:
            if self._m_open:
                self._m_t1 = _clock()
                self._m_done()
            raise
        if self._m_open:
            self._m_rows += 1
            self._m_t1 = _clock()
        return row

    def __iter__(self) -> Iterator[Any]:
        return self

    def close(self) -> None:
        """Report the statement (if not yet) and close the cursor."""
        if self._m_open:
            self._m_done()
        _close(self)

    def __del__(self) -> None:
        if self._m_open:
            # Dropped late, its connection may be lent to another thread by now:
            # a slow statement is then planned at report time instead.
            self._m_done(with_conn=False)

    def _m_done(self, *, with_conn: bool = True) -> None:
        self._m_open = False
        conn = self._m_conn if with_conn else None
        self._m_sink.record(self._m_sql, self._m_t1 - self._m_t0, self._m_rows, conn)


class InstrumentedConnection(sqlcipher3.Connection):  # type: ignore[misc]
    """The driver's connection, timing statements and reporting writes when asked to.

    Created by the engine through ``connect(..., factory=InstrumentedConnection)``;
    :meth:`attach` then gives it its sinks. Without sinks it behaves exactly like
    the driver's connection.
    """

    sink: StatementSink | None = None
    writes: WriteSink | None = None
    _authorizer: _Authorizer | None = None

    def attach(self, sink: StatementSink | None, writes: WriteSink | None = None) -> None:
        """Start timing into ``sink`` and reporting writes to ``writes``; install the
        authorizer :func:`capture_actions` relies on."""
        if self._authorizer is None:
            self._authorizer = _Authorizer()
            self.set_authorizer(self._authorizer)
        self.sink = sink
        self.writes = writes

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        """Run one statement (see the driver's ``Connection.execute``), timed."""
        writes = self.writes
        if writes is not None and writes.before(self, sql, parameters):
            try:
                return self._run(sql, parameters, many=False)
            finally:
                writes.after()
        return self._run(sql, parameters, many=False)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        """Run one statement once per parameter set, timed as one statement."""
        writes = self.writes
        if writes is not None and writes.before(self, sql, None):
            try:
                return self._run(sql, seq_of_parameters, many=True)
            finally:
                writes.after()
        return self._run(sql, seq_of_parameters, many=True)

    def executescript(self, sql_script: str, /) -> Any:
        """Run a script; its writes cannot be known, so the query cache is flushed."""
        if self.writes is not None:
            self.writes.script(self)
        return _executescript(self, sql_script)

    def _run(self, sql: str, parameters: Any, *, many: bool) -> Any:
        sink = self.sink
        if sink is None:
            if many:
                return _executemany(self, sql, parameters)
            return execute_unmonitored(self, sql, parameters)
        start = _clock()
        cursor = self.cursor(TimedCursor)
        try:
            if many:
                _cursor_executemany(cursor, sql, parameters)
            else:
                _cursor_execute(cursor, sql, parameters)
        except BaseException:
            sink.record_error(sql, _clock() - start)
            raise
        cursor.start_timing(sink, sql, self, start)
        return cursor

    def fetch_all(self, sql: str, parameters: Any) -> list[Any]:
        """Run a read and return all its rows, timed as one statement.

        The short path behind ``db.query``: no cursor subclass, one report.
        """
        sink = self.sink
        if sink is None or self.writes is not None:
            return self.execute(sql, parameters).fetchall()  # type: ignore[no-any-return]
        start = _clock()
        try:
            rows: list[Any] = execute_unmonitored(self, sql, parameters).fetchall()
        except BaseException:
            sink.record_error(sql, _clock() - start)
            raise
        sink.record(sql, _clock() - start, len(rows), self)
        return rows


def fetch_rows(conn: Any, sql: str, params: Any, context: str = "") -> list[Any]:
    """Run a read on ``conn`` and return all rows, timed when ``conn`` is instrumented.

    Raises:
        QueryError, DatabaseError: as translated from the driver.
    """
    with driver_errors(context):
        if isinstance(conn, InstrumentedConnection):
            return conn.fetch_all(sql, params)
        return conn.execute(sql, params).fetchall()  # type: ignore[no-any-return]


def capture_actions(conn: Any, sql: str, params: Any = None) -> list[Action] | None:
    """Return the authorizer callbacks SQLite makes while compiling ``sql``.

    The statement is prepared as ``EXPLAIN <sql>``, which compiles it (with its
    triggers, foreign-key actions and views) without running it; parameters are not
    needed to compile (``params`` is accepted for the callers that have them).
    Returns ``None`` when the connection has no authorizer or SQLite refuses the
    statement.
    """
    authorizer = getattr(conn, "_authorizer", None)
    if not isinstance(authorizer, _Authorizer):
        return None
    calls: list[Action] = []
    authorizer.calls = calls
    try:
        _prepare_only(conn, sql)
    except Exception:
        return None
    finally:
        authorizer.calls = None
    return calls


def _prepare_only(conn: Any, sql: str) -> None:
    """Compile ``EXPLAIN <sql>`` without running it, outside the statement cache.

    Calling the driver's connection with SQL prepares a statement object that is
    never cached (see the module docstring) and is finalised when dropped.
    """
    conn(f"EXPLAIN {sql}")
