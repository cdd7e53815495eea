"""BFS on the RTL: every round's ``GBFS`` instructions on the graph engine and the macros (Amaranth simulator).

:class:`EngineBench` holds a :class:`~cimforge.gen.graph_engine.GraphEngine`, the configuration's macros (inline)
and an activation memory. :func:`run_bfs_rtl` plays the host and the controller: it writes each block into its
macro page through the macro's write port (what ``LOAD`` does), writes the round's frontier words and clears
the next-frontier words, executes the round's ``GBFS`` instructions (``start`` for one cycle, then ``done``),
reads the next-frontier words back and computes the next frontier (``reached AND NOT visited``) as the golden
model does. Each instruction's cycles (EXEC to ``done`` inclusive) are measured.

The engine is not yet in the fabric (docs/graph.md section 6): controller, loader and ``END`` cycles are the
cost model's, so ``measured`` sums the engine's instructions only and ``predicted`` the same instructions'
:func:`~cimforge.gen.graph_engine.gbfs_cycles`.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from ..gen.graph_engine import GraphEngine, gbfs_cycles, gbfs_layout
from ..gen.isa import LANE_BITS, lanes, pack_word
from ..gen.macro import CimMacro

__all__ = ["EngineBench", "run_bfs_rtl", "word_of_bits", "write_page", "execute"]


def word_of_bits(bits) -> int:
    """An integer word from a bit vector (bit ``i`` = element ``i``)."""
    return int(sum(1 << i for i, b in enumerate(bits) if b))


class EngineBench(Elaboratable):
    """A graph engine (``engine``: :class:`~cimforge.gen.graph_engine.GraphEngine` or another engine with
    macro ports) wired to ``cfg``'s macros and an activation memory (initial words ``amem``): each of its
    memory read ports on a port of its own, its results from the macros' result members it has."""

    def __init__(self, cfg, amem: dict[int, int] | None = None, engine=GraphEngine):
        self.cfg = cfg
        self.eng = engine(cfg)
        self.macros = [CimMacro(cfg.macro) for _ in range(cfg.fabric.n_macros)]
        init = [0] * cfg.fabric.act_depth
        for a, w in (amem or {}).items():
            init[a] = w
        self.amem = memory.Memory(shape=unsigned(LANE_BITS * lanes(cfg)), depth=cfg.fabric.act_depth, init=init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.eng, m.submodules.amem = self.eng, self.amem
        for i, mac in enumerate(self.macros if "op" in self.eng.signature.members else []):
            m.submodules[f"macro{i}"] = mac
            wiring.connect(m, self.eng.op[i], mac.op)
            for name in ("res_valid", "res_total", "res_y"):
                if name in self.eng.signature.members:
                    m.d.comb += getattr(self.eng, name)[i].eq(getattr(mac, name))
        for name, member in self.eng.signature.members.items():
            if member.is_signature and isinstance(member.signature, memory.ReadPort.Signature):
                wiring.connect(m, getattr(self.eng, name), self.amem.read_port())
        wiring.connect(m, self.eng.act_w, self.amem.write_port())
        return m

    async def write_page(self, ctx, macro: int, page: int, bits: np.ndarray) -> None:
        """Write a page image (rows x cols bits) through the macro's write port, a row per cycle."""
        await write_page(ctx, self.macros[macro], page, bits)

    async def execute(self, ctx, args: dict, max_cycles: int = 10_000) -> int:
        """One ``GBFS``: its cycles, EXEC to ``done`` inclusive."""
        return await execute(ctx, self.eng, pack_word(gbfs_layout(self.cfg), args), max_cycles)


async def write_page(ctx, mac, page: int, bits: np.ndarray) -> None:
    """Write a page image (rows x cols bits) through macro ``mac``'s write port, a row per cycle."""
    for r, row in enumerate(bits):
        ctx.set(mac.mem_we, 1)
        ctx.set(mac.mem_page, page)
        ctx.set(mac.mem_row, r)
        ctx.set(mac.mem_wdata, word_of_bits(row))
        await ctx.tick()
    ctx.set(mac.mem_we, 0)


async def execute(ctx, engine, args_word: int, max_cycles: int = 10_000) -> int:
    """One instruction on an engine, as the controller starts it (``start`` for one cycle with ``args``
    held): its cycles, EXEC to ``done`` inclusive."""
    ctx.set(engine.args.as_value(), args_word)
    ctx.set(engine.start, 1)
    n = 1
    while not (ctx.get(engine.done) and n > 1):
        await ctx.tick()
        ctx.set(engine.start, 0)
        n += 1
        if n > max_cycles:
            raise RuntimeError(f"{type(engine).__name__} args {args_word:#x}: no done within {max_cycles} cycles")
    await ctx.tick()
    return n


def run_bfs_rtl(plan, source: int, model_run=None) -> dict:
    """BFS from ``source`` with every ``GBFS`` of every round on the RTL (module docstring).

    Returns ``{"levels", "bit_exact" (against the golden model), "instructions", "measured", "predicted"}``.
    """
    from . import golden
    g, t, cfg = plan.graph, plan.tiling, plan.cfg
    rows, cols = cfg.macro.rows, cfg.macro.cols
    bench = EngineBench(cfg)
    pages = [b.bits(rows, cols) for b in plan.blocks]
    n_src, n_dst = t.grid[1], t.grid[0]
    out = {"measured": 0, "predicted": 0, "instructions": 0}
    level = np.full(g.n, -1, dtype=np.int64)

    async def host(ctx):
        frontier = np.zeros(n_src * cols, dtype=bool)
        frontier[source] = True
        visited = frontier[:g.n].copy()
        level[source] = 0
        held = {}  # (macro, page) -> block index now stored there
        k = 0
        while frontier.any():
            for j in range(n_src):
                ctx.set(bench.amem.data[j], word_of_bits(frontier[j * cols:(j + 1) * cols]))
            for i in range(n_dst):
                ctx.set(bench.amem.data[n_src + i], 0)
            for idx, b in enumerate(plan.blocks):
                lo, hi = t.source_segment(b)
                d_lo, d_hi = t.dest_segment(b)
                unvisited = np.zeros(rows, dtype=bool)
                unvisited[:d_hi - d_lo] = ~visited[d_lo:d_hi]
                mask = word_of_bits(pages[idx].any(axis=1) & unvisited)
                if not frontier[lo:hi].any() or not mask:
                    continue
                mac, pg = plan.place[idx]
                if held.get((mac, pg)) != idx:
                    await bench.write_page(ctx, mac, pg, pages[idx])
                    held[(mac, pg)] = idx
                args = {"macro": mac, "page": pg, "rows": mask, "src": t.source_index(b),
                        "dst": n_src + t.dest_index(b)}
                out["measured"] += await bench.execute(ctx, args)
                out["predicted"] += gbfs_cycles(mask)
                out["instructions"] += 1
            reach = np.zeros(n_dst * rows, dtype=bool)
            for i in range(n_dst):
                w = ctx.get(bench.amem.data[n_src + i])
                reach[i * rows:(i + 1) * rows] = [(w >> r) & 1 for r in range(rows)]
            nxt = reach[:g.n] & ~visited
            visited |= nxt
            k += 1
            level[nxt] = k
            frontier = np.zeros(n_src * cols, dtype=bool)
            frontier[:g.n] = nxt

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.run()
    ref = golden.bfs(g, source).values
    out["levels"] = level
    out["bit_exact"] = bool(np.array_equal(level, ref))
    if model_run is not None:  # the same instructions as the compiler's round programs
        out["same_program"] = out["instructions"] == sum(
            1 for prog in model_run.programs for kind, _ in prog if kind == "GBFS")
    return out
