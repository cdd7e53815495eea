"""Graph algorithms on the generated fabric's RTL in a closed loop: the host of :func:`host_loop` decides each
round from the fabric's own results, and the final result is the fabric's.

**The loop** (:func:`host_loop`, the same code on the RTL and on the ISS): before round ``k`` the host holds
the state the fabric computed in round ``k - 1``, read back from the simulated activation memory (round 0:
the algorithm's start). It chooses the round's blocks from that state
(:func:`cimforge.graph.compile.round_items`: the active source segments, BFS's unvisited rows, PageRank's
slices per segment), builds the round's program (:func:`~cimforge.graph.compile._program`, one or more runs
that each end with ``END``), writes each run's program, the page rows its ``LOAD`` s copy (weight memory), the
arc words it relaxes and the round's vectors, starts it and waits for ``done``; after the round's last run it
reads the result words and does the round's host work:

* BFS: ``next = reached AND NOT visited``, ``visited |= next``, the levels; stop when ``next`` is empty.
* SSSP / CC: the values read are the next round's ``old`` and ``new``; the changed vertices are the next
  round's active ones; stop when nothing changed.
* PageRank: from the sums ``y`` read, ``r' = (D * (y + dangling // n)) >> 16 + teleport``, the L1 step and
  the stopping test, then the next contributions ``round(r' / outdeg)`` and their slice words.

The host work runs while the simulator is stopped and is not in the cycles (docs/graph.md section 5 says what
it costs). Nothing of the golden model enters the loop: the result is compared with it afterwards, round by
round (:func:`run_on_fabric`).

**Cycles.** Each run's ``CYCLES`` and every retired instruction's trace stamp are compared with
:func:`cimforge.compiler.cost.program_timing` of the same words, and their sum with the compiler's own
prediction (:attr:`cimforge.graph.compile.GraphRun.cycles`), which it builds from the golden model's rounds.

On the RTL the loop runs inside the cocotb test :mod:`cimforge.graph.fabric_tb`, one simulator launch for the
whole algorithm, on the fabric inside :class:`cimforge.gen.extmem.CimSystem` (as
:func:`~cimforge.sim.fabric_runner.system_verilog` builds it; memories by backdoor, runs started over the
Wishbone port).
"""

from __future__ import annotations

import asyncio
import pickle
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..gen.isa import Opcode, encode, instr_fields, lanes, pack_lanes_array
from ..gen.graph_relax import relax_arc_layout, relax_value_bits
from ..gen.graph_spmv import SPMV_SLICES, slice_words
from . import golden
from .compile import (RELAX, GraphPlan, GraphRun, _block_arcs, _program, _prologue, relax_layout, round_items,
                      segment_slices, spmv_layout, split_runs)

__all__ = ["GraphProgram", "host_loop", "run_on_fabric", "arc_words", "words_of_bits", "bits_of_words"]


def words_of_bits(bits: np.ndarray, width: int) -> list[int]:
    """Integer words of ``width`` bits from a flat bit vector (bit ``i`` of word ``j`` = element
    ``j * width + i``), the last word zero-padded."""
    n = -(-len(bits) // width)
    pad = np.zeros(n * width, dtype=np.uint8)
    pad[:len(bits)] = bits
    packed = np.packbits(pad.reshape(n, width), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def bits_of_words(words: list[int], width: int) -> np.ndarray:
    """The inverse of :func:`words_of_bits`: ``len(words) * width`` bits."""
    nbytes = -(-width // 8)
    raw = np.frombuffer(b"".join(int(w).to_bytes(nbytes, "little") for w in words), dtype=np.uint8)
    return np.unpackbits(raw.reshape(len(words), nbytes), axis=1, bitorder="little")[:, :width].ravel()


@dataclass
class GraphProgram:
    """One run on the fabric, in the form :func:`cimforge.sim.fabric_runner.run_programs` takes a program.

    Attributes
    ----------
    cfg : CimConfig
    code : list of int
        Instruction words, ``END`` last.
    wmem : list of int
        Weight-memory image from word 0 (the page images its ``LOAD``s copy).
    text : list
        Each instruction (its mnemonic and arguments), for messages.
    writes : dict
        Activation words ``{address: word}`` the host writes before the run.
    reads : list of (int, int)
        Activation ranges ``(base, count)`` read back after it.
    round : int
        The round it belongs to (-1: the prologue).
    """

    cfg: object
    code: list
    wmem: list
    text: list
    writes: dict = field(default_factory=dict)
    reads: list = field(default_factory=list)
    round: int = -1
    pmem: list = field(default_factory=list)
    dmem: list = field(default_factory=list)

    @property
    def tensors(self) -> dict:
        return {(0, f"read{i}"): SimpleNamespace(base=b, words=c) for i, (b, c) in enumerate(self.reads)}

    def input_words(self, batch) -> dict:
        return dict(self.writes)

    def describe(self, pc: int) -> str:
        where = "prologue" if self.round < 0 else f"round {self.round}"
        return f"pc {pc} of a {where} run: {_text(self.text[pc])}" if 0 <= pc < len(self.text) else \
            f"pc {pc}: outside the run's program"


def _encode(cfg, kind: str, args: dict | None) -> int:
    """An instruction word from its mnemonic and arguments; fields not in the instruction's layout (such as
    ``block``, which the host uses to find a LOAD's rows) are left out."""
    op = Opcode[kind]
    if not args:
        return encode(cfg, op)
    fields = instr_fields(cfg, op)
    return encode(cfg, op, **{k: v for k, v in args.items() if k in fields})


def _text(item) -> str:
    kind, args = item if isinstance(item, tuple) else (item, None)
    return kind if args is None else f"{kind} " + ", ".join(f"{k}={v}" for k, v in args.items())


def _page_words(plan: GraphPlan, k: int) -> list[int]:
    """Block ``k``'s page image as ``rows`` words of ``cols`` bits, computed once per plan."""
    cache = plan.__dict__.setdefault("_page_words", {})
    if k not in cache:
        rows, cols = plan.cfg.macro.rows, plan.cfg.macro.cols
        cache[k] = words_of_bits(plan.blocks[k].bits(rows, cols).ravel(), cols)
    return cache[k]


def _run_program(plan: GraphPlan, run: list, rnd: int) -> GraphProgram:
    cfg = plan.cfg
    code = [_encode(cfg, kind, args) for kind, args in run]
    text = run  # each instruction's text made when a message needs it (_text)
    wmem: list[int] = []
    for kind, args in run:
        if kind == "LOAD":  # the rows it copies of its block's page image
            img = _page_words(plan, args["block"])[args["row0"]:args["row0"] + args["count"]]
            end = args["src"] + args["count"]
            wmem += [0] * (end - len(wmem))
            wmem[args["src"]:end] = img
    return GraphProgram(cfg, code, wmem, text, round=rnd)


def _bfs_io(plan: GraphPlan, frontier: np.ndarray) -> tuple[dict, list]:
    """A BFS round's vectors: the frontier words (source segment ``j`` at word ``j``) and the cleared
    next-frontier words (destination segment ``i`` at word ``grid[1] + i``), and the range read back."""
    t = plan.tiling
    n_src, n_dst = t.grid[1], t.grid[0]
    writes = dict(enumerate(words_of_bits(frontier.astype(np.uint8), plan.cfg.macro.cols)))
    writes.update({n_src + i: 0 for i in range(n_dst)})
    return writes, [(n_src, n_dst)]


def _relax_io(plan: GraphPlan, values: np.ndarray) -> tuple[dict, list]:
    """A relaxation round's vectors: ``old`` and ``new`` both the values before the round, ``new`` read back."""
    lay = relax_layout(plan.cfg, plan.graph.n)
    vals = [int(v) for v in values]
    writes = {lay["old"] + i: v for i, v in enumerate(vals)}
    writes.update({lay["new"] + i: v for i, v in enumerate(vals)})
    return writes, [(lay["new"], plan.graph.n)]


def _spmv_io(plan: GraphPlan, contrib: np.ndarray) -> tuple[dict, list]:
    """A PageRank iteration's vectors: the contributions as slice words (:func:`cimforge.graph.compile.spmv_layout`)
    and the cleared sums, read back."""
    cfg, t = plan.cfg, plan.tiling
    lay = spmv_layout(cfg, t)
    L, rl, rows = lanes(cfg), slice_words(cfg), cfg.macro.rows
    c = np.zeros(t.grid[0] * rows, dtype=np.int64)
    c[:plan.graph.n] = contrib
    seg = c.reshape(t.grid[0], rows)
    words = []
    for j in range(t.grid[0]):
        for s in range(SPMV_SLICES):
            b = np.zeros(rl * L, dtype=np.int64)
            b[:rows] = (seg[j] >> (8 * s)) & 0xFF
            words += [int(w) for w in pack_lanes_array(b.reshape(rl, L))]
    writes = {lay["x"] + i: w for i, w in enumerate(words)}
    ny = t.grid[1] * t.cols
    writes.update({lay["y"] + i: 0 for i in range(ny)})
    return writes, [(lay["y"], ny)]


def arc_words(plan: GraphPlan, block: int) -> list[int]:
    """The arc words of a block (:func:`cimforge.gen.graph_relax.relax_arc_layout`: source, destination,
    weight; CC: weight 0), in the block's arc order; computed once per plan."""
    cache = plan.__dict__.setdefault("_arc_words", {})
    if block in cache:
        return cache[block]
    lay = relax_arc_layout(plan.cfg)
    s, d, w = _block_arcs(plan, plan.blocks[block])
    f = {name: lay[name] for name in ("src", "dst", "weight")}
    word = (s.astype(np.uint64) << np.uint64(f["src"].offset)) | (d.astype(np.uint64) << np.uint64(f["dst"].offset)) \
        | (w.astype(np.uint64) << np.uint64(f["weight"].offset))
    cache[block] = [int(x) for x in word]
    return cache[block]


@dataclass
class LoopRecord:
    """What :func:`host_loop` saw: per run its round, instructions, measured cycles (None on the ISS),
    predicted cycles and whether every retire stamp was predicted; per round the state the host derived from
    the fabric's words; the host's writes by kind (words)."""

    values: np.ndarray = None
    states: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    first_stamp_difference: tuple | None = None
    host_words: dict = field(default_factory=lambda: {"program": 0, "weights": 0, "arcs": 0, "vectors": 0,
                                                      "read": 0, "dma_cycles": 0})
    wall: float = 0.0


async def _round(plan: GraphPlan, dev, rec: LoopRecord, rnd: int, program: list, writes: dict, reads: list,
                 held: dict) -> list[int]:
    """Run one round's runs (the vectors written before the first, arc words before each run that reads
    them unless they are still in place) and return the words of ``reads`` after the last."""
    from ..compiler.cost import program_timing
    runs = split_runs(program)
    # the same program as the last round (PageRank's iterations): its encoded runs and predicted stamps again
    cache = rec.__dict__.setdefault("_last", (None, None))
    same = cache[0] is not None and cache[0] == program
    encoded = cache[1] if same else []
    for i, r in enumerate(runs):
        if same:
            gp, stamps = encoded[i]
            gp = GraphProgram(gp.cfg, gp.code, gp.wmem, gp.text, round=rnd)
        else:
            gp = _run_program(plan, r, rnd)
            stamps = program_timing(gp)
            encoded.append((gp, stamps))
        gp.writes = dict(writes) if i == 0 else {}
        rec.host_words["vectors"] += len(gp.writes)
        if plan.algo in RELAX:
            for kind, args in r:
                if kind != "GRELAX":
                    continue
                blk, first, base = args["block"], args.get("first", 0), args["arcs"]
                if any(held.get(base + j) != (blk, first + j) for j in range(args["count"])):
                    words = arc_words(plan, blk)[first:first + args["count"]]
                    gp.writes.update({base + j: w for j, w in enumerate(words)})
                    held.update({base + j: (blk, first + j) for j in range(args["count"])})
                    rec.host_words["arcs"] += args["count"]
        rec.host_words["program"] += len(gp.code)
        rec.host_words["weights"] += len(gp.wmem)
        rec.host_words["dma_cycles"] += dma_cycles(plan.cfg, len(gp.wmem)) + dma_cycles(plan.cfg, len(gp.writes))
        cycles, trace = await dev.run(gp, 4 * (stamps[-1] + 1) + 10000)
        equal = None if trace is None else trace == stamps
        if equal is False and rec.first_stamp_difference is None:
            rec.first_stamp_difference = next(
                (gp.describe(j), t, s) for j, (t, s) in enumerate(zip(trace, stamps)) if t != s) \
                if len(trace) == len(stamps) else (f"{len(trace)} trace entries, {len(stamps)} predicted",)
        rec.runs.append((rnd, len(gp.code), cycles, stamps[-1] + 1, equal))
    rec._last = (program, encoded)
    out = []
    for base, count in reads:
        out += await dev.read(base, count)
        rec.host_words["read"] += count
        rec.host_words["dma_cycles"] += dma_cycles(plan.cfg, count, store=True)
    return out


def dma_cycles(cfg, words: int, store: bool = False) -> int:
    """Cycles the DMA engine (:func:`cimforge.gen.dma.dma_command_cycles`) would take to move ``words``
    contiguous words between the external memory and an on-chip memory, in rows of 4,096 words: what the
    host's writes (weight rows, arc words, vectors) and reads would cost if they went through it."""
    from ..gen.dma import dma_command_cycles
    total = 0
    for lo in range(0, words, 4096):
        total += dma_command_cycles(cfg, {"store": int(store), "wmem": 0, "ext": 0, "addr": 0, "rows": 1,
                                          "len": min(4096, words - lo), "ext_stride": 0, "stride": 0})
    return total


async def host_loop(plan: GraphPlan, dev, source: int | None = None, *, alpha: float = 0.85, tol: float = 1e-6,
                    max_iter: int = 200) -> LoopRecord:
    """Run ``plan``'s algorithm on ``dev`` in a closed loop (module docstring). ``dev`` has ``await
    dev.run(program, timeout) -> (cycles, retire stamps)`` (None, None on a model without a clock) and ``await
    dev.read(base, count) -> words``."""
    g, t, algo = plan.graph, plan.tiling, plan.algo
    rows = plan.cfg.macro.rows
    rec = LoopRecord()
    t0 = time.perf_counter()
    held: dict = {}
    pro = _prologue(plan)
    if pro:
        await _round(plan, dev, rec, -1, pro, {}, [], held)
    if algo == "bfs":
        level, frontier, visited = golden.bfs_start(g.n, source)
        k = 0
        while frontier.any():
            rec.states.append(frontier.copy())
            writes, reads = _bfs_io(plan, frontier)
            prog = _program(plan, round_items(plan, frontier, unvisited=~visited))
            words = await _round(plan, dev, rec, k, prog, writes, reads, held)
            reach = bits_of_words([w & ((1 << rows) - 1) for w in words], rows)[:g.n].astype(bool)
            if any(w >> rows for w in words):  # a fabric that writes outside its rows: no valid frontier
                raise FabricResultError(f"round {k}: next-frontier words with bits above row {rows - 1}")
            frontier = reach & ~visited   # the host's frontier update
            visited |= frontier
            k += 1
            level[frontier] = k
        rec.values = level
    elif algo in RELAX:
        vmask = (1 << relax_value_bits(plan.cfg)) - 1
        values, changed = golden.relax_start(algo, g.n, source)
        k = 0
        while True:
            rec.states.append(values)
            writes, reads = _relax_io(plan, values)
            prog = _program(plan, round_items(plan, changed))
            words = await _round(plan, dev, rec, k, prog, writes, reads, held)
            new = np.array([w & vmask for w in words], dtype=np.int64)
            changed = new != values
            values = new
            k += 1
            if not changed.any():
                break
        rec.values = values
    else:
        outdeg = g.out_degree()
        rank = np.full(g.n, (1 << golden.FRAC_BITS) // g.n, dtype=np.int64)
        limit = golden.pagerank_limit(g.n, tol)
        for k in range(max_iter):
            rec.states.append(rank)
            c = golden.contributions(rank, outdeg)
            writes, reads = _spmv_io(plan, c)
            sl = segment_slices(plan, c)
            if k == 0 or not np.array_equal(sl, last_sl):  # else the program is the last iteration's
                prog = _program(plan, round_items(plan, np.ones(g.n, dtype=bool), contrib=c))
            last_sl = sl
            words = await _round(plan, dev, rec, k, prog, writes, reads, held)
            y = np.array(words[:g.n], dtype=np.int64)
            new = golden.pagerank_update(y, rank, outdeg, alpha)   # the host's vertex update
            err = int(np.abs(new - rank).sum())
            rank = new
            if err < limit:
                break
        rec.values = rank
    rec.wall = time.perf_counter() - t0
    rec.__dict__.pop("_last", None)  # the cached encoded runs stay here, not in the record sent back
    return rec


class FabricResultError(RuntimeError):
    """The fabric's words cannot be a state of the algorithm (the message says where)."""


class IssDevice:
    """:func:`host_loop`'s device on the instruction-set model (:class:`cimforge.compiler.iss.FabricModel`):
    memories and pages persist between runs, as on the RTL; no clock."""

    def __init__(self, cfg):
        from ..compiler.iss import FabricModel
        self.model = FabricModel(cfg)

    async def run(self, gp: GraphProgram, timeout: int):
        self.model.load_program(gp)
        self.model.write_words(gp.writes)
        self.model.run()
        return None, None

    async def read(self, base: int, count: int) -> list[int]:
        return self.model.amem[base:base + count]


def _simulate(plan: GraphPlan, source, sim: str, options: dict) -> LoopRecord:
    """The loop on the RTL: one cocotb launch of :mod:`cimforge.graph.fabric_tb` on the system top."""
    from ..gen.isa import CSR, MAGIC, host_map
    from ..sim.fabric_runner import CXX_OPT, PUBLIC, VERILATOR_ARGS, _MEMORIES, _system_public, system_verilog
    from ..sim.tools import model_cxx_opt, run_cocotb
    cfg = plan.cfg
    top, vpath = system_verilog(cfg, [])
    hbits, regions = host_map(cfg)
    with tempfile.TemporaryDirectory(prefix="cimforge-graph-") as tmp:
        job = {"mode": "backdoor", "system": True, "hbits": hbits, "magic": MAGIC, "csr": CSR,
               "regions": {r.name: {"index": r.index, "slices": r.slices, "width": r.width}
                           for r in regions.values()},
               "plan": plan, "source": source, "options": options, "results": str(Path(tmp) / "record.pkl")}
        job_path = Path(tmp) / "job.pkl"
        job_path.write_bytes(pickle.dumps(job))
        if sim == "verilator":
            public = tuple(n for n in PUBLIC if n not in _MEMORIES) + ("dma_error",)
            run_cocotb(sim, [vpath], top, "cimforge.graph.fabric_tb", env={"CIMFORGE_GRAPH_JOB": str(job_path)},
                       build_args=list(VERILATOR_ARGS + (str(_system_public(cfg, top, vpath)),)), public=public,
                       cxx_opt=model_cxx_opt(CXX_OPT))
        else:
            run_cocotb(sim, [vpath], top, "cimforge.graph.fabric_tb", env={"CIMFORGE_GRAPH_JOB": str(job_path)})
        return pickle.loads(Path(job["results"]).read_bytes())


def run_on_fabric(plan: GraphPlan, run: GraphRun, *, sim: str = "verilator", source: int | None = None,
                  alpha: float = 0.85, tol: float = 1e-6, max_iter: int = 200) -> dict:
    """Run ``plan``'s algorithm in a closed loop (:func:`host_loop`) on the fabric's RTL (``sim``:
    ``"verilator"``, ``"icarus"``) or on the instruction-set model (``"iss"``, no cycles), then check its
    result against the golden model's rounds in ``run`` (the compiler's execution).

    Returns
    -------
    dict
        ``values`` (the fabric's result), ``bit_exact`` (equal to the golden model's, and every round's state
        too), ``first_difference`` (None or the first round and vertex that differ), ``measured`` and
        ``predicted`` cycles (sums over runs), ``stamps_equal``, ``runs``, ``instructions``, ``rounds``,
        ``host_words`` (words the host wrote and read, by kind), ``wall`` (seconds of the loop), ``sim``.
    """
    if source is None and plan.algo in ("bfs", "sssp"):
        source = int(np.flatnonzero(run.result.active[0])[0])
    options = {"alpha": alpha, "tol": tol, "max_iter": max_iter}
    if sim == "iss":
        rec = asyncio.run(host_loop(plan, IssDevice(plan.cfg), source, **options))
    else:
        rec = _simulate(plan, source, sim, options)
    g = plan.graph
    want = run.result.active if plan.algo == "bfs" else run.result.states
    first = None
    for k in range(max(len(want), len(rec.states))):
        if k >= len(rec.states) or k >= len(want):
            first = f"the fabric ran {len(rec.states)} rounds, the golden model {len(want)}"
            break
        bad = np.flatnonzero(np.asarray(rec.states[k]) != np.asarray(want[k]))
        if len(bad):
            v = int(bad[0])
            first = f"before round {k}: vertex {g.ids[v]!r}: {rec.states[k][v]} from the fabric, " \
                    f"{want[k][v]} in the golden model"
            break
    if first is None and not np.array_equal(rec.values, run.result.values):
        v = int(np.flatnonzero(rec.values != run.result.values)[0])
        first = f"result: vertex {g.ids[v]!r}: {rec.values[v]} from the fabric, {run.result.values[v]} in the " \
                f"golden model"
    clocked = sim != "iss"
    return {"values": rec.values, "bit_exact": first is None, "first_difference": first,
            "measured": sum(r[2] for r in rec.runs) if clocked else None,
            "predicted": sum(r[3] for r in rec.runs),
            "stamps_equal": all(r[4] for r in rec.runs) if clocked else None,
            "first_stamp_difference": rec.first_stamp_difference, "runs": len(rec.runs),
            "instructions": sum(r[1] for r in rec.runs), "rounds": len(rec.states),
            "host_words": rec.host_words, "wall": rec.wall, "sim": sim}
