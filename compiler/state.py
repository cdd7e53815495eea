"""The state the compiler's passes (:mod:`cimforge.compiler.compile`) and the lowerings
(:mod:`cimforge.compiler.lowering`) share while a graph is compiled, and the helpers that write into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import CimConfig
from ..gen.isa import Opcode, encode, pack_word
from ..golden.ir import Graph, Layer, TensorInfo
from .planning import MacPlan
from .program import InstrInfo, MacPass, Program
from .tiling import CompileError, ConvGeom, layer_label

__all__ = ["CompileState", "GroupPlan", "Band", "Step", "TensorLayouts", "stored_shape", "emit_instr", "pack_checked"]


def stored_shape(t: TensorInfo) -> tuple[int, int, int]:
    """How a tensor is stored: ``(C, H, W)`` as is, a vector ``(F,)`` as ``(F, 1, 1)``, and so is a vector of
    another rank (every axis but one of size 1, e.g. an Unsqueeze'd classifier output ``(F, 1)``): its row-major
    bytes are the vector's. A ``(C, L)`` tensor (``x.view(b, c, -1)``) is ``(C, 1, L)``: channels first, as
    ONNX's axis 1, and its pixels in the order of the plane it was reshaped from.

    Raises
    ------
    CompileError
        Any other shape.
    """
    if len(t.shape) == 3:
        return tuple(t.shape)
    if len(t.shape) == 1 or sum(d > 1 for d in t.shape) <= 1:
        return (int(np.prod(t.shape)), 1, 1)
    if len(t.shape) == 2:
        return (t.shape[0], 1, t.shape[1])
    raise CompileError(f"tensor {t.name!r}: shape {t.shape}: allowed (C, H, W), (C, L) or (F,) (or a vector of "
                       f"another rank: one axis above 1)")


class TensorLayouts:
    """Tensor name -> stored ``(C, H, W)`` (:attr:`phys`) and owner tensor (:attr:`owner`): a tensor that
    aliases another's words (a reshape that keeps the bytes) is owned by it. Each layer's lowering says how its
    output is stored (:attr:`~cimforge.compiler.lowering.Lowering.layout`)."""

    def __init__(self, graph: Graph):
        from .lowering import lowering_for  # the lowerings import this module
        self.phys: dict[str, tuple[int, int, int]] = {}
        self.owner: dict[str, str] = {}
        for t in graph.inputs:
            self.own(t)
        for layer in graph.layers:
            lowering_for(layer).layout(self, layer)

    def own(self, t: TensorInfo) -> None:
        """Store ``t`` in words of its own."""
        self.phys[t.name], self.owner[t.name] = stored_shape(t), t.name

    def alias(self, t: TensorInfo, src: TensorInfo, phys: tuple[int, int, int] | None = None) -> None:
        """Store ``t`` in the words of ``src``: with ``src``'s stored shape, or ``phys`` (the same words as
        another plane of the same channels)."""
        self.phys[t.name], self.owner[t.name] = phys or self.phys[src.name], self.owner[src.name]


@dataclass
class GroupPlan:
    """How one weighted layer (one group of a grouped convolution) runs: geometry, split, passes, and where its
    channels start in the stored input and output (words)."""

    geom: ConvGeom
    par: object
    in_off: int
    out_off: int
    plan: MacPlan | None = None


@dataclass(frozen=True)
class Band:
    """Output rows ``o0 .. o1 - 1`` of a layer run on a sub-image (external-memory mode,
    :mod:`cimforge.compiler.memory`): ``pt`` is the padding above the band's first input row (the layer's own
    on the first band, else 0); ``ctile`` the channel words ``(w0, w1)`` of every pixel the band holds when a
    pool runs channel tile by channel tile (None: every word)."""

    o0: int
    o1: int
    pt: int
    ctile: tuple[int, int] | None = None


@dataclass(frozen=True)
class Step:
    """One item of the program order: a ``MAC`` pass (``mac`` set, ``image`` its first image) or the
    instructions of a layer without weights for one image; ``band`` the output rows it computes when the layer
    runs in row bands (None: the whole layer)."""

    layer: Layer
    image: int
    mac: MacPass | None = None
    band: Band | None = None


@dataclass
class CompileState:
    """Everything the passes of :func:`~cimforge.compiler.compile.compile_graph` read and write.

    Attributes
    ----------
    graph, cfg, batch, merge_images, stream
        The request (see :func:`~cimforge.compiler.compile.compile_graph`).
    parallelism : dict
        Layer name -> requested split.
    prog : Program
        The program being built (tensors, memories, code).
    layouts : TensorLayouts
    rowpacked : set of str
        Graph inputs stored one image row per word.
    plans : dict
        ``(layer name, group) -> GroupPlan`` of every weighted layer, in layer order.
    wblocks : dict
        ``(layer, group, k tile, n tile) -> (wmem address, rows)`` of each page image.
    desc_base, param_base : dict
        ``(layer, group) ->`` first descriptor / parameter word.
    role_base : dict
        Split -> first word of its role table in the descriptor memory.
    steps : list of Step
        Program order.
    order : list of MacPass
        The ``MAC`` passes in program order (weight loads of the next one overlap the current one).
    wstream : WeightStream or None
        How ``LOAD``s get their page images when the weights live in the external memory
        (:class:`cimforge.compiler.memory.WeightStream`).
    """

    graph: Graph
    cfg: CimConfig
    batch: int
    merge_images: bool
    stream: bool | None
    parallelism: dict
    prog: Program
    layouts: TensorLayouts
    rowpacked: set = field(default_factory=set)
    plans: dict = field(default_factory=dict)
    wblocks: dict = field(default_factory=dict)
    desc_base: dict = field(default_factory=dict)
    param_base: dict = field(default_factory=dict)
    role_base: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    order: list = field(default_factory=list)
    #: Where tensors live as requested (:data:`cimforge.compiler.memory.MEMORY_MODES`).
    memory: str = "auto"
    #: External mode: at least three bands for a layer that cannot stay on chip (overlaps the next layer's
    #: first load), unless the program then overflows (:func:`~cimforge.compiler.compile.compile_graph`).
    pipelined_bands: bool = True
    #: Graph tensors live in the external memory (:mod:`cimforge.compiler.memory`).
    external: bool = False
    #: External words the tensors take (external mode); the weights follow them.
    ext_used: int = 0
    #: memory='liveness': the layer whose output reaches the highest word (named when the memory is too small).
    peak_layer: str | None = None
    #: The bands of every layer in program order (external mode).
    units: list = field(default_factory=list)
    #: Weights streamed from the external memory through the weight memory (external mode), else None.
    wstream: object = None
    _next: dict = field(default_factory=dict, repr=False)

    @property
    def resident(self) -> bool:
        return self.prog.resident

    def set_order(self, order: list[MacPass]) -> None:
        """Record the ``MAC`` passes in program order."""
        self.order = order
        self._next = {id(a): b for a, b in zip(order, order[1:] + [None])}

    def next_pass(self, mp: MacPass) -> MacPass | None:
        """The ``MAC`` pass after ``mp`` in program order (None after the last)."""
        return self._next[id(mp)]


def emit_instr(state: CompileState, op: Opcode, layer: str | None, image: int | None, text: str, **args) -> int:
    """Append one instruction to the program with what it is for; returns its pc.

    Raises
    ------
    CompileError
        An argument does not fit its field; the message names the layer and the instruction.
    """
    prog = state.prog
    try:
        word = encode(state.cfg, op, **args)
    except ValueError as e:
        where = layer_label(layer) if layer else repr(layer)
        raise CompileError(f"layer {where}: {op.name} instruction: {e}") from None
    pc = len(prog.code)
    prog.code.append(word)
    prog.instrs.append(InstrInfo(pc, op.name, layer, image, text))
    return pc


def pack_checked(owner: str, layout, value) -> int:
    """:func:`~cimforge.gen.isa.pack_word`, a value out of range raising a :class:`CompileError` naming the
    layer."""
    try:
        return pack_word(layout, value)
    except ValueError as e:
        raise CompileError(f"layer {layer_label(owner)}: {e}") from None
