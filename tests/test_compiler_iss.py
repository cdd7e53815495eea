"""The compiler and the encoder against the golden model, through the instruction-set model (no simulator).

Both digits CNNs on fabrics of 1, 2 and 4 macros and several macro geometries (resident and streamed weights),
and randomised single layers (convolutions with every padding/stride/dilation and channel count regime, dense
layers, pools, residual adds, clamps, concatenations) under every split the fabric can run. Seeds are fixed and
printed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import Parallelism, valid_parallelisms
from cimforge.compiler.iss import run_program
from cimforge.compiler.tiling import CompileError, geometry, k_tiles, rowpack_ok
from cimforge.config import MacroConfig
from cimforge.gen.isa import lanes
from cimforge.golden import ir
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.cosim import MODELS, digits_batch, load_digits_model
from cimforge.sim.random_layers import random_conv_graph, random_tensor, random_vector_graph

DEFAULT = get_preset("default")
FABRICS = {
    "default": DEFAULT,
    "1macro": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=1)),
    "2macro": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=2)),
    "isscc22": get_preset("isscc22"),
    "single_rounding": replace(DEFAULT, fabric=replace(DEFAULT.fabric, rounding="single")),
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
        with pytest.raises(CompileError, match=r"no split fits the fabric"):
            compile_graph(g, cfg)
    else:
        assert ran


@pytest.mark.parametrize("kind", ["maxpool", "avgpool", "gap", "add", "clamp", "concat"])
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
    with pytest.raises(CompileError, match=r"layer '/0/Conv_quant'.*no split fits.*reduction of 64"):
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


def test_depthwise_conv_rejected():
    rng = np.random.default_rng(0)
    x = random_tensor("x", (4, 4, 4), rng)
    y = random_tensor("y", (4, 4, 4), rng)
    layer = ir.Conv2d(name="dw", inputs=(x,), output=y, weight=np.ones((4, 1, 3, 3), np.int8), groups=4,
                      padding=(1, 1, 1, 1))
    with pytest.raises(CompileError, match=r"groups = 4 with 1 input and 1 output channels per group: allowed "
                                           r"groups of whole activation words \(multiples of 8 channels\)"):
        compile_graph(ir.Graph("g", (x,), (layer,), ("y",)), DEFAULT)


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
    with pytest.raises(CompileError, match=r"activation memory too small.*fabric.act_depth = 4096: allowed batch"):
        compile_graph(g, DEFAULT, batch=500)


def test_bad_parallelism():
    with pytest.raises(ValueError, match=r"Parallelism.in_ch = 0: allowed an integer in 1..64"):
        Parallelism(1, 0, 1)
    g = load_digits_model("digits_cnn_qop")

    with pytest.raises(CompileError, match=r"uses 8 macros, fabric.n_macros = 4"):
        compile_graph(g, DEFAULT, parallelism={"/0/Conv_quant": Parallelism(8, 1, 1)})
    with pytest.raises(CompileError, match=r"not weighted layers"):
        compile_graph(g, DEFAULT, parallelism={"/3/MaxPool": Parallelism()})
