"""The MAC engine (gather units, lockstep issue, accumulation, K-split sums, requantisation, write-back) with the
weight loader and inline macros in Amaranth's simulator, against the instruction-set model.

Random convolutions (padding, stride, dilation, pruned taps, row-packed one-channel inputs, int8 and uint8 with
random zero points) compiled for the ``tiny`` preset with several splits; inputs with the most negative and
largest codes forced in. Every pass's cycles equal the cost model's :func:`~cimforge.compiler.cost.mac_pass_cycles`,
which is built on :data:`~cimforge.gen.mac_engine.MAC_TIMING`. Seeds fixed and printed.
"""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import Parallelism, mac_pass_cycles
from cimforge.compiler.tiling import CompileError, rowpack_ok, tile_steps
from cimforge.gen.isa import lanes
from cimforge.gen.mac_engine import MAC_TIMING, MacEngine
from cimforge.gen.requant import MBQM_LATENCY
from cimforge.golden.macro import LATENCY
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_conv_graph

from engine_bench import EngineBench, iss_model, run_instructions

TINY = get_preset("tiny")
SPLITS = [Parallelism(1, 1, 1), Parallelism(2, 1, 1), Parallelism(1, 2, 1), Parallelism(1, 1, 2)]


def _graph(rng, one_channel: bool):
    while True:
        g = random_conv_graph(rng, TINY, cin=1 if one_channel else int(rng.choice([1, 2, 3])), kmax=3)
        cout, oh, ow = g.layers[0].output.shape
        packed = rowpack_ok(g.layers[0], lanes(TINY), TINY.macro.rows)
        # few output-channel tiles and positions: seconds per case; "rowpack" cases are stored a row per word
        if cout <= 6 and oh * ow <= 24 and (packed or not one_channel):
            return g


CASES = [(0, SPLITS[0], False), (1, SPLITS[1], False), (2, SPLITS[2], False), (3, SPLITS[3], False),
         (4, SPLITS[0], True), (5, SPLITS[1], True)]


IDS = [f"{s}-{p.batch}{p.in_ch}{p.out_ch}-{'rowpack' if o else 'any'}" for s, p, o in CASES]


@pytest.mark.parametrize("seed, par, one_channel", CASES, ids=IDS)
def test_mac_engine(seed, par, one_channel):
    """One random convolution with split ``par``: bit-exact with the ISS, every pass cycle-exact."""
    seed = 4000 + seed
    rng = np.random.default_rng(seed)
    while True:  # a graph the split can run (the K-split needs a reduction to split)
        g = _graph(rng, one_channel)
        try:
            prog = compile_graph(g, TINY, batch=1, parallelism={"conv": par})
            break
        except CompileError:
            continue
    layer = g.layers[0]
    print(f"seed {seed}, split {par}: {layer.input.shape} k{layer.kernel} s{layer.stride} d{layer.dilation} "
          f"p{layer.padding} -> {layer.output.shape}, x {layer.input.dtype} zp {layer.input.zero_point}")
    x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (1, *layer.input.shape))
    x.flat[0], x.flat[-1] = layer.input.qmin, layer.input.qmax  # the most negative and the largest code
    words = prog.input_words({"x": x.astype(layer.input.dtype)})
    bench = EngineBench(TINY, [MacEngine.name, "loader"], prog, words)
    got, cycles = run_instructions(bench, list(prog.code))
    want = iss_model(prog, words).amem
    assert got == want, f"differs from the ISS at {[a for a in range(len(got)) if got[a] != want[a]][:8]}"
    passes = [(pc, n) for pc, n in cycles if pc in prog.pass_at]
    assert passes
    for pc, n in passes:
        mp = prog.pass_at[pc]
        steps = [tile_steps(t, mp.geom, lanes(TINY)) for t in mp.tiles]
        assert n == mac_pass_cycles(mp.npos, steps, mp.nt, mp.par), f"pc {pc}: {n} cycles"


def test_mac_timing_derives_from_the_rtl():
    assert MAC_TIMING == MacEngine.TIMING
    assert MAC_TIMING.result == LATENCY + 1 and MAC_TIMING.tail == 3 + MBQM_LATENCY
    assert (MAC_TIMING.setup, MAC_TIMING.tail, MAC_TIMING.serializer_extra) == (1, 7, 2)
