"""Random small CNNs with random structured-sparsity masks of every SSL group type, for compaction tests.

A network is ``conv -> [maxpool] -> conv -> flatten -> dense -> dense`` over random quantisation; the masks zero
whole filters (filter-wise), whole input channels (channel-wise), kernel rows, columns and single taps of every
filter (shape-wise) and single (channel, tap) elements, each with some probability, so that every rewrite of
:func:`cimforge.compiler.compaction.compact` and every case it must refuse appear.
"""

from __future__ import annotations

import numpy as np

from ..golden import ir
from ..sim.random_layers import random_tensor

__all__ = ["random_masked_cnn", "MASK_KINDS"]

#: The group types :func:`random_masked_cnn` draws masks of.
MASK_KINDS = ("filter", "channel", "row", "col", "tap", "element")


def _mask(rng, w: np.ndarray, kinds: set[str]) -> np.ndarray:
    """``w`` with random groups zeroed (``(cout, cin, kh, kw)``)."""
    w = w.copy()
    cout, cin, kh, kw = w.shape
    if "filter" in kinds:
        w[rng.random(cout) < 0.35] = 0
    if "channel" in kinds:
        w[:, rng.random(cin) < 0.35] = 0
    if "row" in kinds and kh > 1:
        w[:, :, rng.random(kh) < 0.4] = 0
    if "col" in kinds and kw > 1:
        w[:, :, :, rng.random(kw) < 0.4] = 0
    if "tap" in kinds:
        taps = rng.random((kh, kw)) < 0.25
        w[:, :, taps] = 0
    if "element" in kinds:
        w[:, rng.random((cin, kh, kw)) < 0.15] = 0
    return w


def random_masked_cnn(rng, kinds: set[str] | None = None) -> ir.Graph:
    """A random CNN (input ``x``, output ``y``) with masks of ``kinds`` (default: each kind with probability
    1/2). Some zeroed filters also get a zero bias, so that their constant output is the zero point."""
    kinds = set(kinds) if kinds is not None else {k for k in MASK_KINDS if rng.random() < 0.5}
    cin = int(rng.choice([1, 2, 3, 8]))
    h = w = int(rng.choice([4, 5, 6]))
    c1, c2, f1 = int(rng.integers(2, 13)), int(rng.integers(2, 21)), int(rng.integers(2, 17))
    k1, k2 = int(rng.choice([1, 2, 3])), int(rng.choice([2, 3, 5]))
    x = random_tensor("x", (cin, h, w), rng)
    layers, t = [], x

    def conv(name, t, cout, k, pad):
        _, hh, ww = t.shape
        p = [pad] * 4 if rng.random() < 0.7 else [int(v) for v in rng.integers(0, pad + 2, 4)]
        while hh + p[0] + p[2] < k:
            p[0] += 1
        while ww + p[1] + p[3] < k:
            p[1] += 1
        oh, ow = ir.conv_output_size(hh, k, 1, p[0], p[2], 1), ir.conv_output_size(ww, k, 1, p[1], p[3], 1)
        out = random_tensor(f"{name}_out", (cout, oh, ow), rng, dtype="uint8" if rng.random() < 0.6 else "int8")
        wt = _mask(rng, rng.integers(-128, 128, (cout, t.shape[0], k, k)).astype(np.int8), kinds)
        bias = rng.integers(-3000, 3000, cout).astype(np.int32)
        zero = ~np.any(wt.reshape(cout, -1), axis=1) & (rng.random(cout) < 0.5)
        bias[zero] = 0
        layer = ir.Conv2d(name=name, inputs=(t,), output=out, weight=wt, bias=bias,
                          weight_scale=rng.uniform(0.001, 0.01, cout), padding=tuple(p))
        if rng.random() < 0.7:  # a fused ReLU: the zero point is the lower clamp
            layer = ir.with_clamp(layer, out.zero_point, out.qmax)
        return layer

    def dense(name, t, n, last=False):
        out = random_tensor("y" if last else f"{name}_out", (n,), rng)
        wt = rng.integers(-128, 128, (n, t.shape[0])).astype(np.int8)
        if "filter" in kinds and not last:
            wt[rng.random(n) < 0.3] = 0
        if "channel" in kinds:
            wt[:, rng.random(t.shape[0]) < 0.2] = 0
        bias = rng.integers(-3000, 3000, n).astype(np.int32)
        return ir.Dense(name=name, inputs=(t,), output=out, weight=wt, bias=bias,
                        weight_scale=rng.uniform(0.001, 0.01, n))

    a = conv("conv1", t, c1, k1, k1 // 2)
    layers.append(a)
    t = a.output
    if rng.random() < 0.5 and t.shape[1] >= 2 and t.shape[2] >= 2:
        oh, ow = t.shape[1] // 2, t.shape[2] // 2
        p = ir.MaxPool(name="pool", inputs=(t,), output=t.renamed("pool_out", (t.shape[0], oh, ow)), kernel=(2, 2),
                       stride=(2, 2))
        layers.append(p)
        t = p.output
    b = conv("conv2", t, c2, min(k2, t.shape[1] + 2), min(k2, t.shape[1] + 2) // 2)
    layers.append(b)
    t = b.output
    flat = ir.Reshape(name="flatten", inputs=(t,), output=t.renamed("flat", (t.size,)))
    layers.append(flat)
    d1 = dense("fc1", flat.output, f1)
    layers.append(d1)
    d2 = dense("fc2", d1.output, int(rng.integers(2, 11)), last=True)
    layers.append(d2)
    return ir.Graph(name="masked_cnn", inputs=(x,), layers=tuple(layers), outputs=("y",))
