"""The MLPerf Tiny models (cimforge.golden.model_sets.TINY_SET) on the default fabric's RTL (slow, cocotb):
every tensor of every image bit-exact against the golden model, every instruction's retire cycle as the cost
model predicts. Their tensors do not fit the activation memory, so they live in the external memory and the
layers run in row bands staged by DMA (cimforge.compiler.memory); the fabric is the system top with the
external memory model on its AXI4 port, loaded and read back by backdoor.

The default preset as shipped holds them: parameter, descriptor and program memories of 1024, 128 and 8192
words (no DMA reaches them) and a trace of 8192 stamps, one for every instruction (MobileNet keeps its
pipelined bands: 5577 instructions); activation memory 4096 words, weight memory 1024, 4 macros of 64x64,
8 pages.

Measured (2 images each, build cached): resnet8 130 013 cycles per image, ds_cnn 77 421, mobilenet_v1_025
294 579, autoencoder 203 675 per run of both images; 448 s for the four with the build (about 5 minutes).
"""

from __future__ import annotations

import time
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
#: The default preset, as shipped.
TINY_FABRIC = get_preset("default")


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
    conv_util = sum(r.ideal for r in conv) / max(1, sum(r.measured for r in conv))
    print(f"{name}: {IMAGES} images ({prog.batch} per run) in {wall:.1f} s, {want[-1] + 1} cycles per run, "
          f"utilisation {ideal * prog.batch / (want[-1] + 1):.3f}, conv layers {conv_util:.3f}, stalled on external "
          f"memory {sum(r.stall for r in rows)} cycles per image")
    for r in rows:
        print(f"  {r.layer:28s} {r.kind:8s} {r.measured:7d} cycles, stall {r.stall:6d}, utilisation "
              f"{r.utilisation or 0:.2f} of bound {r.occupancy or 0:.2f}")
