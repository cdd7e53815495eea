"""The per-layer cycle models the inference partitioner asks: the fabric compiler's own, and an analytic model of
the macro contract for schedules the fabric does not run.

:func:`cycle_model` is ``cimforge.compiler.cost.layer_cost`` as the partitioner calls it, ``f(layer, cfg, par,
batch) -> LayerCost`` over :class:`cimforge.golden.ir.LayerShape` layers: the partitioner predicts with the very
numbers the fabric is compiled with. ``Parallelism`` and ``LayerCost`` are the compiler's
(:mod:`cimforge.compiler.cost`); a cost's ``pages`` here is what the layer holds per macro over all its passes.

:func:`analytic_layer_cost` prices what the fabric's compiler does not run (a pipeline of layers on disjoint
macros, grouped convolutions in groups of less than a word), from the macro contract (docs/architecture.md
sections 3 and 6):

* a layer is ``groups`` GEMMs ``(M x K) @ (K x N)`` per sample; a page holds ``rows x cols`` bits, i.e. a tile
  of ``R`` reduction rows by ``C / wb`` weights; the layer needs ``ceil(K / R) * groups * ceil(N / (C / wb))``
  tiles (pages);
* ``Parallelism(b, k, n)`` puts the tiles on ``b * k * n`` macros: ``k`` groups split the reduction (partial sums
  added across macros), ``n`` groups split the outputs, ``b`` replicas split the output positions (the batch and
  the pixels) and hold copies of the weights;
* a macro operation (one page, one output position) costs ``ab`` cycles plus :data:`MAC_LATENCY`; a macro runs
  its tiles for each of its positions one after the other;
* weights are written one ``cols``-bit word per cycle through one port for the whole fabric: loading costs
  ``rows`` cycles per tile copy;
* partial-sum traffic: ``(k - 1)`` accumulator words (``acc_width`` bits) per output; activation traffic: every
  output-channel group receives the ``ab``-bit inputs of its reduction slice.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from cimforge.compiler import cost as compiler_cost
from cimforge.compiler.cost import LayerCost, Parallelism
from cimforge.golden.ir import Conv2d, Dense, LayerShape, TensorInfo

from .dataflow import plane

__all__ = ["analytic_layer_cost", "pages_per_macro", "cycle_model", "ir_layer", "MAC_LATENCY", "tiles"]

#: Fixed pipeline latency of a macro operation in the analytic model (cycles, added to ``ab``).
MAC_LATENCY = 2


def _precisions(cfg: Any) -> tuple[int, int]:
    return min(8, cfg.macro.max_ab), min(8, cfg.macro.max_wb)


def tiles(layer: Any, cfg: Any) -> tuple[int, int]:
    """``(k_tiles, n_tiles)`` of the analytic model: pages along the reduction and along the outputs (all
    groups) of a weighted layer (anything with a ``gemm`` view)."""
    _, wb = _precisions(cfg)
    g = layer.gemm
    per_row = cfg.macro.cols // wb
    return math.ceil(g.K / cfg.macro.rows), g.groups * math.ceil(g.N / per_row)


def pages_per_macro(layer: Any, cfg: Any, par: Parallelism) -> int:
    """Weight pages the busiest macro holds under ``par`` (analytic model)."""
    kt, nt = tiles(layer, cfg)
    return math.ceil(kt / par.in_ch) * math.ceil(nt / par.out_ch)


def analytic_layer_cost(layer: Any, cfg: Any, par: Parallelism, batch: int = 1) -> LayerCost:
    """Cycles of a weighted ``layer`` (a :class:`LayerShape` or an IR layer) on ``cfg``'s macros under ``par`` for
    ``batch`` samples, from the macro contract (module docstring)."""
    ab, _ = _precisions(cfg)
    g = layer.gemm
    kt, nt = tiles(layer, cfg)
    pages = pages_per_macro(layer, cfg, par)
    positions = batch * g.M
    compute = pages * math.ceil(positions / par.batch) * (ab + MAC_LATENCY)
    load = par.batch * kt * nt * cfg.macro.rows
    outputs = positions * g.N * g.groups
    psum = outputs * (par.in_ch - 1) * cfg.macro.acc_width
    act = positions * g.K * g.groups * ab * par.out_ch
    return LayerCost(compute + load, compute, load, psum, act, pages, macros=par.macros)


def cycle_model() -> tuple[Callable[..., LayerCost], str]:
    """The fabric's per-layer cost function, ``f(layer, cfg, par, batch) -> LayerCost``, and its name.

    It is ``cimforge.compiler.cost.layer_cost``, marked ``fabric = True`` and carrying ``splits(layer, cfg,
    batch)``: the plans it prices are what :func:`cimforge.compiler.compile.compile_graph` runs, so the search
    takes the fabric's rules with it (see :func:`.inference.plan_inference`). Splits the fabric cannot run raise
    ``ValueError`` (``cimforge.compiler.tiling.CompileError``); the search treats them as infeasible.
    """
    return _fabric_cost(), "cimforge.compiler.cost.layer_cost"


def _fabric_cost() -> Callable[..., LayerCost]:
    """``f(layer, cfg, par, batch)`` over ``cimforge.compiler.cost.layer_cost``.

    The fabric runs a batch as ``compile_graph(..., batch=B)`` does: each pass of a weighted layer walks the
    output positions of every image of the batch (a split's ``batch`` replicas share them), so its fixed
    set-up and drain and its weight loads come once per batch; layers without weights run once per image.
    """
    ir_cache: dict[int, Any] = {}

    def source(layer: LayerShape) -> Any:
        return layer.source if layer.source is not None else ir_cache.setdefault(id(layer), ir_layer(layer))

    def cost(layer: LayerShape, cfg: Any, par: Parallelism, batch: int = 1) -> LayerCost:
        c = compiler_cost.layer_cost(source(layer), cfg, par, source_shape=layer.source_shape, images=batch)
        # pages per macro over all the layer's passes (what compile_graph adds up to decide residency)
        return replace(c, pages=int(c.pages or pages_per_macro(layer, cfg, par)) * max(1, len(c.passes)))

    def splits(layer: LayerShape, cfg: Any, batch: int = 1) -> list[Parallelism]:
        """The splits the compiler would consider for ``layer`` (``cimforge.compiler.cost.valid_parallelisms``
        on the layer's tiles and the positions of ``batch`` images); some may still not fit the pages."""
        from cimforge.compiler.tiling import geometry, group_geometries, k_tiles, rowpack_ok
        from cimforge.gen.isa import lanes

        src = source(layer)
        rp = rowpack_ok(src, lanes(cfg), cfg.macro.rows)  # as layer_cost assumes
        g = geometry(src, layer.source_shape) if layer.kind == "dense" else \
            group_geometries(src, lanes(cfg), rowpack=rp)[0][0]
        kt, nt = len(k_tiles(g, cfg)), -(-g.cout // lanes(cfg))
        return compiler_cost.valid_parallelisms(cfg, kt, nt, g.npos * batch)

    cost.fabric = True
    cost.splits = splits
    return cost


def ir_layer(layer: LayerShape) -> Any:
    """A :mod:`cimforge.golden.ir` layer with ``layer``'s shapes (weights all one, so that every tap counts: the
    compiler does not walk taps that are zero in every filter; unit scales), for the compiler's cost model;
    padding is chosen to give the recorded output size."""
    def t(name: str, shape: tuple[int, ...]) -> TensorInfo:
        return TensorInfo(name, shape, "int8", 1.0, 0)

    if layer.kind == "conv2d":
        (h, w), (ho, wo) = plane(layer.input_shape[1:]), plane(layer.output_shape[1:])
        (kh, kw), (sh, sw) = plane(layer.kernel), plane(layer.stride or (1,) * len(layer.kernel))
        ci, co, g = layer.in_channels, layer.out_channels, layer.groups
        pad_h, pad_w = max(0, (ho - 1) * sh + kh - h), max(0, (wo - 1) * sw + kw - w)
        return Conv2d(name=layer.name, inputs=(t(layer.name + ":in", (ci, h, w)),),
                      output=t(layer.name + ":out", (co, ho, wo)), weight=np.ones((co, ci // g, kh, kw), np.int8),
                      stride=(sh, sw), padding=(pad_h // 2, pad_w // 2, pad_h - pad_h // 2, pad_w - pad_w // 2),
                      groups=g)
    if layer.kind == "dense":
        return Dense(name=layer.name, inputs=(t(layer.name + ":in", (layer.in_channels,)),),
                     output=t(layer.name + ":out", (layer.out_channels,)),
                     weight=np.ones((layer.out_channels, layer.in_channels), np.int8))
    raise ValueError(f"layer {layer.name!r}: kind {layer.kind!r} has no IR form")
