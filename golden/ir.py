"""The layer IR: one definition of a quantized CNN, shared by the golden model, the compiler and the partitioner.

A :class:`Graph` is a list of typed layers in topological order over named, quantized tensors. It is produced
by the ONNX importer (:mod:`cimforge.golden.onnx_import`), executed bit-exactly by the golden runner
(:mod:`cimforge.golden.runner`) and mapped onto CIM macros by the compiler. The IR imports nothing but numpy.

Conventions (stable; the compiler relies on them)
-------------------------------------------------
* **Per-sample shapes, channels first.** A tensor's ``shape`` excludes the batch dimension: a feature map is
  ``(C, H, W)``, a vector ``(F,)``. Arrays handed to the runner carry a leading batch axis ``(N, *shape)``.
* **Activations** are int8 or uint8 with a per-tensor ``scale`` and ``zero_point``:
  ``real = scale * (q - zero_point)``.
* **Weights** are int8 codes with a scale per output channel (``weight_scale`` has one entry per output
  channel even when the model is per-tensor; ``per_channel`` says which) and a zero point per output channel
  (``weight_zero_point``: 0 for symmetric weights, the only case the fabric runs; a uint8 model's codes are
  stored shifted by -128, see :class:`Conv2d`). Layouts: :class:`Conv2d` ``(Cout, Cin/groups, kh, kw)`` (ONNX
  OIHW); :class:`Dense` ``(out_features, in_features)``.
* **Bias** is int32 with scale ``input.scale * weight_scale[c]`` and zero point 0 (all zeros when absent).
* **Accumulator** of a weighted layer at output channel ``c``:
  ``acc = bias[c] + sum_k (x[k] - input.zero_point) * w[c, k]`` where padded taps hold ``input.zero_point``
  (real zero), so ``acc = folded_bias[c] + sum_k x[k] * w[c, k]`` with ``folded_bias = bias - zp_in * sum_k w``
  holds everywhere, borders included: a macro may multiply the raw int8/uint8 codes. With a weight zero point
  ``zp_w[c]`` the accumulator is ``bias[c] + sum_k (x[k] - zp_in) * (w[c, k] - zp_w[c])``: the above minus the
  correction ``zp_w[c] * sum_k (x[k] - zp_in)`` (the window's activation sum).
* **Requantisation** (docs/architecture.md section 5): ``out = clamp(zp_out + MultiplyByQuantizedMultiplier(acc, M,
  shift), act_min, act_max)`` with ``(M, shift)`` from TFLite's ``QuantizeMultiplier`` of the real multiplier
  (``input.scale * weight_scale[c] / output.scale`` for weighted layers), see :class:`Requant`. ``act_min`` /
  ``act_max`` are the output dtype's range narrowed by a fused ReLU / ReLU6 / Clip.
* **GEMM view of a convolution** (:class:`GemmView`): per sample and group ``g``, ``Y[m, n] = sum_k
  X[m, k] * W[k, n]`` with ``M = Ho*Wo`` (``m = ho*Wo + wo``), ``K = Cin/groups * kh * kw`` in im2col order
  ``k = (ci*kh + ky)*kw + kx`` (``ci`` relative to the group: input channel ``g*Cin/groups + ci``) and
  ``N = Cout/groups`` (output channel ``g*Cout/groups + n``). Input pixel of tap ``(ky, kx)`` at output
  ``(ho, wo)``: ``(ho*stride_h - pad_top + ky*dil_h, wo*stride_w - pad_left + kx*dil_w)``.
  :meth:`Conv2d.weight_matrix` and :func:`cimforge.golden.ops.im2col` produce exactly these matrices.

Every layer is a frozen dataclass holding the :class:`TensorInfo` of its inputs and output, so a single layer
is self-contained (``run_layer(layer, *arrays)`` needs nothing else); derived fixed-point parameters are
computed in ``__post_init__`` from the float scales and cannot disagree with them. Invalid layers raise
:class:`IRError` naming the layer, the field, the value and what is allowed.

**Shape-only view.** :class:`ShapeGraph` / :class:`LayerShape` give a model's layer kinds and per-sample shapes
without weights or quantisation: :meth:`ShapeGraph.of` of a :class:`Graph` (each layer keeps its IR layer), or of
a float ONNX model (:func:`cimforge.golden.onnx_import.load_onnx_shapes`). The partitioner works on either; the
golden runner and the compiler need a :class:`Graph`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Iterator, Mapping

import numpy as np

from .lrn import LrnTable, lrn_table
from .requant import quantize_multipliers

__all__ = [
    "IRError", "DTYPE_RANGES", "POOL_METHODS", "WEIGHT_BITS", "TensorInfo", "Requant", "GemmView",
    "Layer", "Conv2d", "Dense", "MaxPool", "AvgPool", "GlobalAvgPool", "Add", "Mul", "Concat", "Reshape", "Clamp",
    "Softmax", "LRN", "Lut", "Resize", "FloatChain", "FLOAT_OPS", "INPUT_STEP_OPS", "MatMul", "ConvInteger", "MatMulInteger", "Graph", "conv_output_size", "LAYER_KINDS", "CLAMPABLE", "with_clamp",
    "LayerShape", "ShapeGraph", "SHAPE_ONLY_KINDS", "with_flattened_sources",
]

#: Tensor dtypes and their integer ranges: int8 / uint8 activations, and int32 for the raw accumulators of
#: :class:`ConvInteger` / :class:`MatMulInteger` (which only those layers may produce and no layer reads).
DTYPE_RANGES: dict[str, tuple[int, int]] = {"int8": (-128, 127), "uint8": (0, 255), "int32": (-2**31, 2**31 - 1)}


class IRError(ValueError):
    """An invalid IR object; the message names the layer or tensor, the field, the value and what is allowed."""


def _fail(owner: str, field_: str, value, allowed: str):
    raise IRError(f"{owner}: invalid {field_} = {value!r}: allowed {allowed}")


def _pos_ints(owner: str, name: str, value, n: int, lo: int = 1) -> tuple[int, ...]:
    try:
        t = tuple(int(v) for v in value)
    except TypeError:
        _fail(owner, name, value, f"a tuple of {n} integers >= {lo}")
    if len(t) != n or any(v < lo for v in t) or any(int(v) != v for v in value):
        _fail(owner, name, value, f"a tuple of {n} integers >= {lo}")
    return t


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    """Output length of a convolution or pooling window along one axis (floor mode, ONNX/PyTorch formula)."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------------------------------------
# Tensors and fixed-point parameters


@dataclass(frozen=True)
class TensorInfo:
    """A named quantized activation tensor.

    Parameters
    ----------
    name : str
        Unique within a graph (the ONNX tensor name for imported models).
    shape : tuple of int
        Per-sample shape, channels first: ``(C, H, W)`` or ``(F,)``.
    dtype : {"int8", "uint8"}
    scale : float
        Positive, finite (stored as the float32 value the model carries, widened to float).
    zero_point : int
        In the dtype's range.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def __post_init__(self):
        owner = f"tensor {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            _fail("tensor", "name", self.name, "a non-empty string")
        object.__setattr__(self, "shape", _pos_ints(owner, "shape", self.shape, len(tuple(self.shape))))
        if self.dtype not in DTYPE_RANGES:
            _fail(owner, "dtype", self.dtype, "'int8' or 'uint8' (or 'int32' for integer-output layers)")
        scale = float(self.scale)
        if not np.isfinite(scale) or scale <= 0:
            _fail(owner, "scale", self.scale, "a finite float > 0")
        object.__setattr__(self, "scale", scale)
        lo, hi = DTYPE_RANGES[self.dtype]
        if int(self.zero_point) != self.zero_point or not lo <= self.zero_point <= hi:
            _fail(owner, "zero_point", self.zero_point, f"an integer in {lo}..{hi} for {self.dtype}")
        object.__setattr__(self, "zero_point", int(self.zero_point))

    @property
    def qmin(self) -> int:
        """Smallest code of the dtype."""
        return DTYPE_RANGES[self.dtype][0]

    @property
    def qmax(self) -> int:
        """Largest code of the dtype."""
        return DTYPE_RANGES[self.dtype][1]

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype of the codes."""
        return np.dtype(self.dtype)

    @property
    def size(self) -> int:
        """Elements per sample."""
        return int(np.prod(self.shape, dtype=np.int64))

    def same_quant(self, other: "TensorInfo") -> bool:
        """True if ``other`` has the same dtype, scale and zero point (codes mean the same reals)."""
        return (self.dtype, self.scale, self.zero_point) == (other.dtype, other.scale, other.zero_point)

    def renamed(self, name: str, shape: tuple[int, ...] | None = None) -> "TensorInfo":
        """A copy with another name (and optionally another shape), same quantisation."""
        return replace(self, name=name, shape=self.shape if shape is None else tuple(shape))


@dataclass(frozen=True, eq=False)
class Requant:
    """Fixed-point form of real multipliers: ``real ~= multiplier * 2**(shift - 31)``.

    Parameters
    ----------
    real : array_like of float
        Non-negative real multipliers (one per output channel, one per output position for a padded
        average pool, or a single one).

    Members
    -------
    multiplier : numpy.ndarray of int64
        ``M`` from TFLite ``QuantizeMultiplier``, in ``[2**30, 2**31)`` (or 0), shaped like ``real``.
    shift : numpy.ndarray of int64
        TFLite sign: positive is a left shift. Shaped like ``real``.
    """

    real: np.ndarray
    multiplier: np.ndarray = field(init=False)
    shift: np.ndarray = field(init=False)

    def __post_init__(self):
        real = np.array(self.real, dtype=np.float64)
        if real.size == 0 or not np.all(np.isfinite(real)) or np.any(real < 0):
            raise IRError(f"requantisation: invalid real multiplier(s) {real!r}: allowed finite values >= 0")
        m, s = quantize_multipliers(real)
        for name, v in (("real", real), ("multiplier", m), ("shift", s)):
            v.setflags(write=False)
            object.__setattr__(self, name, v)

    @property
    def per_channel(self) -> bool:
        """True when the multipliers are not all equal."""
        return bool(np.unique(self.multiplier).size > 1 or np.unique(self.shift).size > 1)

    def __repr__(self) -> str:
        return f"Requant(shape={self.real.shape}, M={self.multiplier.ravel()[:4]}, shift={self.shift.ravel()[:4]})"


@dataclass(frozen=True)
class GemmView:
    """A weighted layer lowered to GEMMs, per sample: ``groups`` independent ``(M x K) @ (K x N)`` products.

    See the module docstring for the im2col ordering of ``K`` and the numbering of ``M``.
    """

    M: int       #: output positions per sample (Ho*Wo; 1 for Dense)
    K: int       #: reduction length per group (Cin/groups * kh * kw; in_features for Dense)
    N: int       #: output channels per group (Cout/groups; out_features for Dense)
    groups: int  #: independent GEMMs (1 unless grouped / depthwise)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        return self.M * self.K * self.N * self.groups


# ----------------------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True, eq=False, kw_only=True)
class Layer:
    """Base of all layers: a name, the input tensors and the single output tensor.

    Members
    -------
    kind : str
        Class-level operator name (``"conv2d"``, ``"dense"``, ...), stable for serialisation and reports.
    """

    name: str
    inputs: tuple[TensorInfo, ...]
    output: TensorInfo

    kind: ClassVar[str] = "layer"
    n_inputs: ClassVar[int | None] = 1
    #: True for the layers whose output is a raw int32 accumulator (ConvInteger, MatMulInteger).
    int32_output: ClassVar[bool] = False

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.n_inputs is not None and len(self.inputs) != self.n_inputs:
            self._fail("inputs", [t.name for t in self.inputs], f"exactly {self.n_inputs} input tensor(s)")
        if self.n_inputs is None and len(self.inputs) < 1:
            self._fail("inputs", [], "at least one input tensor")
        for t in (*self.inputs, self.output):
            if not isinstance(t, TensorInfo):
                self._fail("inputs/output", t, "TensorInfo objects")
        for t in self.inputs:
            if t.dtype == "int32":
                self._fail("input dtype", (t.name, t.dtype), "int8 or uint8 (int32 tensors are graph outputs only)")
        if (self.output.dtype == "int32") != self.int32_output:
            self._fail("output dtype", self.output.dtype, "int32" if self.int32_output else "int8 or uint8")

    def _fail(self, field_: str, value, allowed: str):
        _fail(f"{self.kind} layer {self.name!r}", field_, value, allowed)

    @property
    def input(self) -> TensorInfo:
        """The first (for most layers the only) input."""
        return self.inputs[0]

    @property
    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-sample input shapes."""
        return tuple(t.shape for t in self.inputs)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Per-sample output shape."""
        return self.output.shape

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample (0 for layers without weights)."""
        return 0

    @property
    def weight_count(self) -> int:
        """Number of weights (0 for layers without weights)."""
        return 0

    def _check_clamp(self):
        lo, hi = self.output.qmin, self.output.qmax
        if self.act_min is None:
            object.__setattr__(self, "act_min", lo)
        if self.act_max is None:
            object.__setattr__(self, "act_max", hi)
        if not (lo <= self.act_min <= self.act_max <= hi):
            self._fail("act_min/act_max", (self.act_min, self.act_max),
                       f"{lo} <= act_min <= act_max <= {hi} for {self.output.dtype}")


@dataclass(frozen=True, eq=False, kw_only=True)
class _Weighted(Layer):
    """Fields and helpers shared by :class:`Conv2d` and :class:`Dense`: int8 weight codes with a zero point per
    output channel (0 for symmetric weights, the fabric's case), int32 bias, per-output-channel weight scales, the
    derived per-channel :class:`Requant` and the fused output clamp.

    ``weight_zero_point`` : int or array of int, one per output channel, in -128..127
        Real weight ``(weight - weight_zero_point) * weight_scale``. A uint8 model's codes and zero points are
        stored shifted by -128 (``q - 128``, ``zp - 128``), which leaves every difference ``w - zp`` unchanged.
        The accumulator is ``bias + sum (x - zp_in) * (w - zp_w)`` = ``bias + sum (x - zp_in) * w - zp_w *
        sum (x - zp_in)``: the correction term is the weight zero point times the window's activation sum.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    weight_scale: np.ndarray | float = 1.0
    weight_zero_point: np.ndarray | int = 0
    act_min: int | None = None
    act_max: int | None = None
    requant: Requant = field(init=False, repr=False)

    def _check_weights(self, shape: tuple[int, ...]) -> None:
        """Validate weight / bias / weight_scale against the expected weight ``shape``; store normalised
        read-only copies and derive ``requant``."""
        w = np.asarray(self.weight)
        if w.shape != shape:
            self._fail("weight.shape", w.shape, f"{shape}")
        if w.dtype != np.int8:
            if not np.issubdtype(w.dtype, np.integer) or w.size and (w.min() < -128 or w.max() > 127):
                self._fail("weight.dtype", w.dtype, "int8 values")
            w = w.astype(np.int8)
        n_out = shape[0]
        b = np.zeros(n_out, dtype=np.int32) if self.bias is None else np.asarray(self.bias)
        if b.shape != (n_out,):
            self._fail("bias.shape", b.shape, f"({n_out},)")
        if b.dtype != np.int32:
            if not np.issubdtype(b.dtype, np.integer) or b.size and (b.min() < -2**31 or b.max() > 2**31 - 1):
                self._fail("bias.dtype", b.dtype, "int32 values")
            b = b.astype(np.int32)
        ws = np.asarray(self.weight_scale, dtype=np.float64)
        if ws.size == 1:  # per-tensor
            ws = np.full(n_out, float(ws.ravel()[0]))
        if ws.shape != (n_out,) or not np.all(np.isfinite(ws)) or np.any(ws <= 0):
            self._fail("weight_scale", self.weight_scale, f"a positive scale or {n_out} positive scales")
        wz = np.asarray(self.weight_zero_point)
        if wz.size == 1:
            wz = np.full(n_out, wz.ravel()[0])
        if wz.shape != (n_out,) or wz.size and (np.any(wz != np.round(wz)) or wz.min() < -128 or wz.max() > 127):
            self._fail("weight_zero_point", self.weight_zero_point,
                       f"an integer or {n_out} integers in -128..127 (uint8 codes shifted by -128)")
        wz = wz.astype(np.int64)
        for name, v in (("weight", w), ("bias", b), ("weight_scale", ws), ("weight_zero_point", wz)):
            v = np.array(v)
            v.setflags(write=False)
            object.__setattr__(self, name, v)
        real = self.input.scale * ws / self.output.scale
        object.__setattr__(self, "requant", Requant(real))
        self._check_clamp()

    @property
    def per_channel(self) -> bool:
        """True when the weight scales differ between output channels."""
        return bool(np.unique(self.weight_scale).size > 1)

    @property
    def weight_bits(self) -> int:
        """The smallest of 1, 2, 4 and 8 bits whose signed range holds every real integer weight ``w - zp_w``
        (1 bit: -1 and 0; ``b`` bits: ``-2**(b-1) .. 2**(b-1) - 1``): the macro's run-time weight precision a
        layer can use without changing a result (an int4-quantized model's layers give 4)."""
        w = self.weight.astype(np.int64).reshape(self.weight.shape[0], -1) - self.weight_zero_point[:, None]
        lo, hi = (int(w.min()), int(w.max())) if w.size else (0, 0)
        return next(b for b in WEIGHT_BITS if -(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1) \
            if -128 <= lo and hi <= 127 else 8

    @property
    def has_weight_zero_point(self) -> bool:
        """True when some output channel's weights have a non-zero zero point (the accumulator then needs the
        correction term ``zp_w * sum (x - zp_in)``; :attr:`folded_bias` alone does not describe it)."""
        return bool(np.any(self.weight_zero_point))

    @property
    def macs(self) -> int:
        return self.gemm.macs

    @property
    def weight_count(self) -> int:
        return int(self.weight.size)


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv2d(_Weighted):
    """2-D convolution (groups include depthwise), int32 bias, per-channel requantisation, fused clamp.

    Parameters
    ----------
    weight : numpy.ndarray of int8, shape ``(Cout, Cin/groups, kh, kw)``
    bias : numpy.ndarray of int32, shape ``(Cout,)``, or None (zeros)
    weight_scale : float or numpy.ndarray, shape ``(Cout,)``
    stride, dilation : (int, int)
        ``(h, w)``.
    padding : (int, int, int, int)
        ``(top, left, bottom, right)``; padded taps hold the input zero point.
    groups : int
        Divides Cin and Cout. ``groups == Cin == Cout`` is depthwise.
    act_min, act_max : int or None
        Output clamp in codes (None: the output dtype's range).

    Members
    -------
    requant : Requant
        One multiplier per output channel (``input.scale * weight_scale / output.scale``).
    per_channel : bool
        True when the weight scales differ between output channels.
    """

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    kind: ClassVar[str] = "conv2d"

    def __post_init__(self):
        super().__post_init__()
        owner = f"conv2d layer {self.name!r}"
        object.__setattr__(self, "stride", _pos_ints(owner, "stride", self.stride, 2))
        object.__setattr__(self, "dilation", _pos_ints(owner, "dilation", self.dilation, 2))
        object.__setattr__(self, "padding", _pos_ints(owner, "padding", self.padding, 4, lo=0))
        if len(self.input.shape) != 3:
            self._fail("input shape", self.input.shape, "(C, H, W)")
        w = np.asarray(self.weight)
        if w.ndim != 4:
            self._fail("weight.shape", w.shape, "(Cout, Cin/groups, kh, kw)")
        cin, cout, g = self.input.shape[0], w.shape[0], self.groups
        if int(g) != g or g < 1 or cin % g or cout % g:
            self._fail("groups", g, f"a positive integer dividing Cin={cin} and Cout={cout}")
        self._check_weights((cout, cin // g, w.shape[2], w.shape[3]))
        expect = (cout, *self._out_hw())
        if expect[1] < 1 or expect[2] < 1:
            self._fail("kernel/padding", (self.kernel, self.padding), f"a window that fits {self.input.shape}")
        if self.output.shape != expect:
            self._fail("output shape", self.output.shape, f"{expect}")

    def _out_hw(self) -> tuple[int, int]:
        (_, h, w), (kh, kw) = self.input.shape, self.kernel
        pt, pl, pb, pr = self.padding
        return (conv_output_size(h, kh, self.stride[0], pt, pb, self.dilation[0]),
                conv_output_size(w, kw, self.stride[1], pl, pr, self.dilation[1]))

    @property
    def in_channels(self) -> int:
        return self.input.shape[0]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel(self) -> tuple[int, int]:
        """``(kh, kw)``."""
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels

    @property
    def gemm(self) -> GemmView:
        """The lowered GEMM shape (see the module docstring for the ordering)."""
        kh, kw = self.kernel
        return GemmView(M=self.output.shape[1] * self.output.shape[2], K=self.in_channels // self.groups * kh * kw,
                        N=self.out_channels // self.groups, groups=self.groups)

    def weight_matrix(self, group: int = 0) -> np.ndarray:
        """The ``(K, N)`` int8 weight matrix of one group, rows in im2col order ``(ci, ky, kx)``."""
        n = self.out_channels // self.groups
        if not 0 <= group < self.groups:
            self._fail("group", group, f"0..{self.groups - 1}")
        return self.weight[group * n:(group + 1) * n].reshape(n, -1).T

    @property
    def folded_bias(self) -> np.ndarray:
        """int64 ``bias - input.zero_point * sum_k w[c, k]``: the bias to use when multiplying raw input codes."""
        return self.bias.astype(np.int64) - self.input.zero_point * self.weight.reshape(self.out_channels, -1).sum(
            axis=1, dtype=np.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class Dense(_Weighted):
    """Fully connected layer / matrix product: ``(F,) -> (out_features,)``.

    Parameters
    ----------
    weight : numpy.ndarray of int8, shape ``(out_features, in_features)``
    bias, weight_scale, weight_zero_point, act_min, act_max
        As for :class:`Conv2d`.
    """

    kind: ClassVar[str] = "dense"
    #: True for the subclasses over leading positions (:class:`MatMul`, :class:`MatMulInteger`).
    over_positions: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        if len(self.input.shape) != 1 and not self.over_positions:
            self._fail("input shape", self.input.shape, "(in_features,): flatten first")
        w = np.asarray(self.weight)
        if w.ndim != 2:
            self._fail("weight.shape", w.shape, "(out_features, in_features)")
        self._check_weights((w.shape[0], self.input.shape[-1]))
        if self.output.shape != (*self.input.shape[:-1], w.shape[0]):
            self._fail("output shape", self.output.shape, f"{(*self.input.shape[:-1], w.shape[0])}")

    @property
    def positions(self) -> int:
        """Leading positions per sample (1 for a vector input)."""
        return int(np.prod(self.input.shape[:-1], dtype=np.int64))

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def gemm(self) -> GemmView:
        return GemmView(M=self.positions, K=self.in_features, N=self.out_features, groups=1)

    def weight_matrix(self, group: int = 0) -> np.ndarray:
        """The ``(K, N)`` int8 weight matrix (the transpose of ``weight``)."""
        if group != 0:
            self._fail("group", group, "0")
        return self.weight.T

    @property
    def folded_bias(self) -> np.ndarray:
        """As :attr:`Conv2d.folded_bias`."""
        return self.bias.astype(np.int64) - self.input.zero_point * self.weight.sum(axis=1, dtype=np.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class _Window(Layer):
    """Common fields of pooling windows over a ``(C, H, W)`` input."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    def __post_init__(self):
        super().__post_init__()
        owner = f"{self.kind} layer {self.name!r}"
        for name, n, lo in (("kernel", 2, 1), ("stride", 2, 1), ("dilation", 2, 1), ("padding", 4, 0)):
            object.__setattr__(self, name, _pos_ints(owner, name, getattr(self, name), n, lo))
        if len(self.input.shape) != 3:
            self._fail("input shape", self.input.shape, "(C, H, W)")
        (c, h, w), (kh, kw) = self.input.shape, self.kernel
        pt, pl, pb, pr = self.padding
        if max(pt, pb) >= kh * self.dilation[0] or max(pl, pr) >= kw * self.dilation[1]:
            self._fail("padding", self.padding, "less than the dilated kernel on each side")
        expect = (c, conv_output_size(h, kh, self.stride[0], pt, pb, self.dilation[0]),
                  conv_output_size(w, kw, self.stride[1], pl, pr, self.dilation[1]))
        if expect[1] < 1 or expect[2] < 1:
            self._fail("kernel", self.kernel, f"a window that fits {self.input.shape}")
        if self.output.shape != expect:
            self._fail("output shape", self.output.shape, f"{expect}")


@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool(_Window):
    """Max pooling on codes; padded taps are ignored. Input and output share dtype, scale and zero point."""

    kind: ClassVar[str] = "maxpool"

    def __post_init__(self):
        super().__post_init__()
        if not self.input.same_quant(self.output):
            self._fail("output quantisation", (self.output.dtype, self.output.scale, self.output.zero_point),
                       f"the input's {(self.input.dtype, self.input.scale, self.input.zero_point)}")


#: Weight precisions a weighted layer reports (:attr:`Conv2d.weight_bits`), smallest first.
WEIGHT_BITS = (1, 2, 4, 8)

#: How an average pool computes (:attr:`AvgPool.method`).
POOL_METHODS = ("integer", "float")


@dataclass(frozen=True, eq=False, kw_only=True)
class AvgPool(_Window):
    """Average pooling as a window sum followed by requantisation.

    ``acc = sum over the window of (x - zp_in)`` (padded taps contribute 0, i.e. real zero), then
    ``out = clamp(zp_out + MultiplyByQuantizedMultiplier(acc, M, shift))`` with the real multiplier
    ``s_in / (s_out * divisor)``. The divisor is ``kh*kw`` when ``count_include_pad`` (or unpadded), else the
    number of taps inside the input; so rounding is to nearest through the fixed-point multiplier (exact
    ``round half away from zero`` of ``acc / divisor`` when the divisor is a power of two and the scales match).

    Members
    -------
    divisors : numpy.ndarray of int64, shape ``(Ho, Wo)``
    requant : Requant
        Shaped ``(Ho, Wo)``: one multiplier per output position.
    """

    count_include_pad: bool = False
    #: With ``count_include_pad``: the padding (top, left, bottom, right) the divisor counts, when it is less
    #: than ``padding`` (ONNX ``ceil_mode`` 1: the explicit pads count, the end padding ``ceil_mode`` adds does
    #: not, as onnxruntime's pools divide); None: all of it (the divisor ``kh*kw``).
    counted_padding: tuple[int, int, int, int] | None = None
    act_min: int | None = None
    act_max: int | None = None
    #: ``"integer"``: the window sum and fixed-point requantisation above (the fabric's POOL engine,
    #: onnxruntime's ``QLinearAveragePool``); ``"float"``: onnxruntime's float ``DequantizeLinear -> AveragePool
    #: -> QuantizeLinear`` in float32 (golden model only; see :func:`cimforge.golden.ops.avg_pool`).
    method: str = "integer"
    #: Exact ties of the requantisation round to even (``golden.requant`` "Ties to even"; the POOL engine's
    #: ``round_even``), as onnxruntime's float pool and ``QuantizeLinear`` do; else as the rounding form.
    round_even: bool = False
    #: ``method="float"`` sums in the order of onnxruntime's generic pooling kernel (row-major over the window's
    #: taps), not MLAS's: its ``AveragePool`` from opset 19 (which added dilations), and a ``ceil_mode`` pool
    #: whose divisor counts explicit padding (measured, onnxruntime 1.32; :func:`cimforge.golden.ops.avg_pool`).
    generic_order: bool = False
    divisors: np.ndarray = field(init=False, repr=False)
    requant: Requant = field(init=False, repr=False)

    kind: ClassVar[str] = "avgpool"

    def __post_init__(self):
        super().__post_init__()
        (_, h, w), (_, ho, wo) = self.input.shape, self.output.shape
        kh, kw = self.kernel
        def taps(size, n_out, k, s, p, d):
            pos = np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d
            return ((pos >= 0) & (pos < size)).sum(axis=1)
        if self.count_include_pad and self.counted_padding is None:
            div = np.full((ho, wo), kh * kw, dtype=np.int64)
        else:  # the taps inside the input, or inside the input and the counted padding
            ct, cl, cb, cr = (0, 0, 0, 0) if not self.count_include_pad else _pos_ints(
                f"avgpool layer {self.name!r}", "counted_padding", self.counted_padding, 4, lo=0)
            if any(c > p for c, p in zip((ct, cl, cb, cr), self.padding)):
                self._fail("counted_padding", self.counted_padding, f"at most the padding {self.padding}")
            div = np.outer(taps(h + ct + cb, ho, kh, self.stride[0], self.padding[0] - ct, self.dilation[0]),
                           taps(w + cl + cr, wo, kw, self.stride[1], self.padding[1] - cl, self.dilation[1]))
            div = div.astype(np.int64)
        div.setflags(write=False)
        object.__setattr__(self, "divisors", div)
        if self.method not in POOL_METHODS:
            self._fail("method", self.method, f"one of {POOL_METHODS}")
        object.__setattr__(self, "requant", Requant(self.input.scale / (self.output.scale * div)))
        self._check_clamp()


@dataclass(frozen=True, eq=False, kw_only=True)
class GlobalAvgPool(Layer):
    """Global average pool ``(C, H, W) -> (C, 1, 1)``: sum of ``x - zp_in`` then requantisation by
    ``s_in / (s_out * H * W)``, exactly as :class:`AvgPool` with a whole-plane window."""

    act_min: int | None = None
    act_max: int | None = None
    #: As :attr:`AvgPool.method`.
    method: str = "integer"
    #: As :attr:`AvgPool.round_even`.
    round_even: bool = False
    requant: Requant = field(init=False, repr=False)

    kind: ClassVar[str] = "global_avgpool"

    def __post_init__(self):
        super().__post_init__()
        if len(self.input.shape) != 3:
            self._fail("input shape", self.input.shape, "(C, H, W)")
        c, h, w = self.input.shape
        if self.output.shape != (c, 1, 1):
            self._fail("output shape", self.output.shape, f"{(c, 1, 1)}")
        object.__setattr__(self, "requant", Requant(self.input.scale / (self.output.scale * h * w)))
        if self.method not in POOL_METHODS:
            self._fail("method", self.method, f"one of {POOL_METHODS}")
        self._check_clamp()

    @property
    def divisor(self) -> int:
        return self.input.shape[1] * self.input.shape[2]


@dataclass(frozen=True, eq=False, kw_only=True)
class Add(Layer):
    """Quantized element-wise addition (ONNX QLinearAdd), TFLite's integer scheme.

    With ``left_shift = 20`` and ``twice_max = 2 * max(s_a, s_b)``::

        a' = MultiplyByQuantizedMultiplier((a - zp_a) << left_shift, M_a, shift_a)   # real s_a / twice_max
        b' = MultiplyByQuantizedMultiplier((b - zp_b) << left_shift, M_b, shift_b)   # real s_b / twice_max
        out = clamp(zp_out + MultiplyByQuantizedMultiplier(a' + b', M_o, shift_o))   # twice_max / (2**20 s_out)

    ``b`` has ``a``'s shape, or is ``(C, 1, 1)`` under a ``(C, H, W)`` ``a``: one value per channel added over
    the plane (an attention block's ``x + f(GAP(x))``), as :class:`Mul`.

    Members
    -------
    requant_a, requant_b, requant_out : Requant
    broadcast : bool
        ``b`` is one value per channel.
    """

    act_min: int | None = None
    act_max: int | None = None
    requant_a: Requant = field(init=False, repr=False)
    requant_b: Requant = field(init=False, repr=False)
    requant_out: Requant = field(init=False, repr=False)

    kind: ClassVar[str] = "add"
    n_inputs: ClassVar[int | None] = 2
    left_shift: ClassVar[int] = 20

    def __post_init__(self):
        super().__post_init__()
        a, b = self.inputs
        per_channel = len(a.shape) == 3 and b.shape == (a.shape[0], 1, 1)
        if a.shape != self.output.shape or not (b.shape == a.shape or per_channel):
            self._fail("shapes", (a.shape, b.shape, self.output.shape),
                       "a and the output of one shape, b of that shape or (C, 1, 1) under a (C, H, W) a")
        twice_max = 2.0 * max(a.scale, b.scale)
        object.__setattr__(self, "requant_a", Requant(a.scale / twice_max))
        object.__setattr__(self, "requant_b", Requant(b.scale / twice_max))
        object.__setattr__(self, "requant_out", Requant(twice_max / ((1 << self.left_shift) * self.output.scale)))
        self._check_clamp()

    @property
    def broadcast(self) -> bool:
        return self.inputs[1].shape != self.inputs[0].shape


@dataclass(frozen=True, eq=False, kw_only=True)
class Mul(Layer):
    """Quantized element-wise product of two computed tensors (ONNX ``QLinearMul``, a QDQ ``Mul``), TFLite's
    integer scheme::

        out = clamp(zp_out + MultiplyByQuantizedMultiplier((a - zp_a) * (b - zp_b), M, shift))   # s_a s_b / s_out

    ``b`` has ``a``'s shape, or is ``(C, 1, 1)`` under a ``(C, H, W)`` ``a``: one value per channel broadcast over
    the plane (a squeeze-and-excitation block's ``x * Sigmoid(...)``). The product is exact; the one rounding is
    the requantisation, so it differs from onnxruntime's float product only within float32 error of a tie.

    Members
    -------
    requant : Requant
    broadcast : bool
        ``b`` is one value per channel.
    """

    act_min: int | None = None
    act_max: int | None = None
    requant: Requant = field(init=False, repr=False)

    kind: ClassVar[str] = "mul"
    n_inputs: ClassVar[int | None] = 2

    def __post_init__(self):
        super().__post_init__()
        a, b = self.inputs
        per_channel = len(a.shape) == 3 and b.shape == (a.shape[0], 1, 1)
        if a.shape != self.output.shape or not (b.shape == a.shape or per_channel):
            self._fail("shapes", (a.shape, b.shape, self.output.shape),
                       "a and the output of one shape, b of that shape or (C, 1, 1) under a (C, H, W) a")
        object.__setattr__(self, "requant", Requant(a.scale * b.scale / self.output.scale))
        self._check_clamp()

    @property
    def broadcast(self) -> bool:
        return self.inputs[1].shape != self.inputs[0].shape


@dataclass(frozen=True, eq=False, kw_only=True)
class Concat(Layer):
    """Concatenation along a per-sample ``axis`` (0 = channels of ``(C, H, W)``).

    An input whose quantisation differs from the output's is requantised:
    ``clamp(zp_out + MultiplyByQuantizedMultiplier(x - zp_in, M_i, shift_i))`` with real ``s_in / s_out``;
    an input with the output's quantisation is copied.

    Members
    -------
    requants : tuple of (Requant or None)
        Per input; None for a plain copy.
    """

    axis: int = 0
    requants: tuple = field(init=False, repr=False)

    kind: ClassVar[str] = "concat"
    n_inputs: ClassVar[int | None] = None

    def __post_init__(self):
        super().__post_init__()
        rank = len(self.output.shape)
        if int(self.axis) != self.axis or not 0 <= self.axis < rank:
            self._fail("axis", self.axis, f"0..{rank - 1} (per-sample axis)")
        total = 0
        for t in self.inputs:
            s = list(t.shape)
            if len(s) != rank or s[:self.axis] + s[self.axis + 1:] != list(self.output.shape[:self.axis]) + list(
                    self.output.shape[self.axis + 1:]):
                self._fail("input shape", (t.name, t.shape), f"rank {rank}, matching {self.output.shape} off axis")
            total += s[self.axis]
        if total != self.output.shape[self.axis]:
            self._fail("output shape", self.output.shape, f"{total} along axis {self.axis}")
        if self.output.dtype != self.input.dtype or any(t.dtype != self.output.dtype for t in self.inputs):
            self._fail("dtypes", [t.dtype for t in self.inputs], f"all {self.output.dtype}")
        rq = tuple(None if t.same_quant(self.output) else Requant(t.scale / self.output.scale) for t in self.inputs)
        object.__setattr__(self, "requants", rq)


@dataclass(frozen=True, eq=False, kw_only=True)
class Reshape(Layer):
    """Reshape / Flatten: the same codes in row-major order, a new per-sample shape, same quantisation."""

    kind: ClassVar[str] = "reshape"

    def __post_init__(self):
        super().__post_init__()
        if self.input.size != self.output.size:
            self._fail("output shape", self.output.shape, f"a shape of {self.input.size} elements")
        if not self.input.same_quant(self.output):
            self._fail("output quantisation", (self.output.scale, self.output.zero_point), "the input's")


@dataclass(frozen=True, eq=False, kw_only=True)
class Resize(Layer):
    """Nearest-neighbour resize of a ``(C, H, W)`` tensor (ONNX ``Resize`` in mode ``nearest``):
    ``y[c, oy, ox] = x[c, rows[oy], cols[ox]]``, the source row and column of every output row and column as
    onnxruntime's kernel picks them (the importer asks onnxruntime itself, so every ``coordinate_transformation_mode``
    and ``nearest_mode`` is its own). A copy of codes; an output whose quantisation differs from the input's is
    requantised as :class:`Concat` requantises an input (``requant``, else None).
    """

    rows: tuple[int, ...] = ()
    cols: tuple[int, ...] = ()
    requant: Requant | None = field(init=False, repr=False)

    kind: ClassVar[str] = "resize"

    def __post_init__(self):
        super().__post_init__()
        if len(self.input.shape) != 3 or len(self.output.shape) != 3:
            self._fail("shapes", (self.input.shape, self.output.shape), "(C, H, W) tensors")
        (c, h, w), (oc, oh, ow) = self.input.shape, self.output.shape
        rows, cols = tuple(int(r) for r in self.rows), tuple(int(v) for v in self.cols)
        if oc != c or len(rows) != oh or len(cols) != ow:
            self._fail("output shape", self.output.shape, f"({c}, len(rows) {len(rows)}, len(cols) {len(cols)})")
        if not all(0 <= r < h for r in rows) or not all(0 <= v < w for v in cols):
            self._fail("rows/cols", (min(rows, default=0), max(rows, default=0), min(cols, default=0),
                                     max(cols, default=0)), f"rows in 0..{h - 1}, columns in 0..{w - 1}")
        if self.output.dtype != self.input.dtype:
            self._fail("output dtype", self.output.dtype, f"the input's {self.input.dtype}")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)
        object.__setattr__(self, "requant", None if self.input.same_quant(self.output)
                           else Requant(self.input.scale / self.output.scale))


@dataclass(frozen=True, eq=False, kw_only=True)
class Clamp(Layer):
    """Element-wise clamp of codes to ``[act_min, act_max]``: a ReLU / ReLU6 / Clip that could not be fused
    into its producer (because the producer's output has other consumers). Same quantisation in and out."""

    act_min: int | None = None
    act_max: int | None = None

    kind: ClassVar[str] = "clamp"

    def __post_init__(self):
        super().__post_init__()
        if self.input.shape != self.output.shape or not self.input.same_quant(self.output):
            self._fail("output", self.output, "the input's shape and quantisation")
        self._check_clamp()


@dataclass(frozen=True, eq=False, kw_only=True)
class Softmax(Layer):
    """Softmax over the per-sample ``axes`` (one axis, or every axis from one on: ONNX opset < 13 flattens the
    trailing axes), from int8/uint8 codes to int8/uint8 codes.

    ``method`` says which onnxruntime computation the golden operator reproduces (docs/operators.md):

    * ``"table"``: com.microsoft ``QLinearSoftmax``: a float32 table of ``exp((x - x_max + b) * s_in)`` (``b``
      keeps the sum below float32's range), a float32 sum in element order, then ``rint(t * floor(1 / s_out) /
      sum) + zp_out``, saturated to the output dtype (onnxruntime 1.32's kernel; some older sources of it let
      an int8 code above 127 wrap instead).
    * ``"float"``: ``DequantizeLinear -> Softmax -> QuantizeLinear``: the real softmax of the dequantized input,
      computed in float64, then quantized (round half to even, saturate).

    The fabric has no engine for it: it is computed on the host side of a run (the golden operator).
    """

    axes: tuple[int, ...] = (-1,)
    method: str = "float"

    kind: ClassVar[str] = "softmax"
    METHODS: ClassVar[tuple[str, ...]] = ("float", "table")

    def __post_init__(self):
        super().__post_init__()
        rank = len(self.input.shape)
        axes = tuple(int(a) + rank if int(a) < 0 else int(a) for a in self.axes)
        if not axes or list(axes) != list(range(axes[0], axes[0] + len(axes))) or axes[0] < 0 or axes[-1] >= rank \
                or (len(axes) > 1 and axes[-1] != rank - 1):
            self._fail("axes", self.axes, f"one per-sample axis, or every axis from one on, of rank {rank}")
        object.__setattr__(self, "axes", axes)
        if self.method not in self.METHODS:
            self._fail("method", self.method, f"one of {self.METHODS}")
        if self.input.shape != self.output.shape:
            self._fail("output shape", self.output.shape, f"the input's {self.input.shape}")


@dataclass(frozen=True, eq=False, kw_only=True)
class LRN(Layer):
    """Local response normalisation across channels (ONNX ``LRN``), between a ``DequantizeLinear`` and a
    ``QuantizeLinear``: ``y = x / (bias + alpha / size * sum x[c']**2)**beta`` over the channels
    ``c - floor((size-1)/2) .. c + ceil((size-1)/2)`` (clipped to the tensor).

    ``method`` ``"integer"`` (the fabric's numerics, the default): the integer form of
    :mod:`cimforge.golden.lrn` with the layer's table (``table_shift``, ``table_frac``, ``table_g``,
    ``table_dg``; computed from the other fields when not given); ``"float"`` (``load_onnx(numerics="onnx")``):
    float64 on the dequantized input, quantized into the output (round half to even, saturate), golden only.
    """

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    bias: float = 1.0
    method: str = "integer"
    table_shift: int = 0
    table_frac: int = 0
    table_g: tuple[int, ...] = ()
    table_dg: tuple[int, ...] = ()

    kind: ClassVar[str] = "lrn"
    METHODS: ClassVar[tuple[str, ...]] = ("integer", "float")

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.size, bool) or int(self.size) != self.size or self.size < 1:
            self._fail("size", self.size, "an integer >= 1")
        for f in ("alpha", "beta", "bias"):
            v = float(getattr(self, f))
            if not np.isfinite(v):
                self._fail(f, v, "a finite float")
            object.__setattr__(self, f, v)
        if len(self.input.shape) < 1 or self.input.shape != self.output.shape:
            self._fail("output shape", self.output.shape, f"the input's {self.input.shape} (channels first)")
        if self.method not in self.METHODS:
            self._fail("method", self.method, f"one of {self.METHODS}")
        if self.method == "integer" and not self.table_g:
            x = self.input
            try:
                t = lrn_table(x.shape[0], max(x.qmax - x.zero_point, x.zero_point - x.qmin), x.scale,
                              self.output.scale, self.size, self.alpha, self.beta, self.bias)
            except ValueError as e:
                self._fail("bias/alpha/beta", (self.bias, self.alpha, self.beta), f"a table the fabric holds: {e}")
            for f, v in zip(("table_shift", "table_frac", "table_g", "table_dg"), t):
                object.__setattr__(self, f, v)
        object.__setattr__(self, "table_g", tuple(int(v) for v in self.table_g))
        object.__setattr__(self, "table_dg", tuple(int(v) for v in self.table_dg))
        if self.method == "integer" and len(self.table_dg) != len(self.table_g):
            self._fail("table_dg", len(self.table_dg), f"one step per table value ({len(self.table_g)})")

    @property
    def table(self):
        """The :class:`~cimforge.golden.lrn.LrnTable` of the integer form."""
        return LrnTable(self.table_shift, self.table_frac, self.table_g, self.table_dg)


@dataclass(frozen=True, eq=False, kw_only=True)
class Lut(Layer):
    """An element-wise function of the input code, as a table of 256 output codes (ONNX ``Sigmoid``, ``Tanh``,
    ``LeakyRelu``, ``HardSigmoid``, ``HardSwish``, ``Elu`` and every other element-wise float operator between a
    ``DequantizeLinear`` and a ``QuantizeLinear``, com.microsoft ``QLinearSigmoid`` / ``QLinearLeakyRelu``):
    ``y = table[x & 0xFF]``, indexed by the input code's byte (its two's complement for int8).

    A function whose constants vary by channel (``PRelu``'s slope of shape ``(C, 1, 1)``, a ``Sub`` or ``Div`` of
    a per-channel constant) has one table per channel: ``table`` then holds ``C * 256`` codes, channel ``c``'s
    table at ``c * 256`` (:attr:`per_channel`), and ``y[c] = table[c * 256 + (x[c] & 0xFF)]``.

    ``op`` names what the table computes (for reports). The importer builds the table from onnxruntime's own
    float32 evaluation of the operators at the 256 codes (:mod:`cimforge.golden.lut`), so the layer is exact
    by construction; the fabric's ``LUT`` engine looks it up one word per cycle (docs/operators.md).
    """

    table: tuple[int, ...] = ()
    op: str = ""

    kind: ClassVar[str] = "lut"

    def __post_init__(self):
        super().__post_init__()
        if self.input.shape != self.output.shape:
            self._fail("output shape", self.output.shape, f"the input's {self.input.shape}")
        t = tuple(int(v) for v in np.asarray(self.table).ravel())
        c = self.input.shape[0]
        if len(t) not in (256, 256 * c):
            self._fail("table", f"{len(t)} entries", f"256 output codes, one per input byte (or {256 * c}, 256 "
                                                     f"per channel)")
        out = self.output
        if min(t) < out.qmin or max(t) > out.qmax:
            self._fail("table", f"codes {min(t)}..{max(t)}", f"{out.dtype} codes {out.qmin}..{out.qmax}")
        object.__setattr__(self, "table", t)

    @property
    def per_channel(self) -> bool:
        """One table per channel (of a channel count above 1)."""
        return len(self.table) > 256

    @property
    def tables(self) -> np.ndarray:
        """The tables as an ``(n, 256)`` array: one row, or one per channel."""
        return np.asarray(self.table, dtype=np.int64).reshape(-1, 256)


@dataclass(frozen=True, eq=False, kw_only=True)
class ConvInteger(Conv2d):
    """ONNX ``ConvInteger``: the raw int32 accumulator ``sum (x - zp_x) * (w - zp_w)`` of a convolution, no bias,
    no requantisation. The input's ``scale`` is 1 (the operator has none), its ``zero_point`` is ``x_zero_point``;
    the weight scale is 1; the output is an int32 tensor (scale 1, zero point 0) that no other layer reads.
    Golden model only: the fabric produces requantised int8 codes, not int32 outputs."""

    kind: ClassVar[str] = "conv_integer"
    int32_output: ClassVar[bool] = True


@dataclass(frozen=True, eq=False, kw_only=True)
class MatMul(Dense):
    """A :class:`Dense` layer over leading positions, ``(..., F) -> (..., out_features)``: an N-D (batched)
    ``QLinearMatMul`` / QDQ ``MatMul`` with a constant 2-D ``B``, the same weights at every position.
    Golden model only for now (the MAC lowering takes vectors)."""

    kind: ClassVar[str] = "matmul"
    over_positions: ClassVar[bool] = True


@dataclass(frozen=True, eq=False, kw_only=True)
class MatMulInteger(Dense):
    """ONNX ``MatMulInteger`` with a constant ``B``: the raw int32 ``sum (a - zp_a) * (b - zp_b)`` over the last
    axis, at every leading position; as :class:`ConvInteger` for the rest."""

    kind: ClassVar[str] = "matmul_integer"
    int32_output: ClassVar[bool] = True
    over_positions: ClassVar[bool] = True


#: Operations of a :class:`FloatChain` expression (the first entry of each node).
FLOAT_OPS = ("dq", "table", "affine", "sum", "clip", "pool", "reshape")


@dataclass(frozen=True, eq=False, kw_only=True)
class FloatChain(Layer):
    """A chain of operators onnxruntime computes in float32 between quantized tensors (``load_onnx(...,
    numerics="onnx")``): ResNet-50's ``Sum -> Relu -> AveragePool`` (QDQ), its ``BatchNormalization -> Sum``
    residual streams (QOperator), a BatchNormalization left in float. The golden operator evaluates ``expr`` in
    float32 in onnxruntime's order and quantizes the result into ``output`` (round half to even, then the clamp):
    exact against onnxruntime. The fabric has no engine for float arithmetic: golden model only (the fabric's
    form of the same chain uses int8 intermediates, ``numerics="fabric"``).

    ``expr`` is a tree of tuples, the first entry naming the operation (:data:`FLOAT_OPS`):
    ``("dq", i)`` input ``i`` dequantized; ``("table", i, vals)`` input ``i``'s codes through a float32 table of
    256 values (indexed by the code's byte: an element-wise function onnxruntime evaluated,
    :class:`Lut`); ``("affine", e, mult, shift)`` ``e * mult[c] + shift[c]`` (float32
    arrays, one value per channel); ``("sum", (e1, e2, ...))`` added left to right; ``("clip", e, lo, hi)``;
    ``("pool", e, kernel, stride, padding, dilation, divisors, out_hw, generic_order)`` an average pool (MLAS's
    summation order, or the generic kernel's: :attr:`AvgPool.generic_order`); ``("reshape", e, shape)`` a
    per-sample reshape.
    """

    expr: tuple
    act_min: int | None = None
    act_max: int | None = None

    kind: ClassVar[str] = "float_chain"
    n_inputs: ClassVar[int | None] = None

    def __post_init__(self):
        super().__post_init__()

        def check(e):
            if not isinstance(e, tuple) or not e or e[0] not in FLOAT_OPS:
                self._fail("expr", e if not isinstance(e, tuple) else e[:1], f"a tuple naming one of {FLOAT_OPS}")
            if e[0] in ("dq", "table"):
                if not 0 <= int(e[1]) < len(self.inputs):
                    self._fail("expr input", e[1], f"0..{len(self.inputs) - 1}")
            elif e[0] == "sum":
                for child in e[1]:
                    check(child)
            else:
                check(e[1])
        check(self.expr)
        self._check_clamp()


#: kind -> layer class
LAYER_KINDS: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (Conv2d, Dense, MaxPool, AvgPool, GlobalAvgPool, Add, Mul, Concat, Reshape, Clamp, Softmax,
                              LRN, Lut, Resize, MatMul, ConvInteger, MatMulInteger, FloatChain)}

#: Layers whose output is requantised and may carry a fused clamp.
CLAMPABLE = (Conv2d, Dense, AvgPool, GlobalAvgPool, Add, Mul, Clamp, FloatChain)


# ----------------------------------------------------------------------------------------------------------
# Graph


#: The arithmetic a model may apply to its float input before quantizing it (:attr:`Graph.input_steps`), and
#: the transposition of a channels-last input (a TensorFlow model converted by tf2onnx: NHWC -> NCHW).
INPUT_STEP_OPS = ("Add", "Sub", "Mul", "Div", "Transpose")


@dataclass(frozen=True, eq=False)
class Graph:
    """A quantized network: layers in topological order over named tensors.

    Parameters
    ----------
    name : str
    inputs : tuple of TensorInfo
        Graph inputs (quantized codes).
    layers : tuple of Layer
        Topologically ordered; every tensor is produced once, by a graph input or one layer.
    outputs : tuple of str
        Names of the output tensors (quantized codes).
    float_inputs : mapping of str to str
        Name of a float model input -> the graph input it is quantized into (``QuantizeLinear`` at the edge:
        round half to even, saturate). Empty when the model takes codes.
    float_outputs : mapping of str to str
        Name of a float model output -> the graph output it dequantizes.
    input_steps : mapping of str to tuple
        Graph input -> the float32 arithmetic the model applies to its float input before the QuantizeLinear
        (``(x - mean) / std`` at the start of the model, which onnxruntime leaves in float): steps ``(op,
        constant, constant_first)`` with ``op`` one of :data:`INPUT_STEP_OPS`, applied on the host side with the
        input's quantisation (:func:`cimforge.golden.ops.input_real`); a ``Transpose`` step's constant is the
        permutation of all axes, batch first (a channels-last input whose layout the user keeps:
        :func:`cimforge.golden.ops.input_shape`). Empty for most models.

    Members
    -------
    tensors : dict of str to TensorInfo
        Every tensor by name (inputs and layer outputs), in definition order.
    """

    name: str
    inputs: tuple[TensorInfo, ...]
    layers: tuple[Layer, ...]
    outputs: tuple[str, ...]
    float_inputs: Mapping[str, str] = field(default_factory=dict)
    float_outputs: Mapping[str, str] = field(default_factory=dict)
    input_steps: Mapping[str, tuple] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        tensors: dict[str, TensorInfo] = {}
        owner = f"graph {self.name!r}"
        for t in self.inputs:
            if t.name in tensors:
                _fail(owner, "inputs", t.name, "unique tensor names")
            tensors[t.name] = t
        seen_layers = set()
        for layer in self.layers:
            if not isinstance(layer, Layer):
                _fail(owner, "layers", layer, "Layer objects")
            if layer.name in seen_layers:
                _fail(owner, "layer name", layer.name, "unique layer names")
            seen_layers.add(layer.name)
            for t in layer.inputs:
                if t.name not in tensors:
                    _fail(owner, f"input of layer {layer.name!r}", t.name,
                          "a tensor produced earlier (layers must be topologically ordered)")
                if tensors[t.name] != t:
                    _fail(owner, f"input of layer {layer.name!r}", t, f"the producer's {tensors[t.name]}")
            if layer.output.name in tensors:
                _fail(owner, f"output of layer {layer.name!r}", layer.output.name, "a tensor produced only once")
            tensors[layer.output.name] = layer.output
        for name in self.outputs:
            if name not in tensors:
                _fail(owner, "outputs", name, f"one of the tensors {list(tensors)}")
        for fname, qname in self.float_inputs.items():
            if qname not in {t.name for t in self.inputs}:
                _fail(owner, f"float_inputs[{fname!r}]", qname, "a graph input")
        for fname, qname in self.float_outputs.items():
            if qname not in self.outputs:
                _fail(owner, f"float_outputs[{fname!r}]", qname, "a graph output")
        for qname, steps in self.input_steps.items():
            if qname not in self.float_inputs.values():
                _fail(owner, f"input_steps[{qname!r}]", qname, "a graph input quantized from a float input")
            if any(op not in INPUT_STEP_OPS for op, _, _ in steps):
                _fail(owner, f"input_steps[{qname!r}]", [op for op, _, _ in steps], f"ops of {INPUT_STEP_OPS}")
        object.__setattr__(self, "tensors", tensors)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (KeyError otherwise)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"graph {self.name!r} has no layer {name!r}")

    def producer(self, tensor: str) -> Layer | None:
        """The layer producing ``tensor`` (None for a graph input)."""
        for layer in self.layers:
            if layer.output.name == tensor:
                return layer
        if tensor in self.tensors:
            return None
        raise KeyError(f"graph {self.name!r} has no tensor {tensor!r}")

    def consumers(self, tensor: str) -> list[Layer]:
        """The layers reading ``tensor``, in order."""
        return [layer for layer in self.layers if any(t.name == tensor for t in layer.inputs)]

    @property
    def weighted_layers(self) -> list[Layer]:
        """Conv2d and Dense layers (those a compiler maps onto macros)."""
        return [layer for layer in self.layers if isinstance(layer, (Conv2d, Dense))]

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        return sum(layer.macs for layer in self.layers)

    @property
    def weight_count(self) -> int:
        return sum(layer.weight_count for layer in self.layers)

    def summary(self) -> str:
        """A fixed-width table of the layers: kind, name, shapes, MACs, weights, GEMM view."""
        rows = [f"graph {self.name}: {len(self.layers)} layers, {self.macs} MACs/sample, {self.weight_count} weights"]
        for layer in self.layers:
            gemm = getattr(layer, "gemm", None)
            g = f" M={gemm.M} K={gemm.K} N={gemm.N} g={gemm.groups}" if gemm else ""
            ins = ",".join(str(s) for s in layer.input_shapes)
            rows.append(f"  {layer.kind:<14} {layer.name:<28} {ins:>20} -> {str(layer.output_shape):<12}"
                        f" {layer.output.dtype:<5} macs={layer.macs:<7} w={layer.weight_count:<6}{g}")
        return "\n".join(rows)


def with_clamp(layer: Layer, act_min: int, act_max: int) -> Layer:
    """A copy of a requantising layer whose output clamp is narrowed to ``[act_min, act_max]`` (a fused ReLU,
    ReLU6 or Clip, already converted to output codes). Exact: requantisation is monotonic, so clamping its
    result equals quantizing the clamped real value."""
    if not isinstance(layer, CLAMPABLE):
        raise IRError(f"{layer.kind} layer {layer.name!r}: cannot fuse a clamp (allowed on "
                      f"{', '.join(c.kind for c in CLAMPABLE)})")
    lo, hi = max(layer.act_min, int(act_min)), min(layer.act_max, int(act_max))
    if lo > hi:  # an empty interval: every output is the one code nearest both bounds
        lo = hi = min(max(int(act_min), layer.act_min), layer.act_max)
    return replace(layer, act_min=lo, act_max=hi)


# ----------------------------------------------------------------------------------------------------------
# Shape-only view: layer kinds and shapes without weights or quantisation


#: Kinds a :class:`LayerShape` may have besides the IR's own (:data:`LAYER_KINDS`): operators of float models
#: that the IR has no class for.
SHAPE_ONLY_KINDS: dict[str, str] = {
    "unary": "a layer without weights that passes its first input on (activation, normalisation, dropout, "
             "transpose, quantize/dequantize, a constant bias add, ...)",
    "merge": "an element-wise operator of two or more computed tensors other than an add (Mul, Max, ...)",
    "other": "an operator the importer does not know (its data is taken to flow through all its inputs)",
}


def _shape(owner: str, name: str, value, known: bool) -> tuple[int, ...] | None:
    """A per-sample shape; for a layer that may not know it (``known`` False), None when any dimension is not a
    positive integer (symbolic, missing)."""
    dims = None if value is None else tuple(value)
    if not known and (dims is None or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims)):
        return None
    if known and not dims:
        _fail(owner, name, value, "a known per-sample shape of positive integers")
    return _pos_ints(owner, name, dims, len(dims))


@dataclass(frozen=True, eq=False)
class LayerShape:
    """One layer as shapes only: its kind, tensor names and per-sample shapes, no weights, no quantisation.

    The view a partitioner or a what-if cost study needs of a model, quantized or not: :meth:`ShapeGraph.of`
    makes it from a :class:`Graph` (each layer keeps its IR layer in ``source``), and
    :func:`cimforge.golden.onnx_import.load_onnx_shapes` from any ONNX model, float ones included.

    Parameters
    ----------
    name : str
    kind : str
        An IR kind (:data:`LAYER_KINDS`: ``"conv2d"``, ``"dense"``, ``"maxpool"``, ...) or one of
        :data:`SHAPE_ONLY_KINDS`. A shape-only ``conv2d`` may have one or three spatial axes too (float models'
        1-D and 3-D convolutions; the cost models use only areas).
    inputs : tuple of str
        Computed (non-constant) input tensors; for weighted and unary layers the first is the data.
    outputs : tuple of str
    input_shapes : tuple of (tuple of int or None)
        Per-sample shapes of ``inputs`` (None where unknown; weighted layers need them known). A
        :class:`Conv2d` input is ``(C, *spatial)``, a :class:`Dense` input ``(..., features)`` (leading axes are
        positions, e.g. a sequence).
    output_shape : tuple of int or None
        Per-sample shape of the first output.
    op : str
        The operator it was made from (ONNX op type, or the IR class name).
    kernel, stride : tuple of int
        Window of a convolution or pooling layer, one entry per spatial axis.
    groups : int
        Convolution groups (divide the input and output channels).
    axis : int
        Per-sample concatenation axis (``"concat"``).
    source_shape : tuple of int or None
        For a :class:`Dense` layer reading a flattened ``(C, H, W)`` map: that map's shape (the compiler reads
        the map in place, ``cimforge.compiler.cost.layer_cost(..., source_shape=...)``).
    source : Layer or None
        The IR layer this view was made from (not compared).

    Each layer states its own shapes: the view checks names and order, not that a producer's output shape is
    its consumer's input shape (declared topologies fold pooling into the next layer's input).
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...] | None, ...]
    output_shape: tuple[int, ...] | None
    op: str = ""
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    groups: int = 1
    axis: int = 0
    source_shape: tuple[int, ...] | None = None
    source: Layer | None = field(default=None, repr=False)

    def __post_init__(self):
        owner = f"{self.kind} layer {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            _fail("layer", "name", self.name, "a non-empty string")
        if self.kind not in LAYER_KINDS and self.kind not in SHAPE_ONLY_KINDS:
            _fail(owner, "kind", self.kind, f"one of {', '.join([*LAYER_KINDS, *SHAPE_ONLY_KINDS])}")
        for f in ("inputs", "outputs"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        if not self.outputs:
            _fail(owner, "outputs", self.outputs, "at least one output tensor")
        if len(self.input_shapes) != len(self.inputs):
            _fail(owner, "input_shapes", self.input_shapes, f"one shape per input ({len(self.inputs)})")
        w = self.weighted
        object.__setattr__(self, "input_shapes", tuple(_shape(owner, "input shape", s, w) for s in self.input_shapes))
        object.__setattr__(self, "output_shape", _shape(owner, "output shape", self.output_shape, w))
        object.__setattr__(self, "kernel", _pos_ints(owner, "kernel", self.kernel, len(tuple(self.kernel))))
        object.__setattr__(self, "stride", _pos_ints(owner, "stride", self.stride, len(tuple(self.stride))))
        if self.source_shape is not None:
            object.__setattr__(self, "source_shape", _pos_ints(owner, "source_shape", self.source_shape, 3))
        if w:
            self._check_weighted(owner)

    def _check_weighted(self, owner: str):
        if len(self.inputs) != 1:
            _fail(owner, "inputs", self.inputs, "exactly one computed input")
        x, y = self.input_shapes[0], self.output_shape
        if self.kind == "conv2d":
            if len(x) < 2 or len(y) != len(x):
                _fail(owner, "shapes", (x, y), "(C, *spatial) in and out, of the same rank")
            if len(self.kernel) != len(x) - 1:
                _fail(owner, "kernel", self.kernel, f"{len(x) - 1} entries (one per spatial axis)")
        g = self.groups
        if isinstance(g, bool) or int(g) != g or g < 1 or self.in_channels % g or self.out_channels % g:
            _fail(owner, "groups", g, f"a positive integer dividing {self.in_channels} and {self.out_channels}")

    @property
    def weighted(self) -> bool:
        """True for ``conv2d`` and ``dense`` (the layers a compiler maps onto macros)."""
        return self.kind in ("conv2d", "dense")

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The first input's shape."""
        return self.input_shapes[0] if self.input_shapes else None

    @property
    def output(self) -> str:
        """The first output tensor."""
        return self.outputs[0]

    @property
    def in_channels(self) -> int:
        """Input channels (``conv2d``) or features (``dense``)."""
        x = self.input_shape
        return int(x[0] if self.kind == "conv2d" else x[-1])

    @property
    def out_channels(self) -> int:
        """Output channels (``conv2d``) or features (``dense``)."""
        y = self.output_shape
        return int(y[0] if self.kind == "conv2d" else y[-1])

    @property
    def gemm(self) -> GemmView:
        """The layer as GEMMs, as :attr:`Conv2d.gemm` / :attr:`Dense.gemm` (``M`` counts a dense layer's leading
        positions); weighted layers only."""
        if not self.weighted:
            _fail(f"{self.kind} layer {self.name!r}", "kind", self.kind, "conv2d or dense for a GEMM view")
        g = self.groups
        if self.kind == "conv2d":
            return GemmView(M=int(np.prod(self.output_shape[1:])), K=self.in_channels // g * int(np.prod(self.kernel)),
                            N=self.out_channels // g, groups=g)
        return GemmView(M=int(np.prod(self.output_shape[:-1])), K=self.in_channels, N=self.out_channels, groups=1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample (0 without weights)."""
        return self.gemm.macs if self.weighted else 0

    @property
    def weight_count(self) -> int:
        """Weights (0 without weights)."""
        if not self.weighted:
            return 0
        g = self.gemm
        return g.K * g.N * g.groups


@dataclass(frozen=True, eq=False)
class ShapeGraph:
    """A model as :class:`LayerShape` objects in topological order: the shape-only view of a :class:`Graph`
    (:meth:`of`) or of a float ONNX model (:func:`cimforge.golden.onnx_import.load_onnx_shapes`).

    Parameters
    ----------
    name : str
    inputs : mapping of str to (tuple of int or None)
        Graph inputs and their per-sample shapes.
    layers : tuple of LayerShape
        Topologically ordered; every tensor is produced once, by a graph input or one layer.
    outputs : tuple of str
    source : str
        Where it came from (a file, ``"ir"`` for a view of a :class:`Graph`, or ``"declared"``).
    """

    name: str
    inputs: Mapping[str, tuple[int, ...] | None]
    layers: tuple[LayerShape, ...]
    outputs: tuple[str, ...] = ()
    source: str = "declared"
    _producer: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "inputs", dict(self.inputs))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        owner = f"graph {self.name!r}"
        known, names = set(self.inputs), set()
        for layer in self.layers:
            if not isinstance(layer, LayerShape):
                _fail(owner, "layers", layer, "LayerShape objects")
            if layer.name in names:
                _fail(owner, "layer name", layer.name, "unique layer names")
            names.add(layer.name)
            for t in layer.inputs:
                if t not in known:
                    _fail(owner, f"input of layer {layer.name!r}", t,
                          "a tensor produced earlier (layers must be topologically ordered)")
            for t in layer.outputs:
                if t in known:
                    _fail(owner, f"output of layer {layer.name!r}", t, "a tensor produced only once")
                known.add(t)
                self._producer[t] = layer
        for t in self.outputs:
            if t not in known:
                _fail(owner, "outputs", t, "a graph input or layer output")

    @classmethod
    def of(cls, graph: Graph) -> "ShapeGraph":
        """The shape-only view of a quantized :class:`Graph`; each layer keeps its IR layer in ``source``."""
        layers = []
        for l in graph.layers:
            kw: dict = {}
            if isinstance(l, (Conv2d, _Window)):
                kw = dict(kernel=l.kernel, stride=l.stride, groups=getattr(l, "groups", 1))
            elif isinstance(l, Concat):
                kw = dict(axis=l.axis)
            layers.append(LayerShape(l.name, l.kind, tuple(t.name for t in l.inputs), (l.output.name,),
                                     l.input_shapes, l.output_shape, op=type(l).__name__, source=l, **kw))
        layers = with_flattened_sources(layers)
        return cls(graph.name, {t.name: t.shape for t in graph.inputs}, tuple(layers), graph.outputs, "ir")

    def producer(self, tensor: str) -> LayerShape | None:
        """The layer producing ``tensor`` (None for a graph input or an unknown name)."""
        return self._producer.get(tensor)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The first graph input's per-sample shape (``()`` when unknown)."""
        return next(iter(self.inputs.values()), None) or ()

    @property
    def weighted_layers(self) -> list[LayerShape]:
        """Conv2d and Dense layers, in order."""
        return [layer for layer in self.layers if layer.weighted]

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        return sum(layer.macs for layer in self.layers)


#: Operators a flattened map may pass through on its way to a Dense layer (besides reshapes).
_FLAT_PASSTHROUGH = ("QuantizeLinear", "DequantizeLinear")


def with_flattened_sources(layers: list[LayerShape]) -> list[LayerShape]:
    """``layers`` with ``source_shape`` set on each Dense layer that reads a flattened ``(C, H, W)`` map: the
    first shape of ``C * H * W`` elements found walking back through reshapes (and quantize/dequantize)."""
    producer = {t: l for l in layers for t in l.outputs}
    out = []
    for layer in layers:
        if layer.kind == "dense" and layer.source_shape is None:
            t = layer.inputs[0]
            while t in producer and (producer[t].kind == "reshape" or producer[t].op in _FLAT_PASSTHROUGH):
                p = producer[t]
                t, s = p.inputs[0], p.input_shapes[0]
                if s is not None and len(s) == 3 and s[0] * s[1] * s[2] == layer.in_channels:
                    layer = replace(layer, source_shape=s)
                    break
        out.append(layer)
    return out
