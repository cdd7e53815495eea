"""Loading co-designed models with their precision: 4-bit ONNX weights and clamps of the graph input.

* :func:`widen_4bit`: an ONNX model with int4 / uint4 tensors (onnxruntime's ``quantize_static(weight_type=
  QInt4)``, opset 21 QDQ, or its ``com.microsoft`` Q/DQ at lower opsets) as the same model with int8 / uint8
  tensors of the same values, which the importer (:func:`cimforge.golden.onnx_import.load_onnx`) reads; the
  values keep their range, so the layers' ``weight_bits`` (:class:`cimforge.golden.ir.Conv2d`) find the
  4 bits again. 16-bit and other integer widths are refused by name.
* :func:`host_input_clamps`: a clamp of a graph input's codes (``QuantizeLinear`` then ``Clip`` of the codes:
  how a model states a narrower input precision, e.g. 3-bit digits) moves to the host side of a run, which
  clamps the codes it quantizes anyway; the graph then starts at the clamped tensor, whose range the compiler
  knows (``input_ranges``).
* :func:`load_model`: both, from a path: a :class:`CodesignModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..golden.ir import Clamp, Graph

__all__ = ["widen_4bit", "host_input_clamps", "load_model", "CodesignModel"]

#: ONNX tensor types the import takes (4-bit ones widened), by ``TensorProto`` name.
ALLOWED_TYPES = ("INT4", "UINT4", "INT8", "UINT8", "INT32", "FLOAT")


def widen_4bit(model):
    """A copy of ``model`` (an ``onnx.ModelProto``) with int4 / uint4 initializers as int8 / uint8 and the
    ``com.microsoft`` QuantizeLinear / DequantizeLinear as the standard operators.

    Raises
    ------
    UserError
        An initializer of another integer width (int16, uint16, int2 ...), naming it and the allowed types.
    """
    from onnx import TensorProto, numpy_helper

    from ..golden.onnx_import import widen_4bit_array  # the importer's widening of the values (one home)

    m = type(model)()
    m.CopyFrom(model)
    allowed = {getattr(TensorProto, n) for n in ALLOWED_TYPES}
    for i, t in enumerate(m.graph.initializer):
        if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
            arr = widen_4bit_array(numpy_helper.to_array(t))
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
        elif t.data_type not in allowed:
            name = TensorProto.DataType.Name(t.data_type)
            raise UserError(f"initializer {t.name!r} has type {name.lower()}: allowed "
                            f"{', '.join(n.lower() for n in ALLOWED_TYPES)} (the macro computes 1, 2, 4 or 8-bit "
                            f"weights and 1..8-bit activations)")
    for node in m.graph.node:
        if node.domain == "com.microsoft" and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node.domain = ""
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in m.opset_import):
        raise UserError("model opset: allowed ai.onnx opset >= 13 (per-axis QuantizeLinear)")
    return m


def host_input_clamps(graph: Graph) -> tuple[Graph, dict[str, tuple[int, int]]]:
    """``graph`` without the clamps of its inputs' codes (each a graph input's only reader), which become
    the host's: returns the graph, whose inputs are then the clamped tensors, and their ranges by name."""
    ranges: dict[str, tuple[int, int]] = {}
    drop, inputs = set(), []
    float_inputs = dict(graph.float_inputs)
    for t in graph.inputs:
        readers = graph.consumers(t.name)
        if len(readers) == 1 and isinstance(readers[0], Clamp) and t.name not in graph.outputs:
            c = readers[0]
            drop.add(c.name)
            inputs.append(c.output)
            ranges[c.output.name] = (c.act_min, c.act_max)
            float_inputs = {f: (c.output.name if q == t.name else q) for f, q in float_inputs.items()}
        else:
            inputs.append(t)
    if not drop:
        return graph, ranges
    layers = tuple(layer for layer in graph.layers if layer.name not in drop)
    return replace(graph, inputs=tuple(inputs), layers=layers, float_inputs=float_inputs), ranges


@dataclass
class CodesignModel:
    """A model ready for the fabric: the graph (host-side input clamps removed), the input codes' ranges and
    the original graph (whose golden run the host-clamped one equals)."""

    graph: Graph
    input_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    original: Graph | None = None

    def input_codes(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Codes of each graph input for real inputs ``x`` (single-input models): quantized as the model's
        ``QuantizeLinear`` does, then clamped as the removed input clamp did."""
        from ..golden.ops import quantize

        t = self.graph.inputs[0]
        q = quantize(x, t)
        lo, hi = self.input_ranges.get(t.name, (t.qmin, t.qmax))
        return {t.name: np.clip(q, lo, hi).astype(t.np_dtype)}


def load_model(path: str | Path) -> CodesignModel:
    """Import a (co-designed) quantized ONNX model: 4-bit tensors widened, input clamps moved to the host."""
    import onnx

    from ..golden.onnx_import import load_onnx

    proto = widen_4bit(onnx.load(str(path)))
    original = load_onnx(proto, name=Path(path).stem)
    graph, ranges = host_input_clamps(original)
    return CodesignModel(graph, ranges, original)
