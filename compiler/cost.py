"""The cycle model of the fabric: the compiler's predictions, checked against RTL-measured cycles.

It mirrors the RTL's timing rules rather than fitting them (docs/fabric.md, "Timing"):

* controller: every instruction costs a fetch and a decode cycle, then executes (``LOAD`` queues in one cycle
  when the loader has room, ``SYNC`` waits for the loader, compute instructions start their engine and wait
  for its ``done``);
* ``MAC``: a slot-level recurrence over the gather units (one word per cycle, a one-slot run-ahead that stalls
  when the previous vector is still waiting), the lockstep issue (one operation per ``ab`` cycles at most), the
  result latency and the serializer/requantisation tail; position rounds repeat, so long passes are
  extrapolated from their periodic steady state;
* ``POOL``/``EW``: one word or tap per cycle plus a fixed pipeline;
* loader: one row per cycle per command, commands back to back.

:func:`layer_cost` is the interface the partitioner uses (``Parallelism(batch, in_ch, out_ch)`` -> cycles,
compute, weight-load cycles and traffic); :func:`program_timing` predicts the retire cycle of every
instruction of a compiled program, which is what the RTL's trace memory records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import CimConfig
from ..gen.isa import lanes
from ..gen.loader import LOAD_OVERHEAD
from ..gen.vector import EW_LATENCY, POOL_LATENCY
from ..golden.ir import (Add, AvgPool, Clamp, Concat, Conv2d, Dense, GlobalAvgPool, Layer, MaxPool, Reshape)
from ..golden.macro import LATENCY
from .tiling import CompileError, ConvGeom, geometry, group_geometries, k_tiles, rowpack_ok, tile_steps

__all__ = ["Parallelism", "LayerCost", "layer_cost", "occupancy", "mac_pass_cycles", "valid_parallelisms", "choose_parallelism",
           "pool_cycles", "ew_cycles", "program_timing", "ideal_cycles", "INSTR_OVERHEAD",
           "SHORT_OVERHEAD", "START_OVERHEAD"]

#: Cycles before an instruction executes, after an instruction that took more than one cycle (MAC, POOL, EW, a
#: waiting LOAD or SYNC): none, the controller prefetched it.
INSTR_OVERHEAD = 0
#: ... after a one-cycle instruction (a LOAD with room in the queue, a SYNC with nothing to wait for): decode.
SHORT_OVERHEAD = 1
#: ... for the first instruction of a run: fetch and decode.
START_OVERHEAD = 2
#: Cycles from a ``MAC`` pass's last results to its ``done`` when its last output group is the first one
#: serialized (serializer, requantisation pipeline, write, done).
MAC_TAIL = 7
#: Activation bits of int8 codes (one macro compute cycle per bit).
ACT_BITS = 8
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
        ARCHITECTURE.md section 6 ideal (MAC layers), for utilisation; MACs of the taps the fabric computes
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


def occupancy(g: ConvGeom, cfg: CimConfig) -> float:
    """Share of the bit cells an operation of the layer can use at all: its reduction tiles fill
    ``K / (kt * rows)`` of the rows and its output-channel tiles ``cout / (nt * lanes)`` of the columns.
    Utilisation can never exceed it (a column sums every row of its page; an output takes whole columns)."""
    kt, nt = len(k_tiles(g, cfg)), -(-g.cout // lanes(cfg))
    return g.K / (kt * cfg.macro.rows) * g.cout / (nt * lanes(cfg))


def ideal_cycles(macs: int, cfg: CimConfig, ab: int = ACT_BITS, wb: int = 8) -> float:
    """ARCHITECTURE.md section 6: ``MACs * ab * wb / (rows * cols * n_macros)``."""
    m = cfg.macro
    return macs * ab * wb / (m.rows * m.cols * cfg.fabric.n_macros)


# -- MAC passes ------------------------------------------------------------------------------------------------


def _slot_units(par: Parallelism, npos: int, kt: int, p0: int, kr: int) -> list[tuple[int, int]]:
    """(bi, kk) gather groups active in a slot of reduction round ``kr`` at round start position ``p0``."""
    return [(bi, kk) for bi in range(par.batch) for kk in range(par.in_ch)
            if p0 + bi < npos and kr * par.in_ch + kk < kt]


def mac_pass_cycles(npos: int, steps: list[int], nt: int, par: Parallelism, ab: int = ACT_BITS) -> int:
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
    go = 1 + b                           # EXEC is cycle 0; setup takes b cycles
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
                go += shift
                issue += shift
                last_final += shift
                for d in (xfer, fin, i_prev):
                    for g in d:
                        if d[g] > NEG // 2:
                            d[g] += shift
                r += skip
                continue
        go, issue, last_final = run_round(r * b, go, issue, last_final)
        r += 1
    # the serializer walks all b * no groups of the last slot (position group outer, N part inner); the
    # requantisation pipeline drains behind the last group that is written
    p0, n0 = (rounds - 1) * b, (nr_n - 1) * no
    last_valid = max(bi * no + nn for bi in range(b) for nn in range(no) if p0 + bi < npos and n0 + nn < nt)
    results = issue + ab + LATENCY + 1
    return results + max(n_groups + 2, MAC_TAIL + 1 + last_valid)


def valid_parallelisms(cfg: CimConfig, kt: int, nt: int, npos: int, ab: int = ACT_BITS) -> list[Parallelism]:
    """Every split the fabric can run with at most ``n_macros`` macros and no factor beyond what the layer has
    to split (the pages must still hold the K-split's share of the reduction, see :func:`layer_cost`)."""
    n = cfg.fabric.n_macros
    return [Parallelism(b, ki, no) for b in range(1, min(n, npos) + 1) for ki in range(1, min(n // b, kt) + 1)
            for no in range(1, min(n // (b * ki), nt) + 1)]


def _mac_plan(g: ConvGeom, cfg: CimConfig, par: Parallelism, pages_avail: int | None = None):
    """Reduction tiles, their gather steps and the N-split into passes for ``par``.

    Returns (tiles, steps, passes) with passes a list of (n_base, nt).

    Raises
    ------
    CompileError
        The reduction does not fit the pages of the K-split (no partial-sum spill), or the split is invalid.
    """
    L = lanes(cfg)
    tiles = k_tiles(g, cfg)
    steps = [tile_steps(t, g, L) for t in tiles]
    kt, nt = len(tiles), -(-g.cout // L)
    pages = cfg.macro.pages if pages_avail is None else pages_avail
    kr = -(-kt // par.in_ch)
    if kr > pages:
        need = 1 << (-(-kt // pages) - 1).bit_length()
        raise CompileError(f"layer {g.name!r}: reduction of {g.K} elements needs {kt} tiles of <= {cfg.macro.rows} "
                           f"rows, {kr} pages per macro with in_ch = {par.in_ch}; macro.pages = {pages}: allowed "
                           f"in_ch >= {need} (partial sums are not spilled to memory)")
    if par.macros > cfg.fabric.n_macros:
        raise CompileError(f"layer {g.name!r}: {par} uses {par.macros} macros, fabric.n_macros = {cfg.fabric.n_macros}")
    if par.batch * par.out_ch > 255:
        raise CompileError(f"layer {g.name!r}: {par}: batch * out_ch = {par.batch * par.out_ch} output groups per "
                           f"operation: allowed <= 255")
    nr_total = -(-nt // par.out_ch)
    nr_per = max(1, pages // kr)
    passes = []
    for nr0 in range(0, nr_total, nr_per):
        n_base = nr0 * par.out_ch
        passes.append((n_base, min(nt, (nr0 + nr_per) * par.out_ch) - n_base))
    return tiles, steps, passes


def choose_parallelism(g: ConvGeom, cfg: CimConfig, pages_avail: int | None = None, images: int = 1
                       ) -> Parallelism:
    """The split with the fewest predicted cycles for a pass over ``images`` images; ties go to fewer pages,
    then fewer macros."""
    L = lanes(cfg)
    tiles = k_tiles(g, cfg)
    kt, nt = len(tiles), -(-g.cout // L)
    npos = g.npos * images
    best = None
    for par in valid_parallelisms(cfg, kt, nt, npos):
        try:
            _, steps, passes = _mac_plan(g, cfg, par, pages_avail)
        except CompileError:
            continue
        cyc = sum(mac_pass_cycles(npos, steps, n, par) + INSTR_OVERHEAD for _, n in passes)
        pages = -(-kt // par.in_ch) * -(-min(nt, passes[0][1]) // par.out_ch)
        key = (cyc, pages, par.macros)
        if best is None or key < best[0]:
            best = (key, par)
    if best is None:
        raise CompileError(f"layer {g.name!r}: no split fits the fabric ({cfg.fabric.n_macros} macros of "
                           f"{cfg.macro.pages} pages x {cfg.macro.rows} rows for a reduction of {g.K})")
    return best[1]


# -- vector engines ----------------------------------------------------------------------------------------------

#: Cycles of a POOL/EW instruction beyond one per tap / word, from EXEC to done inclusive.
POOL_EXTRA = POOL_LATENCY + 2
EW_EXTRA = EW_LATENCY + 2


def pool_cycles(taps: int) -> int:
    """``POOL`` engine cycles (EXEC to done inclusive) for ``taps`` window taps in all."""
    return taps + POOL_EXTRA


def ew_cycles(words: int) -> int:
    """``EW`` engine cycles (EXEC to done inclusive) for ``words`` words."""
    return words + EW_EXTRA


def load_cycles(count: int) -> int:
    """Loader cycles of one command of ``count`` rows (back to back with the next)."""
    return count + 1


# -- the partitioner's interface ---------------------------------------------------------------------------------


def layer_cost(layer: Layer, cfg: CimConfig, par: Parallelism | None = None,
               source_shape: tuple[int, ...] | None = None, images: int = 1) -> LayerCost:
    """Predicted cost of ``layer`` run alone on ``cfg`` with split ``par`` (None: the compiler's choice), for
    ``images`` images the way :func:`~cimforge.compiler.compile.compile_graph` runs them: a weighted layer's
    passes walk every image's positions (its weights load once), a layer without weights runs once per image.

    Weighted layers need their reduction to fit the pages of the K-split (else :class:`CompileError`);
    their output channels are split into several passes when the pages do not hold them all.
    Layers without weights ignore ``par``.
    """
    if images != 1 and not isinstance(layer, (Conv2d, Dense)):
        one = layer_cost(layer, cfg, par, source_shape)
        return LayerCost(cycles=one.cycles * images, compute_cycles=one.compute_cycles * images,
                         act_traffic_bits=one.act_traffic_bits * images)
    L = lanes(cfg)
    if isinstance(layer, (Conv2d, Dense)):
        if isinstance(layer, Conv2d):
            # groups of whole words only; a one-channel narrow input is taken to be a (row-packed) graph input
            rp = rowpack_ok(layer, L, cfg.macro.rows)
            groups = [geo for geo, _, _ in group_geometries(layer, L, rowpack=rp)]
        else:
            groups = [geometry(layer, source_shape)]
        g = groups[0]
        par = par or choose_parallelism(g, cfg, images=images)
        tiles, steps, passes = _mac_plan(g, cfg, par)
        n_groups = len(groups)
        npos = g.npos * images
        compute = n_groups * sum(mac_pass_cycles(npos, steps, n, par) + INSTR_OVERHEAD for _, n in passes)
        nt = -(-g.cout // L)
        wl = n_groups * (sum(load_cycles(t.elems) for t in tiles) * nt + len(tiles) * nt * (SHORT_OVERHEAD + 1)) \
            + LOAD_OVERHEAD
        nr_total = -(-nt // par.out_ch)
        act_bits = n_groups * (npos * nr_total * g.K * 8 + npos * g.cout * 8)
        psum = n_groups * npos * nt * L * 32 * (par.in_ch - 1)
        kr = -(-len(tiles) // par.in_ch)
        return LayerCost(cycles=compute + wl, compute_cycles=compute, weight_load_cycles=wl,
                         psum_traffic_bits=psum, act_traffic_bits=act_bits,
                         pages=kr * -(-min(nt, passes[0][1]) // par.out_ch), macros=par.macros,
                         ideal_cycles=ideal_cycles(sum(geo.macs for geo in groups), cfg), passes=passes)
    if isinstance(layer, (MaxPool, AvgPool, GlobalAvgPool)):
        c, h, w = layer.input.shape
        _, oh, ow = layer.output.shape
        kh, kw = (h, w) if isinstance(layer, GlobalAvgPool) else layer.kernel
        cw = -(-c // L)
        taps = oh * ow * cw * kh * kw
        cyc = pool_cycles(taps) + INSTR_OVERHEAD
        return LayerCost(cycles=cyc, compute_cycles=cyc, act_traffic_bits=taps * 8 * L + oh * ow * cw * 8 * L)
    if isinstance(layer, (Add, Clamp, Concat)):
        words = 0
        for t in (layer.inputs if isinstance(layer, Concat) else layer.inputs[:1]):
            c = t.shape[0]
            pix = 1 if len(t.shape) == 1 else t.shape[1] * t.shape[2]
            words += pix * -(-c // L)
        n_instr = len(layer.inputs) if isinstance(layer, Concat) else 1
        cyc = ew_cycles(words) + n_instr * INSTR_OVERHEAD + (n_instr - 1) * EW_EXTRA
        return LayerCost(cycles=cyc, compute_cycles=cyc,
                         act_traffic_bits=words * 8 * L * (2 if isinstance(layer, Add) else 1) + words * 8 * L)
    if isinstance(layer, Reshape):
        return LayerCost(cycles=0, compute_cycles=0)
    raise CompileError(f"layer {layer.name!r}: kind {layer.kind} is not supported by the fabric")


# -- whole programs ---------------------------------------------------------------------------------------------


def program_timing(program) -> list[int]:
    """Predicted retire cycle of each instruction of ``program`` as the trace memory stamps it (cycles since
    start; the first fetch is cycle 0), up to and including ``END``."""
    from ..gen.isa import Opcode, decode_op
    cfg = program.cfg
    t = 0                     # first cycle of the next instruction (its fetch)
    queue: list[int] = []     # loader: end cycles (first idle cycle) of queued/running commands
    loader_free = 0           # cycle the loader can pop the next command
    depth = cfg.controller.load_queue
    stamps = []
    overhead = START_OVERHEAD
    for pc, word in enumerate(program.code):
        op, args = decode_op(cfg, word)
        e = t + overhead  # EXEC cycle
        first_exec = e
        if op == Opcode.LOAD.value:
            # the queue holds commands not yet popped; wait for room
            pending = [p for p in queue if p[0] > e]
            while len(pending) >= depth:
                e = min(p[0] for p in pending)
                pending = [p for p in queue if p[0] > e]
            pop = max(e + 1, loader_free)
            cnt = args["count"]
            loader_free = pop + cnt + 1 if cnt else pop + 1
            queue.append((pop, pop + cnt + LOAD_OVERHEAD if cnt else pop + 1))
            done = e
        elif op == Opcode.SYNC.value:
            idle = max([q[1] for q in queue] + [e])
            done = idle
        elif op == Opcode.MAC.value:
            done = e + _mac_instr_cycles(program, pc, args) - 1
        elif op == Opcode.POOL.value:
            a = args
            done = e + pool_cycles(a["oh"] * a["ow"] * a["cw"] * a["kh"] * a["kw"]) - 1
        elif op == Opcode.EW.value:
            done = e + ew_cycles(args["npos"] * args["cw"]) - 1
        else:  # END (or an unknown opcode, which stops the controller too)
            stamps.append(e)
            break
        stamps.append(done)
        t = done + 1
        overhead = INSTR_OVERHEAD if done > first_exec else SHORT_OVERHEAD
    return stamps


def _mac_instr_cycles(program, pc: int, args: dict) -> int:
    from .tiling import tile_steps
    mp = program.pass_at[pc]
    steps = [tile_steps(t, mp.geom, lanes(program.cfg)) for t in mp.tiles]
    return mac_pass_cycles(mp.npos, steps, mp.nt, mp.par)
