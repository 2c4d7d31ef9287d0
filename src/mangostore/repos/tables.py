"""The repositories of the tables that need nothing beyond the base class but their types.

Each class exists so that ``create`` and ``update`` name the table's columns for a type
checker (:mod:`mangostore.repos.fields`, :mod:`mangostore.repos.changes`). The
signatures are declared for type checkers only: at run time the base class's methods
run, with no extra call on the write path, and refuse an unknown or missing column
themselves. They are narrower than the base's ``**fields: Any`` on purpose (hence
``type: ignore[override]``): the base takes any name and refuses an unknown one when
it runs; these name the columns, so a type checker refuses it first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from mangostore.records import (
    AIConversation,
    AIMemory,
    KGEmbedding,
    KGEntity,
    KGObservation,
    KGRelation,
    Notification,
    NotificationAction,
    NotificationPreference,
    NotificationType,
    Permission,
    UserSession,
)
from mangostore.repos.base import Repository, UserOwnedRepository
from mangostore.repos.changes import (
    AIConversationChanges,
    AIMemoryChanges,
    KGEmbeddingChanges,
    KGEntityChanges,
    KGObservationChanges,
    KGRelationChanges,
    NotificationActionChanges,
    NotificationChanges,
    NotificationPreferenceChanges,
    NotificationTypeChanges,
    PermissionChanges,
    UserSessionChanges,
)
from mangostore.repos.fields import (
    AIConversationFields,
    AIMemoryFields,
    KGEmbeddingFields,
    KGEntityFields,
    KGObservationFields,
    KGRelationFields,
    NotificationActionFields,
    NotificationFields,
    NotificationPreferenceFields,
    NotificationTypeFields,
    PermissionFields,
    UserSessionFields,
)

__all__ = [
    "AIConversationRepository",
    "AIMemoryRepository",
    "KGEmbeddingRepository",
    "KGEntityRepository",
    "KGObservationRepository",
    "KGRelationRepository",
    "NotificationActionRepository",
    "NotificationPreferenceRepository",
    "NotificationRepository",
    "NotificationTypeRepository",
    "PermissionRepository",
    "UserSessionRepository",
]


class NotificationTypeRepository(Repository[NotificationType]):
    """``db.notification_types``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[NotificationTypeFields]
        ) -> NotificationType:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[NotificationTypeChanges]
        ) -> NotificationType:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class NotificationPreferenceRepository(UserOwnedRepository[NotificationPreference]):
    """``db.notification_preferences``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[NotificationPreferenceFields]
        ) -> NotificationPreference:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[NotificationPreferenceChanges]
        ) -> NotificationPreference:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class NotificationRepository(UserOwnedRepository[Notification]):
    """``db.notifications`` (``metadata`` is encrypted)."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[NotificationFields]
        ) -> Notification:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[NotificationChanges]
        ) -> Notification:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class NotificationActionRepository(Repository[NotificationAction]):
    """``db.notification_actions``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[NotificationActionFields]
        ) -> NotificationAction:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[NotificationActionChanges]
        ) -> NotificationAction:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class AIConversationRepository(UserOwnedRepository[AIConversation]):
    """``db.ai_conversations`` (``conversation_data`` is encrypted)."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[AIConversationFields]
        ) -> AIConversation:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[AIConversationChanges]
        ) -> AIConversation:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class AIMemoryRepository(UserOwnedRepository[AIMemory]):
    """``db.ai_memory``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[AIMemoryFields]
        ) -> AIMemory:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[AIMemoryChanges]
        ) -> AIMemory:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class PermissionRepository(UserOwnedRepository[Permission]):
    """``db.permissions``: ``granted_at`` defaults to now."""

    now_on_create = ("granted_at",)

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[PermissionFields]
        ) -> Permission:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[PermissionChanges]
        ) -> Permission:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class UserSessionRepository(UserOwnedRepository[UserSession]):
    """``db.user_sessions``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[UserSessionFields]
        ) -> UserSession:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[UserSessionChanges]
        ) -> UserSession:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class KGEntityRepository(UserOwnedRepository[KGEntity]):
    """``db.kg_entities``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[KGEntityFields]
        ) -> KGEntity:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[KGEntityChanges]
        ) -> KGEntity:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class KGRelationRepository(UserOwnedRepository[KGRelation]):
    """``db.kg_relations``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[KGRelationFields]
        ) -> KGRelation:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[KGRelationChanges]
        ) -> KGRelation:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class KGObservationRepository(UserOwnedRepository[KGObservation]):
    """``db.kg_observations``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[KGObservationFields]
        ) -> KGObservation:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[KGObservationChanges]
        ) -> KGObservation:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...


class KGEmbeddingRepository(UserOwnedRepository[KGEmbedding]):
    """``db.kg_embeddings``."""

    if TYPE_CHECKING:

        def create(  # type: ignore[override]
            self, **fields: Unpack[KGEmbeddingFields]
        ) -> KGEmbedding:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[KGEmbeddingChanges]
        ) -> KGEmbedding:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...
