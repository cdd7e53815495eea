"""Layer kinds the fabric does not run: softmax (no engine; LRN has one, compiler/lowering/lrn.py), the int32-output
``ConvInteger`` / ``MatMulInteger``, and matrix products over positions (``MatMul``, which the MAC lowering does
not take yet). They are computed on the host side of a run by their golden operators
(:data:`cimforge.golden.runner.LAYER_FUNCTIONS`); compiling a graph that holds one is a
:class:`~cimforge.compiler.tiling.CompileError` naming the layer and its kind (docs/operators.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ...config import CimConfig
from ...golden.ir import ConvInteger, FloatChain, Graph, Layer, MatMul, MatMulInteger, Softmax
from ..cost import LayerCost
from ..state import Step, TensorLayouts
from ..tiling import CompileError
from .base import Lowering

__all__ = ["LOWERING", "LAYERS", "HOST_REASONS", "HOST_SIDE", "refusal", "HostSplit", "split_host_tail"]

#: The IR classes this module "lowers" (refuses), with why the fabric does not run them.
HOST_REASONS: dict[type[Layer], str] = {
    Softmax: "the fabric has no engine for it",
    MatMul: "a matrix product over positions: the MAC lowering takes vectors and feature maps",
    ConvInteger: "its output is a raw int32 accumulator, the fabric writes requantised int8 codes",
    MatMulInteger: "its output is a raw int32 accumulator, the fabric writes requantised int8 codes",
    FloatChain: "float32 arithmetic, imported with numerics='onnx'; the fabric runs the chain's int8 form "
                "(load_onnx's default numerics='fabric')",
}
#: The kinds that belong on the host side of a run (the end of a classifier): the others are
#: golden-model operators only.
HOST_SIDE = (Softmax,)
LAYERS = tuple(HOST_REASONS)


def refusal(layer: Layer) -> CompileError:
    """The error for compiling ``layer``: its name, its kind, why, and where it is computed instead."""
    return CompileError(f"layer {layer.name!r}: kind {layer.kind} does not run on the fabric "
                        f"({HOST_REASONS[type(layer)]}): it is computed on the host side of a run by the golden "
                        f"operator (cimforge.golden.runner.run_layer)")


def layout(layouts: TensorLayouts, layer: Layer) -> None:
    """The first hook the compiler calls for every layer: refuse."""
    raise refusal(layer)


def emit(state, step: Step) -> None:
    raise refusal(step.layer)


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """No fabric cycles: the layer is not run on the fabric (a partitioner costing a model counts it as 0)."""
    return LayerCost(cycles=0, compute_cycles=0)


LOWERING = Lowering("host", (), emit, cost, layout=layout)


@dataclass(frozen=True)
class HostSplit:
    """A graph cut before its trailing host-side layers (a classifier's final softmax): ``fabric`` is what
    :func:`~cimforge.compiler.compile.compile_graph` takes, ``tail`` what the host applies to the fabric's
    outputs (:meth:`finish`), in order.

    Attributes
    ----------
    fabric : Graph
        The same layers without the tail; its outputs are the original outputs the tail does not produce, then
        the tensors the tail reads.
    tail : tuple of Layer
        The trailing host-side layers (:data:`HOST_SIDE`), empty when the graph ends otherwise.
    outputs : tuple of str
        The original graph's outputs.
    """

    fabric: Graph
    tail: tuple[Layer, ...]
    outputs: tuple[str, ...]

    def finish(self, tensors: Mapping[str, np.ndarray], rounding: str | None = None) -> dict[str, np.ndarray]:
        """``tensors`` (the fabric's, by IR name) with every tail layer's output added, computed by its golden
        operator: the whole graph's tensors, as :func:`~cimforge.golden.runner.run_graph` names them."""
        from ...golden.runner import run_layer

        out = dict(tensors)
        for layer in self.tail:
            out[layer.output.name] = run_layer(layer, *(out[t.name] for t in layer.inputs), rounding=rounding)
        return out


def split_host_tail(graph: Graph) -> HostSplit:
    """Cut ``graph`` before the longest suffix of its layers that are host-side kinds (:data:`HOST_SIDE`) and
    that no fabric layer reads, so that the fabric runs the rest and the host applies the suffix to its output
    (:meth:`HostSplit.finish`). A graph that does not end in such layers comes back whole, with an empty tail."""
    layers = list(graph.layers)
    k = len(layers)
    while k > 0 and type(layers[k - 1]) in HOST_SIDE:
        k -= 1
    tail = tuple(layers[k:])
    if not tail:
        return HostSplit(graph, (), graph.outputs)
    produced = {layer.output.name for layer in tail}
    needed = [t.name for layer in tail for t in layer.inputs if t.name not in produced]
    outputs = tuple(dict.fromkeys([o for o in graph.outputs if o not in produced] + needed))
    fabric = Graph(graph.name, graph.inputs, tuple(layers[:k]), outputs, dict(graph.float_inputs),
                   {f: q for f, q in graph.float_outputs.items() if q in outputs}, dict(graph.input_steps))
    return HostSplit(fabric, tail, graph.outputs)
