"""Per-layer precision: the macro's run-time weight and activation precision of each weighted layer.

The macro computes ``y[j] = sum_r x[r] * w(r, j)`` exactly at any run-time weight precision ``wb`` in
{1, 2, 4, 8} (weight ``j`` of a row in bits ``[j*wb, (j+1)*wb)``, two's complement when signed) and activation
precision ``ab`` in 1..8 (the low ``ab`` bits of each code, applied bit-serially: an operation takes ``ab``
compute cycles; docs/architecture.md section 3). So a layer whose weight codes and input codes fit narrower
ranges runs exactly at the narrower precision, in fewer cycles when ``ab < 8``, with fewer weight columns
switching when ``wb < 8``.

* **Weights**: the narrowest ``wb`` in {1, 2, 4, 8} whose two's complement range holds every weight code
  (:attr:`cimforge.golden.ir.Conv2d.weight_bits`, the one definition). A layer of 3-bit codes runs at 4 bits.
* **Activations**: the codes a layer's input can hold, from where the tensor comes from: a producer's output
  clamp (``act_min .. act_max``: a fused ReLU / Clip, e.g. a ``Clip(0, 15 * scale)`` states 4 bits), unchanged
  through max pooling, reshapes and clamps; a graph input's range given by ``input_ranges`` (a clamp of its
  codes that the host applies, :func:`cimforge.codesign.importing.host_input_clamps`) or its dtype's. The zero
  point joins the range when the layer pads (padded taps hold it). ``ab`` is the narrowest width holding the
  range in the dtype's signedness (uint8: ``0 .. 2^ab - 1``; int8: two's complement).

:func:`layer_precisions` is the one definition; the compiler's MAC lowering issues each pass at its layer's
precision and packs its page images at ``wb`` bits per lane (:func:`pack_weight_words`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..bits import exact_log2
from ..config import INT8_BITS, CimConfig
from ..golden.ir import DTYPE_RANGES, WEIGHT_BITS, Clamp, Conv2d, Graph, Layer, MaxPool, Reshape
from .tiling import CompileError

__all__ = ["Precision", "WEIGHT_BITS", "layer_precisions", "activation_bits", "tensor_range", "pack_weight_words",
           "INT8_PRECISION", "precision_for"]

@dataclass(frozen=True)
class Precision:
    """A weighted layer's macro precision: ``ab``-bit activations (``x_signed``: two's complement) times
    ``wb``-bit weights (``w_signed``)."""

    ab: int
    x_signed: bool
    wb: int
    w_signed: bool

    @property
    def pair(self) -> tuple[int, int]:
        """``(weight bits, activation bits)``."""
        return self.wb, self.ab

    def mac_fields(self) -> dict:
        """The ``MAC`` instruction's precision fields."""
        return {"ab_m1": self.ab - 1, "wb_log2": exact_log2(self.wb), "w_signed": int(self.w_signed),
                "x_signed": int(self.x_signed)}


INT8_PRECISION = Precision(INT8_BITS, True, INT8_BITS, True)


def activation_bits(lo: int, hi: int, signed: bool) -> int:
    """The narrowest width (1..8) holding the codes ``lo .. hi`` in the given signedness."""
    for ab in range(1, INT8_BITS + 1):
        if signed and -(1 << (ab - 1)) <= lo and hi <= (1 << (ab - 1)) - 1:
            return ab
        if not signed and 0 <= lo and hi < (1 << ab):
            return ab
    return INT8_BITS


def tensor_range(graph: Graph, name: str, input_ranges: Mapping[str, tuple[int, int]] | None = None
                 ) -> tuple[int, int]:
    """The codes tensor ``name`` can hold (see the module notes)."""
    t = graph.tensors[name]
    full = DTYPE_RANGES[t.dtype]
    producer = graph.producer(name)
    if producer is None:
        lo, hi = (input_ranges or {}).get(name, full)
        return max(lo, full[0]), min(hi, full[1])
    if isinstance(producer, (MaxPool, Reshape)):
        return tensor_range(graph, producer.input.name, input_ranges)
    lo, hi = getattr(producer, "act_min", None), getattr(producer, "act_max", None)
    lo = full[0] if lo is None else lo
    hi = full[1] if hi is None else hi
    if isinstance(producer, Clamp):
        src = tensor_range(graph, producer.input.name, input_ranges)
        lo, hi = max(lo, src[0]), min(hi, src[1])
    return lo, hi


def layer_precisions(graph: Graph, cfg: CimConfig | None = None,
                     input_ranges: Mapping[str, tuple[int, int]] | None = None) -> dict[str, Precision]:
    """Layer name -> :class:`Precision` of every weighted layer of ``graph``.

    Raises
    ------
    CompileError
        With ``cfg``: a layer needs a precision beyond ``macro.max_wb`` or ``macro.max_ab``.
    """
    out = {}
    for layer in graph.weighted_layers:
        wb = layer.weight_bits
        x_signed = layer.input.dtype == "int8"
        lo, hi = tensor_range(graph, layer.input.name, input_ranges)
        if isinstance(layer, Conv2d) and any(layer.padding):
            lo, hi = min(lo, layer.input.zero_point), max(hi, layer.input.zero_point)
        ab = activation_bits(lo, hi, x_signed)
        if cfg is not None:
            _check(layer, cfg, wb, ab)
        out[layer.name] = Precision(ab, x_signed, wb, True)
    return out


def _check(layer: Layer, cfg: CimConfig, wb: int, ab: int) -> None:
    m = cfg.macro
    if wb > m.max_wb:
        raise CompileError(f"layer {layer.name!r}: weights need {wb} bits, macro.max_wb = {m.max_wb}: allowed "
                           f"weights of at most {m.max_wb} bits")
    if ab > m.max_ab:
        raise CompileError(f"layer {layer.name!r}: activations need {ab} bits, macro.max_ab = {m.max_ab}: allowed "
                           f"activations of at most {m.max_ab} bits")


def pack_weight_words(words: list[int], lanes_: int, wb: int) -> list[int]:
    """Page words of 8-bit lanes (:func:`~cimforge.compiler.tiling.page_words`) repacked at ``wb`` bits per lane
    (lane ``j`` in bits ``[j*wb, (j+1)*wb)``, the macro's layout at run-time precision ``wb``): each code's
    low ``wb`` bits, which hold it exactly when it fits (``layer.weight_bits``)."""
    if wb == INT8_BITS:
        return list(words)
    mask = (1 << wb) - 1
    out = []
    for word in words:
        v = 0
        for j in range(lanes_):
            v |= ((word >> (8 * j)) & mask) << (wb * j)
        out.append(v)
    return out



def precision_for(state, layer: Layer) -> Precision:
    """The precision of weighted ``layer`` in a compilation (``state``: a
    :class:`~cimforge.compiler.state.CompileState`; its ``input_ranges``, when set, state graph inputs'
    ranges), computed once per compilation."""
    cache = state.__dict__.setdefault("_precisions", {})
    if not cache:
        cache.update(layer_precisions(state.graph, state.cfg, getattr(state, "input_ranges", None)))
    return cache[layer.name]
