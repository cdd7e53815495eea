"""The per-layer cycle model the inference partitioner asks, and an analytic stand-in for it.

The compiler owns the fabric's cycle model (``cimforge.compiler.cost.layer_cost(layer, cfg, par)``, with
``Parallelism(batch, in_ch, out_ch)``); :func:`cycle_model` returns it when that module exists, so the partitioner
predicts with the same numbers the fabric is compiled with. Until then :func:`analytic_layer_cost` stands in,
written from the macro contract (ARCHITECTURE.md sections 3 and 6):

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
from dataclasses import dataclass
from typing import Any, Callable

__all__ = [
    "Parallelism", "LayerCost", "analytic_layer_cost", "pages_per_macro", "cycle_model", "ir_layer", "MAC_LATENCY",
]

#: Fixed pipeline latency of a macro operation in the analytic model (cycles, added to ``ab``).
MAC_LATENCY = 2


@dataclass(frozen=True)
class Parallelism:
    """Macro groups splitting a layer: by ``batch`` (replicas, data parallel), by ``in_ch`` (reduction, partial
    sums added) and by ``out_ch`` (output channels). Same fields as ``cimforge.compiler.cost.Parallelism``."""

    batch: int = 1
    in_ch: int = 1
    out_ch: int = 1

    def __post_init__(self) -> None:
        for f in ("batch", "in_ch", "out_ch"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Parallelism.{f} = {v!r}: allowed a positive integer")

    @property
    def macros(self) -> int:
        return self.batch * self.in_ch * self.out_ch

    def __str__(self) -> str:
        return f"{self.batch}x{self.in_ch}x{self.out_ch}"


@dataclass(frozen=True)
class LayerCost:
    """Cycles and traffic of one layer for one batch (fields of the compiler's ``LayerCost``, plus ``pages``:
    the weight pages the busiest macro holds).

    ``cycles`` is what the layer costs per batch when its weights are *not* resident (``compute_cycles`` plus
    ``weight_load_cycles``, the loads a streamed layer pays every batch); ``setup_load_cycles`` is the one-off
    load of resident weights (default ``weight_load_cycles``; the fabric reloads streamed weights for every
    image, so there the two differ)."""

    cycles: int
    compute_cycles: int
    weight_load_cycles: int
    psum_traffic_bits: int
    act_traffic_bits: int
    pages: int = 0
    resident_load_cycles: int | None = None

    @property
    def setup_load_cycles(self) -> int:
        """Cycles to load the weights once (a resident layer's setup)."""
        return self.weight_load_cycles if self.resident_load_cycles is None else self.resident_load_cycles


def _precisions(cfg: Any) -> tuple[int, int]:
    return min(8, cfg.macro.max_ab), min(8, cfg.macro.max_wb)


def _tiles(layer: Any, cfg: Any) -> tuple[int, int]:
    """``(k_tiles, n_tiles)``: pages along the reduction and along the outputs (all groups)."""
    _, wb = _precisions(cfg)
    _, K, N = layer.gemm
    per_row = cfg.macro.cols // wb
    return math.ceil(K / cfg.macro.rows), layer.groups * math.ceil(N / per_row)


def pages_per_macro(layer: Any, cfg: Any, par: Parallelism) -> int:
    """Weight pages the busiest macro holds under ``par``."""
    kt, nt = _tiles(layer, cfg)
    return math.ceil(kt / par.in_ch) * math.ceil(nt / par.out_ch)


def analytic_layer_cost(layer: Any, cfg: Any, par: Parallelism, batch: int = 1) -> LayerCost:
    """Cycles of ``layer`` (a :class:`~.network.Layer`) on ``cfg``'s macros under ``par`` for ``batch`` samples."""
    ab, _ = _precisions(cfg)
    M, K, _ = layer.gemm
    kt, nt = _tiles(layer, cfg)
    pages = pages_per_macro(layer, cfg, par)
    positions = batch * M
    compute = pages * math.ceil(positions / par.batch) * (ab + MAC_LATENCY)
    load = par.batch * kt * nt * cfg.macro.rows
    outputs = positions * layer.out_ch
    psum = outputs * (par.in_ch - 1) * cfg.macro.acc_width
    act = positions * K * layer.groups * ab * par.out_ch
    return LayerCost(compute + load, compute, load, psum, act, pages)


def cycle_model() -> tuple[Callable[..., LayerCost], str]:
    """The per-layer cost function to use, ``f(layer, cfg, par, batch) -> LayerCost``, and its name.

    ``cimforge.compiler.cost.layer_cost`` when the compiler provides it, else :func:`analytic_layer_cost`.
    The compiler's model is marked ``fabric = True`` and carries ``splits(layer, cfg)``: the plans it prices are
    what :func:`cimforge.compiler.compile.compile_graph` runs, so the search takes the fabric's rules with it
    (see :func:`.inference.plan_inference`). Splits the fabric cannot run raise ``ValueError``
    (``cimforge.compiler.tiling.CompileError``); the search treats them as infeasible.
    """
    try:
        from cimforge.compiler import cost as compiler_cost
    except ImportError:
        return analytic_layer_cost, "analytic (cimforge.compiler.partition.fabric_cost)"
    if not (hasattr(compiler_cost, "layer_cost") and hasattr(compiler_cost, "Parallelism")):
        return analytic_layer_cost, "analytic (cimforge.compiler.cost lacks layer_cost/Parallelism)"
    return _compiler_adapter(compiler_cost), "cimforge.compiler.cost.layer_cost"


def _compiler_adapter(mod: Any) -> Callable[..., LayerCost]:
    """``f(layer, cfg, par, batch)`` over ``mod.layer_cost`` (``Parallelism(batch, in_ch, out_ch)``).

    The fabric runs a batch as ``compile_graph(..., batch=B)`` does: each pass of a weighted layer walks the
    output positions of every image of the batch (a split's ``batch`` replicas share them), so its fixed
    set-up and drain and its weight loads come once per batch; layers without weights run once per image.
    """
    ir_cache: dict[int, Any] = {}

    def source(layer: Any) -> Any:
        return layer.source if layer.source is not None else ir_cache.setdefault(id(layer), ir_layer(layer))

    def source_shape(layer: Any) -> tuple[int, int, int] | None:
        # compile_graph reads a Dense layer's flattened input in place: its geometry is the source map's
        if layer.kind == "fc" and tuple(layer.flat_hw) != (1, 1):
            h, w = layer.flat_hw
            return (layer.in_ch // (h * w), h, w)
        return None

    def cost(layer: Any, cfg: Any, par: Parallelism, batch: int = 1) -> LayerCost:
        p = mod.Parallelism(par.batch, par.in_ch, par.out_ch)
        c = mod.layer_cost(source(layer), cfg, p, source_shape=source_shape(layer), images=batch)
        load = int(c.weight_load_cycles)
        compute = int(c.compute_cycles)
        # pages per macro over all the layer's passes (what compile_graph adds up to decide residency)
        pages = (getattr(c, "pages", None) or pages_per_macro(layer, cfg, par)) * max(1, len(getattr(c, "passes", ())))
        return LayerCost(int(c.cycles), compute, load, int(c.psum_traffic_bits), int(c.act_traffic_bits), int(pages),
                         resident_load_cycles=load)

    def splits(layer: Any, cfg: Any, batch: int = 1) -> list[Parallelism]:
        """The splits the compiler would consider for ``layer`` (``cimforge.compiler.cost.valid_parallelisms``
        on the layer's tiles and the positions of ``batch`` images); some may still not fit the pages."""
        from cimforge.compiler.tiling import geometry, group_geometries, k_tiles, rowpack_ok
        from cimforge.gen.isa import lanes

        src = source(layer)
        rp = rowpack_ok(src, lanes(cfg), cfg.macro.rows)  # as layer_cost assumes
        g = geometry(src, source_shape(layer)) if layer.kind == "fc" else \
            group_geometries(src, lanes(cfg), rowpack=rp)[0][0]
        kt, nt = len(k_tiles(g, cfg)), -(-g.cout // lanes(cfg))
        return [Parallelism(q.batch, q.in_ch, q.out_ch) for q in mod.valid_parallelisms(cfg, kt, nt, g.npos * batch)]

    cost.fabric = True
    cost.splits = splits
    return cost


def ir_layer(layer: Any) -> Any:
    """A :mod:`cimforge.golden.ir` layer with ``layer``'s shapes (weights all one, so that every tap counts: the
    compiler does not walk taps that are zero in every filter; unit scales), for cost models that take IR
    layers; padding is chosen to give the recorded output size."""
    import numpy as np

    from cimforge.golden.ir import Conv2d, Dense, TensorInfo

    def t(name: str, shape: tuple[int, ...]) -> TensorInfo:
        return TensorInfo(name, shape, "int8", 1.0, 0)

    if layer.kind == "conv":
        (h, w), (ho, wo), (kh, kw), (sh, sw) = layer.in_hw, layer.out_hw, layer.kernel, layer.stride
        pad_h, pad_w = max(0, (ho - 1) * sh + kh - h), max(0, (wo - 1) * sw + kw - w)
        weight = np.ones((layer.out_ch, layer.in_ch // layer.groups, kh, kw), np.int8)
        return Conv2d(name=layer.name, inputs=(t(layer.name + ":in", (layer.in_ch, h, w)),),
                      output=t(layer.name + ":out", (layer.out_ch, ho, wo)), weight=weight, stride=(sh, sw),
                      padding=(pad_h // 2, pad_w // 2, pad_h - pad_h // 2, pad_w - pad_w // 2), groups=layer.groups)
    if layer.kind == "fc":
        return Dense(name=layer.name, inputs=(t(layer.name + ":in", (layer.in_ch,)),),
                     output=t(layer.name + ":out", (layer.out_ch,)),
                     weight=np.ones((layer.out_ch, layer.in_ch), np.int8))
    raise ValueError(f"layer {layer.name!r}: kind {layer.kind!r} has no IR form")
