"""The DMA engine through Verilator (slow, cocotb): :class:`cimforge.gen.extmem.CimSystem` (the fabric with the
external memory model on its AXI4 port) runs a compiled convolution whose input comes in by ``DMA`` beside the
weight loads, whose output goes out by ``DMA`` and comes back into a scratch area of the activation memory by
a second ``DMA`` (the round trip through the external memory, read over the Wishbone bus). RTL = ISS = golden,
and every instruction retires in the cycle ``program_timing`` predicts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import program_timing
from cimforge.compiler.iss import FabricModel
from cimforge.gen.isa import Opcode, encode
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.fabric_runner import run_programs, system_verilog
from cimforge.sim.random_layers import random_conv_graph
from cimforge.sim.tools import setup_verilator

from test_engine_dma_fabric import with_dma

SEED = 7

pytestmark = [pytest.mark.slow, pytest.mark.cocotb]


def test_dma_round_trip_cosim():
    setup_verilator()
    cfg = get_preset("tiny")
    cfg = replace(cfg, fabric=replace(cfg.fabric, ext_depth=1024, ext_latency=11, ext_interval=2))
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    g = random_conv_graph(rng, cfg, cin=3, kmax=2)
    t = g.inputs[0]
    xs = rng.integers(t.qmin, t.qmax + 1, (1, *t.shape)).astype(t.dtype)
    ext_in, ext_out = 3, 500
    prog, src, dst = with_dma(compile_graph(g, cfg, batch=1), ext_in, ext_out)
    scratch = cfg.fabric.act_depth - dst.words
    back = encode(cfg, Opcode.DMA, store=0, wmem=0, ext=ext_out, addr=scratch, rows=1, len=dst.words,
                  ext_stride=0, stride=0)
    prog = replace(prog, code=prog.code[:-1] + [back, encode(cfg, Opcode.DSYNC), prog.code[-1]])
    ext_init = [0] * cfg.fabric.ext_depth
    for a, w in prog.input_words({t.name: xs}).items():
        ext_init[ext_in + a - src.base] = w

    model = FabricModel(cfg)
    model.load_program(prog)
    model.ext = dict(enumerate(ext_init))
    model.run()
    gold = run_graph(g, xs)[g.outputs[0]]
    # the program's input is not written by the host: an input of zeros in the run, its words come by DMA
    run = run_programs(cfg, [(prog, {t.name: np.zeros_like(xs)})], mode="bus",
                       design=system_verilog(cfg, ext_init), extra_reads=((scratch, dst.words),)).runs[0]
    assert not run.flags["error"]
    got = prog.read_tensors(run.words, 1)[g.outputs[0]]
    assert np.array_equal(got, gold)
    assert [run.words[scratch + i] for i in range(dst.words)] == model.amem[scratch:scratch + dst.words]
    assert model.amem[scratch:scratch + dst.words] == model.amem[dst.base:dst.base + dst.words]
    assert [e["cycle"] for e in run.trace] == program_timing(prog)
