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

**Cycles.** Each run's measured ``CYCLES`` and every retired instruction's trace stamp are compared with
:func:`cimforge.compiler.cost.program_timing` of the same words, and their sum with the compiler's own
prediction (:attr:`cimforge.graph.compile.GraphRun.cycles`). The host's time between runs (writing the
weight memory and the vectors, reading results) is not in the cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..gen.isa import Opcode, encode, instr_spec
from .compile import GraphPlan, GraphRun, split_runs

__all__ = ["GraphProgram", "fabric_programs", "run_on_fabric", "words_of_bits", "bits_of_words"]


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


def fabric_programs(plan: GraphPlan, run: GraphRun) -> list[GraphProgram]:
    """Every run of ``run``'s programs (prologue first) as :class:`GraphProgram` s, with each round's vectors
    from the golden rounds ``run.result.active`` (module docstring)."""
    if plan.algo != "bfs":
        raise NotImplementedError(f"{plan.algo} does not run on the fabric's RTL yet")
    first_round = len(run.programs) - run.result.rounds
    out = []
    for p, prog in enumerate(run.programs):
        rnd = p - first_round
        runs = [_run_program(plan, r, rnd) for r in split_runs(prog)]
        if rnd >= 0:
            runs[0].writes, runs[-1].reads = _bfs_io(plan, run.result.active[rnd])
        out += runs
    return out


def run_on_fabric(plan: GraphPlan, run: GraphRun, *, sim: str = "verilator") -> dict:
    """Run ``run``'s programs on the fabric's RTL and check them (module docstring).

    Returns
    -------
    dict
        ``values`` (the result as read from the RTL), ``bit_exact`` (every round's words equal the golden
        state), ``first_difference`` (None or where the first round differs), ``measured`` and ``predicted``
        cycles (sums over runs), ``stamps_equal`` (every instruction's retire stamp predicted), ``runs``,
        ``instructions`` and the simulator's wall time ``wall``.
    """
    from ..compiler.cost import program_timing
    from ..sim.fabric_runner import run_programs
    progs = fabric_programs(plan, run)
    items = [(p, {"round": np.zeros((1, 1), dtype=np.int64)}) for p in progs]
    fab = run_programs(plan.cfg, items, sim=sim)
    g, t = plan.graph, plan.tiling
    out = {"measured": 0, "predicted": 0, "stamps_equal": True, "runs": len(progs),
           "instructions": sum(len(p.code) for p in progs), "first_difference": None,
           "wall": fab.run_wall + fab.load_wall}
    level = np.full(g.n, -1, dtype=np.int64)
    source = np.flatnonzero(run.result.active[0])
    level[source] = 0
    rows = plan.cfg.macro.rows
    for p, rr in zip(progs, fab.runs):
        stamps = program_timing(p)
        out["measured"] += rr.cycles
        out["predicted"] += stamps[-1] + 1
        if [e["cycle"] for e in rr.trace] != stamps and out["stamps_equal"]:
            out["stamps_equal"] = False
            out["first_stamp_difference"] = next(
                (p.describe(i), e["cycle"], s) for i, (e, s) in enumerate(zip(rr.trace, stamps)) if e["cycle"] != s) \
                if len(rr.trace) == len(stamps) else (f"{len(rr.trace)} trace entries, {len(stamps)} predicted",)
        if p.round >= 0 and p.reads:
            base, count = p.reads[0]
            words = [rr.words[base + i] for i in range(count)]
            k = p.round
            if any(w >> rows for w in words) and out["first_difference"] is None:
                out["first_difference"] = f"round {k}: next-frontier words with bits above row {rows - 1}: " + \
                    ", ".join(hex(w) for w in words if w >> rows)
            got = bits_of_words([w & ((1 << rows) - 1) for w in words], rows)[:g.n].astype(bool)
            want = run.result.active[k + 1] if k + 1 < run.result.rounds else np.zeros(g.n, dtype=bool)
            if not np.array_equal(got, want) and out["first_difference"] is None:
                v = int(np.flatnonzero(got != want)[0])
                out["first_difference"] = (f"round {k}: vertex {g.ids[v]!r} reached {bool(got[v])} on the RTL, "
                                           f"{bool(want[v])} in the golden model")
            level[got & (level < 0)] = k + 1
    out["values"] = level
    out["bit_exact"] = out["first_difference"] is None and bool(np.array_equal(level, run.result.values))
    out["model_cycles"] = run.cycles
    return out
