"""Users: unique usernames and e-mail addresses."""

from __future__ import annotations

from mangostore.records import User
from mangostore.repos.base import Repository


class UserRepository(Repository[User]):
    """``db.users``. ``username`` and ``email`` are unique; a clash raises UniqueConstraintError."""

    def get_by_username(self, username: str) -> User | None:
        """Return the user with this username, or ``None``."""
        return self.first(username=username)

    def get_by_email(self, email: str) -> User | None:
        """Return the user with this e-mail address, or ``None``."""
        return self.first(email=email)
