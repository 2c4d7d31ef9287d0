"""The knowledge graph's duplicates made by two devices: one ``kubectl`` each.

Two devices that both learn about ``kubectl`` before they sync make two entities
with different ids; nothing in the schema stops that, and the graph's own upsert
would have found one entity had they been on one device. After a merge brings in
entities, each is compared with the user's other entities of the same type by
canonical name, and the later one (by life: timestamp, then device) is folded into
the earlier with the graph's own merge, which moves relations, observations and
aliases to the survivor. Every device picks the same survivor; the fold is a local
change like any other, so it also reaches devices that never saw both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mangostore.errors import NotFoundError, ValidationError
from mangostore.kg.names import canonical

if TYPE_CHECKING:
    from mangostore.sync.ports import SyncDatabase

__all__ = ["fold_duplicate_entities"]


def fold_duplicate_entities(db: SyncDatabase, entity_ids: list[str]) -> int:
    """Fold into their earliest twin the entities among ``entity_ids`` that have one;
    return how many were folded."""
    folded = 0
    for entity_id in entity_ids:
        rows = db.query(
            "SELECT user_id, entity_type, name FROM kg_entities WHERE id = ?",
            (entity_id,),
            use_cache=False,
        )
        if not rows:
            continue  # folded already, or deleted
        user_id, entity_type, name = rows[0]
        key = canonical(str(name))
        twins = [
            str(r[0])
            for r in db.query(
                "SELECT id, name FROM kg_entities WHERE user_id = ? AND entity_type = ? "
                "AND id <> ? AND lower(name) = lower(?)",
                (user_id, entity_type, entity_id, name),
                use_cache=False,
            )
            if canonical(str(r[1])) == key
        ]
        if not twins:
            continue
        group = [entity_id, *twins]
        lives = {
            str(r[0]): (int(r[1]), str(r[2]))
            for r in db.query(
                "SELECT r.pk, r.life, s.device_id FROM sync_rows AS r "
                "JOIN sync_sites AS s ON s.site = r.life_site "
                f"WHERE r.tbl = 'kg_entities' AND r.pk IN ({', '.join('?' for _ in group)})",
                group,
                use_cache=False,
            )
        }
        # Without a life (made before sync was enabled and never changed) an entity
        # sorts first: it is the older one.
        order = sorted(group, key=lambda pk: (lives.get(pk, (0, "")), pk))
        keep = order[0]
        for drop in order[1:]:
            try:
                db.kg.merge(keep, drop)
            except (NotFoundError, ValidationError):
                continue  # gone meanwhile
            folded += 1
    return folded
