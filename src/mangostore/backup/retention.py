"""Retention: which backups to keep, and pruning the others without breaking a chain.

Every backup younger than ``keep_all_days`` is kept; older ones, up to
``retention_days``, are thinned to one restore point per ``thin_every_s`` (an hour) for
each database. A kept backup keeps every backup it needs (its parent, its parent's
parent, up to the full backup it starts from); the newest backup's chain is always
kept, however old. Everything else is pruned: its
manifest first (from then on it is no backup), then its objects. An interruption
leaves objects no manifest lists; they are removed as orphans once older than
``orphan_grace_s`` (younger ones may belong to a backup being written right now).
Deletion never takes an object a kept manifest lists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from mangostore.backup.catalog import Catalog
from mangostore.backup.destinations import Destination
from mangostore.backup.manifest import Manifest, manifest_name
from mangostore.backup.policy import BackupPolicy

__all__ = ["PruneReport", "chosen_for_keeping", "prune"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class PruneReport:
    """What :meth:`BackupService.prune` did (or would do, with ``dry_run``).

    Attributes:
        kept: ids of the backups kept.
        deleted: ids of the backups pruned.
        objects_deleted: objects removed (the pruned backups' and orphans').
        orphans: objects no manifest listed that were removed.
        dry_run: nothing was deleted.
    """

    kept: list[str]
    deleted: list[str]
    objects_deleted: int
    orphans: list[str] = field(default_factory=list)
    dry_run: bool = False


def chosen_for_keeping(catalog: Catalog, now_ms: int, policy: BackupPolicy) -> set[str]:
    """The ids of the backups retention keeps (each with its whole chain)."""
    cutoff = now_ms - int(policy.retention_days * _DAY_MS)
    dense = now_ms - int(policy.keep_all_days * _DAY_MS)
    wanted = [m for m in catalog.backups if m.created_at >= max(cutoff, dense)]
    wanted.extend(_thinned(catalog, cutoff, dense, int(policy.thin_every_s * 1000)))
    latest = catalog.latest()
    if latest is not None:
        wanted.append(latest)
    by_id = {m.id: m for m in catalog.backups}
    keep: set[str] = set()
    for manifest in wanted:
        current: Manifest | None = manifest
        while current is not None and current.id not in keep:
            keep.add(current.id)
            current = by_id.get(current.parent) if current.parent else None
    return keep


def _thinned(catalog: Catalog, start_ms: int, end_ms: int, every_ms: int) -> list[Manifest]:
    """One backup of each database per ``every_ms`` slot from ``start_ms`` to
    ``end_ms``: the one whose restore reads the fewest backups (the newest of those).
    Its chain is of higher levels, shared with the other slots' choices, so thinning
    frees the incrementals in between."""
    chosen: dict[tuple[str | None, int], Manifest] = {}
    for manifest in catalog.backups:
        if not start_ms <= manifest.created_at < end_ms:
            continue
        slot = (manifest.log_id, manifest.created_at // every_ms)
        best = chosen.get(slot)
        if best is None or manifest.depth <= best.depth:
            chosen[slot] = manifest
    return list(chosen.values())


def _created_ms(backup_id: str) -> int | None:
    """When a backup id (UUIDv7) was made, or ``None`` for another name."""
    try:
        value = uuid.UUID(backup_id)
    except ValueError:
        return None
    return value.int >> 80 if value.version == 7 else None


def prune(
    destination: Destination,
    catalog: Catalog,
    now_ms: int,
    policy: BackupPolicy,
    *,
    dry_run: bool = False,
) -> PruneReport:
    """Delete the backups retention does not keep, then orphaned objects."""
    keep = chosen_for_keeping(catalog, now_ms, policy)
    doomed = [m for m in catalog.backups if m.id not in keep]
    removed = 0
    if not dry_run:
        for manifest in doomed:
            destination.delete(manifest_name(manifest.id))
            for obj in manifest.objects:
                destination.delete(obj.name)
                removed += 1
    listed = {o.name for m in catalog.backups if m.id in keep for o in m.objects}
    # A manifest that failed its checks still protects its objects: it may be a
    # backup of another vault sharing the folder, and deleting is not undone.
    protected = {name.split("/")[-1].removesuffix(".json") for name, _ in catalog.problems}
    grace_ms = int(policy.orphan_grace_s * 1000)
    orphans = []
    for name in destination.names("objects/"):
        parts = name.split("/")
        if len(parts) < 3 or name in listed or parts[1] in keep or parts[1] in protected:
            continue
        made = _created_ms(parts[1])
        if made is None or now_ms - made < grace_ms:
            continue
        orphans.append(name)
        if not dry_run:
            destination.delete(name)
            removed += 1
    return PruneReport(
        kept=sorted(keep),
        deleted=[m.id for m in doomed],
        objects_deleted=removed,
        orphans=orphans,
        dry_run=dry_run,
    )
