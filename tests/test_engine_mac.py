"""The MAC engine (gather units, lockstep issue, accumulation, K-split sums, requantisation, write-back) with the
weight loader and inline macros in Amaranth's simulator, against the instruction-set model.

Random convolutions (padding, stride, dilation, pruned taps, row-packed one-channel inputs, int8 and uint8 with
random zero points) compiled for the ``tiny`` preset with several splits; inputs with the most negative and
largest codes forced in. Every pass's cycles equal the cost model's :func:`~cimforge.compiler.cost.mac_pass_cycles`,
which is built on :data:`~cimforge.gen.mac_engine.MAC_TIMING`. The epilogue (a fused depthwise 1x1 layer) on
random conv + depthwise pairs with the corner weights (-128, 127, 0), multipliers (0 and the largest) and codes
on the clamp bounds of tests/test_compiler_fusion.py, bit-exact with the ISS and the golden model. Seeds fixed
and printed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.lib import wiring

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import Parallelism, mac_pass_cycles
from cimforge.compiler.fusion import internal_tensors
from cimforge.compiler.tiling import CompileError, rowpack_ok, tile_steps
from cimforge.gen.isa import Opcode, decode_op, lanes
from cimforge.gen.mac_engine import EPILOGUE_LATENCY, MAC_TIMING, MacEngine
from cimforge.gen.requant import MBQM_LATENCY
from cimforge.golden.macro import LATENCY
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.random_layers import _conv_graph, random_conv_graph

from engine_bench import EngineBench, iss_model, run_instructions
from test_compiler_fusion import conv_bn_graph

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


class EpilogueBench(EngineBench):
    """The bench with the MAC engine's epilogue parameter port on the parameter memory too."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        wiring.connect(m, self.engines["mac"].epi_rd, self.pmem.read_port())
        return m


EPI_CASES = [(0, SPLITS[0]), (1, SPLITS[1]), (2, SPLITS[2]), (3, SPLITS[3])]


@pytest.mark.parametrize("seed, par", EPI_CASES, ids=[f"{s}-{p.batch}{p.in_ch}{p.out_ch}" for s, p in EPI_CASES])
def test_mac_engine_epilogue(seed, par):
    """A convolution with its depthwise 1x1 layer fused (``MAC.epi``): the engine's output equals the ISS's and
    the golden depthwise layer's, the fused-away tensor is not written, every pass's cycles as predicted."""
    seed = 4100 + seed
    rng = np.random.default_rng(seed)
    while True:
        g = conv_bn_graph(rng, TINY)
        cout, oh, ow = g.layers[0].output.shape
        if cout < 5 or cout > 8 or oh * ow > 16:  # the corner channels present, seconds per case
            continue
        try:
            prog = compile_graph(g, TINY, batch=1, parallelism={"conv": par})
            break
        except CompileError:
            continue
    conv, bn = g.layers
    print(f"seed {seed}, split {par}: {conv.input.shape} k{conv.kernel} -> {conv.output.shape}, conv clamp "
          f"{conv.act_min}..{conv.act_max}, bn weights {bn.weight.ravel().tolist()}, multipliers "
          f"{bn.requant.multiplier.tolist()}")
    assert internal_tensors(prog.graph) == {"y": "conv"}
    x = rng.integers(conv.input.qmin, conv.input.qmax + 1, (1, *conv.input.shape))
    x.flat[0], x.flat[-1] = conv.input.qmin, conv.input.qmax
    xs = {"x": x.astype(conv.input.dtype)}
    words = prog.input_words(xs)
    bench = EpilogueBench(TINY, [MacEngine.name, "loader"], prog, words)
    got, cycles = run_instructions(bench, list(prog.code))
    want = iss_model(prog, words).amem
    assert got == want, f"differs from the ISS at {[a for a in range(len(got)) if got[a] != want[a]][:8]}"
    gold = run_graph(g, xs, rounding=TINY.fabric.rounding)
    assert np.array_equal(prog.read_tensors(got)["z"], gold["z"])
    q1 = gold["y"][0]
    assert (q1 == conv.act_min).any() or (q1 == conv.act_max).any()  # codes on the clamp bounds
    passes = [(pc, n) for pc, n in cycles if pc in prog.pass_at]
    assert passes
    for pc, n in passes:
        mp, args = prog.pass_at[pc], decode_op(TINY, prog.code[pc])[1]
        assert args["epi"] == 1
        steps = [tile_steps(t, mp.geom, lanes(TINY)) for t in mp.tiles]
        assert n == mac_pass_cycles(mp.npos, steps, mp.nt, mp.par, epilogue=True), f"pc {pc}: {n} cycles"
        assert n - mac_pass_cycles(mp.npos, steps, mp.nt, mp.par) in (0, EPILOGUE_LATENCY)


def test_epilogue_timing():
    assert MAC_TIMING.epilogue == EPILOGUE_LATENCY == 1 + MBQM_LATENCY


#: 16 of the tiny preset's macros with 32 pages: passes of more than 256 reduction or output-channel tiles.
WIDE = replace(TINY, name="wide", macro=replace(TINY.macro, pages=32),
               fabric=replace(TINY.fabric, n_macros=16, desc_depth=512, param_depth=512, weight_depth=4096,
                                   act_depth=4096))


@pytest.mark.parametrize("par, cin, cout, k", [(Parallelism(1, 16, 1), 136, 2, 4), (Parallelism(1, 1, 16), 8, 544, 1)],
                         ids=["k272", "n272"])
def test_mac_engine_counts_past_256_tiles(par, cin, cout, k):
    """A convolution of one position split 16 ways over 272 tiles (17 rounds of 16 tiles), in reduction (a 4x4
    kernel over 136 channels) or
    in output channels: the gather, issue and write-back counters pass 255. They were 8 bits wide and wrapped:
    the RTL ran cycle-exact with the wrong tiles. The output-channel case fails with the 8-bit counters here;
    the reduction case passed with them in this bench, and its failure showed on the imagenet RTL (VGG-19's and
    ZFNet-512's first dense layers, 392 and 288 tiles), which bench/bench_cli_imagenet.py runs."""
    seed = 4100
    while True:  # the first seed whose filters keep their last taps (the tiles past 256 carry weights)
        rng = np.random.default_rng(seed)
        g = _conv_graph(rng, cin, cout, (k, k, k, k, 1, 1, 1, 1, [0, 0, 0, 0], 1, 1))
        if g.layers[0].weight[:, -8:, -1, -1].any():
            break
        seed += 1
    print(f"seed {seed}, split {par}, {cin} -> {cout} channels, {k}x{k} kernel over {k}x{k}")
    prog = compile_graph(g, WIDE, batch=1, parallelism={"conv": par})
    mac = next(decode_op(WIDE, w)[1] for w in prog.code if decode_op(WIDE, w)[0] == Opcode.MAC.value)
    assert not prog.external and max(mac["kt"], mac["nt"]) == 272 and max(mac["kr"], mac["nr"]) == 17, mac
    layer = g.layers[0]
    x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (1, *layer.input.shape))
    x.flat[0], x.flat[-1] = layer.input.qmin, layer.input.qmax
    words = prog.input_words({"x": x.astype(layer.input.dtype)})
    bench = EngineBench(WIDE, [MacEngine.name, "loader"], prog, words)
    got, _ = run_instructions(bench, list(prog.code))
    want = iss_model(prog, words).amem
    assert got == want, f"differs from the ISS at {[a for a in range(len(got)) if got[a] != want[a]][:8]}"
    assert np.array_equal(prog.read_tensors(dict(enumerate(got)), 1)["y"], run_graph(g, {"x": x})["y"])
