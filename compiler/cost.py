"""The cycle model of the fabric: the compiler's predictions, checked against RTL-measured cycles.

It mirrors the RTL's timing rules rather than fitting them (docs/fabric.md, "Timing"), and takes every fixed
delay from the engines' own timing data (``TIMING`` of each engine in :data:`cimforge.gen.fabric.ENGINES`,
:data:`cimforge.gen.controller.CONTROLLER_TIMING`):

* controller: the first instruction of a run is fetched and decoded, an instruction after a one-cycle one is
  decoded, one after a longer one was prefetched; then it executes (``LOAD`` queues in one cycle when the
  loader has room, ``SYNC`` waits for the loader, compute instructions start their engine and wait for its
  ``done``);
* ``MAC``: a slot-level recurrence over the gather units (one word per cycle, a one-slot run-ahead that stalls
  when the previous vector is still waiting), the lockstep issue (one operation per ``ab`` cycles at most), the
  result latency and the serializer/requantisation tail; position rounds repeat, so long passes are
  extrapolated from their periodic steady state;
* ``POOL``/``EW``: one word or tap per cycle plus a fixed pipeline;
* loader: one row per cycle per command, commands back to back.

:func:`layer_cost` is the interface the partitioner uses (``Parallelism(batch, in_ch, out_ch)`` -> cycles,
compute, weight-load cycles and traffic; each layer kind's lowering computes it from the functions here);
:func:`program_timing` predicts the retire cycle of every instruction of a compiled program, which is what the
RTL's trace memory records, one rule per opcode (:data:`INSTR_CYCLES`). Which passes a layer has is planned in
:mod:`cimforge.compiler.planning`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..config import INT8_BITS, CimConfig
from ..gen.controller import CONTROLLER_TIMING
from ..gen.dma import dma_command_cycles
from ..gen.graph_engine import gbfs_cycles
from ..gen.graph_relax import grelax_cycles
from ..gen.graph_spmv import gspmv_cycles
from ..gen.isa import Opcode, decode_op, lanes
from ..gen.loader import LOAD_TIMING
from ..gen.lrn import LRN_TIMING, lrn_items
from ..gen.lut import LUT_TIMING, lut_items
from ..gen.mac_engine import MAC_TIMING
from ..gen.vector import EW_TIMING, POOL_TIMING
from ..golden.ir import Layer
from .planning import MacPlan, mac_plan, n_tiles
from .tiling import CompileError, ConvGeom, k_tiles, tile_steps

__all__ = ["Parallelism", "LayerCost", "layer_cost", "occupancy", "mac_pass_cycles", "valid_parallelisms",
           "choose_parallelism", "plan_cycles", "weight_load_cycles", "pool_cycles", "ew_cycles", "lrn_cycles", "lut_cycles", "lut_instr_cycles",
           "load_cycles",
           "program_timing", "mac_instr_cycles", "ideal_cycles", "INSTR_CYCLES", "Timeline"]

#: Extrapolate long passes from their periodic steady state (tests switch it off to compare).
_EXTRAPOLATE = True


@dataclass(frozen=True)
class Parallelism:
    """How a layer is split over a group of ``batch * in_ch * out_ch`` macros.

    Parameters
    ----------
    batch : int
        Replicas of the weights, each computing a share of the output positions (data parallel).
    in_ch : int
        K-split: each macro reduces a share of the reduction; partial sums are added across macros.
    out_ch : int
        N-split: each macro computes a share of the output channels.
    """

    batch: int = 1
    in_ch: int = 1
    out_ch: int = 1

    def __post_init__(self):
        for name in ("batch", "in_ch", "out_ch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64:
                raise ValueError(f"Parallelism.{name} = {v!r}: allowed an integer in 1..64")

    @property
    def macros(self) -> int:
        return self.batch * self.in_ch * self.out_ch


@dataclass
class LayerCost:
    """Predicted cost of one layer on the fabric.

    Attributes
    ----------
    cycles : int
        Compute instruction cycles plus the weight loads when they cannot overlap (``weight_load_cycles``
        counted serially; a resident or double-buffered program hides them, see :func:`program_timing`).
    compute_cycles : int
        The layer's compute instructions (fetch, decode and engine cycles).
    weight_load_cycles : int
        Loader cycles to fill the layer's pages once.
    psum_traffic_bits : int
        Partial sums moved between macros of a K-split (int32 per output channel per extra macro).
    act_traffic_bits : int
        Activation bits read by the gather units or vector engines plus the output bits written.
    pages : int
        Pages per participating macro.
    macros : int
    ideal_cycles : float
        docs/architecture.md section 6 ideal (MAC layers), for utilisation; MACs of the taps the fabric computes
        (taps pruned from every filter are no MACs, see :mod:`cimforge.compiler.tiling`).
    """

    cycles: int
    compute_cycles: int
    weight_load_cycles: int = 0
    psum_traffic_bits: int = 0
    act_traffic_bits: int = 0
    pages: int = 0
    macros: int = 0
    ideal_cycles: float = 0.0
    passes: list = field(default_factory=list)

    @property
    def utilisation(self) -> float:
        return self.ideal_cycles / self.cycles if self.cycles else 0.0


def occupancy(g: ConvGeom | Sequence[ConvGeom], cfg: CimConfig) -> float:
    """Share of the bit cells an operation of the layer can use at all (its utilisation bound): of the
    ``kt * rows`` rows of its reduction tiles and the ``nt * lanes`` columns of its output-channel tiles, each
    output column uses ``real_k`` rows (``K``, or a super-group's ``taps * Cin/groups``: its block-diagonal
    zeros are cells that compute nothing), so ``real_k * cout / (kt * rows * nt * lanes)``. Utilisation can
    never exceed it (a column sums every row of its page; an output takes whole columns).

    ``g`` may be the geometries of every group of a layer: the bound is then over all their operations
    (real MACs per position over the cells of every operation), which a smaller last super-group lowers a
    little. A depthwise ``k x k`` convolution's super-group of one word is bounded by
    ``k*k / (kt * rows)`` (docs/grouped-conv.md)."""
    geos = [g] if isinstance(g, ConvGeom) else list(g)
    used = sum(geo.real_k * geo.cout for geo in geos)
    cells = sum(len(k_tiles(geo, cfg)) * cfg.macro.rows * n_tiles(geo, cfg) * lanes(cfg) for geo in geos)
    return used / cells


def ideal_cycles(macs: int, cfg: CimConfig, ab: int = INT8_BITS, wb: int = INT8_BITS) -> float:
    """docs/architecture.md section 6: ``MACs * ab * wb / (rows * cols * n_macros)``."""
    m = cfg.macro
    return macs * ab * wb / (m.rows * m.cols * cfg.fabric.n_macros)


# -- MAC passes ------------------------------------------------------------------------------------------------


def _slot_units(par: Parallelism, npos: int, kt: int, p0: int, kr: int) -> list[tuple[int, int]]:
    """(bi, kk) gather groups active in a slot of reduction round ``kr`` at round start position ``p0``."""
    return [(bi, kk) for bi in range(par.batch) for kk in range(par.in_ch)
            if p0 + bi < npos and kr * par.in_ch + kk < kt]


def mac_pass_cycles(npos: int, steps: list[int], nt: int, par: Parallelism, ab: int = INT8_BITS,
                    epilogue: bool = False) -> int:
    """Cycles of one ``MAC`` pass from its EXEC cycle to its ``done`` cycle inclusive.

    Parameters
    ----------
    npos : int
        Output positions.
    steps : list of int
        Gather cycles of each reduction tile.
    nt : int
        Output-channel tiles of the pass.
    par : Parallelism
    ab : int
        Compute cycles per operation.
    epilogue : bool
        The pass runs the epilogue (``MAC.epi``): its write-back is ``MAC_TIMING.epilogue`` cycles longer.
    """
    kt = len(steps)
    b, ki, no = par.batch, par.in_ch, par.out_ch
    kr_n = -(-kt // ki)
    nr_n = -(-nt // no)
    rounds = -(-npos // b)
    groups = [(bi, kk) for bi in range(b) for kk in range(ki)]
    NEG = -10 ** 9
    xfer = {g: NEG for g in groups}      # last transfer into the ready register
    fin = {g: NEG for g in groups}       # cycle the last tile's final word reached stage B
    i_prev = {g: NEG for g in groups}    # issue cycle of the group's last slot
    go = MAC_TIMING.setup + b            # EXEC is cycle 0; then b position steps of set-up
    n_groups = b * no                    # serializer cycles per final slot: final issues are spaced by it
    last_final = NEG
    issue = NEG
    history: list[tuple] = []

    def run_round(p0: int, go: int, issue: int, last_final: int):
        for nr in range(nr_n):
            for kr in range(kr_n):
                act = _slot_units(par, npos, kt, p0, kr)
                last_steps = []
                for g in act:
                    first = max(go + 1, xfer[g])
                    ls = first + steps[kr * ki + g[1]] - 1
                    last_steps.append(ls)
                    fin[g] = ls + 1
                    xfer[g] = max(fin[g], i_prev[g])
                issue = max(issue + ab, max(xfer[g] + 1 for g in act))
                if kr == kr_n - 1:
                    issue = max(issue, last_final + n_groups)
                    last_final = issue
                for g in act:
                    i_prev[g] = issue
                c = max(go + 1, max(last_steps))
                moved = True
                while moved:
                    moved = False
                    for g in groups:
                        if fin[g] <= c < xfer[g]:
                            c = xfer[g]
                            moved = True
                go = c
        return go, issue, last_final

    r = 0
    while r < rounds:
        if _EXTRAPOLATE and 2 <= r < rounds - 1:
            state = tuple(v - go for d in (xfer, fin, i_prev) for v in d.values()) + (issue - go, last_final - go)
            history.append((state, go, issue))
            if len(history) >= 2 and history[-1][0] == history[-2][0]:
                period = history[-1][1] - history[-2][1]
                skip = rounds - 1 - r
                shift = period * skip
                go, issue, last_final = go + shift, issue + shift, last_final + shift
                for d in (xfer, fin, i_prev):
                    d.update({g: v + shift for g, v in d.items() if v > NEG // 2})
                r += skip
                continue
        go, issue, last_final = run_round(r * b, go, issue, last_final)
        r += 1
    return issue + ab + MAC_TIMING.result + _drain(par, npos, nt, epilogue)


def _drain(par: Parallelism, npos: int, nt: int, epilogue: bool = False) -> int:
    """Cycles from a pass's last results to its ``done``: the serializer walks all ``b * no`` groups of the last
    slot (position group outer, N part inner); the requantisation pipeline drains behind the last group that is
    written (through the epilogue when there is one)."""
    b, no = par.batch, par.out_ch
    p0, n0 = (-(-npos // b) - 1) * b, (-(-nt // no) - 1) * no
    last_valid = max(bi * no + nn for bi in range(b) for nn in range(no) if p0 + bi < npos and n0 + nn < nt)
    tail = MAC_TIMING.tail + (MAC_TIMING.epilogue if epilogue else 0)
    return max(b * no + MAC_TIMING.serializer_extra, tail + 1 + last_valid)


def valid_parallelisms(cfg: CimConfig, kt: int, nt: int, npos: int, ab: int = INT8_BITS) -> list[Parallelism]:
    """Every split the fabric can run with at most ``n_macros`` macros and no factor beyond what the layer has
    to split (the pages must still hold the K-split's share of the reduction, see :func:`layer_cost`)."""
    n = cfg.fabric.n_macros
    return [Parallelism(b, ki, no) for b in range(1, min(n, npos) + 1) for ki in range(1, min(n // b, kt) + 1)
            for no in range(1, min(n // (b * ki), nt) + 1)]


def choose_parallelism(g: ConvGeom, cfg: CimConfig, pages_avail: int | None = None, images: int = 1
                       ) -> Parallelism:
    """The split with the fewest predicted cycles for a pass over ``images`` images; ties go to fewer pages,
    then fewer macros."""
    kt, nt = len(k_tiles(g, cfg)), n_tiles(g, cfg)
    npos = g.npos * images
    best = None
    for par in valid_parallelisms(cfg, kt, nt, npos):
        try:
            plan = mac_plan(g, cfg, par, pages_avail)
        except CompileError:
            continue
        key = (plan_cycles(plan, npos), plan.first_pass_pages, par.macros)
        if best is None or key < best[0]:
            best = (key, par)
    if best is None:
        raise CompileError(f"layer {g.name!r}: no split fits the fabric ({cfg.fabric.n_macros} macros of "
                           f"{cfg.macro.pages} pages x {cfg.macro.rows} rows for a reduction of {g.K})")
    return best[1]


def plan_cycles(plan: MacPlan, npos: int, epilogue: bool = False) -> int:
    """Cycles of every ``MAC`` instruction of ``plan`` over ``npos`` positions (each prefetched, so nothing
    before its EXEC); ``epilogue``: the passes run a fused layer's epilogue (``MAC.epi``)."""
    return sum(mac_pass_cycles(npos, plan.steps, nt, plan.par, epilogue=epilogue) + CONTROLLER_TIMING.prefetched
               for _, nt in plan.passes)


def weight_load_cycles(plan: MacPlan, nt: int, groups: int = 1) -> int:
    """Cycles of loading ``nt`` output-channel tiles of ``plan`` once for each of ``groups`` groups: one
    ``LOAD`` per (K, N) tile, each decoded after the previous one-cycle ``LOAD``, commands back to back, and
    the last command's overhead."""
    per_load = CONTROLLER_TIMING.short + 1  # a LOAD with room in the queue retires in its EXEC cycle
    per_group = sum(load_cycles(t.elems) for t in plan.tiles) * nt + len(plan.tiles) * nt * per_load
    return groups * per_group + LOAD_TIMING.overhead


# -- vector engines ----------------------------------------------------------------------------------------------

def pool_cycles(taps: int) -> int:
    """``POOL`` engine cycles (EXEC to done inclusive) for ``taps`` window taps in all."""
    return taps * POOL_TIMING.per_item + POOL_TIMING.extra


def lrn_cycles(npos: int, channels: int, size: int) -> int:
    """``LRN`` engine cycles (EXEC to done inclusive): one per channel and trailing window step of every pixel
    (:func:`cimforge.gen.lrn.lrn_items`)."""
    return lrn_items(npos, channels, size) * LRN_TIMING.per_item + LRN_TIMING.extra


def lut_cycles(cfg: CimConfig, words: int, tables: int = 1) -> int:
    """``LUT`` engine cycles (EXEC to done inclusive): each table's parameter words, then one per activation word
    (:func:`cimforge.gen.lut.lut_items`)."""
    return lut_items(cfg, words, tables) * LUT_TIMING.per_item + LUT_TIMING.extra


def lut_instr_cycles(cfg: CimConfig, args: dict) -> int:
    """:func:`lut_cycles` of one ``LUT`` instruction's arguments (``per_channel``: a table and one word per pixel
    for each channel)."""
    if args.get("per_channel"):
        return lut_cycles(cfg, args["npos"] * args["channels"], args["channels"])
    return lut_cycles(cfg, args["npos"] * args["cw"])


def ew_cycles(words: int) -> int:
    """``EW`` engine cycles (EXEC to done inclusive) for ``words`` words."""
    return words * EW_TIMING.per_item + EW_TIMING.extra


def load_cycles(count: int) -> int:
    """Loader cycles of one command of ``count`` rows (back to back with the next)."""
    return count + LOAD_TIMING.per_command


# -- the partitioner's interface ---------------------------------------------------------------------------------


def layer_cost(layer: Layer, cfg: CimConfig, par: Parallelism | None = None,
               source_shape: tuple[int, ...] | None = None, images: int = 1) -> LayerCost:
    """Predicted cost of ``layer`` run alone on ``cfg`` with split ``par`` (None: the compiler's choice), for
    ``images`` images the way :func:`~cimforge.compiler.compile.compile_graph` runs them: a weighted layer's
    passes walk every image's positions (its weights load once), a layer without weights runs once per image.

    Weighted layers need their reduction to fit the pages of the K-split (else :class:`CompileError`);
    their output channels are split into several passes when the pages do not hold them all.
    Layers without weights ignore ``par``. The layer kind's lowering (:data:`cimforge.compiler.lowering.LOWERINGS`)
    computes it.

    Raises
    ------
    CompileError
        A layer kind without a lowering, or a split that does not fit.
    """
    from .lowering import lowering_for  # the lowerings cost themselves with this module's functions
    return lowering_for(layer).cost(layer, cfg, par, source_shape, images)


# -- whole programs ---------------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """What :func:`program_timing` tracks between instructions: the loader's command queue and the program.

    Attributes
    ----------
    program : Program
    queue : list of (int, int)
        Per queued or finished command: the cycle the loader pops it and the first cycle it is idle after it.
    loader_free : int
        The cycle the loader can pop its next command.
    load_idle : int
        The latest first-idle cycle of the commands in ``queue`` (what a ``SYNC`` waits for).
    """

    program: object
    queue: list = field(default_factory=list)
    loader_free: int = 0
    load_idle: int = 0
    dma_queue: list = field(default_factory=list)  # the same for the DMA engine (docs/memory.md)
    dma_free: int = 0
    dma_idle: int = 0


def _queue_room(queue: list, e: int, depth: int) -> int:
    """The first cycle from ``e`` on at which a command queue of ``depth`` entries has room (entries of
    ``queue`` are (pop, idle) cycles): an entry holds its slot up to its pop cycle (the FIFO's level drops the
    cycle after)."""
    # one engine pops the commands in order, so the pop cycles rise along ``queue`` and the entries still
    # queued at ``e`` are a suffix: a bisection, not a scan of the whole history (quadratic on 89 K instructions)
    while True:
        first = bisect.bisect_left(queue, e, key=lambda p: p[0])
        if len(queue) - first < depth:
            return e
        e = queue[first][0] + 1


def _load_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    """A ``LOAD`` queues in its EXEC cycle once the queue has room; the loader pops it when free."""
    e = _queue_room(tl.queue, e, tl.program.cfg.controller.load_queue)
    pop = max(e + 1, tl.loader_free)
    cnt = args["count"]
    tl.loader_free = pop + load_cycles(cnt)
    # idle after the last row's write; an empty command only pops
    tl.queue.append((pop, pop + (cnt + LOAD_TIMING.overhead if cnt else LOAD_TIMING.per_command)))
    tl.load_idle = max(tl.load_idle, tl.queue[-1][1])
    return e


def _sync_retire(tl: Timeline, e: int, args, pc: int) -> int:
    """``SYNC`` retires when the loader is idle."""
    return max(tl.load_idle, e)


def _dma_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    """A ``DMA`` queues like a ``LOAD``; the engine pops it when free and runs it for
    :func:`cimforge.gen.dma.dma_command_cycles` (bursts, external latency and bandwidth)."""
    cfg = tl.program.cfg
    e = _queue_room(tl.dma_queue, e, cfg.controller.load_queue)
    pop = max(e + 1, tl.dma_free)
    tl.dma_free = pop + dma_command_cycles(cfg, args)
    tl.dma_queue.append((pop, tl.dma_free))
    tl.dma_idle = max(tl.dma_idle, tl.dma_free)
    return e


def _dsync_retire(tl: Timeline, e: int, args, pc: int) -> int:
    """``DSYNC`` retires when the DMA engine is idle."""
    return max(tl.dma_idle, e)


def _mac_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    return e + mac_instr_cycles(tl.program, pc, args) - 1


def _pool_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    return e + pool_cycles(args["oh"] * args["ow"] * args["cw"] * args["kh"] * args["kw"]) - 1


def _ew_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    return e + ew_cycles(args["npos"] * args["cw"]) - 1


def _lrn_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    return e + lrn_cycles(args["npos"], args["channels"], args["size"]) - 1


def _lut_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    return e + lut_instr_cycles(tl.program.cfg, args) - 1


def _gbfs_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    """``GBFS``: one cycle per selected row plus the engine's fixed cycles
    (:func:`cimforge.gen.graph_engine.gbfs_cycles`)."""
    return e + gbfs_cycles(args["rows"]) - 1


def _grelax_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    """``GRELAX``: one cycle per arc plus the engine's pipeline (:func:`cimforge.gen.graph_relax.grelax_cycles`)."""
    return e + grelax_cycles(args["count"]) - 1


def _gspmv_retire(tl: Timeline, e: int, args: dict, pc: int) -> int:
    """``GSPMV``: a constant of the configuration, its slices and ``flush``
    (:func:`cimforge.gen.graph_spmv.gspmv_cycles`)."""
    return e + gspmv_cycles(tl.program.cfg, args["slices_m1"] + 1, bool(args["flush"])) - 1


def _end_retire(tl: Timeline, e: int, args, pc: int) -> int:
    return e


#: Opcode -> ``f(timeline, exec_cycle, args, pc) -> retire cycle``, one entry per instruction of
#: :data:`cimforge.gen.isa.INSTRUCTIONS` (tests/test_registry.py checks it).
INSTR_CYCLES: dict[Opcode, Callable[[Timeline, int, dict | None, int], int]] = {
    Opcode.END: _end_retire,
    Opcode.LOAD: _load_retire,
    Opcode.SYNC: _sync_retire,
    Opcode.MAC: _mac_retire,
    Opcode.POOL: _pool_retire,
    Opcode.EW: _ew_retire,
    Opcode.DMA: _dma_retire,
    Opcode.DSYNC: _dsync_retire,
    Opcode.GBFS: _gbfs_retire,
    Opcode.GRELAX: _grelax_retire,
    Opcode.GSPMV: _gspmv_retire,
    Opcode.LRN: _lrn_retire,
    Opcode.LUT: _lut_retire,
}


def program_timing(program) -> list[int]:
    """Predicted retire cycle of each instruction of ``program`` as the trace memory stamps it (cycles since
    start; the first fetch is cycle 0), up to and including ``END``."""
    by_value = {op.value: fn for op, fn in INSTR_CYCLES.items()}
    tl = Timeline(program)
    t = 0                     # first cycle of the next instruction (its fetch)
    stamps = []
    overhead = CONTROLLER_TIMING.start
    for pc, word in enumerate(program.code):
        value, args = decode_op(program.cfg, word)
        e = t + overhead  # EXEC cycle
        retire = by_value.get(value)
        done = retire(tl, e, args, pc) if retire else e
        stamps.append(done)
        if retire is None or value == Opcode.END.value:  # an unknown opcode stops the controller too
            break
        t = done + 1
        overhead = CONTROLLER_TIMING.prefetched if done > e else CONTROLLER_TIMING.short
    return stamps


def mac_instr_cycles(program, pc: int, args: dict | None = None) -> int:
    """Cycles of the ``MAC`` instruction at ``pc`` of ``program`` (EXEC to done inclusive), from the pass it
    runs."""
    mp = program.pass_at[pc]
    steps = [tile_steps(t, mp.geom, lanes(program.cfg)) for t in mp.tiles]
    args = args if args is not None else decode_op(program.cfg, program.code[pc])[1]
    # ab cycles per operation (the layer's precision), and the epilogue's longer write-back
    return mac_pass_cycles(mp.npos, steps, mp.nt, mp.par, args["ab_m1"] + 1, bool(args["epi"]))

