"""Voice profiles: at most one active profile per user, switched atomically."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from mangostore.engine.pragmas import Connection
from mangostore.records import VoiceProfile
from mangostore.repos.base import UserOwnedRepository
from mangostore.repos.changes import VoiceProfileChanges
from mangostore.repos.fields import VoiceProfileFields


class VoiceProfileRepository(UserOwnedRepository[VoiceProfile]):
    """``db.voice_profiles``. Training data and voice prints are encrypted.

    Making a profile active (by :meth:`activate`, or by creating or updating it with
    ``is_active=True``) deactivates the user's other profiles in the same
    transaction and points ``users.voice_profile_id`` at it; a partial unique index
    enforces the rule in the database too.
    """

    if TYPE_CHECKING:
        # Declared for type checkers only; see mangostore.repos.tables.
        def create(  # type: ignore[override]
            self, **fields: Unpack[VoiceProfileFields]
        ) -> VoiceProfile:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[VoiceProfileChanges]
        ) -> VoiceProfile:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...

    def activate(self, id: str) -> VoiceProfile:
        """Make this profile the user's only active one.

        Raises:
            NotFoundError: no such profile.
        """
        return self.update(id, is_active=True)

    def active(self, user_id: str) -> VoiceProfile | None:
        """Return the user's active profile, or ``None``."""
        return self.first(user_id=user_id, is_active=True)

    def insert_in(self, conn: Connection, fields: dict[str, Any]) -> VoiceProfile:
        if fields.get("is_active") is True and isinstance(fields.get("user_id"), str):
            self._deactivate_others(conn, fields["user_id"], keep=None)
        profile = super().insert_in(conn, fields)
        if profile.is_active:
            self._point_user_at(conn, profile)
        return profile

    def update_in(
        self, conn: Connection, id: str, fields: dict[str, Any], *, touch: bool = True
    ) -> VoiceProfile:
        if fields.get("is_active") is True:
            current = self.get_in(conn, id)
            self._deactivate_others(conn, fields.get("user_id", current.user_id), keep=id)
        profile = super().update_in(conn, id, fields, touch=touch)
        if fields.get("is_active") is True:
            self._point_user_at(conn, profile)
        elif fields.get("is_active") is False:
            # A deactivated profile stops being the user's current one.
            conn.execute(
                "UPDATE users SET voice_profile_id = NULL, updated_at = ? "
                "WHERE id = ? AND voice_profile_id = ?",
                (self._db.clock.now_ms(), profile.user_id, profile.id),
            )
        return profile

    def _deactivate_others(self, conn: Connection, user_id: str, keep: str | None) -> None:
        conn.execute(
            "UPDATE voice_profiles SET is_active = 0, updated_at = ? "
            "WHERE user_id = ? AND is_active = 1 AND id IS NOT ?",
            (self._db.clock.now_ms(), user_id, keep),
        )

    def _point_user_at(self, conn: Connection, profile: VoiceProfile) -> None:
        conn.execute(
            "UPDATE users SET voice_profile_id = ?, updated_at = ? WHERE id = ?",
            (profile.id, self._db.clock.now_ms(), profile.user_id),
        )
