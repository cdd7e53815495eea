"""Random single-layer graphs (layer IR) for verification: convolutions covering padding, stride, dilation and
channel-count regimes, grouped and depthwise convolutions of any group size, pools, residual adds, clamps and
concatenations, with random quantisation. Used by the compiler tests (instruction-set model) and the RTL tests
alike."""

from __future__ import annotations

import numpy as np

from ..golden import ir

__all__ = ["random_tensor", "random_conv_graph", "random_grouped_conv_graph", "random_vector_graph", "VECTOR_KINDS",
           "GROUPED_KINDS", "extreme_depthwise_graph", "tiny_mobilenet_onnx",
           "separable_cnn_onnx", "TINY_SET", "deep_memories"]

VECTOR_KINDS = ("maxpool", "avgpool", "gap", "add", "mul", "mul_bcast", "clamp", "concat")


def random_tensor(name, shape, rng, dtype=None) -> ir.TensorInfo:
    """A tensor description with a random dtype (unless given), scale and zero point."""
    dtype = dtype or rng.choice(["int8", "uint8"])
    lo, hi = ir.DTYPE_RANGES[dtype]
    return ir.TensorInfo(name, tuple(shape), dtype, float(rng.uniform(0.01, 0.1)), int(rng.integers(lo, hi + 1)))


def _random_window(rng, kmax: int) -> tuple:
    """A random input plane, kernel, stride, dilation and padding that give at least one output:
    ``(h, w, kh, kw, sh, sw, dh, dw, pads, oh, ow)``."""
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
    return h, w, kh, kw, sh, sw, dh, dw, pads, oh, ow


def random_conv_graph(rng, cfg=None, *, cin: int | None = None, kmax: int = 4) -> ir.Graph:
    """A graph of one random convolution ``x -> y`` (input ``x``, output ``y``, layer ``conv``).

    ``cin`` fixes the input channels (one channel and ``kmax`` up to 8 exercise row-packed inputs). A third of
    the graphs have their last taps zero in every filter (structured sparsity the compiler does not walk)."""
    cin = int(rng.choice([1, 2, 3, 5, 8, 9, 16, 20, 70, 150])) if cin is None else cin
    h, w, kh, kw, sh, sw, dh, dw, pads, oh, ow = _random_window(rng, kmax)
    cout = int(rng.integers(1, 21))
    return _conv_graph(rng, cin, cout, (h, w, kh, kw, sh, sw, dh, dw, pads, oh, ow))


def _conv_graph(rng, cin: int, cout: int, window: tuple, groups: int = 1, corner: bool = False) -> ir.Graph:
    """The graph of one random convolution of ``groups`` groups over ``window`` (:func:`_random_window`); a
    third have their last taps pruned. ``corner``: the first weight of every filter is -128 (the most
    negative weight)."""
    h, w, kh, kw, sh, sw, dh, dw, pads, oh, ow = window
    x = random_tensor("x", (cin, h, w), rng)
    y = random_tensor("y", (cout, oh, ow), rng)
    wt = rng.integers(-128, 128, (cout, cin // groups, kh, kw)).astype(np.int8)
    if kh * kw > 1 and rng.random() < 1 / 3:  # prune the last taps of every filter
        cut = int(rng.integers(1, kh * kw))
        wt.reshape(cout, cin // groups, kh * kw)[:, :, kh * kw - cut:] = 0
    if corner:
        wt[:, 0, 0, 0] = -128
    bias = rng.integers(-5000, 5000, cout).astype(np.int32)
    layer = ir.Conv2d(name="conv", inputs=(x,), output=y, weight=wt, bias=bias,
                      weight_scale=rng.uniform(0.001, 0.01, cout) if rng.random() < 0.5 else 0.005,
                      stride=(sh, sw), padding=tuple(pads), dilation=(dh, dw), groups=groups)
    if rng.random() < 0.5:
        layer = ir.with_clamp(layer, y.zero_point, y.qmax)
    return ir.Graph("conv", (x,), (layer,), ("y",))


#: The grouped convolutions :func:`random_grouped_conv_graph` draws.
GROUPED_KINDS = ("depthwise", "multiplier", "grouped")


def random_grouped_conv_graph(rng, kind: str | None = None, kmax: int = 4) -> ir.Graph:
    """A graph of one random grouped convolution ``x -> y`` (layer ``conv``) of ``kind`` (one of
    :data:`GROUPED_KINDS`, default random): ``depthwise`` (one channel per group, ``groups = channels``, channel
    counts that are and are not whole activation words), ``multiplier`` (one input and 2-3 output channels per
    group) or ``grouped`` (2-6 groups of 1-9 input and 1-6 output channels, group sizes that do and do not
    divide the lanes). Every filter's first weight is -128."""
    kind = kind or str(rng.choice(GROUPED_KINDS))
    if kind == "depthwise":
        g = int(rng.choice([1, 2, 3, 5, 8, 12, 16, 20, 24, 32]))
        cin_g, cout_g = 1, 1
    elif kind == "multiplier":
        g, cin_g, cout_g = int(rng.choice([2, 3, 5, 8, 12])), 1, int(rng.integers(2, 4))
    elif kind == "grouped":
        g = int(rng.integers(2, 7))
        cin_g, cout_g = int(rng.choice([1, 2, 3, 4, 5, 8, 9])), int(rng.choice([1, 2, 3, 4, 6]))
    else:
        raise ValueError(f"kind {kind!r}: allowed one of {GROUPED_KINDS}")
    return _conv_graph(rng, g * cin_g, g * cout_g, _random_window(rng, kmax), groups=g, corner=True)


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
    elif kind in ("mul", "mul_bcast"):  # a product, of a (C, 1, 1) b broadcast over the plane for mul_bcast
        b = random_tensor("b", (c, h, w) if kind == "mul" else (c, 1, 1), rng, dtype)
        y = random_tensor("y", (c, h, w), rng, dtype)
        layer = ir.Mul(name="mul", inputs=(x, b), output=y)
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




def extreme_depthwise_graph(channels: int = 13, batch: int = 2) -> tuple[ir.Graph, np.ndarray]:
    """A 3x3 depthwise convolution (layer ``conv``) with every weight -128 over an int8 input whose zero point
    is -128, and ``batch`` inputs of codes -128 (the second image with a 2x2 patch of 127): the most negative
    products and the largest sums over 9 taps, padding at the zero point. Returns the graph and the input."""
    x = ir.TensorInfo("x", (channels, 4, 4), "int8", 0.05, -128)
    y = ir.TensorInfo("y", (channels, 4, 4), "int8", 0.05, 3)
    layer = ir.Conv2d(name="conv", inputs=(x,), output=y, weight=np.full((channels, 1, 3, 3), -128, np.int8),
                      groups=channels, padding=(1, 1, 1, 1), bias=np.full(channels, -7, np.int32),
                      weight_scale=0.001)
    xs = np.full((batch, channels, 4, 4), -128, np.int8)
    xs[1:, :, 1:3, 1:3] = 127
    return ir.Graph("conv", (x,), (layer,), ("y",)), xs


def tiny_mobilenet_onnx(seed: int, calib: int = 16) -> bytes:
    """A small MobileNet-style classifier as a quantized ONNX model (QDQ, per-channel int8 weights), sized for
    the default preset: a 3x3 stride-2 stem of 8 channels, three depthwise 3x3 + pointwise 1x1 blocks (8, 12 and
    20 depthwise channels, the last two not whole words of 8 lanes; the second of stride 2) with ReLU6, a global
    average pool and a Gemm to 10 classes, on a ``3 x 16 x 16`` input (:func:`separable_cnn_onnx`)."""
    return separable_cnn_onnx(seed, (3, 16, 16), (8, (3, 3), 2), [(12, 1), (20, 2), (32, 1)], 10, calib=calib,
                              name="tiny_mobilenet")


#: MLPerf Tiny's DS-CNN keyword spotting topology (1x49x10 MFCC input, 64 channels, 12 classes), MobileNetV1
#: 0.25 of its visual wake words (3x96x96, 2 classes) and a narrow MobileNetV2, as :func:`separable_cnn_onnx`
#: arguments.
TINY_SET = {
    "ds_cnn": ((1, 49, 10), (64, (10, 4), 2), [(64, 1)] * 4, 12),
    "mobilenet_v1_025": ((3, 96, 96), (8, (3, 3), 2),
                         [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5
                         + [(256, 2), (256, 1)], 2),
    # MobileNetV2's topology (expansion 6, inverted residuals) at width 0.35 on 3x32x32, sized for ISS tests
    "mobilenet_v2_035_32": ((3, 32, 32), (16, (3, 3), 2), [(8, 1, 1), (8, 2, 6), (8, 1, 6), (16, 2, 6), (16, 1, 6),
                                                          (24, 1, 6), (32, 2, 6), (32, 1, 6), (112, 1, 6)], 10),
}


def deep_memories(cfg):
    """``cfg`` with memories deep enough to hold every model of :data:`TINY_SET` whole (activation and weight
    memories of 65536 words, 512 parameter and 128 descriptor words, 2048 instructions and trace entries): the
    default preset's 4096 activation and 1024 weight words need the memory system of "Real networks I" for
    them."""
    from dataclasses import replace
    return replace(cfg, name="deep",
                   fabric=replace(cfg.fabric, act_depth=65536, weight_depth=65536, param_depth=512, desc_depth=128),
                   controller=replace(cfg.controller, program_depth=2048, trace_depth=2048))


def separable_cnn_onnx(seed: int, input_shape: tuple[int, int, int], stem: tuple, blocks: list[tuple[int, int]],
                       classes: int, calib: int = 16, name: str = "separable_cnn") -> bytes:
    """A depthwise-separable CNN (MobileNetV1 / V2, DS-CNN) as a quantized ONNX model: a stem convolution
    ``stem = (channels, (kh, kw), stride)`` with "same" padding, blocks ``(channels, stride)`` of a depthwise
    3x3 (stride ``stride``) and a pointwise 1x1 to ``channels``, or ``(channels, stride, t)`` MobileNetV2
    inverted residuals (1x1 expansion by ``t`` unless 1, depthwise 3x3, linear 1x1 projection, residual add
    when the shape allows), each convolution but a projection followed by ReLU6, then a global average pool
    and a Gemm to ``classes``. Weights and ``calib`` calibration inputs (uniform 0..1) are
    drawn from ``seed``; quantized by ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8
    weights, int8 activations)."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(cname, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), cname))
        return cname

    def conv(x, hw, cname, cin, cout, k, stride, groups, relu6=True):
        std = np.sqrt(2.0 / (cin // groups * k[0] * k[1]))
        w = const(f"{cname}.w", rng.normal(0, std, (cout, cin // groups, *k)))
        b = const(f"{cname}.b", rng.normal(0, 0.1, cout))
        out = [-(-n // stride) for n in hw]
        pad = [max(0, (o - 1) * stride + kk - n) for o, kk, n in zip(out, k, hw)]
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{cname}.y"], name=cname, kernel_shape=list(k),
                                      strides=[stride, stride], group=groups,
                                      pads=[pad[0] // 2, pad[1] // 2, pad[0] - pad[0] // 2, pad[1] - pad[1] // 2]))
        if not relu6:
            return f"{cname}.y", out
        nodes.append(helper.make_node("Clip", [f"{cname}.y", const(f"{cname}.lo", 0.0), const(f"{cname}.hi", 6.0)],
                                      [f"{cname}.r"], name=f"{cname}.relu6"))
        return f"{cname}.r", out

    c0, k0, s0 = stem
    x, hw = conv("input", input_shape[1:], "stem", input_shape[0], c0, k0, s0, 1)
    cin = c0
    for i, (cout, stride, *expand) in enumerate(blocks):
        if not expand:  # MobileNetV1 / DS-CNN: depthwise, pointwise
            x, hw = conv(x, hw, f"dw{i}", cin, cin, (3, 3), stride, cin)
            x, hw = conv(x, hw, f"pw{i}", cin, cout, (1, 1), 1, 1)
        else:  # MobileNetV2's inverted residual: expand, depthwise, linear projection, residual add
            block_in, mid = x, cin * expand[0]
            y, hw = conv(x, hw, f"ex{i}", cin, mid, (1, 1), 1, 1) if expand[0] > 1 else (x, hw)
            y, hw = conv(y, hw, f"dw{i}", mid, mid, (3, 3), stride, mid)
            x, hw = conv(y, hw, f"pj{i}", mid, cout, (1, 1), 1, 1, relu6=False)
            if stride == 1 and cin == cout:
                nodes.append(helper.make_node("Add", [block_in, x], [f"add{i}"], name=f"add{i}"))
                x = f"add{i}"
        cin = cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", const("fc.w", rng.normal(0, 0.2, (classes, cin))),
                                           const("fc.b", rng.normal(0, 0.1, classes))], ["logits"], name="fc",
                                  transB=1))
    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *input_shape])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data = [rng.uniform(0, 1, (1, *input_shape)).astype(np.float32) for _ in range(calib)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "q.onnx"
        onnx.save(model, str(src))
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        return dst.read_bytes()
