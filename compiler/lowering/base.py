"""What a lowering is: how the compiler plans, emits and costs one kind of IR layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...gen.isa import Opcode
from ..cost import LayerCost
from ..state import CompileState, Step, TensorLayouts

__all__ = ["Lowering", "own_output", "per_image_steps", "per_image_cost", "emit_nothing"]


def own_output(layouts: TensorLayouts, layer) -> None:
    """The default storage of a layer's output: words of its own."""
    layouts.own(layer.output)


def per_image_steps(state: CompileState, layer, image: int, images: int) -> list[Step]:
    """The default program steps of a layer without weights: its instructions once per image."""
    return [Step(layer, j) for j in range(image, image + images)]


def per_image_cost(one: LayerCost, images: int) -> LayerCost:
    """The cost of a layer without weights over ``images`` images, from its cost for one (it runs once per
    image)."""
    return LayerCost(cycles=one.cycles * images, compute_cycles=one.compute_cycles * images,
                     act_traffic_bits=one.act_traffic_bits * images)


def emit_nothing(state: CompileState, step: Step) -> None:
    """The emission of a layer that is only a view of another tensor."""


@dataclass(frozen=True)
class Lowering:
    """How one IR layer class is compiled onto the fabric and costed.

    The passes of :func:`~cimforge.compiler.compile.compile_graph` call the hooks in this order: ``layout``
    (how the output is stored), ``plan`` (geometry and split), ``place`` (weights, descriptors, parameters),
    ``steps`` (program order), ``emit`` (instructions of one step). ``cost`` answers
    :func:`~cimforge.compiler.cost.layer_cost`.

    Attributes
    ----------
    name : str
        What the lowering maps the layer onto (reports, docs).
    opcodes : tuple of Opcode
        The instructions it emits (empty for a layer that only aliases a tensor).
    emit : callable
        ``emit(state, step)``: append the instructions of one :class:`~cimforge.compiler.state.Step`.
    cost : callable
        ``cost(layer, cfg, par, source_shape, images) -> LayerCost``.
    plan : callable or None
        ``plan(state, layer)``: record the layer's plans in ``state.plans`` (weighted layers).
    place : callable or None
        ``place(state, layer)``: write the layer's weights, descriptors and parameters into the memory images.
    steps : callable
        ``steps(state, layer, image, images) -> list of Step`` for a run over images ``image ..
        image + images - 1``; default one step per image.
    layout : callable
        ``layout(layouts, layer)``: how the output tensor is stored; default words of its own.
    """

    name: str
    opcodes: tuple[Opcode, ...]
    emit: Callable[[CompileState, Step], None]
    cost: Callable[..., LayerCost]
    plan: Callable[[CompileState, object], None] | None = None
    place: Callable[[CompileState, object], None] | None = None
    steps: Callable[[CompileState, object, int, int], list[Step]] = field(default=per_image_steps)
    layout: Callable[[TensorLayouts, object], None] = field(default=own_output)
