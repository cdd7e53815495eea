"""The graph engine (``GBFS``, BITWISE mode) in Amaranth's simulator with real macros: random blocks, frontiers
and row masks on the tiny and default presets; the next-frontier words equal the BITWISE model's
(:class:`cimforge.golden.macro.MacroModel`) and every instruction takes ``gbfs_cycles(rows)`` cycles (an empty mask too)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from cimforge.gen.graph_engine import GraphEngine, gbfs_cycles, gbfs_fields, gbfs_layout
from cimforge.gen.isa import LANE_BITS, lanes, pack_word
from cimforge.gen.macro import CimMacro
from cimforge.golden.macro import MacroModel
from cimforge.presets import get_preset


class Bench(Elaboratable):
    def __init__(self, cfg, amem_init):
        self.cfg = cfg
        self.eng = GraphEngine(cfg)
        self.macros = [CimMacro(cfg.macro) for _ in range(cfg.fabric.n_macros)]
        init = [0] * cfg.fabric.act_depth
        for a, w in amem_init.items():
            init[a] = w
        self.amem = memory.Memory(shape=unsigned(LANE_BITS * lanes(cfg)), depth=cfg.fabric.act_depth, init=init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.eng, m.submodules.amem = self.eng, self.amem
        for i, mac in enumerate(self.macros):
            m.submodules[f"macro{i}"] = mac
            wiring.connect(m, self.eng.op[i], mac.op)
            m.d.comb += [self.eng.res_valid[i].eq(mac.res_valid), self.eng.res_total[i].eq(mac.res_total)]
        wiring.connect(m, self.eng.src_rd, self.amem.read_port())
        wiring.connect(m, self.eng.dst_rd, self.amem.read_port())
        wiring.connect(m, self.eng.act_w, self.amem.write_port())
        return m


def _run(cfg, pages, amem, instrs):
    """Write ``pages`` ({(macro, page): bits rows x cols}) through the macros' write ports, then execute
    ``instrs`` (GBFS argument dicts) one at a time; returns the activation words and each one's cycles."""
    bench = Bench(cfg, amem)
    out, cycles = {}, []

    async def tb(ctx):
        for (mi, pg), bits in pages.items():
            mac = bench.macros[mi]
            for r, row in enumerate(bits):
                ctx.set(mac.mem_we, 1)
                ctx.set(mac.mem_page, pg)
                ctx.set(mac.mem_row, r)
                ctx.set(mac.mem_wdata, int(sum(int(b) << c for c, b in enumerate(row))))
                await ctx.tick()
            ctx.set(mac.mem_we, 0)
        await ctx.tick()
        e = bench.eng
        for args in instrs:
            ctx.set(e.args.as_value(), pack_word(gbfs_layout(cfg), args))
            ctx.set(e.start, 1)
            n = 1
            while True:
                if ctx.get(e.done) and n > 1:
                    break
                await ctx.tick()
                ctx.set(e.start, 0)
                n += 1
                assert n < 1000
            await ctx.tick()
            cycles.append(n)
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
