"""What sync uses of the database, as protocols.

Sync is typed against these, not against :class:`mangostore.Database`: the database
module builds the sync service, so importing it back would make an import cycle.
:class:`mangostore.Database` conforms; the type checker verifies it where the
database builds its :class:`~mangostore.sync.SyncService`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mangostore.engine.connection import Row
    from mangostore.engine.store import Params, Store
    from mangostore.filestore.service import FileService
    from mangostore.kg.graph import KnowledgeGraph
    from mangostore.privacy.service import PrivacyService

__all__ = ["SyncDatabase"]


class SyncDatabase(Protocol):
    """The database sync serves."""

    @property
    def store(self) -> Store:
        """The connections and what every service needs from them."""
        ...

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        ...

    @property
    def privacy(self) -> PrivacyService:
        """Erasure, for users erased on another device."""
        ...

    @property
    def files(self) -> FileService:
        """Stored files, whose chunks travel through relays that carry them."""
        ...

    @property
    def kg(self) -> KnowledgeGraph:
        """The knowledge graph, whose merge folds twin entities."""
        ...

    def query(self, sql: str, params: Params = (), *, use_cache: bool | None = None) -> list[Row]:
        """Run a read-only statement and return its rows."""
        ...


#: Makes a new database of an existing vault: ``create_database`` with ``vault_of``,
#: handed to the store by the opening code (which sits above the services).
DeviceMaker = Callable[..., Any]
