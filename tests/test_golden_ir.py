"""The layer IR: validation messages, GEMM view and im2col order, folded bias, graph checks, runner entry points."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.golden import ops
from cimforge.golden.ir import (Add, AvgPool, Clamp, Conv2d, Dense, GlobalAvgPool, Graph, IRError, MaxPool,
                                Reshape, TensorInfo, with_clamp)
from cimforge.golden.runner import run_graph, run_layer

SEED = 5


def _conv(rng, cin=6, cout=4, groups=2, k=(3, 2), stride=(2, 1), pad=(1, 0, 1, 1), dil=(1, 2), hw=(7, 8),
          dtype="uint8"):
    x = TensorInfo("x", (cin, *hw), dtype, 0.03, 17 if dtype == "uint8" else -5)
    ho = (hw[0] + pad[0] + pad[2] - dil[0] * (k[0] - 1) - 1) // stride[0] + 1
    wo = (hw[1] + pad[1] + pad[3] - dil[1] * (k[1] - 1) - 1) // stride[1] + 1
    y = TensorInfo("y", (cout, ho, wo), "int8", 0.2, 3)
    w = rng.integers(-128, 128, (cout, cin // groups, *k)).astype(np.int8)
    return Conv2d(name="conv", inputs=(x,), output=y, weight=w, bias=rng.integers(-999, 999, cout),
                  weight_scale=rng.uniform(0.01, 0.02, cout), stride=stride, padding=pad, dilation=dil,
                  groups=groups)


def test_tensor_info_validation():
    with pytest.raises(IRError, match=r"tensor 't': invalid zero_point = 200: allowed an integer in -128..127"):
        TensorInfo("t", (1, 2, 2), "int8", 0.1, 200)
    with pytest.raises(IRError, match=r"invalid dtype = 'int16'"):
        TensorInfo("t", (4,), "int16", 0.1, 0)
    with pytest.raises(IRError, match=r"invalid scale = 0"):
        TensorInfo("t", (4,), "uint8", 0, 0)
    with pytest.raises(IRError, match=r"invalid shape"):
        TensorInfo("t", (4, 0), "uint8", 0.1, 0)


def test_conv_validation_messages():
    rng = np.random.default_rng(SEED)
    conv = _conv(rng)
    with pytest.raises(IRError, match=r"conv2d layer 'conv': invalid groups = 4: allowed a positive integer "
                                      r"dividing Cin=6 and Cout=4"):
        replace(conv, groups=4)
    with pytest.raises(IRError, match=r"invalid output shape"):
        replace(conv, stride=(1, 1))
    with pytest.raises(IRError, match=r"invalid weight.dtype"):
        replace(conv, weight=conv.weight.astype(np.float32))
    with pytest.raises(IRError, match=r"invalid act_min/act_max = \(10, 5\)"):
        replace(conv, act_min=10, act_max=5)
    with pytest.raises(IRError, match=r"invalid bias.shape"):
        replace(conv, bias=np.zeros(3, np.int32))


def test_gemm_view_and_im2col_order():
    rng = np.random.default_rng(SEED)
    conv = _conv(rng)
    g = conv.gemm
    assert (g.M, g.K, g.N, g.groups) == (conv.output.shape[1] * conv.output.shape[2], 3 * 3 * 2, 2, 2)
    assert conv.macs == g.macs == g.M * g.K * g.N * g.groups
    assert conv.weight_count == conv.weight.size
    x = rng.integers(0, 256, (3, *conv.input.shape)).astype(np.uint8)
    cols = ops.im2col(x, conv.input.zero_point, conv.kernel, conv.stride, conv.padding, conv.dilation,
                      conv.groups, conv.output.shape[1:])
    assert cols.shape == (3, g.groups, g.M, g.K)
    # one element by the documented formula: k = (ci*kh + ky)*kw + kx, m = ho*Wo + wo
    n, grp, ho, wo, ci, ky, kx = 1, 1, 2, 3, 1, 2, 1
    _, wo_n = conv.output.shape[1:]
    k = (ci * conv.kernel[0] + ky) * conv.kernel[1] + kx
    iy = ho * conv.stride[0] - conv.padding[0] + ky * conv.dilation[0]
    ix = wo * conv.stride[1] - conv.padding[1] + kx * conv.dilation[1]
    c = grp * (conv.in_channels // conv.groups) + ci
    inside = 0 <= iy < x.shape[2] and 0 <= ix < x.shape[3]
    assert cols[n, grp, ho * wo_n + wo, k] == (x[n, c, iy, ix] if inside else conv.input.zero_point)
    # the GEMM with raw codes and the folded bias is the accumulator, borders included
    y = np.stack([cols[:, i].astype(np.int64) @ conv.weight_matrix(i).astype(np.int64) for i in range(g.groups)], 1)
    y = y.transpose(0, 1, 3, 2).reshape(3, conv.out_channels, *conv.output.shape[1:])
    np.testing.assert_array_equal(y + conv.folded_bias[None, :, None, None], ops.conv2d_acc(conv, x))


def test_depthwise_flags_and_per_channel():
    rng = np.random.default_rng(SEED)
    dw = _conv(rng, cin=4, cout=4, groups=4, k=(3, 3), stride=(1, 1), pad=(1, 1, 1, 1), dil=(1, 1))
    assert dw.is_depthwise and dw.gemm.K == 9 and dw.gemm.N == 1 and dw.per_channel
    assert dw.requant.multiplier.shape == (4,) and np.all(dw.requant.multiplier >= 2**30)
    per_tensor = replace(dw, weight_scale=0.01)
    assert not per_tensor.per_channel and per_tensor.weight_scale.shape == (4,)


def test_dense_and_weight_matrix():
    rng = np.random.default_rng(SEED)
    x = TensorInfo("x", (20,), "int8", 0.05, 1)
    d = Dense(name="fc", inputs=(x,), output=TensorInfo("y", (7,), "int8", 0.3, 0),
              weight=rng.integers(-128, 128, (7, 20)).astype(np.int8), weight_scale=0.01)
    assert d.gemm.M == 1 and d.gemm.K == 20 and d.gemm.N == 7 and d.weight_matrix().shape == (20, 7)
    codes = rng.integers(-128, 128, (5, 20)).astype(np.int8)
    np.testing.assert_array_equal(codes.astype(np.int64) @ d.weight_matrix().astype(np.int64) + d.folded_bias,
                                  ops.dense_acc(d, codes))
    with pytest.raises(IRError, match=r"dense layer 'fc': invalid input shape = \(2, 10\)"):
        replace(d, inputs=(TensorInfo("x", (2, 10), "int8", 0.05, 1),))


def test_avgpool_divisors_and_with_clamp():
    x = TensorInfo("x", (2, 5, 5), "int8", 0.1, 0)
    ap = AvgPool(name="ap", inputs=(x,), output=x.renamed("y"), kernel=(3, 3), padding=(1, 1, 1, 1))
    assert ap.divisors[0, 0] == 4 and ap.divisors[0, 1] == 6 and ap.divisors[2, 2] == 9
    assert ap.requant.multiplier.shape == (5, 5)
    ap_inc = replace(ap, count_include_pad=True)
    assert (ap_inc.divisors == 9).all()
    relu = with_clamp(ap, 0, 127)
    assert (relu.act_min, relu.act_max) == (0, 127)
    with pytest.raises(IRError, match="cannot fuse a clamp"):
        with_clamp(MaxPool(name="mp", inputs=(x,), output=x.renamed("m", (2, 2, 2)), kernel=(2, 2),
                           stride=(2, 2)), 0, 127)
    gap = GlobalAvgPool(name="gap", inputs=(x,), output=TensorInfo("g", (2, 1, 1), "int8", 0.05, -3))
    assert gap.divisor == 25


def test_graph_validation():
    x = TensorInfo("x", (2, 4, 4), "int8", 0.1, 0)
    mp = MaxPool(name="mp", inputs=(x,), output=x.renamed("m", (2, 2, 2)), kernel=(2, 2), stride=(2, 2))
    flat = Reshape(name="flat", inputs=(mp.output,), output=mp.output.renamed("f", (8,)))
    g = Graph("g", (x,), (mp, flat), ("f",))
    assert g.producer("f") is flat and g.producer("x") is None and g.consumers("m") == [flat]
    assert list(g.tensors) == ["x", "m", "f"]
    with pytest.raises(IRError, match="topologically ordered"):
        Graph("g", (x,), (flat, mp), ("f",))
    with pytest.raises(IRError, match="produced only once"):
        Graph("g", (x,), (mp, replace(mp, name="mp2")), ("m",))
    with pytest.raises(IRError, match="invalid outputs = 'z'"):
        Graph("g", (x,), (mp,), ("z",))
    other = TensorInfo("m", (2, 2, 2), "int8", 0.2, 0)
    with pytest.raises(IRError, match="the producer's"):
        Graph("g", (x,), (mp, Reshape(name="r", inputs=(other,), output=other.renamed("r", (8,)))), ("r",))
    with pytest.raises(IRError, match="unique layer names"):
        Graph("g", (x,), (mp, replace(flat, name="mp")), ("f",))


def test_runner_entry_points_and_errors():
    rng = np.random.default_rng(SEED)
    a = TensorInfo("a", (3, 2, 2), "int8", 0.1, 2)
    b = TensorInfo("b", (3, 2, 2), "int8", 0.07, -4)
    add = Add(name="add", inputs=(a, b), output=TensorInfo("s", (3, 2, 2), "int8", 0.15, 0))
    clamp = Clamp(name="relu", inputs=(add.output,), output=add.output.renamed("r"), act_min=0)
    g = Graph("g", (a, b), (add, clamp), ("r",))
    xa, xb = (rng.integers(-128, 128, (2, 3, 2, 2)).astype(np.int8) for _ in range(2))
    out = run_graph(g, {"a": xa, "b": xb})
    assert set(out) == {"a", "b", "s", "r"} and out["r"].min() >= 0
    np.testing.assert_array_equal(run_layer(add, xa, xb), out["s"])
    real = (xa.astype(float) - 2) * 0.1 + (xb.astype(float) + 4) * 0.07
    assert np.abs(out["s"] - np.clip(np.rint(real / 0.15), -128, 127)).max() <= 1
    with pytest.raises(IRError, match=r"missing input\(s\) \['b'\]"):
        run_graph(g, {"a": xa})
    with pytest.raises(IRError, match=r"2 inputs: pass a dict"):
        run_graph(g, xa)
    with pytest.raises(IRError, match=r"add layer 'add': input 'a' has shape \(2, 3, 4\)"):
        run_layer(add, xa.reshape(2, 3, 4), xb)
    with pytest.raises(IRError, match=r"1 input arrays given, expected 2"):
        run_layer(add, xa)
