"""Nearest-neighbour search over the stored vectors: the interface and two implementations.

Nearest-neighbour search runs in one of two :class:`VectorIndex` implementations:
:class:`SqliteVecIndex` computes ``vec_distance_cosine`` from the ``sqlite-vec``
extension inside the (encrypted) database, over the stored vectors; :class:`NumpyIndex`
keeps the user's vectors in one matrix in memory and multiplies. See
``docs/knowledge-graph.md`` for which is used when and what each costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from mangostore.errors import ConfigurationError
from mangostore.kg.embedding_protocol import Vectors, to_blob

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.ports import SqlDatabase

__all__ = [
    "QUANTIZE_FROM",
    "RESCORE_FACTOR",
    "RESCORE_MIN",
    "NumpyIndex",
    "SqliteVecIndex",
    "VectorHit",
    "VectorIndex",
    "load_sqlite_vec",
    "sqlite_vec_path",
]


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One stored vector close to the query."""

    embedding_id: str
    entity_id: str
    source_id: str
    similarity: float


class VectorIndex(Protocol):
    """Finds the stored vectors of one user and model closest to a query vector.

    An index that caches vectors must notice changes by itself, whoever makes them:
    ``kg_vector_changes`` counts each user's inserts and rewrites (see
    :class:`NumpyIndex`).
    """

    name: str

    def search(self, user_id: str, model_version: str, query: Vectors, k: int) -> list[VectorHit]:
        """Return up to ``k`` hits, most similar (cosine) first."""
        ...

    def invalidate(self) -> None:
        """Forget anything cached (the embedder was replaced)."""
        ...


# What a search reads to know whether a cached matrix is current (one primary-key row,
# kept by the triggers of migration 12) and the rows it loads when it is not.
_CHANGES = "SELECT appended, rewritten FROM kg_vector_changes WHERE user_id = ?"
_SELECT_VECTORS = (
    "SELECT e.rowid, e.id, e.entity_id, s.source_id, e.vector_data, e.model_version "
    "FROM kg_embeddings e LEFT JOIN kg_embedding_sources s ON s.embedding_id = e.id "
    "WHERE e.user_id = ?"
)
# `+e.user_id` keeps the planner on the rowid range, which holds only the new rows.
_SELECT_NEW_VECTORS = (
    "SELECT e.rowid, e.id, e.entity_id, s.source_id, e.vector_data, e.model_version "
    "FROM kg_embeddings e LEFT JOIN kg_embedding_sources s ON s.embedding_id = e.id "
    "WHERE e.rowid > ? AND +e.user_id = ?"
)
#: From this many vectors on, :class:`NumpyIndex` compares binary codes first.
QUANTIZE_FROM = 20_000
#: How many candidates the binary codes pass on to exact scoring: this many times the
#: hits asked for, and at least :data:`RESCORE_MIN`.
RESCORE_FACTOR = 10
RESCORE_MIN = 2_000


@dataclass(frozen=True, slots=True)
class _Matrix:
    """One user's vectors of one model, as loaded; never changed once published.

    ``vectors`` (one row per vector) and ``codes`` (one row per 64-bit word of the
    codes, one column per vector: each word is compared across all vectors in one
    contiguous pass) may have spare room past ``size`` for later appends: a newer
    ``_Matrix`` writes there and shares the buffers, so a search still running on this
    one reads only its own ``size`` vectors.
    """

    changes: tuple[int, int]
    watermark: int  # the largest kg_embeddings rowid read
    ids: list[tuple[str, str, str]]  # (embedding id, entity id, source id)
    vectors: Vectors
    size: int
    centre: Vectors | None  # subtracted before taking signs (codes of centred vectors)
    codes: npt.NDArray[np.uint64] | None


class NumpyIndex:
    """Cosine search over the user's vectors, held in memory as one float32 matrix.

    Each search reads the user's row of ``kg_vector_changes`` (one primary-key lookup,
    usually answered by the query cache). When vectors were only added, just the new
    rows are read and appended; when any was changed or removed, everything is read
    again.

    Up to :data:`QUANTIZE_FROM` vectors every one is scored exactly (one matrix-vector
    product). Above that, a search compares 1-bit codes first: the signs of each vector
    minus the mean vector, packed 384 bits to 48 bytes, by Hamming distance (NumPy's
    ``bitwise_count``), then scores the nearest ``max(RESCORE_FACTOR * k, RESCORE_MIN)``
    candidates exactly (the constructor takes both thresholds). The codes are a
    thirty-second of the matrix, and memory bandwidth is what a scan pays for;
    docs/knowledge-graph.md gives the measured recall against exact search.

    Binary codes with exact rescoring are a standard method (FAISS ``IndexBinaryFlat``,
    sqlite-vec ``bit`` vectors). They are computed here in NumPy because the vectors
    must stay in this process and the encrypted file: an approximate-index library
    would add a compiled dependency and a second, unencrypted copy of the data to save
    a few milliseconds more.
    """

    name = "numpy"

    def __init__(
        self, db: SqlDatabase, *, quantize_from: int = QUANTIZE_FROM, rescore_min: int = RESCORE_MIN
    ) -> None:
        self._db = db
        self._quantize_from = quantize_from
        self._rescore_min = rescore_min
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], _Matrix] = {}

    def invalidate(self) -> None:
        """Drop every cached matrix."""
        with self._lock:
            self._cache.clear()

    def search(self, user_id: str, model_version: str, query: Vectors, k: int) -> list[VectorHit]:
        """Return the ``k`` most similar stored vectors."""
        matrix = self._current(user_id, model_version, query.shape[0])
        if matrix.size == 0:
            return []
        q = query.astype(np.float32, copy=False)
        vectors = matrix.vectors[: matrix.size]
        wanted = max(RESCORE_FACTOR * k, self._rescore_min)
        if matrix.codes is None or matrix.centre is None or wanted >= matrix.size:
            rows = np.arange(matrix.size)
            scores = vectors @ q
        else:
            rows = _nearest_codes(matrix.codes[:, : matrix.size], _codes(q - matrix.centre), wanted)
            scores = vectors[rows] @ q
        k = min(k, rows.shape[0])
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = []
        for i in top:
            embedding_id, entity_id, source_id = matrix.ids[rows[i]]
            hits.append(VectorHit(embedding_id, entity_id, source_id, float(scores[i])))
        return hits

    def _current(self, user_id: str, model_version: str, dims: int) -> _Matrix:
        key = (user_id, model_version)
        found = self._db.query(_CHANGES, (user_id,))
        changes = (found[0][0], found[0][1]) if found else (0, 0)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached.changes == changes:
                return cached
            matrix = None
            if cached is not None and cached.changes[1] == changes[1]:
                matrix = self._append(cached, user_id, model_version, dims)
            if matrix is None:
                matrix = self._load(user_id, model_version, dims)
            self._cache[key] = matrix
            return matrix

    def _read(self, sql: str, params: tuple[Any, ...]) -> tuple[tuple[int, int], list[Any]]:
        """Read the change counter and ``sql``'s rows from one snapshot of the database."""
        with self._db.store.reading() as conn:
            own = not conn.in_transaction
            if own:
                conn.execute("BEGIN")
            try:
                row = conn.execute(_CHANGES, (params[-1],)).fetchone()
                rows = conn.execute(sql, params).fetchall()
            finally:
                if own:
                    conn.execute("COMMIT")
        return ((row[0], row[1]) if row is not None else (0, 0)), rows

    def _load(self, user_id: str, model_version: str, dims: int) -> _Matrix:
        changes, rows = self._read(_SELECT_VECTORS, (user_id,))
        watermark = max((r[0] for r in rows), default=0)
        ids, blobs = _rows_of_model(rows, model_version)
        vectors = _matrix(blobs, dims, len(blobs))
        return self._with_codes(
            _Matrix(changes, watermark, ids, vectors, len(ids), None, None), None
        )

    def _append(
        self, cached: _Matrix, user_id: str, model_version: str, dims: int
    ) -> _Matrix | None:
        """Add the rows inserted since ``cached`` was read; None if anything else changed."""
        changes, rows = self._read(_SELECT_NEW_VECTORS, (cached.watermark, user_id))
        # Rows past the old watermark are new ones only (VACUUM renumbers rowids
        # downwards, never up); all of them were found when their count is the number
        # of inserts the counter saw. Otherwise something was also changed or removed.
        if changes[1] != cached.changes[1] or len(rows) != changes[0] - cached.changes[0]:
            return None
        ids, blobs = _rows_of_model(rows, model_version)
        size = cached.size + len(ids)
        vectors = cached.vectors
        if size > vectors.shape[0]:
            vectors = np.zeros((max(size, 2 * vectors.shape[0], 64), dims), dtype=np.float32)
            vectors[: cached.size] = cached.vectors[: cached.size]
        if blobs:
            vectors[cached.size : size] = _matrix(blobs, dims, len(blobs))
        watermark = max([cached.watermark, *(r[0] for r in rows)])
        grown = _Matrix(
            changes, watermark, [*cached.ids, *ids], vectors, size, cached.centre, cached.codes
        )
        return self._with_codes(grown, cached)

    def _with_codes(self, matrix: _Matrix, previous: _Matrix | None) -> _Matrix:
        """Give ``matrix`` binary codes once it is large enough to need them."""
        if matrix.size < self._quantize_from:
            return matrix
        vectors = matrix.vectors
        if matrix.centre is None or matrix.codes is None:
            centre = vectors[: matrix.size].mean(axis=0).astype(np.float32)
            codes = np.zeros((_code_words(vectors.shape[1]), vectors.shape[0]), dtype=np.uint64)
            codes[:, : matrix.size] = _codes(vectors[: matrix.size] - centre)
            return dataclasses.replace(matrix, centre=centre, codes=codes)
        start = previous.size if previous is not None else 0
        codes = matrix.codes
        if codes.shape[1] < vectors.shape[0]:
            codes = np.zeros((codes.shape[0], vectors.shape[0]), dtype=np.uint64)
            codes[:, :start] = matrix.codes[:, :start]
        codes[:, start : matrix.size] = _codes(vectors[start : matrix.size] - matrix.centre)
        return dataclasses.replace(matrix, codes=codes)


def _rows_of_model(
    rows: list[Any], model_version: str
) -> tuple[list[tuple[str, str, str]], list[bytes]]:
    ids, blobs = [], []
    for _, embedding_id, entity_id, source_id, blob, model in rows:
        if model == model_version and source_id is not None and blob is not None:
            ids.append((embedding_id, entity_id, source_id))
            blobs.append(blob)
    return ids, blobs


def _matrix(blobs: list[bytes], dims: int, rows: int) -> Vectors:
    """Stack stored vectors into a (rows, dims) float32 matrix in one copy."""
    width = 4 * dims
    wrong = next((len(b) // 4 for b in blobs if len(b) != width), None)
    if wrong is not None:
        raise ConfigurationError(f"a stored vector has {wrong} dimensions instead of {dims}")
    flat = np.frombuffer(b"".join(blobs), dtype="<f4")
    return flat.reshape(rows, dims).astype(np.float32)


def _code_words(dims: int) -> int:
    return (dims + 63) // 64


def _codes(centred: Vectors) -> npt.NDArray[np.uint64]:
    """Pack the signs of vectors into 64-bit words: shape (words, vectors), or (words,)
    for one vector. Padding bits are zero."""
    rows = np.atleast_2d(centred)
    words = _code_words(rows.shape[1])
    bits = np.packbits(rows > 0, axis=1)
    padded = np.zeros((rows.shape[0], words * 8), dtype=np.uint8)
    padded[:, : bits.shape[1]] = bits
    packed = padded.view(np.uint64).T
    return np.ascontiguousarray(packed if centred.ndim == 2 else packed[:, 0])


def _nearest_codes(
    codes: npt.NDArray[np.uint64], code: npt.NDArray[np.uint64], wanted: int
) -> npt.NDArray[np.intp]:
    """Return the columns of the ``wanted`` codes nearest ``code`` in Hamming distance.

    Distances are small integers, so the cut-off is read from their histogram rather
    than by partitioning; ties at the cut-off are taken in column order.
    """
    distance = np.bitwise_count(codes[0] ^ code[0]).astype(np.uint16)
    for word in range(1, codes.shape[0]):
        distance += np.bitwise_count(codes[word] ^ code[word])
    counts = np.cumsum(np.bincount(distance))
    cut = int(np.searchsorted(counts, wanted))  # the first distance reaching `wanted`
    closer = np.flatnonzero(distance < cut)
    at_cut = np.flatnonzero(distance == cut)[: wanted - closer.shape[0]]
    return np.concatenate([closer, at_cut])


def sqlite_vec_path() -> str | None:
    """Return the path of the sqlite-vec loadable extension, if the package is installed."""
    try:
        import sqlite_vec  # type: ignore[import-untyped]
    except ImportError:
        return None
    return str(sqlite_vec.loadable_path())


def load_sqlite_vec(conn: Connection) -> bool:
    """Load sqlite-vec into ``conn`` (once); return whether its functions are available."""
    with contextlib.suppress(Exception):  # "no such function": not loaded yet
        conn.execute("SELECT vec_version()").fetchone()
        return True
    path = sqlite_vec_path()
    if path is None:
        return False
    try:
        conn.enable_load_extension(True)
        try:
            conn.load_extension(path)
        finally:
            conn.enable_load_extension(False)
        conn.execute("SELECT vec_version()").fetchone()
    except Exception:  # a driver built without extension loading
        return False
    return True


class SqliteVecIndex:
    """Cosine search inside the database with sqlite-vec's ``vec_distance_cosine``.

    The extension is loaded into each connection that runs a search. Vectors never
    leave the encrypted file; every search reads all of the user's vectors.
    """

    name = "sqlite-vec"

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @staticmethod
    def available(db: SqlDatabase) -> bool:
        """Tell whether the extension loads into this database's connections."""
        with db.store.reading() as conn:
            return load_sqlite_vec(conn)

    def invalidate(self) -> None:
        """Nothing is cached."""

    def search(self, user_id: str, model_version: str, query: Vectors, k: int) -> list[VectorHit]:
        """Return the ``k`` most similar stored vectors, ranked by SQLite."""
        sql = (
            "SELECT e.id, e.entity_id, s.source_id, "
            "1.0 - vec_distance_cosine(e.vector_data, ?) AS similarity "
            "FROM kg_embeddings e JOIN kg_embedding_sources s ON s.embedding_id = e.id "
            "WHERE e.user_id = ? AND e.model_version = ? ORDER BY similarity DESC LIMIT ?"
        )
        with self._db.store.reading() as conn:
            if not load_sqlite_vec(conn):
                raise ConfigurationError("sqlite-vec cannot be loaded into this database")
            rows = conn.execute(sql, (to_blob(query), user_id, model_version, k)).fetchall()
        return [VectorHit(r[0], r[1], r[2], float(r[3])) for r in rows]


if TYPE_CHECKING:
    # mypy checks here that each implementation conforms to its interface.
    def _conforms(by_numpy: NumpyIndex, by_vec: SqliteVecIndex) -> tuple[VectorIndex, VectorIndex]:
        return by_numpy, by_vec
