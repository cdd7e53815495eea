"""Judge the golden model by onnxruntime: run both on the same inputs and measure agreement tensor by tensor.

Every IR tensor carries the name of the ONNX tensor holding the same codes, so onnxruntime is asked for all of
them as extra graph outputs (its default session, graph optimisations included: the QDQ form then runs on
onnxruntime's fused integer kernels) and the codes are compared element by element.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .ir import Graph

__all__ = ["TensorAgreement", "Agreement", "ort_tensors", "compare_tensors", "layerwise", "AGREEMENT_MIN", "MAX_LSB"]

#: Acceptance bounds (issue 3): fraction of bit-identical elements, and the largest allowed difference.
AGREEMENT_MIN = 0.999
MAX_LSB = 1


@dataclass(frozen=True)
class TensorAgreement:
    """Agreement of one tensor: element count, bit-identical elements, largest absolute code difference."""

    name: str
    elements: int
    equal: int
    max_diff: int

    @property
    def fraction(self) -> float:
        return self.equal / self.elements if self.elements else 1.0


@dataclass(frozen=True)
class Agreement:
    """Agreement over many tensors (``tensors``) and in total."""

    tensors: tuple[TensorAgreement, ...]

    @property
    def elements(self) -> int:
        return sum(t.elements for t in self.tensors)

    @property
    def equal(self) -> int:
        return sum(t.equal for t in self.tensors)

    @property
    def fraction(self) -> float:
        return self.equal / self.elements if self.elements else 1.0

    @property
    def max_diff(self) -> int:
        return max((t.max_diff for t in self.tensors), default=0)

    @property
    def worst_fraction(self) -> float:
        """The lowest per-tensor fraction of identical elements."""
        return min((t.fraction for t in self.tensors), default=1.0)

    def ok(self, min_fraction: float = AGREEMENT_MIN, max_lsb: int = MAX_LSB) -> bool:
        """True when every tensor is at least ``min_fraction`` identical and none differs by more than
        ``max_lsb``."""
        return self.worst_fraction >= min_fraction and self.max_diff <= max_lsb

    def format(self, per_tensor: bool = True) -> str:
        lines = []
        if per_tensor:
            for t in self.tensors:
                lines.append(f"  {t.name:<48} {t.equal:>8}/{t.elements:<8} identical ({100 * t.fraction:7.3f}%), "
                             f"max diff {t.max_diff} LSB")
        lines.append(f"  total: {self.equal}/{self.elements} elements identical ({100 * self.fraction:.4f}%), "
                     f"worst tensor {100 * self.worst_fraction:.3f}%, max diff {self.max_diff} LSB")
        return "\n".join(lines)


def compare_tensors(golden: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> Agreement:
    """Compare the tensors present in both mappings (in ``golden``'s order); shapes must match."""
    out = []
    for name, g in golden.items():
        if name not in reference:
            continue
        r = np.asarray(reference[name])
        g = np.asarray(g)
        if g.shape != r.shape:
            raise ValueError(f"tensor {name!r}: golden shape {g.shape} != reference shape {r.shape}")
        d = np.abs(g.astype(np.int64) - r.astype(np.int64))
        out.append(TensorAgreement(name, int(d.size), int((d == 0).sum()), int(d.max()) if d.size else 0))
    return Agreement(tuple(out))


def ort_tensors(model, graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run onnxruntime on ``model`` and return every IR tensor of ``graph`` that exists in the model.

    Parameters
    ----------
    model : str, pathlib.Path or onnx.ModelProto
        The model ``graph`` was imported from.
    graph : Graph
    inputs : mapping of str to numpy.ndarray
        The ONNX model's inputs by name (float arrays for float inputs, codes for integer inputs).

    Returns
    -------
    dict of str to numpy.ndarray
        Codes by IR tensor name, reshaped to ``(N, *tensor.shape)``.
    """
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    proto_copy = onnx.ModelProto()
    proto_copy.CopyFrom(proto)
    g = proto_copy.graph
    existing = {o.name for o in g.output}
    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input}
    names = [t for t in graph.tensors if t in produced]
    for t in names:
        if t not in existing:
            elem = onnx.helper.np_dtype_to_tensor_dtype(graph.tensors[t].np_dtype)
            g.output.append(onnx.helper.make_tensor_value_info(t, elem, None))
    sess = ort.InferenceSession(proto_copy.SerializeToString(), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    values = dict(zip(out_names, sess.run(out_names, dict(inputs))))
    result = {}
    for t in names:
        v = values.get(t)
        if v is None:  # a graph input of codes
            v = np.asarray(inputs[t])
        result[t] = np.asarray(v).reshape(v.shape[0], *graph.tensors[t].shape)
    return result


def layerwise(graph: Graph, reference: Mapping[str, np.ndarray], rounding: str | None = None) -> dict[str, np.ndarray]:
    """Each layer's golden output computed from the *reference's* values of its inputs.

    This isolates each operator: a 1 LSB difference in one layer is not propagated (and amplified by the
    following scales) into the next, as it is in an end-to-end run. Layers whose inputs the reference lacks are
    skipped.
    """
    from .runner import run_layer

    out = {}
    for layer in graph.layers:
        if all(t.name in reference for t in layer.inputs):
            out[layer.output.name] = run_layer(layer, *(reference[t.name] for t in layer.inputs), rounding=rounding)
    return out
