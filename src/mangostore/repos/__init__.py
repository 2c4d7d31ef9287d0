"""Repositories: typed access to every table, as attributes of the database."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from mangostore.records import (
    AIConversation,
    AIMemory,
    CommandHistory,
    KGEmbedding,
    KGEntity,
    KGObservation,
    KGRelation,
    Notification,
    NotificationAction,
    NotificationPreference,
    NotificationType,
    Permission,
    Project,
    SecurityEvent,
    TerminalSession,
    User,
    UserSession,
    VoiceProfile,
)
from mangostore.repos.base import Repository, UserOwnedRepository
from mangostore.repos.commands import CommandHistoryRepository, CommandStats
from mangostore.repos.events import SecurityEventRepository
from mangostore.repos.projects import ProjectRepository
from mangostore.repos.terminal import TerminalSessionRepository
from mangostore.repos.users import UserRepository
from mangostore.repos.voice import VoiceProfileRepository

if TYPE_CHECKING:
    from mangostore.db import Database

__all__ = [
    "CommandHistoryRepository",
    "CommandStats",
    "PermissionRepository",
    "ProjectRepository",
    "Repository",
    "RepositoryAccess",
    "SecurityEventRepository",
    "TerminalSessionRepository",
    "UserOwnedRepository",
    "UserRepository",
    "VoiceProfileRepository",
]


class PermissionRepository(UserOwnedRepository[Permission]):
    """``db.permissions``: ``granted_at`` defaults to now."""

    now_on_create = ("granted_at",)


class RepositoryAccess:
    """Mixed into :class:`mangostore.Database`: one repository per table, made on first use."""

    def _database(self) -> Database:
        return self  # type: ignore[return-value]

    @cached_property
    def users(self) -> UserRepository:
        """The ``users`` table."""
        return UserRepository(self._database(), User)

    @cached_property
    def projects(self) -> ProjectRepository:
        """The ``projects`` table."""
        return ProjectRepository(self._database(), Project)

    @cached_property
    def terminal_sessions(self) -> TerminalSessionRepository:
        """The ``terminal_sessions`` table."""
        return TerminalSessionRepository(self._database(), TerminalSession)

    @cached_property
    def voice_profiles(self) -> VoiceProfileRepository:
        """The ``voice_profiles`` table."""
        return VoiceProfileRepository(self._database(), VoiceProfile)

    @cached_property
    def command_history(self) -> CommandHistoryRepository:
        """The ``command_history`` table."""
        return CommandHistoryRepository(self._database(), CommandHistory)

    @cached_property
    def notification_types(self) -> Repository[NotificationType]:
        """The ``notification_types`` table."""
        return Repository(self._database(), NotificationType)

    @cached_property
    def notification_preferences(self) -> UserOwnedRepository[NotificationPreference]:
        """The ``notification_preferences`` table."""
        return UserOwnedRepository(self._database(), NotificationPreference)

    @cached_property
    def notifications(self) -> UserOwnedRepository[Notification]:
        """The ``notifications`` table (``metadata`` is encrypted)."""
        return UserOwnedRepository(self._database(), Notification)

    @cached_property
    def notification_actions(self) -> Repository[NotificationAction]:
        """The ``notification_actions`` table."""
        return Repository(self._database(), NotificationAction)

    @cached_property
    def ai_conversations(self) -> UserOwnedRepository[AIConversation]:
        """The ``ai_conversations`` table (``conversation_data`` is encrypted)."""
        return UserOwnedRepository(self._database(), AIConversation)

    @cached_property
    def ai_memory(self) -> UserOwnedRepository[AIMemory]:
        """The ``ai_memory`` table."""
        return UserOwnedRepository(self._database(), AIMemory)

    @cached_property
    def security_events(self) -> SecurityEventRepository:
        """The ``security_events`` table."""
        return SecurityEventRepository(self._database(), SecurityEvent)

    @cached_property
    def permissions(self) -> PermissionRepository:
        """The ``permissions`` table."""
        return PermissionRepository(self._database(), Permission)

    @cached_property
    def user_sessions(self) -> UserOwnedRepository[UserSession]:
        """The ``user_sessions`` table."""
        return UserOwnedRepository(self._database(), UserSession)

    @cached_property
    def kg_entities(self) -> UserOwnedRepository[KGEntity]:
        """The ``kg_entities`` table."""
        return UserOwnedRepository(self._database(), KGEntity)

    @cached_property
    def kg_relations(self) -> UserOwnedRepository[KGRelation]:
        """The ``kg_relations`` table."""
        return UserOwnedRepository(self._database(), KGRelation)

    @cached_property
    def kg_observations(self) -> UserOwnedRepository[KGObservation]:
        """The ``kg_observations`` table."""
        return UserOwnedRepository(self._database(), KGObservation)

    @cached_property
    def kg_embeddings(self) -> UserOwnedRepository[KGEmbedding]:
        """The ``kg_embeddings`` table."""
        return UserOwnedRepository(self._database(), KGEmbedding)
