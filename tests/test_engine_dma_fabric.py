"""The DMA engine in the whole fabric, in Amaranth's simulator (:class:`cimforge.gen.extmem.CimSystem`: the
fabric with the external memory model on its AXI4 port): a compiled convolution whose input tile comes in by
``DMA`` (queued before the weight loads, so both run at once), a ``DSYNC`` before the ``MAC`` pass, and the
output tile going out by ``DMA``. The external memory equals the ISS's, the output equals the golden model's, and
every instruction retires in the cycle ``program_timing`` predicts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import program_timing
from cimforge.compiler.iss import FabricModel
from cimforge.gen.extmem import CimSystem
from cimforge.gen.isa import CSR, Opcode, encode, host_map, trace_layout, unpack_word
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_conv_graph

SEED = 5


def with_dma(prog, ext_in: int, ext_out: int):
    """``prog`` with its input brought in and its output sent out by DMA: ``DMA`` in at pc 0 (beside the
    prologue's weight loads), ``DSYNC`` before the first ``MAC``, ``DMA`` out and ``DSYNC`` before ``END``."""
    cfg = prog.cfg
    src = prog.tensors[(0, prog.graph.inputs[0].name)]
    dst = prog.tensors[(0, prog.graph.outputs[0])]

    def dma(store, place, ext):
        return encode(cfg, Opcode.DMA, store=store, wmem=0, ext=ext, addr=place.base, rows=1, len=place.words,
                      ext_stride=0, stride=0)
    first = min(prog.pass_at)
    code = ([dma(0, src, ext_in)] + prog.code[:first] + [encode(cfg, Opcode.DSYNC)] + prog.code[first:-1] +
            [dma(1, dst, ext_out), encode(cfg, Opcode.DSYNC), prog.code[-1]])
    return replace(prog, code=code, pass_at={pc + 2: p for pc, p in prog.pass_at.items()}), src, dst


async def wb_write(ctx, wb, addr: int, data: int) -> None:
    ctx.set(wb.cyc, 1), ctx.set(wb.stb, 1), ctx.set(wb.we, 1), ctx.set(wb.adr, addr), ctx.set(wb.dat_w, data)
    ctx.set(wb.sel, 0xF)
    while True:
        await ctx.tick()
        if ctx.get(wb.ack):
            break
    ctx.set(wb.cyc, 0), ctx.set(wb.stb, 0), ctx.set(wb.we, 0)
    await ctx.tick()


@pytest.mark.parametrize("latency,interval", [(9, 1), (3, 2)])
def test_dma_in_mac_dma_out_on_the_fabric(latency, interval):
    cfg = get_preset("tiny")
    cfg = replace(cfg, fabric=replace(cfg.fabric, ext_depth=1024, ext_latency=latency, ext_interval=interval))
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    g = random_conv_graph(rng, cfg, cin=3, kmax=2)  # a reduction that fits the tiny pages
    t = g.inputs[0]
    xs = rng.integers(t.qmin, t.qmax + 1, (1, *t.shape)).astype(t.dtype)
    base = compile_graph(g, cfg, batch=1)
    ext_in, ext_out = 3, 500
    prog, src, dst = with_dma(base, ext_in, ext_out)
    words = prog.input_words({t.name: xs})
    ext_init = [0] * cfg.fabric.ext_depth
    for a, w in words.items():
        ext_init[ext_in + a - src.base] = w

    model = FabricModel(cfg)
    model.load_program(prog)
    model.ext = dict(enumerate(ext_init))
    model.run()
    gold = run_graph(g, xs)
    assert np.array_equal(prog.read_tensors(model.amem, 1)[g.outputs[0]], gold[g.outputs[0]])
    want_ext = [model.ext.get(i, 0) for i in range(cfg.fabric.ext_depth)]
    assert want_ext[ext_out:ext_out + dst.words] == [model.amem[dst.base + i] for i in range(dst.words)]

    top = CimSystem(cfg, ext_init=ext_init)
    fab = top.fabric
    hbits, regions = host_map(cfg)
    out = {}

    async def bench(ctx):
        mems = fab.memories
        for name, image in (("imem", prog.code), ("wmem", prog.wmem), ("pmem", prog.pmem), ("dmem", prog.dmem)):
            for i, w in enumerate(image):
                ctx.set(mems[name].data[i], w)
        csr = regions["csr"].index << hbits
        await wb_write(ctx, top.wb, csr | CSR["START_PC"], 0)
        await wb_write(ctx, top.wb, csr | CSR["CTRL"], 1)
        for _ in range(200000):
            if ctx.get(top.done) or ctx.get(top.error):
                break
            await ctx.tick()
        out["error"], out["dma_error"] = ctx.get(top.error), ctx.get(top.dma_error)
        n = len(prog.code)
        out["trace"] = [unpack_word(trace_layout(), ctx.get(mems["trace"].data[i])) for i in range(n)]
        out["ext"] = [ctx.get(top.extmem.mem.data[i]) for i in range(cfg.fabric.ext_depth)]
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert (out["error"], out["dma_error"]) == (0, 0)
    assert out["ext"] == want_ext
    assert [e["pc"] for e in out["trace"]] == list(range(len(prog.code)))
    assert [e["cycle"] for e in out["trace"]] == program_timing(prog)
