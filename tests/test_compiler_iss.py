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
from cimforge.compiler.tiling import CompileError, geometry, k_tiles
from cimforge.config import MacroConfig
from cimforge.gen.isa import lanes
from cimforge.golden import ir
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.cosim import MODELS, digits_batch, load_digits_model

DEFAULT = get_preset("default")
FABRICS = {
    "default": DEFAULT,
    "1macro": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=1)),
    "2macro": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=2)),
    "isscc22": get_preset("isscc22"),
    "r72c128x3": replace(DEFAULT, macro=MacroConfig(rows=72, pages=2, cols=128), fabric=replace(DEFAULT.fabric,
                                                                                                 n_macros=3)),
}


@pytest.mark.parametrize("fabric", list(FABRICS))
@pytest.mark.parametrize("model", MODELS)
def test_digits_models_iss(model, fabric):
    g = load_digits_model(model)
    cfg = FABRICS[fabric]
    inputs, _, gold = digits_batch(g, 0, 3)
    prog = compile_graph(g, cfg, batch=3)
    got, _ = run_program(prog, inputs)
    for name in gold:
        assert np.array_equal(got[name], gold[name]), f"{model} on {fabric}: tensor {name} differs"


def _tensor(name, shape, rng, dtype=None):
    dtype = dtype or rng.choice(["int8", "uint8"])
    lo, hi = ir.DTYPE_RANGES[dtype]
    return ir.TensorInfo(name, tuple(shape), dtype, float(rng.uniform(0.01, 0.1)), int(rng.integers(lo, hi + 1)))


def _random_conv(rng, cfg):
    cin = int(rng.choice([1, 2, 3, 5, 8, 9, 16, 20, 70, 150]))
    h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    kh, kw = int(rng.integers(1, min(4, h + 2) + 1)), int(rng.integers(1, min(4, w + 2) + 1))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    pads = [int(rng.integers(0, 3)) for _ in range(4)]
    while (h + pads[0] + pads[2] - dh * (kh - 1) - 1) < 0:
        pads[0] += 1
    while (w + pads[1] + pads[3] - dw * (kw - 1) - 1) < 0:
        pads[1] += 1
    oh = ir.conv_output_size(h, kh, sh, pads[0], pads[2], dh)
    ow = ir.conv_output_size(w, kw, sw, pads[1], pads[3], dw)
    cout = int(rng.integers(1, 21))
    x = _tensor("x", (cin, h, w), rng)
    y = _tensor("y", (cout, oh, ow), rng)
    wt = rng.integers(-128, 128, (cout, cin, kh, kw)).astype(np.int8)
    bias = rng.integers(-5000, 5000, cout).astype(np.int32)
    layer = ir.Conv2d(name="conv", inputs=(x,), output=y, weight=wt, bias=bias,
                      weight_scale=rng.uniform(0.001, 0.01, cout) if rng.random() < 0.5 else 0.005,
                      stride=(sh, sw), padding=tuple(pads), dilation=(dh, dw))
    if rng.random() < 0.5:
        layer = ir.with_clamp(layer, y.zero_point, y.qmax)
    return ir.Graph("conv", (x,), (layer,), ("y",))


@pytest.mark.parametrize("seed", range(12))
def test_random_conv_every_split(seed):
    """A random convolution, compiled with every split the fabric can run, equals the golden operator."""
    rng = np.random.default_rng(1000 + seed)
    cfg = replace(DEFAULT, macro=MacroConfig(rows=int(rng.choice([16, 32, 64])), pages=8, cols=64),
                  fabric=replace(DEFAULT.fabric, n_macros=int(rng.choice([1, 2, 4, 8]))))
    g = _random_conv(rng, cfg)
    layer = g.layers[0]
    print(f"seed {1000 + seed}: {layer.input.shape} k{layer.kernel} s{layer.stride} d{layer.dilation} "
          f"p{layer.padding} -> {layer.output.shape}; macro {cfg.macro.rows}x{cfg.macro.cols}, "
          f"{cfg.fabric.n_macros} macros")
    x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (2, *layer.input.shape)).astype(layer.input.dtype)
    gold = run_graph(g, x)
    geo = geometry(layer)
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


def _vector_graph(kind: str, rng):
    c, h, w = int(rng.choice([3, 8, 13, 16])), int(rng.integers(2, 7)), int(rng.integers(2, 7))
    dtype = str(rng.choice(["int8", "uint8"]))
    x = _tensor("x", (c, h, w), rng, dtype)
    if kind == "maxpool":
        k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        p = int(rng.integers(0, k))
        oh, ow = ir.conv_output_size(h, k, s, p, p, 1), ir.conv_output_size(w, k, s, p, p, 1)
        y = ir.TensorInfo("y", (c, oh, ow), dtype, x.scale, x.zero_point)
        layer = ir.MaxPool(name="pool", inputs=(x,), output=y, kernel=(k, k), stride=(s, s), padding=(p, p, p, p))
    elif kind == "avgpool":
        k = int(rng.integers(1, 4))
        oh, ow = ir.conv_output_size(h, k, k, 0, 0, 1), ir.conv_output_size(w, k, k, 0, 0, 1)
        y = _tensor("y", (c, oh, ow), rng, dtype)
        layer = ir.AvgPool(name="pool", inputs=(x,), output=y, kernel=(k, k), stride=(k, k))
    elif kind == "gap":
        y = _tensor("y", (c, 1, 1), rng, dtype)
        layer = ir.GlobalAvgPool(name="pool", inputs=(x,), output=y)
    elif kind == "add":
        b = _tensor("b", (c, h, w), rng, dtype)
        y = _tensor("y", (c, h, w), rng, dtype)
        layer = ir.Add(name="add", inputs=(x, b), output=y)
        return ir.Graph("g", (x, b), (layer,), ("y",))
    elif kind == "clamp":
        y = ir.TensorInfo("y", (c, h, w), dtype, x.scale, x.zero_point)
        layer = ir.Clamp(name="clamp", inputs=(x,), output=y, act_min=x.zero_point, act_max=x.qmax)
    elif kind == "concat":
        x = _tensor("x", (8, h, w), rng, dtype)
        b = _tensor("b", (c, h, w), rng, dtype)
        y = _tensor("y", (8 + c, h, w), rng, dtype)
        layer = ir.Concat(name="cat", inputs=(x, b), output=y)
        return ir.Graph("g", (x, b), (layer,), ("y",))
    else:
        raise ValueError(kind)
    return ir.Graph("g", (x,), (layer,), ("y",))


@pytest.mark.parametrize("kind", ["maxpool", "avgpool", "gap", "add", "clamp", "concat"])
@pytest.mark.parametrize("seed", range(4))
def test_vector_layers(kind, seed):
    rng = np.random.default_rng(2000 + seed)
    print(f"{kind}, seed {2000 + seed}")
    g = _vector_graph(kind, rng)
    xs = {t.name: rng.integers(t.qmin, t.qmax + 1, (2, *t.shape)).astype(t.dtype) for t in g.inputs}
    gold = run_graph(g, xs)
    prog = compile_graph(g, DEFAULT, batch=2)
    got, _ = run_program(prog, xs)
    assert np.array_equal(got["y"], gold["y"])


# -- errors --------------------------------------------------------------------------------------------------


def test_model_that_does_not_fit():
    g = load_digits_model("digits_cnn_qop")
    with pytest.raises(CompileError, match=r"layer '/4/Conv_quant'.*no split fits.*reduction of 72"):
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


def test_grouped_conv_rejected():
    rng = np.random.default_rng(0)
    x = _tensor("x", (4, 4, 4), rng)
    y = _tensor("y", (4, 4, 4), rng)
    layer = ir.Conv2d(name="dw", inputs=(x,), output=y, weight=np.ones((4, 1, 3, 3), np.int8), groups=4,
                      padding=(1, 1, 1, 1))
    with pytest.raises(CompileError, match=r"groups = 4: allowed 1"):
        compile_graph(ir.Graph("g", (x,), (layer,), ("y",)), DEFAULT)


def test_activation_memory_too_small():
    g = load_digits_model("digits_cnn_qop")
    with pytest.raises(CompileError, match=r"activation memory too small.*fabric.act_depth = 4096: allowed batch"):
        compile_graph(g, DEFAULT, batch=500)


def test_bad_parallelism():
    with pytest.raises(ValueError, match=r"Parallelism.in_ch = 3: allowed a power of two"):
        Parallelism(1, 3, 1)
    g = load_digits_model("digits_cnn_qop")
    with pytest.raises(CompileError, match=r"uses 8 macros, fabric.n_macros = 4"):
        compile_graph(g, DEFAULT, parallelism={"/0/Conv_quant": Parallelism(8, 1, 1)})
    with pytest.raises(CompileError, match=r"not weighted layers"):
        compile_graph(g, DEFAULT, parallelism={"/3/MaxPool": Parallelism()})
