"""What a database carries for caching and monitoring, wired into its connections.

:func:`mangostore.open` makes one :class:`Instruments` before opening any connection,
opens them as :class:`~mangostore.monitor.connection.InstrumentedConnection` (when
monitoring or the query cache is on), and attaches the writer (whose transactions
then report to the query cache) and each new reader.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mangostore.cache.disk import DiskCache, disk_cache_dir
from mangostore.cache.manager import CacheManager
from mangostore.cache.memory import MemoryCache
from mangostore.cache.query import QueryCache
from mangostore.clock import Clock, SystemClock
from mangostore.monitor.connection import InstrumentedConnection, fetch_rows
from mangostore.monitor.stats import Monitor
from mangostore.settings import Settings

if TYPE_CHECKING:
    from mangostore.engine.commits import CommitWatch
    from mangostore.engine.writer import Writer
    from mangostore.keys.keyring import Keyring

MEMORY = ":memory:"


class Instruments:
    """The caches and the monitor of one database.

    Args:
        path: the database file, or ``":memory:"``.
        settings: the database's settings (cache bounds, monitoring, thresholds).
        clock: the time source of TTLs and of the slow log.
        keyring: the unlocked keyring; the disk tier needs one.
    """

    def __init__(
        self,
        path: str,
        settings: Settings,
        clock: Clock | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.clock = clock or SystemClock()
        self.monitor = (
            Monitor(slow_query_ms=settings.slow_query_ms, clock=self.clock)
            if settings.monitor_queries
            else None
        )
        self.memory = MemoryCache(
            max_bytes=settings.cache_memory_max_bytes,
            ttl_ms=settings.cache_memory_ttl_ms,
            clock=self.clock,
        )
        self.disk: DiskCache | None = None
        if path != MEMORY and keyring is not None and settings.cache_disk_max_bytes > 0:
            directory = (
                Path(settings.cache_disk_dir) if settings.cache_disk_dir else disk_cache_dir(path)
            )
            self.disk = DiskCache(
                directory,
                keyring.subkey("cache"),
                max_bytes=settings.cache_disk_max_bytes,
                ttl_ms=settings.cache_disk_ttl_ms,
                clock=self.clock,
            )
        self.query: QueryCache | None = None

    @property
    def factory(self) -> type | None:
        """The connection class to open connections as (``None``: the driver's own)."""
        if self.monitor is None and self.settings.cache_query_max_bytes == 0:
            return None
        return InstrumentedConnection

    def attach_writer(self, writer: Writer, commits: CommitWatch) -> None:
        """Make the query cache, and have the writer report its statements and commits.

        ``commits`` tells the query cache cheaply whether anything was committed.
        """
        if self.settings.cache_query_max_bytes > 0:
            self.query = QueryCache(
                writer,
                self.path,
                commits,
                max_bytes=self.settings.cache_query_max_bytes,
                ttl_ms=self.settings.cache_query_ttl_ms,
                clock=self.clock,
                default=self.settings.cache_queries,
            )
            writer.hooks = self.query
        conn = writer.connection
        if isinstance(conn, InstrumentedConnection):
            conn.attach(self.monitor, self.query)

    def reader(self, conn: Any) -> Any:
        """Attach a new reader connection to the monitor; return it."""
        if isinstance(conn, InstrumentedConnection):
            conn.attach(self.monitor)
        return conn

    def rows(
        self,
        reading: Callable[[], AbstractContextManager[Any]],
        sql: str,
        params: Any,
        use_cache: bool | None,
        context: str = "",
    ) -> list[Any]:
        """Return the rows of a read, through the query cache unless told not to."""
        query = self.query
        if query is not None and (query.default if use_cache is None else use_cache):
            return query.read(sql, params, reading, context)
        with reading() as conn:
            return fetch_rows(conn, sql, params, context)

    def opened(self) -> None:
        """The database is open: statistics start here, not with the migrations."""
        if self.monitor is not None:
            self.monitor.reset()

    @functools.cached_property
    def cache(self) -> CacheManager:
        """The three tiers behind one interface (``db.cache``)."""
        return CacheManager(self.memory, self.query, self.disk)

    def close(self) -> None:
        """Release the disk tier's files."""
        if self.disk is not None:
            self.disk.close()
