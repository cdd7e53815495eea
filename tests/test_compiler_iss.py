"""The compiler and the encoder against the golden model, through the instruction-set model (no simulator).

Both digits CNNs on fabrics of 1, 2 and 4 macros and several macro geometries (resident and streamed weights),
and randomised single layers (convolutions with every padding/stride/dilation and channel count regime, grouped
and depthwise convolutions of any group size, dense layers, pools, residual adds, clamps, concatenations) under
every split the fabric can run; depthwise-separable CNNs quantized by onnxruntime (a MobileNet-style model on the
default preset, DS-CNN, MobileNetV1 0.25, a MobileNetV2). Seeds are fixed and
printed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import Parallelism, valid_parallelisms
from cimforge.compiler.iss import run_program
from cimforge.compiler.planning import layer_geometries, n_tiles
from cimforge.compiler.tiling import CompileError, geometry, group_geometries, k_tiles, rowpack_ok
from cimforge.config import MacroConfig
from cimforge.gen.isa import lanes
from cimforge.golden import ir
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.cosim import MODELS, digits_batch, load_digits_model
from cimforge.sim.random_layers import (GROUPED_KINDS, extreme_depthwise_graph, random_conv_graph,
                                        random_grouped_conv_graph, random_tensor, random_vector_graph,
                                        tiny_mobilenet_onnx)

DEFAULT = get_preset("default")
FABRICS = {
    "default": DEFAULT,
    "1macro": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=1)),
    "2macro": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=2)),
    "isscc22": get_preset("isscc22"),
    "double_rounding": replace(DEFAULT, fabric=replace(DEFAULT.fabric, rounding="double")),
    "r72c128x3": replace(DEFAULT, macro=MacroConfig(rows=72, pages=2, cols=128), fabric=replace(DEFAULT.fabric,
                                                                                                 n_macros=3)),
}


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "per_image"])
@pytest.mark.parametrize("fabric", list(FABRICS))
@pytest.mark.parametrize("model", MODELS)
def test_digits_models_iss(model, fabric, merge):
    g = load_digits_model(model)
    cfg = FABRICS[fabric]
    inputs, _, gold = digits_batch(g, 0, 3, rounding=cfg.fabric.rounding)
    prog = compile_graph(g, cfg, batch=3, merge_images=merge)
    assert all(mp.images == (3 if merge else 1) for mp in prog.passes)
    got, _ = run_program(prog, inputs)
    for name in gold:
        assert np.array_equal(got[name], gold[name]), f"{model} on {fabric}: tensor {name} differs"


@pytest.mark.parametrize("one_channel", [False, True], ids=["any", "rowpack"])
@pytest.mark.parametrize("seed", range(12))
def test_random_conv_every_split(seed, one_channel):
    """A random convolution, compiled with every split the fabric can run, equals the golden operator
    (``rowpack``: one-channel inputs and kernels up to 8 x 8, mostly stored a row per word)."""
    rng = np.random.default_rng(1000 + seed + 500 * one_channel)
    cfg = replace(DEFAULT, macro=MacroConfig(rows=int(rng.choice([16, 32, 64])), pages=8, cols=64),
                  fabric=replace(DEFAULT.fabric, n_macros=int(rng.choice([1, 2, 4, 8]))))
    g = random_conv_graph(rng, cfg, cin=1, kmax=8) if one_channel else random_conv_graph(rng, cfg)
    layer = g.layers[0]
    print(f"seed {1000 + seed + 500 * one_channel}: {layer.input.shape} k{layer.kernel} s{layer.stride} d{layer.dilation} "
          f"p{layer.padding} -> {layer.output.shape}; macro {cfg.macro.rows}x{cfg.macro.cols}, "
          f"{cfg.fabric.n_macros} macros")
    x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (2, *layer.input.shape)).astype(layer.input.dtype)
    gold = run_graph(g, x)
    geo = geometry(layer, rowpack=rowpack_ok(layer, lanes(cfg), cfg.macro.rows))
    kt, nt = len(k_tiles(geo, cfg)), -(-geo.cout // lanes(cfg))
    splits = valid_parallelisms(cfg, kt, nt, geo.npos)
    ran = 0
    for par in splits:
        try:
            prog = compile_graph(g, cfg, batch=2, parallelism={"conv": par})
        except CompileError as e:
            assert "reduction" in str(e)  # only a K-split too small for the pages may be refused
            continue
        got, _ = run_program(prog, {"x": x})
        assert np.array_equal(got["y"], gold["y"]), f"split {par} differs"
        ran += 1
    if kt > cfg.macro.pages * cfg.fabric.n_macros:  # no split holds the reduction: a clear error
        assert not ran
        with pytest.raises(CompileError, match=r"pages per macro split over all \d+ macros; macro.pages = \d+: allowed "
                                               r"macro.pages >= \d+"):
            compile_graph(g, cfg)
    else:
        assert ran


@pytest.mark.parametrize("kind", ["maxpool", "avgpool", "gap", "add", "mul", "mul_bcast", "clamp", "concat"])
@pytest.mark.parametrize("seed", range(4))
def test_vector_layers(kind, seed):
    rng = np.random.default_rng(2000 + seed)
    print(f"{kind}, seed {2000 + seed}")
    g = random_vector_graph(kind, rng)
    xs = {t.name: rng.integers(t.qmin, t.qmax + 1, (2, *t.shape)).astype(t.dtype) for t in g.inputs}
    gold = run_graph(g, xs)
    prog = compile_graph(g, DEFAULT, batch=2)
    got, _ = run_program(prog, xs)
    assert np.array_equal(got["y"], gold["y"])


# -- errors --------------------------------------------------------------------------------------------------


def test_split_of_three_macros():
    """Splits need not be powers of two: the partitioner may choose three replicas."""
    g = load_digits_model("digits_cnn_qop")
    inputs, _, gold = digits_batch(g, 0, 2)
    prog = compile_graph(g, DEFAULT, batch=2, parallelism={"/0/Conv_quant": Parallelism(3, 1, 1),
                                                           "/4/Conv_quant": Parallelism(1, 3, 1)})
    got, _ = run_program(prog, inputs)
    assert all(np.array_equal(got[k], gold[k]) for k in gold)


def test_model_that_does_not_fit():
    g = load_digits_model("digits_cnn_qop")
    with pytest.raises(CompileError, match=r"layer '/0/Conv_quant': a reduction of 64 elements is 8 tiles of 8 rows, "
                                           r"4 pages per macro split over all 2 macros; macro.pages = 2: allowed "
                                           r"macro.pages >= 4"):
        compile_graph(g, get_preset("tiny"))


def test_wrong_input_shape():
    g = load_digits_model("digits_cnn_qop")
    prog = compile_graph(g, DEFAULT, batch=2)
    name = g.inputs[0].name
    with pytest.raises(CompileError, match=r"has shape \(1, 8, 8\): expected \(N, 1, 8, 8\)"):
        prog.input_words({name: np.zeros((1, 8, 8), np.int8)})
    with pytest.raises(CompileError, match=r"3 images, the program holds at most 2"):
        prog.input_words({name: np.zeros((3, 1, 8, 8), np.int8)})
    with pytest.raises(CompileError, match=r"missing"):
        prog.input_words({})


def test_depthwise_conv_is_one_super_group_of_a_word():
    """A depthwise convolution of 4 channels (half a word) is one dense convolution of its 4 channels whose
    weights are diagonal; its MACs are the real ones (9 per output), not the zeros."""
    rng = np.random.default_rng(0)
    x = random_tensor("x", (4, 4, 4), rng)
    y = random_tensor("y", (4, 4, 4), rng)
    wt = rng.integers(-128, 128, (4, 1, 3, 3)).astype(np.int8)
    layer = ir.Conv2d(name="dw", inputs=(x,), output=y, weight=wt, groups=4, padding=(1, 1, 1, 1))
    [(geo, in_word, out_word)] = group_geometries(layer, lanes(DEFAULT))
    assert (geo.cin, geo.cout, geo.reads, in_word, out_word) == (4, 4, 1, 0, 0)
    assert np.array_equal(geo.weight[np.arange(4), np.arange(4)], wt[:, 0])
    assert np.count_nonzero(geo.weight) == np.count_nonzero(wt)
    assert geo.macs == layer.macs == 16 * 9 * 4
    g = ir.Graph("g", (x,), (layer,), ("y",))
    xs = rng.integers(x.qmin, x.qmax + 1, (2, *x.shape)).astype(x.dtype)
    got, _ = run_program(compile_graph(g, DEFAULT, batch=2), {"x": xs})
    assert np.array_equal(got["y"], run_graph(g, xs)["y"])


@pytest.mark.parametrize("groups, cin_g, cout_g, words", [
    (24, 1, 1, [(8, 8, 0, 0), (8, 8, 1, 1), (8, 8, 2, 2)]),    # depthwise: a word of channels each
    (12, 1, 1, [(8, 8, 0, 0), (4, 4, 1, 1)]),                  # the last word half full
    (3, 3, 3, [(9, 9, 0, 0)]),                                 # ShuffleNet-like groups = 3 of 3: one super-group
    (6, 4, 4, [(8, 8, 0, 0), (8, 8, 1, 1), (8, 8, 2, 2)]),     # two groups of half a word each
    (4, 2, 6, [(8, 24, 0, 0)]),                                # lcm of the input (4) and output (4/3) groups
    (2, 8, 16, [(8, 16, 0, 0), (8, 16, 1, 2)]),                # whole words: one per group, as before
])
def test_super_groups(groups, cin_g, cout_g, words):
    """Super-groups: the fewest consecutive groups whose input and output channels are whole words."""
    rng = np.random.default_rng(groups)
    x = random_tensor("x", (groups * cin_g, 3, 3), rng)
    y = random_tensor("y", (groups * cout_g, 3, 3), rng)
    layer = ir.Conv2d(name="gc", inputs=(x,), output=y, groups=groups,
                      weight=rng.integers(-128, 128, (groups * cout_g, cin_g, 1, 1)).astype(np.int8))
    geos = group_geometries(layer, lanes(DEFAULT))
    assert [(geo.cin, geo.cout, i, o) for geo, i, o in geos] == words
    assert sum(geo.macs for geo, _, _ in geos) == layer.macs


@pytest.mark.parametrize("seed", range(16))
def test_random_grouped_conv_every_split(seed):
    """A random grouped or depthwise convolution (any group size, channels that are not whole words, any
    stride, padding and dilation, most negative weights and codes) under splits the fabric can run, on random
    macro geometries (4, 8 and 16 lanes), equals the golden operator."""
    rng = np.random.default_rng(3000 + seed)
    cfg = replace(DEFAULT, macro=MacroConfig(rows=int(rng.choice([16, 32, 64])), pages=8,
                                             cols=int(rng.choice([32, 64, 128]))),
                  fabric=replace(DEFAULT.fabric, n_macros=int(rng.choice([1, 2, 4]))))
    g = random_grouped_conv_graph(rng, GROUPED_KINDS[seed % 3])
    layer = g.layers[0]
    print(f"seed {3000 + seed}: {layer.input.shape} groups {layer.groups} k{layer.kernel} s{layer.stride} "
          f"d{layer.dilation} p{layer.padding} -> {layer.output.shape}; macro {cfg.macro.rows}x{cfg.macro.cols}, "
          f"{cfg.fabric.n_macros} macros")
    x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (2, *layer.input.shape)).astype(layer.input.dtype)
    x[0, :, 0, 0] = layer.input.qmin  # the most negative (int8) or zero (uint8) codes
    gold = run_graph(g, x)
    geo = layer_geometries(layer, cfg)[0][0]
    splits = valid_parallelisms(cfg, len(k_tiles(geo, cfg)), n_tiles(geo, cfg), geo.npos * 2)
    ran = 0
    for par in [None] + splits:
        try:
            prog = compile_graph(g, cfg, batch=2, parallelism=None if par is None else {"conv": par})
        except CompileError as e:
            assert "reduction" in str(e) and par is not None  # only a K-split too small for the pages
            continue
        got, _ = run_program(prog, {"x": x})
        assert np.array_equal(got["y"], gold["y"]), f"split {par} differs"
        ran += 1
    assert ran


def test_depthwise_most_negative_codes_and_weights():
    """Every code and every weight at its most negative value (int8 -128 x -128 over 9 taps, plus padding
    at the zero point): exact, channels not a multiple of the lanes."""
    g, xs = extreme_depthwise_graph(13)
    gold = run_graph(g, xs)
    got, _ = run_program(compile_graph(g, DEFAULT, batch=2), {"x": xs})
    assert np.array_equal(got["y"], gold["y"])


def test_tiny_mobilenet_iss():
    """A MobileNet-style model (stem, depthwise 3x3 + pointwise blocks with ReLU6 on 8, 12 and 20 channels, global
    average pool, Gemm), quantized by onnxruntime (QDQ, per-channel), fits the default preset and equals the
    golden model on every tensor."""
    from cimforge.golden.onnx_import import load_onnx
    g = load_onnx(tiny_mobilenet_onnx(12), name="tiny_mobilenet")
    assert sum(getattr(layer, "groups", 1) > 1 for layer in g.weighted_layers) == 3
    t = g.inputs[0]
    xs = np.random.default_rng(12).integers(t.qmin, t.qmax + 1, (3, *t.shape)).astype(t.dtype)
    gold = run_graph(g, xs)
    for merge in (True, False):
        got, _ = run_program(compile_graph(g, DEFAULT, batch=3, merge_images=merge), {t.name: xs})
        for name in gold:
            assert np.array_equal(got[name], gold[name]), f"tensor {name} differs (merge_images={merge})"


@pytest.mark.parametrize("groups", [2, 3])
def test_grouped_conv(groups):
    """Groups of whole words (AlexNet-style): one pass per group, reading and writing at word offsets."""
    rng = np.random.default_rng(40 + groups)
    x = random_tensor("x", (8 * groups, 5, 5), rng)
    y = random_tensor("y", (16 * groups, 5, 5), rng)
    layer = ir.Conv2d(name="gc", inputs=(x,), output=y, groups=groups, padding=(1, 1, 1, 1),
                      weight=rng.integers(-128, 128, (16 * groups, 8, 3, 3)).astype(np.int8),
                      bias=rng.integers(-999, 999, 16 * groups).astype(np.int32),
                      weight_scale=rng.uniform(0.001, 0.01, 16 * groups))
    g = ir.Graph("g", (x,), (layer,), ("y",))
    xs = rng.integers(x.qmin, x.qmax + 1, (2, *x.shape)).astype(x.dtype)
    gold = run_graph(g, xs)
    got, _ = run_program(compile_graph(g, DEFAULT, batch=2, stream=True), {"x": xs})
    assert np.array_equal(got["y"], gold["y"])


def test_activation_memory_too_small():
    g = load_digits_model("digits_cnn_qop")
    with pytest.raises(CompileError, match=r"activation memory too small.*fabric.act_depth = 4096: allowed batch "
                                           r"<= \d+, or memory 'liveness' or 'external' \(--memory\)"):
        compile_graph(g, DEFAULT, batch=500, memory="onchip")


def test_bad_parallelism():
    with pytest.raises(ValueError, match=r"Parallelism.in_ch = 0: allowed an integer in 1..64"):
        Parallelism(1, 0, 1)
    g = load_digits_model("digits_cnn_qop")

    with pytest.raises(CompileError, match=r"uses 8 macros, fabric.n_macros = 4"):
        compile_graph(g, DEFAULT, parallelism={"/0/Conv_quant": Parallelism(8, 1, 1)})
    with pytest.raises(CompileError, match=r"not weighted layers"):
        compile_graph(g, DEFAULT, parallelism={"/3/MaxPool": Parallelism()})


@pytest.mark.parametrize("model", ["ds_cnn", pytest.param("mobilenet_v1_025", marks=pytest.mark.slow),
                                   "mobilenet_v2_035_32"])
def test_separable_cnns_iss(model):
    """DS-CNN (1x49x10, 64 channels), MobileNetV1 0.25 (3x96x96) and a MobileNetV2 (inverted residuals,
    expansion 6, depthwise layers of 16..192 channels), quantized by onnxruntime (QDQ, per-channel, seed 1), on
    the default macros with deeper memories: ISS = golden on every tensor."""
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.sim.random_layers import TINY_SET, deep_memories, separable_cnn_onnx
    g = load_onnx(separable_cnn_onnx(1, *TINY_SET[model], name=model), name=model)
    assert any(getattr(layer, "is_depthwise", False) for layer in g.weighted_layers)
    t = g.inputs[0]
    xs = np.random.default_rng(1).integers(t.qmin, t.qmax + 1, (1, *t.shape)).astype(t.dtype)
    gold = run_graph(g, xs)
    got, _ = run_program(compile_graph(g, deep_memories(DEFAULT), batch=1), {t.name: xs})
    for name in gold:
        assert np.array_equal(got[name], gold[name]), f"{model}: tensor {name} differs"
