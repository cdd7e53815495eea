"""The graph engine (``GBFS``, BITWISE mode) in Amaranth's simulator with real macros: random blocks, frontiers
and row masks on the tiny and default presets; the next-frontier words equal the BITWISE model's
(:class:`cimforge.golden.macro.MacroModel`) and every instruction takes ``gbfs_cycles(rows)`` cycles (an empty mask too)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimforge.gen.graph_engine import gbfs_cycles, gbfs_fields
from cimforge.golden.macro import MacroModel
from cimforge.graph.compile import compile_graph, execute
from cimforge.graph.io import load_graph
from cimforge.graph.run import EngineBench, run_bfs_rtl
from cimforge.presets import get_preset


def _run(cfg, pages, amem, instrs):
    """Write ``pages`` ({(macro, page): bits rows x cols}) through the macros' write ports, then execute
    ``instrs`` (GBFS argument dicts) one at a time; returns the activation words and each one's cycles."""
    bench = EngineBench(cfg, amem)
    out, cycles = {}, []

    async def tb(ctx):
        for (mi, pg), bits in pages.items():
            await bench.write_page(ctx, mi, pg, bits)
        await ctx.tick()
        for args in instrs:
            cycles.append(await bench.execute(ctx, args))
        for a in sorted({i["dst"] for i in instrs}):
            out[a] = ctx.get(bench.amem.data[a])

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out, cycles


@pytest.mark.parametrize("preset,seed", [("tiny", 1), ("tiny", 2), pytest.param("default", 3, marks=pytest.mark.slow)])
def test_gbfs_random_blocks(preset, seed):
    print(f"seed {seed}")
    cfg = get_preset(preset)
    mc, n_mac = cfg.macro, cfg.fabric.n_macros
    rng = np.random.default_rng(seed)
    models = [MacroModel(mc) for _ in range(n_mac)]
    pages = {}
    for mi in range(n_mac):
        for pg in range(min(mc.pages, 2)):
            bits = (rng.random((mc.rows, mc.cols)) < 0.15).astype(np.uint8)
            bits[0] = 0  # an empty row
            pages[(mi, pg)] = bits
            models[mi].bits[pg] = bits
    def rand_word(bits):
        return int(sum(int(b) << c for c, b in enumerate(rng.random(bits) < 0.3)))

    amem = {a: rand_word(mc.cols) for a in range(4)}
    amem[0] = 0  # an empty frontier
    amem.update({10 + a: rand_word(mc.rows) for a in range(3)})
    full = (1 << mc.rows) - 1
    instrs = []
    for k in range(9):
        rows = (full if k == 0 else (1 << int(rng.integers(mc.rows))) if k == 1 else 0 if k == 2
                else rand_word(mc.rows) | 1)
        instrs.append(gbfs_fields(cfg, macro=int(rng.integers(n_mac)), page=int(rng.integers(min(mc.pages, 2))),
                                  rows=rows, src=int(rng.integers(4)), dst=10 + int(rng.integers(3))))
    # the model: BITWISE AND and the total popcount per issued row, reached bits OR-ed into dst
    want = dict(amem)
    for i in instrs:
        reached = 0
        for r in range(mc.rows):
            if i["rows"] >> r & 1:
                _, _, total = models[i["macro"]].bitwise(i["page"], r, want[i["src"]], "AND")
                reached |= (total != 0) << r
        want[i["dst"]] |= reached
    got, cycles = _run(cfg, pages, amem, instrs)
    for a, w in got.items():
        assert w == want[a], f"word {a}: {w:#x} != {want[a]:#x}"
    assert cycles == [gbfs_cycles(i["rows"]) for i in instrs]


# (lesmis on default, 30-100 s here, runs on the whole fabric's RTL in Verilator: tests/test_graph_fabric.py)
@pytest.mark.parametrize("spec,preset", [("florentine", "tiny"), ("karate", "tiny")])
def test_bfs_on_the_engine_rtl(spec, preset):
    """Every round's GBFS instructions of the compiled BFS on the engine's RTL: levels bit-exact with the golden
    model (and so networkx), the same instructions as the compiler's programs, cycles measured = predicted."""
    g = load_graph(spec)
    plan = compile_graph(g, "bfs", get_preset(preset))
    src = g.n - 1
    r = run_bfs_rtl(plan, src, execute(plan, src))
    print(spec, preset, r["instructions"], "GBFS, cycles", r["measured"], r["predicted"])
    assert r["bit_exact"] and r["same_program"]
    assert r["measured"] == r["predicted"] and r["instructions"] > 0
