"""Random single-layer graphs (layer IR) for verification: convolutions covering padding, stride, dilation and
channel-count regimes, pools, residual adds, clamps and concatenations, with random quantisation. Used by the
compiler tests (instruction-set model) and the RTL tests alike."""

from __future__ import annotations

import numpy as np

from ..golden import ir

__all__ = ["random_tensor", "random_conv_graph", "random_vector_graph", "VECTOR_KINDS"]

VECTOR_KINDS = ("maxpool", "avgpool", "gap", "add", "clamp", "concat")


def random_tensor(name, shape, rng, dtype=None) -> ir.TensorInfo:
    """A tensor description with a random dtype (unless given), scale and zero point."""
    dtype = dtype or rng.choice(["int8", "uint8"])
    lo, hi = ir.DTYPE_RANGES[dtype]
    return ir.TensorInfo(name, tuple(shape), dtype, float(rng.uniform(0.01, 0.1)), int(rng.integers(lo, hi + 1)))


def random_conv_graph(rng, cfg=None, *, cin: int | None = None, kmax: int = 4) -> ir.Graph:
    """A graph of one random convolution ``x -> y`` (input ``x``, output ``y``, layer ``conv``).

    ``cin`` fixes the input channels (one channel and ``kmax`` up to 8 exercise row-packed inputs). A third of
    the graphs have their last taps zero in every filter (structured sparsity the compiler does not walk)."""
    cin = int(rng.choice([1, 2, 3, 5, 8, 9, 16, 20, 70, 150])) if cin is None else cin
    h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    kh, kw = int(rng.integers(1, min(kmax, h + 2) + 1)), int(rng.integers(1, min(kmax, w + 2) + 1))
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
    x = random_tensor("x", (cin, h, w), rng)
    y = random_tensor("y", (cout, oh, ow), rng)
    wt = rng.integers(-128, 128, (cout, cin, kh, kw)).astype(np.int8)
    if kh * kw > 1 and rng.random() < 1 / 3:  # prune the last taps of every filter
        cut = int(rng.integers(1, kh * kw))
        wt.reshape(cout, cin, kh * kw)[:, :, kh * kw - cut:] = 0
    bias = rng.integers(-5000, 5000, cout).astype(np.int32)
    layer = ir.Conv2d(name="conv", inputs=(x,), output=y, weight=wt, bias=bias,
                      weight_scale=rng.uniform(0.001, 0.01, cout) if rng.random() < 0.5 else 0.005,
                      stride=(sh, sw), padding=tuple(pads), dilation=(dh, dw))
    if rng.random() < 0.5:
        layer = ir.with_clamp(layer, y.zero_point, y.qmax)
    return ir.Graph("conv", (x,), (layer,), ("y",))


def random_vector_graph(kind: str, rng) -> ir.Graph:
    """A graph of one random layer without weights of ``kind`` (one of :data:`VECTOR_KINDS`), output ``y``."""
    c, h, w = int(rng.choice([3, 8, 13, 16])), int(rng.integers(2, 7)), int(rng.integers(2, 7))
    dtype = str(rng.choice(["int8", "uint8"]))
    x = random_tensor("x", (c, h, w), rng, dtype)
    if kind == "maxpool":
        k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        p = int(rng.integers(0, k))
        oh, ow = ir.conv_output_size(h, k, s, p, p, 1), ir.conv_output_size(w, k, s, p, p, 1)
        y = ir.TensorInfo("y", (c, oh, ow), dtype, x.scale, x.zero_point)
        layer = ir.MaxPool(name="pool", inputs=(x,), output=y, kernel=(k, k), stride=(s, s), padding=(p, p, p, p))
    elif kind == "avgpool":
        k = int(rng.integers(1, 4))
        oh, ow = ir.conv_output_size(h, k, k, 0, 0, 1), ir.conv_output_size(w, k, k, 0, 0, 1)
        y = random_tensor("y", (c, oh, ow), rng, dtype)
        layer = ir.AvgPool(name="pool", inputs=(x,), output=y, kernel=(k, k), stride=(k, k))
    elif kind == "gap":
        y = random_tensor("y", (c, 1, 1), rng, dtype)
        layer = ir.GlobalAvgPool(name="pool", inputs=(x,), output=y)
    elif kind == "add":
        b = random_tensor("b", (c, h, w), rng, dtype)
        y = random_tensor("y", (c, h, w), rng, dtype)
        layer = ir.Add(name="add", inputs=(x, b), output=y)
        return ir.Graph("g", (x, b), (layer,), ("y",))
    elif kind == "clamp":
        y = ir.TensorInfo("y", (c, h, w), dtype, x.scale, x.zero_point)
        layer = ir.Clamp(name="clamp", inputs=(x,), output=y, act_min=x.zero_point, act_max=x.qmax)
    elif kind == "concat":
        x = random_tensor("x", (8, h, w), rng, dtype)
        b = random_tensor("b", (c, h, w), rng, dtype)
        y = random_tensor("y", (8 + c, h, w), rng, dtype)
        layer = ir.Concat(name="cat", inputs=(x, b), output=y)
        return ir.Graph("g", (x, b), (layer,), ("y",))
    else:
        raise ValueError(kind)
    return ir.Graph("g", (x,), (layer,), ("y",))


