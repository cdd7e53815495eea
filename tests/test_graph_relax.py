"""The relaxation engine (``GRELAX``) in Amaranth's simulator: random arcs (repeated destinations back to back,
which the forwarding register serves, saturating sums, zero counts) on the default and isscc22 presets (tiny's
16-bit words hold no arc: the graph compiler refuses SSSP and CC there); the new
values equal the instruction-set model's (:meth:`cimforge.compiler.iss.FabricModel._grelax`) and every
instruction takes ``grelax_cycles(count)`` cycles."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimforge.compiler.iss import FabricModel
from cimforge.gen.graph_relax import RelaxEngine, grelax_cycles, relax_arc_layout, relax_value_bits
from cimforge.gen.isa import grelax_layout, pack_word
from cimforge.graph.run import EngineBench, execute
from cimforge.presets import get_preset


def _run(cfg, init, instrs):
    bench = EngineBench(cfg, dict(enumerate(init)), engine=RelaxEngine)
    cycles, words = [], []

    async def tb(ctx):
        for args in instrs:
            cycles.append(await execute(ctx, bench.eng, pack_word(grelax_layout(cfg), args)))
        words.extend(ctx.get(bench.amem.data[i]) for i in range(len(init)))

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return words, cycles


@pytest.mark.parametrize("preset,seed", [("default", 2), ("isscc22", 3)])
def test_grelax_random_arcs(preset, seed):
    print(f"seed {seed}")
    cfg = get_preset(preset)
    rng = np.random.default_rng(seed)
    lay, vb = relax_arc_layout(cfg), relax_value_bits(cfg)
    inf = (1 << vb) - 1
    n, n_arcs, old, new, arcs = 12, 40, 0, 16, 32
    vals = [int(v) for v in rng.integers(0, 1 << 20, n)]
    vals[3] = vals[5] = inf  # unreached: sums saturate
    init = [0] * 96
    init[old:old + n] = vals
    init[new:new + n] = vals
    for i in range(n_arcs):
        src, dst = int(rng.integers(n)), 7 if i % 8 < 3 else int(rng.integers(n))  # runs of equal destinations
        w = int(rng.integers(0, 1 << 12)) if i % 7 else inf - 1  # near-saturating weights too
        init[arcs + i] = pack_word(lay, {"src": src, "dst": dst, "weight": w})
    instrs = [{"arcs": arcs, "count": 17, "old": old, "new": new}, {"arcs": arcs, "count": 0, "old": old, "new": new},
              {"arcs": arcs + 17, "count": 1, "old": old, "new": new},
              {"arcs": arcs + 18, "count": n_arcs - 18, "old": old, "new": new}]
    model = FabricModel(cfg)
    model.amem[:len(init)] = init
    for a in instrs:
        model._grelax(a)
    got, cycles = _run(cfg, init, instrs)
    assert got == model.amem[:len(init)]
    assert got[new:new + n] != vals  # something was relaxed
    assert cycles == [grelax_cycles(a["count"]) for a in instrs]
