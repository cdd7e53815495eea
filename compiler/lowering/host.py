"""Layer kinds the fabric does not run: softmax and local response normalisation (no engine), the int32-output
``ConvInteger`` / ``MatMulInteger``, and matrix products over positions (``MatMul``, which the MAC lowering does
not take yet). They are computed on the host side of a run by their golden operators
(:data:`cimforge.golden.runner.LAYER_FUNCTIONS`); compiling a graph that holds one is a
:class:`~cimforge.compiler.tiling.CompileError` naming the layer and its kind (docs/operators.md)."""

from __future__ import annotations

from ...config import CimConfig
from ...golden.ir import LRN, ConvInteger, Layer, MatMul, MatMulInteger, Softmax
from ..cost import LayerCost
from ..state import Step, TensorLayouts
from ..tiling import CompileError
from .base import Lowering

__all__ = ["LOWERING", "LAYERS", "HOST_REASONS", "HOST_SIDE", "refusal"]

#: The IR classes this module "lowers" (refuses), with why the fabric does not run them.
HOST_REASONS: dict[type[Layer], str] = {
    Softmax: "the fabric has no engine for it",
    LRN: "the fabric has no engine for it",
    MatMul: "a matrix product over positions: the MAC lowering takes vectors and feature maps",
    ConvInteger: "its output is a raw int32 accumulator, the fabric writes requantised int8 codes",
    MatMulInteger: "its output is a raw int32 accumulator, the fabric writes requantised int8 codes",
}
#: The kinds that belong on the host side of a run (the end of a classifier, a normalisation): the others are
#: golden-model operators only.
HOST_SIDE = (Softmax, LRN)
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
