"""The MLPerf Tiny models (cimforge.golden.model_sets.TINY_SET) on the default fabric's RTL (slow, cocotb):
every tensor bit-exact against the golden model, every instruction's retire cycle as the cost model
predicts. Their tensors do not fit the activation memory, so they live in the external memory and the
layers run in row bands staged by DMA (cimforge.compiler.memory); the fabric is the system top with the
external memory model on its AXI4 port, loaded and read back by backdoor.

One image per model and all four models in one simulator launch (``run_programs`` loads each program in turn
into the same system, one Verilator build): what is proven is the same as with more images per model (each
model's whole program on the RTL, every tensor compared, every retire cycle), at a quarter of the launches.
A second image of a model runs the same instructions on other data, which the ISS test of the tiny set
(tests/test_compiler_memory.py) and the golden-model tests cover.

The default preset as shipped holds them: parameter, descriptor and program memories of 1024, 128 and 8192
words (no DMA reaches them) and a trace of 8192 stamps, one for every instruction; activation memory 4096
words, weight memory 1024, 4 macros of 64x64, 8 pages.

Measured (build cached, machine loaded): 64.2 s for the test, 28.8 s of it simulation (resnet8 93 774 cycles,
ds_cnn 51 442, mobilenet_v1_025 175 347, autoencoder 84 634; every tensor the programs write bit-exact, every
retire cycle as predicted), with the BatchNormalizations that follow convolutions fused into their passes (the
MAC engine's epilogue, compiler/fusion.py; 114 534, 75 665, 250 797 and 84 634 cycles without); before, one
launch per model and two images each: 448 s.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import program_timing
from cimforge.compiler.lowering.host import split_host_tail
from cimforge.golden import model_sets as ms
from cimforge.golden.cli import to_codes
from cimforge.golden.onnx_import import load_onnx
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.fabric_check import first_divergence, layer_rows
from cimforge.sim.fabric_runner import run_programs
from cimforge.sim.tools import setup_verilator

pytestmark = [pytest.mark.slow, pytest.mark.cocotb]

SEED = 0
#: The default preset, as shipped.
TINY_FABRIC = get_preset("default")


def test_tiny_set_on_the_default_rtl():
    setup_verilator()
    cfg = TINY_FABRIC
    print(f"seed {SEED}")
    cases = []
    for name in ms.TINY_SET:
        graph = load_onnx(str(ms.build(name, seed=SEED)))
        split = split_host_tail(graph)
        prog = compile_graph(split.fabric, cfg)
        assert prog.external, name
        codes = {graph.inputs[0].name: to_codes(graph, ms.sample_inputs(name, 1, seed=SEED), option="inputs")}
        cases.append((name, split, prog, codes, run_graph(graph, codes, rounding=cfg.fabric.rounding)))
    t0 = time.perf_counter()
    fr = run_programs(cfg, [(prog, codes) for _, _, prog, codes, _ in cases])
    wall = time.perf_counter() - t0
    print(f"{len(cases)} models in one launch: {wall:.1f} s wall (build included when not cached), "
          f"simulation {fr.run_wall:.1f} s")
    for (name, split, prog, _, gold), run in zip(cases, fr.runs):
        got = split.finish(prog.read_tensors(run.words, 1), rounding=cfg.fabric.rounding)
        div = first_divergence(prog, gold, got, run.trace)
        assert div is None, f"{name}: {div}"
        assert all(np.array_equal(gold[t], got[t]) for t in gold if t in got), name
        want = program_timing(prog)
        assert [e["cycle"] for e in run.trace] == want, f"{name}: retire cycles differ from the cost model"
        rows = layer_rows(prog, run.trace, exact={t: True for t in got})
        ideal = sum(r.ideal for r in rows)
        conv = [r for r in rows if r.kind == "conv2d"]
        conv_util = sum(r.ideal for r in conv) / max(1, sum(r.measured for r in conv))
        print(f"{name}: {len(prog.code)} instructions, {want[-1] + 1} cycles, simulation {run.run_wall:.1f} s, "
              f"utilisation {ideal / (want[-1] + 1):.3f}, conv layers {conv_util:.3f}, stalled on external "
              f"memory {sum(r.stall for r in rows)} cycles")
        for r in rows:
            print(f"  {r.layer:28s} {r.kind:8s} {r.measured:7d} cycles, stall {r.stall:6d}, utilisation "
                  f"{r.utilisation or 0:.2f} of bound {r.occupancy or 0:.2f}")
