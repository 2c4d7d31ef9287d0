"""The sync server: a FastAPI app that relays sealed batches between the devices of a
vault, on a SQLite or PostgreSQL store. See docs/sync-server.md.

Needs the ``server`` extra (``pip install 'mangostore[server]'``).
"""

from __future__ import annotations

from mangostore.sync.server.store import (
    DeviceInfo,
    RelayStore,
    SnapshotInfo,
    StoredBatch,
    StoreStats,
    Vault,
)

__all__ = ["DeviceInfo", "RelayStore", "SnapshotInfo", "StoreStats", "StoredBatch", "Vault"]
