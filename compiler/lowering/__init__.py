"""Per layer kind, how the compiler plans, emits and costs it: one module per kind, one registry.

:data:`LOWERINGS` maps each IR layer class (:mod:`cimforge.golden.ir`) to its :class:`Lowering`; the compiler's
passes (:mod:`cimforge.compiler.compile`) and the cost model (:func:`cimforge.compiler.cost.layer_cost`) look
layers up here, so a new layer kind is one new module listed in :data:`MODULES` (docs/adding-an-operation.md).
"""

from __future__ import annotations

from ...golden.ir import Layer
from ..tiling import CompileError
from . import concat, elementwise, host, lrn, lut, mac, pool, reshape, resize
from .base import Lowering

__all__ = ["Lowering", "LOWERINGS", "MODULES", "lowering_for"]

#: The lowering modules; each lists the IR classes it lowers (``LAYERS``) and its ``LOWERING``.
MODULES = (mac, pool, elementwise, concat, reshape, resize, lrn, lut, host)

#: IR layer class -> how it is compiled and costed.
LOWERINGS: dict[type[Layer], Lowering] = {cls: m.LOWERING for m in MODULES for cls in m.LAYERS}


def lowering_for(layer: Layer) -> Lowering:
    """The lowering of ``layer``'s class (of the IR class it names as ``lowered_as``: a compiler-side layer
    such as :class:`cimforge.compiler.fusion.FusedConv2d`, which is no IR class of its own).

    Raises
    ------
    CompileError
        No lowering for the layer's kind.
    """
    try:
        return LOWERINGS[getattr(type(layer), "lowered_as", type(layer))]
    except KeyError:
        raise CompileError(f"layer {layer.name!r}: kind {layer.kind} is not supported by the fabric") from None
