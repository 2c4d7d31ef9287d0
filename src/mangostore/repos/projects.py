"""Projects: lookup by path, the active list, and access tracking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from mangostore.records import Project
from mangostore.repos.base import UserOwnedRepository
from mangostore.repos.changes import ProjectChanges
from mangostore.repos.fields import ProjectFields


class ProjectRepository(UserOwnedRepository[Project]):
    """``db.projects``. A user's project paths are unique."""

    if TYPE_CHECKING:
        # Declared for type checkers only; see mangostore.repos.tables.
        def create(  # type: ignore[override]
            self, **fields: Unpack[ProjectFields]
        ) -> Project:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[ProjectChanges]
        ) -> Project:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...

    def find_by_path(self, user_id: str, path: str) -> Project | None:
        """Return the user's project at ``path``, or ``None``."""
        return self.first(user_id=user_id, path=path)

    def find_active(self, user_id: str) -> list[Project]:
        """Return the user's active projects, most recently accessed first."""
        return self.list(user_id=user_id, status="active", order_by=["-last_accessed", "name"])

    def touch(self, id: str) -> Project:
        """Record that the project was just accessed (``last_accessed``; not ``updated_at``).

        Raises:
            NotFoundError: no such project.
        """
        with self._db.store.transaction() as conn:
            return self.update_in(conn, id, {"last_accessed": self._db.clock.now_ms()}, touch=False)
