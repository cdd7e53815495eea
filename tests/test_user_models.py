"""Users' own small quantized CNNs, as a new user brings them: float models built here with ``onnx.helper``
(seeded random weights), quantized by onnxruntime's ``quantize_static`` on seeded random calibration data, then
run through what a user runs (``cimforge golden``, ``cimforge compile``, the ISS; the RTL in the slow cases).

The patterns are the ones the model sets (golden/model_sets.py) do not exercise: dilation, stride 2,
asymmetric pads, no bias, 1xN / Nx1 kernels, groups neither 1 nor depthwise, ``Gemm`` with ``transB=0`` and
``alpha`` / ``beta``, ``Squeeze`` / ``Unsqueeze``, padded pools, ``GlobalMaxPool``, ``Pad`` (of the graph input and mid network),
element-wise tables (one per channel for PRelu's learned slopes), squeeze-and-excitation products, nearest
``Resize`` (a decoder's upsampling and a non-integer ``sizes``), a free batch dimension, a non-square input, and
onnxruntime's uint8 x int8 form (whose kernels saturate on CPUs without AVX-VNNI, docs/golden.md). Bad inputs
must end in one line naming the node or option, exit code 2, and no partial ``--out`` directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cimforge.cli import main
from cimforge.errors import USER_EXIT

#: Seed of every weight, calibration sample and input here (printed by the fixtures that use it).
SEED = 20261201

#: (format, per_channel, activations, weights) of onnxruntime's quantize_static.
VARIANTS = {
    "qdq_pc_s8s8": ("qdq", True, "int8", "int8"),
    "qop_pt_u8s8": ("qop", False, "uint8", "int8"),
    "qdq_pt_u8u8": ("qdq", False, "uint8", "uint8"),
}


class _Net:
    """Nodes and initializers of one float model; ``c`` adds a constant, ``op`` a node."""

    def __init__(self, seed: int):
        self.rng, self.nodes, self.inits, self.n = np.random.default_rng(seed), [], [], 0

    def c(self, value) -> str:
        from onnx import numpy_helper
        self.n += 1
        self.inits.append(numpy_helper.from_array(np.asarray(value), f"c{self.n}"))
        return f"c{self.n}"

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        from onnx import helper
        self.n += 1
        out = f"{kind.lower()}{self.n}"
        self.nodes.append(helper.make_node(kind, inputs, [out], name=f"{kind}_{self.n}", **attrs))
        return out

    def w(self, *shape) -> np.ndarray:
        return (self.rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)

    def conv(self, x: str, cin: int, cout: int, k, bias: bool = True, group: int = 1, **attrs) -> str:
        k = (k, k) if isinstance(k, int) else tuple(k)
        ins = [x, self.c(self.w(cout, cin // group, *k))]
        if bias:
            ins.append(self.c((self.rng.standard_normal(cout) * 0.1).astype(np.float32)))
        return self.op("Conv", ins, kernel_shape=list(k), group=group, **attrs)

    def gemm(self, x: str, fin: int, fout: int, trans_b: int = 1, **attrs) -> str:
        w = self.w(fout, fin)
        b = (self.rng.standard_normal(fout) * 0.1).astype(np.float32)
        return self.op("Gemm", [x, self.c(w if trans_b else np.ascontiguousarray(w.T)), self.c(b)], transB=trans_b,
                       **attrs)

    def model(self, shape, outputs: list[str], batch="N", input_type=None, opset: int = 13):
        import onnx
        from onnx import TensorProto, helper
        graph = helper.make_graph(self.nodes, "user", [helper.make_tensor_value_info(
            "x", input_type or TensorProto.FLOAT, [batch, *shape])], [helper.make_empty_tensor_value_info(o)
                                                                      for o in outputs], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
        del m.graph.output[:]
        m.graph.output.extend([inferred[o] for o in outputs])
        onnx.checker.check_model(m)
        return m


def _squeeze_gemm(n: _Net):
    """Dilation 2, stride 2 with asymmetric pads and no bias, GAP -> Squeeze -> Gemm (transB=0, alpha 0.5,
    beta 2) -> Unsqueeze; a non-square input with a free batch."""
    x = n.op("Relu", [n.conv("x", 3, 8, 3, dilations=[2, 2], pads=[2, 2, 2, 2])])
    x = n.op("Relu", [n.conv(x, 8, 16, (3, 5), bias=False, strides=[2, 2], pads=[0, 1, 1, 2])])
    x = n.op("Squeeze", [n.op("GlobalAveragePool", [x]), n.c(np.array([2, 3], np.int64))])
    y = n.op("Unsqueeze", [n.gemm(x, 16, 6, trans_b=0, alpha=0.5, beta=2.0), n.c(np.array([2], np.int64))])
    return n.model((3, 10, 14), [y]), (3, 10, 14)


def _pools(n: _Net):
    """1x3 and 3x1 kernels, ReLU6, MaxPool with ceil_mode (11 -> 6: the last window half outside), groups 2, a padded AveragePool (count_include_pad 0: the divisor
    varies at the border), GlobalMaxPool -> Flatten -> Gemm; a fixed batch of 1."""
    x = n.conv("x", 3, 8, (1, 3), pads=[0, 1, 0, 1])
    x = n.op("Clip", [n.conv(x, 8, 8, (3, 1), pads=[1, 0, 1, 0]), n.c(np.float32(0)), n.c(np.float32(6))])
    x = n.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    x = n.op("Relu", [n.conv(x, 8, 8, 3, group=2, pads=[1, 1, 0, 0])])
    x = n.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    x = n.op("Flatten", [n.op("GlobalMaxPool", [x])])
    return n.model((3, 11, 11), [n.gemm(x, 8, 4)], batch=1), (3, 11, 11)


def _pads(n: _Net):
    """A Pad of the graph input and a Pad mid network before a stride-2 convolution (TF-style 'SAME')."""
    x = n.op("Pad", ["x", n.c(np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64))])
    x = n.op("Relu", [n.conv(x, 3, 8, 3)])
    x = n.op("Pad", [x, n.c(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64))])
    x = n.op("Relu", [n.conv(x, 8, 8, 3, strides=[2, 2])])
    x = n.op("Flatten", [x])
    return n.model((3, 8, 8), [n.gemm(x, 8 * 4 * 5, 3)]), (3, 8, 8)


def _activations(n: _Net):
    """Activations other than ReLU (element-wise tables, ``LUT``): Sigmoid, HardSwish, LeakyRelu, Tanh, SiLU
    (``x * Sigmoid(x)``), HardSigmoid, and HardSwish decomposed as ``x * Clip(x + 3, 0, 6) / 6`` (older
    exporters); opset 14 for HardSwish."""
    x = n.op("Sigmoid", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("HardSwish", [n.conv(x, 8, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("LeakyRelu", [n.conv(x, 8, 8, 3, pads=[1, 1, 1, 1])], alpha=0.1)
    x = n.op("Tanh", [n.conv(x, 8, 16, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    x = n.conv(x, 16, 16, 3, pads=[1, 1, 1, 1])
    x = n.op("Mul", [x, n.op("Sigmoid", [x])])
    x = n.op("HardSigmoid", [n.conv(x, 16, 16, 1)], alpha=0.2, beta=0.5)
    x = n.conv(x, 16, 16, 1)
    h = n.op("Clip", [n.op("Add", [x, n.c(np.float32(3))]), n.c(np.float32(0)), n.c(np.float32(6))])
    x = n.op("Div", [n.op("Mul", [x, h]), n.c(np.float32(6))])
    x = n.op("Flatten", [n.op("GlobalAveragePool", [x])])
    return n.model((3, 8, 8), [n.gemm(x, 16, 5)], opset=14), (3, 8, 8)


def _concat_odd(n: _Net):
    """A concatenation of 4 + 4 + 5 channels (not whole 8-lane words: placements and adds on the fabric,
    compiler/concat_placement.py), then a convolution over it."""
    a = n.op("Relu", [n.conv("x", 3, 4, 3, pads=[1, 1, 1, 1])])
    b = n.op("Relu", [n.conv("x", 3, 4, 1)])
    c = n.op("Relu", [n.conv("x", 3, 5, 3, pads=[1, 1, 1, 1])])
    x = n.op("Relu", [n.conv(n.op("Concat", [a, b, c], axis=1), 13, 8, 1)])
    return n.model((3, 6, 6), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 8, 3)]), (3, 6, 6)


def _avg_ceil(n: _Net):
    """Average pools with ``ceil_mode=1`` and ``count_include_pad=1`` (PyTorch's default divisor): onnxruntime
    divides by the taps inside the input and the explicit padding, not the end padding ``ceil_mode`` adds
    (7 -> 4 with a 2x2 window; 7 -> 4 with a 3x3 stride-2 window and pads 1; 4 -> 2 with 3x3 stride 3)."""
    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, count_include_pad=1)
    x = n.op("Relu", [n.conv(x, 8, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("AveragePool", [x], kernel_shape=[3, 3], strides=[3, 3], pads=[1, 1, 1, 1], ceil_mode=1,
             count_include_pad=1)
    return n.model((3, 7, 7), [n.gemm(n.op("Flatten", [x]), 8 * 2 * 2, 3)]), (3, 7, 7)


def _se_block(n: _Net):
    """Squeeze-and-excitation (MobileNetV3, EfficientNet): ``x * Sigmoid(conv(Relu(conv(GAP(x)))))``, the gate
    one value per channel broadcast over the plane; a HardSigmoid gate written first (``g * x``); and the product
    of two branches of one shape (gating)."""
    x = n.op("Relu", [n.conv("x", 3, 16, 3, pads=[1, 1, 1, 1])])
    s = n.op("Relu", [n.conv(n.op("GlobalAveragePool", [x]), 16, 4, 1)])
    x = n.op("Mul", [x, n.op("Sigmoid", [n.conv(s, 4, 16, 1)])])
    x = n.op("Relu", [n.conv(x, 16, 16, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    g = n.op("HardSigmoid", [n.conv(n.op("GlobalAveragePool", [x]), 16, 16, 1)], alpha=0.2, beta=0.5)
    x = n.op("Mul", [g, x])
    x = n.op("Mul", [n.op("Sigmoid", [n.conv(x, 16, 8, 1)]), n.conv(x, 16, 8, 3, pads=[1, 1, 1, 1])])
    return n.model((3, 10, 10), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 8, 4)]), (3, 10, 10)


def _banded(n: _Net):
    """Large enough for the default preset's external-memory mode (row bands through the 4096-word activation
    memory): tables (Sigmoid, HardSwish, LeakyRelu), a squeeze-and-excitation gate (its global pool of the
    whole 48x48 tensor in channel tiles, its per-channel product over banded rows), a 4 + 5 concatenation, and in the uint8-weight form weights with zero points, all banded."""
    x = n.op("Sigmoid", [n.conv("x", 3, 16, 3, pads=[1, 1, 1, 1])])
    # the gate's global pool of the whole 48x48x16 tensor (4608 words) runs in two channel tiles
    g = n.op("HardSigmoid", [n.conv(n.op("GlobalAveragePool", [x]), 16, 16, 1)], alpha=0.2, beta=0.5)
    x = n.op("Mul", [x, g])
    a = n.op("HardSwish", [n.conv(x, 16, 4, 3, pads=[1, 1, 1, 1])])
    b = n.op("Relu", [n.conv(x, 16, 5, 1)])
    x = n.op("Concat", [a, b], axis=1)
    x = n.op("LeakyRelu", [n.conv(x, 9, 16, 3, strides=[2, 2], pads=[1, 1, 1, 1])], alpha=0.1)
    return n.model((3, 48, 48), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 16, 4)],
                   opset=14), (3, 48, 48)


def _prelu(n: _Net):
    """PRelu with one learned slope per channel (face-recognition and super-resolution networks): slopes of shape
    (C, 1, 1) and (1, C, 1, 1) on planes, negative and above one among them, and (C,) on a vector between two
    Gemms; one table per channel (``LUT`` ``per_channel``)."""
    def slope(c, shape):
        v = n.rng.uniform(-0.3, 1.2, c).astype(np.float32)
        v[0] = -0.5
        return n.c(v.reshape(shape))

    x = n.op("PRelu", [n.conv("x", 3, 12, 3, pads=[1, 1, 1, 1]), slope(12, (12, 1, 1))])
    x = n.op("PRelu", [n.conv(x, 12, 16, 3, strides=[2, 2], pads=[1, 1, 1, 1]), slope(16, (1, 16, 1, 1))])
    x = n.op("Flatten", [n.op("GlobalAveragePool", [x])])
    x = n.op("PRelu", [n.gemm(x, 16, 10), slope(10, (10,))])
    return n.model((3, 8, 8), [n.gemm(x, 10, 4)]), (3, 8, 8)


def _upsample(n: _Net):
    """A U-Net / FPN decoder step: a stride-2 convolution, a nearest ``Resize`` by 2 back to the input's size,
    concatenated with a skip branch; then a ``Resize`` to a non-integer 5x7 by ``sizes`` (a downsampling in
    ``asymmetric`` mode)."""
    skip = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    low = n.op("Relu", [n.conv(skip, 8, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    up = n.op("Resize", [low, n.c(np.zeros(0, np.float32)), n.c(np.array([1, 1, 2, 2], np.float32))],
              mode="nearest")
    x = n.op("Concat", [up, skip], axis=1)
    x = n.op("Relu", [n.conv(x, 16, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("Resize", [x, n.c(np.zeros(0, np.float32)), "", n.c(np.array([1, 8, 5, 7], np.int64))],
             mode="nearest", coordinate_transformation_mode="asymmetric")
    x = n.op("Relu", [n.conv(x, 8, 8, 3)])
    # a fixed batch of 1, as exporters write a constant ``sizes`` (whose batch entry would resize the batch too)
    return n.model((3, 8, 8), [n.gemm(n.op("Flatten", [x]), 8 * 3 * 5, 4)], batch=1), (3, 8, 8)


def _decoder(n: _Net):
    """A YOLO / FPN neck large enough for the default preset's external-memory mode: a stride-2 branch, a
    nearest ``Resize`` by 2 of its 32 channels back to 24x24 (2304 words), concatenated with the 16-channel skip;
    the resize runs in row bands (each stages the source rows it copies)."""
    skip = n.op("Relu", [n.conv("x", 3, 16, 3, pads=[1, 1, 1, 1])])
    low = n.op("Relu", [n.conv(n.op("MaxPool", [skip], kernel_shape=[2, 2], strides=[2, 2]), 16, 32, 3,
                               pads=[1, 1, 1, 1])])
    up = n.op("Resize", [low, n.c(np.zeros(0, np.float32)), n.c(np.array([1, 1, 2, 2], np.float32))],
              mode="nearest")
    x = n.op("Relu", [n.conv(n.op("Concat", [up, skip], axis=1), 48, 8, 3, pads=[1, 1, 1, 1])])
    return n.model((3, 24, 24), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 8, 4)]), (3, 24, 24)


def _reduce(n: _Net):
    """PyTorch's ``x.mean((2, 3))`` and ``amax``: ``ReduceMean`` over the spatial axes with ``keepdims`` 1 (then a
    Flatten, which onnxruntime quantizes after) and 0, ``ReduceMax`` with ``keepdims`` 0; opset 18, where the
    axes are an input (negative in one)."""
    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    axes, neg = n.c(np.array([2, 3], np.int64)), n.c(np.array([-1, -2], np.int64))
    kept = n.gemm(n.op("Flatten", [n.op("ReduceMean", [x, axes], keepdims=1)]), 8, 4)
    mean = n.gemm(n.op("ReduceMean", [x, neg], keepdims=0), 8, 4)
    peak = n.gemm(n.op("ReduceMax", [x, axes], keepdims=0), 8, 4)
    return n.model((3, 7, 9), [n.op("Add", [n.op("Add", [kept, mean]), peak])], opset=18), (3, 7, 9)


def _slices(n: _Net):
    """Slices and Splits as exporters write them: ``torch.split`` of the channels (sizes 5 and 11), a channel
    Slice ``x[:, 4:12]`` added back, YOLOv5's Focus (``x[..., ::2, ::2]`` and its three shifts, one with negative
    axes, ends past the size) concatenated, and a crop ``x[:, 2:7, 1:-1]`` before the classifier."""
    from onnx import helper

    def c64(*v):
        return n.c(np.array(v, np.int64))
    x = n.op("Relu", [n.conv("x", 3, 16, 3, pads=[1, 1, 1, 1])])
    n.nodes.append(helper.make_node("Split", [x, c64(5, 11)], ["lo", "hi"], axis=1, name="Split_ch"))
    mid = n.op("Slice", [x, c64(4), c64(12), c64(1)])
    y = n.op("Relu", [n.op("Add", [n.conv(n.op("Concat", [n.conv("lo", 5, 4, 1), n.conv("hi", 11, 4, 3, pads=[1, 1, 1, 1])],
                                                           axis=1), 8, 8, 1), mid])])
    parts = [n.op("Slice", [y, c64(*b), c64(2 ** 31, 2 ** 31), c64(*ax), c64(2, 2)])
             for b, ax in [((0, 0), (2, 3)), ((1, 0), (2, 3)), ((0, 1), (2, 3)), ((1, 1), (-2, -1))]]
    z = n.op("Relu", [n.conv(n.op("Concat", parts, axis=1), 32, 8, 3, pads=[1, 1, 1, 1])])
    crop = n.op("Slice", [z, c64(2, 1), c64(7, -1), c64(1, 2)])
    return n.model((3, 8, 10), [n.gemm(n.op("Flatten", [crop]), 5 * 2 * 5, 4)]), (3, 8, 10)


def _ghost(n: _Net):
    """GhostNet's module: a primary 1x1 convolution, a cheap depthwise one on it, both concatenated and sliced to
    the output's channels (``out[:, :oup]``), read by a global pool: onnxruntime's QOperator form leaves the
    Slice in float, so the pool reads it unquantized (the selection's codes are kept exactly)."""
    p = n.op("Relu", [n.conv("x", 3, 6, 1)])
    cheap = n.op("Relu", [n.conv(p, 6, 6, 3, group=6, pads=[1, 1, 1, 1])])
    ghost = n.op("Slice", [n.op("Concat", [p, cheap], axis=1)] + [n.c(np.array([v], np.int64)) for v in (0, 10, 1)])
    return n.model((3, 8, 8), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [ghost])]), 10, 4)]), (3, 8, 8)


def _pixel_shuffle(n: _Net):
    """Super-resolution and space-to-depth stems: ``SpaceToDepth`` by 2 after a first convolution, then two
    sub-pixel upsamplers (``DepthToSpace`` by 2 in CRD, PyTorch's PixelShuffle, and in DCR, TensorFlow's), each
    followed by a ReLU and a convolution (EDSR / ESPCN)."""
    x = n.op("Relu", [n.conv("x", 3, 4, 3, pads=[1, 1, 1, 1])])
    x = n.op("Relu", [n.conv(n.op("SpaceToDepth", [x], blocksize=2), 16, 16, 3, pads=[1, 1, 1, 1])])  # 4x4
    x = n.op("Relu", [n.op("DepthToSpace", [x], blocksize=2, mode="CRD")])                             # 4 @ 8x8
    x = n.op("Relu", [n.conv(x, 4, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("Relu", [n.op("DepthToSpace", [x], blocksize=2, mode="DCR")])                             # 2 @ 16x16
    x = n.op("Relu", [n.conv(x, 2, 4, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    return n.model((3, 8, 8), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 4, 3)]), (3, 8, 8)


def _gc_block(n: _Net):
    """Global-context blocks (GCNet, attention heads): ``x + transform(GAP(x))``, a computed one value per
    channel ``(N, C, 1, 1)`` added over the plane, in both operand orders, each before a ReLU."""
    x = n.op("Relu", [n.conv("x", 3, 16, 3, pads=[1, 1, 1, 1])])
    g = n.conv(n.op("Relu", [n.conv(n.op("GlobalAveragePool", [x]), 16, 4, 1)]), 4, 16, 1)
    x = n.op("Relu", [n.op("Add", [x, g])])
    x = n.op("Relu", [n.conv(x, 16, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    g = n.conv(n.op("GlobalAveragePool", [x]), 8, 8, 1)
    x = n.op("Relu", [n.op("Add", [g, x])])
    return n.model((3, 10, 10), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 8, 4)]), (3, 10, 10)


def _differences(n: _Net):
    """Differences of two computed tensors: a denoiser's residual ``y - noise(y)`` (DnCNN), and a centring
    ``x - GAP(x)`` (one value per channel subtracted over the plane), each read by a convolution."""
    y = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("Sub", [y, n.conv(n.op("Relu", [n.conv(y, 8, 8, 3, pads=[1, 1, 1, 1])]), 8, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("Relu", [n.conv(x, 8, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("Relu", [n.conv(n.op("Sub", [x, n.op("GlobalAveragePool", [x])]), 8, 8, 3, strides=[2, 2],
                             pads=[1, 1, 1, 1])])
    return n.model((3, 8, 8), [n.gemm(n.op("Flatten", [x]), 8 * 4 * 4, 4)]), (3, 8, 8)


def _split_equal(n: _Net):
    """Opset 18's ``Split`` by ``num_outputs``: 8 channels into 3, 3 and 2 (the last part smaller), each through
    its own convolution, concatenated again."""
    from onnx import helper
    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    n.nodes.append(helper.make_node("Split", [x], ["a", "b", "c"], axis=1, num_outputs=3, name="Split_3"))
    y = n.op("Concat", [n.op("Relu", [n.conv(p, k, 4, 3, pads=[1, 1, 1, 1])]) for p, k in (("a", 3), ("b", 3), ("c", 2))],
             axis=1)
    return n.model((3, 6, 6), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [y])]), 12, 4)], opset=18), (3, 6, 6)


def _shufflenet_v2(n: _Net):
    """torchvision's ShuffleNetV2 as ``torch.onnx.export`` writes it, scaled down: stride-2 units of two
    branches, stride-1 units that ``chunk`` the channels in two (``Split``), pass one half and run the other
    through 1x1 -> depthwise 3x3 -> 1x1, the channel shuffle (``Reshape`` to (N, 2, C/2, H, W), ``Transpose``,
    ``Reshape`` back) after each concatenation, and ``x.mean([2, 3])`` (``ReduceMean``) before the classifier."""
    from onnx import helper

    def c64(*v):
        return n.c(np.array(v, np.int64))

    def relu_conv(x, cin, cout, k=1, **attrs):
        return n.op("Relu", [n.conv(x, cin, cout, k, **attrs)])

    def branch(x, cin, cout, stride):
        y = relu_conv(x, cin, cout)
        y = n.conv(y, cout, cout, 3, group=cout, strides=[stride, stride], pads=[1, 1, 1, 1])
        return relu_conv(y, cout, cout)

    def shuffle(x, c, hw):
        y = n.op("Reshape", [x, c64(-1, 2, c // 2, hw, hw)])
        return n.op("Reshape", [n.op("Transpose", [y], perm=[0, 2, 1, 3, 4]), c64(-1, c, hw, hw)])

    def unit(x, cin, cout, stride, hw):
        if stride == 2:
            left = n.conv(x, cin, cin, 3, group=cin, strides=[2, 2], pads=[1, 1, 1, 1])
            parts = [relu_conv(left, cin, cout // 2), branch(x, cin, cout // 2, 2)]
        else:
            a, b = f"split{n.n}a", f"split{n.n}b"
            n.nodes.append(helper.make_node("Split", [x, c64(cin // 2, cin // 2)], [a, b], axis=1,
                                            name=f"Split_{n.n}"))
            parts = [a, branch(b, cin // 2, cout // 2, 1)]
        return shuffle(n.op("Concat", parts, axis=1), cout, hw)

    x = n.op("MaxPool", [relu_conv("x", 3, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])], kernel_shape=[3, 3],
             strides=[2, 2], pads=[1, 1, 1, 1])
    x = unit(unit(x, 8, 16, 2, 4), 16, 16, 1, 4)
    x = unit(unit(x, 16, 32, 2, 2), 32, 32, 1, 2)
    x = n.op("ReduceMean", [relu_conv(x, 32, 64)], axes=[2, 3], keepdims=0)
    return n.model((3, 32, 32), [n.gemm(x, 64, 5)]), (3, 32, 32)


def _concat_spatial(n: _Net):
    """Concatenations along a spatial axis: two branches of 4 and 2 rows stacked along the height (a copy of
    each at its pixel offset), and a YOLO head's ``Concat`` of per-scale predictions reshaped to ``(N, C, H*W)``
    along the anchors (``(C, L)`` tensors are stored as one row)."""
    a = n.op("Relu", [n.conv("x", 3, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])])      # (8, 4, 4)
    b = n.op("Relu", [n.conv("x", 3, 8, 3, strides=[4, 2], pads=[1, 1, 1, 1])])      # (8, 2, 4)
    y = n.op("Relu", [n.conv(n.op("Concat", [a, b], axis=2), 8, 8, 3, pads=[1, 1, 1, 1])])   # (8, 6, 4)
    heads = [n.op("Reshape", [n.conv(t, 8, 6, 1), n.c(np.array([0, 6, -1], np.int64))]) for t in (y, a)]
    return n.model((3, 8, 8), [n.op("Concat", heads, axis=2)]), (3, 8, 8)               # (6, 24 + 16)


def _reflect_pads(n: _Net):
    """Style-transfer / CycleGAN padding (PyTorch's ReflectionPad2d and ReplicationPad2d): a reflect Pad of the
    float graph input before a 7x7 convolution, a reflect Pad mid network and an asymmetric edge Pad, each a
    gather of rows and columns (codes copied)."""
    x = n.op("Pad", ["x", n.c(np.array([0, 0, 3, 3, 0, 0, 3, 3], np.int64))], mode="reflect")
    y = n.op("Relu", [n.conv(x, 3, 8, 7)])                                             # (8, 8, 8)
    y = n.op("Pad", [y, n.c(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode="reflect")
    y = n.op("Relu", [n.conv(y, 8, 8, 3, strides=[2, 2])])                              # (8, 4, 4)
    y = n.op("Pad", [y, n.c(np.array([0, 0, 2, 0, 0, 0, 0, 1], np.int64))], mode="edge")  # (8, 6, 5)
    return n.model((3, 8, 8), [n.op("Relu", [n.conv(y, 8, 8, 3)])]), (3, 8, 8)


def _gathers(n: _Net):
    """Gathers of a computed tensor by constant indices (``x[:, idx]``, a channel reorder with repeats; rows and
    columns picked, a negative index among them): one-hot 1x1 convolutions and row / column gathers."""
    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])                        # (8, 8, 8)
    ch = n.op("Gather", [x, n.c(np.array([7, 0, 3, 3, 5, -2], np.int64))], axis=1)      # (6, 8, 8)
    y = n.op("Relu", [n.conv(ch, 6, 8, 3, pads=[1, 1, 1, 1])])
    rows = n.op("Gather", [y, n.c(np.array([0, 2, 4, 6, 7], np.int64))], axis=2)        # (8, 5, 8)
    cols = n.op("Gather", [rows, n.c(np.array([1, -1, 3], np.int32))], axis=-1)         # (8, 5, 3)
    return n.model((3, 8, 8), [n.gemm(n.op("Flatten", [cols]), 8 * 5 * 3, 4)]), (3, 8, 8)


def _conv_transpose(n: _Net):
    """Transposed convolutions as decoders, GANs and U-Nets write them: DCGAN's kernel 4 stride 2 pads 1,
    kernel 3 stride 2 pads 1 with output_padding 1, stride 1 (a convolution's padding), groups 2 with kernel 2
    stride 2 and no bias, dilation 2, and pads beyond the kernel (a crop)."""
    def convt(x, cin, cout, k, group=1, bias=True, **attrs):
        ins = [x, n.c(n.w(cin, cout // group, k, k))]
        if bias:
            ins.append(n.c((n.rng.standard_normal(cout) * 0.1).astype(np.float32)))
        return n.op("Relu", [n.op("ConvTranspose", ins, kernel_shape=[k, k], group=group, **attrs)])

    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    x = convt(x, 8, 8, 4, strides=[2, 2], pads=[1, 1, 1, 1])                       # 5 -> 10
    x = convt(x, 8, 6, 3, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])  # 10 -> 20
    x = convt(x, 6, 6, 3, pads=[1, 1, 1, 1])                                         # 20 -> 20
    x = convt(x, 6, 4, 2, group=2, bias=False, strides=[2, 2])                       # 20 -> 40
    x = n.conv(x, 4, 8, 3, strides=[4, 4])                                           # 40 -> 10
    x = convt(x, 8, 4, 3, strides=[2, 2], pads=[2, 2, 2, 2], dilations=[2, 2])       # 10 -> 19
    x = convt(x, 4, 4, 3, strides=[1, 1], pads=[3, 2, 3, 2])                         # 19 -> 15 x 17: a crop
    return n.model((3, 5, 5), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 4, 3)]), (3, 5, 5)


def _unet_step(n: _Net):
    """A U-Net step too big for the default preset's activation memory: a stride-2 encoder convolution, a
    ConvTranspose back up (its gather in row bands), concatenated with the skip."""
    skip = n.op("Relu", [n.conv("x", 3, 16, 3, pads=[1, 1, 1, 1])])
    low = n.op("Relu", [n.conv(skip, 16, 32, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    up = n.op("Relu", [n.op("ConvTranspose", [low, n.c(n.w(32, 16, 2, 2))], kernel_shape=[2, 2], strides=[2, 2])])
    x = n.op("Relu", [n.conv(n.op("Concat", [up, skip], axis=1), 32, 8, 3, pads=[1, 1, 1, 1])])
    return n.model((3, 48, 48), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 8, 4)]), (3, 48, 48)


def _dynamic_flatten(n: _Net):
    """PyTorch's ``x.view(x.size(0), -1)`` with a dynamic batch: ``Shape -> Gather -> Unsqueeze -> Concat ->
    Reshape``; ``x.view(b, c, 2, -1)`` from the shape's channel entry (``Slice`` of the shape, ``Mul``), a
    convolution over that (8, 2, 8) plane, and ``x.view(b, c, -1)`` before the flatten."""
    def c64(v):
        return n.c(np.array(v, np.int64))
    x = n.op("MaxPool", [n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])], kernel_shape=[2, 2],
             strides=[2, 2])
    sh = n.op("Shape", [x])
    b = n.op("Unsqueeze", [n.op("Gather", [sh, n.c(np.array(0, np.int64))], axis=0), c64([0])])
    c = n.op("Mul", [n.op("Slice", [sh, c64([1]), c64([2])]), c64([1])])
    y = n.op("Reshape", [x, n.op("Concat", [b, c, c64([2, -1])], axis=0)])    # (N, 8, 2, 8)
    y = n.op("Relu", [n.conv(y, 8, 8, 3, pads=[1, 1, 1, 1])])
    y = n.op("Reshape", [y, n.op("Concat", [b, c, c64([-1])], axis=0)])       # (N, 8, 16)
    y = n.op("Reshape", [y, n.op("Concat", [b, c64([-1])], axis=0)])          # (N, 128)
    return n.model((3, 8, 8), [n.gemm(y, 8 * 16, 4)]), (3, 8, 8)


MODELS = {"squeeze_gemm": _squeeze_gemm, "pools": _pools, "pads": _pads, "activations": _activations,
          "concat_odd": _concat_odd, "avg_ceil": _avg_ceil, "se_block": _se_block, "banded": _banded,
          "prelu": _prelu, "upsample": _upsample, "decoder": _decoder, "reduce": _reduce,
          "slices": _slices, "split_equal": _split_equal, "shufflenet_v2": _shufflenet_v2,
          "dynamic_flatten": _dynamic_flatten, "ghost": _ghost,
          "pixel_shuffle": _pixel_shuffle, "gc_block": _gc_block, "differences": _differences,
          "concat_spatial": _concat_spatial, "reflect_pads": _reflect_pads,
          "gathers": _gathers}


def _quantize(proto, shape, dst: Path, fmt: str, per_channel: bool, act: str, wt: str, dtype=np.float32,
              **options) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src = dst.with_name(dst.stem + "_float.onnx")
    onnx.save(proto, str(src))
    rng = np.random.default_rng(SEED)
    if dtype == np.uint8:
        data = [rng.integers(0, 256, (1, *shape)).astype(np.uint8) for _ in range(8)]
    else:
        data = [rng.standard_normal((1, *shape)).astype(np.float32) for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            v = next(self.it, None)
            return None if v is None else {"x": v}

    qt = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8, "int4": QuantType.QInt4, "int16": QuantType.QInt16}
    root = logging.getLogger()
    level, _ = root.level, root.setLevel(logging.ERROR)  # the quantizer's pre-processing advice
    try:
        quantize_static(str(src), str(dst), Reader(), per_channel=per_channel, activation_type=qt[act],
                        weight_type=qt[wt], quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        **options)
    finally:
        root.setLevel(level)
    return dst


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Every model of :data:`MODELS` in every form of :data:`VARIANTS`."""
    print(f"weights and calibration seed {SEED}")
    d = tmp_path_factory.mktemp("user_models")
    out = {}
    for name, build in MODELS.items():
        for var, q in VARIANTS.items():
            proto, shape = build(_Net(SEED))
            out[(name, var)] = _quantize(proto, shape, d / f"{name}__{var}.onnx", *q)
    return out


def _user_error(capsys, argv: list[str], *named: str) -> str:
    """Run ``argv``: one line ``cimforge CMD: error: ...`` naming each of ``named``, exit 2, no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    print(f"{' '.join(argv)} -> {rc}: {err!r}")
    assert rc == USER_EXIT and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cimforge {argv[0]}: error: "), err
    for name in named:
        assert name in lines[0], f"{name!r} missing from {lines[0]!r}"
    return lines[0]


# -- supported models: golden agrees with onnxruntime, compile succeeds, the ISS equals the golden model --------

@pytest.mark.parametrize("var", list(VARIANTS))
@pytest.mark.parametrize("name", list(MODELS))
def test_golden_meets_the_bound(models, name, var, capsys):
    """``cimforge golden --check``: every tensor >= 99.9 % identical, max 1 LSB, layer by layer (a uint8 x int8
    tensor that onnxruntime's saturating kernel misses is judged against the exact evaluation, and says so)."""
    rc = main(["golden", str(models[(name, var)]), "--samples", "6", "--seed", str(SEED), "--check"])
    out = capsys.readouterr().out
    print(out[-1500:])
    assert rc == 0 and "acceptance" in out and ": met" in out


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("var", ["qdq_pc_s8s8", "qop_pt_u8s8"])
def test_compile_and_iss_equal_golden(models, name, var, tmp_path, capsys):
    """``cimforge compile`` writes the program; the ISS runs it equal to the golden model on every tensor."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.iss import run_program
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden.cli import random_inputs, to_codes
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.golden.runner import run_graph
    from cimforge.presets import get_preset

    path = models[(name, var)]
    assert main(["compile", str(path), "--preset", "default", "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "cycles.json").read_text())["run_cycles"] > 0
    capsys.readouterr()
    graph = split_host_tail(load_onnx(path)).fabric
    codes = to_codes(graph, random_inputs(graph, 2, SEED))
    prog = compile_graph(graph, get_preset("default"), batch=2)
    got, _ = run_program(prog, {graph.inputs[0].name: codes})
    want = run_graph(graph, codes)
    compared = [t for t in got if t in want]
    assert graph.outputs[0] in compared
    for t in compared:
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"{name} {var}: tensor {t}")


def _golden_met_and_iss_exact(path: Path, capsys) -> None:
    """``cimforge golden --check`` meets the bound against onnxruntime; compiled on the default preset at batch 2,
    the ISS equals the golden model on every tensor both hold."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.iss import run_program
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden.cli import random_inputs, to_codes
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.golden.runner import run_graph
    from cimforge.presets import get_preset

    rc = main(["golden", str(path), "--samples", "4", "--seed", str(SEED), "--check"])
    out = capsys.readouterr().out
    assert rc == 0 and ": met" in out, out[-1500:]
    graph = split_host_tail(load_onnx(path)).fabric
    codes = to_codes(graph, random_inputs(graph, 2, SEED))
    got, _ = run_program(compile_graph(graph, get_preset("default"), batch=2), {graph.inputs[0].name: codes})
    want = run_graph(graph, codes)
    assert set(graph.outputs) <= set(got)
    for t in (t for t in got if t in want):
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"tensor {t}")


def _table_then_max(n):  # a float Tanh (never quantized by onnxruntime) read by a max pool
    x = n.op("MaxPool", [n.op("Tanh", [n.conv("x", 3, 5, 3)])], kernel_shape=[2, 2], strides=[2, 2])
    return n.model((3, 9, 9), [n.gemm(n.op("Flatten", [x]), 5 * 3 * 3, 3)]), (3, 9, 9)


def _table_then_global_max(n):
    x = n.op("GlobalMaxPool", [n.op("HardSwish", [n.conv("x", 3, 6, 3)])])
    return n.model((3, 7, 7), [n.conv(x, 6, 4, 1)], opset=14), (3, 7, 7)  # HardSwish: opset 14


def _table_into_sum(n):  # a Sum of a float table and a quantized branch: one dtype on both inputs
    x = n.op("Relu", [n.conv("x", 3, 6, 3)])
    x = n.op("Sum", [n.op("Tanh", [n.conv(x, 6, 6, 1)]), n.conv(x, 6, 6, 1)])
    return n.model((3, 7, 7), [n.conv(x, 6, 4, 1)]), (3, 7, 7)


@pytest.mark.parametrize("act", ["int8", "uint8"])
@pytest.mark.parametrize("fmt", ["qdq", "qop"])
@pytest.mark.parametrize("build", [_table_then_max, _table_then_global_max, _table_into_sum],
                         ids=["max", "global_max", "sum"])
def test_float_table_read_by_another_layer(build, fmt, act, tmp_path, capsys):
    """An element-wise operator onnxruntime leaves in float (Tanh, HardSwish), read by a max pool (which
    commutes with quantisation: the table is quantized like the pool's output, exact) or by a Sum (quantized
    into the model's own activation dtype, so that both inputs of the add share it; a uint8 model once got an
    int8 copy, and an IR error or a compile refusal): golden meets the bound, the ISS equals it."""
    print(f"weights and calibration seed {SEED}")
    proto, shape = build(_Net(SEED))
    _golden_met_and_iss_exact(_quantize(proto, shape, tmp_path / "m.onnx", fmt, fmt == "qdq", act, act), capsys)


@pytest.mark.parametrize("fmt,act", [("qdq", "int8"), ("qop", "uint8")])
def test_sum_of_three_before_a_relu(fmt, act, tmp_path, capsys):
    """A Sum of three branches, then Relu (onnxruntime keeps the sum in float): the fabric adds two at a time,
    the partial sum quantized on a scale covering its range where the output's does not (it took the output's
    post-Relu quantisation: every negative partial sum became 0, 195 LSB off onnxruntime). Numerics "onnx" is
    onnxruntime's float sum and meets the bound; the fabric's form has one extra rounding (within 2 LSB, printed)
    and runs exact on the ISS."""
    from cimforge.golden.cli import onnx_feeds, random_inputs, to_codes
    from cimforge.golden.compare import compare_tensors, layerwise, ort_tensors
    from cimforge.golden.onnx_import import load_onnx

    print(f"weights and calibration seed {SEED}, inputs seed {SEED}")
    n = _Net(SEED)
    s = n.op("Sum", [n.conv("x", 3, 8, 1), n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1]), n.conv("x", 3, 8, 1)])
    path = _quantize(n.model((3, 6, 6), [n.conv(n.op("Relu", [s]), 8, 4, 1)]), (3, 6, 6), tmp_path / "sum3.onnx",
                     fmt, True, act, "int8")
    _golden_met_and_iss_exact(path, capsys)
    graph = load_onnx(path)  # numerics "fabric"
    x = random_inputs(graph, 4, SEED)
    a = compare_tensors(layerwise(graph, ref := ort_tensors(path, graph, onnx_feeds(graph, x, to_codes(graph, x))),
                                  "single"), ref)
    print(a.format(per_tensor=True))
    assert a.max_diff <= 2


@pytest.mark.parametrize("act,wt", [("int8", "int8"), ("uint8", "uint8"), ("int8", "int4")])
def test_contrib_quantize_dequantize(act, wt, tmp_path, capsys):
    """``quantize_static(extra_options={"UseQDQContribOps": True})`` writes com.microsoft QuantizeLinear /
    DequantizeLinear (the only way to int4 weights on older opsets): the golden model meets the bound against
    onnxruntime, and the ISS equals it on every tensor; int16 activations are refused by node and dtype."""
    print(f"weights and calibration seed {SEED}")
    proto, shape = _activations(_Net(SEED))
    path = _quantize(proto, shape, tmp_path / "contrib.onnx", "qdq", True, act, wt,
                     extra_options={"UseQDQContribOps": True})
    import onnx
    assert {n.domain for n in onnx.load(str(path)).graph.node if n.op_type.endswith("Linear")} == {"com.microsoft"}
    _golden_met_and_iss_exact(path, capsys)
    if act == "int8":
        wide = _quantize(proto, shape, tmp_path / "int16.onnx", "qdq", True, "int16", wt,
                         extra_options={"UseQDQContribOps": True})
        _user_error(capsys, ["golden", str(wide)], "QuantizeLinear", "int16", "int8 or uint8")


def test_new_patterns_import_as_existing_kinds(models):
    """MaxPool's ceil_mode is end padding, Squeeze/Unsqueeze are reshapes, GlobalMaxPool a whole-plane max pool, a Pad a depthwise 1x1 convolution of weight 1 with the Pad's padding, Gemm's alpha in the weight scale."""
    import onnx
    from onnx import numpy_helper

    from cimforge.golden.onnx_import import load_onnx

    g = load_onnx(models[("pools", "qdq_pc_s8s8")])
    layers = {l.name: l for l in g.layers}
    # ceil_mode: 11 -> 6, the last window reaching one row and column of end padding
    assert layers["MaxPool_10"].output.shape == (8, 6, 6) and layers["MaxPool_10"].padding == (0, 0, 1, 1)
    assert layers["AveragePool_15"].padding == (1, 1, 1, 1) and layers["AveragePool_15"].output.shape == (8, 3, 3)
    gmp = layers["GlobalMaxPool_16"]
    assert gmp.kind == "maxpool" and gmp.kernel == (3, 3) and gmp.output.shape == (8, 1, 1)
    assert layers["GlobalMaxPool_16/requant"].kind == "concat"  # its QuantizeLinear requantises
    p = load_onnx(models[("pads", "qop_pt_u8s8")])
    pads = [l for l in p.layers if l.kind == "conv2d" and l.groups == l.in_channels and (l.weight == 1).all()]
    assert [l.padding for l in pads] == [(1, 2, 1, 2), (0, 0, 1, 1)]
    assert p.inputs[0].shape == (3, 8, 8)
    s = load_onnx(models[("squeeze_gemm", "qdq_pc_s8s8")])
    assert [l.output.shape for l in s.layers if l.kind == "reshape"] == [(16,), (6, 1)]
    gemm = next(l for l in s.layers if l.kind == "dense")
    w = next(i for i in onnx.load(str(models[("squeeze_gemm", "qdq_pc_s8s8")])).graph.initializer
             if i.name.endswith("_scale") and list(i.dims) == [6])  # the Gemm's per-channel weight scales
    np.testing.assert_allclose(gemm.weight_scale, 0.5 * numpy_helper.to_array(w), rtol=1e-6)  # alpha 0.5
    # ReduceMean / ReduceMax over (2, 3): global pools over the 7x9 plane, keepdims 0 a reshape to (C,)
    r = load_onnx(models[("reduce", "qop_pt_u8s8")])
    kinds = [(l.kind, l.output.shape) for l in r.layers if l.kind in ("global_avgpool", "maxpool", "reshape")]
    assert sorted(kinds) == sorted([("global_avgpool", (8, 1, 1)), ("reshape", (8,)), ("global_avgpool", (8, 1, 1)),
                                    ("reshape", (8,)), ("maxpool", (8, 1, 1)), ("reshape", (8,))]), kinds
    assert next(l for l in r.layers if l.kind == "maxpool").kernel == (7, 9)


def test_gemm_beta_in_the_bias(models, tmp_path, capsys):
    """A QDQ Gemm with beta 2 and its dequantized bias halved is the same function (onnxruntime's quantizer
    folds beta, another tool may not): the golden model still meets the bound."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(models[("squeeze_gemm", "qdq_pc_s8s8")]))
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    dq = next(n for n in proto.graph.node if n.output[0] == gemm.input[2])
    init = next(i for i in proto.graph.initializer if i.name == dq.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) / np.float32(2), init.name))
    beta = next(a for a in gemm.attribute if a.name == "beta")
    beta.f = 2.0
    path = tmp_path / "beta.onnx"
    onnx.save(proto, str(path))
    assert main(["golden", str(path), "--samples", "6", "--check"]) == 0
    capsys.readouterr()


def test_exact_reference_of_mixed_sign_layers(models):
    """The exact evaluation that judges uint8 x int8 layers equals the golden model's layers (max 1 LSB, where
    the fixed-point requantisation and the float32 one round a near-tie apart), on onnxruntime's own inputs."""
    from cimforge.golden.cli import random_inputs, to_codes
    from cimforge.golden.compare import exact_reference, layerwise, mixed_sign_layers
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.golden.runner import run_graph

    g = load_onnx(models[("pools", "qop_pt_u8s8")], numerics="onnx")
    layers = mixed_sign_layers(g)
    assert {l.kind for l in layers} == {"conv2d", "dense"} and all(l.input.dtype == "uint8" for l in layers)
    codes = to_codes(g, random_inputs(g, 4, SEED))
    golden = run_graph(g, codes)
    exact = exact_reference(layers, golden)
    each = layerwise(g, golden)
    assert set(exact) == {l.output.name for l in layers}
    for t, v in exact.items():
        d = np.abs(v.astype(int) - each[t].astype(int))
        print(t, d.max(), (d == 0).mean())
        assert d.max() <= 1 and (d == 0).mean() >= 0.999


def test_uint8_weights_with_zero_points_compile_exactly(models, tmp_path, capsys):
    """uint8 weights with non-zero zero points (onnxruntime's uint8 x uint8 form): ``cimforge compile`` runs them
    as int8 parts over copies of their input (compiler/zero_points.py), and the ISS equals the golden model on
    every tensor of the model."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.iss import run_program
    from cimforge.golden.cli import random_inputs, to_codes
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.golden.runner import run_graph
    from cimforge.presets import get_preset

    for name in MODELS:
        path = models[(name, "qdq_pt_u8u8")]
        graph = load_onnx(path)
        if not any(layer.has_weight_zero_point for layer in graph.weighted_layers):
            continue
        assert main(["compile", str(path), "--out", str(tmp_path / name)]) == 0
        capsys.readouterr()
        codes = to_codes(graph, random_inputs(graph, 2, SEED))
        got, _ = run_program(compile_graph(graph, get_preset("default"), batch=2), {graph.inputs[0].name: codes})
        want = run_graph(graph, codes)
        assert graph.outputs[0] in got
        for t in want:
            if t in got:
                np.testing.assert_array_equal(got[t], want[t], err_msg=f"{name}: tensor {t}")
        print(f"{name}: {sum(l.has_weight_zero_point for l in graph.weighted_layers)} layers with weight zero points")


def test_vector_of_any_rank_is_stored_as_a_vector():
    from cimforge.compiler.state import stored_shape
    from cimforge.compiler.tiling import CompileError
    from cimforge.golden.ir import TensorInfo

    assert stored_shape(TensorInfo("t", (6, 1), "int8", 1.0, 0)) == (6, 1, 1)
    assert stored_shape(TensorInfo("t", (1, 6), "int8", 1.0, 0)) == (6, 1, 1)
    assert stored_shape(TensorInfo("t", (2, 3), "int8", 1.0, 0)) == (2, 1, 3)  # (C, L): x.view(b, c, -1)
    with pytest.raises(CompileError, match=r"\(2, 3, 4, 5\)"):
        stored_shape(TensorInfo("t", (2, 3, 4, 5), "int8", 1.0, 0))


# -- bad models and bad inputs: one line, exit 2, nothing written ---------------------------------------------

def _bad_models(d: Path) -> dict[str, Path]:
    from onnx import TensorProto

    built = {}

    def wrap(n):  # opset 19's circular padding
        x = n.op("Pad", [n.conv("x", 3, 8, 3), n.c(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode="wrap")
        return n.model((3, 6, 6), [n.op("Relu", [n.conv(x, 8, 8, 3)])], opset=19), (3, 6, 6)

    def resize(n):
        up = n.op("Resize", [n.conv("x", 3, 8, 3), "", n.c(np.array([1, 1, 2, 2], np.float32))], mode="linear")
        return n.model((3, 6, 6), [n.op("Relu", [n.conv(up, 8, 8, 3)])]), (3, 6, 6)

    def cast_input(n):
        x = n.op("Cast", ["x"], to=TensorProto.FLOAT)
        return n.model((3, 6, 6), [n.op("Relu", [n.conv(x, 3, 8, 3)])], input_type=TensorProto.UINT8), (3, 6, 6)

    def softmax_mid(n):  # a softmax inside the network: no engine, and only a run's tail is computed on the host
        x = n.op("Softmax", [n.conv("x", 3, 8, 3)], axis=1)
        return n.model((3, 6, 6), [n.conv(x, 8, 8, 1)]), (3, 6, 6)

    def channel_mean(n):  # a mean over the channels (a LayerNorm-like statistic): no global pool
        x = n.op("ReduceMean", [n.conv("x", 3, 8, 3)], axes=[1], keepdims=1)
        return n.model((3, 6, 6), [n.op("Relu", [n.conv(x, 1, 4, 3)])]), (3, 6, 6)

    def log_softmax(n):  # a classifier ending in LogSoftmax (left in float by onnxruntime)
        return n.model((3, 6, 6), [n.op("LogSoftmax", [n.gemm(n.op("Flatten", [n.conv("x", 3, 2, 3)]), 32, 5)],
                                        axis=1)]), (3, 6, 6)

    def reverse(n):  # x[:, ::-1]: a reversing slice
        x = n.op("Slice", [n.conv("x", 3, 8, 3)] + [n.c(np.array([v], np.int64)) for v in (-1, -2 ** 31, 1, -1)])
        return n.model((3, 6, 6), [n.op("Relu", [n.conv(x, 8, 4, 3)])]), (3, 6, 6)

    def focus_input(n):  # YOLOv5's Focus on the float graph input: onnxruntime quantizes each slice
        parts = [n.op("Slice", ["x"] + [n.c(np.array(v, np.int64)) for v in (b, [2 ** 31] * 2, [2, 3], [2, 2])])
                 for b in ([0, 0], [1, 0], [0, 1], [1, 1])]
        return n.model((3, 6, 6), [n.op("Relu", [n.conv(n.op("Concat", parts, axis=1), 12, 4, 3)])]), (3, 6, 6)

    def nhwc_mid(n):  # a channels-last tensor read by a convolution: the fabric's tensors are channels first
        y = n.op("Transpose", [n.op("Relu", [n.conv("x", 3, 8, 3)])], perm=[0, 2, 3, 1])
        return n.model((3, 6, 6), [n.op("Relu", [n.conv(y, 4, 4, 1)])]), (3, 6, 6)

    def gather_scalar(n):  # x[:, 0]: a scalar index removes the channel axis
        y = n.op("Gather", [n.op("Relu", [n.conv("x", 3, 8, 3)]), n.c(np.array(0, np.int64))], axis=1)
        return n.model((3, 6, 6), [n.gemm(n.op("Flatten", [y]), 16, 4)]), (3, 6, 6)

    def nhwc_out(n):  # a channels-last graph output
        return n.model((3, 6, 6), [n.op("Transpose", [n.op("Relu", [n.conv("x", 3, 8, 3)])], perm=[0, 2, 3, 1])]), \
            (3, 6, 6)

    for name, build in [("wrap", wrap), ("resize", resize), ("channel_mean", channel_mean),
                        ("nhwc_mid", nhwc_mid), ("nhwc_out", nhwc_out), ("gather_scalar", gather_scalar),
                        ("reverse", reverse), ("focus_input", focus_input), ("log_softmax", log_softmax),
                        ("cast_input", cast_input), ("softmax_mid", softmax_mid)]:
        proto, shape = build(_Net(SEED))
        built[name] = _quantize(proto, shape, d / f"{name}.onnx", "qdq", True, "int8", "int8",
                                np.uint8 if name == "cast_input" else np.float32)
    built["float"] = d / "softmax_mid_float.onnx"
    # per-channel QDQ at opset 11, as quantize_static writes it (DequantizeLinear has no axis before opset 13)
    n = _Net(SEED)
    built["pc_opset11"] = _quantize(n.model((3, 6, 6), [n.op("Relu", [n.conv("x", 3, 8, 3)])], opset=11), (3, 6, 6),
                                    d / "pc_opset11.onnx", "qdq", True, "int8", "int8")
    # a user's partial quantisation: the second convolution excluded, left in float between quantized layers
    n = _Net(SEED)
    proto = n.model((3, 6, 6), [n.conv(n.op("Relu", [n.conv("x", 3, 8, 3)]), 8, 8, 3)])
    second = [node.name for node in proto.graph.node if node.op_type == "Conv"][1]
    for fmt in ("qdq", "qop"):
        built[f"partly_float_{fmt}"] = _quantize(proto, (3, 6, 6), d / f"partly_float_{fmt}.onnx", fmt, True, "int8",
                                                 "int8", nodes_to_exclude=[second])
    # a classifier whose Softmax the user left out of the quantisation: its float result is the graph output
    n = _Net(SEED)
    proto = n.model((3, 6, 6), [n.op("Softmax", [n.gemm(n.op("Flatten", [n.conv("x", 3, 2, 3)]), 32, 5)])])
    # a BatchNormalization on the float graph input (onnxruntime's QOperator form leaves it in float)
    n = _Net(SEED)
    rng = np.random.default_rng(SEED)
    bn = n.op("BatchNormalization", ["x", *(n.c(v.astype(np.float32)) for v in (
        rng.uniform(0.5, 1.5, 3), rng.normal(0, .1, 3), rng.normal(0, .1, 3), rng.uniform(0.5, 1.5, 3)))])
    built["float_input_bn"] = _quantize(n.model((3, 6, 6), [n.conv(n.op("Relu", [bn]), 3, 4, 3)]), (3, 6, 6),
                                        d / "float_input_bn.onnx", "qop", False, "uint8", "int8")
    built["float_softmax_out"] = _quantize(proto, (3, 6, 6), d / "float_softmax_out.onnx", "qdq", True, "int8",
                                           "int8", op_types_to_quantize=["Conv", "Gemm"])
    return built


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return _bad_models(tmp_path_factory.mktemp("bad_models"))


@pytest.mark.parametrize("cmd", ["golden", "compile", "sim"])
def test_unsupported_models_named(bad, cmd, tmp_path, capsys):
    def argv(model):
        if cmd == "sim":
            return ["sim", "--model", str(model), "--random", "1"]
        return [cmd, str(model)] + (["--out", str(tmp_path / "out")] if cmd == "compile" else [])

    _user_error(capsys, argv(bad["wrap"]), "'Pad_", "mode 'wrap'", "allowed 'constant', 'reflect', 'edge'")
    _user_error(capsys, argv(bad["resize"]), "'Resize_", "mode 'linear'", "allowed 'nearest'")
    _user_error(capsys, argv(bad["cast_input"]), "'x'", "'Cast_", "DequantizeLinear")
    _user_error(capsys, argv(bad["channel_mean"]), "'ReduceMean_", "axes [1]", "allowed axes [2, 3]")
    _user_error(capsys, argv(bad["nhwc_mid"]), "'Transpose_", "perm [0, 2, 3, 1]", "allowed readers",
                "Gemm or MatMul")
    _user_error(capsys, argv(bad["nhwc_out"]), "graph output", "'Transpose_", "end the model before")
    _user_error(capsys, argv(bad["gather_scalar"]), "'Gather_", "indices of shape ()", "a Slice of one")
    _user_error(capsys, argv(bad["pc_opset11"]), "DequantizeLinear", "need opset >= 13", "opset 11")
    _user_error(capsys, argv(bad["log_softmax"]), "'LogSoftmax_", "end the model before it", "argmax")
    _user_error(capsys, argv(bad["reverse"]), "'Slice_", "step -1 on axis 1", "allowed steps >= 1")
    _user_error(capsys, argv(bad["focus_input"]), "'Slice_", "float graph input 'x'", "preprocessing")
    _user_error(capsys, argv(bad["float"]), "float-only model", "quantize_static")
    for fmt in ("qdq", "qop"):
        _user_error(capsys, argv(bad[f"partly_float_{fmt}"]), "'Conv_", "left in float", "nodes_to_exclude")
    _user_error(capsys, argv(bad["float_input_bn"]), "'BatchNormalization_", "float graph input", "quantize")
    _user_error(capsys, argv(bad["float_softmax_out"]), "graph output", "'Softmax_", "never quantized",
                "allowed graph outputs are quantized")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("axis,memory,said", [
    (2, "external", "ONNX axis 2 (height) in external-memory mode"),
    (-1, "auto", "ONNX axis 3 (width) of 6-row tensors: allowed axis 1 (channels), axis 2 (height), or the width "
                 "of one-row tensors")])
def test_concat_the_fabric_cannot_copy_is_refused_in_onnx_terms(axis, memory, said, tmp_path, capsys):
    """A concatenation along the width of multi-row tensors (no input is a run of the output's pixels), or along
    the height in row bands, runs on the golden model only; the compiler's refusal names the axis as the model
    writes it (ONNX, the batch axis counted: it said 'axis 1: allowed 0 (channels)' for the model's axis 2)."""
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    cat = n.op("Concat", [x, n.op("Relu", [n.conv(x, 8, 8, 3, pads=[1, 1, 1, 1])])], axis=axis)
    size = 8 * (12 if axis == 2 else 6) * (12 if axis != 2 else 6)
    path = _quantize(n.model((3, 6, 6), [n.gemm(n.op("Flatten", [cat]), size, 3)]), (3, 6, 6),
                     tmp_path / "cat.onnx", "qdq", True, "int8", "int8")
    assert main(["golden", str(path), "--samples", "2"]) == 0
    capsys.readouterr()
    _user_error(capsys, ["compile", str(path), "--memory", memory, "--out", str(tmp_path / "out")], "'Concat_", said)
    assert not (tmp_path / "out").exists()


def test_compile_error_leaves_no_output_directory(bad, tmp_path, capsys):
    """A model the fabric cannot run (a softmax inside the network) fails after --out was checked: the directory
    cimforge made is removed again; one that existed keeps exactly what it held."""
    out = tmp_path / "new" / "out"
    _user_error(capsys, ["compile", str(bad["softmax_mid"]), "--out", str(out)], "'Softmax_", "host side")
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    _user_error(capsys, ["compile", str(bad["softmax_mid"]), "--out", str(kept)], "'Softmax_")
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]


def test_bad_files_options_and_inputs(models, tmp_path, capsys):
    model = str(models[("pads", "qdq_pc_s8s8")])
    (tmp_path / "junk.onnx").write_text("not onnx")
    _user_error(capsys, ["golden", str(tmp_path / "nope.onnx")], "nope.onnx", "no such file")
    _user_error(capsys, ["compile", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "o")], "not a readable ONNX")
    _user_error(capsys, ["compile", model, "--preset", "bogus", "--out", str(tmp_path / "o")], "--preset", "default")
    (tmp_path / "bad.toml").write_text("[macro]\nbogus = 1\n")
    _user_error(capsys, ["compile", model, "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o")],
                "macro.bogus", "rows")
    assert not (tmp_path / "o").exists()
    np.save(tmp_path / "shape.npy", np.zeros((2, 3, 9, 8), np.float32))
    np.save(tmp_path / "dtype.npy", np.zeros((2, 3, 8, 8), np.complex64))
    np.savez(tmp_path / "keys.npz", foo=np.zeros((2, 3, 8, 8), np.float32), bar=np.zeros((2, 3, 8, 8), np.float32))
    for cmd in (["golden", model], ["sim", "--model", model]):
        _user_error(capsys, [*cmd, "--input", str(tmp_path / "shape.npy")], "--input", "(2, 3, 9, 8)", "(N, 3, 8, 8)")
        _user_error(capsys, [*cmd, "--input", str(tmp_path / "dtype.npy")], "--input", "complex64")
        line = _user_error(capsys, [*cmd, "--input", str(tmp_path / "keys.npz")], "['bar', 'foo']", "'input'")
        assert line.count("'x'") == 1, line  # each allowed name once


def test_broadcast_add_in_row_bands(tmp_path):
    """A global-context add of one value per channel over a 48x48 plane too big for the default preset's
    activation memory: in row bands each band reads the whole (C, 1, 1) operand; the ISS equals the golden model
    on every tensor, no DMA racing an engine."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 3, 16, 3, pads=[1, 1, 1, 1])])
    g = n.conv(n.op("Relu", [n.conv(n.op("GlobalAveragePool", [x]), 16, 4, 1)]), 4, 16, 1)
    x = n.op("Relu", [n.conv(n.op("Relu", [n.op("Add", [x, g])]), 16, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    proto = n.model((3, 48, 48), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 8, 4)])
    g = split_host_tail(load_onnx(_quantize(proto, (3, 48, 48), tmp_path / "gc.onnx", *VARIANTS["qdq_pc_s8s8"]))).fabric
    assert any(layer.kind == "add" and layer.broadcast for layer in g.layers)
    prog = compile_graph(g, get_preset("default"), batch=1)
    assert prog.external
    _iss_equals_golden(g, prog, 1)


@pytest.mark.parametrize("name,act", [("se_block", "uint8"), ("pools", "int8"), ("activations", "int8"),
                                      ("decoder", "uint8"), ("reflect_pads", "int8")])
def test_symmetric_activations_in_qoperator_form(name, act, tmp_path, capsys):
    """``quantize_static(extra_options={"ActivationSymmetric": True})`` in QOperator form leaves every Relu / Clip
    in float between a DequantizeLinear and a QuantizeLinear, and a float pool (GlobalAveragePool, MaxPool)
    reading it, beside its QuantizeLinear (decoder), or the graph output (reflect_pads): the clamp's values are
    its input's codes, so the pool or the output reads those codes clamped (exact), the Relu's own
    QuantizeLinear is a requantising table. Golden meets the bound, the ISS is exact."""
    print(f"weights and calibration seed {SEED}")
    proto, shape = MODELS[name](_Net(SEED))
    path = _quantize(proto, shape, tmp_path / f"{name}_sym.onnx", "qop", False, act, "int8",
                     extra_options={"ActivationSymmetric": True})
    import onnx
    m = onnx.load(str(path))
    assert any(n.op_type in ("Relu", "Clip") for n in m.graph.node)  # left in float by onnxruntime
    _golden_met_and_iss_exact(path, capsys)


@pytest.mark.parametrize("opset", [18, 19, 21])
def test_float_average_pool_order_follows_the_opset(opset, tmp_path, capsys):
    """onnxruntime's float AveragePool sums in MLAS's order up to opset 18 and in its generic kernel's
    (row-major) from opset 19, which added dilations: the golden model's float pool equals onnxruntime's bit
    for bit on codes (padded, count_include_pad 0 and 1, stride 2; seed printed), and the pools user model
    quantized at that opset meets the bound (99.5 % on the pool with the MLAS order at opset 19)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from cimforge.golden.ir import AvgPool, TensorInfo
    from cimforge.golden.ops import avg_pool

    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    codes = rng.integers(-128, 128, (4, 8, 9, 9)).astype(np.int8)
    t_in, t_out = TensorInfo("x", (8, 9, 9), "int8", 0.0371, 0), TensorInfo("y", (8, 5, 5), "int8", 0.0123, 3)
    for cip in (0, 1):
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4,
                                count_include_pad=cip)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8, 9, 9])],
                              [helper.make_empty_tensor_value_info("y")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        real = codes.astype(np.float32) * np.float32(t_in.scale)
        ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": real})[0]
        want = np.clip(np.rint(ref / np.float32(t_out.scale)) + t_out.zero_point, -128, 127).astype(np.int8)
        layer = AvgPool(name="p", inputs=(t_in,), output=t_out, kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1),
                        count_include_pad=bool(cip), method="float", round_even=True, generic_order=opset >= 19)
        np.testing.assert_array_equal(avg_pool(layer, codes), want, err_msg=f"count_include_pad {cip}")
    proto, shape = MODELS["pools"](_Net(SEED))
    proto.opset_import[0].version = opset
    path = _quantize(proto, shape, tmp_path / f"pools_{opset}.onnx", "qdq", True, "int8", "int8")
    assert main(["golden", str(path), "--samples", "6", "--check"]) == 0
    assert ": met" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["slices", "se_block", "shufflenet_v2"])
def test_onnxruntime_preprocessing(name, tmp_path, capsys):
    """onnxruntime's recommended ``quant_pre_process`` before ``quantize_static`` (its graph optimizer rewrites
    YOLOv5's Focus as SpaceToDepth and a Gather of the channels, folds constants): golden meets the bound, the
    ISS is exact."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    print(f"weights and calibration seed {SEED}")
    proto, shape = MODELS[name](_Net(SEED))
    onnx.save(proto, str(tmp_path / "raw.onnx"))
    quant_pre_process(str(tmp_path / "raw.onnx"), str(tmp_path / "pre.onnx"), skip_symbolic_shape=True)
    pre = onnx.load(str(tmp_path / "pre.onnx"))
    if name == "slices":
        assert {"SpaceToDepth", "Gather"} <= {n.op_type for n in pre.graph.node}
    path = _quantize(pre, shape, tmp_path / f"{name}_pre.onnx", "qdq", False, "int8", "int8")
    _golden_met_and_iss_exact(path, capsys)


_OPTIONS = {"reduce_range": dict(reduce_range=True), "entropy": dict(calibrate_method="Entropy"),
            "percentile": dict(calibrate_method="Percentile"),
            "weights_asymmetric": dict(extra_options={"WeightSymmetric": False}),
            "qdq_pair_to_weight": dict(extra_options={"AddQDQPairToWeight": True}),
            "keep_removable": dict(extra_options={"QDQKeepRemovableActivations": True})}


@pytest.mark.parametrize("fmt", ["qdq", "qop"])
@pytest.mark.parametrize("option", list(_OPTIONS))
def test_quantize_static_options(option, fmt, tmp_path, capsys):
    """``quantize_static``'s other options a user may pass: golden meets the bound against onnxruntime and the
    model compiles (int8 weights with zero points among them)."""
    from onnxruntime.quantization import CalibrationMethod

    print(f"weights and calibration seed {SEED}")
    kw = dict(_OPTIONS[option])
    if "calibrate_method" in kw:
        kw["calibrate_method"] = getattr(CalibrationMethod, kw["calibrate_method"])
    proto, shape = MODELS["se_block"](_Net(SEED))
    path = _quantize(proto, shape, tmp_path / f"se_{option}.onnx", fmt, fmt == "qdq",
                     "int8" if fmt == "qdq" else "uint8", "int8", **kw)
    assert main(["golden", str(path), "--samples", "6", "--check"]) == 0
    assert ": met" in capsys.readouterr().out
    assert main(["compile", str(path), "--out", str(tmp_path / "out")]) == 0


def test_sixteen_bit_activations_refused(tmp_path, capsys):
    """A16W8 (``activation_type=QInt16``, QDQ): refused by name, the fabric's activations are 8-bit."""
    proto, shape = MODELS["pools"](_Net(SEED))
    path = _quantize(proto, shape, tmp_path / "a16.onnx", "qdq", True, "int16", "int8")
    _user_error(capsys, ["golden", str(path)], "QuantizeLinear", "int16", "int8 or uint8")


@pytest.mark.parametrize("name", ["concat_odd", "concat_spatial"])
def test_dedicated_qdq_pairs(name, tmp_path, capsys):
    """``extra_options={"DedicatedQDQPair": True}`` gives every reader of a tensor its own QuantizeLinear /
    DequantizeLinear pair, the float graph input's included: alike QuantizeLinears of the input are the same
    codes (one graph input). Golden meets the bound, the ISS is exact."""
    from cimforge.golden.onnx_import import load_onnx

    print(f"weights and calibration seed {SEED}")
    proto, shape = MODELS[name](_Net(SEED))
    path = _quantize(proto, shape, tmp_path / f"{name}_pairs.onnx", "qdq", True, "int8", "int8",
                     extra_options={"DedicatedQDQPair": True})
    import onnx
    qs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x"]
    assert len(qs) > 1
    assert len(load_onnx(path).inputs) == 1
    _golden_met_and_iss_exact(path, capsys)


@pytest.mark.parametrize("var", ["qdq_pc_s8s8", "qop_pt_u8s8"])
def test_anchor_concat_in_row_bands(var, tmp_path):
    """A YOLO head's concatenation of per-scale predictions ``(N, C, H*W)`` along the anchors, in the default
    preset's external-memory mode (a 32x32 input): the one-row ``(C, L)`` tensors are a band each, every input a
    copy at its pixel offset; the ISS equals the golden model on every tensor, no DMA racing an engine."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    p3 = n.op("Relu", [n.conv("x", 3, 16, 3, strides=[2, 2], pads=[1, 1, 1, 1])])      # (16, 16, 16)
    p4 = n.op("Relu", [n.conv(p3, 16, 16, 3, strides=[2, 2], pads=[1, 1, 1, 1])])      # (16, 8, 8)
    heads = [n.op("Reshape", [n.conv(t, 16, 12, 1), n.c(np.array([0, 12, -1], np.int64))]) for t in (p3, p4)]
    proto = n.model((3, 32, 32), [n.op("Concat", heads, axis=2)])                        # (12, 256 + 64)
    g = load_onnx(_quantize(proto, (3, 32, 32), tmp_path / "head.onnx", *VARIANTS[var]))
    cat, = (layer for layer in g.layers if layer.kind == "concat")
    assert cat.axis == 1 and cat.output.shape == (12, 320)
    prog = compile_graph(g, get_preset("default"), batch=1, memory="external")
    assert prog.external
    _iss_equals_golden(g, prog, 1)


@pytest.mark.parametrize("var", list(VARIANTS))
def test_input_normalisation_in_the_model(var, tmp_path, capsys):
    """torchvision's transforms written into the model: ``((1 - x) - mean) / std`` by scalar and (1, 3, 1, 1)
    constants on the float input; onnxruntime quantizes Add and Mul, not Sub and Div, which it leaves in float. The host applies the same float32 steps
    before quantizing: the input codes equal onnxruntime's QuantizeLinear output exactly, golden meets the bound,
    the ISS and the RTL are exact. Integer data (codes) is refused: the model's input is real values."""
    import onnxruntime as ort

    from cimforge.golden.cli import random_inputs, to_codes
    from cimforge.golden.onnx_import import load_onnx

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    mean = n.c(np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1))
    std = n.c(np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1))
    x = n.op("Div", [n.op("Sub", [n.op("Sub", [n.c(np.float32(1.0)), "x"]), mean]), std])
    y = n.op("Relu", [n.conv(x, 3, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    proto = n.model((3, 8, 8), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [y])]), 8, 4)])
    path = _quantize(proto, (3, 8, 8), tmp_path / "norm.onnx", *VARIANTS[var])
    g = load_onnx(path)
    (q_name, steps), = g.input_steps.items()
    assert [(op, first) for op, _, first in steps] == [("Sub", True), ("Sub", False), ("Div", False)]
    data = random_inputs(g, 64, SEED)
    t = g.tensors[q_name]
    lo, hi = (t.qmin - t.zero_point) * t.scale, (t.qmax - t.zero_point) * t.scale
    assert data.min() < 1 - (hi * 0.224 + 0.45) / 2 and data.max() > 1 - (lo * 0.224 + 0.45) / 2  # inverted range
    import onnx
    m = onnx.load(str(path))
    m.graph.output.insert(0, onnx.helper.make_empty_tensor_value_info(q_name))
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run([q_name], {"x": data})[0]
    np.testing.assert_array_equal(to_codes(g, data), got)
    _golden_met_and_iss_exact(path, capsys)
    np.save(tmp_path / "codes.npy", np.zeros((2, 3, 8, 8), np.int8))
    _user_error(capsys, ["golden", str(path), "--input", str(tmp_path / "codes.npy")], "integer data",
                "Sub, Sub, Div", "allowed real values")
    if var == "qdq_pc_s8s8":
        assert main(["sim", "--model", str(path), "--random", "2", "--report", str(tmp_path)]) == 0
        assert json.loads((tmp_path / "report.json").read_text())["bit_exact"]


@pytest.mark.parametrize("var", list(VARIANTS))
def test_per_channel_constants_quantized_by_the_user(var, tmp_path, capsys):
    """``(y - mean) / std`` by per-channel constants mid network, with Sub and Div among quantize_static's
    op_types_to_quantize (their constants become DequantizeLinear of int8): a table per channel. The dequantized
    constants go to onnxruntime's evaluation as float32, as its DequantizeLinear gives them (float64 was a type
    error)."""
    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    x = n.op("Div", [n.op("Sub", [x, n.c((0.1 * n.rng.random((1, 8, 1, 1))).astype(np.float32))]),
                     n.c((0.5 + n.rng.random((1, 8, 1, 1))).astype(np.float32))])
    proto = n.model((3, 6, 6), [n.gemm(n.op("Flatten", [n.op("Relu", [n.conv(x, 8, 4, 3)])]), 4 * 4 * 4, 3)])
    path = _quantize(proto, (3, 6, 6), tmp_path / "norm.onnx", *VARIANTS[var],
                     op_types_to_quantize=["Conv", "Gemm", "Relu", "Flatten", "Sub", "Div"])
    _golden_met_and_iss_exact(path, capsys)


@pytest.mark.parametrize("var", ["qdq_pc_s8s8", "qdq_pt_u8u8"])
def test_conv_transpose(var, tmp_path, capsys):
    """Transposed convolutions (QDQ) import as a zero pad, a spreading gather and a convolution: ``cimforge
    golden --check`` meets the bound, compiled on the default preset the ISS equals the golden model on every
    tensor (the gather's and the pad's included), and in the QDQ per-channel form the RTL too, cycles as
    predicted. onnxruntime's QOperator form leaves ConvTranspose in float with float weights: refused by name."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}")
    proto, shape = _conv_transpose(_Net(SEED))
    path = _quantize(proto, shape, tmp_path / "convt.onnx", *VARIANTS[var])
    _golden_met_and_iss_exact(path, capsys)
    g = split_host_tail(load_onnx(path)).fabric
    assert sum(layer.kind == "resize" for layer in g.layers) == 5  # the stride-1 ones need no gather
    _iss_equals_golden(g, compile_graph(g, get_preset("default"), batch=2), 2)
    if var == "qdq_pc_s8s8":
        assert main(["sim", "--model", str(path), "--random", "2", "--seed", "0", "--report", str(tmp_path)]) == 0
        rep = json.loads((tmp_path / "report.json").read_text())
        assert rep["bit_exact"] and all(r["measured"] == r["predicted"] for r in rep["layers"])
        qop = _quantize(_conv_transpose(_Net(SEED))[0], shape, tmp_path / "convt_qop.onnx", *VARIANTS["qop_pt_u8s8"])
        capsys.readouterr()
        _user_error(capsys, ["compile", str(qop), "--out", str(tmp_path / "out")], "'ConvTranspose_", "float weights",
                    "QDQ form")
        # in external-memory mode: the spreading gather runs in row bands
        proto, shape = _unet_step(_Net(SEED))
        g = split_host_tail(load_onnx(_quantize(proto, shape, tmp_path / "unet.onnx", *VARIANTS[var]))).fabric
        prog = compile_graph(g, get_preset("default"), batch=1)
        assert prog.external
        _iss_equals_golden(g, prog, 1)


def _two_input_model(tmp_path: Path, fmt: str) -> Path:
    """An image and a side input (a depth map, a mask) through their own convolutions, concatenated: a model of
    two graph inputs, quantized by onnxruntime on seeded calibration data for both."""
    import onnx
    from onnx import TensorProto, helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    n = _Net(SEED)
    a = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    b = n.op("Relu", [n.conv("depth", 1, 4, 3, pads=[1, 1, 1, 1])])
    y = n.op("Relu", [n.conv(n.op("Concat", [a, b], axis=1), 12, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    y = n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [y])]), 8, 5)
    graph = helper.make_graph(n.nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
                                                helper.make_tensor_value_info("depth", TensorProto.FLOAT,
                                                                              ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 5])], n.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    src, dst = tmp_path / "two_float.onnx", tmp_path / f"two_{fmt}.onnx"
    onnx.save(m, str(src))
    rng = np.random.default_rng(SEED)
    feeds = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
                   "depth": rng.uniform(0, 4, (1, 1, 8, 8)).astype(np.float32)} for _ in range(8)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)
    root = logging.getLogger()
    level, _ = root.level, root.setLevel(logging.ERROR)
    try:
        quantize_static(str(src), str(dst), Reader(), per_channel=fmt == "qdq", activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator)
    finally:
        root.setLevel(level)
    return dst


@pytest.mark.parametrize("fmt", ["qdq", "qop"])
def test_two_input_model(fmt, tmp_path, capsys):
    """A model of two inputs as a user runs it: ``cimforge golden`` on random inputs (both drawn) and on an
    ``.npz`` of one array per input with labels; ``cimforge sim`` on the RTL, bit-exact, cycles as predicted;
    an ``.npy`` (one array) or an ``.npz`` missing an input is refused naming both inputs."""
    print(f"weights and calibration seed {SEED}")
    path = _two_input_model(tmp_path, fmt)
    assert main(["golden", str(path), "--samples", "4", "--check"]) == 0
    assert ": met" in capsys.readouterr().out
    rng = np.random.default_rng(SEED)
    x, depth = rng.standard_normal((3, 3, 8, 8)).astype(np.float32), rng.uniform(0, 4, (3, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, depth=depth, labels=np.array([0, 4, 2]))
    assert main(["golden", str(path), "--input", str(tmp_path / "in.npz"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "top-1 accuracy on in.npz (3 samples)" in out and ": met" in out
    assert main(["sim", "--model", str(path), "--input", str(tmp_path / "in.npz"), "--report", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["bit_exact"] and rep["images"] == 3 and all(r["measured"] == r["predicted"] for r in rep["layers"])
    capsys.readouterr()
    if fmt == "qdq":
        assert main(["sim", "--model", str(path), "--random", "2", "--report", str(tmp_path)]) == 0
        assert json.loads((tmp_path / "report.json").read_text())["bit_exact"]
        capsys.readouterr()
        np.save(tmp_path / "one.npy", x)
        _user_error(capsys, ["golden", str(path), "--input", str(tmp_path / "one.npy")], "one array", "2 inputs",
                    "'x'", "'depth'")
        np.savez(tmp_path / "half.npz", x=x)
        _user_error(capsys, ["sim", "--model", str(path), "--input", str(tmp_path / "half.npz")],
                    "none for input 'depth'", "named 'depth', 'x'")
        np.savez(tmp_path / "uneven.npz", x=x, depth=depth[:2])
        _user_error(capsys, ["golden", str(path), "--input", str(tmp_path / "uneven.npz")], "samples per input")


def _channels_last(n: _Net):
    """A Keras model as tf2onnx converts it: an NHWC graph input transposed to NCHW (then a per-channel mean
    subtracted, left in float by onnxruntime), convolutions, and Keras' ``Flatten`` of the channels-last tensor
    (``Transpose (0, 2, 3, 1) -> Reshape (N, -1)``) into a ``MatMul`` and a bias ``Add``."""
    x = n.op("Transpose", ["x"], perm=[0, 3, 1, 2])
    x = n.op("Sub", [x, n.c(np.array([0.1, -0.2, 0.3], np.float32).reshape(1, 3, 1, 1))])
    y = n.op("Relu", [n.conv(x, 3, 8, 3, pads=[1, 1, 1, 1])])
    y = n.op("Relu", [n.conv(y, 8, 8, 3, strides=[2, 2], pads=[0, 0, 1, 1])])   # (8, 4, 4)
    f = n.op("Reshape", [n.op("Transpose", [y], perm=[0, 2, 3, 1]), n.c(np.array([-1, 128], np.int64))])
    h = n.op("Add", [n.op("MatMul", [f, n.c(n.w(10, 128).T.copy())]), n.c(np.full(10, 0.1, np.float32))])
    return n.model((8, 8, 3), [n.op("Softmax", [h])]), (8, 8, 3)


@pytest.mark.parametrize("var", list(VARIANTS))
def test_channels_last_model(var, tmp_path, capsys):
    """A channels-last (tf2onnx) model: the host transposes the user's NHWC data (an input step) and the input
    codes equal onnxruntime's QuantizeLinear after its Transpose exactly; Keras' Flatten of the NHWC tensor is
    the flattening of the fabric's channels-first tensor with the MatMul's input columns permuted (no data
    moves); golden meets the bound, the ISS (and on one variant the RTL) is exact. ``--input`` takes NHWC data
    and refuses NCHW data naming the allowed shape."""
    import onnx
    import onnxruntime as ort

    from cimforge.golden.cli import random_inputs, to_codes, user_shape
    from cimforge.golden.onnx_import import load_onnx

    print(f"weights and calibration seed {SEED}")
    proto, shape = _channels_last(_Net(SEED))
    path = _quantize(proto, shape, tmp_path / "nhwc.onnx", *VARIANTS[var])
    g = load_onnx(path)
    (q_name, steps), = g.input_steps.items()
    assert [op for op, _, _ in steps] == ["Transpose", "Sub"] and list(steps[0][1]) == [0, 3, 1, 2]
    t = g.tensors[q_name]
    assert t.shape == (3, 8, 8) and user_shape(g, t) == (8, 8, 3)
    flat = [layer for layer in g.layers if layer.kind == "reshape"]
    assert len(flat) == 1 and flat[0].input.shape == (8, 4, 4) and flat[0].output.shape == (128,)
    data = random_inputs(g, 16, SEED)
    assert data.shape == (16, 8, 8, 3)
    m = onnx.load(str(path))
    m.graph.output.insert(0, onnx.helper.make_empty_tensor_value_info(q_name))
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run([q_name], {"x": data})[0]
    np.testing.assert_array_equal(to_codes(g, data), got)
    _golden_met_and_iss_exact(path, capsys)
    np.save(tmp_path / "nhwc.npy", data[:3])
    assert main(["golden", str(path), "--input", str(tmp_path / "nhwc.npy"), "--check"]) == 0
    assert ": met" in capsys.readouterr().out
    np.save(tmp_path / "nchw.npy", data[:3].transpose(0, 3, 1, 2))
    _user_error(capsys, ["golden", str(path), "--input", str(tmp_path / "nchw.npy")], "(3, 3, 8, 8)",
                "allowed (N, 8, 8, 3)")
    if var == "qdq_pc_s8s8":
        assert main(["sim", "--model", str(path), "--input", str(tmp_path / "nhwc.npy"), "--report",
                     str(tmp_path)]) == 0
        rep = json.loads((tmp_path / "report.json").read_text())
        assert rep["bit_exact"] and rep["images"] == 3 and all(r["measured"] == r["predicted"] for r in rep["layers"])


# -- on the RTL ------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.cocotb
@pytest.mark.parametrize("name,var", [("pools", "qdq_pc_s8s8"), ("pads", "qop_pt_u8s8"),
                                      ("activations", "qdq_pc_s8s8"), ("activations", "qop_pt_u8s8"),
                                      ("pools", "qdq_pt_u8u8"), ("concat_odd", "qop_pt_u8s8"),
                                      ("avg_ceil", "qdq_pc_s8s8"), ("avg_ceil", "qop_pt_u8s8"),
                                      ("se_block", "qdq_pc_s8s8"), ("se_block", "qop_pt_u8s8"),
                                      ("prelu", "qdq_pc_s8s8"), ("prelu", "qop_pt_u8s8"),
                                      ("upsample", "qdq_pc_s8s8"), ("upsample", "qop_pt_u8s8"),
                                      ("banded", "qdq_pt_u8u8"), ("decoder", "qop_pt_u8s8"),
                                      ("slices", "qdq_pc_s8s8"), ("shufflenet_v2", "qdq_pc_s8s8"),
                                      ("shufflenet_v2", "qop_pt_u8s8"), ("dynamic_flatten", "qop_pt_u8s8"),
                                      ("pixel_shuffle", "qdq_pc_s8s8"), ("gc_block", "qdq_pc_s8s8"),
                                      ("gc_block", "qop_pt_u8s8"), ("differences", "qdq_pc_s8s8"),
                                      ("differences", "qop_pt_u8s8"), ("concat_spatial", "qop_pt_u8s8"),
                                      ("reflect_pads", "qdq_pc_s8s8"), ("gathers", "qop_pt_u8s8")])
def test_rtl_bit_exact(models, name, var, tmp_path, capsys):
    """``cimforge sim --random 2 --seed 0`` on the default fabric in Verilator: every tensor bit-exact and every
    layer's measured cycles as the cost model predicted."""
    assert main(["sim", "--model", str(models[(name, var)]), "--random", "2", "--seed", "0",
                 "--report", str(tmp_path)]) == 0
    print(capsys.readouterr().out[-2000:])
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["bit_exact"] and rep["images"] == 2
    assert all(r["measured"] == r["predicted"] for r in rep["layers"])
    assert rep["tensors_in"] == ("external" if name in ("banded", "decoder", "shufflenet_v2") else "activation"), \
        rep["tensors_in"]


def _iss_equals_golden(g, prog, batch: int, seed: int = SEED, hazards: bool = True) -> dict:
    """Run ``prog`` on the ISS from seeded random codes (every code of the input's range possible) and assert
    every tensor it holds, the graph output among them, equals the golden model's, and (``hazards``) that no
    DMA races an engine; the ISS's tensors."""
    from cimforge.compiler.iss import run_program
    from cimforge.compiler.memory import check_hazards
    from cimforge.golden.runner import run_graph

    rng = np.random.default_rng(seed)
    xs = {t.name: rng.integers(t.qmin, t.qmax + 1, (batch, *t.shape)).astype(t.dtype) for t in g.inputs}
    got, _ = run_program(prog, xs)
    gold = run_graph(g, xs)
    assert g.outputs[0] in got
    for t in (t for t in got if t in gold):
        np.testing.assert_array_equal(got[t], gold[t], err_msg=f"tensor {t}")
    if hazards:
        assert check_hazards(prog) == []
    return got


@pytest.mark.parametrize("act_depth", [384, 512, 640])
def test_external_staging_leaves_room_for_each_output(act_depth, tmp_path):
    """Row bands through a small activation memory, where a unit's input, placed first-fit below regions whose
    stores are still queued, once left its output no room ("no staging room for 216 words in fabric.act_depth =
    512"; a user's residual block, then two 12 -> 70 branches added, uint8): the input now waits for the stores
    when it would; every tensor exact on the ISS, no DMA racing an engine."""
    from dataclasses import replace

    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 3, 12, 2, auto_pad="SAME_UPPER")])
    x = n.op("Add", [x, n.conv(n.conv(x, 12, 12, (5, 1), pads=[2, 0, 2, 0]), 12, 12, (1, 3), pads=[0, 1, 0, 1])])
    x = n.op("Add", [n.conv(x, 12, 70, 1), n.conv(x, 12, 70, 5, pads=[2, 2, 2, 2])])
    proto = n.model((3, 12, 12), [n.gemm(n.op("Flatten", [n.op("GlobalAveragePool", [x])]), 70, 2)])
    path = _quantize(proto, (3, 12, 12), tmp_path / "branches.onnx", "qdq", False, "uint8", "uint8")
    g = split_host_tail(load_onnx(path)).fabric
    cfg = get_preset("default")
    prog = compile_graph(g, replace(cfg, fabric=replace(cfg.fabric, act_depth=act_depth)), batch=1)
    assert prog.external
    _iss_equals_golden(g, prog, 1)


def test_one_position_bands_under_batch_parallelism(tmp_path):
    """A depthwise 3x3 stride-3 layer of 70 channels in bands of one output position, whose pass splits
    positions over 4 macro groups: it never steps 4 positions on, so its image step is 0 (it was 540 words past
    a 256-word activation memory, too wide for its field: a CompileError naming an instruction field); every
    tensor exact on the ISS."""
    from dataclasses import replace

    from cimforge.compiler.compile import compile_graph
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 4, 70, (3, 1), pads=[1, 0, 1, 0], strides=[2, 2])])
    x = n.op("Relu", [n.conv(x, 70, 70, 3, group=70, strides=[3, 3])])
    path = _quantize(n.model((4, 23, 9), [n.conv(x, 70, 4, 1)]), (4, 23, 9), tmp_path / "dw.onnx", "qdq", True,
                     "uint8", "int8")
    g = load_onnx(path)
    cfg = get_preset("default")
    prog = compile_graph(g, replace(cfg, fabric=replace(cfg.fabric, act_depth=256)), batch=1)
    assert prog.external
    assert any(mp.npos <= mp.par.batch for mp in prog.passes)  # the case itself
    _iss_equals_golden(g, prog, 1, hazards=False)


def test_too_small_activation_memory_names_the_layer_that_needs_most(tmp_path):
    """A model whose every layer needs more than the activation memory, the second the most (its 5x5 window
    over 40 channels): the error names that layer and its size, not the first layer's (which would leave the
    user a second error after the first fix), and the size it names compiles. Before planning the bands, a
    window wider than the address field said so in the user's terms too, not as an instruction field."""
    from dataclasses import replace

    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.tiling import CompileError
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 3, 40, 3, pads=[1, 1, 1, 1])])
    x = n.op("Relu", [n.conv(x, 40, 8, 5, pads=[2, 2, 2, 2])])
    path = _quantize(n.model((3, 20, 20), [n.conv(x, 8, 4, 1)]), (3, 20, 20), tmp_path / "wide.onnx", "qdq", True,
                     "int8", "int8")
    g = load_onnx(path)
    cfg = get_preset("default")
    with pytest.raises(CompileError) as e:
        compile_graph(g, replace(cfg, fabric=replace(cfg.fabric, act_depth=64)), batch=1)
    msg = str(e.value)
    print(msg)
    second = g.layers[1].name
    need = 5 * 20 * 5 + 20 * 1  # five input rows of 5 words a pixel, one output row of 1 word a pixel
    assert msg == (f"layer {second!r}: one output row band (its input rows with the halo and the output row) needs "
                   f"{need} activation words, fabric.act_depth = 64: allowed fabric.act_depth >= {need}")
    assert compile_graph(g, replace(cfg, fabric=replace(cfg.fabric, act_depth=need)), batch=1).external


def test_size_error_on_a_part_the_compiler_added_names_the_users_layer(tmp_path):
    """An unaligned concatenation of three 33-channel tensors is placed as channel placements and partial sums
    the compiler adds (``<concat>/sum_1``); when one of those needs the most activation memory, the error names
    the user's Concat and says the part is the compiler's."""
    from dataclasses import replace

    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.compiler.tiling import CompileError
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 16, 33, 3, pads=[1, 1, 1, 1])])
    c = n.op("Concat", [x, n.op("Relu", [n.conv(x, 33, 33, 3, pads=[1, 1, 1, 1])]),
                        n.op("Relu", [n.conv(x, 33, 33, 1)])], axis=1)
    path = _quantize(n.model((16, 2, 15), [n.conv(c, 99, 4, 1)]), (16, 2, 15), tmp_path / "cat.onnx", "qdq", False,
                     "uint8", "uint8")
    g = split_host_tail(load_onnx(path)).fabric
    concat = next(layer.name for layer in g.layers if layer.kind == "concat")
    cfg = get_preset("default")
    with pytest.raises(CompileError) as e:
        compile_graph(g, replace(cfg, fabric=replace(cfg.fabric, act_depth=256)), batch=2)
    print(e.value)
    assert str(e.value).startswith(f"layer {concat!r} (its part 'sum_1', added by the compiler): one output row "
                                   f"band"), e.value
    # any message that quotes such a part (a weight zero point's input copies here) names it so, once
    msg = str(CompileError("layer 'Conv_3/copies': 3 input channels need macro rows >= lanes (8); tensor 'x'"))
    assert msg == "layer 'Conv_3' (its part 'copies', added by the compiler): 3 input channels need macro rows >= " \
                  "lanes (8); tensor 'x'", msg
    assert str(CompileError(msg)) == msg


def test_float_batchnorm_then_max_in_the_onnx_numerics(tmp_path, capsys):
    """QOperator: a BatchNormalization onnxruntime leaves in float, then Clip and GlobalMaxPool (float too):
    ``cimforge golden`` (numerics "onnx") imports it (the chain's range comes from its leaves' codes; it was
    refused with a message listing BatchNormalization as allowed) and meets the bound; the fabric form runs
    exact on the ISS."""
    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    rng = np.random.default_rng(SEED)
    bn = n.op("BatchNormalization", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1]),
                                     *(n.c(v.astype(np.float32)) for v in (rng.uniform(0.5, 2, 8), rng.normal(0, .2, 8),
                                                                          rng.normal(0, .2, 8), rng.uniform(0.5, 2, 8)))])
    y = n.op("GlobalMaxPool", [n.op("Clip", [bn, n.c(np.float32(0)), n.c(np.float32(6))])])
    path = _quantize(n.model((3, 9, 9), [n.conv(y, 8, 4, 1)]), (3, 9, 9), tmp_path / "bn.onnx", "qop", False,
                     "uint8", "int8")
    _golden_met_and_iss_exact(path, capsys)


@pytest.mark.parametrize("name,act_depth", [("upsample", 128), ("upsample", 4096), ("decoder", 1024),
                                            ("decoder", 4096), ("reflect_pads", 128)])
def test_resize_in_row_bands(models, name, act_depth):
    """Nearest resizes in external-memory mode: each band of output rows stages the source rows it copies
    (upsampling by 2, a 5x7 downsampling, a resize read by a concatenation, reflect and edge pads' mirrored
    rows); every tensor exact on the ISS
    (batch 2, seeded codes), no DMA racing an engine, and the resize runs in more than one band where the
    memory is small (it was refused in external-memory mode)."""
    from dataclasses import replace

    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset

    print(f"weights and calibration seed {SEED}, codes seed {SEED + 1}")
    g = split_host_tail(load_onnx(models[(name, "qdq_pt_u8u8")])).fabric
    cfg = get_preset("default")
    prog = compile_graph(g, replace(cfg, fabric=replace(cfg.fabric, act_depth=act_depth)), batch=2,
                         memory="external")
    resizes = [layer.name for layer in g.layers if layer.kind == "resize"]
    bands = {r: len({(i.image, i.text) for i in prog.instrs if i.layer == r and i.op == "DMA"
                     and i.text.startswith("out ")}) // 2 for r in resizes}
    print(f"{name} act_depth {act_depth}: {len(prog.code)} instructions, resize bands per image {bands}")
    if act_depth < 4096:
        assert all(b > 1 for b in bands.values()), bands
    got = _iss_equals_golden(g, prog, 2, SEED + 1)
    assert all(layer.output.name in got for layer in g.layers if layer.kind == "resize")
