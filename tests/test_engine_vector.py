"""The vector engines (POOL and EW) alone in Amaranth's simulator, against the instruction-set model.

Random single-layer graphs (max/average/global pooling; residual add, product (per-channel broadcast too), clamp,
concatenation), compiled for the ``tiny`` preset; the inputs are random codes with the corners forced in (the most
negative and the largest code). Every instruction's cycles equal the engine's timing data (``per_item`` per tap or word plus ``extra``).
Seeds fixed and printed.
"""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.gen.isa import Opcode, decode_op, instr_spec
from cimforge.gen.vector import EW_TIMING, EwEngine, PoolEngine
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_vector_graph

from engine_bench import EngineBench, iss_model, run_instructions

TINY = get_preset("tiny")


def _inputs(g, rng):
    xs = {}
    for t in g.inputs:
        x = rng.integers(t.qmin, t.qmax + 1, (1, *t.shape))
        x.flat[0], x.flat[-1] = t.qmin, t.qmax  # the most negative and the largest code
        xs[t.name] = x.astype(t.dtype)
    return xs


def _check(kind: str, seed: int, engine: str):
    rng = np.random.default_rng(seed)
    print(f"{kind}, seed {seed}")
    g = random_vector_graph(kind, rng)
    prog = compile_graph(g, TINY, batch=1)
    words = prog.input_words(_inputs(g, rng))
    bench = EngineBench(TINY, [engine], prog, words)
    got, cycles = run_instructions(bench, list(prog.code))
    want = iss_model(prog, words).amem
    assert got == want, f"{kind}: activation memory differs from the ISS at " \
                        f"{[a for a in range(len(got)) if got[a] != want[a]][:8]}"
    assert cycles
    timing = bench.engines[engine].TIMING
    for pc, n in cycles:
        _, a = decode_op(TINY, prog.code[pc])
        items = a["oh"] * a["ow"] * a["cw"] * a["kh"] * a["kw"] if engine == "pool" else a["npos"] * a["cw"]
        assert n == items * timing.per_item + timing.extra, f"pc {pc}: {n} cycles for {items} items"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["maxpool", "avgpool", "gap"])
def test_pool_engine(kind, seed):
    _check(kind, 3000 + seed, PoolEngine.name)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["add", "mul", "mul_bcast", "clamp", "concat"])
def test_ew_engine(kind, seed):
    _check(kind, 3100 + seed, EwEngine.name)


def test_vector_timing_follows_the_pipelines():
    # the start register, the pipeline (read, reduce or two stages of requantisation, sum) and the done cycle
    assert PoolEngine.TIMING.extra == 8 and EW_TIMING.extra == 13
    assert PoolEngine.TIMING.per_item == EwEngine.TIMING.per_item == 1
    assert {instr_spec(op).engine for op in (Opcode.POOL, Opcode.EW)} == {PoolEngine.name, EwEngine.name}



def _tie_case(dtype: str, zp: int, kernel: int, out_scale: float, rng) -> tuple:
    """A ``kernel x kernel`` average pool (``round_even``) of 8 channels and 2 x 4 windows at the corners: the most
    negative codes everywhere in a window, the largest, all-zero windows (codes at the zero point), windows whose
    sum is an exact tie of the requantisation (an odd multiple of half its period ``divisor * s_out / s_in``,
    positive and negative where the zero point allows), and random windows."""
    from cimforge.golden import ir
    c, k = 8, kernel
    x = ir.TensorInfo("x", (c, 2 * k, 4 * k), dtype, 0.05, zp)
    y = ir.TensorInfo("y", (c, 2, 4), dtype, out_scale, zp)
    layer = ir.AvgPool(name="pool", inputs=(x,), output=y, kernel=(k, k), stride=(k, k), round_even=True)
    codes = rng.integers(x.qmin, x.qmax + 1, (1, c, 2 * k, 4 * k))
    codes[..., :k, :k] = x.qmin
    codes[..., :k, k:2 * k] = x.qmax
    codes[..., k:, :k] = zp
    codes[..., k:, k:3 * k] = zp
    period = round(k * k * out_scale / 0.05)
    if period % 2 == 0:  # two tie windows per channel: an odd multiple of period / 2 in one code
        odd = [d for d in (period // 2 * np.array([-5, -3, -1, 1, 3, 5, 7])) if x.qmin <= zp + d <= x.qmax]
        codes[..., k, k] = zp + rng.choice(odd, c)
        codes[..., k, 2 * k] = zp + rng.choice(odd, c)
    return ir.Graph("g", (x,), (layer,), ("y",)), codes.astype(dtype)


@pytest.mark.parametrize("rounding", ["single", "double"])
def test_pool_engine_rounds_exact_ties_to_even(rounding):
    """``round_even``: exact ties go to the even neighbour in both rounding forms (as numpy's ``rint``), the
    engine bit-exact with the ISS and the golden model: ties above and below zero, the most negative and the
    largest windows, all-zero windows, and a 3x3 pool (no exact ties); the cycles are the engine's timing data
    (the tie logic adds none)."""
    from dataclasses import replace

    from cimforge.golden.ops import avg_pool
    from cimforge.golden.requant import exact_ties

    seed = 3200
    rng = np.random.default_rng(seed)
    print(f"seed {seed}, rounding {rounding}")
    cfg = replace(TINY, fabric=replace(TINY.fabric, rounding=rounding))
    # the double form differs from the single one only on negative ties: one zero point gives those
    for dtype, zp in (("int8", -128), ("int8", 3), ("uint8", 0)) if rounding == "single" else (("int8", 3),):
        for kernel, out_scale in ((2, 0.05), (2, 0.1), (4, 0.05), (3, 0.05)):
            case = f"{dtype} zp {zp}, {kernel}x{kernel}, s_out {out_scale}"
            g, codes = _tie_case(dtype, zp, kernel, out_scale, rng)
            layer = g.layers[0]
            acc = (codes.astype(np.int64) - zp).reshape(1, 8, 2, kernel, 4, kernel).sum(axis=(3, 5))
            ties = exact_ties(acc, layer.requant.multiplier, layer.requant.shift)
            assert ties.any() == (kernel != 3), case
            want = avg_pool(layer, codes, rounding)
            period = round(kernel * kernel * out_scale / 0.05)  # the real multiplier is 1 / period
            even = np.clip(np.rint(acc / period) + zp, layer.act_min, layer.act_max)
            assert np.array_equal(want[ties], even[ties]), case
            prog = compile_graph(g, cfg, batch=1)
            words = prog.input_words({"x": codes})
            bench = EngineBench(cfg, [PoolEngine.name], prog, words)
            got, cycles = run_instructions(bench, list(prog.code))
            assert got == iss_model(prog, words).amem, f"{case}: the engine differs from the ISS"
            assert np.array_equal(prog.read_tensors(got, 1, ["y"])["y"], want), f"{case}: differs from golden"
            assert cycles
            for pc, n in cycles:
                _, a = decode_op(cfg, prog.code[pc])
                assert a["round_even"] == 1
                assert n == a["oh"] * a["ow"] * a["cw"] * a["kh"] * a["kw"] + PoolEngine.TIMING.extra


@pytest.mark.parametrize("pads,stride", [((1, 1, 1, 1), 2), ((0, 0, 1, 1), 1), ((2, 1, 0, 2), 1)])
def test_padded_average_pool_runs_in_parts(pads, stride):
    """An average pool that leaves padded taps out of its divisor (ONNX ``count_include_pad = 0``) runs as one
    ``POOL`` per part of equal divisor (compiler.lowering.pool.window_parts): engine, ISS and golden model equal
    on every element, the most negative and largest codes in the corners, each part's cycles its taps plus the
    engine's overhead."""
    from cimforge.compiler.lowering.pool import window_parts
    from cimforge.golden import ir
    from cimforge.golden.ops import avg_pool

    seed = 3300
    rng = np.random.default_rng(seed)
    print(f"seed {seed}, pads {pads}, stride {stride}")
    x = ir.TensorInfo("x", (13, 6, 7), "int8", 0.05, -128)
    oh = ir.conv_output_size(6, 3, stride, pads[0], pads[2], 1)
    ow = ir.conv_output_size(7, 3, stride, pads[1], pads[3], 1)
    y = ir.TensorInfo("y", (13, oh, ow), "int8", 0.04, -100)
    layer = ir.AvgPool(name="pool", inputs=(x,), output=y, kernel=(3, 3), stride=(stride, stride), padding=pads,
                       round_even=True)
    g = ir.Graph("g", (x,), (layer,), ("y",))
    parts = window_parts(layer)
    assert parts is not None and len(parts) > 1
    codes = _inputs(g, rng)
    prog = compile_graph(g, TINY, batch=1)
    words = prog.input_words(codes)
    bench = EngineBench(TINY, [PoolEngine.name], prog, words)
    got, cycles = run_instructions(bench, list(prog.code))
    assert got == iss_model(prog, words).amem, "the engine differs from the ISS"
    assert np.array_equal(prog.read_tensors(got, 1, ["y"])["y"], avg_pool(layer, codes["x"]))
    assert len(cycles) == len(parts)
    for pc, n in cycles:
        _, a = decode_op(TINY, prog.code[pc])
        assert (a["pt"], a["pl"]) == (0, 0)
        assert n == a["oh"] * a["ow"] * a["cw"] * a["kh"] * a["kw"] + PoolEngine.TIMING.extra


@pytest.mark.parametrize("pads,stride", [((1, 1, 1, 1), 2), ((0, 0, 1, 1), 1), ((2, 1, 0, 2), 1)])
def test_padded_average_pool_in_row_bands_equals_golden(pads, stride):
    """The same parts in the compiler's external-memory mode, the layer in row bands through a 256-word
    activation memory (each band's parts start at its own first input row): the ISS equals the golden model."""
    from dataclasses import replace

    from cimforge.compiler.iss import run_program
    from cimforge.golden import ir
    from cimforge.golden.ops import avg_pool

    seed = 3400
    rng = np.random.default_rng(seed)
    print(f"seed {seed}, pads {pads}, stride {stride}")
    default = get_preset("default")
    cfg = replace(default, fabric=replace(default.fabric, act_depth=256))
    x = ir.TensorInfo("x", (13, 20, 9), "int8", 0.05, -128)
    oh = ir.conv_output_size(20, 3, stride, pads[0], pads[2], 1)
    ow = ir.conv_output_size(9, 3, stride, pads[1], pads[3], 1)
    layer = ir.AvgPool(name="pool", inputs=(x,), output=ir.TensorInfo("y", (13, oh, ow), "int8", 0.04, -100),
                       kernel=(3, 3), stride=(stride, stride), padding=pads, round_even=True)
    g = ir.Graph("g", (x,), (layer,), ("y",))
    codes = _inputs(g, rng)
    prog = compile_graph(g, cfg, batch=1, memory="external")
    assert prog.external and any(i.op == "DMA" for i in prog.instrs)  # the input alone is 360 words: bands
    got, _ = run_program(prog, codes)
    assert np.array_equal(got["y"], avg_pool(layer, codes["x"]))
