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

__all__ = ["code_bytes", "evaluate", "dequantize", "quantize", "compose"]


def code_bytes(info: TensorInfo) -> np.ndarray:
    """The 256 codes of ``info``'s dtype in table order: entry ``b`` is the code whose byte is ``b``."""
    b = np.arange(256, dtype=np.uint8)
    return b.view(np.int8) if info.dtype == "int8" else b


def _run(nodes, feeds: dict[str, np.ndarray], consts: dict[str, np.ndarray], output: str, opset: int,
         domain_versions: dict[str, int] | None = None, out_dtype=np.float32) -> np.ndarray:
    """Run ``nodes`` as a model over 1-D ``feeds`` (graph inputs) and ``consts`` (initializers); the output
    ``output`` is of ``out_dtype``."""
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


def evaluate(node, operands: list[np.ndarray], opset: int, domain_versions: dict[str, int] | None = None,
             out_dtype=np.float32) -> np.ndarray:
    """``node`` (its op type, domain and attributes) over ``operands``, one per input (``None`` for an absent
    optional input): 1-D arrays of 256 values are graph inputs, anything else a constant; the 256 results."""
    from onnx import helper

    feeds, consts, names = {}, {}, []
    for i, a in enumerate(operands):
        if a is None:
            names.append("")
            continue
        a = np.asarray(a)
        name = f"in{i}"
        (feeds if a.shape == (256,) else consts)[name] = a
        names.append(name)
    n = helper.make_node(node.op_type, names, ["out"], domain=node.domain)
    n.attribute.extend(node.attribute)
    out = _run([n], feeds, consts, "out", opset, domain_versions, out_dtype)
    if out.shape != (256,):
        raise ValueError(f"the element-wise result has shape {out.shape}, not one value per code")
    return out


def dequantize(info: TensorInfo, codes: np.ndarray | None = None) -> np.ndarray:
    """onnxruntime's ``DequantizeLinear`` of ``codes`` (default: every code of ``info`` in table order)."""
    from onnx import helper

    codes = code_bytes(info) if codes is None else np.asarray(codes, info.np_dtype)
    n = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])
    return _run([n], {"x": codes}, {"s": np.float32(info.scale), "z": np.asarray(info.zero_point, info.np_dtype)},
                "y", 13)


def quantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """onnxruntime's ``QuantizeLinear`` of 256 float32 ``values`` into ``info``'s codes (int64)."""
    from onnx import helper

    n = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    q = _run([n], {"x": np.asarray(values, np.float32)},
             {"s": np.float32(info.scale), "z": np.asarray(info.zero_point, info.np_dtype)}, "y", 13,
             out_dtype=info.np_dtype)
    return q.astype(np.int64)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The table of ``outer`` after ``inner`` (both indexed by a code's byte): ``outer[inner[b] & 0xFF]``."""
    return np.asarray(outer)[np.asarray(inner, np.int64) & 0xFF]
