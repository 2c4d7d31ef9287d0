"""The embedder interface, its test double, and what every embedder and index shares.

An :class:`Embedder` turns texts into unit-length float32 vectors. :class:`HashingEmbedder`
is the test double: feature hashing of words and character trigrams, deterministic,
instant, and of no semantic worth. The default model lives in
:mod:`mangostore.kg.embedding`, the nearest-neighbour search in
:mod:`mangostore.kg.vector_index`.

This module imports neither of them: both build on it, so it sits at the bottom of the
embedding modules and none of them imports another in a circle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "Vectors",
    "content_hash",
    "normalise_rows",
    "to_blob",
]

#: A matrix of float32 vectors, one per row (or a single vector).
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


def normalise_rows(matrix: Vectors) -> Vectors:
    """Return ``matrix`` with every row scaled to unit L2 length (all-zero rows stay zero).

    Args:
        matrix: float32 vectors, one per row.

    Returns:
        A float32 matrix of the same shape.
    """
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Vectors = (matrix / norms).astype(np.float32, copy=False)
    return result


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
        return normalise_rows(out)


if TYPE_CHECKING:
    # mypy checks here that the test double conforms to the interface.
    def _conforms(hashing: HashingEmbedder) -> Embedder:
        return hashing
