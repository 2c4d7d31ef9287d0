"""Multi-device sync: change capture, a hybrid logical clock, deterministic merges,
encrypted batches, transports. See docs/sync.md; the service is ``db.sync``.

The names below are loaded on first use: the engine imports
:mod:`mangostore.sync.clock` while it starts, before the services exist.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mangostore.sync.batches import Batch
    from mangostore.sync.conflicts import Conflict
    from mangostore.sync.folder import FolderRelay
    from mangostore.sync.service import SyncReport, SyncService, SyncStatus
    from mangostore.sync.transport import MemoryRelay, Pulled, SyncTransport

__all__ = [
    "Batch",
    "Conflict",
    "FolderRelay",
    "MemoryRelay",
    "Pulled",
    "SyncReport",
    "SyncService",
    "SyncStatus",
    "SyncTransport",
]

_HOMES = {
    "Batch": "batches",
    "Conflict": "conflicts",
    "FolderRelay": "folder",
    "MemoryRelay": "transport",
    "Pulled": "transport",
    "SyncReport": "service",
    "SyncService": "service",
    "SyncStatus": "service",
    "SyncTransport": "transport",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mangostore.sync' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mangostore.sync.{home}"), name)
