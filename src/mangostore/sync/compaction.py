"""Dropping the sync bookkeeping every known device has acknowledged.

A tombstone's bookkeeping row can go once its deletion went through the relay at a
position every other known device has applied (each says so in every batch it
sends), unless it has changes not pushed yet or lies at or after a batch held for a
newer schema. Live rows keep theirs (docs/sync.md, "Growth").
"""

from __future__ import annotations

from typing import Any

from mangostore.engine.store import Store

__all__ = ["drop_acknowledged"]


def drop_acknowledged(store: Store, own_device: str) -> int:
    """Drop the tombstones every known device has applied; return how many went."""
    with store.transaction() as conn:
        horizon = _horizon(conn, own_device)
        if horizon <= 0:
            return 0
        rows = conn.execute(
            "DELETE FROM sync_rows WHERE dead = 1 AND seq IS NULL AND pos <= ?", (horizon,)
        ).rowcount
    return max(int(rows), 0)


def _horizon(conn: Any, own_device: str) -> int:
    """The relay position every device has applied, this one included."""
    own = int(conn.execute("SELECT pulled_cursor FROM sync_device").fetchone()[0])
    peers = conn.execute(
        "SELECT min(acked_cursor) FROM sync_peers WHERE device_id <> ?", (own_device,)
    ).fetchone()[0]
    held = conn.execute("SELECT min(cursor) FROM sync_inbox").fetchone()[0]
    if peers is None:
        return 0  # no other device known yet: one may have pulled and not said so
    bounds = [own, int(peers)]
    bounds += [int(held) - 1] if held is not None else []
    return min(bounds)
