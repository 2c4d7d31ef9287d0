"""Merging two entities of the knowledge graph into one, and undoing a merge.

A merge folds the dropped entity into the kept one: its relations, observations and
aliases are re-pointed, relations the kept entity already has absorb their duplicates,
relations between the two (which would become self-loops) are removed, and the dropped
name becomes an alias. Everything needed to undo it is written to ``kg_merges`` as a
JSON snapshot in the same transaction, so :meth:`Merges.undo_merge` can bring the
dropped entity back exactly.

``db.kg`` (:class:`~mangostore.kg.graph.KnowledgeGraph`) delegates its merge methods
here; their full contract (arguments, errors) is documented there.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mangostore.errors import InvalidTransitionError, NotFoundError, ValidationError
from mangostore.ids import new_id
from mangostore.kg.entities import Entities
from mangostore.kg.model import EntityRef, MergeReport
from mangostore.kg.names import canonical
from mangostore.kg.store import HOLDS, RELATIONS, GraphStore, entity_id, noisy_or, relation_from_row
from mangostore.records import KGEntity
from mangostore.sql import placeholders, quote_identifier

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.ports import GraphDatabase

__all__ = ["Merges"]


class Merges:
    """Merges of the entities of one knowledge graph, logged so that they can be undone.

    Args:
        db: the database (its ``kg_entities`` repository updates the kept entity).
        store: the shared row access.
        entities: adds the dropped name as an alias of the kept entity.
    """

    def __init__(self, db: GraphDatabase, store: GraphStore, entities: Entities) -> None:
        self._db = db
        self._store = store
        self._entities = entities

    def merge(self, keep: EntityRef, drop: EntityRef, *, dry_run: bool = False) -> MergeReport:
        """Fold ``drop`` into ``keep`` and log the merge; ``dry_run`` only reports.

        Raises:
            NotFoundError: either entity is missing.
            ValidationError: the same entity twice, or entities of different users.
        """
        keep_id, drop_id = entity_id(keep), entity_id(drop)
        if keep_id == drop_id:
            raise ValidationError("an entity cannot be merged into itself")
        merge_id = None if dry_run else new_id()
        now = self._store.now()
        with self._store.transaction() as conn:
            kept = self._store.entity_in(conn, keep_id)
            dropped = self._store.entity_in(conn, drop_id)
            if kept.user_id != dropped.user_id:
                raise ValidationError("only entities of the same user can be merged")
            report, snapshot = self._plan_merge(conn, kept, dropped, now, merge_id)
            if dry_run:
                # Everything above only read; nothing to undo.
                return report
            self._apply_merge(conn, kept, dropped, snapshot, merge_id or "", now)
        return report

    def _plan_merge(
        self,
        conn: Connection,
        kept: KGEntity,
        dropped: KGEntity,
        now: int,
        merge_id: str | None,
    ) -> tuple[MergeReport, dict[str, Any]]:
        """Read what the merge changes: the report, and the snapshot that undoes it.

        Only reads, so that a dry run and a real merge report the same thing.
        """
        keep_id, drop_id = kept.id, dropped.id
        columns = self._db.kg_entities.spec.names
        entity_row = conn.execute(
            f"SELECT {', '.join(map(quote_identifier, columns))} FROM kg_entities WHERE id = ?",
            (drop_id,),
        ).fetchone()
        relation_rows = conn.execute(
            f"{RELATIONS} WHERE r.subject_id = ? OR r.object_id = ? ORDER BY r.id",
            (drop_id, drop_id),
        ).fetchall()
        repointed: list[dict[str, Any]] = []
        combined: list[dict[str, Any]] = []
        loops: list[dict[str, Any]] = []
        for row in relation_rows:
            rel = relation_from_row(row)
            subject = keep_id if rel.subject_id == drop_id else rel.subject_id
            obj = keep_id if rel.object_id == drop_id else rel.object_id
            raw = self._raw_relation(conn, rel.id)
            if subject == obj:
                loops.append(raw)
                continue
            twin = None
            if rel.holds_at(now):
                twin_row = conn.execute(
                    f"{RELATIONS} WHERE r.subject_id = ? AND r.predicate = ? AND r.object_id = ? "
                    f"AND r.id <> ? AND {HOLDS} LIMIT 1",
                    (subject, rel.predicate, obj, rel.id, now, now),
                ).fetchone()
                twin = relation_from_row(twin_row) if twin_row is not None else None
            if twin is not None:
                combined.append(
                    {
                        "dropped": raw,
                        "into": twin.id,
                        "before": {
                            "weight": twin.weight,
                            "confidence_score": twin.confidence,
                            "last_confirmed": twin.last_confirmed,
                            "confirmations": twin.confirmations,
                        },
                    }
                )
            else:
                repointed.append(
                    {
                        "id": rel.id,
                        "subject": rel.subject_id == drop_id,
                        "object": rel.object_id == drop_id,
                    }
                )
        observations = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM kg_observations WHERE entity_id = ? ORDER BY id", (drop_id,)
            ).fetchall()
        ]
        kept_aliases = {
            r[0]
            for r in conn.execute(
                "SELECT canonical_alias FROM kg_aliases WHERE entity_id = ?", (keep_id,)
            ).fetchall()
        }
        aliases_moved: list[str] = []
        aliases_dropped: list[dict[str, Any]] = []
        for alias_row in conn.execute(
            "SELECT id, alias, canonical_alias, source, merge_id, created_at FROM kg_aliases "
            "WHERE entity_id = ? ORDER BY id",
            (drop_id,),
        ).fetchall():
            if alias_row[2] in kept_aliases or alias_row[2] == canonical(kept.name):
                aliases_dropped.append(
                    dict(
                        zip(
                            ("id", "alias", "canonical_alias", "source", "merge_id", "created_at"),
                            alias_row,
                            strict=True,
                        )
                    )
                )
            else:
                aliases_moved.append(alias_row[0])
        moved_keys = {
            r[0]
            for r in conn.execute(
                "SELECT canonical_alias FROM kg_aliases WHERE entity_id = ?", (drop_id,)
            ).fetchall()
        }
        name_key = canonical(dropped.name)
        alias_added = (
            dropped.name
            if name_key != canonical(kept.name) and name_key not in kept_aliases | moved_keys
            else None
        )
        report = MergeReport(
            keep_id=keep_id,
            drop_id=drop_id,
            dry_run=merge_id is None,
            merge_id=merge_id,
            relations_repointed=[r["id"] for r in repointed],
            relations_combined=[(c["dropped"]["id"], c["into"]) for c in combined],
            self_loops_removed=[r["id"] for r in loops],
            observations_moved=observations,
            aliases_moved=aliases_moved,
            alias_added=alias_added,
        )
        snapshot = {
            "entity": dict(zip(columns, entity_row, strict=True)),
            "keep_before": {
                "description": kept.description,
                "metadata": kept.metadata,
                "access_count": kept.access_count,
                "confidence_score": kept.confidence_score,
            },
            "repointed": repointed,
            "combined": combined,
            "loops": loops,
            "observations": observations,
            "aliases_moved": aliases_moved,
            "aliases_dropped": aliases_dropped,
        }
        return report, snapshot

    def _raw_relation(self, conn: Connection, relation_id: str) -> dict[str, Any]:
        """Every column of a relation and its validity, as the snapshot keeps them."""
        row = conn.execute(
            "SELECT r.id, r.user_id, r.project_id, r.subject_id, r.predicate, r.object_id, "
            "r.weight, r.confidence_score, r.created_at, r.last_confirmed, r.source, "
            "v.valid_from, v.valid_to, v.invalidated_at, v.invalidation_reason, "
            "v.superseded_by, v.confirmations FROM kg_relations r "
            "JOIN kg_relation_validity v ON v.relation_id = r.id WHERE r.id = ?",
            (relation_id,),
        ).fetchone()
        keys = [
            "id",
            "user_id",
            "project_id",
            "subject_id",
            "predicate",
            "object_id",
            "weight",
            "confidence_score",
            "created_at",
            "last_confirmed",
            "source",
            "valid_from",
            "valid_to",
            "invalidated_at",
            "invalidation_reason",
            "superseded_by",
            "confirmations",
        ]
        return dict(zip(keys, row, strict=True))

    def _apply_merge(
        self,
        conn: Connection,
        kept: KGEntity,
        dropped: KGEntity,
        snapshot: dict[str, Any],
        merge_id: str,
        now: int,
    ) -> None:
        """Make the changes the snapshot describes, and log the merge with it."""
        keep_id, drop_id = kept.id, dropped.id
        for item in snapshot["combined"]:
            dropped_rel = item["dropped"]
            before = item["before"]
            conn.execute(
                "UPDATE kg_relations SET weight = ?, confidence_score = ?, "
                "last_confirmed = max(coalesce(last_confirmed, 0), ?) WHERE id = ?",
                (
                    before["weight"] + (dropped_rel["weight"] or 1.0),
                    noisy_or(
                        before["confidence_score"],
                        dropped_rel["confidence_score"]
                        if dropped_rel["confidence_score"] is not None
                        else 1.0,
                    ),
                    dropped_rel["last_confirmed"] or dropped_rel["created_at"],
                    item["into"],
                ),
            )
            conn.execute(
                "UPDATE kg_relation_validity SET confirmations = confirmations + ? "
                "WHERE relation_id = ?",
                (dropped_rel["confirmations"], item["into"]),
            )
            conn.execute("DELETE FROM kg_relations WHERE id = ?", (dropped_rel["id"],))
        for loop in snapshot["loops"]:
            conn.execute("DELETE FROM kg_relations WHERE id = ?", (loop["id"],))
        for item in snapshot["repointed"]:
            if item["subject"]:
                conn.execute(
                    "UPDATE kg_relations SET subject_id = ? WHERE id = ?", (keep_id, item["id"])
                )
            if item["object"]:
                conn.execute(
                    "UPDATE kg_relations SET object_id = ? WHERE id = ?", (keep_id, item["id"])
                )
        conn.executemany(
            "UPDATE kg_observations SET entity_id = ? WHERE id = ?",
            [(keep_id, o) for o in snapshot["observations"]],
        )
        for alias in snapshot["aliases_dropped"]:
            conn.execute("DELETE FROM kg_aliases WHERE id = ?", (alias["id"],))
        conn.executemany(
            "UPDATE kg_aliases SET entity_id = ? WHERE id = ?",
            [(keep_id, a) for a in snapshot["aliases_moved"]],
        )
        changes: dict[str, Any] = {
            "access_count": (kept.access_count or 0) + (dropped.access_count or 0)
        }
        if not kept.description and dropped.description:
            changes["description"] = dropped.description
        if dropped.metadata:
            merged = dict(kept.metadata or {})
            for k, v in dropped.metadata.items():
                merged.setdefault(k, v)
            changes["metadata"] = merged
        if (dropped.confidence_score or 0) > (kept.confidence_score or 0):
            changes["confidence_score"] = dropped.confidence_score
        conn.execute("DELETE FROM kg_entities WHERE id = ?", (drop_id,))
        self._db.kg_entities.update_in(conn, keep_id, changes)
        self._entities.add_alias_in(conn, kept, dropped.name, "merge", merge_id)
        conn.execute(
            "INSERT INTO kg_merges (id, user_id, keep_id, drop_id, drop_name, snapshot, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (merge_id, kept.user_id, keep_id, drop_id, dropped.name, json.dumps(snapshot), now),
        )

    def merges(self, user_id: str, *, include_undone: bool = False) -> list[dict[str, Any]]:
        """Return the user's merges, newest first: id, keep_id, drop_id, drop_name,
        created_at, undone_at."""
        sql = (
            "SELECT id, keep_id, drop_id, drop_name, created_at, undone_at FROM kg_merges "
            "WHERE user_id = ?"
        )
        if not include_undone:
            sql += " AND undone_at IS NULL"
        with self._store.reading() as conn:
            rows = conn.execute(sql + " ORDER BY id DESC", (user_id,)).fetchall()
        keys = ("id", "keep_id", "drop_id", "drop_name", "created_at", "undone_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def undo_merge(self, merge_id: str) -> KGEntity:
        """Undo a merge: bring the dropped entity back, with its relations, observations
        and aliases, and restore the kept entity as it was. Returns the restored entity.

        Raises:
            NotFoundError: no such merge.
            InvalidTransitionError: it was already undone, a later merge involving
                either entity has not been undone, or the kept entity is gone.
        """
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT keep_id, drop_id, snapshot, undone_at, user_id FROM kg_merges WHERE id = ?",
                (merge_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no merge has id {merge_id!r}")
            keep_id, drop_id, snapshot_text, undone_at, _ = row
            if undone_at is not None:
                raise InvalidTransitionError(f"merge {merge_id} was already undone")
            later = conn.execute(
                "SELECT id FROM kg_merges WHERE id > ? AND undone_at IS NULL "
                "AND (keep_id IN (?, ?) OR drop_id IN (?, ?)) ORDER BY id DESC LIMIT 1",
                (merge_id, keep_id, drop_id, keep_id, drop_id),
            ).fetchone()
            if later is not None:
                raise InvalidTransitionError(
                    f"merge {later[0]} came later and involves the same entities; undo it first"
                )
            if (
                conn.execute("SELECT 1 FROM kg_entities WHERE id = ?", (keep_id,)).fetchone()
                is None
            ):
                raise InvalidTransitionError(
                    "the kept entity was deleted since the merge; it cannot be undone"
                )
            snapshot = json.loads(snapshot_text)
            entity = snapshot["entity"]
            columns = list(entity)
            conn.execute(
                f"INSERT INTO kg_entities ({', '.join(map(quote_identifier, columns))}) "
                f"VALUES ({placeholders(len(columns))})",
                [entity[c] for c in columns],
            )
            conn.execute(
                "UPDATE kg_entity_names SET canonical_name = ? WHERE entity_id = ?",
                (canonical(entity["name"]), drop_id),
            )
            before = snapshot["keep_before"]
            conn.execute(
                "UPDATE kg_entities SET description = ?, metadata = ?, access_count = ?, "
                "confidence_score = ? WHERE id = ?",
                (
                    before["description"],
                    json.dumps(before["metadata"]) if before["metadata"] is not None else None,
                    before["access_count"],
                    before["confidence_score"],
                    keep_id,
                ),
            )
            for item in snapshot["repointed"]:
                if item["subject"]:
                    conn.execute(
                        "UPDATE kg_relations SET subject_id = ? WHERE id = ? AND subject_id = ?",
                        (drop_id, item["id"], keep_id),
                    )
                if item["object"]:
                    conn.execute(
                        "UPDATE kg_relations SET object_id = ? WHERE id = ? AND object_id = ?",
                        (drop_id, item["id"], keep_id),
                    )
            for item in snapshot["combined"]:
                self._restore_relation(conn, item["dropped"])
                prior = item["before"]
                conn.execute(
                    "UPDATE kg_relations SET weight = ?, confidence_score = ?, last_confirmed = ? "
                    "WHERE id = ?",
                    (
                        prior["weight"],
                        prior["confidence_score"],
                        prior["last_confirmed"],
                        item["into"],
                    ),
                )
                conn.execute(
                    "UPDATE kg_relation_validity SET confirmations = ? WHERE relation_id = ?",
                    (prior["confirmations"], item["into"]),
                )
            for loop in snapshot["loops"]:
                self._restore_relation(conn, loop)
            conn.executemany(
                "UPDATE kg_observations SET entity_id = ? WHERE id = ? AND entity_id = ?",
                [(drop_id, o, keep_id) for o in snapshot["observations"]],
            )
            conn.execute("DELETE FROM kg_aliases WHERE merge_id = ?", (merge_id,))
            conn.executemany(
                "UPDATE kg_aliases SET entity_id = ? WHERE id = ? AND entity_id = ?",
                [(drop_id, a, keep_id) for a in snapshot["aliases_moved"]],
            )
            for alias in snapshot["aliases_dropped"]:
                conn.execute(
                    "INSERT OR IGNORE INTO kg_aliases (id, entity_id, user_id, alias, "
                    "canonical_alias, source, merge_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        alias["id"],
                        drop_id,
                        entity["user_id"],
                        alias["alias"],
                        alias["canonical_alias"],
                        alias["source"],
                        alias["merge_id"],
                        alias["created_at"],
                    ),
                )
            conn.execute(
                "UPDATE kg_merges SET undone_at = ? WHERE id = ?", (self._store.now(), merge_id)
            )
            restored = self._store.entity_in(conn, drop_id)
        return restored

    @staticmethod
    def _restore_relation(conn: Connection, raw: dict[str, Any]) -> None:
        """Insert a relation deleted by the merge again, with its validity as it was."""
        conn.execute(
            "INSERT INTO kg_relations (id, user_id, project_id, subject_id, predicate, object_id, "
            "weight, confidence_score, created_at, last_confirmed, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(
                raw[k]
                for k in [
                    "id",
                    "user_id",
                    "project_id",
                    "subject_id",
                    "predicate",
                    "object_id",
                    "weight",
                    "confidence_score",
                    "created_at",
                    "last_confirmed",
                    "source",
                ]
            ),
        )
        conn.execute(
            "UPDATE kg_relation_validity SET valid_from = ?, valid_to = ?, invalidated_at = ?, "
            "invalidation_reason = ?, superseded_by = ?, confirmations = ? WHERE relation_id = ?",
            (
                raw["valid_from"],
                raw["valid_to"],
                raw["invalidated_at"],
                raw["invalidation_reason"],
                raw["superseded_by"],
                raw["confirmations"],
                raw["id"],
            ),
        )
