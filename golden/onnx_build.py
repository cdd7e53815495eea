"""Build small quantized ONNX models by hand: single QOperator nodes for operator tests, and QDQ fragments.

Used by the tests that judge the golden operators by onnxruntime's own integer kernels, and handy for benches
that want a one-layer model. Graph inputs and outputs get a symbolic batch dimension ``N``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["OPSET", "make_model", "qparams", "ort_session", "run_ort"]

#: Opset of the default domain; com.microsoft ops use version 1.
OPSET = 17


def qparams(prefix: str, scale, zero_point, dtype) -> dict[str, np.ndarray]:
    """Initializers ``{prefix}_scale`` (float32) and ``{prefix}_zp`` (``dtype``), scalars or per-channel arrays."""
    return {f"{prefix}_scale": np.asarray(scale, dtype=np.float32),
            f"{prefix}_zp": np.asarray(zero_point, dtype=dtype)}


def make_model(nodes: Sequence, inputs: Mapping[str, tuple[np.dtype, Sequence[int]]],
               outputs: Mapping[str, np.dtype | tuple[np.dtype, int]], initializers: Mapping[str, np.ndarray] = (),
               name: str = "model"):
    """An ``onnx.ModelProto`` from nodes (``onnx.helper.make_node``), typed inputs ``{name: (dtype, per-sample
    shape)}``, typed outputs ``{name: dtype}`` or ``{name: (dtype, rank)}`` (dimensions left unknown; the rank
    defaults to the first input's) and initializers."""
    import onnx
    from onnx import helper, numpy_helper

    def vi(n, dtype, shape):
        if isinstance(shape, int):  # a rank: batch then unknown dimensions
            shape = ["N"] + [None] * (shape - 1)
        return helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)

    rank0 = 1 + len(next(iter(inputs.values()))[1])
    graph = helper.make_graph(
        list(nodes), name,
        [vi(n, dt, ["N", *shape]) for n, (dt, shape) in inputs.items()],
        [vi(n, *(spec if isinstance(spec, tuple) else (spec, rank0))) for n, spec in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_session(model):
    """An onnxruntime CPU session of ``model`` (a ModelProto or its bytes) as the external reference.

    Graph optimisation stops at the basic level (constant folding, redundant-node removal). The extended level
    fuses DequantizeLinear -> Conv -> QuantizeLinear into onnxruntime's int8 kernels, which on CPUs without
    VNNI multiply u8 x s8 pairs with VPMADDUBSW and saturate the pair sum at 16 bits: measured on an AVX2
    machine, a full-range int8 QDQ convolution then differs from the ONNX definition by up to 40 LSB while
    the unfused graph equals it. The reference is the operators' definition, not one kernel's shortcut.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
    return ort.InferenceSession(bytes(data), opts, providers=["CPUExecutionProvider"])


def run_ort(model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a model on onnxruntime's CPU provider (:func:`ort_session`)."""
    return ort_session(model).run(None, dict(feeds))
