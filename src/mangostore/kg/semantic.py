"""The semantic side of the knowledge graph: which embedder, which vector index.

Entities use the embedder to confirm a near-duplicate name, search uses it and the
vector index to find entities by meaning. Both ask one :class:`Semantic`, so a call to
``db.kg.set_embedder`` or an assignment to ``db.kg.vector_index`` reaches every part.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal

from mangostore.kg.embedding import Embedder, VectorIndex, default_embedder
from mangostore.kg.vectors import EmbeddingSync
from mangostore.progress import Progress, Reporter

if TYPE_CHECKING:
    from mangostore.kg.ports import SqlDatabase

__all__ = ["Semantic"]


class Semantic:
    """The embedder (loaded on first use) and the vector index of one knowledge graph.

    Args:
        db: the database whose entities and observations are embedded.
        embedder: an embedder, ``"default"`` for
            :func:`~mangostore.kg.embedding.default_embedder` (loaded when first needed),
            or ``None`` for no vectors.
        vector_index: how nearest neighbours are found.
    """

    def __init__(
        self,
        db: SqlDatabase,
        embedder: Embedder | Literal["default"] | None,
        vector_index: VectorIndex,
    ) -> None:
        self._db = db
        # Loading the default model reads weights from disk: done once, on first use,
        # under a lock so that two threads do not both load it.
        self._lock = threading.Lock()
        self._loaded = embedder != "default"
        self._embedder: Embedder | None = None if embedder == "default" else embedder
        self.vector_index = vector_index

    @property
    def embedder(self) -> Embedder | None:
        """The embedder in use, loading the default one on first use (``None``: no vectors)."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._embedder = default_embedder()
                    self._loaded = True
        return self._embedder

    def set_embedder(self, embedder: Embedder | None) -> None:
        """Use ``embedder`` from now on (``None`` turns semantic search off).

        The vector index drops what it cached, which was made for the old embedder.
        """
        with self._lock:
            self._embedder = embedder
            self._loaded = True
        self.vector_index.invalidate()

    def embed_pending(
        self, user_id: str | None = None, *, batch: int = 256, progress: Progress | None = None
    ) -> int:
        """Embed the entities and observations whose text changed since they were embedded.

        Args:
            user_id: only this user's (``None``: everyone's).
            batch: how many texts go to the embedder at once.
            progress: told of the stages ``"loading the embedding model"`` (one unit,
                only when the default model is not loaded yet) and ``"embedding"``
                (queued texts, after each batch commits); see :mod:`mangostore.progress`.

        Returns:
            How many texts were embedded (0 without an embedder).
        """
        if progress is not None and not self._loaded:
            # Reading the model's weights takes seconds on a first call: say so.
            loading = Reporter(progress)
            loading.begin("loading the embedding model", 1)
            embedder = self.embedder
            loading.end(1)
        else:
            embedder = self.embedder
        if embedder is None:
            return 0
        return EmbeddingSync(self._db, embedder).run(user_id, batch=batch, progress=progress)
