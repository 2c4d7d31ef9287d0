"""The ONNX model that mangostore writes itself, without the ``onnx`` package."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import skip_unless_available

from mangostore.kg import onnx_encoder
from mangostore.kg.embedding import NumpyEncoder
from mangostore.kg.onnx_encoder import OnnxEncoder, build_model, onnx_runtime_available


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (-1, b"\xff" * 9 + b"\x01"),  # int64 two's complement, as protobuf sends it
    ],
)
def test_varints_follow_the_protobuf_wire_format(value: int, encoded: bytes) -> None:
    assert onnx_encoder.encode_varint(value) == encoded


def _tiny_weights(rng: np.random.Generator, hidden: int, layers: int) -> dict[str, np.ndarray]:
    """Random weights of a BERT encoder with the parameter names of all-MiniLM-L6-v2."""

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32) * 0.3

    w = {
        "embeddings.word_embeddings.weight": r(20, hidden),
        "embeddings.position_embeddings.weight": r(16, hidden),
        "embeddings.token_type_embeddings.weight": r(2, hidden),
        "embeddings.LayerNorm.weight": 1 + r(hidden),
        "embeddings.LayerNorm.bias": r(hidden),
    }
    for n in range(layers):
        p = f"encoder.layer.{n}."
        for q in ("query", "key", "value"):
            w[f"{p}attention.self.{q}.weight"] = r(hidden, hidden)
            w[f"{p}attention.self.{q}.bias"] = r(hidden)
        w[p + "attention.output.dense.weight"] = r(hidden, hidden)
        w[p + "intermediate.dense.weight"] = r(4 * hidden, hidden)
        w[p + "intermediate.dense.bias"] = r(4 * hidden)
        w[p + "output.dense.weight"] = r(hidden, 4 * hidden)
        for name in ("attention.output.dense", "output.dense"):
            w[p + name + ".bias"] = r(hidden)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + norm + ".weight"] = 1 + r(hidden)
            w[p + norm + ".bias"] = r(hidden)
    return w


def test_the_written_graph_computes_what_the_numpy_encoder_computes() -> None:
    skip_unless_available(onnx_runtime_available(), "onnxruntime is not installed")
    hidden, heads, layers = 8, 2, 2
    weights = _tiny_weights(np.random.default_rng(7), hidden, layers)
    session = OnnxEncoder(
        build_model(weights, heads=heads, layers=layers, hidden=hidden, eps=1e-12), threads=1
    )
    # The NumPy encoder over the same weights, without the model files it loads them from.
    numpy_encoder = NumpyEncoder(weights, heads=heads, layers=layers, hidden=hidden, eps=1e-12)
    ids = np.array([[2, 5, 9, 3, 0, 0], [2, 7, 11, 13, 17, 3]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=np.float32)
    by_onnx = session.tokens(ids, mask)
    by_numpy = numpy_encoder.tokens(ids, mask)
    assert by_onnx.shape == (2, 6, hidden)
    real = mask.astype(bool)  # padding positions are never pooled
    assert np.allclose(by_onnx[real], by_numpy[real], atol=1e-4)
