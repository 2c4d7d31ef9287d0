"""Command history: recording, recent commands, literal search and statistics.

Reads stay index-bound as a history grows (schema migration 15):

- ``recent`` and ``list(user_id=..., order_by="-timestamp")`` read the index on
  ``(user_id, timestamp, id)`` from its newest end and stop at the limit.
- ``search`` first tests the newest ``search_window`` commands with ``instr``,
  which finds a frequent term at once; when they hold fewer matches than asked for,
  the trigram index ``command_history_fts`` lists the commands that can contain the
  term, and only those are tested. Either way the result is what an ``instr`` scan of
  the whole history returns.
- ``stats`` adds up ``command_history_weekly``, one row per week, command type and
  exit code kept by triggers, plus the commands of the first week when ``since``
  falls inside one: a few thousand rows at most, however long the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Unpack

from mangostore.clock import Instant, epoch_ms
from mangostore.records import CommandHistory
from mangostore.repos.base import UserOwnedRepository, limit_clause
from mangostore.repos.changes import CommandHistoryChanges
from mangostore.repos.fields import CommandHistoryFields, CommandHistoryRecordFields
from mangostore.repos.spec import INT64_MAX
from mangostore.sql import batches, placeholders

#: The periods ``command_history_weekly`` counts in (seven days from the epoch).
WEEK_MS: Final = 7 * 86_400_000
#: Sums of execution times beyond this are not exact in a double: recomputed instead.
_EXACT_SUM: Final = 2**53
#: What the index holds after each command (see migration 15): never in a term it
#: serves, since terms with it are searched by scanning.
_PAD: Final = "\x01"

_ORDER: Final = ' ORDER BY "timestamp" DESC, id DESC'
_WINDOW_EDGE: Final = (
    'SELECT "timestamp", id FROM command_history WHERE user_id = ?' + _ORDER + " LIMIT 1 OFFSET ?"
)
_CANDIDATES: Final = (
    "SELECT r.command_id FROM command_history_fts AS f "
    "JOIN command_history_search_rows AS r ON r.seq = f.rowid "
    "WHERE command_history_fts MATCH ? AND r.user_id = ? "
    "ORDER BY r.timestamp DESC, r.command_id DESC LIMIT ? OFFSET ?"
)
_PREFIX_TRIGRAMS: Final = (
    "SELECT term FROM command_history_vocab WHERE term >= ? AND term < ? LIMIT ?"
)
_EXACT_TIME: Final = (
    "typeof(execution_time) = 'integer' AND execution_time BETWEEN 0 AND 1099511627776"
)
_STATS_TOTALS: Final = (
    "SELECT command_type, exit_code, sum(commands), sum(timed), total(time_total), "
    "sum(inexact) FROM command_history_weekly WHERE user_id = ? "
    "GROUP BY command_type, exit_code"
)
_STATS_SINCE: Final = (
    "SELECT command_type, exit_code, sum(commands), sum(timed), total(time_total), "
    "sum(inexact) FROM ("
    "SELECT command_type, exit_code, commands, timed, time_total, inexact "
    "FROM command_history_weekly WHERE user_id = ? AND week > ? "
    "UNION ALL "
    "SELECT command_type, exit_code, commands, timed, time_total, inexact "
    "FROM command_history_weekly WHERE user_id = ? AND week IS NULL "
    "UNION ALL "
    "SELECT command_type, exit_code, 1, execution_time IS NOT NULL, "
    f"CASE WHEN {_EXACT_TIME} THEN execution_time ELSE 0 END, "
    f"execution_time IS NOT NULL AND NOT ({_EXACT_TIME}) "
    'FROM command_history WHERE user_id = ? AND "timestamp" >= ? AND "timestamp" <= ?'
    ") GROUP BY command_type, exit_code"
)


@dataclass(frozen=True, slots=True)
class CommandStats:
    """What a user ran: totals by command type and exit code, and mean execution time."""

    total: int
    by_type: dict[str | None, int]
    by_exit_code: dict[int | None, int]
    mean_execution_time: float | None


class CommandHistoryRepository(UserOwnedRepository[CommandHistory]):
    """``db.command_history``. ``timestamp`` is set to now when not given."""

    now_on_create = ("timestamp",)
    #: Newest commands of a person a search tests directly before asking the trigram
    #: index: enough to find a frequent term at once, few enough to read in milliseconds.
    search_window: int = 20_000
    #: Most trigrams a one- or two-character term may begin for the index to be asked;
    #: a term that begins more is common, and the history is scanned instead.
    max_prefix_trigrams: int = 512

    if TYPE_CHECKING:
        # Declared for type checkers only; see mangostore.repos.tables.
        def create(  # type: ignore[override]
            self, **fields: Unpack[CommandHistoryFields]
        ) -> CommandHistory:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[CommandHistoryChanges]
        ) -> CommandHistory:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...

    def record(
        self, user_id: str, command: str, **fields: Unpack[CommandHistoryRecordFields]
    ) -> CommandHistory:
        """Record a command the user ran; other columns as keyword arguments."""
        return self.create(user_id=user_id, command=command, **fields)

    def recent(
        self,
        user_id: str,
        project_id: str | None = None,
        *,
        limit: int = 50,
        use_cache: bool | None = None,
    ) -> list[CommandHistory]:
        """Return the user's latest commands, newest first, optionally in one project.

        ``use_cache`` as for :meth:`list`.
        """
        filters: dict[str, Any] = {"user_id": user_id}
        if project_id is not None:
            filters["project_id"] = project_id
        return self.list(
            order_by=["-timestamp", "-id"], limit=limit, use_cache=use_cache, **filters
        )

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        user_id: str,
        text: str,
        *,
        limit: int | None = 50,
        use_cache: bool | None = None,
    ) -> list[CommandHistory]:
        """Return the user's commands containing ``text`` literally, newest first.

        The match is an exact, case-sensitive substring test (``instr``), as commands
        are case-sensitive: ``%``, ``_`` and ``\\`` match only themselves, unlike in
        LIKE, and a NUL byte does not cut the text short. ``limit=None`` returns every
        match. ``use_cache`` as for :meth:`list`.

        Raises:
            InvalidValueError: ``text`` is not a string of valid Unicode, or ``limit``
                is not a non-negative integer.
        """
        needle = self.spec.column("command").check(self.spec.name, text)
        owner = self.spec.column("user_id").check(self.spec.name, user_id)
        limit_clause(limit, None)  # validates it
        if limit == 0:
            return []
        rows = self._db.store.rows
        if limit is not None:
            edge = rows(_WINDOW_EDGE, (owner, self.search_window - 1), use_cache, self.spec.name)
            if not edge:  # the window holds the whole history
                return self._scan(owner, needle, limit, use_cache)
            found = self._scan(owner, needle, limit, use_cache, after=tuple(edge[0]))
            if len(found) == limit:
                return found
        query = self._match_query(needle, use_cache)
        if query is None:
            return self._scan(owner, needle, limit, use_cache)
        return self._indexed(owner, needle, query, limit, use_cache)

    def _scan(
        self,
        owner: str,
        needle: str,
        limit: int | None,
        use_cache: bool | None,
        *,
        after: tuple[Any, ...] = (),
    ) -> list[CommandHistory]:
        """Test the user's commands newest first (from ``after`` on, if given)."""
        spec = self.spec
        bound = ' AND ("timestamp", id) >= (?, ?)' if after else ""
        sql = (
            f"SELECT {spec.select_list} FROM {spec.quoted_table} "
            f"WHERE user_id = ? AND instr(command, ?) > 0{bound}"
            + _ORDER
            + limit_clause(limit, None)
        )
        return self._select(sql, (owner, needle, *after), use_cache)

    def _match_query(self, needle: str, use_cache: bool | None) -> str | None:
        """Return the full-text query of the commands that may contain ``needle``: a
        phrase for three characters or more, the trigrams it begins otherwise (``""``
        when there are none). ``None`` when the index cannot answer (a NUL character,
        which the tokenizer skips; the padding character; or too common a short term)."""
        if not needle or "\x00" in needle or _PAD in needle:
            return None
        if len(needle) >= 3:
            return _phrase(needle)
        rows = self._db.store.rows(
            _PREFIX_TRIGRAMS,
            (needle, _successor(needle), self.max_prefix_trigrams + 1),
            use_cache,
            self.spec.name,
        )
        if len(rows) > self.max_prefix_trigrams:
            return None
        return " OR ".join(_phrase(str(row[0])) for row in rows)

    def _indexed(
        self, owner: str, needle: str, query: str, limit: int | None, use_cache: bool | None
    ) -> list[CommandHistory]:
        """Test the commands the index lists, newest first, until ``limit`` match."""
        if not query:
            return []
        spec = self.spec
        page = -1 if limit is None else max(limit, 64)
        found: list[CommandHistory] = []
        offset = 0
        while limit is None or len(found) < limit:
            ids = [
                str(row[0])
                for row in self._db.store.rows(
                    _CANDIDATES, (query, owner, page, offset), use_cache, self.spec.name
                )
            ]
            for chunk in batches(ids):
                sql = (
                    f"SELECT {spec.select_list} FROM {spec.quoted_table} "
                    f"WHERE id IN ({placeholders(len(chunk))}) AND instr(command, ?) > 0" + _ORDER
                )
                found += self._select(sql, (*chunk, needle), use_cache)
            if page < 0 or len(ids) < page:
                break
            offset += page
        return found if limit is None else found[:limit]

    # -- statistics ---------------------------------------------------------------------

    def stats(
        self, user_id: str, *, since: Instant | None = None, use_cache: bool | None = None
    ) -> CommandStats:
        """Count the user's commands by type and exit code, since ``since`` if given (epoch
        ms or an aware datetime).

        Read from the weekly totals the triggers keep (see the module docstring), not
        from every command; the result is what counting the commands gives.
        ``use_cache`` as for :meth:`list`.

        Raises:
            InvalidValueError: ``since`` is not a time.
        """
        owner = self.spec.column("user_id").check(self.spec.name, user_id)
        start = epoch_ms(since, "since")
        if start is None:
            rows = self._db.store.rows(_STATS_TOTALS, (owner,), use_cache, self.spec.name)
        else:
            week = start // WEEK_MS
            last = min((week + 1) * WEEK_MS - 1, INT64_MAX)
            rows = self._db.store.rows(
                _STATS_SINCE, (owner, week, owner, owner, start, last), use_cache, self.spec.name
            )
        if any(r[5] or abs(r[4]) >= _EXACT_SUM for r in rows):
            return self._stats_by_scan(owner, start)
        by_type: dict[Any, int] = {}
        by_exit: dict[Any, int] = {}
        total = timed = time_sum = 0
        for command_type, exit_code, commands, with_time, time_total, _ in rows:
            by_type[command_type] = by_type.get(command_type, 0) + int(commands)
            by_exit[exit_code] = by_exit.get(exit_code, 0) + int(commands)
            total += int(commands)
            timed += int(with_time)
            time_sum += int(time_total)
        return CommandStats(
            total=total,
            by_type=_in_sqlite_order(by_type),
            by_exit_code=_in_sqlite_order(by_exit),
            # What avg() returns over integers: the exact sum, as a double, divided.
            mean_execution_time=float(time_sum) / timed if timed else None,
        )

    def _stats_by_scan(self, owner: str, since: int | None) -> CommandStats:
        """Count from the commands themselves (values the weekly totals cannot hold)."""
        where = "WHERE user_id = ?" + (' AND "timestamp" >= ?' if since is not None else "")
        params: tuple[Any, ...] = (owner,) if since is None else (owner, since)
        with self._db.store.snapshot() as conn:  # three reads of one state
            rows_by_type = conn.execute(
                f"SELECT command_type, count(*) FROM command_history {where} GROUP BY command_type",
                params,
            ).fetchall()
            rows_by_exit = conn.execute(
                f"SELECT exit_code, count(*) FROM command_history {where} GROUP BY exit_code",
                params,
            ).fetchall()
            total, mean = conn.execute(
                f"SELECT count(*), avg(execution_time) FROM command_history {where}", params
            ).fetchone()
        return CommandStats(
            total=int(total),
            by_type={r[0]: int(r[1]) for r in rows_by_type},
            by_exit_code={r[0]: int(r[1]) for r in rows_by_exit},
            mean_execution_time=None if mean is None else float(mean),
        )


def _phrase(text: str) -> str:
    """Quote ``text`` as one FTS5 phrase (its characters mean only themselves)."""
    return '"' + text.replace('"', '""') + '"'


def _successor(prefix: str) -> str:
    """The least string above every string that begins with ``prefix``."""
    last = ord(prefix[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000  # surrogates are not characters
    if last > 0x10FFFF:
        # No character follows U+10FFFF: a trigram is at most two characters longer
        # than the prefix, so three more of it sort above every one that begins so.
        return prefix + "\U0010ffff" * 3
    return prefix[:-1] + chr(last)


def _sqlite_key(value: Any) -> tuple[int, Any]:
    """Order values as SQLite sorts them: NULL, numbers, text, then blobs."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


def _in_sqlite_order(counts: dict[Any, int]) -> dict[Any, int]:
    """The counts in the order a ``GROUP BY`` of the column lists them."""
    return {key: counts[key] for key in sorted(counts, key=_sqlite_key)}
