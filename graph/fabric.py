"""Graph algorithms on the generated fabric's RTL: the compiler's round programs encoded, run in Verilator
through :func:`cimforge.sim.fabric_runner.run_programs`, read back and checked against the golden model.

Each round of :func:`cimforge.graph.compile.execute` is one or more runs (its instruction list cut after each
``END``, :func:`~cimforge.graph.compile.split_runs`); a run is a :class:`GraphProgram`: its instruction words,
the weight-memory image its ``LOAD``s read (the page images of the blocks it loads, written by the host before
the run), the activation words the host writes before the round's first run and the words it reads after the
round's last run. Every run of every round goes into one simulator launch.

**Rounds are checked one by one.** The host's decisions between rounds (which blocks are active, the visited
mask, the next frontier) are the golden model's: round ``k``'s inputs are the golden state after round
``k - 1`` and its outputs read from the RTL must equal the golden state after round ``k``. When every round
agrees, a closed loop (the host feeding the RTL's own outputs back) computes the same states, round by round,
so the result is the RTL's (and it is reported from the RTL's words, not from the golden model's).

The design is the fabric inside :class:`cimforge.gen.extmem.CimSystem` (its AXI4 port on the external
memory model, idle here), as :func:`~cimforge.sim.fabric_runner.system_verilog` builds it.

**Cycles.** Each run's measured ``CYCLES`` and every retired instruction's trace stamp are compared with
:func:`cimforge.compiler.cost.program_timing` of the same words, and their sum with the compiler's own
prediction (:attr:`cimforge.graph.compile.GraphRun.cycles`). The host's time between runs (writing the
weight memory and the vectors, reading results) is not in the cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..gen.isa import Opcode, encode, instr_spec, lanes, pack_lanes_array
from ..gen.graph_relax import relax_arc_layout, relax_value_bits
from ..gen.graph_spmv import SPMV_SLICES, slice_words
from .compile import RELAX, GraphPlan, GraphRun, _block_arcs, relax_layout, spmv_layout, split_runs

__all__ = ["GraphProgram", "fabric_programs", "run_on_fabric", "arc_words", "words_of_bits", "bits_of_words"]


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
    text : list of str
        Each instruction, for messages.
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
        return f"pc {pc} of a {where} run: {self.text[pc]}" if 0 <= pc < len(self.text) else \
            f"pc {pc}: outside the run's program"


def _encode(cfg, kind: str, args: dict | None) -> int:
    op = Opcode[kind]
    layout = instr_spec(op).layout
    if layout is None:
        return encode(cfg, op)
    names = layout(cfg).members
    return encode(cfg, op, **{k: v for k, v in args.items() if k in names})


def _run_program(plan: GraphPlan, run: list, rnd: int) -> GraphProgram:
    cfg = plan.cfg
    rows, cols = cfg.macro.rows, cfg.macro.cols
    code = [_encode(cfg, kind, args) for kind, args in run]
    text = [kind if args is None else f"{kind} " + ", ".join(f"{k}={v}" for k, v in args.items())
            for kind, args in run]
    wmem: list[int] = []
    for kind, args in run:
        if kind == "LOAD":
            img = words_of_bits(plan.blocks[args["block"]].bits(rows, cols).ravel(), cols)
            end = args["src"] + rows
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


def _spmv_io(plan: GraphPlan, rank: np.ndarray) -> tuple[dict, list]:
    """A PageRank iteration's vectors: the contributions ``round(r[u] / outdeg[u])`` as slice words
    (:func:`cimforge.graph.compile.spmv_layout`) and the cleared sums, read back."""
    from . import golden
    cfg, t = plan.cfg, plan.tiling
    lay = spmv_layout(cfg, t)
    L, rl, rows = lanes(cfg), slice_words(cfg), cfg.macro.rows
    c = np.zeros(t.grid[0] * rows, dtype=np.int64)
    c[:plan.graph.n] = golden.contributions(rank, plan.graph.out_degree())
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
    weight; CC: weight 0), in the block's arc order."""
    lay = relax_arc_layout(plan.cfg)
    s, d, w = _block_arcs(plan, plan.blocks[block])
    f = {name: lay[name] for name in ("src", "dst", "weight")}
    word = (s.astype(np.uint64) << np.uint64(f["src"].offset)) | (d.astype(np.uint64) << np.uint64(f["dst"].offset)) \
        | (w.astype(np.uint64) << np.uint64(f["weight"].offset))
    return [int(x) for x in word]


def fabric_programs(plan: GraphPlan, run: GraphRun) -> list[GraphProgram]:
    """Every run of ``run``'s programs (prologue first) as :class:`GraphProgram` s, with each round's vectors
    from the golden rounds (module docstring) and, for ``GRELAX``, the arc words the run reads (written once
    when every block's arcs stay in place, else before each run)."""
    first_round = len(run.programs) - run.result.rounds
    out = []
    held: dict[int, tuple] = {}  # activation word -> (block, arc) of the arc word it holds
    for p, prog in enumerate(run.programs):
        rnd = p - first_round
        runs = [_run_program(plan, r, rnd) for r in split_runs(prog)]
        if rnd >= 0:
            if plan.algo == "bfs":
                runs[0].writes, runs[-1].reads = _bfs_io(plan, run.result.active[rnd])
            elif plan.algo == "pagerank":
                runs[0].writes, runs[-1].reads = _spmv_io(plan, run.result.states[rnd])
            else:
                runs[0].writes, runs[-1].reads = _relax_io(plan, run.result.states[rnd])
        if plan.algo in RELAX:
            for gp, r in zip(runs, split_runs(prog)):
                for kind, args in r:
                    if kind != "GRELAX":
                        continue
                    blk, first, base = args["block"], args.get("first", 0), args["arcs"]
                    # written unless every word still holds this piece (a later run may have overwritten some)
                    if any(held.get(base + i) != (blk, first + i) for i in range(args["count"])):
                        words = arc_words(plan, blk)[first:first + args["count"]]
                        gp.writes.update({base + i: w for i, w in enumerate(words)})
                        held.update({base + i: (blk, first + i) for i in range(args["count"])})
        out += runs
    return out


def _execute(plan: GraphPlan, progs: list, sim: str) -> list:
    """Per run: (words read, cycles, retire stamps); the ISS (``sim="iss"``) has no clock: its cycles and
    stamps are None."""
    if sim == "iss":
        from ..compiler.iss import FabricModel
        model = FabricModel(plan.cfg)  # memories and pages persist between runs, as on the RTL
        out = []
        for p in progs:
            model.load_program(p)
            model.write_words(p.writes)
            model.run()
            out.append(({b + i: model.amem[b + i] for b, c in p.reads for i in range(c)}, None, None))
        return out
    from ..sim.fabric_runner import run_programs, system_verilog
    items = [(p, {"round": np.zeros((1, 1), dtype=np.int64)}) for p in progs]
    # the system top: the fabric with the external memory model on its AXI4 port (no DMA here), its memories
    # loaded and read by backdoor
    fab = run_programs(plan.cfg, items, sim=sim, design=system_verilog(plan.cfg, []))
    return [(rr.words, rr.cycles, [e["cycle"] for e in rr.trace]) for rr in fab.runs]


def run_on_fabric(plan: GraphPlan, run: GraphRun, *, sim: str = "verilator", alpha: float = 0.85) -> dict:
    """Run ``run``'s programs on the fabric's RTL (``sim``: ``"verilator"``, ``"icarus"``) or on the
    instruction-set model (``"iss"``, no cycles) and check them (module docstring).

    Returns
    -------
    dict
        ``values`` (the result as read from the fabric), ``bit_exact`` (every round's words equal the golden
        state), ``first_difference`` (None or where the first round differs), ``measured`` and ``predicted``
        cycles (sums over runs), ``stamps_equal`` (every instruction's retire stamp predicted), ``runs``,
        ``instructions``, ``sim``.
    """
    from ..compiler.cost import program_timing
    progs = fabric_programs(plan, run)
    results = _execute(plan, progs, sim)
    g = plan.graph
    out = {"measured": 0, "predicted": 0, "stamps_equal": True, "runs": len(progs), "sim": sim,
           "instructions": sum(len(p.code) for p in progs), "first_difference": None}
    bfs = plan.algo == "bfs"
    values = np.full(g.n, -1, dtype=np.int64) if bfs else run.result.states[0].copy()
    if bfs:
        values[run.result.active[0]] = 0
    rows = plan.cfg.macro.rows
    vmask = (1 << relax_value_bits(plan.cfg)) - 1

    def differ(text):
        if out["first_difference"] is None:
            out["first_difference"] = text

    for p, (words, cycles, trace) in zip(progs, results):
        stamps = program_timing(p)
        out["predicted"] += stamps[-1] + 1
        if cycles is not None:
            out["measured"] += cycles
            if trace != stamps and out["stamps_equal"]:
                out["stamps_equal"] = False
                out["first_stamp_difference"] = next(
                    (p.describe(i), t, s) for i, (t, s) in enumerate(zip(trace, stamps)) if t != s) \
                    if len(trace) == len(stamps) else (f"{len(trace)} trace entries, {len(stamps)} predicted",)
        if p.round < 0 or not p.reads:
            continue
        base, count = p.reads[0]
        got_words = [words[base + i] for i in range(count)]
        k, last = p.round, p.round + 1 == run.result.rounds
        if bfs:
            if any(w >> rows for w in got_words):
                differ(f"round {k}: next-frontier words with bits above row {rows - 1}: "
                       + ", ".join(hex(w) for w in got_words if w >> rows))
            got = bits_of_words([w & ((1 << rows) - 1) for w in got_words], rows)[:g.n].astype(bool)
            want = np.zeros(g.n, dtype=bool) if last else run.result.active[k + 1]
            values[got & (values < 0)] = k + 1
        elif plan.algo == "pagerank":  # the sums, then the host's update from the fabric's sums
            from . import golden
            outdeg = g.out_degree()
            state = run.result.states[k]
            got = np.array(got_words[:g.n], dtype=np.int64)
            want = golden.spmv(g, golden.contributions(state, outdeg))
            if not np.array_equal(got, want):
                v = int(np.flatnonzero(got != want)[0])
                differ(f"round {k}: vertex {g.ids[v]!r}: sum {got[v]} on the fabric, {want[v]} in the golden model")
            got = golden.pagerank_update(got, state, outdeg, alpha)
            want = run.result.values if last else run.result.states[k + 1]
            values = got
        else:
            if any(w & ~vmask for w in got_words):
                differ(f"round {k}: value words with bits above bit {vmask.bit_length() - 1}")
            got = np.array([w & vmask for w in got_words], dtype=np.int64)
            want = run.result.values if last else run.result.states[k + 1]
            values = got
        if not np.array_equal(got, want):
            v = int(np.flatnonzero(got != want)[0])
            differ(f"round {k}: vertex {g.ids[v]!r}: {got[v]} on the fabric, {want[v]} in the golden model")
    out["values"] = values
    out["bit_exact"] = out["first_difference"] is None and bool(np.array_equal(values, run.result.values))
    if sim == "iss":
        out["measured"] = None
        out["stamps_equal"] = None
    return out
