"""Terminal sessions: open, record activity, close."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from mangostore.errors import InvalidValueError
from mangostore.records import TerminalSession
from mangostore.repos.base import UserOwnedRepository
from mangostore.repos.changes import (
    TerminalSessionActivityChanges,
    TerminalSessionChanges,
)
from mangostore.repos.fields import TerminalSessionFields, TerminalSessionOpenFields

ACTIVE = "active"
CLOSED = "closed"


class TerminalSessionRepository(UserOwnedRepository[TerminalSession]):
    """``db.terminal_sessions``. Environment variables and session data are encrypted."""

    if TYPE_CHECKING:
        # Declared for type checkers only; see mangostore.repos.tables.
        def create(  # type: ignore[override]
            self, **fields: Unpack[TerminalSessionFields]
        ) -> TerminalSession:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[TerminalSessionChanges]
        ) -> TerminalSession:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...

    def open(self, user_id: str, **fields: Unpack[TerminalSessionOpenFields]) -> TerminalSession:
        """Start a session (status ``active``, ``last_activity`` now)."""
        now = self._db.clock.now_ms()
        return self.create(user_id=user_id, status=ACTIVE, last_activity=now, **fields)

    def record_activity(
        self, id: str, **fields: Unpack[TerminalSessionActivityChanges]
    ) -> TerminalSession:
        """Stamp ``last_activity`` (and update e.g. ``working_directory``) on an open session.

        Raises:
            NotFoundError: no such session.
            InvalidValueError: the session is closed.
        """
        with self._db.store.transaction() as conn:
            if self.get_in(conn, id).status == CLOSED:
                raise InvalidValueError(f"terminal session {id!r} is closed", field="status")
            changes: dict[str, Any] = {**fields, "last_activity": self._db.clock.now_ms()}
            return self.update_in(conn, id, changes, touch=False)

    def close(self, id: str) -> TerminalSession:
        """Close a session; closing a closed session changes nothing."""
        with self._db.store.transaction() as conn:
            current = self.get_in(conn, id)
            if current.status == CLOSED:
                return current
            fields = {"status": CLOSED, "last_activity": self._db.clock.now_ms()}
            return self.update_in(conn, id, fields, touch=False)

    def active(self, user_id: str) -> list[TerminalSession]:
        """Return the user's open sessions, most recently active first."""
        return self.list(user_id=user_id, status=ACTIVE, order_by="-last_activity")
