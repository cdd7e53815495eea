"""Tables of element-wise functions of a code (:class:`cimforge.golden.ir.Lut`), built from onnxruntime's own
float32 evaluation of the operators at every one of the 256 codes.

An element-wise float operator between a ``DequantizeLinear`` and a ``QuantizeLinear`` (``Sigmoid``, ``Tanh``,
``HardSwish``, ``LeakyRelu``, ``x * Sigmoid(x)``, ...) maps each input code to one output code, whatever the
rest of the tensor holds: so the layer is a table of 256 codes. onnxruntime evaluates those operators with its
own kernels (MLAS's polynomial ``Sigmoid`` and ``Tanh``, Eigen's ``HardSigmoid``), which differ from a textbook
formula in the last float32 bits, and a code whose real result lies that close to a rounding tie would then come
out one LSB away. The importer therefore asks onnxruntime itself: each operator runs as a one-node model over the
256 values (:func:`evaluate`), its ``QuantizeLinear`` too (:func:`quantize`), with the session options of the
reference (:func:`cimforge.golden.onnx_build.ort_session`). The layer is exact by construction; tests check the
tables against the float64 definitions (within one LSB) and whole models against onnxruntime.
"""

from __future__ import annotations

import numpy as np

from .ir import TensorInfo

__all__ = ["code_bytes", "run_nodes", "evaluate", "dequantize", "quantize", "compose", "lookup", "per_channel_const"]


def code_bytes(info: TensorInfo) -> np.ndarray:
    """The 256 codes of ``info``'s dtype in table order: entry ``b`` is the code whose byte is ``b``."""
    b = np.arange(256, dtype=np.uint8)
    return b.view(np.int8) if info.dtype == "int8" else b


def run_nodes(nodes, feeds: dict[str, np.ndarray], consts: dict[str, np.ndarray], output: str, opset: int,
              domain_versions: dict[str, int] | None = None, out_dtype=np.float32) -> np.ndarray:
    """Run ``nodes`` as a model over ``feeds`` (graph inputs) and ``consts`` (initializers) with the reference's
    session options; the output ``output`` is of ``out_dtype``."""
    from onnx import helper, numpy_helper

    from .onnx_build import ort_session

    def vi(name, a):
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))

    graph = helper.make_graph(list(nodes), "lut", [vi(k, v) for k, v in feeds.items()],
                              [helper.make_tensor_value_info(output, helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)), None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domain_versions or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return np.asarray(ort_session(model).run([output], feeds)[0])


def _feed_layout(values: np.ndarray, channels: int, rank: int) -> np.ndarray:
    """``(channels, 256)`` values laid out as a tensor of the model's ``rank`` whose channel axis (1) is the
    channel and whose last axis (the batch axis for rank 2) is the code, so that a per-channel constant broadcasts
    as it does in the model."""
    v = np.broadcast_to(values, (channels, 256))
    return np.ascontiguousarray(v.T if rank == 2 else v.reshape((1, channels) + (1,) * (rank - 3) + (256,)))


def evaluate(node, operands: list[np.ndarray], opset: int, domain_versions: dict[str, int] | None = None,
             out_dtype=np.float32, *, functions: set[int] | None = None,
             channels: tuple[int, int] | None = None) -> np.ndarray:
    """``node`` (its op type, domain and attributes) over ``operands``, one per input (``None`` for an absent
    optional input): the ``functions`` (default: the 1-D arrays of 256 values) are graph inputs, anything else a
    constant; the 256 results.

    With ``channels = (C, rank)`` (a per-channel constant, or an operand that is already one table per channel),
    every function is evaluated as a ``(C, 256)`` array laid out in a tensor of the model's ``rank`` (channel on
    axis 1), and the result is ``(C, 256)``: channel ``c``'s table at row ``c``."""
    from onnx import helper

    feeds, consts, names = {}, {}, []
    for i, a in enumerate(operands):
        if a is None:
            names.append("")
            continue
        a = np.asarray(a)
        name = f"in{i}"
        is_fn = a.shape == (256,) if functions is None else i in functions
        if is_fn and channels is not None:
            a = _feed_layout(a, *channels)
        (feeds if is_fn else consts)[name] = a
        names.append(name)
    n = helper.make_node(node.op_type, names, ["out"], domain=node.domain)
    n.attribute.extend(node.attribute)
    out = run_nodes([n], feeds, consts, "out", opset, domain_versions, out_dtype)
    if channels is not None:
        c, rank = channels
        want = _feed_layout(np.zeros((c, 256)), c, rank).shape
        if out.shape != want:
            raise ValueError(f"the element-wise result has shape {out.shape}, not one value per channel and code")
        return np.ascontiguousarray(out.T if rank == 2 else out.reshape(c, 256))
    if out.shape != (256,):
        raise ValueError(f"the element-wise result has shape {out.shape}, not one value per code")
    return out


def per_channel_const(value: np.ndarray, shape: tuple[int, ...]) -> bool | None:
    """Whether a constant that an element-wise operator broadcasts against a tensor of (per-sample) ``shape`` is
    one value per channel: ``True`` for per-channel (channel axis 1 of the batched tensor, every other axis 1),
    ``False`` for a single value, ``None`` when it varies along another axis (or would add axes)."""
    v = np.asarray(value)
    rank = len(shape) + 1
    if v.ndim > rank:
        return None
    dims = (1,) * (rank - v.ndim) + v.shape
    if dims[0] != 1 or any(d != 1 for d in dims[2:]) or dims[1] not in (1, shape[0]):
        return None
    return dims[1] > 1


def lookup(tables: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``tables[x & 0xFF]`` for a batch of ``codes`` (channel axis 1): one table ``(256,)`` or ``(1, 256)`` for
    every channel, or ``(C, 256)``, one per channel."""
    t = np.asarray(tables)
    idx = np.asarray(codes).astype(np.int64) & 0xFF
    if t.ndim == 1 or len(t) == 1:
        return t.reshape(256)[idx]
    row = np.arange(len(t)).reshape((1, -1) + (1,) * (idx.ndim - 2))
    return t[row, idx]


def dequantize(info: TensorInfo, codes: np.ndarray | None = None) -> np.ndarray:
    """onnxruntime's ``DequantizeLinear`` of ``codes`` (default: every code of ``info`` in table order)."""
    from onnx import helper

    codes = code_bytes(info) if codes is None else np.asarray(codes, info.np_dtype)
    n = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])
    return run_nodes([n], {"x": codes}, {"s": np.float32(info.scale), "z": np.asarray(info.zero_point, info.np_dtype)},
                "y", 13)


def quantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """onnxruntime's ``QuantizeLinear`` of float32 ``values`` (256, or ``(C, 256)``) into ``info``'s codes
    (int64)."""
    from onnx import helper

    n = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    q = run_nodes([n], {"x": np.asarray(values, np.float32)},
             {"s": np.float32(info.scale), "z": np.asarray(info.zero_point, info.np_dtype)}, "y", 13,
             out_dtype=info.np_dtype)
    return q.astype(np.int64)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The table of ``outer`` after ``inner`` (both indexed by a code's byte): ``outer[inner[b] & 0xFF]``; either
    may be one table per channel (``(C, 256)``), and then so is the result."""
    outer, inner = np.asarray(outer), np.asarray(inner, np.int64) & 0xFF
    if outer.ndim == 1 and inner.ndim == 1:
        return outer[inner]
    c = max(len(outer) if outer.ndim == 2 else 1, len(inner) if inner.ndim == 2 else 1)
    return np.take_along_axis(np.broadcast_to(outer, (c, 256)), np.broadcast_to(inner, (c, 256)), axis=1)
