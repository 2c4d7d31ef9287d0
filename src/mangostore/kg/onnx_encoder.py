"""The MiniLM encoder as an ONNX graph, run by ONNX Runtime.

The graph is built in memory from the same verified weights the NumPy encoder uses
(nothing is downloaded or written to disk) with the standard ONNX operators: word,
position and token-type embeddings, then per layer a fused query/key/value projection,
scaled dot-product attention with an additive mask, the output projection, GELU (exact,
through ``Erf``) and the residual LayerNorms. ONNX Runtime runs it with fused kernels and
without Python between the operators: about half the time of the NumPy encoder for one
short query, and more texts a second in batches (docs/knowledge-graph.md has the
figures). Both compute the same function; a test checks that their vectors agree.

The model file is written here in protobuf's wire format, field by field from
``onnx.proto`` (whose field numbers never change), instead of with the ``onnx``
package: that package and its dependencies weigh more than 30 MB and would serve only
this. The few message types the graph needs are :func:`_tensor`, :func:`_attribute`,
:func:`_node`, :func:`_value_info` and :func:`build_model`.

Idle worker threads sleep instead of spinning (``allow_spinning`` off), so a query
embedded on one thread does not slow the SQL running on another.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["OnnxEncoder", "build_model", "encode_varint", "onnx_runtime_available"]

#: The operator set the graph is written against (LayerNormalization needs 17).
_OPSET = 18
#: The IR version ONNX Runtime 1.17 and later read.
_IR_VERSION = 9
#: TensorProto.DataType values.
_FLOAT, _INT64 = 1, 7
#: AttributeProto.AttributeType values.
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7
#: The numpy types of the tensors the graph holds, with their TensorProto.DataType.
_DATA_TYPES = {np.dtype("float32"): _FLOAT, np.dtype("int64"): _INT64}


def onnx_runtime_available() -> bool:
    """Tell whether ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def encode_varint(value: int) -> bytes:
    """Base-128 varint; a negative int64 is sent as its 64-bit two's complement."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(value)


def _bytes_field(number: int, data: bytes) -> bytes:
    return encode_varint(number << 3 | 2) + encode_varint(len(data)) + data


def _text_field(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode("utf-8"))


def _tensor(name: str, value: Any) -> bytes:
    """TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian)."""
    array = np.ascontiguousarray(value)
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return (
        b"".join(_int_field(1, size) for size in array.shape)
        + _int_field(2, _DATA_TYPES[array.dtype])
        + _text_field(8, name)
        + _bytes_field(9, data)
    )


def _attribute(name: str, value: int | float | list[int]) -> bytes:
    """AttributeProto: name = 1, f = 2, i = 3, ints = 8, type = 20."""
    if isinstance(value, list):
        body = b"".join(_int_field(8, item) for item in value)
        kind = _ATTR_INTS
    elif isinstance(value, float):
        body = encode_varint(2 << 3 | 5) + struct.pack("<f", value)
        kind = _ATTR_FLOAT
    else:
        body = _int_field(3, value)
        kind = _ATTR_INT
    return _text_field(1, name) + body + _int_field(20, kind)


def _node(op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> bytes:
    """NodeProto: input = 1, output = 2, op_type = 4, attribute = 5 (sorted by name)."""
    return (
        b"".join(_text_field(1, name) for name in inputs)
        + b"".join(_text_field(2, name) for name in outputs)
        + _text_field(4, op_type)
        + b"".join(_bytes_field(5, _attribute(k, v)) for k, v in sorted(attrs.items()))
    )


def _value_info(name: str, elem_type: int, shape: list[int | str]) -> bytes:
    """ValueInfoProto of a tensor: a fixed size or a named (dynamic) one per axis."""
    dims = b"".join(
        _bytes_field(1, _text_field(2, d) if isinstance(d, str) else _int_field(1, d))
        for d in shape
    )
    tensor_type = _int_field(1, elem_type) + _bytes_field(2, dims)
    return _text_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


class _Graph:
    """Collects the nodes and initializers of one ONNX graph, serialised."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self._count = 0

    def const(self, name: str, value: Any) -> str:
        self.initializers.append(_tensor(name, value))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        names = []
        for _ in range(outputs):
            self._count += 1
            names.append(f"v{self._count}")
        self.nodes.append(_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names


def build_model(
    weights: dict[str, Any],
    *,
    heads: int,
    layers: int,
    hidden: int,
    eps: float,
) -> bytes:
    """Return the serialised ONNX model of the encoder.

    Inputs: ``input_ids`` (int64, batch x length), ``position_ids`` (int64, length)
    and ``mask_bias`` (float32, batch x 1 x 1 x length: 0 for tokens, a large negative
    number for padding). Output: ``tokens`` (float32, batch x length x hidden), the last
    hidden states, which the caller pools.
    """
    g = _Graph()
    size = hidden // heads

    def layer_norm(x: str, prefix: str) -> str:
        return str(
            g.op(
                "LayerNormalization",
                x,
                g.const(prefix + ".weight", weights[prefix + ".weight"]),
                g.const(prefix + ".bias", weights[prefix + ".bias"]),
                axis=-1,
                epsilon=eps,
            )
        )

    def dense(x: str, name: str, weight: Any, bias: Any) -> str:
        product = g.op("MatMul", x, g.const(name + ".wt", np.ascontiguousarray(weight.T)))
        return str(g.op("Add", product, g.const(name + ".b", bias)))

    g.const("heads_shape", np.array([0, 0, heads, size], dtype=np.int64))
    g.const("merged_shape", np.array([0, 0, hidden], dtype=np.int64))
    g.const("scale", np.array(1.0 / math.sqrt(size), dtype=np.float32))
    g.const("half", np.array(0.5, dtype=np.float32))
    g.const("one", np.array(1.0, dtype=np.float32))
    g.const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
    words = g.op(
        "Gather", g.const("word", weights["embeddings.word_embeddings.weight"]), "input_ids"
    )
    positions = g.op(
        "Gather",
        g.const("position", weights["embeddings.position_embeddings.weight"]),
        "position_ids",
    )
    token_type = g.const("token_type", weights["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(g.op("Add", g.op("Add", words, positions), token_type), "embeddings.LayerNorm")

    def split_heads(z: str) -> str:
        return str(g.op("Transpose", g.op("Reshape", z, "heads_shape"), perm=[0, 2, 1, 3]))

    for n in range(layers):
        p = f"encoder.layer.{n}."
        attention = p + "attention.self."
        qkv = dense(
            x,
            p + "qkv",
            np.concatenate([weights[f"{attention}{q}.weight"] for q in ("query", "key", "value")]),
            np.concatenate([weights[f"{attention}{q}.bias"] for q in ("query", "key", "value")]),
        )
        q, k, v = g.op("Split", qkv, outputs=3, axis=-1, num_outputs=3)
        scores = g.op(
            "Add",
            g.op(
                "Mul",
                g.op(
                    "MatMul", split_heads(q), g.op("Transpose", split_heads(k), perm=[0, 1, 3, 2])
                ),
                "scale",
            ),
            "mask_bias",
        )
        context = g.op(
            "Reshape",
            g.op(
                "Transpose",
                g.op("MatMul", g.op("Softmax", scores, axis=-1), split_heads(v)),
                perm=[0, 2, 1, 3],
            ),
            "merged_shape",
        )
        attended = dense(
            context,
            p + "attention.output",
            weights[p + "attention.output.dense.weight"],
            weights[p + "attention.output.dense.bias"],
        )
        x = layer_norm(g.op("Add", attended, x), p + "attention.output.LayerNorm")
        h = dense(
            x,
            p + "intermediate",
            weights[p + "intermediate.dense.weight"],
            weights[p + "intermediate.dense.bias"],
        )
        # Exact GELU, as BERT defines it: x / 2 * (1 + erf(x / sqrt 2)).
        h = g.op(
            "Mul",
            g.op("Mul", h, "half"),
            g.op("Add", "one", g.op("Erf", g.op("Mul", h, "inv_sqrt2"))),
        )
        out = dense(
            h, p + "output", weights[p + "output.dense.weight"], weights[p + "output.dense.bias"]
        )
        x = layer_norm(g.op("Add", out, x), p + "output.LayerNorm")
    g.nodes.append(_node("Identity", [x], ["tokens"]))
    graph = (
        b"".join(_bytes_field(1, node) for node in g.nodes)
        + _text_field(2, "all-MiniLM-L6-v2")
        + b"".join(_bytes_field(5, tensor) for tensor in g.initializers)
        + _bytes_field(11, _value_info("input_ids", _INT64, ["batch", "length"]))
        + _bytes_field(11, _value_info("position_ids", _INT64, ["length"]))
        + _bytes_field(11, _value_info("mask_bias", _FLOAT, ["batch", 1, 1, "length"]))
        + _bytes_field(12, _value_info("tokens", _FLOAT, ["batch", "length", hidden]))
    )
    # ModelProto: ir_version = 1, graph = 7, opset_import = 8 (the default domain "").
    opset = _text_field(1, "") + _int_field(2, _OPSET)
    return _int_field(1, _IR_VERSION) + _bytes_field(7, graph) + _bytes_field(8, opset)


class OnnxEncoder:
    """Runs the encoder graph in one ONNX Runtime session."""

    def __init__(self, model: bytes, *, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no graph dumps or warnings on stderr
        self._session = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )

    def tokens(
        self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Return the last hidden states (batch x length x hidden) for ``ids``."""
        length = ids.shape[1]
        bias = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        feeds = {
            "input_ids": ids,
            "position_ids": np.arange(length, dtype=np.int64),
            "mask_bias": bias,
        }
        result: npt.NDArray[np.float32] = self._session.run(["tokens"], feeds)[0]
        return result
