"""Inference partitioning on the cimforge fabric: a ``Parallelism`` (:mod:`cimforge.compiler.cost`) per layer and
a schedule.

There are no gradients in inference; what costs is weight storage (pages), weight loading, partial sums and
activations (all from the per-layer cycle model, :func:`.fabric_cost.cycle_model`). Two schedules:

* ``sequential``: layers run one after the other, each on up to all ``n_macros`` macros. A layer whose weight
  pages stay in the macros across batches (*resident*) pays its weight load once (setup); the others reload every
  batch. Residency is chosen by a DP over the fabric's pages (``n_macros * pages`` in all; when some layer streams,
  one page per macro stays free for it).
* ``pipeline``: consecutive layers form stages on disjoint macros and work on successive batches at once; the
  steady state delivers a batch every ``max(stage time)`` cycles. Stage sizes come from an exact DP that minimises
  the slowest stage (no stage starves the others); a stage's layers are resident when their pages fit its macros.

A plan's figure of merit is the steady-state cycles per batch; the latency of one batch and the one-off setup
(loading resident weights) are reported beside it. Baselines, on the sequential schedule: ``dp`` (every layer
replicated on all macros, splitting the batch and pixels) and ``mp`` (every layer's weights split across the
macros, by input and output channel as suits it best, no replication).

With the fabric compiler's cycle model (``fabric`` set on the cost function, :func:`.fabric_cost.cycle_model`)
the search keeps to what :func:`cimforge.compiler.compile.compile_graph` runs, so every plan compiles:

* splits the compiler raises ``CompileError`` for (a reduction beyond the K-split's pages, groups that are not
  whole words) are infeasible; a layer without any feasible split is a :class:`~.dataflow.PartitionError`;
* a weighted layer's pass walks the output positions of every image of the batch (the compiler's merged
  passes), and its replicas share them, so ``batch`` is bounded by the positions of the batch;
* the schedule is sequential (every pass uses macros ``0 .. b*k*n - 1``: no pipelining across macro groups);
* residency is all or nothing under a *per-macro* page budget (a page index is the same in every macro): either
  every layer's pages fit ``macro.pages`` together, or every layer streams and reloads its weights per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from cimforge.compiler.cost import LayerCost, Parallelism
from cimforge.golden.ir import LayerShape, ShapeGraph

from .dataflow import Dataflow, PartitionError, as_view, dataflow
from .fabric_cost import cycle_model, tiles

__all__ = ["LayerMapping", "InferencePlan", "plan_inference", "compare_inference", "parallelisms",
           "INFERENCE_STRATEGIES", "scale_to_fabric"]

INFERENCE_STRATEGIES = {
    "search": "per-layer parallelism and schedule (sequential or pipelined) of least cycles per batch",
    "dp": "all data parallel: every layer replicated on every macro",
    "mp": "all model parallel: every layer's weights split across the macros (best input/output split)",
}


def parallelisms(n_macros: int) -> list[Parallelism]:
    """Every ``Parallelism(b, k, n)`` with ``b * k * n <= n_macros``."""
    out = []
    for b in range(1, n_macros + 1):
        for k in range(1, n_macros // b + 1):
            for n in range(1, n_macros // (b * k) + 1):
                out.append(Parallelism(b, k, n))
    return out


@dataclass(frozen=True)
class LayerMapping:
    """One weighted layer's mapping: its parallelism, the macros it runs on (``first``, ``count``), whether its
    weights stay resident, its stage (pipeline) and its cost for one batch."""

    layer: LayerShape
    par: Parallelism
    cost: LayerCost
    resident: bool
    first_macro: int = 0
    n_macros: int = 0
    stage: int = 0

    @property
    def per_batch_cycles(self) -> int:
        """Cycles per batch in steady state (a resident layer does not reload its weights)."""
        return self.cost.cycles - (self.cost.weight_load_cycles if self.resident else 0)


@dataclass(frozen=True)
class InferencePlan:
    """A mapping of every weighted layer and the schedule's figures (cycles)."""

    network: Dataflow
    cfg: Any
    batch: int
    strategy: str
    schedule: str
    mappings: tuple[LayerMapping, ...]
    per_batch_cycles: int
    latency_cycles: int
    cycle_model: str
    n_macros: int = 0
    alternatives: dict = field(default_factory=dict, compare=False)

    @property
    def setup_cycles(self) -> int:
        """One-off weight load of the resident layers."""
        return sum(m.cost.weight_load_cycles for m in self.mappings if m.resident)

    @property
    def reload_cycles(self) -> int:
        """Weight (re)load cycles paid every batch by the layers that are not resident."""
        return sum(m.cost.weight_load_cycles for m in self.mappings if not m.resident)

    @property
    def reload_bits(self) -> int:
        """Weight bits written every batch by the layers that are not resident."""
        return self.reload_cycles * self.cfg.macro.cols

    @property
    def psum_bits(self) -> int:
        return sum(m.cost.psum_traffic_bits for m in self.mappings)

    @property
    def act_bits(self) -> int:
        return sum(m.cost.act_traffic_bits for m in self.mappings)

    def parallelism_by_layer(self) -> dict[str, Parallelism]:
        """``{layer name: Parallelism}``: what the fabric's compiler should run (the hook for RTL runs)."""
        return {m.layer.name: m.par for m in self.mappings}


CostFn = Callable[[LayerShape, Any, Parallelism, int], LayerCost]


class _Costs:
    """Memoised per-layer costs; ``None`` for a split the cost model rejects (it raised ``ValueError``, e.g. the
    compiler's ``CompileError``), with the reason kept in :attr:`errors`."""

    def __init__(self, layers: Sequence[LayerShape], cfg: Any, batch: int, fn: CostFn):
        self.layers, self.cfg, self.batch, self.fn = layers, cfg, batch, fn
        self.memo: dict[tuple[int, Parallelism], LayerCost | None] = {}
        self.errors: dict[int, str] = {}

    def __call__(self, l: int, par: Parallelism) -> LayerCost | None:
        key = (l, par)
        if key not in self.memo:
            try:
                self.memo[key] = self.fn(self.layers[l], self.cfg, par, self.batch)
            except ValueError as e:
                self.memo[key] = None
                self.errors.setdefault(l, f"{par}: {e}")
        return self.memo[key]

    def feasible(self, l: int, pars: Sequence[Parallelism]) -> list[Parallelism]:
        return [p for p in pars if self(l, p) is not None]


def _useful(layer: LayerShape, cfg: Any, batch: int, pars: Sequence[Parallelism], fn: CostFn) -> list[Parallelism]:
    """Drop splits finer than the layer has tiles or positions (they only idle macros); with the fabric's model,
    keep to the compiler's own splits (replicas share the batch's positions)."""
    if getattr(fn, "fabric", False):
        try:
            allowed = set(fn.splits(layer, cfg, batch))
        except ValueError:  # the layer cannot run at all; reported with its reason by the caller
            return []
        return [p for p in pars if p in allowed]
    kt, nt = tiles(layer, cfg)
    positions = batch * layer.gemm.M
    return [p for p in pars if p.in_ch <= kt and p.out_ch <= nt and p.batch <= positions]


def _sequential(costs: _Costs, options: list[list[Parallelism]], n_macros: int, pages: int, fabric: bool = False
                ) -> tuple[int, list[tuple[Parallelism, bool]]]:
    """Least total per-batch cycles with residency chosen under the page budget; returns (cycles, choices).

    Budgets: the whole fabric's ``n_macros * pages`` (a layer uses its pages on each of its macros), one page per
    macro kept free when some layer streams; with ``fabric``, the compiler's rule: all layers resident within
    ``pages`` per macro, or all streamed."""
    best: tuple[float, list] = (np.inf, [])
    if fabric:  # (cap, page usage of a split, resident allowed, streamed allowed)
        variants = ((pages, lambda c, p: c.pages, True, False), (0, None, False, True))
    else:
        variants = ((n_macros * pages, lambda c, p: c.pages * p.macros, True, False),
                    (n_macros * (pages - 1), lambda c, p: c.pages * p.macros, True, True))
    for cap, usage, allow_res, allow_stream in variants:
        if cap < 0:
            continue
        layer_opts = []
        for l, pars in enumerate(options):
            opts: list[tuple[int, int, Parallelism, bool]] = []
            for p in pars:
                c = costs(l, p)
                if allow_res and c.pages <= pages:
                    opts.append((usage(c, p), c.cycles - c.weight_load_cycles, p, True))
                if allow_stream:
                    opts.append((0, c.cycles, p, False))
            opts = [o for o in opts if o[0] <= cap]
            if not opts:
                break
            opts.sort(key=lambda o: (o[0], o[1]))
            pareto, low = [], np.inf
            for o in opts:
                if o[1] < low:
                    pareto.append(o)
                    low = o[1]
            layer_opts.append(pareto)
        else:
            total = np.zeros(cap + 1)
            picks = []
            for opts in layer_opts:
                new = np.full(cap + 1, np.inf)
                arg = np.zeros(cap + 1, dtype=int)
                for k, (pg, cyc, _, _) in enumerate(opts):
                    cand = np.full(cap + 1, np.inf)
                    cand[pg:] = total[:cap + 1 - pg] + cyc
                    better = cand < new
                    new[better], arg[better] = cand[better], k
                total = new
                picks.append(arg)
            if total[cap] < best[0]:
                c, chosen = cap, []
                for opts, arg in zip(reversed(layer_opts), reversed(picks)):
                    o = opts[arg[c]]
                    chosen.append((o[2], o[3]))
                    c -= o[0]
                best = (float(total[cap]), chosen[::-1])
    if not np.isfinite(best[0]):
        raise PartitionError(f"no sequential mapping fits the fabric's pages ({n_macros} macros x {pages} pages)")
    return int(best[0]), best[1]


def _pipeline(costs: _Costs, options: list[list[Parallelism]], n_macros: int, pages: int
              ) -> tuple[int, list[tuple[int, int, int]], list[tuple[Parallelism, bool]]]:
    """Contiguous stages on disjoint macros minimising the slowest stage.

    Returns (bottleneck cycles, stages as (first layer, end layer, macros), per-layer (par, resident))."""
    L, M = len(options), n_macros
    inf = np.inf
    t_res = np.full((L, M + 1), inf)
    t_str = np.full((L, M + 1), inf)
    pg_res = np.zeros((L, M + 1))
    arg_res = [[None] * (M + 1) for _ in range(L)]
    arg_str = [[None] * (M + 1) for _ in range(L)]
    for l, pars in enumerate(options):
        for p in pars:
            c = costs(l, p)
            m = p.macros
            if c.pages <= pages and c.cycles - c.weight_load_cycles < t_res[l, m]:
                t_res[l, m], pg_res[l, m], arg_res[l][m] = c.cycles - c.weight_load_cycles, c.pages, p
            if c.cycles < t_str[l, m]:
                t_str[l, m], arg_str[l][m] = c.cycles, p
        for m in range(1, M + 1):  # a stage of m macros may use fewer
            if t_res[l, m - 1] < t_res[l, m]:
                t_res[l, m], pg_res[l, m], arg_res[l][m] = t_res[l, m - 1], pg_res[l, m - 1], arg_res[l][m - 1]
            if t_str[l, m - 1] < t_str[l, m]:
                t_str[l, m], arg_str[l][m] = t_str[l, m - 1], arg_str[l][m - 1]
    # Prefix sums over layers (finite parts, and counts of impossible entries, kept apart so that an impossible
    # layer does not swamp the sums of the others).
    def prefix(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = np.isfinite(a)
        z = np.zeros((1, M + 1))
        return (np.vstack([z, np.cumsum(np.where(ok, a, 0.0), axis=0)]),
                np.vstack([z, np.cumsum(~ok, axis=0)]))

    cum_res, bad_res = prefix(t_res)
    cum_str, bad_str = prefix(t_str)
    cum_pg = np.vstack([np.zeros((1, M + 1)), np.cumsum(pg_res, axis=0)])
    ms = np.arange(M + 1)
    diff = ms[:, None] - ms[None, :]              # [m total, m' for the stage]
    valid = (diff >= 0) & (ms[None, :] >= 1)
    f = np.full((L + 1, M + 1), inf)
    f[0, :] = 0.0
    back: dict[tuple[int, int], tuple[int, int]] = {}
    for j in range(1, L + 1):
        for i in range(j):
            fits = ((cum_pg[j] - cum_pg[i]) <= pages) & (bad_res[j] == bad_res[i])
            stream = np.where(bad_str[j] == bad_str[i], cum_str[j] - cum_str[i], inf)
            stage = np.where(fits, cum_res[j] - cum_res[i], stream)   # [m']
            cand = np.maximum(f[i][np.clip(diff, 0, M)], stage[None, :])
            cand = np.where(valid, cand, inf)
            k = cand.argmin(axis=1)
            v = cand[ms, k]
            better = v < f[j]
            for m in np.nonzero(better)[0]:
                back[(j, int(m))] = (i, int(k[m]))
            f[j] = np.where(better, v, f[j])
    if not np.isfinite(f[L, M]):
        raise PartitionError(f"no pipeline of {L} layers fits {M} macros")
    stages, choices = [], [None] * L
    j, m = L, M
    while j > 0:
        i, mm = back[(j, m)]
        res_ok = (cum_pg[j, mm] - cum_pg[i, mm]) <= pages and all(arg_res[l][mm] is not None for l in range(i, j))
        for l in range(i, j):
            choices[l] = (arg_res[l][mm], True) if res_ok else (arg_str[l][mm], False)
        stages.append((i, j, mm))
        j, m = i, m - mm
    return int(f[L, M]), stages[::-1], choices


def plan_inference(net: Any, cfg: Any, batch: int = 1, strategy: str = "search",
                   layer_cost: CostFn | None = None, n_macros: int | None = None) -> InferencePlan:
    """Map ``net``'s weighted layers onto ``cfg``'s fabric.

    Parameters
    ----------
    net : cimforge.golden.ir.Graph, ShapeGraph or Dataflow
    cfg : cimforge.config.CimConfig
    batch : int
        Samples per batch.
    strategy : str
        ``search``, ``dp`` or ``mp`` (:data:`INFERENCE_STRATEGIES`).
    layer_cost : callable, optional
        ``f(layer, cfg, par, batch) -> LayerCost``; default :func:`.fabric_cost.cycle_model`.
    n_macros : int, optional
        Macros to use (default ``cfg.fabric.n_macros``).

    Raises
    ------
    PartitionError
        Unknown strategy, bad batch, or no mapping fits.
    """
    if strategy not in INFERENCE_STRATEGIES:
        raise PartitionError(f"inference strategy {strategy!r}: allowed {', '.join(INFERENCE_STRATEGIES)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PartitionError(f"batch = {batch!r}: expected a positive integer")
    fn, model_name = (layer_cost, getattr(layer_cost, "__name__", "custom")) if layer_cost else cycle_model()
    fabric = bool(getattr(fn, "fabric", False))
    M = n_macros or cfg.fabric.n_macros
    if fabric and M > cfg.fabric.n_macros:
        raise PartitionError(f"n_macros = {M}: the fabric has {cfg.fabric.n_macros} (fabric.n_macros)")
    P = cfg.macro.pages
    net = dataflow(net)
    layers = list(net.weighted)
    costs = _Costs(layers, cfg, batch, fn)
    every = parallelisms(M)
    options = []
    for i, l in enumerate(layers):
        pool = [p for p in every if p.batch == 1] if strategy == "mp" else every
        feasible = costs.feasible(i, _useful(l, cfg, batch, pool, fn))
        if not feasible:
            why = costs.errors.get(i) or _why_unmappable(l, cfg, fn)
            raise PartitionError(f"layer {l.name!r}: no {'model-parallel ' if strategy == 'mp' else ''}split of "
                                 f"{M} macros can run it on fabric {cfg.name!r} ({why})")
        if strategy == "dp":
            # every layer replicated as far as it goes; a layer too large for one macro's pages takes the smallest
            # model split that fits (the least it needs to run at all)
            feasible = [min(feasible, key=lambda p: (p.in_ch * p.out_ch, -p.batch, p.in_ch))]
        options.append(feasible)
    seq_cycles, seq_choice = _sequential(costs, options, M, P, fabric)
    plans = {"sequential": (seq_cycles, seq_cycles, [(p, r, 0, p.macros, 0) for p, r in seq_choice])}
    if strategy == "search" and not fabric:  # the fabric runs its layers one after the other
        pipe_cycles, stages, choice = _pipeline(costs, options, M, P)
        rows, first, latency = [], 0, 0
        for s, (i, j, mm) in enumerate(stages):
            stage_time = sum(costs(l, choice[l][0]).cycles - (costs(l, choice[l][0]).weight_load_cycles
                                                              if choice[l][1] else 0) for l in range(i, j))
            latency += stage_time
            rows += [(choice[l][0], choice[l][1], first, mm, s) for l in range(i, j)]
            first += mm
        plans["pipeline"] = (pipe_cycles, latency, rows)
    schedule = min(plans, key=lambda k: (plans[k][0], k != "sequential"))
    cycles, latency, rows = plans[schedule]
    mappings = tuple(LayerMapping(layers[l], p, costs(l, p), r, f0, mm, s) for l, (p, r, f0, mm, s) in enumerate(rows))
    return InferencePlan(net, cfg, batch, strategy, schedule, mappings, int(cycles), int(latency), model_name, M,
                         {k: v[0] for k, v in plans.items()})


def _why_unmappable(layer: LayerShape, cfg: Any, fn: CostFn) -> str:
    try:
        fn.splits(layer, cfg)
    except (AttributeError, ValueError) as e:
        return str(e) if isinstance(e, ValueError) else "no split the cost model accepts"
    return "no split the cost model accepts"


def compare_inference(net: Any, cfg: Any, batch: int = 1, layer_cost: CostFn | None = None,
                      n_macros: int | None = None) -> dict[str, InferencePlan]:
    """Plans for ``dp``, ``mp`` and ``search``."""
    return {s: plan_inference(net, cfg, batch, s, layer_cost, n_macros) for s in ("dp", "mp", "search")}


def scale_to_fabric(net: Any, cfg: Any, fill: float = 1.0, spatial_div: int = 1) -> ShapeGraph:
    """``net`` with its channels divided by the smallest power of two that makes its int8 weights fit ``fill``
    times the fabric's weight storage (``n_macros * pages * rows * cols`` bits)."""
    capacity = fill * cfg.fabric.n_macros * cfg.macro.bits
    div = 1
    while True:
        small = scaled(net, div, spatial_div)
        bits = sum(l.weight_count for l in small.weighted_layers) * min(8, cfg.macro.max_wb)
        if bits <= capacity or div > 1 << 16:
            return small
        div *= 2


def scaled(net: Any, channel_div: int = 1, spatial_div: int = 1, name: str | None = None) -> ShapeGraph:
    """The shape-only view of ``net`` with its weighted layers' channels divided by ``channel_div`` and their maps
    by ``spatial_div`` (ceilings, at least 1; the network's input channels and groups are kept when they would not
    divide), to fit a real topology to a small fabric. Layers without weights keep their shapes (the
    partitioner's costs are the weighted layers'); the scaled layers drop their IR ``source``."""
    if channel_div < 1 or spatial_div < 1:
        raise PartitionError(f"scaled: divisors must be >= 1, got {channel_div}, {spatial_div}")
    view = as_view(net)

    def ch(c: int) -> int:
        return max(1, -(-c // channel_div))

    def hw(p: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(1, -(-d // spatial_div)) for d in p)

    first = view.weighted_layers[0]
    layers = [_scaled_layer(l, l is first, ch, hw) if l.weighted else l for l in view.layers]
    return ShapeGraph(name or f"{view.name}/c{channel_div}s{spatial_div}", view.inputs, tuple(layers),
                      view.outputs, view.source)


def _scaled_layer(l: LayerShape, first: bool, ch: Callable, hw: Callable) -> LayerShape:
    in_ch, src = (l.in_channels if first else ch(l.in_channels)), l.source_shape
    if src is not None and src[1:] != (1, 1):  # a flattened map: its channels and its area scale
        c, fh, fw = src[0], *hw(src[1:])
        src = (ch(c), fh, fw)
        in_ch = src[0] * fh * fw
    elif src is not None:
        src = (in_ch, 1, 1)
    out_ch = ch(l.out_channels)
    # Depthwise stays depthwise; other grouped layers keep the largest group count that still divides.
    groups = min(in_ch, out_ch) if l.groups == l.in_channels == l.out_channels else l.groups
    while in_ch % groups or out_ch % groups:
        groups -= 1
    x, y = l.input_shape, l.output_shape
    if l.kind == "conv2d":
        shapes = ((in_ch, *hw(x[1:])),), (out_ch, *hw(y[1:]))
    else:
        shapes = ((*x[:-1], in_ch),), (*y[:-1], out_ch)
    return replace(l, input_shapes=shapes[0], output_shape=shapes[1], groups=groups, source_shape=src, source=None)
