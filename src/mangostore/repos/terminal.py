"""Terminal sessions: open, record activity, close."""

from __future__ import annotations

from typing import Any

from mangostore.errors import InvalidValueError
from mangostore.records import TerminalSession
from mangostore.repos.base import UserOwnedRepository

ACTIVE = "active"
CLOSED = "closed"


class TerminalSessionRepository(UserOwnedRepository[TerminalSession]):
    """``db.terminal_sessions``. Environment variables and session data are encrypted."""

    def open(self, user_id: str, **fields: Any) -> TerminalSession:
        """Start a session (status ``active``, ``last_activity`` now)."""
        now = self._db.clock.now_ms()
        return self.create(user_id=user_id, status=ACTIVE, last_activity=now, **fields)

    def record_activity(self, id: str, **fields: Any) -> TerminalSession:
        """Stamp ``last_activity`` (and update e.g. ``working_directory``) on an open session.

        Raises:
            NotFoundError: no such session.
            InvalidValueError: the session is closed.
        """
        with self._db.store.transaction() as conn:
            if self.get_in(conn, id).status == CLOSED:
                raise InvalidValueError(f"terminal session {id!r} is closed", field="status")
            fields["last_activity"] = self._db.clock.now_ms()
            return self.update_in(conn, id, fields, touch=False)

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
