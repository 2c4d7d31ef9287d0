"""Command history: recording, recent commands, literal search and statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mangostore.records import CommandHistory
from mangostore.repos.base import UserOwnedRepository, limit_clause


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

    def record(self, user_id: str, command: str, **fields: Any) -> CommandHistory:
        """Record a command the user ran; other columns as keyword arguments."""
        return self.create(user_id=user_id, command=command, **fields)

    def recent(
        self, user_id: str, project_id: str | None = None, *, limit: int = 50
    ) -> list[CommandHistory]:
        """Return the user's latest commands, newest first, optionally in one project."""
        filters: dict[str, Any] = {"user_id": user_id}
        if project_id is not None:
            filters["project_id"] = project_id
        return self.list(order_by=["-timestamp", "-id"], limit=limit, **filters)

    def search(self, user_id: str, text: str, *, limit: int = 50) -> list[CommandHistory]:
        """Return the user's commands containing ``text`` literally, newest first.

        The match is an exact, case-sensitive substring test (``instr``), as commands
        are case-sensitive: ``%``, ``_`` and ``\\`` match only themselves, unlike in
        LIKE, and a NUL byte does not cut the text short.

        Raises:
            InvalidValueError: ``text`` is not a string of valid Unicode.
        """
        needle = self.spec.column("command").check(self.spec.name, text)
        owner = self.spec.column("user_id").check(self.spec.name, user_id)
        spec = self.spec
        sql = (
            f"SELECT {spec.select_list} FROM {spec.quoted_table} "
            "WHERE user_id = ? AND instr(command, ?) > 0 "
            'ORDER BY "timestamp" DESC, id DESC' + limit_clause(limit, None)
        )
        return self._select(sql, (owner, needle))

    def stats(self, user_id: str, *, since: int | None = None) -> CommandStats:
        """Count the user's commands by type and exit code, since ``since`` (epoch ms) if given."""
        where = "WHERE user_id = ?" + (' AND "timestamp" >= ?' if since is not None else "")
        params: tuple[Any, ...] = (user_id,) if since is None else (user_id, since)
        rows_by_type = self._db.query(
            f"SELECT command_type, count(*) FROM command_history {where} GROUP BY command_type",
            params,
        )
        rows_by_exit = self._db.query(
            f"SELECT exit_code, count(*) FROM command_history {where} GROUP BY exit_code", params
        )
        total, mean = self._db.query(
            f"SELECT count(*), avg(execution_time) FROM command_history {where}", params
        )[0]
        return CommandStats(
            total=int(total),
            by_type={r[0]: int(r[1]) for r in rows_by_type},
            by_exit_code={r[0]: int(r[1]) for r in rows_by_exit},
            mean_execution_time=None if mean is None else float(mean),
        )
