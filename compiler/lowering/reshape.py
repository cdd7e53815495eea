"""Reshapes that keep the bytes: a flatten of a stored ``(C, H, W)`` tensor to ``(F,)`` (a Dense layer reads it
in place) or a vector viewed as ``(F, 1, 1)``. The output aliases the input's words; nothing is emitted."""

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
    if len(out.shape) == 1 or (sp[1] == sp[2] == 1 and stored_shape(out) == sp):
        layouts.alias(out, src)
        return
    raise CompileError(f"reshape layer {layer.name!r}: {src.shape} -> {out.shape}: allowed a flatten to (F,) or a "
                       f"reshape of a vector to (F, 1, 1)")


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    return LayerCost(cycles=0, compute_cycles=0)


def steps(state, layer: Layer, image: int, images: int) -> list:
    return []


LOWERING = Lowering("alias", (), emit_nothing, cost, steps=steps, layout=layout)
