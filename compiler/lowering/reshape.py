"""Reshapes that keep the bytes: a flatten of a stored ``(C, H, W)`` tensor to ``(F,)`` (a Dense layer reads it
in place), a vector viewed as ``(F, 1, 1)``, or a plane of another shape with the same channels (``(C, H, W)`` to
``(C, H * W)`` or ``(C, H', W')``: pixel-major storage keeps the pixels' order). The output aliases the input's
words; nothing is emitted."""

from __future__ import annotations

from ...config import CimConfig
from ...golden.ir import Layer, Reshape
from ..cost import LayerCost
from ..state import TensorLayouts, stored_shape
from ..tiling import CompileError
from .base import Lowering, emit_nothing

__all__ = ["LOWERING", "LAYERS"]

#: The IR classes this module lowers.
LAYERS = (Reshape,)


def layout(layouts: TensorLayouts, layer: Layer) -> None:
    """The output is the input's words.

    Raises
    ------
    CompileError
        A reshape that would move bytes.
    """
    src, out = layer.input, layer.output
    sp = layouts.phys[src.name]
    op = stored_shape(out)
    if len(out.shape) == 1 or (sp[1] == sp[2] == 1 and op == sp):
        layouts.alias(out, src)  # a Dense reading the flattened tensor orders its weights by the source's planes
        return
    if op[0] == sp[0] and op[1] * op[2] == sp[1] * sp[2]:
        layouts.alias(out, src, op)
        return
    raise CompileError(f"reshape layer {layer.name!r}: {src.shape} -> {out.shape}: allowed a flatten to (F,), a "
                       f"reshape of a vector to (F, 1, 1), or one that keeps the channels ({sp[0]})")


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    return LayerCost(cycles=0, compute_cycles=0)


def steps(state, layer: Layer, image: int, images: int) -> list:
    return []


LOWERING = Lowering("alias", (), emit_nothing, cost, steps=steps, layout=layout)
