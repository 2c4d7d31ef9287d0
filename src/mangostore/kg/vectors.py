"""Keeping ``kg_embeddings`` in step with the graph's text.

Triggers put every new or changed entity and observation in ``kg_embedding_queue``.
:class:`EmbeddingSync` drains the queue: it hashes each text (SHA-256), skips texts
whose vector for this model version already exists (for this row, or for any row
with the same text), embeds the rest in batches outside any transaction, and writes
the vectors in one transaction per batch, after checking that the text did not change
meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mangostore.ids import new_id
from mangostore.kg.embedding_protocol import Embedder, content_hash, to_blob
from mangostore.progress import Progress, Reporter

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.ports import SqlDatabase

__all__ = ["EmbeddingSync", "embedding_text"]

_TEXTS = (
    "SELECT q.source_id, q.entity_id, q.user_id, q.kind, "
    "CASE q.kind WHEN 'entity' THEN e.name || coalesce('. ' || e.description, '') "
    "ELSE o.content END "
    "FROM kg_embedding_queue q "
    "LEFT JOIN kg_entities e ON q.kind = 'entity' AND e.id = q.source_id "
    "LEFT JOIN kg_observations o ON q.kind = 'observation' AND o.id = q.source_id"
)


def embedding_text(name: str, description: str | None) -> str:
    """Return the text embedded for an entity (observations are embedded as they are)."""
    return name + (". " + description if description is not None else "")


class EmbeddingSync:
    """Drains the embedding queue of one database with one embedder."""

    def __init__(self, db: SqlDatabase, embedder: Embedder) -> None:
        self._db = db
        self._embedder = embedder
        self._model = embedder.model_version

    def run(
        self, user_id: str | None = None, *, batch: int = 256, progress: Progress | None = None
    ) -> int:
        """Embed what is queued (for one user, or everyone); return how many texts were embedded.

        ``progress`` hears of the stage ``"embedding"``, counted in queued texts, after
        each batch has committed.
        """
        report = Reporter(progress)
        report.begin("embedding")
        self._backfill(user_id)
        where = " WHERE q.user_id = ?" if user_id is not None else ""
        params: list[Any] = [user_id] if user_id is not None else []
        if report.wanted:
            queued = self._db.query(f"SELECT count(*) FROM kg_embedding_queue q{where}", params)
            report.advance(0, total=int(queued[0][0]))
        embedded = 0
        while True:
            rows = self._db.query(f"{_TEXTS}{where} LIMIT ?", [*params, batch])
            if not rows:
                break
            progressed, count = self._batch([tuple(r) for r in rows])
            embedded += count
            if not progressed:
                break
            report.advance(len(rows))
        report.end()
        return embedded

    def _backfill(self, user_id: str | None) -> None:
        """Queue everything of a user who has no vector of this model yet (a new model)."""
        users = (
            [user_id]
            if user_id is not None
            else [r[0] for r in self._db.query("SELECT DISTINCT user_id FROM kg_entities")]
        )
        for user in users:
            has = self._db.query(
                "SELECT 1 FROM kg_embeddings WHERE user_id = ? AND model_version = ? LIMIT 1",
                (user, self._model),
            )
            if has:
                continue
            with self._db.store.transaction() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO kg_embedding_queue "
                    "(source_id, entity_id, user_id, kind) "
                    "SELECT id, id, user_id, 'entity' FROM kg_entities WHERE user_id = ?",
                    (user,),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO kg_embedding_queue "
                    "(source_id, entity_id, user_id, kind) "
                    "SELECT id, entity_id, user_id, 'observation' FROM kg_observations "
                    "WHERE user_id = ?",
                    (user,),
                )

    def _batch(self, rows: list[tuple[Any, ...]]) -> tuple[bool, int]:
        items = []  # (source_id, entity_id, user_id, kind, hash)
        gone = []
        for source_id, entity_id, user, kind, text in rows:
            if text is None:
                gone.append(source_id)
            else:
                items.append((source_id, entity_id, user, kind, text, content_hash(text)))
        vectors: dict[str, bytes] = {}
        unchanged: set[str] = set()
        with self._db.store.reading() as conn:
            for source_id, _, _, _, _, digest in items:
                row = conn.execute(
                    "SELECT content_hash FROM kg_embedding_sources "
                    "WHERE source_id = ? AND model_version = ?",
                    (source_id, self._model),
                ).fetchone()
                if row is not None and row[0] == digest:
                    unchanged.add(source_id)
                    continue
                if digest not in vectors:
                    reuse = conn.execute(
                        "SELECT e.vector_data FROM kg_embedding_sources s "
                        "JOIN kg_embeddings e ON e.id = s.embedding_id "
                        "WHERE s.content_hash = ? AND s.model_version = ? LIMIT 1",
                        (digest, self._model),
                    ).fetchone()
                    if reuse is not None:
                        vectors[digest] = bytes(reuse[0])
        todo: dict[str, str] = {}
        for source_id, _, _, _, text, digest in items:
            if source_id not in unchanged and digest not in vectors:
                todo.setdefault(digest, text)
        if todo:
            texts = list(todo.values())
            matrix = self._embedder.embed(texts)
            for digest, vector in zip(todo, matrix, strict=True):
                vectors[digest] = to_blob(vector)
        now = self._db.clock.now_ms()
        progressed = bool(gone)
        with self._db.store.transaction() as conn:
            conn.executemany(
                "DELETE FROM kg_embedding_queue WHERE source_id = ?", [(g,) for g in gone]
            )
            for source_id, entity_id, user, kind, _, digest in items:
                current = self._current_hash(conn, source_id, kind)
                if current != digest:
                    continue  # changed since it was read: stays queued for the next round
                progressed = True
                if source_id not in unchanged:
                    self._store(
                        conn, source_id, entity_id, user, kind, digest, vectors[digest], now
                    )
                conn.execute("DELETE FROM kg_embedding_queue WHERE source_id = ?", (source_id,))
        return progressed, len(todo)

    @staticmethod
    def _current_hash(conn: Connection, source_id: str, kind: str) -> str | None:
        if kind == "entity":
            row = conn.execute(
                "SELECT name, description FROM kg_entities WHERE id = ?", (source_id,)
            ).fetchone()
            return content_hash(embedding_text(row[0], row[1])) if row is not None else None
        row = conn.execute(
            "SELECT content FROM kg_observations WHERE id = ?", (source_id,)
        ).fetchone()
        return content_hash(row[0]) if row is not None else None

    def _store(
        self,
        conn: Connection,
        source_id: str,
        entity_id: str,
        user_id: str,
        kind: str,
        digest: str,
        blob: bytes,
        now: int,
    ) -> None:
        conn.execute(
            "DELETE FROM kg_embeddings WHERE id IN (SELECT embedding_id FROM kg_embedding_sources "
            "WHERE source_id = ? AND model_version = ?)",
            (source_id, self._model),
        )
        if kind == "observation":
            row = conn.execute(
                "SELECT entity_id FROM kg_observations WHERE id = ?", (source_id,)
            ).fetchone()
            entity_id = row[0]
        embedding_id = new_id()
        conn.execute(
            "INSERT INTO kg_embeddings (id, entity_id, user_id, embedding_type, vector_data, "
            "dimensions, model_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                embedding_id,
                entity_id,
                user_id,
                "semantic" if kind == "entity" else "contextual",
                blob,
                self._embedder.dimensions,
                self._model,
                now,
            ),
        )
        conn.execute(
            "INSERT INTO kg_embedding_sources (embedding_id, source_id, model_version, "
            "content_hash) VALUES (?, ?, ?, ?)",
            (embedding_id, source_id, self._model, digest),
        )
