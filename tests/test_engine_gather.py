"""A gather unit alone in Amaranth's simulator: the vectors it builds for the tiles of a compiled convolution at
successive output positions equal the instruction-set model's gather (padding filled with ``zp_in``, row-packed
inputs, the most negative and largest codes), one word per cycle: a tile of ``steps`` gather steps is ready
(``full``) ``steps + 1`` cycles after its ``go`` cycle (stage A walks it, stage B shifts the last word in), as the
cost model's recurrence counts (first step at ``go + 1``). Seeds fixed and printed.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import Parallelism
from cimforge.compiler.iss import FabricModel
from cimforge.compiler.tiling import rowpack_ok, tile_steps
from cimforge.gen.gather import GatherUnit
from cimforge.gen.isa import Opcode, decode_op, desc_layout, lanes, mac_layout, pack_word, unpack_word
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_conv_graph

TINY = get_preset("tiny")
POSITIONS = 4


class _Bench(Elaboratable):
    def __init__(self, cfg, prog, amem):
        self.unit = GatherUnit(cfg, 0)
        init = [0] * cfg.fabric.act_depth
        for a, w in amem.items():
            init[a] = w
        self.amem = memory.Memory(shape=unsigned(8 * lanes(cfg)), depth=cfg.fabric.act_depth, init=init)
        self.dmem = memory.Memory(shape=unsigned(desc_layout(cfg).size), depth=cfg.fabric.desc_depth,
                                  init=prog.dmem)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit, m.submodules.amem, m.submodules.dmem = self.unit, self.amem, self.dmem
        wiring.connect(m, self.unit.act_rd, self.amem.read_port())
        wiring.connect(m, self.unit.desc_rd, self.dmem.read_port(domain="comb"))
        return m


@pytest.mark.parametrize("one_channel", [False, True], ids=["any", "rowpack"])
@pytest.mark.parametrize("seed", range(3))
def test_gather_unit(seed, one_channel):
    seed = 6000 + seed + 100 * one_channel
    rng = np.random.default_rng(seed)
    while True:  # "rowpack": a one-channel input the compiler stores a row per word
        g = random_conv_graph(rng, TINY, cin=1 if one_channel else int(rng.choice([1, 2, 3])), kmax=3)
        layer = g.layers[0]
        if not one_channel or rowpack_ok(layer, lanes(TINY), TINY.macro.rows):
            break
    print(f"seed {seed}: {layer.input.shape} k{layer.kernel} s{layer.stride} d{layer.dilation} p{layer.padding}, "
          f"x {layer.input.dtype} zp {layer.input.zero_point}")
    prog = compile_graph(g, TINY, batch=1, parallelism={"conv": Parallelism(1, 1, 1)})
    x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (1, *layer.input.shape))
    x.flat[0], x.flat[-1] = layer.input.qmin, layer.input.qmax
    words = prog.input_words({"x": x.astype(layer.input.dtype)})
    pc = next(iter(prog.pass_at))
    op, a = decode_op(TINY, prog.code[pc])
    assert op == Opcode.MAC.value
    mp = prog.pass_at[pc]
    steps = [tile_steps(t, mp.geom, lanes(TINY)) for t in mp.tiles]

    iss = FabricModel(TINY)
    iss.load_program(prog)
    iss.write_words(words)
    signed = bool(a["x_signed"])
    zp_val = a["zp_in"] - 256 if signed and a["zp_in"] >= 128 else a["zp_in"]
    dl = desc_layout(TINY)
    bench = _Bench(TINY, prog, words)
    u = bench.unit
    checked = []

    async def tb(ctx):
        ctx.set(u.args.as_value(), pack_word(mac_layout(TINY), a))
        ctx.set(u.pos_init, 1)
        await ctx.tick()
        ctx.set(u.pos_init, 0)
        st = (0, 0, 0, -a["pt"], -a["pl"], a["pos0"])
        for p in range(min(a["npos"], POSITIONS)):
            for k in range(a["kt"]):
                ctx.set(u.g_kbase, k)
                ctx.set(u.go, 1)
                ctx.set(u.tile_active, 1)
                ctx.set(u.pos_bstep, int(k == a["kt"] - 1))  # the round's last tile steps the position
                await ctx.tick()
                ctx.set(u.go, 0)
                ctx.set(u.pos_bstep, 0)
                n = 1
                while not ctx.get(u.full):
                    await ctx.tick()
                    n += 1
                d = unpack_word(dl, iss.dmem[a["desc_base"] + k])
                want = iss._gather(a, d, st, signed, zp_val)
                got = [int(v) for v in ctx.get(u.x)]
                assert got == [v & 0xFF for v in want], f"position {p}, tile {k}"
                # go in cycle 0: steps in cycles 1..steps (stage A), the last word shifted in at the next edge
                assert n - 1 == steps[k] + 1, f"position {p}, tile {k}: ready in cycle {n - 1}, {steps[k]} steps"
                ctx.set(u.take, 1)
                await ctx.tick()
                ctx.set(u.take, 0)
                checked.append((p, k))
            st = FabricModel._step(a, st, True)

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert checked
