"""Integer operators of the golden model, vectorised over a batch.

Each operator takes an IR layer (:mod:`cimforge.golden.ir`, the parameter bag) and arrays of codes shaped
``(N, *tensor.shape)``, and a ``rounding`` keyword (:data:`cimforge.golden.requant.ROUNDING_MODES`, default the
architecture's); it returns the output codes in the output tensor's dtype. Weighted layers also expose
their int32 accumulators (``conv2d_acc``, ``dense_acc``) so that a bench can compare partial results.

Accumulation uses float64 matrix products on integer-valued operands: every partial sum is an integer below
2**53 in magnitude (int8 x uint8 products times a reduction length far below 2**37), so the result is exact and
BLAS-fast; it is converted back to int64 and checked against the int32 range.
"""

from __future__ import annotations

import numpy as np

from .ir import (LRN, Lut, Add, AvgPool, Clamp, Concat, Conv2d, ConvInteger, Dense, FloatChain, GlobalAvgPool, IRError,
                 Layer,
                 MatMulInteger, MaxPool, Mul, Requant, Reshape, Resize, Softmax, TensorInfo)
from . import lut as _lut
from .lrn import lrn_integer
from .requant import NumericsError, multiply_by_quantized_multiplier, requantize

__all__ = [
    "quantize", "dequantize", "im2col", "window_sum",
    "conv2d_acc", "conv2d", "dense_acc", "dense", "max_pool", "avg_pool", "global_avg_pool",
    "add", "mul", "concat", "reshape", "clamp", "requantize_layer", "softmax", "lrn", "lut", "conv_integer", "matmul_integer",
    "softmax_table", "float_chain", "input_real", "input_shape", "input_bounds",
]


def quantize(x, info: TensorInfo) -> np.ndarray:
    """ONNX ``QuantizeLinear`` of real values into ``info``'s codes: ``saturate(rint(x / scale) + zp)``.

    Division is in float32 and ties round to even, as onnxruntime does.
    """
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(info.scale)).astype(np.float64) + info.zero_point
    return np.clip(q, info.qmin, info.qmax).astype(info.np_dtype)


def input_real(x, steps) -> np.ndarray:
    """A float input after the model's own arithmetic on it (:attr:`~cimforge.golden.ir.Graph.input_steps`,
    e.g. ``(x - mean) / std``, or the ``Transpose`` of an NHWC input to NCHW): each step in float32, as
    onnxruntime computes it (IEEE operations, so the same values), ready for :func:`quantize`."""
    y = np.asarray(x, np.float32)
    ops = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
    for op, c, first in steps:
        if op == "Transpose":  # c: the permutation of every axis, the batch axis (0) first
            y = np.transpose(y, c)
            continue
        c = np.asarray(c, np.float32)
        y = ops[op](c, y) if first else ops[op](y, c)
    return np.ascontiguousarray(y, np.float32)


def input_shape(shape, steps) -> tuple[int, ...]:
    """The per-sample shape of the float input a user gives (the model's own input layout) for a quantized
    graph input of ``shape``: ``shape`` with the steps' transpositions undone."""
    shape = (1, *shape)
    for op, c, _ in reversed(steps):
        if op == "Transpose":
            shape = tuple(shape[i] for i in np.argsort(c))
    return tuple(int(d) for d in shape[1:])


def input_bounds(lo: float, hi: float, steps, shape) -> tuple[np.ndarray, np.ndarray]:
    """The raw float input values ``(N, *input_shape(shape, steps))``-broadcastable whose :func:`input_real`
    spans ``lo .. hi`` on a quantized input of ``shape``: the steps inverted (element-wise bounds; a step by a
    negative constant swaps them, a transposition is undone)."""
    a = np.full((1, *shape), lo, np.float64)
    b = np.full((1, *shape), hi, np.float64)
    inverse = {"Add": lambda y, c, f: y - c, "Sub": lambda y, c, f: c - y if f else y + c,
               "Mul": lambda y, c, f: y / c, "Div": lambda y, c, f: c / y if f else y * c}
    for op, c, first in reversed(steps):
        if op == "Transpose":
            a, b = np.transpose(a, np.argsort(c)), np.transpose(b, np.argsort(c))
            continue
        c = np.asarray(c, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = inverse[op](a, c, first), inverse[op](b, c, first)
        a, b = np.minimum(a, b), np.maximum(a, b)
    return np.nan_to_num(a).astype(np.float32), np.nan_to_num(b).astype(np.float32)


def dequantize(q, info: TensorInfo) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(q - zp) * scale`` in float32."""
    return ((np.asarray(q, dtype=np.int32) - info.zero_point).astype(np.float32) * np.float32(info.scale))


def _check_input(layer: Layer, x: np.ndarray, info: TensorInfo) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != len(info.shape) + 1 or tuple(x.shape[1:]) != info.shape:
        raise IRError(f"{layer.kind} layer {layer.name!r}: input {info.name!r} has shape {x.shape}, "
                      f"expected (N, {', '.join(map(str, info.shape))})")
    if x.dtype != info.np_dtype:
        if not np.issubdtype(x.dtype, np.integer) or x.size and (x.min() < info.qmin or x.max() > info.qmax):
            raise IRError(f"{layer.kind} layer {layer.name!r}: input {info.name!r} has dtype {x.dtype}, "
                          f"expected {info.dtype} codes")
    return x


def _pad(x: np.ndarray, padding: tuple[int, int, int, int], value) -> np.ndarray:
    pt, pl, pb, pr = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _taps(xp: np.ndarray, kernel, stride, dilation, out_hw):
    """Yield ``(ky, kx, view)`` with ``view[n, c, ho, wo] = xp[n, c, ho*sh + ky*dh, wo*sw + kx*dw]``."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, :, y0:y0 + sh * (ho - 1) + 1:sh, x0:x0 + sw * (wo - 1) + 1:sw]


def im2col(x, zero_point: int, kernel, stride, padding, dilation, groups: int, out_hw) -> np.ndarray:
    """Lower a ``(N, C, H, W)`` batch of codes to GEMM rows, in the IR's documented order.

    Returns
    -------
    numpy.ndarray of int32, shape ``(N, groups, Ho*Wo, C/groups*kh*kw)``
        ``cols[n, g, ho*Wo + wo, (ci*kh + ky)*kw + kx] = x[n, g*C/groups + ci, ho*sh - pt + ky*dh,
        wo*sw - pl + kx*dw]``, padded taps holding ``zero_point``.
    """
    x = np.asarray(x, dtype=np.int32)
    n, c = x.shape[:2]
    kh, kw = kernel
    ho, wo = out_hw
    xp = _pad(x, padding, zero_point)
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=np.int32)
    for ky, kx, view in _taps(xp, kernel, stride, dilation, out_hw):
        cols[:, :, ky, kx] = view
    cols = cols.reshape(n, groups, c // groups, kh, kw, ho * wo)
    return cols.transpose(0, 1, 5, 2, 3, 4).reshape(n, groups, ho * wo, c // groups * kh * kw)


def _to_int32_acc(layer: Layer, acc_f: np.ndarray, bias: np.ndarray) -> np.ndarray:
    acc = np.rint(acc_f).astype(np.int64) + bias.astype(np.int64)
    if acc.size and (acc.min() < -2**31 or acc.max() > 2**31 - 1):
        raise NumericsError(f"{layer.kind} layer {layer.name!r}: accumulator leaves int32 "
                            f"([{int(acc.min())}, {int(acc.max())}])")
    return acc


def conv2d_acc(layer: Conv2d, x) -> np.ndarray:
    """int32 accumulators ``bias + sum (x - zp_in) * w`` of a :class:`~cimforge.golden.ir.Conv2d`,
    shaped ``(N, Cout, Ho, Wo)`` (int64 dtype, int32 range checked)."""
    x = _check_input(layer, x, layer.input)
    g = layer.groups
    _, ho, wo = layer.output.shape
    cols = im2col(x, layer.input.zero_point, layer.kernel, layer.stride, layer.padding, layer.dilation, g, (ho, wo))
    cols = (cols - layer.input.zero_point).astype(np.float64)
    w = np.stack([layer.weight_matrix(i) for i in range(g)]).astype(np.float64)  # (g, K, Ng)
    y = np.matmul(cols, w)  # (N, g, M, Ng)
    if layer.has_weight_zero_point:  # minus zp_w[c] times the window's activation sum
        zw = layer.weight_zero_point.reshape(g, 1, -1).astype(np.float64)  # (g, 1, Ng)
        y = y - cols.sum(axis=3, keepdims=True) * zw
    y = y.transpose(0, 1, 3, 2).reshape(x.shape[0], layer.out_channels, ho, wo)
    return _to_int32_acc(layer, y, layer.bias[None, :, None, None])


def requantize_layer(layer: Layer, acc: np.ndarray, requant: Requant, channel_axis: int | None,
                     rounding: str | None = None, even: bool = False) -> np.ndarray:
    """Requantise accumulators with ``requant`` (per channel along ``channel_axis`` of ``acc``, else
    broadcast as stored) into ``layer.output``'s codes, clamped to ``[act_min, act_max]``; ``even``: exact
    ties to even (:func:`~cimforge.golden.requant.multiply_by_quantized_multiplier`)."""
    m, s = requant.multiplier, requant.shift
    if channel_axis is not None and m.ndim == 1:
        shape = [1] * acc.ndim
        shape[channel_axis] = m.size  # (an axis counted from the end for a Dense over positions)
        m, s = m.reshape(shape), s.reshape(shape)
    y = requantize(acc, m, s, layer.output.zero_point, layer.act_min, layer.act_max, rounding, even)
    return y.astype(layer.output.np_dtype)


def conv2d(layer: Conv2d, x, rounding: str | None = None) -> np.ndarray:
    """Output codes of a :class:`~cimforge.golden.ir.Conv2d`."""
    return requantize_layer(layer, conv2d_acc(layer, x), layer.requant, channel_axis=1, rounding=rounding)


def dense_acc(layer: Dense, x) -> np.ndarray:
    """int32 accumulators of a :class:`~cimforge.golden.ir.Dense`, shaped ``(N, ..., out_features)``."""
    x = _check_input(layer, x, layer.input)
    xc = x.astype(np.float64) - layer.input.zero_point
    y = xc @ layer.weight.T.astype(np.float64)
    if layer.has_weight_zero_point:  # minus zp_w[c] times the activation sum
        y = y - xc.sum(axis=-1, keepdims=True) * layer.weight_zero_point.astype(np.float64)
    return _to_int32_acc(layer, y, layer.bias)


def dense(layer: Dense, x, rounding: str | None = None) -> np.ndarray:
    """Output codes of a :class:`~cimforge.golden.ir.Dense`."""
    return requantize_layer(layer, dense_acc(layer, x), layer.requant, channel_axis=-1, rounding=rounding)


def conv_integer(layer: ConvInteger, x, rounding: str | None = None) -> np.ndarray:
    """ONNX ``ConvInteger``: the int32 accumulators themselves (no bias, no requantisation; ``rounding`` is
    accepted for the common signature and has nothing to round)."""
    return conv2d_acc(layer, x).astype(np.int32)


def matmul_integer(layer: MatMulInteger, x, rounding: str | None = None) -> np.ndarray:
    """ONNX ``MatMulInteger`` with a constant ``B``: the int32 accumulators (as :func:`conv_integer`)."""
    return dense_acc(layer, x).astype(np.int32)


def max_pool(layer: MaxPool, x, rounding: str | None = None) -> np.ndarray:
    """Max of the codes in each window (padded taps ignored)."""
    x = _check_input(layer, x, layer.input)
    xp = _pad(x.astype(np.int32), layer.padding, np.iinfo(np.int32).min)
    out = None
    for _, _, view in _taps(xp, layer.kernel, layer.stride, layer.dilation, layer.output.shape[1:]):
        out = view.copy() if out is None else np.maximum(out, view)
    return out.astype(layer.output.np_dtype)


def window_sum(x, zero_point: int, kernel, stride, padding, dilation, out_hw) -> np.ndarray:
    """Sum of ``x - zero_point`` over each pooling window (padded taps count 0), int64 ``(N, C, Ho, Wo)``."""
    xp = _pad(np.asarray(x, dtype=np.int64) - zero_point, padding, 0)
    acc = np.zeros((xp.shape[0], xp.shape[1], *out_hw), dtype=np.int64)
    for _, _, view in _taps(xp, kernel, stride, dilation, out_hw):
        acc += view
    return acc


def _float_pool(layer, x, kernel, stride, padding, dilation, divisors, generic: bool = False) -> np.ndarray:
    """onnxruntime's float ``DequantizeLinear -> AveragePool -> QuantizeLinear`` (``method="float"``): the codes
    dequantized in float32, summed in float32 in the order of the MLAS pooling kernel onnxruntime picks
    (:func:`_mlas_window_sums`), divided by the tap count in float32, then ``QuantizeLinear`` (float32 division
    by the output scale, ``rint``: ties to even) and the layer's clamp. The same float32 operations in the same
    order as its kernel, so a window sum that lands on a quantisation tie, or just off it by float32 rounding,
    rounds the same way."""
    real = (np.asarray(x, np.int32) - layer.input.zero_point).astype(np.float32) * np.float32(layer.input.scale)
    acc = _mlas_window_sums(real, kernel, stride, padding, dilation, layer.output.shape[1:], generic)
    avg = acc / np.asarray(divisors, np.float32)
    q = np.rint(avg / np.float32(layer.output.scale)).astype(np.float64) + layer.output.zero_point
    return np.clip(q, layer.act_min, layer.act_max).astype(layer.output.np_dtype)


def _mlas_window_sums(real: np.ndarray, kernel, stride, padding, dilation, out_hw, generic: bool = False
                      ) -> np.ndarray:
    """float32 window sums of ``real`` ``(N, C, H, W)`` in MLAS's order (onnxruntime's ``MlasPool``):

    * the window is the whole plane (stride 1, no padding): the global kernel, four float32 lanes over the
      flattened plane (lane ``j`` sums elements ``j, j + 4, ...``), reduced as ``(l0 + l2) + (l1 + l3)``, then the
      elements after the last full vector one by one;
    * width stride <= 2 and kernels <= 32 (no dilation): the vector kernel, column sums over the window's rows
      (top to bottom), then those summed across the window's columns (left to right, padded columns adding 0);
    * otherwise, and for ``generic`` (an ``AveragePool`` from opset 19, and an average whose divisor counts the
      explicit padding of a ``ceil_mode`` pool: measured, onnxruntime 1.32), the generic kernel: row-major over
      the window's taps inside the input.
    """
    n, c, h, w = real.shape
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    pt, pl, pb, pr = padding
    f32 = np.float32
    if (kh, kw) == (h, w) and (sh, sw) == (1, 1) and not any(padding):
        flat = real.reshape(n, c, h * w)
        full = (h * w) // 4 * 4
        lanes = np.zeros((n, c, 4), f32)
        for k in range(0, full, 4):
            lanes = lanes + flat[:, :, k:k + 4]
        acc = (lanes[:, :, 0] + lanes[:, :, 2]) + (lanes[:, :, 1] + lanes[:, :, 3])
        for k in range(full, h * w):
            acc = acc + flat[:, :, k]
        return acc.reshape(n, c, 1, 1)
    rows = [(max(oy * sh - pt, 0), min(oy * sh - pt + kh, h)) for oy in range(ho)]
    out = np.zeros((n, c, ho, wo), f32)
    if sw <= 2 and kh <= 32 and kw <= 32 and dilation == (1, 1) and not generic:
        for oy, (y0, y1) in enumerate(rows):
            colsum = real[:, :, y0].copy()
            for y in range(y0 + 1, y1):
                colsum = colsum + real[:, :, y]
            padded = np.concatenate([np.zeros((n, c, pl), f32), colsum, np.zeros((n, c, pr + kw), f32)], axis=2)
            acc = padded[:, :, 0:sw * (wo - 1) + 1:sw].copy()
            for kx in range(1, kw):
                acc = acc + padded[:, :, kx:kx + sw * (wo - 1) + 1:sw]
            out[:, :, oy] = acc
        return out
    dh, dw = dilation
    for oy in range(ho):
        for ox in range(wo):
            acc = np.zeros((n, c), f32)
            for ky in range(kh):
                y = oy * sh - pt + ky * dh
                if not 0 <= y < h:
                    continue
                for kx in range(kw):
                    xx = ox * sw - pl + kx * dw
                    if 0 <= xx < w:
                        acc = acc + real[:, :, y, xx]
            out[:, :, oy, ox] = acc
    return out


def avg_pool(layer: AvgPool, x, rounding: str | None = None) -> np.ndarray:
    """Window sum then requantisation by ``s_in / (s_out * divisor)`` (see :class:`~cimforge.golden.ir.AvgPool`);
    onnxruntime's float pool where ``layer.method == "float"`` (:func:`_float_pool`; ``rounding`` unused)."""
    x = _check_input(layer, x, layer.input)
    if layer.method == "float":
        return _float_pool(layer, x, layer.kernel, layer.stride, layer.padding, layer.dilation, layer.divisors,
                           generic=layer.generic_order)
    acc = window_sum(x, layer.input.zero_point, layer.kernel, layer.stride, layer.padding, layer.dilation,
                     layer.output.shape[1:])
    return requantize_layer(layer, acc, layer.requant, channel_axis=None, rounding=rounding, even=layer.round_even)


def global_avg_pool(layer: GlobalAvgPool, x, rounding: str | None = None) -> np.ndarray:
    """Plane sum then requantisation by ``s_in / (s_out * H * W)``; as :func:`avg_pool` for ``method``."""
    x = _check_input(layer, x, layer.input)
    if layer.method == "float":
        return _float_pool(layer, x, layer.input.shape[1:], (1, 1), (0, 0, 0, 0), (1, 1), layer.divisor)
    acc = (x.astype(np.int64) - layer.input.zero_point).sum(axis=(2, 3), keepdims=True)
    return requantize_layer(layer, acc, layer.requant, channel_axis=None, rounding=rounding, even=layer.round_even)


def add(layer: Add, a, b, rounding: str | None = None) -> np.ndarray:
    """TFLite integer addition (see :class:`~cimforge.golden.ir.Add`)."""
    a = _check_input(layer, a, layer.inputs[0])
    b = _check_input(layer, b, layer.inputs[1])
    ta, tb = layer.inputs
    sa = multiply_by_quantized_multiplier((a.astype(np.int64) - ta.zero_point) << layer.left_shift,
                                          layer.requant_a.multiplier, layer.requant_a.shift, rounding)
    sb = multiply_by_quantized_multiplier((b.astype(np.int64) - tb.zero_point) << layer.left_shift,
                                          layer.requant_b.multiplier, layer.requant_b.shift, rounding)
    return requantize_layer(layer, sa + sb, layer.requant_out, channel_axis=None, rounding=rounding)


def mul(layer: Mul, a, b, rounding: str | None = None) -> np.ndarray:
    """TFLite integer product (see :class:`~cimforge.golden.ir.Mul`): a ``(C, 1, 1)`` ``b`` broadcasts."""
    a = _check_input(layer, a, layer.inputs[0])
    b = _check_input(layer, b, layer.inputs[1])
    ta, tb = layer.inputs
    prod = (a.astype(np.int64) - ta.zero_point) * (b.astype(np.int64) - tb.zero_point)
    return requantize_layer(layer, prod, layer.requant, channel_axis=None, rounding=rounding)


def concat(layer: Concat, *xs, rounding: str | None = None) -> np.ndarray:
    """Concatenate along the per-sample axis, requantising inputs whose quantisation differs."""
    parts = []
    for x, info, rq in zip(xs, layer.inputs, layer.requants):
        x = _check_input(layer, x, info)
        if rq is None:
            parts.append(x.astype(np.int64))
        else:
            parts.append(requantize(x.astype(np.int64) - info.zero_point, rq.multiplier, rq.shift,
                                    layer.output.zero_point, layer.output.qmin, layer.output.qmax, rounding))
    return np.concatenate(parts, axis=layer.axis + 1).astype(layer.output.np_dtype)


def reshape(layer: Reshape, x, rounding: str | None = None) -> np.ndarray:
    """Row-major reshape to the output's per-sample shape."""
    x = _check_input(layer, x, layer.input)
    return x.reshape(x.shape[0], *layer.output.shape).astype(layer.output.np_dtype)


def resize(layer: Resize, x, rounding: str | None = None) -> np.ndarray:
    """Nearest-neighbour resize (:class:`~cimforge.golden.ir.Resize`): a gather of rows and columns, requantised
    when the output's quantisation differs."""
    x = _check_input(layer, x, layer.input)
    y = x[:, :, list(layer.rows)][:, :, :, list(layer.cols)].astype(np.int64)
    if layer.requant is None:
        return y.astype(layer.output.np_dtype)
    rq, out = layer.requant, layer.output
    return requantize(y - layer.input.zero_point, rq.multiplier, rq.shift, out.zero_point, out.qmin, out.qmax,
                      rounding).astype(out.np_dtype)


def clamp(layer: Clamp, x, rounding: str | None = None) -> np.ndarray:
    """Clamp codes to ``[act_min, act_max]``."""
    x = _check_input(layer, x, layer.input)
    return np.clip(x, layer.act_min, layer.act_max).astype(layer.output.np_dtype)


def softmax_table(x_scale: float, reduce_len: int) -> tuple[np.ndarray, float]:
    """onnxruntime's ``QLinearSoftmax`` table: ``table[i] = float32(exp((i - 255 + b) * x_scale))`` for
    ``i = x - x_max + 255`` in ``0..255``, computed in double, with the shift ``b = max(0, log(FLT_MAX /
    reduce_len) - 5) / x_scale`` that keeps a sum of ``reduce_len`` entries below float32's maximum.

    Returns
    -------
    (numpy.ndarray of float32, float)
        The table and ``b``.
    """
    s = float(np.float32(x_scale))
    b = max(0.0, float(np.log(float(np.finfo(np.float32).max) / reduce_len)) - 5.0) / s
    i = np.arange(256, dtype=np.float64)
    return np.exp((i - 255.0 + b) * s).astype(np.float32), b


def _softmax_rows(layer: Softmax, x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` as ``(rows, D)`` with the softmax axes last, and the shape to move it back from."""
    first = layer.axes[0] + 1
    moved = np.moveaxis(x, first, -1) if len(layer.axes) == 1 else x
    return moved.reshape(-1, int(np.prod(moved.shape[-len(layer.axes):]))), moved.shape


def softmax(layer: Softmax, x, rounding: str | None = None) -> np.ndarray:
    """Softmax codes as onnxruntime computes them (``layer.method``, see :class:`~cimforge.golden.ir.Softmax`).
    ``rounding`` is accepted for the common signature; no fixed-point requantisation is involved."""
    x = _check_input(layer, x, layer.input)
    rows, moved = _softmax_rows(layer, x.astype(np.int64))
    out = layer.output
    if layer.method == "table":
        table, _ = softmax_table(layer.input.scale, rows.shape[1])
        t = table[rows - rows.max(axis=1, keepdims=True) + 255]  # float32
        total = np.cumsum(t, axis=1, dtype=np.float32)[:, -1:]  # one float32 sum in element order
        y_scale = np.floor(np.float32(1.0) / np.float32(out.scale)).astype(np.float32)
        y = np.clip(np.rint((t * y_scale) / total).astype(np.int64) + out.zero_point, out.qmin, out.qmax)
    else:
        real = (rows - layer.input.zero_point) * float(layer.input.scale)
        e = np.exp(real - real.max(axis=1, keepdims=True))
        y = quantize(e / e.sum(axis=1, keepdims=True), out).astype(np.int64)
    y = y.reshape(moved)
    if len(layer.axes) == 1:
        y = np.moveaxis(y, -1, layer.axes[0] + 1)
    return y.astype(out.np_dtype)


def lut(layer: Lut, x, rounding: str | None = None) -> np.ndarray:
    """An element-wise table (:class:`~cimforge.golden.ir.Lut`): ``table[x & 0xFF]``. ``rounding`` is accepted
    for the common signature (the table is already quantized)."""
    x = _check_input(layer, x, layer.input)
    return _lut.lookup(layer.tables, x).astype(layer.output.np_dtype)


def lrn(layer: LRN, x, rounding: str | None = None) -> np.ndarray:
    """ONNX ``LRN``: the integer form with the layer's table (``method`` "integer",
    :func:`cimforge.golden.lrn.lrn_integer`), or float64 on the dequantized input quantized into the output
    (``method`` "float"); see :class:`~cimforge.golden.ir.LRN`. ``rounding`` is accepted for the common
    signature."""
    x = _check_input(layer, x, layer.input)
    if layer.method == "integer":
        out = layer.output
        d = x.astype(np.int64) - layer.input.zero_point
        return lrn_integer(d, layer.table, layer.size, out.zero_point, out.qmin, out.qmax).astype(out.np_dtype)
    real = (x.astype(np.float64) - layer.input.zero_point) * float(np.float32(layer.input.scale))
    sq = real * real
    c = real.shape[1]
    lo, hi = (layer.size - 1) // 2, -(-(layer.size - 1) // 2)
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    idx = np.arange(c)
    top, bottom = np.minimum(idx + hi + 1, c), np.maximum(idx - lo, 0)
    square_sum = np.take(csum, top, axis=1) - np.take(csum, bottom, axis=1)
    y = real / (layer.bias + layer.alpha / layer.size * square_sum) ** layer.beta
    return quantize(y, layer.output)


def float_chain(layer: FloatChain, *xs, rounding: str | None = None) -> np.ndarray:
    """A :class:`~cimforge.golden.ir.FloatChain`: its expression in float32, as onnxruntime evaluates each
    operator (DequantizeLinear ``(q - zp) * s``; BatchNormalization / Mul / Add by constants ``x * mult + shift``;
    Sum left to right; Relu / Clip; an average pool in MLAS's order, :func:`_mlas_window_sums`), then
    QuantizeLinear (``rint(v / s_out) + zp``) and the clamp. ``rounding`` is accepted for the common signature."""
    xs = [_check_input(layer, x, t) for x, t in zip(xs, layer.inputs)]
    f32 = np.float32

    def per_channel(a, v):
        return np.asarray(a, f32).reshape((1, -1) + (1,) * (v.ndim - 2))

    def ev(e):
        op = e[0]
        if op == "dq":
            t = layer.inputs[e[1]]
            return (xs[e[1]].astype(np.int32) - t.zero_point).astype(f32) * f32(t.scale)
        if op == "table":
            return _lut.lookup(np.asarray(e[2], f32), xs[e[1]])
        if op == "sum":
            acc = ev(e[1][0])
            for child in e[1][1:]:
                acc = acc + ev(child)
            return acc
        v = ev(e[1])
        if op == "affine":
            return v * per_channel(e[2], v) + per_channel(e[3], v)
        if op == "clip":
            return np.clip(v, f32(e[2]), f32(e[3])).astype(f32)
        if op == "pool":
            kernel, stride, padding, dilation, divisors, out_hw, generic = e[2:]
            return _mlas_window_sums(v, kernel, stride, padding, dilation, out_hw, generic) / np.asarray(divisors,
                                                                                                          f32)
        return v.reshape(v.shape[0], *e[2])  # reshape
    v = ev(layer.expr)
    out = layer.output
    q = np.rint(v / f32(out.scale)).astype(np.float64) + out.zero_point
    return np.clip(q.reshape(q.shape[0], *out.shape), layer.act_min, layer.act_max).astype(out.np_dtype)
