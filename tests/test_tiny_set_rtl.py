"""The MLPerf Tiny models (cimforge.golden.model_sets.TINY_SET) on the default fabric's RTL (slow, cocotb):
every tensor of every image bit-exact against the golden model, every instruction's retire cycle as the cost
model predicts. Their tensors do not fit the activation memory, so they live in the external memory and the
layers run in row bands staged by DMA (cimforge.compiler.memory); the fabric is the system top with the
external memory model on its AXI4 port, loaded and read back by backdoor.

The default preset's parameter, descriptor and program memories (64, 64 and 1024 words) are too small for
these models (they need up to 685, 104 and 5577), and no DMA reaches them, so the test widens exactly those
memories and the trace (which must hold every instruction for the per-instruction check): TINY_FABRIC. The
activation memory (4096 words), weight memory (1024), pages and macros are the preset's.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.cost import program_timing
from cimforge.golden import model_sets as ms
from cimforge.golden.onnx_import import load_onnx
from cimforge.presets import get_preset
from cimforge.sim.cosim import simulate
from cimforge.sim.tools import setup_verilator

pytestmark = [pytest.mark.slow, pytest.mark.cocotb]

SEED = 0
IMAGES = 2
_D = get_preset("default")
#: The default preset with the memories no DMA reaches made large enough for the tiny set.
TINY_FABRIC = replace(_D, fabric=replace(_D.fabric, param_depth=1024, desc_depth=128),
                      controller=replace(_D.controller, program_depth=8192, trace_depth=8192))


@pytest.mark.parametrize("name", ms.TINY_SET)
def test_tiny_model_on_the_default_rtl(name):
    setup_verilator()
    print(f"seed {SEED}")
    graph = load_onnx(str(ms.build(name, seed=SEED)))
    x = ms.sample_inputs(name, IMAGES, seed=SEED)
    t0 = time.perf_counter()
    res = simulate(graph, TINY_FABRIC, x)
    wall = time.perf_counter() - t0
    prog = res.program
    assert prog.external
    assert res.divergence is None, str(res.divergence)
    assert all(res.exact_tensors.values())
    want = program_timing(prog)
    for fr in res.runs:
        for run in fr.runs:
            assert [e["cycle"] for e in run.trace] == want
    rows = res.mean_rows()
    ideal = sum(r.ideal for r in rows)
    conv = [r for r in rows if r.kind == "conv2d"]
    print(f"{name}: {IMAGES} images in {wall:.1f} s, {want[-1] + 1} cycles per image, utilisation "
          f"{ideal / (want[-1] + 1):.3f}, conv layers {sum(r.ideal for r in conv) / max(1, sum(r.measured for r in conv)):.3f}, "
          f"stalled on external memory {sum(r.stall for r in rows)} cycles")
    for r in rows:
        print(f"  {r.layer:28s} {r.kind:8s} {r.measured:7d} cycles, stall {r.stall:6d}, utilisation "
              f"{r.utilisation or 0:.2f} of bound {r.occupancy or 0:.2f}")
