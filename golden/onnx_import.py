"""Import quantized ONNX models into the layer IR (:mod:`cimforge.golden.ir`).

Two encodings are understood, as onnxruntime's ``quantize_static`` writes them, and may be mixed:

* **QOperator**: integer operators on int8/uint8 tensors: ``QLinearConv``, ``QLinearMatMul``, ``QGemm``,
  ``QLinearAdd``, ``QLinearAveragePool``, ``QLinearGlobalAveragePool``, ``QLinearConcat`` (the last five in
  the ``com.microsoft`` domain), and ``MaxPool``, ``Relu``, ``Clip``, ``Reshape``, ``Flatten``, ``Identity``
  applied to codes.
* **QDQ**: float operators (``Conv``, ``Gemm``, ``MatMul``, ``Add``, ``MaxPool``, ``AveragePool``,
  ``GlobalAveragePool``, ``Concat``, ``Reshape``, ``Flatten``, ``Relu``, ``Clip``) whose activation inputs are
  ``DequantizeLinear`` outputs, whose weights are ``DequantizeLinear`` of int8 initializers, and whose result is
  quantized by a ``QuantizeLinear``. ``Relu`` / ``Clip`` between an operator and its ``QuantizeLinear`` fuse into
  the layer's output clamp exactly (quantisation is monotonic). ``QuantizeLinear`` / ``DequantizeLinear`` may be
  of either domain (com.microsoft's, ``UseQDQContribOps``, are the same operators).

Every IR tensor keeps the name of the ONNX tensor holding the same codes (the QOperator output, or the
``QuantizeLinear`` output in QDQ form), so golden and onnxruntime intermediates can be compared by name.

The batch dimension (the first of every tensor) may be symbolic; every other dimension must be a fixed
positive integer. Anything else (an unsupported operator or attribute, a float-only model, dynamic or missing
shapes, a file that does not parse) raises :class:`OnnxImportError` naming the node, its operator and why.

:func:`load_onnx_shapes` is the shape-only mode: any model, float ones included (the onnx package's AlexNet,
VGG-19, ResNet-50, ...), read as a :class:`~cimforge.golden.ir.ShapeGraph` of layer kinds and shapes, for the
partitioner and what-if cost studies; unknown operators are carried with an :class:`UnknownOpWarning`.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from . import lut as _lut
from .ir import (LRN, Lut, AvgPool, FloatChain, Clamp, CLAMPABLE, Concat, Conv2d, ConvInteger, Dense, GlobalAvgPool,
                 Graph, IRError, INPUT_STEP_OPS,
                 Layer, MatMul, MatMulInteger, MaxPool, Mul, Reshape, Resize, Softmax, TensorInfo, Add, conv_output_size,
                 with_clamp)
from .requant import NumericsError

__all__ = ["OnnxImportError", "load_onnx", "NUMERICS", "SUPPORTED_OPS", "IMPORTS_TO", "load_onnx_shapes", "UnknownOpWarning",
           "unknown_ops_message", "widen_4bit_array"]


class OnnxImportError(ValueError):
    """A model the importer cannot represent exactly.

    Members
    -------
    node : str or None
        Name of the offending node (or tensor, for graph-level problems).
    op : str or None
        Its operator type.
    reason : str
    """

    def __init__(self, reason: str, node: str | None = None, op: str | None = None):
        self.node, self.op, self.reason = node, op, reason
        where = f"node {node!r} ({op}): " if op else (f"{node!r}: " if node else "")
        super().__init__(where + reason)


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd",
              "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax", "QLinearMul",
              "QLinearLeakyRelu", "QLinearSigmoid", "ConvInteger",
              "MatMulInteger"}
_ONNX_DOMAINS = ("", "ai.onnx")
_MS = "com.microsoft"
_DTYPES = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8"}


# ----------------------------------------------------------------------------------------------------------
# What a tensor name stands for while importing


@dataclass
class _Codes:
    """Integer codes of an IR tensor."""
    info: TensorInfo


@dataclass
class _Dequant:
    """A float tensor equal to ``DequantizeLinear`` of an IR tensor."""
    info: TensorInfo


@dataclass
class _Const:
    """A constant (initializer or ``Constant`` node)."""
    value: np.ndarray


@dataclass
class _ConstDequant:
    """``DequantizeLinear`` of a constant: real = (q - zp) * scale along ``axis``."""
    q: np.ndarray
    scale: np.ndarray
    zp: np.ndarray
    axis: int


@dataclass
class _Shuffle:
    """The channel shuffle ``Reshape (g, C/g, H, W) -> Transpose (1, 0, 2, 3)`` of the IR tensor ``src``
    ``(C, H, W)``, waiting for the ``Reshape`` back to ``(C, H, W)`` that makes it a permutation; ``dequant``
    when it is a float tensor (QDQ form). ``pending``: the shuffle of a float result that was never quantized
    (QOperator form with float BatchNormalization -> Relu -> shuffle), ``src`` then its shape only."""
    src: TensorInfo
    groups: int
    shape: tuple[int, ...]
    dequant: bool
    pending: "_Pending | None" = None


@dataclass
class _Permuted:
    """A ``Transpose`` of the IR tensor ``src`` that is not a channel shuffle: Keras' ``Flatten`` of a
    channels-last tensor as tf2onnx writes it (``Transpose (0, 2, 3, 1) -> Reshape (N, -1) -> MatMul``).
    ``index[j]`` is where element ``j`` of the transposed tensor, flattened, sits in ``src`` flattened;
    ``shape`` is its current per-sample shape (reshapes may follow), ``dequant`` whether it is float (QDQ).
    Only a ``Gemm`` / ``MatMul`` may read it, flat (:meth:`_Importer.flat_input`): the permutation is folded
    into the order of the weights' input columns, so no data moves."""
    src: TensorInfo
    index: np.ndarray
    shape: tuple[int, ...]
    dequant: bool
    node: str
    perm: tuple[int, ...]
    #: A single transposition of a graph input's codes that nothing else reads (onnxruntime quantizes the input,
    #: then transposes it): the transposition moves to the host (:meth:`_Importer.transposed_input`).
    of_input: bool = False


@dataclass
class _FloatInput:
    """A float graph input, to be quantized by a ``QuantizeLinear``; ``steps``: the float arithmetic by constants
    the model applies to it first (:attr:`~cimforge.golden.ir.Graph.input_steps`)."""
    name: str
    shape: tuple[int, ...]
    steps: tuple = ()


@dataclass
class _PaddedInput:
    """A zero ``Pad`` of a float graph input (``padding`` top, left, bottom, right), waiting for the
    ``QuantizeLinear`` that gives both tensors their quantisation."""
    src: _FloatInput
    padding: tuple[int, int, int, int]
    node: object


@dataclass
class _Pending:
    """The float result of a QDQ operator, waiting for its ``QuantizeLinear``.

    ``make(output_info)`` builds the layer; ``lo``/``hi`` are real clamp bounds from fused Relu/Clip."""
    node: str
    op: str
    shape: tuple[int, ...]
    make: Callable[[TensorInfo], Layer]
    lo: float = -math.inf
    hi: float = math.inf
    #: For a float Reshape of another pending result: that result (a channel shuffle may follow).
    reshaped: "_Pending | None" = None
    #: The result of an operator onnxruntime leaves in float (LRN, BatchNormalization): a MaxPool, Reshape or
    #: channel shuffle may follow it before the QuantizeLinear (:meth:`_Importer.after_float`).
    float_only: bool = False
    #: The real values the result can take (from its inputs' code ranges), when known: the range of the int8
    #: tensor it is quantized into when an operator that does not commute with quantisation reads it
    #: (:meth:`_Importer.quantized_input`).
    real_range: tuple[float, float] | None = None
    #: The float32 expression of the result over quantized leaves ``("dq", TensorInfo)`` (the operators
    #: onnxruntime computes in float: BatchNormalization, Sum, Add, Mul, pools), for ``numerics="onnx"``, where a
    #: reader that does not commute with quantisation extends it into a :class:`~cimforge.golden.ir.FloatChain`.
    expr: tuple | None = None
    #: For a selection of a quantized tensor's values (a Slice or Split onnxruntime leaves in float): that
    #: tensor, whose quantisation holds the result exactly when a non-commuting operator reads it.
    codes_of: "TensorInfo | None" = None


@dataclass
class _Lut:
    """A float tensor that is an element-wise function of the codes of the IR tensor ``src``: ``vals[b]`` is its
    float32 value where ``src``'s code has the byte ``b`` (onnxruntime's evaluation, :mod:`cimforge.golden.lut`),
    waiting for the ``QuantizeLinear`` that makes it a :class:`~cimforge.golden.ir.Lut` layer."""
    src: TensorInfo
    vals: np.ndarray
    node: str
    op: str


#: The Pad modes imported: by real zero (a depthwise 1x1 convolution), or copies of rows and columns (a gather).
_PAD_MODES = ("constant", "reflect", "edge")

#: The operators that only reshape a tensor.
_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")

#: Why a node of a quantized model reads float data, and what to do (run() refuses float-only models first).
_LEFT_IN_FLOAT = ("the node was left in float (quantize_static's op_types_to_quantize / nodes_to_exclude?); the "
                  "fabric runs quantized operators only: quantize this node too")


def _table_range(src: TensorInfo, vals: np.ndarray) -> tuple[float, float] | None:
    """The values a table's float result takes on the codes ``src`` can hold; None when some are not finite."""
    codes = _lut.code_bytes(src).astype(np.int64)
    vals = vals[..., (codes >= src.qmin) & (codes <= src.qmax)]
    return (float(vals.min()), float(vals.max())) if np.isfinite(vals).all() else None


@dataclass
class _Importer:
    proto: object
    name: str
    values: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    float_inputs: dict = field(default_factory=dict)
    #: Graph input -> the float steps its float input takes first (:meth:`input_step`).
    input_steps: dict = field(default_factory=dict)
    consumers: dict = field(default_factory=dict)
    layer_names: set = field(default_factory=set)
    graph_outputs: set = field(default_factory=set)
    #: ``"fabric"`` or ``"onnx"`` (see :func:`load_onnx`).
    numerics: str = "fabric"
    #: Float tensors already quantized whose float value another operator reads again (QOperator ResNet-50's
    #: residual stream): their float32 expression, for ``numerics="onnx"``.
    float_exprs: dict = field(default_factory=dict)
    #: Outputs of Lut layers: tensor name -> (the tensor whose codes the table is a function of, at the start of a
    #: run of tables, and the composed table), so that ``x * Sigmoid(x)`` is found to be one function of x.
    lut_of: dict = field(default_factory=dict)
    #: Zero-point initializers that were int4 / uint4, with the code range they allow.
    narrow_zp: dict = field(default_factory=dict)
    #: Tensors quantized with such a zero point, with their code range (:meth:`note_narrow`).
    narrow_out: dict = field(default_factory=dict)

    @property
    def float_pools(self) -> str:
        """The ``method`` of a QDQ (float) average pool."""
        return "float" if self.numerics == "onnx" else "integer"

    # -- helpers ------------------------------------------------------------------------------------------

    def fail(self, node, reason: str):
        raise OnnxImportError(reason, node=node.name or node.output[0], op=node.op_type)

    def get(self, node, i: int, what: str | None = None):
        if i >= len(node.input) or node.input[i] == "":
            self.fail(node, f"missing input {i}{f' ({what})' if what else ''}")
        name = node.input[i]
        if name not in self.values:
            self.fail(node, f"input {name!r} is produced by no earlier node, initializer or graph input "
                            f"(graph not topologically sorted, or corrupted)")
        return self.values[name]

    def optional(self, node, i: int):
        return self.get(node, i) if i < len(node.input) and node.input[i] else None

    def const(self, node, i: int, what: str) -> np.ndarray:
        v = self.get(node, i, what)
        if not isinstance(v, _Const):
            self.fail(node, f"{what} {node.input[i]!r} must be a constant initializer")
        return v.value

    def codes(self, node, i: int, what: str = "input") -> TensorInfo:
        v = self.get(node, i, what)
        if isinstance(v, _Codes) and v.info.dtype == "int32":
            self.fail(node, f"{what} {node.input[i]!r} is the int32 output of a ConvInteger / MatMulInteger: "
                            f"only a graph output may hold one")
        if isinstance(v, _Codes):
            return v.info
        if isinstance(v, _Lut):
            return self.lut_quantized(node, i)
        if isinstance(v, _Shuffle):
            self.fail(node, f"{what} {node.input[i]!r} is a channel shuffle's transposed tensor; only a Reshape "
                            f"back to (C, H, W) may read it")
        if isinstance(v, _Permuted):
            self.permuted_reader(node, i, v)
        if isinstance(v, (_Dequant, _FloatInput)) or isinstance(v, _Pending):
            self.fail(node, f"{what} {node.input[i]!r} is a float tensor; this operator needs int8/uint8 codes")
        self.fail(node, f"{what} {node.input[i]!r} is a constant; this operator needs a computed tensor")

    def dequant(self, node, i: int, what: str = "input") -> TensorInfo:
        v = self.get(node, i, what)
        if isinstance(v, _Dequant):
            return v.info
        if isinstance(v, _Shuffle):
            self.fail(node, f"{what} {node.input[i]!r} is a channel shuffle's transposed tensor; only a Reshape "
                            f"back to (C, H, W) may read it")
        if isinstance(v, _Permuted):
            self.permuted_reader(node, i, v)
        if isinstance(v, _Pending):
            self.fail(node, f"{what} {node.input[i]!r} is the float output of node {v.node!r} ({v.op}) with no "
                            f"QuantizeLinear in between: only quantized tensors may pass between layers")
        if isinstance(v, _FloatInput):
            self.fail(node, f"{what} {node.input[i]!r} is the float graph input, not quantized: {_LEFT_IN_FLOAT}")
        if isinstance(v, _Codes):
            self.fail(node, f"{what} {node.input[i]!r} holds int codes; this float operator needs a "
                            f"DequantizeLinear in front")
        if isinstance(v, _Lut):
            self.fail(node, f"{what} {node.input[i]!r} is the float output of node {v.node!r} ({v.op}) with no "
                            f"QuantizeLinear in between: only quantized tensors, or a max, pad, resize or reshape "
                            f"of this one, may follow it")
        self.fail(node, f"{what} {node.input[i]!r} is a constant; a computed (dequantized) tensor is needed")

    def permuted_reader(self, node, i: int, v: _Permuted):
        """Refuse a reader of a transposed tensor other than a flat matrix product (:class:`_Permuted`)."""
        self.fail(node, f"input {node.input[i]!r} is node {v.node!r}'s Transpose (perm {list(v.perm)}) of "
                        f"{v.src.name!r}, shape {v.shape}: allowed readers are a Reshape / Flatten and then a Gemm or "
                        f"MatMul of the flattened tensor (Keras' Flatten of a channels-last tensor), or the channel "
                        f"shuffle Reshape (N, g, C/g, H, W) -> Transpose perm (0, 2, 1, 3, 4) -> Reshape (N, C, H, W)")

    def flat_input(self, node, i: int, float_: bool) -> tuple[TensorInfo, np.ndarray | None]:
        """A matrix product's input ``i``: (the tensor, None), or for a flattened :class:`_Permuted` tensor the
        flattening of its source (a :class:`~cimforge.golden.ir.Reshape`, emitted once) and the permutation
        ``index`` the weights' input columns take (``W'[:, index] = W``: the same products)."""
        v = self.get(node, i)
        if not isinstance(v, _Permuted):
            return (self.dequant(node, i) if float_ else self.codes(node, i)), None
        if len(v.shape) != 1 or v.dequant != float_:
            self.permuted_reader(node, i, v)
        name = f"{v.src.name}/flattened"  # not the model's tensor: that one is in the transposed order
        flat = next((l.output for l in self.layers if l.output.name == name), None)  # emitted for another reader
        if flat is None:
            flat = v.src.renamed(name, (int(v.index.size),))
            self.emit(Reshape(name=f"{v.node}/flatten", inputs=(v.src,), output=flat))
        return flat, v.index

    def qparams(self, node, i_scale: int, i_zp: int | None, what: str) -> tuple[float, int, str]:
        """A per-tensor (scale, zero point, dtype) from constant inputs."""
        scale = np.asarray(self.const(node, i_scale, f"{what} scale"))
        if scale.size != 1:
            self.fail(node, f"{what} scale must be per-tensor (one value), has shape {scale.shape}")
        zp = None if i_zp is None else self.optional(node, i_zp)
        if zp is None:
            zp_v, dtype = 0, "uint8"  # ONNX default
        else:
            if not isinstance(zp, _Const):
                self.fail(node, f"{what} zero point {node.input[i_zp]!r} must be a constant initializer")
            z = np.asarray(zp.value)
            if z.size != 1:
                self.fail(node, f"{what} zero point must be per-tensor (one value), has shape {z.shape}")
            if z.dtype not in _DTYPES:
                self.fail(node, f"{what} zero point has dtype {z.dtype}: activations must be int8 or uint8")
            zp_v, dtype = int(z.ravel()[0]), _DTYPES[z.dtype]
        s = float(np.float32(scale.ravel()[0]))
        if not math.isfinite(s) or s <= 0:
            self.fail(node, f"{what} scale {s!r} must be finite and > 0")
        return s, zp_v, dtype

    def check_quant(self, node, info: TensorInfo, q: tuple[float, int, str], what: str):
        if (info.scale, info.zero_point, info.dtype) != q:
            self.fail(node, f"{what} {info.name!r} is given scale/zero point/dtype {q}, but its producer made "
                            f"{(info.scale, info.zero_point, info.dtype)}")

    def weights(self, node, q: np.ndarray, zp, axis: int, what: str = "weight") -> tuple[np.ndarray, np.ndarray]:
        """Integer weights as int8 codes and their zero point per channel along ``axis`` (exact).

        Where ``q - zp`` fits int8 (symmetric weights: zero point 0 for int8, 128 for uint8) the codes are
        ``q - zp`` and the zero points 0, as before zero points were supported; otherwise the codes themselves
        (a uint8 model's shifted by -128, with its zero points) and the zero points."""
        q = np.asarray(q)
        if not np.issubdtype(q.dtype, np.integer) or q.dtype.itemsize > 1:
            self.fail(node, f"{what} has dtype {q.dtype}: weights must be int8 (or uint8)")
        z = np.zeros(1, np.int64) if zp is None else np.asarray(zp, dtype=np.int64).ravel()
        if z.size not in (1, q.shape[axis]):
            self.fail(node, f"{what} zero point has {z.size} values for {q.shape[axis]} channels")
        shape = [1] * q.ndim
        shape[axis] = z.size
        w = q.astype(np.int64) - z.reshape(shape)
        if not w.size or (w.min() >= -128 and w.max() <= 127):
            return w.astype(np.int8), np.zeros(q.shape[axis], np.int64)
        shift = 128 if q.dtype == np.uint8 else 0
        codes = (q.astype(np.int64) - shift).astype(np.int8)
        return codes, np.broadcast_to(z - shift, (q.shape[axis],)).astype(np.int64)

    def weight_scale(self, node, scale, n_out: int, what: str = "weight") -> np.ndarray:
        s = np.asarray(scale, dtype=np.float32).ravel()
        if s.size not in (1, n_out):
            self.fail(node, f"{what} scale has {s.size} values for {n_out} output channels")
        return np.broadcast_to(s, (n_out,)).astype(np.float64)

    def bias(self, node, v, x_scale: float, w_scale: np.ndarray, n_out: int) -> np.ndarray | None:
        """int32 bias with scale ``x_scale * w_scale``; a float or differently scaled bias is requantised to it
        (round half to even)."""
        if v is None:
            return None
        acc_scale = np.float32(x_scale) * w_scale.astype(np.float32)
        if isinstance(v, _Const) and np.issubdtype(v.value.dtype, np.integer):
            b = v.value.astype(np.int64).ravel()
        elif isinstance(v, _Const):
            b = np.rint(v.value.astype(np.float64).ravel() / acc_scale)
        elif isinstance(v, _ConstDequant):
            s = np.broadcast_to(np.asarray(v.scale, np.float32).ravel(), (n_out,))
            real_int = v.q.astype(np.int64).ravel() - np.asarray(v.zp, np.int64).ravel()
            if np.allclose(s, acc_scale, rtol=1e-6, atol=0):
                b = real_int
            else:
                b = np.rint(real_int * s.astype(np.float64) / acc_scale)
        else:
            self.fail(node, "bias must be a constant (int32, or DequantizeLinear of int32)")
        if b.size != n_out:
            self.fail(node, f"bias has {b.size} values for {n_out} output channels")
        if b.min() < -2**31 or b.max() > 2**31 - 1:
            self.fail(node, "bias leaves the int32 range")
        return b.astype(np.int32)

    def attrs(self, node) -> dict:
        import onnx

        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def layer_name(self, node) -> str:
        base = node.name or f"{node.op_type}:{node.output[0]}"
        name, i = base, 1
        while name in self.layer_names:
            i += 1
            name = f"{base}#{i}"
        self.layer_names.add(name)
        return name

    def emit(self, layer: Layer):
        narrow = self.narrow_out.get(layer.output.name)
        if narrow is not None and (layer.output.qmin, layer.output.qmax) != narrow \
                and (getattr(layer, "act_min", None), getattr(layer, "act_max", None)) != narrow:
            # a 4-bit activation (int4 / uint4 zero point): the producer's clamp narrows to its range, as
            # QuantizeLinear saturates to it; a producer without a clamp gets a Clamp layer after it
            if isinstance(layer, CLAMPABLE):
                layer = with_clamp(layer, *narrow)
            else:
                out = layer.output
                wide = replace(layer, output=out.renamed(out.name + "/unclamped"))
                self.layers.append(wide)
                layer = Clamp(name=layer.name + "/clamp", inputs=(wide.output,), output=out, act_min=narrow[0],
                              act_max=narrow[1])
        self.layers.append(layer)
        self.values[layer.output.name] = _Codes(layer.output)

    def note_narrow(self, node, i_zp: int | None, tensor: str) -> None:
        """Record that ``tensor`` is quantized with a 4-bit zero point (input ``i_zp``): its codes span only
        -8..7 (int4) or 0..15 (uint4), held as int8 / uint8 codes."""
        if i_zp is not None and i_zp < len(node.input) and node.input[i_zp] in self.narrow_zp:
            self.narrow_out[tensor] = self.narrow_zp[node.input[i_zp]]

    def build(self, node, make, *args, **kw):
        """Construct an IR layer, turning IR validation errors into import errors on this node."""
        try:
            return make(*args, **kw)
        except (IRError, NumericsError) as e:
            self.fail(node, str(e))

    # -- window geometry ------------------------------------------------------------------------------------

    def window(self, node, a: dict, in_hw: tuple[int, int], kernel: tuple[int, int], ceil_ok: bool = False) -> dict:
        """stride, padding (top, left, bottom, right) and dilation of a 2-D window, auto_pad resolved.

        ``ceil_ok``: the operator's ``ceil_mode=1`` is padding at the bottom and right, enough for the last
        partial window (a window that would start in the end padding is dropped, as onnxruntime does); that is
        exact for a max, and for an average whose divisor counts the explicit padding only (or none of it):
        its padded taps add nothing to the sum (:attr:`~cimforge.golden.ir.AvgPool.counted_padding`)."""
        if len(kernel) != 2:
            self.fail(node, f"only 2-D windows are supported, kernel_shape = {list(kernel)}")
        stride = tuple(a.get("strides", (1, 1)))
        dil = tuple(a.get("dilations", (1, 1)))
        if len(stride) != 2 or len(dil) != 2:
            self.fail(node, f"strides {list(stride)} / dilations {list(dil)} must have two entries")
        ceil = bool(a.get("ceil_mode", 0))
        if ceil and not ceil_ok:
            self.fail(node, "ceil_mode=1 is not supported here (floor mode only)")
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            pads = tuple(a.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4:
                self.fail(node, f"pads {list(pads)} must have four entries")
            padding = (pads[0], pads[1], pads[2], pads[3])
        elif auto == "VALID":
            padding = (0, 0, 0, 0)
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            p = []
            for size, k, s, d in zip(in_hw, kernel, stride, dil):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                p.append((small, big) if auto == "SAME_UPPER" else (big, small))
            padding = (p[0][0], p[1][0], p[0][1], p[1][1])
        else:
            self.fail(node, f"auto_pad {auto!r} is not supported")
        explicit = tuple(padding)
        if ceil:
            padding = list(padding)
            for i, (size, k, s, d) in enumerate(zip(in_hw, kernel, stride, dil)):
                span = size + padding[i] + padding[i + 2] - (k - 1) * d - 1
                n = -(-span // s) + 1 if span >= 0 else 0
                if n > 1 and (n - 1) * s >= size + padding[i]:
                    n -= 1
                padding[i + 2] += max((n - 1) * s + (k - 1) * d + 1 - size - padding[i] - padding[i + 2], 0)
            padding = tuple(padding)
        out = tuple(conv_output_size(size, k, s, padding[i], padding[i + 2], d)
                    for i, (size, k, s, d) in enumerate(zip(in_hw, kernel, stride, dil)))
        if min(out) < 1:
            self.fail(node, f"window {list(kernel)} with padding {padding} does not fit the input {in_hw}")
        return {"stride": stride, "padding": padding, "dilation": dil, "out_hw": out, "explicit": explicit}

    # -- shared layer builders ---------------------------------------------------------------------------

    def conv(self, node, x: TensorInfo, w: np.ndarray, w_scale, bias_v, w_zp=0, cls=Conv2d):
        a = self.attrs(node)
        if w.ndim != 4 or len(x.shape) != 3:
            self.fail(node, f"only 2-D convolutions on (C, H, W) inputs are supported (weight {w.shape}, "
                            f"input {x.shape})")
        kernel = tuple(a.get("kernel_shape", w.shape[2:]))
        if kernel != w.shape[2:]:
            self.fail(node, f"kernel_shape {list(kernel)} disagrees with the weight shape {w.shape}")
        geo = self.window(node, a, x.shape[1:], kernel)
        groups = int(a.get("group", 1))
        ws = self.weight_scale(node, w_scale, w.shape[0])
        bias = self.bias(node, bias_v, x.scale, ws, w.shape[0])
        shape = (w.shape[0], *geo["out_hw"])

        def make(out: TensorInfo) -> Layer:
            return cls(name=self.layer_name(node), inputs=(x,), output=out, weight=w, bias=bias, weight_scale=ws,
                       weight_zero_point=w_zp, stride=geo["stride"], padding=geo["padding"],
                       dilation=geo["dilation"], groups=groups)
        return shape, make

    def dense(self, node, x: TensorInfo, w: np.ndarray, w_scale, bias_v, w_zp=0, cls=None, cols=None):
        """``w`` is ``(out_features, in_features)``. A matrix product (MatMul, QLinearMatMul) over an N-D input
        ``(..., features)`` is a :class:`~cimforge.golden.ir.MatMul` (the same weights at every position).
        ``cols``: the input's features in the order of ``x``'s (a transposed input, :meth:`flat_input`)."""
        positions = node.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger")
        if len(x.shape) != 1 and not positions:
            self.fail(node, f"input must be (N, features); per-sample shape {x.shape}: flatten first")
        if w.ndim != 2 or w.shape[1] != x.shape[-1]:
            self.fail(node, f"weight shape {w.shape} does not match {x.shape[-1]} input features")
        if cols is not None:
            moved = np.empty_like(w)
            moved[:, cols] = w
            w = moved
        ws = self.weight_scale(node, w_scale, w.shape[0])
        bias = self.bias(node, bias_v, x.scale, ws, w.shape[0])
        cls = cls or (Dense if len(x.shape) == 1 else MatMul)

        def make(out: TensorInfo) -> Layer:
            return cls(name=self.layer_name(node), inputs=(x,), output=out, weight=w, bias=bias, weight_scale=ws,
                       weight_zero_point=w_zp)
        return (*x.shape[:-1], w.shape[0]), make

    def pool(self, node, x: TensorInfo, kind: str, method: str = "integer", round_even: bool = False):
        """Shape and maker of a pooling layer; ``method`` and ``round_even`` of an average (see :func:`load_onnx`,
        :class:`~cimforge.golden.ir.AvgPool`)."""
        a = self.attrs(node)
        if len(x.shape) != 3:
            self.fail(node, f"pooling needs a (C, H, W) input, got {x.shape}")
        if kind == "global":
            return (x.shape[0], 1, 1), lambda out: GlobalAvgPool(name=self.layer_name(node), inputs=(x,), output=out,
                                                                 method=method, round_even=round_even)
        if kind == "global_max":
            kw = dict(kernel=x.shape[1:])
            return (x.shape[0], 1, 1), lambda out: self.max_pool(node, x, out, kw)
        kernel = tuple(a.get("kernel_shape", ()))
        geo = self.window(node, a, x.shape[1:], kernel, ceil_ok=True)
        # onnxruntime's float pool (QDQ) divides by the taps in the input and the explicit padding; its
        # QLinearAveragePool by the whole window, ceil_mode's end padding included (measured, onnxruntime 1.32)
        counted = geo["explicit"] if (a.get("count_include_pad", 0) and geo["explicit"] != geo["padding"]
                                      and node.op_type != "QLinearAveragePool") else None
        shape = (x.shape[0], *geo["out_hw"])
        kw = dict(kernel=kernel, stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"])
        if kind == "max":
            if len(node.output) > 1 and node.output[1]:
                self.fail(node, "the Indices output of MaxPool is not supported")
            if a.get("storage_order", 0):
                self.fail(node, "storage_order=1 is not supported")
            return shape, lambda out: self.max_pool(node, x, out, kw)
        generic = counted is not None or (node.op_type == "AveragePool" and self.opset >= 19)
        return shape, lambda out: AvgPool(name=self.layer_name(node), inputs=(x,), output=out,
                                          count_include_pad=bool(a.get("count_include_pad", 0)),
                                          counted_padding=counted, method=method, round_even=round_even,
                                          generic_order=generic, **kw)

    def max_pool(self, node, x: TensorInfo, out: TensorInfo, kw: dict) -> Layer:
        """A max pool from ``x`` to ``out``; when a QDQ pool's QuantizeLinear changes the quantisation (a float
        GlobalMaxPool that onnxruntime leaves between DequantizeLinear and the next QuantizeLinear), the pool keeps
        the input's and a requantising copy follows, as in :meth:`reshape_requant`: the max itself is exact."""
        name = self.layer_name(node)
        if x.same_quant(out):
            return MaxPool(name=name, inputs=(x,), output=out, **kw)
        mid = x.renamed(f"{out.name}/pooled", out.shape)
        self.emit(self.build(node, MaxPool, name=name, inputs=(x,), output=mid, **kw))
        return Concat(name=f"{name}/requant", inputs=(mid,), output=out, axis=0)

    def reshape_shape(self, node, x: TensorInfo) -> tuple[int, ...]:
        """Per-sample output shape of Reshape / Flatten; the batch dimension must pass through."""
        a = self.attrs(node)
        if node.op_type in ("Squeeze", "Unsqueeze"):
            return self.squeeze_shape(node, x)
        if node.op_type == "Flatten":
            axis = a.get("axis", 1)
            axis = axis + len(x.shape) + 1 if axis < 0 else axis
            if axis != 1:
                self.fail(node, f"Flatten axis {a.get('axis', 1)} would mix the batch dimension: only axis 1")
            return (x.size,)
        target = [int(v) for v in np.asarray(self.const(node, 1, "shape")).ravel()]
        if a.get("allowzero", 0) and 0 in target:
            self.fail(node, "allowzero=1 with a zero in the shape is not supported")
        full = (1, *x.shape)  # resolve with a batch of one; the batch must stay first
        resolved = [full[i] if v == 0 else v for i, v in enumerate(target)]
        if resolved.count(-1) > 1 or any(v < -1 for v in resolved):
            self.fail(node, f"invalid target shape {target}")
        if -1 in resolved:
            known = int(np.prod([v for v in resolved if v != -1]))
            if known == 0 or x.size % known:
                self.fail(node, f"cannot reshape {x.shape} to {target}")
            resolved[resolved.index(-1)] = x.size // known
        if int(np.prod(resolved)) != x.size or not resolved or resolved[0] != 1:
            self.fail(node, f"target shape {target} does not keep the batch dimension first for input "
                            f"(N, {', '.join(map(str, x.shape))})")
        return tuple(resolved[1:])

    def squeeze_shape(self, node, x: TensorInfo) -> tuple[int, ...]:
        """Per-sample output shape of Squeeze / Unsqueeze (axes from the attribute before opset 13, else the
        second input); the batch axis 0 must stay, so it is neither removed nor inserted."""
        axes = self.attrs(node).get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in np.asarray(self.const(node, 1, "axes")).ravel()]
        full = [1, *x.shape]
        if node.op_type == "Squeeze":
            if axes is None:  # every size-1 axis but the batch
                return tuple(d for d in x.shape if d != 1)
            axes = sorted({v + len(full) if v < 0 else v for v in axes})
            if any(not 1 <= v < len(full) or full[v] != 1 for v in axes):
                self.fail(node, f"axes {list(axes)} must name size-1 axes of (N, {', '.join(map(str, x.shape))}) "
                                f"other than the batch axis 0")
            return tuple(d for i, d in enumerate(full) if i not in axes)[1:]
        if not axes:
            self.fail(node, "Unsqueeze needs axes")
        rank = len(full) + len(axes)
        axes = sorted({v + rank if v < 0 else v for v in axes})
        if len(axes) != len(set(axes)) or any(not 1 <= v < rank for v in axes):
            self.fail(node, f"axes {list(axes)} must be distinct and in 1..{rank - 1} (not the batch axis 0)")
        for v in axes:
            full.insert(v, 1)
        return tuple(full[1:])

    def concat_axis(self, node, rank: int) -> int:
        axis = self.attrs(node).get("axis")
        if axis is None:
            self.fail(node, "missing axis attribute")
        axis = axis + rank + 1 if axis < 0 else axis
        if not 1 <= axis <= rank:
            self.fail(node, f"axis {self.attrs(node).get('axis')} is the batch axis or out of range")
        return axis - 1

    def concat_make(self, node, xs: list[TensorInfo]):
        axis = self.concat_axis(node, len(xs[0].shape))
        shape = list(xs[0].shape)
        shape[axis] = sum(t.shape[axis] for t in xs)
        return tuple(shape), lambda out: Concat(name=self.layer_name(node), inputs=tuple(xs), output=out, axis=axis)

    def clamp_codes(self, node, x: TensorInfo, lo: int, hi: int, out_name: str):
        """A literal clamp on codes; fused into the producer when that is exact and the producer allows it."""
        producer = next((i for i, l in enumerate(self.layers) if l.output.name == x.name), None)
        if (producer is not None and isinstance(self.layers[producer], CLAMPABLE)
                and self.consumers.get(x.name, 0) == 1 and x.name not in self.graph_outputs):
            layer = self.layers[producer]
            fused = self.build(node, with_clamp, layer, lo, hi)
            fused = replace(fused, output=fused.output.renamed(out_name))
            self.layers[producer] = fused
            self.values[out_name] = _Codes(fused.output)
            return
        out = x.renamed(out_name)
        self.emit(self.build(node, Clamp, name=self.layer_name(node), inputs=(x,), output=out,
                             act_min=max(lo, x.qmin), act_max=min(hi, x.qmax)))

    # -- operators: graph plumbing ----------------------------------------------------------------------

    def op_Constant(self, node):
        from onnx import numpy_helper

        a = {attr.name: attr for attr in node.attribute}
        if "value" not in a:
            self.fail(node, f"only the 'value' form of Constant is supported, got {sorted(a)}")
        self.values[node.output[0]] = _Const(widen_4bit_array(numpy_helper.to_array(a["value"].t)))

    def op_Identity(self, node):
        self.values[node.output[0]] = self.get(node, 0)

    op_Dropout = op_Identity

    def op_QuantizeLinear(self, node):
        src = self.get(node, 0)
        if isinstance(src, _Const):  # a weight computed by the graph (Reshape of an initializer), then quantized
            self.values[node.output[0]] = _Const(self.quantize_const(node, src.value))
            return
        scale, zp, dtype = self.qparams(node, 1, 2, "output")  # refuses per-axis scales of activations
        name = node.output[0]
        if isinstance(src, (_Shuffle, _Permuted)):  # QDQ around a Transpose: the same codes
            self.check_quant(node, src.src, (scale, zp, dtype), "input")
            self.values[name] = (src if isinstance(src, _Shuffle) else self.transposed_input(src, name)
                                 if src.of_input else replace(src, dequant=False))
            return
        self.note_narrow(node, 2, name)
        if isinstance(src, _FloatInput):
            info = self.build(node, TensorInfo, name, src.shape, dtype, scale, zp)
            again = self.requantized_input(src, info)
            if again is not None:  # DedicatedQDQPair: one QuantizeLinear of the input per reader, all alike
                self.values[name] = _Codes(again)
                return
            if name in self.narrow_out:  # 4-bit input codes: quantized in the int8 range, then clamped
                wide = info.renamed(name + "/unclamped")
                self.add_float_input(node, src, wide)
                self.emit(Clamp(name=f"{name}/clamp", inputs=(wide,), output=info, act_min=self.narrow_out[name][0],
                                act_max=self.narrow_out[name][1]))
                return
            self.add_float_input(node, src, info)
            self.values[name] = _Codes(info)
        elif isinstance(src, _PaddedInput):  # the input quantized as the Pad's output, then padded by its zp
            raw = self.build(node, TensorInfo, f"{name}/unpadded", src.src.shape, dtype, scale, zp)
            self.add_float_input(node, src.src, raw)
            shape, make = self.pad_conv(src.node, raw, src.padding, self.pad_mode(src.node))
            info = self.build(node, TensorInfo, name, shape, dtype, scale, zp)
            self.emit(self.build(src.node, make, info))
            self.values[name] = _Codes(info)
        elif isinstance(src, _Pending):
            info = self.build(node, TensorInfo, name, src.shape, dtype, scale, zp)
            self.finish(node, src, info)
            if src.expr is not None:
                self.float_exprs[node.input[0]] = self.bounded_expr(src)
            # another reader of the same float tensor (QOperator ResNet-50: the residual stream feeds the next
            # block's Sum in float) reads it as quantized here: the fabric holds int8 tensors only
            self.values[node.input[0]] = _Dequant(info)
        elif isinstance(src, _Lut):
            info = self.build(node, TensorInfo, name, src.src.shape, dtype, scale, zp)
            self.emit_lut(node, src, info)
            self.values[name] = _Codes(info)
        elif isinstance(src, _Dequant):
            if (src.info.scale, src.info.zero_point, src.info.dtype) == (scale, zp, dtype):
                self.values[name] = _Codes(src.info)
                return
            info = self.build(node, TensorInfo, name, src.info.shape, dtype, scale, zp)  # requantised: a table
            layer = self.requant_table(_FakeNode(node.name or name, "Requantize", name), src.info, info)
            self.emit(layer)
            self.record_table(layer)
            self.values[name] = _Codes(info)
        else:
            self.fail(node, f"input {node.input[0]!r} is already quantized")

    def requantized_input(self, src: _FloatInput, info: TensorInfo) -> TensorInfo | None:
        """The graph input the float input ``src`` was already quantized into when ``info`` quantizes it the
        same way (same steps, shape and quantisation): the same codes. None otherwise."""
        first = next((t for t in self.inputs if t.name == self.float_inputs.get(src.name)), None)
        steps = self.input_steps.get(first.name, ()) if first is not None else ()
        same_steps = len(steps) == len(src.steps) and all(
            a[0] == b[0] and a[2] == b[2] and np.array_equal(a[1], b[1]) for a, b in zip(steps, src.steps))
        if first is None or not same_steps or first.shape != info.shape or not first.same_quant(info):
            return None
        return first

    def add_float_input(self, node, src: _FloatInput, info: TensorInfo) -> None:
        """``info`` becomes the graph input the float input ``src`` is quantized into (with ``src``'s steps)."""
        if src.name in self.float_inputs:
            self.fail(node, f"the float input {src.name!r} is quantized a second time (already into "
                            f"{self.float_inputs[src.name]!r}): allowed one QuantizeLinear of a float graph input")
        self.inputs.append(info)
        self.float_inputs[src.name] = info.name
        if src.steps:
            self.input_steps[info.name] = src.steps

    def input_step(self, node) -> bool:
        """``x op c`` or ``c op x`` (Add, Sub, Mul, Div) of the float graph input ``x`` (after any earlier such
        step) and a float constant ``c`` that broadcasts over it without changing its shape: a step of the
        input's preprocessing (``(x - mean) / std``), which onnxruntime leaves in float and the host applies
        before quantizing the input; or a ``Transpose`` of it that keeps the batch axis (tf2onnx's NHWC -> NCHW
        at the start of a converted TensorFlow model), which the host applies to the user's channels-last data.
        Returns whether ``node`` was one."""
        if node.op_type == "Transpose" and isinstance(self.values.get(node.input[0]), _FloatInput):
            x = self.values[node.input[0]]
            perm = [int(p) for p in self.attrs(node).get("perm", range(len(x.shape), -1, -1))]
            if sorted(perm) != list(range(len(x.shape) + 1)) or perm[0] != 0:
                self.fail(node, f"perm {perm} of the float graph input {x.name!r} (N, "
                                f"{', '.join(map(str, x.shape))}); allowed a permutation that keeps the batch axis 0 "
                                f"first (an NHWC input to NCHW: [0, 3, 1, 2])")
            shape = tuple(x.shape[p - 1] for p in perm[1:])
            self.values[node.output[0]] = _FloatInput(x.name, shape, (*x.steps, ("Transpose", np.array(perm),
                                                                                 False)))
            return True
        if node.op_type not in INPUT_STEP_OPS or len(node.input) != 2:
            return False
        vs = [self.values.get(i) for i in node.input]
        k = next((i for i in (0, 1) if isinstance(vs[i], _FloatInput)), None)
        if k is None or not isinstance(vs[1 - k], _Const):
            return False
        x, c = vs[k], np.asarray(vs[1 - k].value)
        if not np.issubdtype(c.dtype, np.floating):
            return False
        try:
            fits = np.broadcast_shapes((1, *x.shape), c.shape) == (1, *x.shape)
        except ValueError:
            fits = False
        if not fits:
            self.fail(node, f"constant {node.input[1 - k]!r} of shape {c.shape} does not broadcast over the input "
                            f"(N, {', '.join(map(str, x.shape))})")
        self.values[node.output[0]] = _FloatInput(x.name, x.shape, (*x.steps, (node.op_type, c.astype(np.float32),
                                                                                 k == 1)))
        return True

    def quantize_const(self, node, x: np.ndarray) -> np.ndarray:
        """QuantizeLinear of a constant, folded: ``saturate(rint(x / scale) + zp)`` per tensor or along
        ``axis``, float32 division, ties to even (as onnxruntime)."""
        scale = np.asarray(self.const(node, 1, "scale"), np.float32)
        zp_v = self.optional(node, 2)
        zp = np.zeros((), np.uint8) if zp_v is None else np.asarray(self.const(node, 2, "zero point"))
        if zp.dtype not in _DTYPES:
            self.fail(node, f"zero point has dtype {zp.dtype}: int8 or uint8 expected")
        x = np.asarray(x, np.float32)
        shape = [1] * x.ndim
        if scale.size > 1:
            axis = self.attrs(node).get("axis", 1)
            shape[axis + x.ndim if axis < 0 else axis] = scale.size
        q = np.rint(x / scale.reshape(shape if scale.size > 1 else ())) + zp.astype(np.float64).reshape(
            shape if zp.size > 1 else ())
        info = np.iinfo(zp.dtype)
        return np.clip(q, info.min, info.max).astype(zp.dtype)

    def fold(self, node) -> bool:
        """Constant folding: a shape operator (Reshape, Flatten, Squeeze, Unsqueeze, Transpose) whose data is a
        constant gives a constant (weights built by the graph). Returns whether ``node`` was folded."""
        if node.op_type not in _FOLDABLE or not node.input or not isinstance(self.values.get(node.input[0]), _Const):
            return False
        x = np.asarray(self.values[node.input[0]].value)
        a = self.attrs(node)
        if node.op_type == "Reshape":
            target = [int(v) for v in np.asarray(self.const(node, 1, "shape")).ravel()]
            y = x.reshape([x.shape[i] if v == 0 and not a.get("allowzero", 0) else v for i, v in enumerate(target)])
        elif node.op_type == "Flatten":
            axis = a.get("axis", 1) % max(x.ndim, 1)
            y = x.reshape(int(np.prod(x.shape[:axis])), -1)
        elif node.op_type == "Transpose":
            y = np.transpose(x, a.get("perm"))
        else:  # Squeeze / Unsqueeze: axes from the attribute (opset < 13) or the second input
            axes = a.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = [int(v) for v in np.asarray(self.const(node, 1, "axes")).ravel()]
            if node.op_type == "Squeeze":
                y = np.squeeze(x, axis=None if axes is None else tuple(axes))
            else:
                y = x
                for ax in sorted(v + x.ndim + len(axes) if v < 0 else v for v in axes):
                    y = np.expand_dims(y, ax)
        self.values[node.output[0]] = _Const(y)
        return True

    def fold_reference(self, node) -> None:
        """A node of constants only outside :data:`_FOLDABLE` (the shape arithmetic exporters write around a
        ``Shape``: Gather, Concat, Cast, Slice, Mul, ...), evaluated by onnx's reference implementation at the
        model's opsets."""
        import onnx
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        names = [i for i in node.input if i]
        inits = [numpy_helper.from_array(np.asarray(self.values[i].value), i) for i in dict.fromkeys(names)]
        outs = [o for o in node.output if o]
        graph = helper.make_graph([node], "fold", [], [helper.make_empty_tensor_value_info(o) for o in outs], inits)
        model = helper.make_model(graph, opset_imports=list(self.proto.opset_import))
        model.ir_version = min(model.ir_version, onnx.IR_VERSION)
        for o, v in zip(outs, ReferenceEvaluator(model).run(None, {})):
            self.values[o] = _Const(np.asarray(v))

    def op_Shape(self, node):
        """The shape of a tensor as a constant, its batch dimension 1 (a Reshape target resolves the batch as
        one, :meth:`reshape_shape`): ``x.view(x.size(0), -1)`` exported as Shape -> Gather -> Unsqueeze ->
        Concat -> Reshape folds to the target ``[1, -1]``. A Shape reads no data, so it does not count as a
        consumer of its input."""
        v = self.get(node, 0)
        if isinstance(v, _Const):
            shape = tuple(np.asarray(v.value).shape)
        elif isinstance(v, (_FloatInput, _Pending)):
            shape = (1, *v.shape)
        else:
            shape = (1, *self.expr_shape(node, 0))
        a = self.attrs(node)
        self.values[node.output[0]] = _Const(np.array(shape[a.get("start", 0):a.get("end", len(shape))], np.int64))
        self.consumers[node.input[0]] -= 1

    def finish(self, node, p: _Pending, out: TensorInfo):
        """Build a pending QDQ layer with its QuantizeLinear's output, fusing a Relu/Clip clamp."""
        lo = out.qmin if p.lo == -math.inf else int(np.clip(np.rint(np.float32(p.lo) / np.float32(out.scale))
                                                            + out.zero_point, out.qmin, out.qmax))
        hi = out.qmax if p.hi == math.inf else int(np.clip(np.rint(np.float32(p.hi) / np.float32(out.scale))
                                                           + out.zero_point, out.qmin, out.qmax))
        clamped = (lo, hi) != (out.qmin, out.qmax)
        fake = _FakeNode(p.node, p.op, out.name)
        layer = self.build(fake, p.make, out)
        if clamped and isinstance(layer, Lut):  # a table's clamp is a clamp of its output codes
            layer = replace(layer, table=tuple(int(t) for t in np.clip(layer.table, lo, hi)))
        elif clamped and isinstance(layer, CLAMPABLE):
            layer = self.build(fake, with_clamp, layer, lo, hi)
        elif clamped:  # e.g. MaxPool then Relu: exact as a separate clamp of the codes
            pre = out.renamed(out.name + "/unclamped")
            self.emit(self.build(fake, replace, layer, output=pre))
            layer = self.build(fake, Clamp, name=layer.name + "/clamp", inputs=(pre,), output=out,
                               act_min=lo, act_max=hi)
        self.emit(layer)
        if isinstance(layer, Lut):
            self.record_table(layer)

    def op_DequantizeLinear(self, node):
        src = self.get(node, 0)
        if isinstance(src, _Const):
            a = self.attrs(node)
            scale = np.asarray(self.const(node, 1, "scale"))
            zp_v = self.optional(node, 2)
            zp = np.zeros(1, np.int64) if zp_v is None else np.asarray(self.const(node, 2, "zero point"))
            if scale.size > 1 and node.domain in _ONNX_DOMAINS and self.opset < 13:
                self.fail(node, f"per-channel scales ({scale.size}) need opset >= 13 (DequantizeLinear's axis), the "
                                f"model imports opset {self.opset}, which onnxruntime refuses too: quantize at opset "
                                f">= 13, or per tensor")
            axis = a.get("axis", 1) if scale.size > 1 else 0
            axis = axis + src.value.ndim if axis < 0 else axis
            self.values[node.output[0]] = _ConstDequant(src.value, scale, zp, axis)
            return
        if isinstance(src, (_Shuffle, _Permuted)):
            self.check_quant(node, src.src, self.qparams(node, 1, 2, "input"), "input")
            self.values[node.output[0]] = src if isinstance(src, _Shuffle) else replace(src, dequant=True)
            return
        info = self.codes(node, 0)
        self.check_quant(node, info, self.qparams(node, 1, 2, "input"), "input")
        self.values[node.output[0]] = _Dequant(info)

    # -- operators: QOperator form --------------------------------------------------------------------------

    def out_info(self, node, i_scale: int, i_zp: int, shape) -> TensorInfo:
        scale, zp, dtype = self.qparams(node, i_scale, i_zp, "output")
        self.note_narrow(node, i_zp, node.output[0])
        return self.build(node, TensorInfo, node.output[0], tuple(shape), dtype, scale, zp)

    def op_QLinearConv(self, node):
        x = self.codes(node, 0)
        self.check_quant(node, x, self.qparams(node, 1, 2, "input"), "input")
        wq = self.const(node, 3, "weight")
        w, wz = self.weights(node, wq, self.const(node, 5, "weight zero point"), axis=0)
        shape, make = self.conv(node, x, w, self.const(node, 4, "weight scale"), self.optional(node, 8), wz)
        self.emit(self.build(node, make, self.out_info(node, 6, 7, shape)))

    def op_QLinearMatMul(self, node):
        x, cols = self.flat_input(node, 0, False)
        self.check_quant(node, x, self.qparams(node, 1, 2, "input"), "input")
        b = self.const(node, 3, "B")
        if b.ndim != 2:
            self.fail(node, f"B must be a 2-D constant (K, N), has shape {b.shape}")
        w, wz = self.weights(node, b, self.const(node, 5, "B zero point"), axis=1)
        shape, make = self.dense(node, x, w.T, self.const(node, 4, "B scale"), None, wz, cols=cols)
        self.emit(self.build(node, make, self.out_info(node, 6, 7, shape)))

    def op_QGemm(self, node):
        a = self.attrs(node)
        alpha, _ = self.gemm_scales(node, beta=False)  # QGemm has no beta: its C is scaled already
        if len(node.input) < 9 or not node.input[7]:
            self.fail(node, "QGemm without output quantisation (float output) is not supported")
        x, cols = self.flat_input(node, 0, False)
        self.check_quant(node, x, self.qparams(node, 1, 2, "input"), "input")
        b = self.const(node, 3, "B")
        trans = a.get("transB", 0)
        w, wz = self.weights(node, b, self.const(node, 5, "B zero point"), axis=0 if trans else 1)
        w = w if trans else w.T
        ws = np.asarray(self.const(node, 4, "B scale"), np.float64) * alpha
        shape, make = self.dense(node, x, w, ws, self.optional(node, 6), wz, cols=cols)
        self.emit(self.build(node, make, self.out_info(node, 7, 8, shape)))

    def qlinear_const(self, node, i: int) -> np.ndarray | None:
        """The real values of a QLinear binary operator's constant input ``i`` (codes with their scale and zero
        point, dequantized in float32 as onnxruntime does), or None when it is a computed tensor."""
        v = self.get(node, i)
        if not isinstance(v, _Const):
            return None
        q = np.asarray(v.value)
        if q.dtype not in _DTYPES:
            self.fail(node, f"constant input {node.input[i]!r} has dtype {q.dtype}: int8 or uint8 codes expected")
        scale = np.asarray(self.const(node, i + 1, "constant scale"), np.float32)
        zp = np.asarray(self.const(node, i + 2, "constant zero point")).astype(np.int32)
        if scale.size != 1 or zp.size != 1:
            self.fail(node, "constant input: per-tensor scale and zero point expected")
        return ((q.astype(np.int32) - zp.ravel()[0]).astype(np.float32) * scale.ravel()[0]).astype(np.float64)

    def qlinear_affine(self, node, binary: str):
        """QLinearMul / QLinearAdd of codes and a per-channel constant (DenseNet-121's BatchNormalization
        decomposed into a product and a sum): the per-channel affine on codes."""
        k = next(i for i in (0, 3) if isinstance(self.get(node, i), _Const))
        x = self.codes(node, 3 - k)
        self.check_quant(node, x, self.qparams(node, 4 - k, 5 - k, "input"), "input")
        value = self.channel_const(node, k, x, self.qlinear_const(node, k))
        mult, shift = (value, np.zeros_like(value)) if binary == "mul" else (np.ones_like(value), value)
        p = self.affine(node, x, mult, shift)
        self.emit(self.build(node, p.make, self.out_info(node, 6, 7, x.shape)))

    def qlinear_table(self, node) -> bool:
        """QLinearMul / QLinearAdd of two functions of the same tensor's codes (QOperator ``x * Sigmoid(x)``), or of
        one and a scalar constant (``x + 3``): the node itself evaluated by onnxruntime over the 256 codes of that
        tensor, a :class:`~cimforge.golden.ir.Lut` layer. Returns whether it applied."""
        vs = [self.get(node, i) for i in (0, 3)]
        scalar = [isinstance(v, _Const) and np.asarray(v.value).size == 1 for v in vs]
        if not all(isinstance(v, _Codes) or sc for v, sc in zip(vs, scalar)) or all(scalar):
            return False
        roots = [self.lut_of.get(v.info.name, (v.info, np.arange(256))) for v in vs if isinstance(v, _Codes)]
        if any(r[0].name != roots[0][0].name for r in roots):
            return False
        root = roots[0][0]
        for i, v in zip((0, 3), vs):
            if isinstance(v, _Codes):
                self.check_quant(node, v.info, self.qparams(node, i + 1, i + 2, "input"), "input")
        out = self.out_info(node, 6, 7, root.shape)
        operands = [np.asarray(self.const(node, i, "quantisation")) if node.input[i] and i not in (0, 3) else None
                    for i in range(len(node.input))]
        for i, v in zip((0, 3), vs):
            if isinstance(v, _Const):  # a quantized scalar operand (x + 3 of a decomposed HardSwish)
                operands[i] = np.asarray(v.value).reshape(())
                continue
            table = self.lut_of.get(v.info.name, (root, None))[1]
            operands[i] = np.asarray(_lut.code_bytes(root)[np.asarray(table) & 0xFF] if table is not None
                                     else _lut.code_bytes(root), v.info.np_dtype)
        functions = {i for i, v in zip((0, 3), vs) if isinstance(v, _Codes)}
        per_channel = any(np.ndim(operands[i]) == 2 for i in functions)  # an operand of per-channel tables
        channels = (root.shape[0], len(root.shape) + 1) if per_channel else None
        try:
            table = _lut.evaluate(node, operands, self.opset, {_MS: 1}, out.np_dtype, functions=functions,
                                  channels=channels).astype(np.int64)
        except Exception as e:  # noqa: BLE001
            self.fail(node, f"cannot be evaluated on the 256 codes of {root.name!r}: {str(e).splitlines()[0][:200]}")
        self.emit_qlinear_lut(node, root, out, table)
        return True

    def op_QLinearMul(self, node):
        if self.qlinear_table(node):
            return
        if any(isinstance(self.get(node, i), _Const) for i in (0, 3)):
            self.qlinear_affine(node, "mul")
            return
        xs = self.product_operands(node, self.qlinear_operands(node))
        out = self.out_info(node, 6, 7, xs[0].shape)
        self.emit(self.build(node, Mul, name=self.layer_name(node), inputs=xs, output=out))

    def qlinear_operands(self, node) -> list[TensorInfo]:
        """The two computed inputs of a QLinear binary operator (inputs 0 and 3), each checked against its
        scale and zero point."""
        xs = []
        for i in (0, 3):
            x = self.codes(node, i)
            self.check_quant(node, x, self.qparams(node, i + 1, i + 2, "input"), "input")
            xs.append(x)
        return xs

    def product_operands(self, node, xs: list[TensorInfo], what: str = "product") -> tuple[TensorInfo, TensorInfo]:
        """The inputs of a product (or an add) of two computed tensors in the :class:`~cimforge.golden.ir.Mul`
        order: equal shapes, or the one value per channel ``(C, 1, 1)`` second."""
        a, b = xs
        if len(b.shape) == 3 and a.shape == (b.shape[0], 1, 1) and b.shape != a.shape:
            a, b = b, a
        if b.shape != a.shape and not (len(a.shape) == 3 and b.shape == (a.shape[0], 1, 1)):
            sign = {"product": "*", "add": "+"}.get(what, "-")
            self.fail(node, f"broadcasting {what} {xs[0].shape} {sign} {xs[1].shape}: allowed equal shapes, or one "
                            f"(C, H, W) and one value per channel (C, 1, 1)")
        return a, b

    def product_range(self, xs) -> tuple[float, float]:
        """The real range of a product of ``xs``."""
        (a0, a1), (b0, b1) = (self.info_range(t) for t in xs)
        ends = [a0 * b0, a0 * b1, a1 * b0, a1 * b1]
        return min(ends), max(ends)

    def op_QLinearAdd(self, node):
        if self.qlinear_table(node):
            return
        if any(isinstance(self.get(node, i), _Const) for i in (0, 3)):
            self.qlinear_affine(node, "add")
            return
        xs = self.product_operands(node, self.qlinear_operands(node), "add")
        out = self.out_info(node, 6, 7, xs[0].shape)
        self.emit(self.build(node, Add, name=self.layer_name(node), inputs=tuple(xs), output=out))

    def _qlinear_pool(self, node, kind: str):
        x = self.codes(node, 0)
        self.check_quant(node, x, self.qparams(node, 1, 2, "input"), "input")
        if self.attrs(node).get("channels_last", 0):
            self.fail(node, "channels_last=1 is not supported")
        shape, make = self.pool(node, x, kind, round_even=True)  # its float pool quantizes ties to even
        self.emit(self.build(node, make, self.out_info(node, 3, 4, shape)))

    def op_QLinearGlobalAveragePool(self, node):
        self._qlinear_pool(node, "global")

    def op_QLinearAveragePool(self, node):
        self._qlinear_pool(node, "avg")

    def op_QLinearConcat(self, node):
        xs = []
        for i in range(2, len(node.input), 3):
            x = self.codes(node, i)
            self.check_quant(node, x, self.qparams(node, i + 1, i + 2, "input"), "input")
            xs.append(x)
        shape, make = self.concat_make(node, xs)
        self.emit(self.build(node, make, self.out_info(node, 0, 1, shape)))

    # -- operators: on codes (QOperator) or on dequantized tensors (QDQ) --------------------------------------

    def _float_or_codes(self, node, make_float, make_codes, monotonic: bool = False):
        """``make_codes(info)`` on codes, else a pending float layer; a ``monotonic`` operator (MaxPool, Reshape)
        may also follow another float operator directly (:meth:`after_float`)."""
        v = self.get(node, 0)
        if isinstance(v, _Codes):
            make_codes(v.info)
        elif isinstance(v, _Pending) and monotonic and self.shared(node) and self.exact_codes(v):
            # another reader quantizes this float result differently: read the codes that hold it exactly
            x = self.quantized_input(node, 0)
            shape, make = make_float(x)
            self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)
        elif isinstance(v, _Pending) and monotonic and (v.float_only or node.op_type in _RESHAPES):
            # a reshape is exact after any float result (a ReduceMean -> Flatten, which onnxruntime quantizes
            # after the Flatten); a max only after the operators onnxruntime leaves in float
            self.values[node.output[0]] = self.after_float(node, v, make_float)
        elif isinstance(v, _Lut) and monotonic:
            self.values[node.output[0]] = self.after_table(node, v, make_float)
        else:
            x = self.dequant(node, 0)
            shape, make = make_float(x)
            self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)

    def after_float(self, node, p: _Pending, make_float) -> _Pending:
        """An operator that commutes with quantisation (a max or a reshape: quantisation is monotonic and element
        by element) applied to the float result ``p`` of another operator, as onnxruntime leaves e.g. LRN ->
        MaxPool: ``p``'s layer is quantized like this operator's output, then this operator runs on the codes.
        ``Q(max(y)) = max(Q(y))``, so this is exact."""
        return self.quantized_like_output(
            node, p.shape, lambda pre: self.finish(_FakeNode(p.node, p.op, pre.name), p, pre), make_float,
            self.clamped_range(p), reshaped=p if node.op_type in ("Reshape", "Flatten") else None)

    def after_table(self, node, v: _Lut, make_float) -> _Pending:
        """An operator that commutes with quantisation applied to an element-wise table's float result ``v`` (a
        Tanh, HardSwish or PRelu that onnxruntime leaves in float, then a MaxPool): the table is quantized like
        this operator's output, then the operator runs on the codes, exact as in :meth:`after_float`."""
        return self.quantized_like_output(node, v.src.shape, lambda pre: self.emit_lut(node, v, pre), make_float,
                                          _table_range(v.src, v.vals))

    def shared(self, node) -> bool:
        """Whether ``node``'s first input has readers besides ``node`` (or is a graph output)."""
        return self.consumers.get(node.input[0], 0) != 1 or node.input[0] in self.graph_outputs

    def exact_codes(self, v: _Pending) -> bool:
        """Whether the float result ``v`` is a selection of a quantized tensor's values, clamped (if at all) at
        values its codes hold: that tensor's codes then hold ``v`` exactly (:meth:`quantized_input`)."""
        return v.codes_of is not None and self.on_codes(v.lo, v.codes_of) and self.on_codes(v.hi, v.codes_of)

    def exact_copy(self, name: str, v: _Pending) -> TensorInfo:
        """The layer of :meth:`exact_codes` result ``v`` emitted into ``<name>/quantized``, in the quantisation
        of the tensor it selects from."""
        info = v.codes_of.renamed(f"{name}/quantized", v.shape)
        self.finish(_FakeNode(v.node, v.op, info.name), v, info)
        return info

    def quantized_like_output(self, node, shape_in, quantize, make_float, real_range, reshaped=None) -> _Pending:
        """The pending layer of a commuting operator whose float input (of per-sample shape ``shape_in``) is
        quantized like its output: ``quantize(pre)`` emits the layer that writes that input ``pre``, then
        ``make_float(pre)`` makes the operator's own layer on the codes."""
        if self.shared(node):
            self.fail(node, f"the float tensor {node.input[0]!r} has other consumers: cannot quantize it for this one")
        shape, _ = make_float(TensorInfo(node.input[0], shape_in, "int8", 1.0, 0))  # the shape only

        def make(out: TensorInfo) -> Layer:
            pre = out.renamed(f"{out.name}/{node.op_type}_input", shape_in)
            quantize(pre)
            return make_float(pre)[1](out)
        return _Pending(node.name or node.output[0], node.op_type, shape, make, reshaped=reshaped, float_only=True,
                        real_range=real_range)

    @staticmethod
    def clamped_range(p: _Pending) -> tuple[float, float] | None:
        """``p``'s real range narrowed by its fused Relu / Clip bounds."""
        if p.real_range is None:
            return None
        return max(p.real_range[0], p.lo), min(p.real_range[1], p.hi)

    def quantized_input(self, node, i: int, what: str = "input") -> TensorInfo:
        """Input ``i`` of an operator that does not commute with quantisation (an add, an average) as a quantized
        tensor: a dequantized tensor's codes, or the float result of another operator that onnxruntime never
        quantizes (QOperator ``BatchNormalization -> Sum``, QDQ ``Sum -> Relu -> AveragePool``), quantized into a
        tensor ``<name>/quantized`` of the model's activation dtype whose range covers every value its inputs'
        codes can give (the fabric holds 8-bit tensors only). That extra rounding is the one inexact step of the import (docs/operators.md)."""
        v = self.get(node, i, what)
        if isinstance(v, _Lut):
            return self.lut_quantized(node, i)
        if not isinstance(v, _Pending):
            return self.dequant(node, i, what)
        if self.exact_codes(v):  # a selection of codes, clamped (if at all) at values the codes hold: exact
            info = self.exact_copy(node.input[i], v)
            self.values[node.input[i]] = _Dequant(info)
            return info
        rng = self.clamped_range(v)
        if rng is None:
            self.fail(node, f"{what} {node.input[i]!r} is the float output of node {v.node!r} ({v.op}) with no "
                            f"QuantizeLinear in between, and its range is unknown: only quantized tensors, or the "
                            f"float results of BatchNormalization, Sum, Add, Mul, Relu may pass between layers")
        info = self.range_quant(node, f"{node.input[i]}/quantized", v.shape, *rng, self.activation_dtype)
        self.finish(_FakeNode(v.node, v.op, info.name), v, info)
        self.values[node.input[i]] = _Dequant(info)  # one quantized copy for every reader
        return info

    @staticmethod
    def on_codes(bound: float, x: TensorInfo) -> bool:
        """Whether a clamp at real ``bound`` (infinite: none) is a clamp of ``x``'s codes with the same values:
        ``bound`` is a whole number of ``x``'s steps from its zero point, in float32 as onnxruntime dequantizes."""
        if math.isinf(bound):
            return True
        k = np.rint(np.float32(bound) / np.float32(x.scale))
        return bool(np.float32(k) * np.float32(x.scale) == np.float32(bound)) and x.qmin <= k + x.zero_point <= x.qmax

    @property
    def activation_dtype(self) -> str:
        """The dtype of the model's quantized activations (its first quantized input's), for the tensors the
        importer adds: an add or a max of one of them and a tensor of the model must see one dtype."""
        return self.inputs[0].dtype if self.inputs else "int8"

    def range_quant(self, node, name: str, shape, lo: float, hi: float, dtype: str) -> TensorInfo:
        """The quantisation onnxruntime's calibration would give a ``dtype`` tensor whose values span ``lo ..
        hi``: the range widened to include 0, ``scale = (hi - lo) / (qmax - qmin)`` (float32), ``zp = rint(qmin -
        lo / scale)``."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        qmin, qmax = (-128, 127) if dtype == "int8" else (0, 255)
        scale = float(np.float32((hi - lo) / (qmax - qmin))) if hi > lo else 1.0
        zp = int(np.clip(np.rint(qmin - lo / scale), qmin, qmax))
        return self.build(node, TensorInfo, name, tuple(shape), dtype, scale, zp)

    @staticmethod
    def info_range(x: TensorInfo) -> tuple[float, float]:
        """The real values the codes of ``x`` can stand for."""
        return x.scale * (x.qmin - x.zero_point), x.scale * (x.qmax - x.zero_point)

    # -- float chains in numerics "onnx" ------------------------------------------------------------------

    @staticmethod
    def bounded_expr(p: _Pending) -> tuple:
        """``p``'s float expression with its fused Relu / Clip bounds applied."""
        if (p.lo, p.hi) == (-math.inf, math.inf):
            return p.expr
        return ("clip", p.expr, p.lo, p.hi)

    def chained(self, node, indices) -> bool:
        """True in ``numerics="onnx"`` when an input among ``indices`` is a float value onnxruntime never
        quantized (a pending float result, or a float tensor read again after its QuantizeLinear)."""
        if self.numerics != "onnx":
            return False
        for i in indices:
            v = self.get(node, i)
            if isinstance(v, (_Pending, _Lut)) or (isinstance(v, _Dequant) and node.input[i] in self.float_exprs):
                return True
        return False

    def float_expr(self, node, i: int) -> tuple:
        """The float32 expression of input ``i``: a quantized tensor's ``("dq", info)``, a pending result's own
        expression (with its Relu bounds), the recorded expression of a float tensor read again."""
        v = self.get(node, i)
        if isinstance(v, _Lut):
            return ("table", v.src, v.vals)
        if isinstance(v, _Pending) and v.expr is not None:
            return self.bounded_expr(v)
        if isinstance(v, _Dequant) and node.input[i] in self.float_exprs:
            return self.float_exprs[node.input[i]]
        return ("dq", self.quantized_input(node, i))

    def chain(self, node, expr: tuple, shape) -> _Pending:
        """A pending :class:`~cimforge.golden.ir.FloatChain` computing ``expr``."""
        def make(out: TensorInfo) -> Layer:
            inputs: dict[str, TensorInfo] = {}

            def index(e):
                if e[0] in ("dq", "table"):
                    inputs.setdefault(e[1].name, e[1])
                    return (e[0], list(inputs).index(e[1].name), *e[2:])
                if e[0] == "sum":
                    return ("sum", tuple(index(c) for c in e[1]))
                return (e[0], index(e[1]), *e[2:])
            indexed = index(expr)
            return FloatChain(name=self.layer_name(node), inputs=tuple(inputs.values()), output=out, expr=indexed)
        return _Pending(node.name or node.output[0], node.op_type, tuple(shape), make, float_only=True, expr=expr,
                        real_range=self.expr_range(expr))

    def expr_range(self, e: tuple) -> tuple[float, float] | None:
        """The real values a float chain's expression can take, from its leaves' code ranges (None when unknown),
        for a reader that quantizes it (:meth:`quantized_input`)."""
        kind = e[0]
        if kind == "dq":
            return self.info_range(e[1])
        if kind == "table":
            return _table_range(e[1], e[2])
        if kind == "sum":
            parts = [self.expr_range(c) for c in e[1]]
            return None if None in parts else (sum(p[0] for p in parts), sum(p[1] for p in parts))
        inner = self.expr_range(e[1])
        if inner is None:
            return None
        if kind == "affine":
            ends = np.stack([e[2] * inner[0] + e[3], e[2] * inner[1] + e[3]]).astype(np.float64)
            return float(ends.min()), float(ends.max())
        if kind == "clip":
            return max(inner[0], e[2]), min(inner[1], e[3])
        if kind == "pool":  # an average or a max of values in the range
            return inner
        return None

    def chain_affine(self, node, i: int, mult: np.ndarray, shift: np.ndarray) -> _Pending:
        """``x * mult + shift`` per channel in float32 (a BatchNormalization, a Mul or Add by a constant)."""
        f32 = np.float32
        x = self.float_expr(node, i)
        return self.chain(node, ("affine", x, np.asarray(mult, f32), np.asarray(shift, f32)), self.expr_shape(node, i))

    def expr_shape(self, node, i: int) -> tuple[int, ...]:
        v = self.get(node, i)
        if isinstance(v, _Lut):
            return v.src.shape
        if isinstance(v, _Pending):
            return v.shape
        # a tensor with codes; anything else (the float graph input a node left in float reads) is refused by
        # quantized_input with what the node is and how to quantize it
        return v.info.shape if isinstance(v, (_Codes, _Dequant)) else self.quantized_input(node, i).shape

    def op_MaxPool(self, node):
        def on_codes(x):
            shape, make = self.pool(node, x, "max")
            self.emit(self.build(node, make, x.renamed(node.output[0], shape)))
        self._float_or_codes(node, lambda x: self.pool(node, x, "max"), on_codes, monotonic=True)

    def pad_mode(self, node) -> str:
        """A Pad's mode: ``constant`` (by real zero), ``reflect`` or ``edge`` (copies of codes)."""
        mode = self.attrs(node).get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in _PAD_MODES:
            self.fail(node, f"mode {mode!r} is not supported (allowed {', '.join(map(repr, _PAD_MODES))})")
        return mode

    def pad_amounts(self, node, rank: int, codes: TensorInfo | None) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of a Pad of a ``(C, H, W)`` tensor: only the two spatial axes,
        non-negative; a constant Pad's value is 0.0 on a float tensor, the zero point on ``codes``."""
        a = self.attrs(node)
        mode = self.pad_mode(node)
        if rank != 3:
            self.fail(node, f"only a Pad of an (N, C, H, W) tensor is supported, per-sample rank {rank}")
        pads = a.get("pads")
        if pads is None:
            pads = [int(v) for v in np.asarray(self.const(node, 1, "pads")).ravel()]
        pads = list(pads)
        if len(node.input) > 3 and node.input[3]:
            axes = [int(v) % 4 for v in np.asarray(self.const(node, 3, "axes")).ravel()]
            full = [0] * 8
            for i, ax in enumerate(axes):
                full[ax], full[4 + ax] = pads[i], pads[len(axes) + i]
            pads = full
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            self.fail(node, f"pads {pads}: allowed non-negative padding of the two spatial axes only "
                            f"([0, 0, top, left, 0, 0, bottom, right])")
        if mode != "constant":
            return pads[2], pads[3], pads[6], pads[7]
        value = self.optional(node, 2) if len(node.input) > 2 else None
        value = a.get("value", 0.0) if value is None else value  # opset < 11: an attribute
        if isinstance(value, _Const):
            value = np.asarray(value.value).ravel()[0].item()
        elif not isinstance(value, (int, float)):
            self.fail(node, f"constant_value {node.input[2]!r} must be a constant")
        zero = codes.zero_point if codes is not None else 0.0
        if value != zero:
            self.fail(node, f"constant_value {value}: allowed {zero} (padding by real zero"
                            f"{', the input zero point' if codes is not None else ''})")
        return pads[2], pads[3], pads[6], pads[7]

    def pad_conv(self, node, x: TensorInfo, padding: tuple[int, int, int, int], mode: str = "constant"):
        """Shape and maker of a Pad by real zero as a depthwise 1x1 convolution of weight 1 and scale 1 with the
        Pad's padding: a padded tap reads the zero point, the others are copied (multiplier exactly 1.0 when the
        quantisation stays, as the channel shuffle's, docs/operators.md; else a requantising copy). A
        ``reflect`` or ``edge`` Pad is a gather of rows and columns instead (a
        :class:`~cimforge.golden.ir.Resize` whose maps repeat the mirrored or the border rows and columns):
        copies of codes, which commute with quantisation."""
        c, h, w = x.shape
        if mode != "constant":
            t, l, b, r = padding
            if mode == "reflect" and (max(t, b) >= h or max(l, r) >= w):
                self.fail(node, f"reflect pads {list(padding)} (top, left, bottom, right) of a {h}x{w} plane: "
                                f"allowed pads smaller than the plane's side they mirror")
            rows = tuple(int(v) for v in np.pad(np.arange(h), (t, b), mode=mode))
            cols = tuple(int(v) for v in np.pad(np.arange(w), (l, r), mode=mode))
            return (c, len(rows), len(cols)), lambda out: Resize(name=self.layer_name(node), inputs=(x,),
                                                                 output=out, rows=rows, cols=cols)
        weight = np.ones((c, 1, 1, 1), np.int8)
        shape = (c, h + padding[0] + padding[2], w + padding[1] + padding[3])
        return shape, lambda out: Conv2d(name=self.layer_name(node), inputs=(x,), output=out, weight=weight,
                                         weight_scale=1.0, padding=padding, groups=c)

    def op_Pad(self, node):
        v = self.get(node, 0)
        if isinstance(v, _FloatInput):
            self.values[node.output[0]] = _PaddedInput(v, self.pad_amounts(node, len(v.shape), None), node)
            return

        def make_float(x):
            return self.pad_conv(node, x, self.pad_amounts(node, len(x.shape), None), self.pad_mode(node))

        def on_codes(x):
            shape, make = self.pad_conv(node, x, self.pad_amounts(node, len(x.shape), x), self.pad_mode(node))
            self.emit(self.build(node, make, x.renamed(node.output[0], shape)))
        self._float_or_codes(node, make_float, on_codes, monotonic=True)

    def resize_maps(self, node, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The source row of every output row and the source column of every output column of a nearest
        ``Resize`` of a ``(C, H, W)`` tensor, as onnxruntime's kernel picks them: the node itself
        (its attributes and constant inputs, the batch and channel axes kept at 1) runs on a ``(1, 1, H, W)``
        tensor of pixel indices."""
        a = self.attrs(node)
        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "nearest":
            self.fail(node, f"mode {mode!r} is not supported (allowed 'nearest': a copy of codes; a {mode} "
                            f"resize interpolates between them)")
        ctm = a.get("coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        if ctm == "tf_crop_and_resize":
            self.fail(node, "coordinate_transformation_mode 'tf_crop_and_resize' is not supported (allowed "
                            "half_pixel, asymmetric, align_corners, pytorch_half_pixel, half_pixel_symmetric)")
        if len(shape) != 3:
            self.fail(node, f"only a resize of an (N, C, H, W) tensor is supported, per-sample rank {len(shape)}")
        c, h, w = shape
        if h * w >= 1 << 24:
            self.fail(node, f"a {h}x{w} plane: allowed fewer than 2**24 pixels")
        operands, names = {}, []
        for i in range(1, len(node.input)):
            if not node.input[i]:
                names.append("")
                continue
            what = {1: "roi" if self.opset >= 11 else "scales", 2: "scales", 3: "sizes"}[i]
            v = np.asarray(self.const(node, i, what))
            if what in ("scales", "sizes") and "axes" not in a:
                if v.size == 4 and what == "scales" and (v[0] != 1 or v[1] != 1):
                    self.fail(node, f"scales {v.tolist()}: allowed 1 on the batch and channel axes")
                if v.size == 4 and what == "sizes":
                    if v[1] != c:
                        self.fail(node, f"sizes {v.tolist()}: allowed the input's {c} channels on axis 1")
                    if a.get("keep_aspect_ratio_policy", b"stretch") not in (b"stretch", "stretch"):
                        self.fail(node, "keep_aspect_ratio_policy other than 'stretch' needs the axes attribute "
                                        "(2, 3): allowed 'stretch'")
                    v = np.asarray([1, 1, v[2], v[3]], v.dtype)
            operands[f"in{i}"] = v
            names.append(f"in{i}")
        if "axes" in a and any(int(x) % 4 < 2 for x in a["axes"]):
            self.fail(node, f"axes {list(a['axes'])}: allowed the spatial axes 2 and 3")
        from onnx import helper

        n = helper.make_node(node.op_type, ["x", *names], ["y"])
        n.attribute.extend(node.attribute)
        index = np.arange(h * w, dtype=np.float32).reshape(1, 1, h, w)
        try:
            y = _lut.run_nodes([n], {"x": index}, operands, "y", self.opset)
        except Exception as e:  # noqa: BLE001 - onnxruntime's message names what it refused
            self.fail(node, f"onnxruntime cannot evaluate the resize: {str(e).splitlines()[0][:200]}")
        if y.ndim != 4 or y.shape[:2] != (1, 1) or 0 in y.shape:
            self.fail(node, f"the resize's output shape {y.shape[2:]} is not a plane of the input's channels")
        idx = y[0, 0].astype(np.int64)
        rows, cols = idx[:, 0] // w, idx[0, :] % w
        if not (idx == rows[:, None] * w + cols[None, :]).all():
            self.fail(node, "the resize does not pick one source row per output row and one source column per "
                            "output column")
        return tuple(int(r) for r in rows), tuple(int(v) for v in cols)

    def op_Resize(self, node):
        """``Resize`` in mode ``nearest``: a :class:`~cimforge.golden.ir.Resize`, a copy of
        codes, on codes (QOperator) or between a DequantizeLinear and a QuantizeLinear (QDQ); it commutes with
        quantisation, so it may follow another float operator directly."""
        def make_float(x):
            rows, cols = self.resize_maps(node, x.shape)
            shape = (x.shape[0], len(rows), len(cols))
            return shape, lambda out: Resize(name=self.layer_name(node), inputs=(x,), output=out, rows=rows,
                                             cols=cols)

        def on_codes(x):
            shape, make = make_float(x)
            self.emit(self.build(node, make, x.renamed(node.output[0], shape)))
        self._float_or_codes(node, make_float, on_codes, monotonic=True)

    def op_GlobalMaxPool(self, node):
        """A max over the whole plane: a :class:`~cimforge.golden.ir.MaxPool` whose window is the input. On
        codes, or (onnxruntime does not quantize it) on a dequantized tensor up to the next QuantizeLinear, which
        a Flatten or Reshape may precede."""
        v = self.get(node, 0)
        if isinstance(v, _Codes):
            shape, make = self.pool(node, v.info, "global_max")
            self.emit(self.build(node, make, v.info.renamed(node.output[0], shape)))
            return
        alone = self.consumers.get(node.input[0], 0) == 1 and node.input[0] not in self.graph_outputs
        if isinstance(v, _Lut):  # a max commutes with the table's quantisation: exact
            self.values[node.output[0]] = self.after_table(node, v, lambda x: self.pool(node, x, "global_max"))
            return
        if isinstance(v, _Pending) and v.float_only and alone:  # and with a float result's: exact too
            self.values[node.output[0]] = self.after_float(node, v, lambda x: self.pool(node, x, "global_max"))
            return
        x = self.quantized_input(node, 0)
        shape, make = self.pool(node, x, "global_max")
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make,
                                               float_only=True, real_range=self.info_range(x))

    def reduce_axes(self, node, rank: int) -> tuple[int, ...]:
        """The axes of a ``Reduce*`` node (its ``axes`` attribute, or from opset 18 its constant second
        input), non-negative and sorted; none given means every axis."""
        a = self.attrs(node)
        if "axes" in a:
            axes = list(a["axes"])
        elif len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in np.asarray(self.const(node, 1, "axes")).reshape(-1)]
        else:
            axes = []
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                self.fail(node, "noop_with_empty_axes=1 with no axes (an identity) is not supported; allowed "
                                "axes [2, 3]")
            axes = list(range(rank))
        if any(not -rank <= ax < rank for ax in axes):
            self.fail(node, f"axes {axes} out of range for a rank-{rank} input")
        return tuple(sorted({ax % rank for ax in axes}))

    def _spatial_reduce(self, node, pool_op: str):
        """``ReduceMean`` / ``ReduceMax`` over the spatial axes of an ``(N, C, H, W)`` tensor: the global pool
        ``pool_op`` (PyTorch's ``x.mean((2, 3))`` and Keras' GlobalAveragePooling export this way); with
        ``keepdims=0`` its ``(C, 1, 1)`` result is then flattened to ``(C,)``, as a Flatten would."""
        from onnx import helper

        shape = self.expr_shape(node, 0)
        axes = self.reduce_axes(node, 1 + len(shape))
        if len(shape) != 3 or axes != (2, 3):
            self.fail(node, f"{node.op_type} over axes {list(axes)} of a rank-{1 + len(shape)} tensor is not "
                            f"supported; allowed axes [2, 3] (height and width) of an (N, C, H, W) tensor, a "
                            f"global pool")
        keep = self.attrs(node).get("keepdims", 1)
        if keep not in (0, 1):
            self.fail(node, f"keepdims={keep}: allowed 0 or 1")
        name = node.name or node.output[0]
        if keep:
            getattr(self, f"op_{pool_op}")(helper.make_node(pool_op, [node.input[0]], list(node.output), name=name))
            return
        mid = f"{node.output[0]}/keepdims"
        getattr(self, f"op_{pool_op}")(helper.make_node(pool_op, [node.input[0]], [mid], name=name))
        v = self.values.pop(mid)
        if isinstance(v, _Codes):  # a max pool of codes
            self.emit(self.build(node, Reshape, name=f"{name}/squeeze", inputs=(v.info,),
                                 output=v.info.renamed(node.output[0], shape[:1])))
            return

        def make(out: TensorInfo, p=v) -> Layer:  # the pool quantized like the squeezed output, then a reshape
            pre = out.renamed(mid, p.shape)
            self.finish(_FakeNode(p.node, p.op, pre.name), p, pre)
            return Reshape(name=f"{name}/squeeze", inputs=(pre,), output=out)
        self.values[node.output[0]] = _Pending(name, node.op_type, shape[:1], make, float_only=v.float_only,
                                               real_range=self.clamped_range(v))

    def op_ReduceMean(self, node):
        self._spatial_reduce(node, "GlobalAveragePool")

    def op_ReduceMax(self, node):
        self._spatial_reduce(node, "GlobalMaxPool")

    def op_Reshape(self, node):
        v = self.get(node, 0)
        if isinstance(v, _Permuted):
            self.values[node.output[0]] = replace(v, shape=self.reshape_shape(node, replace(v.src, shape=v.shape)))
            return
        if isinstance(v, _Shuffle):
            target = self.reshape_shape(node, replace(v.src, shape=v.shape))
            if target != v.src.shape:
                self.fail(node, f"a channel shuffle must be reshaped back to {v.src.shape}, not {target}")
            shape, make = self.shuffle_conv(node, v)
            if v.pending is not None:  # the float result is quantized like the shuffle's output: exact
                def make(out: TensorInfo, sh=v) -> Layer:
                    pre = out.renamed(f"{out.name}/shuffle_input", sh.src.shape)
                    self.finish(_FakeNode(sh.pending.node, sh.pending.op, pre.name), sh.pending, pre)
                    return self.shuffle_conv(node, replace(sh, src=pre))[1](out)
                self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)
            elif v.dequant:
                self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)
            else:
                self.emit(self.build(node, make, v.src.renamed(node.output[0], shape)))
            return

        def make_float(x):
            return self.reshape_shape(node, x), lambda out: self.reshape_requant(node, x, out)

        def on_codes(x):
            out = x.renamed(node.output[0], self.reshape_shape(node, x))
            self.emit(self.build(node, Reshape, name=self.layer_name(node), inputs=(x,), output=out))
        self._float_or_codes(node, make_float, on_codes, monotonic=True)

    op_Flatten = op_Reshape
    op_Squeeze = op_Reshape
    op_Unsqueeze = op_Reshape

    def reshape_requant(self, node, x: TensorInfo, out: TensorInfo) -> Layer:
        """A QDQ Reshape; when its QuantizeLinear changes the quantisation (Inception-v1's classifier), the
        reshape keeps the input's and a one-input :class:`~cimforge.golden.ir.Concat` requantises the codes
        (``s_in / s_out``, as a requantising copy does)."""
        name = self.layer_name(node)
        if x.same_quant(out):
            return Reshape(name=name, inputs=(x,), output=out)
        mid = x.renamed(f"{out.name}/reshaped", out.shape)
        self.emit(self.build(node, Reshape, name=name, inputs=(x,), output=mid))
        return Concat(name=f"{name}/requant", inputs=(mid,), output=out, axis=0)

    def clip_bounds(self, node) -> tuple[float | None, float | None]:
        if node.op_type == "Relu":
            return 0, None
        a = self.attrs(node)
        if "min" in a or "max" in a:  # opset < 11
            return a.get("min"), a.get("max")
        lo = self.optional(node, 1)
        hi = self.optional(node, 2)
        out = []
        for v, i in ((lo, 1), (hi, 2)):
            if v is None:
                out.append(None)
            elif isinstance(v, _Const) and np.asarray(v.value).size == 1:
                out.append(np.asarray(v.value).ravel()[0].item())
            else:
                self.fail(node, f"bound {node.input[i]!r} must be a scalar constant")
        return out[0], out[1]

    def op_Relu(self, node):
        if isinstance(self.get(node, 0), _Lut):
            self.elementwise_table(node)
            return
        lo, hi = self.clip_bounds(node)
        v = self.get(node, 0)
        if isinstance(v, _Codes):  # ONNX semantics on integer tensors: clamp the codes themselves
            x = v.info
            self.clamp_codes(node, x, x.qmin if lo is None else int(math.ceil(lo)),
                             x.qmax if hi is None else int(math.floor(hi)), node.output[0])
        elif isinstance(v, _Pending):
            if self.consumers.get(node.input[0], 0) != 1:
                self.fail(node, f"the float tensor {node.input[0]!r} has other consumers: cannot fuse")
            self.values[node.output[0]] = replace(
                v, lo=max(v.lo, -math.inf if lo is None else float(lo)),
                hi=min(v.hi, math.inf if hi is None else float(hi)))
        else:
            # a clamp of dequantized codes: its values are x's (QOperator with symmetric activations leaves Relu
            # in float, read by a float pool too), so a reader that needs codes gets x's clamped codes exactly
            x = self.dequant(node, 0)
            self.values[node.output[0]] = _Pending(
                node.name or node.output[0], node.op_type, x.shape,
                lambda out: Clamp(name=self.layer_name(node), inputs=(x,), output=out) if x.same_quant(out)
                else self.requant_table(node, x, out),
                -math.inf if lo is None else float(lo), math.inf if hi is None else float(hi),
                float_only=True, real_range=self.info_range(x), expr=("dq", x), codes_of=x)

    op_Clip = op_Relu

    # -- operators: QDQ form ----------------------------------------------------------------------------------

    def const_weights(self, node, i: int, axis_out: int):
        v = self.get(node, i, "weight")
        if isinstance(v, _Const):
            self.fail(node, f"weight {node.input[i]!r} is a float initializer, not DequantizeLinear of int8: "
                            f"{_LEFT_IN_FLOAT}")
        if not isinstance(v, _ConstDequant):
            self.fail(node, f"weight {node.input[i]!r} must be a constant (DequantizeLinear of an int8 initializer)")
        if np.asarray(v.scale).size > 1 and v.axis != axis_out:
            self.fail(node, f"per-channel weight scales must run along the output-channel axis {axis_out}, "
                            f"not axis {v.axis}")
        w, wz = self.weights(node, v.q, v.zp, axis=axis_out)
        return w, v.scale, wz

    def op_Conv(self, node):
        x = self.dequant(node, 0)
        w, ws, wz = self.const_weights(node, 1, 0)
        shape, make = self.conv(node, x, w, ws, self.optional(node, 2), wz)
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)

    def op_ConvTranspose(self, node):
        """A QDQ ``ConvTranspose`` (a decoder's or a U-Net's learned upsampling): :meth:`transposed_conv` of its
        weights."""
        a = self.attrs(node)
        if isinstance(self.get(node, 1, "weight"), _Const):
            self.fail(node, "a ConvTranspose with float weights (onnxruntime's QOperator form leaves it in float): "
                            "allowed the QDQ form (quantize_static quant_format=QuantFormat.QDQ)")
        x = self.dequant(node, 0)
        groups = int(a.get("group", 1))
        q, ws, wz = self.const_weights(node, 1, 1)  # (Cin, Cout/g, kh, kw), per channel along axis 1
        if q.ndim != 4 or len(x.shape) != 3:
            self.fail(node, f"only 2-D transposed convolutions of (C, H, W) inputs are supported (weight "
                            f"{q.shape}, input {x.shape})")
        if tuple(a.get("kernel_shape", q.shape[2:])) != q.shape[2:]:
            self.fail(node, f"kernel_shape {list(a['kernel_shape'])} disagrees with the weight shape {q.shape}")
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", "", "VALID") or "output_shape" in a:
            self.fail(node, f"auto_pad {auto!r} / output_shape are not supported: allowed explicit pads")
        pads = tuple(a.get("pads", (0, 0, 0, 0))) if auto in ("NOTSET", "") else (0, 0, 0, 0)
        # per channel along axis 1 is one scale per output channel of a group, the same in every group
        cog = q.shape[1]
        ws = np.tile(self.weight_scale(node, ws, cog), groups)
        bias = self.bias(node, self.optional(node, 2), x.scale, ws, cog * groups)
        shape, make = self.transposed_conv(node, x, q, ws, np.tile(np.broadcast_to(np.asarray(wz, np.int64), (cog,)),
                                                                   groups), bias, groups,
                                           tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1))), pads,
                                           tuple(a.get("output_padding", (0, 0))))
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)

    def transposed_conv(self, node, x: TensorInfo, q: np.ndarray, ws, wz, bias, groups: int, stride, dilation,
                        pads, output_padding):
        """(shape, make) of a transposed convolution of ``x`` by ``q`` ``(Cin, Cout/g, kh, kw)`` as layers the
        fabric runs, each exact on codes: a zero-point Pad of one row and column at the bottom and right (a
        real-zero source), a :class:`~cimforge.golden.ir.Resize` gather that spreads the rows and columns
        ``stride`` apart with that zero row / column between them and around them (the transposed padding,
        ``output_padding`` and any crop), both emitted now, then (``make``) a stride-1 convolution by the flipped
        kernel transposed per group. With stride 1 and no crop the convolution's own padding does it all. The
        convolution reads ``stride^2`` times the input's pixels, most of them zeros: its utilisation bound is
        that of the equivalent convolution."""
        cin, cog, kh, kw = q.shape
        if cin != x.shape[0] or cin % groups:
            self.fail(node, f"weight {q.shape} with group {groups} does not fit the input's {x.shape[0]} channels")
        cig, cout = cin // groups, cog * groups
        # the equivalent convolution's weight (Cout, Cin/g, kh, kw): transposed per group and flipped
        w = q.reshape(groups, cig, cog, kh, kw).transpose(0, 2, 1, 3, 4).reshape(cout, cig, kh, kw)[:, :, ::-1, ::-1]
        w = np.ascontiguousarray(w)
        (sh, sw), (dh, dw), (pt, pl, pb, pr), (oph, opw) = stride, dilation, pads, output_padding
        _, h, wd = x.shape
        # the convolution input: the input spread `stride` apart, then (dilation * (k - 1) - pad) zero rows /
        # columns before and after (plus output_padding after); negative is a crop
        before = (dh * (kh - 1) - pt, dw * (kw - 1) - pl)
        after = (dh * (kh - 1) - pb + oph, dw * (kw - 1) - pr + opw)
        spread = ((h - 1) * sh + 1, (wd - 1) * sw + 1)
        size = tuple(n + b + e for n, b, e in zip(spread, before, after))
        if min(size[0] - dh * (kh - 1), size[1] - dw * (kw - 1)) < 1:
            self.fail(node, f"pads {list(pads)} leave no output for the input {x.shape}")
        name = self.layer_name(node)
        out_name = node.output[0]
        if (sh, sw) == (1, 1) and min(*before, *after) >= 0:
            src, padding = x, (before[0], before[1], after[0], after[1])
            out_hw = tuple(n + p0 + p1 - d * (k - 1) for n, p0, p1, d, k in
                           zip((h, wd), padding[:2], padding[2:], (dh, dw), (kh, kw)))
        else:
            _, make_pad = self.pad_conv(_FakeNode(f"{name}/zero_pad", "Pad", ""), x, (0, 0, 1, 1))
            padded = x.renamed(f"{out_name}/zero_pad", (cin, h + 1, wd + 1))
            self.emit(self.build(node, make_pad, padded))

            def source(j, n, st, first):  # the padded input's row / column at the convolution input's j
                u = j - first
                return u // st if 0 <= u < (n - 1) * st + 1 and u % st == 0 else n
            rows = tuple(source(j, h, sh, before[0]) for j in range(size[0]))
            cols = tuple(source(j, wd, sw, before[1]) for j in range(size[1]))
            src = x.renamed(f"{out_name}/spread", (cin, *size))
            self.emit(self.build(node, Resize, name=f"{name}/spread", inputs=(padded,), output=src, rows=rows,
                                 cols=cols))
            padding = (0, 0, 0, 0)
            out_hw = (size[0] - dh * (kh - 1), size[1] - dw * (kw - 1))

        def make(out: TensorInfo) -> Layer:
            return Conv2d(name=name, inputs=(src,), output=out, weight=w, bias=bias, weight_scale=ws,
                          weight_zero_point=wz, padding=padding, dilation=(dh, dw), groups=groups)
        return (cout, *out_hw), make

    def block_rearrange(self, node, to_depth: bool):
        """``DepthToSpace`` (PixelShuffle, DCR or CRD) as a transposed convolution of kernel and stride
        ``blocksize`` whose one-hot weights take each output pixel's channel; ``SpaceToDepth`` as a convolution
        of kernel and stride ``blocksize`` whose one-hot weights gather each block's pixels into channels. Weight
        scale 1: the codes are copied with the input's quantisation (a requantising copy's multiplier
        otherwise). On codes, or up to the next QuantizeLinear."""
        a = self.attrs(node)
        r = int(a.get("blocksize", 0))
        v = self.get(node, 0)
        x = v.info if isinstance(v, _Codes) else self.quantized_input(node, 0)
        if len(x.shape) != 3 or r < 1:
            self.fail(node, f"blocksize {r} of a {x.shape} input: allowed blocksize >= 1 of a (C, H, W) input")
        c, h, wd = x.shape
        i, j = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
        if to_depth:
            if h % r or wd % r:
                self.fail(node, f"blocksize {r} does not divide the input's {h} x {wd} plane")
            w = np.zeros((c * r * r, c, r, r), np.int8)
            for ch in range(c):  # output channel (i * r + j) * C + c takes pixel (i, j) of channel c's blocks
                w[(i * r + j) * c + ch, ch, i, j] = 1
            shape = (c * r * r, h // r, wd // r)
            name = self.layer_name(node)

            def make(out: TensorInfo) -> Layer:
                return Conv2d(name=name, inputs=(x,), output=out, weight=w, weight_scale=1.0, stride=(r, r))
        else:
            mode = a.get("mode", b"DCR")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if c % (r * r) or mode not in ("DCR", "CRD"):
                self.fail(node, f"mode {mode!r}, blocksize {r} of {c} channels: allowed mode 'DCR' or 'CRD' and "
                                f"channels a multiple of blocksize^2")
            co = c // (r * r)
            q = np.zeros((c, co, r, r), np.int8)
            for o in range(co):  # output channel o at block pixel (i, j) takes one input channel
                src = (i * r + j) * co + o if mode == "DCR" else o * r * r + i * r + j
                q[src, o, i, j] = 1
            shape, make = self.transposed_conv(node, x, q, np.ones(co), np.zeros(co, np.int64), None, 1, (r, r),
                                               (1, 1), (0, 0, 0, 0), (0, 0))
        if isinstance(v, _Codes):
            self.emit(self.build(node, make, x.renamed(node.output[0], shape)))
        else:
            self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make, codes_of=x,
                                                   real_range=self.info_range(x))

    def op_DepthToSpace(self, node):
        self.block_rearrange(node, to_depth=False)

    def op_SpaceToDepth(self, node):
        self.block_rearrange(node, to_depth=True)

    def gemm_scales(self, node, beta: bool) -> tuple[float, float]:
        """Gemm's ``alpha`` (and ``beta`` when the form has it): ``alpha A B + beta C`` is a dense layer whose
        weight scale carries ``alpha`` (a positive real factor: the codes stay) and whose bias carries ``beta``."""
        a = self.attrs(node)
        alpha, b = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        if a.get("transA", 0):
            self.fail(node, "transA=1 is not supported (allowed transA=0: A is (N, K))")
        if not alpha > 0 or not math.isfinite(alpha):
            self.fail(node, f"alpha={alpha}: allowed a finite alpha > 0 (it scales the weight scale)")
        if beta and not math.isfinite(b):
            self.fail(node, f"beta={b}: allowed a finite beta")
        return alpha, b

    def op_Gemm(self, node):
        a = self.attrs(node)
        alpha, beta = self.gemm_scales(node, beta=True)
        x, cols = self.flat_input(node, 0, True)
        trans = a.get("transB", 0)
        w, ws, wz = self.const_weights(node, 1, 0 if trans else 1)
        bias = self.optional(node, 2)
        if beta != 1.0 and bias is not None:  # onnxruntime's quantizer folds beta into C; another tool may not
            if isinstance(bias, _ConstDequant):
                bias = replace(bias, scale=np.asarray(bias.scale, np.float64) * beta)
            elif isinstance(bias, _Const) and np.issubdtype(np.asarray(bias.value).dtype, np.floating):
                bias = _Const(np.asarray(bias.value, np.float64) * beta)
            else:
                self.fail(node, f"beta={beta} with an integer bias C: allowed beta=1, or a float or dequantized C")
        ws = np.asarray(ws, np.float64) * alpha
        shape, make = self.dense(node, x, w if trans else w.T, ws, bias, wz, cols=cols)
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)

    def op_MatMul(self, node):
        x, cols = self.flat_input(node, 0, True)
        w, ws, wz = self.const_weights(node, 1, 1)
        if w.ndim != 2:
            self.fail(node, f"B must be 2-D (K, N), has shape {w.shape}")
        shape, make = self.dense(node, x, w.T, ws, None, wz, cols=cols)
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)

    def op_Add(self, node):
        """A float add of two computed tensors (a quantized :class:`~cimforge.golden.ir.Add`), or of a tensor and a
        per-channel constant (DenseNet-121's decomposed BatchNormalization: the per-channel affine ``x + b``); a
        function of one tensor's codes (:meth:`elementwise_table`) is a table."""
        if self.table_operands(node) is not None:
            self.elementwise_table(node)
            return
        k = self.constant_operand(node)
        if k is not None:
            if self.numerics == "onnx":
                shift = self.channel_const(node, k, TensorInfo("shape", self.expr_shape(node, 1 - k), "int8", 1.0, 0))
                self.values[node.output[0]] = self.chain_affine(node, 1 - k, np.ones_like(shift), shift)
                return
            x = self.quantized_input(node, 1 - k)
            shift = self.channel_const(node, k, x)
            self.values[node.output[0]] = self.affine(node, x, np.ones_like(shift), shift)
            return
        if self.chained(node, (0, 1)):
            shapes = [self.expr_shape(node, i) for i in (0, 1)]
            a, _ = self.product_operands(node, [TensorInfo(f"shape{i}", sh, "int8", 1.0, 0)
                                                for i, sh in enumerate(shapes)], "add")
            self.values[node.output[0]] = self.chain(node, ("sum", (self.float_expr(node, 0), self.float_expr(node, 1))),
                                                     a.shape)
            return
        xs = self.product_operands(node, [self.quantized_input(node, i) for i in (0, 1)], "add")
        self.values[node.output[0]] = _Pending(
            node.name or node.output[0], node.op_type, xs[0].shape,
            lambda out: Add(name=self.layer_name(node), inputs=tuple(xs), output=out),
            real_range=self.sum_range(xs), expr=("sum", tuple(("dq", t) for t in xs)))

    def op_Mul(self, node):
        """A float product of two computed tensors (a quantized :class:`~cimforge.golden.ir.Mul`, one of them may be
        per channel), or of a tensor and a per-channel (or scalar) constant: the per-channel affine ``a x``; a
        function of one tensor's codes (``x * Sigmoid(x)``, a scalar factor: :meth:`elementwise_table`) is a
        table."""
        if self.table_operands(node) is not None:
            self.elementwise_table(node)
            return
        k = self.constant_operand(node)
        if k is None:  # of two computed tensors (one may be per channel): a quantized product
            xs = self.product_operands(node, [self.quantized_input(node, i) for i in (0, 1)])
            self.values[node.output[0]] = _Pending(
                node.name or node.output[0], node.op_type, xs[0].shape,
                lambda out: Mul(name=self.layer_name(node), inputs=xs, output=out), real_range=self.product_range(xs))
            return
        if self.numerics == "onnx":
            mult = self.channel_const(node, k, TensorInfo("shape", self.expr_shape(node, 1 - k), "int8", 1.0, 0))
            self.values[node.output[0]] = self.chain_affine(node, 1 - k, mult, np.zeros_like(mult))
            return
        x = self.quantized_input(node, 1 - k)
        mult = self.channel_const(node, k, x)
        self.values[node.output[0]] = self.affine(node, x, mult, np.zeros_like(mult))

    def _average_pool(self, node, kind: str):
        """QDQ ``AveragePool`` (``kind`` "avg") or ``GlobalAveragePool`` ("global"): in a float chain, of a float
        result (its quantized copy), or of codes; exact ties round to even as onnxruntime's ``QuantizeLinear``
        after its float pool does."""
        if self.chained(node, (0,)):
            self.values[node.output[0]] = self.chain_pool(node, kind)
            return
        chain = isinstance(self.get(node, 0), (_Pending, _Lut))  # in a float chain (QDQ ResNet-50's Sum -> pool)
        x = self.quantized_input(node, 0)
        shape, make = self.pool(node, x, kind, method=self.float_pools, round_even=True)
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make,
                                               real_range=self.info_range(x), float_only=chain)

    def op_AveragePool(self, node):
        self._average_pool(node, "avg")

    def op_GlobalAveragePool(self, node):
        self._average_pool(node, "global")

    def chain_pool(self, node, kind: str) -> _Pending:
        """An average pool of a float value, in the chain (MLAS's summation order, see ``ops.float_chain``)."""
        c, h, w = self.expr_shape(node, 0)
        like = TensorInfo("shape", (c, h, w), "int8", 1.0, 0)
        shape, make = self.pool(node, like, kind)
        pool = make(TensorInfo("shape_out", shape, "int8", 1.0, 0))
        self.layer_names.discard(pool.name)  # a geometry only: the chain's layer takes the name
        if kind == "global":
            geo = ((h, w), (1, 1), (0, 0, 0, 0), (1, 1), np.full((1, 1), h * w, np.int64))
        else:
            geo = (pool.kernel, pool.stride, pool.padding, pool.dilation, pool.divisors)
        generic = kind != "global" and pool.generic_order
        return self.chain(node, ("pool", self.float_expr(node, 0), *geo, shape[1:], generic), shape)

    @staticmethod
    def partial_sum_info(out: TensorInfo, name: str, lo: float, hi: float) -> TensorInfo:
        """The quantisation of a partial sum of real range ``lo .. hi`` on its way to ``out``: ``out``'s own
        where its codes cover that range (the final add then requantises nothing), else the finest scale of
        ``out``'s dtype that covers it, zero point rounded as onnxruntime's calibration does. Quantized like
        ``out`` regardless, a partial sum past ``out``'s range was clipped (a Sum of three before a Relu:
        every negative partial sum became 0, 195 LSB off)."""
        o_lo, o_hi = _Importer.info_range(out)
        if o_lo <= lo and hi <= o_hi:
            return out.renamed(name)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max(out.scale, (hi - lo) / (out.qmax - out.qmin))
        zp = int(np.clip(np.round(out.qmin - lo / scale), out.qmin, out.qmax))
        return TensorInfo(name, out.shape, out.dtype, scale, zp)

    def sum_range(self, xs: list[TensorInfo]) -> tuple[float, float]:
        """The real range of a sum of ``xs``."""
        ranges = [self.info_range(t) for t in xs]
        return sum(r[0] for r in ranges), sum(r[1] for r in ranges)

    def constant_operand(self, node) -> int | None:
        """Which of a binary operator's two inputs is a constant (0 or 1), or None."""
        consts = [i for i in (0, 1) if isinstance(self.get(node, i), (_Const, _ConstDequant))]
        if len(consts) == 2:
            self.fail(node, "both inputs are constants")
        return consts[0] if consts else None

    def channel_const(self, node, i: int, x: TensorInfo, value: np.ndarray | None = None) -> np.ndarray:
        """Constant input ``i`` (real values; ``value`` when given) broadcast along the channel axis of ``x``: one
        value per channel. Only a scalar or a per-channel constant (``(C, 1, 1)``, ``(1, C, 1, 1)``, ``(C,)`` on a
        vector) is supported: anything else would not be a per-channel affine."""
        v = np.asarray(self.real_const(node, i, "constant") if value is None else value, np.float64)
        c, rank = x.shape[0], len(x.shape)
        dims = list(v.shape)
        while len(dims) > rank:  # a leading batch axis of 1
            if dims[0] != 1:
                self.fail(node, f"constant {node.input[i]!r} of shape {v.shape} varies along the batch axis")
            dims.pop(0)
        dims = [1] * (rank - len(dims)) + dims
        if any(d != 1 for d in dims[1:]) or dims[0] not in (1, c):
            self.fail(node, f"constant {node.input[i]!r} of shape {v.shape} is not per channel for the input "
                            f"(N, {', '.join(map(str, x.shape))}): only a scalar or (C, 1, 1) is supported")
        return np.broadcast_to(v.reshape(-1), (c,)).astype(np.float64) if v.size > 1 else np.full(c, float(v.ravel()[0]))

    # -- Slice and Split: selections of channels and strided rows / columns ------------------------------------

    def int_list(self, node, i: int, attr: str, what: str) -> list[int] | None:
        """An integer list given as constant input ``i`` (opset >= 10 / 13) or as attribute ``attr``; None when
        neither is there."""
        a = self.attrs(node)
        if attr in a:
            return [int(v) for v in a[attr]]
        if i < len(node.input) and node.input[i]:
            return [int(v) for v in np.asarray(self.const(node, i, what)).reshape(-1)]
        return None

    def selection(self, node, shape: tuple[int, ...], begin, step, count):
        """(shape, make) of the layer that selects ``x[begin[k] :: step[k]][:count[k]]`` along each per-sample
        axis ``k`` of ``x`` (``shape``): a convolution of one-hot weights (weight scale 1, no bias), whose
        requantisation multiplier is exactly 1.0 when the output keeps the input's quantisation (the codes are
        copied, as for the channel shuffle) and ``s_in / s_out`` otherwise, as a requantising copy's.

        Rows and columns: a kernel of ``K = H - (count - 1) * step`` rows (``count`` outputs at stride ``step``
        without padding) whose one tap at row ``begin`` is 1; all channels kept, the convolution is depthwise,
        else each output channel takes one input channel. A ``(F,)`` vector: a ``dense`` layer."""
        if len(shape) == 1:
            (b,), (st,), (n,) = begin, step, count
            w = np.zeros((n, shape[0]), np.int8)
            w[np.arange(n), b + st * np.arange(n)] = 1
            return (n,), lambda x, out: Dense(name=self.layer_name(node), inputs=(x,), output=out, weight=w,
                                              weight_scale=1.0)
        c, h, wd = shape
        (bc, bh, bw), (sc, sh, sw), (nc, nh, nw) = begin, step, count
        kh, kw = h - (nh - 1) * sh, wd - (nw - 1) * sw
        if (bc, sc, nc) == (0, 1, c):
            w = np.zeros((c, 1, kh, kw), np.int8)
            w[:, 0, bh, bw] = 1
            groups = c
        else:
            w = np.zeros((nc, c, kh, kw), np.int8)
            w[np.arange(nc), bc + sc * np.arange(nc), bh, bw] = 1
            groups = 1
        return (nc, nh, nw), lambda x, out: Conv2d(name=self.layer_name(node), inputs=(x,), output=out, weight=w,
                                                   weight_scale=1.0, stride=(sh, sw), groups=groups)

    def select_into(self, node, out_name: str, shape, begin, step, count, label: str) -> None:
        """Output ``out_name`` of a Slice / Split: the :meth:`selection` of input 0's codes (QOperator: the same
        quantisation), or of its dequantized value up to the next QuantizeLinear."""
        fake = _FakeNode(label, node.op_type, out_name)
        self.emit_selection(node, out_name, label, *self.selection(fake, shape, begin, step, count))

    def emit_selection(self, node, out_name: str, label: str, out_shape, make) -> None:
        """A layer ``make(x, out)`` that copies some of input 0's codes into ``out_name``: on codes now, or on
        the dequantized value up to the next QuantizeLinear (whose codes it holds exactly)."""
        v = self.get(node, 0)
        if isinstance(v, _Codes):
            self.emit(self.build(_FakeNode(label, node.op_type, out_name), make, v.info,
                                 v.info.renamed(out_name, out_shape)))
            return
        x = self.quantized_input(node, 0)
        self.values[out_name] = _Pending(label, node.op_type, out_shape, lambda out: make(x, out), codes_of=x,
                                         real_range=self.info_range(x))

    def data_shape(self, node) -> tuple[int, ...]:
        """Input 0's per-sample shape, for an operator that selects from it (C, H, W) or (F,)."""
        if isinstance(self.get(node, 0), _FloatInput):  # each part gets its own QuantizeLinear, the input one
            self.fail(node, f"a {node.op_type} of the float graph input {node.input[0]!r} is not supported "
                            f"(onnxruntime quantizes each part, not the input): do it in preprocessing, or after "
                            f"the first layer")
        shape = tuple(self.expr_shape(node, 0))
        if len(shape) not in (1, 3):
            self.fail(node, f"input of per-sample shape {shape}; allowed (C, H, W) or (F,)")
        return shape

    def op_Gather(self, node):
        """A Gather of a computed tensor by constant indices (onnxruntime's optimizer writes YOLOv5's Focus as
        SpaceToDepth and a Gather of the channels; ``x[:, idx]``): of the channels a one-hot 1x1 ``conv2d``
        (``dense`` on a vector), of rows or columns a ``resize`` gather. Codes copied either way."""
        shape = self.data_shape(node)
        rank = 1 + len(shape)
        axis = int(self.attrs(node).get("axis", 0))
        if not -rank <= axis < rank or axis % rank == 0:
            self.fail(node, f"axis {axis} of a rank-{rank} input; allowed axes 1..{rank - 1} (not the batch)")
        k = axis % rank - 1
        idx = np.asarray(self.const(node, 1, "indices"))
        if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1 or not idx.size:
            self.fail(node, f"indices of shape {idx.shape} and dtype {idx.dtype}: allowed a non-empty 1-D integer "
                            f"constant (a scalar index removes the axis: use a Slice of one)")
        n = shape[k]
        if idx.min() < -n or idx.max() >= n:
            self.fail(node, f"indices {idx.tolist()[:8]} out of range for axis {axis} of size {n}")
        idx = [int(i) % n for i in idx]
        name, label = node.output[0], node.name or node.output[0]
        if k == 0:  # channels: output channel i takes input channel idx[i]
            w = np.zeros((len(idx), n) + (() if len(shape) == 1 else (1, 1)), np.int8)
            w[np.arange(len(idx)), idx] = 1
            cls = Dense if len(shape) == 1 else Conv2d
            out_shape = (len(idx), *shape[1:])
            make = lambda x, out: cls(name=self.layer_name(node), inputs=(x,), output=out, weight=w,  # noqa: E731
                                      weight_scale=1.0)
        else:
            rows = tuple(idx) if k == 1 else tuple(range(shape[1]))
            cols = tuple(idx) if k == 2 else tuple(range(shape[2]))
            out_shape = (shape[0], len(rows), len(cols))
            make = lambda x, out: Resize(name=self.layer_name(node), inputs=(x,), output=out,  # noqa: E731
                                         rows=rows, cols=cols)
        self.emit_selection(node, name, label, out_shape, make)

    def op_Slice(self, node):
        """A Slice of the channels, rows or columns (positive steps; the batch axis whole): a one-hot
        convolution (:meth:`selection`). YOLOv5's Focus (``x[..., ::2, ::2]``) is a depthwise 2x2 stride 2."""
        shape = self.data_shape(node)
        rank = 1 + len(shape)
        starts = self.int_list(node, 1, "starts", "starts")
        ends = self.int_list(node, 2, "ends", "ends")
        if starts is None or ends is None or len(starts) != len(ends):
            self.fail(node, "starts and ends must be constants of one length")
        axes = self.int_list(node, 3, "axes", "axes")
        axes = list(range(len(starts))) if axes is None else axes
        steps = self.int_list(node, 4, "steps", "steps") or [1] * len(starts)
        if len(axes) != len(starts) or len(steps) != len(starts):
            self.fail(node, f"starts {starts}, ends {ends}, axes {axes}, steps {steps}: allowed one length")
        begin, step, count = [0] * len(shape), [1] * len(shape), list(shape)
        for b, e, ax, st in zip(starts, ends, axes, steps):
            if not -rank <= ax < rank:
                self.fail(node, f"axis {ax} out of range for a rank-{rank} input")
            ax %= rank
            if ax == 0:
                self.fail(node, "a Slice of the batch axis (0) is not supported; allowed axes 1.."
                                f"{rank - 1}")
            if st < 1:
                self.fail(node, f"step {st} on axis {ax}: allowed steps >= 1 (a reversing slice is not supported)")
            dim = shape[ax - 1]
            b = min(max(b + dim if b < 0 else b, 0), dim)
            e = min(max(e + dim if e < 0 else e, 0), dim)
            n = max(0, -(-(e - b) // st))
            if n == 0:
                self.fail(node, f"the slice {b}:{e}:{st} of axis {ax} (size {dim}) is empty")
            begin[ax - 1], step[ax - 1], count[ax - 1] = b, st, n
        self.select_into(node, node.output[0], shape, begin, step, count, node.name or node.output[0])

    def op_Split(self, node):
        """A Split along the channels, rows or columns: one selection (:meth:`Slice <op_Slice>`) per output,
        named ``<node>/<i>``. The sizes from the ``split`` input or attribute, else equal parts (``num_outputs``
        from opset 18: the last part may be smaller)."""
        shape = self.data_shape(node)
        rank = 1 + len(shape)
        ax = self.attrs(node).get("axis", 0)
        if not -rank <= ax < rank:
            self.fail(node, f"axis {ax} out of range for a rank-{rank} input")
        ax %= rank
        if ax == 0:
            self.fail(node, f"a Split of the batch axis (0, the default) is not supported; allowed axes 1..{rank - 1}")
        dim, parts = shape[ax - 1], len(node.output)
        sizes = self.int_list(node, 1, "split", "split")
        if sizes is None:
            if self.opset >= 18:
                chunk = -(-dim // parts)
                sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
            elif dim % parts == 0:
                sizes = [dim // parts] * parts
            else:
                self.fail(node, f"axis {ax} of size {dim} does not split into {parts} equal parts")
        if len(sizes) != parts or sum(sizes) != dim or min(sizes) < 1:
            self.fail(node, f"split {sizes} of axis {ax} (size {dim}) into {parts} outputs: allowed {parts} sizes "
                            f">= 1 that add up to {dim}")
        offset = 0
        for i, (out, n) in enumerate(zip(node.output, sizes)):
            if out:
                begin, count = [0] * len(shape), list(shape)
                begin[ax - 1], count[ax - 1] = offset, n
                self.select_into(node, out, shape, begin, [1] * len(shape), count, f"{node.name or out}/{i}")
            offset += n

    def op_Concat(self, node):
        if all(isinstance(self.get(node, i), _Codes) for i in range(len(node.input))):
            xs = [self.codes(node, i) for i in range(len(node.input))]
            if any(not t.same_quant(xs[0]) for t in xs):
                self.fail(node, "Concat of codes with different quantisation (use QLinearConcat)")
            shape, make = self.concat_make(node, xs)
            self.emit(self.build(node, make, xs[0].renamed(node.output[0], shape)))
            return
        xs = [self.dequant(node, i) for i in range(len(node.input))]
        shape, make = self.concat_make(node, xs)
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, shape, make)

    # -- operators: beyond the MAC layers (docs/operators.md) --------------------------------------------------

    def code_function(self, node, i: int):
        """Input ``i`` as a function of one tensor's codes: ``(root, vals)`` with ``vals[b]`` its float32 value
        where ``root``'s code has the byte ``b``; ``None`` for a constant. A dequantized Lut output is a function
        of the Lut's own root (its composed table)."""
        v = self.get(node, i)
        if isinstance(v, _Lut):
            return v.src, v.vals
        if isinstance(v, (_Const, _ConstDequant)):
            return None
        if isinstance(v, _Dequant) and v.info.name in self.lut_of:
            root, table = self.lut_of[v.info.name]
            return root, _lut.dequantize(v.info, table)
        x = self.quantized_input(node, i) if isinstance(v, _Pending) else self.dequant(node, i)
        return x, _lut.dequantize(x)

    def scalar_const(self, node, i: int) -> np.ndarray | None:
        """Constant input ``i`` as a float32 scalar, or None when it is not a constant of one value (or of equal
        values)."""
        v = self.get(node, i)
        if not isinstance(v, (_Const, _ConstDequant)):
            return None
        r = np.asarray(self.real_const(node, i, "constant") if isinstance(v, _ConstDequant) else v.value)
        if not np.issubdtype(r.dtype, np.floating) or r.size < 1 or not (r == r.ravel()[0]).all():
            return None
        return np.asarray(r.ravel()[0], np.float32)

    def table_operands(self, node):
        """The operands of an element-wise binary operator when its result is a function of one tensor's codes:
        one operand a table's float value (or both functions of the same tensor, ``x * Sigmoid(x)``) and the other
        a scalar constant or a function of the same tensor, or a dequantized tensor and a scalar constant (``x + 3``
        of a decomposed HardSwish). ``None`` otherwise (the operator's other forms apply)."""
        if len(node.input) != 2:
            return None
        vs = [self.get(node, i) for i in (0, 1)]
        consts = [self.scalar_const(node, i) for i in (0, 1)]
        fns = [None if consts[i] is not None else self.peek_function(vs[i]) for i in (0, 1)]
        if any(c is None and f is None for c, f in zip(consts, fns)):
            return None  # a per-channel constant, or not a function of codes
        roots = {f.name for f in fns if f is not None}
        if len(roots) != 1:
            return None
        return vs

    def peek_function(self, v) -> TensorInfo | None:
        """The root tensor of a value that is a function of codes (:meth:`code_function`), without building it."""
        if isinstance(v, _Lut):
            return v.src
        if isinstance(v, _Dequant):
            return self.lut_of.get(v.info.name, (v.info,))[0]
        return None

    def elementwise_table(self, node):
        """An element-wise float operator of a function of one tensor's codes (a dequantized tensor, another
        table's float value) and scalar constants: the same function of the 256 codes, evaluated by onnxruntime
        (:func:`cimforge.golden.lut.evaluate`); its ``QuantizeLinear`` makes it a :class:`~cimforge.golden.ir.Lut`
        layer (:meth:`emit_lut`)."""
        root, operands, functions, varying = None, [], set(), []
        for i in range(len(node.input)):
            if node.input[i] == "":
                operands.append(None)
                continue
            c = self.scalar_const(node, i) if i or node.op_type not in _TABLE_UNARY else None
            if c is not None:
                operands.append(c)
                continue
            v = self.get(node, i)
            if isinstance(v, (_Const, _ConstDequant)):
                if i:  # attributes given as constant inputs (Clip's bounds, PRelu's slope): as they are
                    # a dequantized constant as its DequantizeLinear gives it to onnxruntime: float32
                    operands.append(np.asarray(self.real_const(node, i, "constant"), np.float32)
                                    if isinstance(v, _ConstDequant) else np.asarray(v.value))
                    if node.op_type not in ("Clip",) and operands[-1].size > 1:
                        varying.append(i)  # one value per channel (checked against the data's shape below)
                    continue
                self.fail(node, "the data input is a constant")
            x, vals = self.code_function(node, i)
            if root is not None and x.name != root.name:
                self.fail(node, f"inputs are functions of different tensors ({root.name!r}, {x.name!r}): only an "
                                f"element-wise function of one tensor's codes is supported")
            root = x
            operands.append(vals)
            functions.add(i)
        per_channel = any(np.ndim(operands[i]) == 2 for i in functions)
        for i in varying:
            kind = _lut.per_channel_const(operands[i], root.shape)
            if kind is None:
                self.fail(node, f"constant {node.input[i]!r} of shape {operands[i].shape} varies by element, not "
                                f"by channel of {root.name!r} {root.shape}: an element-wise table takes scalar "
                                f"or per-channel constants")
            per_channel |= kind
        channels = (root.shape[0], len(root.shape) + 1) if per_channel else None
        try:
            vals = _lut.evaluate(node, operands, self.opset, {_MS: 1}, functions=functions, channels=channels)
        except Exception as e:  # noqa: BLE001 - onnxruntime's message names what it refused
            self.fail(node, f"cannot be evaluated on the 256 codes of {root.name!r}: {str(e).splitlines()[0][:200]}")
        self.values[node.output[0]] = _Lut(root, vals.astype(np.float32), node.name or node.output[0], node.op_type)

    op_Sigmoid = op_Tanh = op_LeakyRelu = op_HardSigmoid = op_HardSwish = op_Elu = op_Selu = op_Celu = elementwise_table
    op_Softplus = op_Softsign = op_ThresholdedRelu = op_Mish = op_Gelu = op_Erf = op_Exp = op_Log = elementwise_table
    op_Sqrt = op_Reciprocal = op_Abs = op_Neg = op_Sin = op_Cos = op_Floor = op_Ceil = op_Round = elementwise_table
    op_Sign = op_PRelu = op_Div = op_Pow = op_Max = op_Min = elementwise_table

    def op_Sub(self, node):
        """``a - b`` of two computed tensors (a denoiser's ``x - noise``, which onnxruntime leaves in float) is
        ``a + (-b)``: ``-b`` is a table of ``b``'s codes into the quantisation of scale ``s_b`` and zero point
        ``qmin + qmax - zp_b``, exact (code ``qmin + qmax - q``), then the residual add; numerics "onnx": the
        float32 ``a + (-1) b`` chain, which is ``a - b`` exactly. With a constant, or of functions of one tensor,
        an element-wise table."""
        consts = any(isinstance(self.optional(node, i), (_Const, _ConstDequant)) for i in (0, 1))
        if len(node.input) != 2 or consts or self.table_operands(node) is not None:
            self.elementwise_table(node)
            return
        if self.chained(node, (0, 1)):
            shapes = [self.expr_shape(node, i) for i in (0, 1)]
            a, _ = self.product_operands(node, [TensorInfo(f"shape{i}", sh, "int8", 1.0, 0)
                                                for i, sh in enumerate(shapes)], "difference")
            neg = ("affine", self.float_expr(node, 1), np.full(shapes[1][0], -1, np.float32),
                   np.zeros(shapes[1][0], np.float32))
            self.values[node.output[0]] = self.chain(node, ("sum", (self.float_expr(node, 0), neg)), a.shape)
            return
        a, b = (self.quantized_input(node, i) for i in (0, 1))
        nb = self.build(node, TensorInfo, f"{node.output[0]}/negated", b.shape, b.dtype, b.scale,
                        b.qmin + b.qmax - b.zero_point)
        codes = _lut.code_bytes(b).astype(np.int64)
        neg_node = _FakeNode(f"{node.name or node.output[0]}/negate", "Neg", nb.name)
        self.emit(self.table_layer(neg_node, b, nb, b.qmin + b.qmax - codes))
        xs = self.product_operands(node, [a, nb], "difference")
        lo_a, hi_a = self.info_range(a)
        lo_b, hi_b = self.info_range(b)
        self.values[node.output[0]] = _Pending(
            node.name or node.output[0], node.op_type, xs[0].shape,
            lambda out: Add(name=self.layer_name(node), inputs=tuple(xs), output=out),
            real_range=(lo_a - hi_b, hi_a - lo_b))

    def emit_lut(self, node, v: _Lut, out: TensorInfo) -> None:
        """The :class:`~cimforge.golden.ir.Lut` layer of ``v`` quantized into ``out`` (onnxruntime's
        ``QuantizeLinear`` of the 256 values)."""
        self.emit_table(_FakeNode(v.node, v.op, out.name), v.src, out, _lut.quantize(v.vals, out))

    def emit_table(self, node, x: TensorInfo, out: TensorInfo, table: np.ndarray) -> None:
        """A :class:`~cimforge.golden.ir.Lut` layer of output ``table`` codes over ``x``'s codes, recorded in
        :attr:`lut_of` as a function of the chain's first input."""
        layer = self.table_layer(node, x, out, table)
        self.emit(layer)
        self.record_table(layer)

    def table_layer(self, node, x: TensorInfo, out: TensorInfo, table: np.ndarray) -> Lut:
        """The :class:`~cimforge.golden.ir.Lut` layer of output ``table`` codes over ``x``'s codes."""
        codes = _lut.code_bytes(x).astype(np.int64)
        valid = (codes >= x.qmin) & (codes <= x.qmax)  # a narrowed (4-bit) input never holds the rest
        table = np.asarray(table)
        table = np.where(valid, table, table[..., np.argmax(valid)][..., None])
        return self.build(node, Lut, name=self.layer_name(node), inputs=(x,), output=out,
                          table=tuple(int(t) for t in table.ravel()), op=node.op_type)

    def record_table(self, layer: Lut) -> None:
        """Record a table layer in :attr:`lut_of` as a function of its chain's first input."""
        x = layer.input
        root, inner = self.lut_of.get(x.name, (x, np.arange(256)))
        table = layer.tables if layer.per_channel else layer.tables[0]
        self.lut_of[layer.output.name] = (root, _lut.compose(table, inner))

    def requant_table(self, node, x: TensorInfo, out: TensorInfo) -> Lut:
        """``DequantizeLinear`` of ``x`` then ``QuantizeLinear`` into another quantisation (a Relu or Clip whose
        QuantizeLinear has a scale of its own, the fused clamp applied by :meth:`finish`): a
        :class:`~cimforge.golden.ir.Lut` of onnxruntime's two nodes over the 256 codes, exact."""
        return self.table_layer(node, x, out, _lut.quantize(_lut.dequantize(x), out))

    def lut_quantized(self, node, i: int) -> TensorInfo:
        """A table's float value read by an operator that does not commute with quantisation (an average pool, an
        add of another tensor): quantized into a tensor ``<name>/quantized`` of its input's dtype whose range covers
        its values (as :meth:`quantized_input` does for other float results; one rounding onnxruntime does not
        make)."""
        v = self.get(node, i)
        rng = _table_range(v.src, v.vals)
        if rng is None:
            self.fail(node, f"input {node.input[i]!r} (the float output of node {v.node!r}, {v.op}) is not finite "
                            f"for some codes and has no QuantizeLinear: its range cannot be quantized")
        info = self.range_quant(node, f"{node.input[i]}/quantized", v.src.shape, *rng, v.src.dtype)
        self.emit_lut(node, v, info)
        self.values[node.input[i]] = _Dequant(info)
        return info

    def op_QLinearLeakyRelu(self, node):
        """com.microsoft ``QLinearLeakyRelu`` / ``QLinearSigmoid``: onnxruntime's own node over the 256 codes."""
        x = self.codes(node, 0)
        self.check_quant(node, x, self.qparams(node, 1, 2, "input"), "input")
        out = self.out_info(node, 3, 4, x.shape)
        operands = [_lut.code_bytes(x)] + [np.asarray(self.const(node, i, "quantisation")) if node.input[i] else None
                                           for i in range(1, len(node.input))]
        try:
            table = _lut.evaluate(node, operands, self.opset, {_MS: 1}, out.np_dtype).astype(np.int64)
        except Exception as e:  # noqa: BLE001
            self.fail(node, f"cannot be evaluated on the 256 codes: {str(e).splitlines()[0][:200]}")
        self.emit_qlinear_lut(node, x, out, table)

    op_QLinearSigmoid = op_QLinearLeakyRelu

    def emit_qlinear_lut(self, node, x: TensorInfo, out: TensorInfo, table: np.ndarray) -> None:
        """A QOperator node's table of output codes over ``x``'s codes as a :class:`~cimforge.golden.ir.Lut`."""
        self.emit_table(node, x, out, table)
        self.values[node.output[0]] = _Codes(out)

    @property
    def opset(self) -> int:
        """The model's opset of the default domain."""
        return next((o.version for o in self.proto.opset_import if o.domain in _ONNX_DOMAINS), 1)

    def softmax_axes(self, node, rank: int, opset: int) -> tuple[int, ...]:
        """Per-sample axes of a softmax: one axis from opset 13 (default -1), else every axis from ``axis`` on
        (default 1), as ONNX defines them."""
        axis = self.attrs(node).get("axis", -1 if opset >= 13 else 1)
        axis = axis + rank + 1 if axis < 0 else axis
        if not 1 <= axis <= rank:
            self.fail(node, f"axis {self.attrs(node).get('axis')} is the batch axis or out of range")
        return (axis - 1,) if opset >= 13 else tuple(range(axis - 1, rank))

    def op_Softmax(self, node):
        x = self.dequant(node, 0)
        axes = self.softmax_axes(node, len(x.shape), self.opset)
        self.values[node.output[0]] = _Pending(
            node.name or node.output[0], node.op_type, x.shape,
            lambda out: Softmax(name=self.layer_name(node), inputs=(x,), output=out, axes=axes, method="float"))

    def op_QLinearSoftmax(self, node):
        x = self.codes(node, 0)
        self.check_quant(node, x, self.qparams(node, 1, 2, "input"), "input")
        opset = self.attrs(node).get("opset")
        if opset is None:
            self.fail(node, "missing opset attribute (onnxruntime needs it to read axis)")
        axes = self.softmax_axes(node, len(x.shape), int(opset))
        out = self.out_info(node, 3, 4, x.shape)
        self.emit(self.build(node, Softmax, name=self.layer_name(node), inputs=(x,), output=out, axes=axes,
                             method="table"))

    def op_LRN(self, node):
        a = self.attrs(node)
        if "size" not in a:
            self.fail(node, "missing size attribute")
        x = self.dequant(node, 0)
        kw = dict(size=int(a["size"]), alpha=float(a.get("alpha", 1e-4)), beta=float(a.get("beta", 0.75)),
                  bias=float(a.get("bias", 1.0)), method="float" if self.numerics == "onnx" else "integer")
        self.values[node.output[0]] = _Pending(
            node.name or node.output[0], node.op_type, x.shape,
            lambda out: LRN(name=self.layer_name(node), inputs=(x,), output=out, **kw), float_only=True)

    def real_const(self, node, i: int, what: str) -> np.ndarray:
        """A constant's real values (float64): a float initializer or DequantizeLinear of an integer one."""
        v = self.get(node, i, what)
        if isinstance(v, _Const) and np.issubdtype(np.asarray(v.value).dtype, np.floating):
            return np.asarray(v.value, dtype=np.float64)
        if isinstance(v, _ConstDequant):
            q = np.asarray(v.q, np.float64)
            shape = [1] * q.ndim
            if np.asarray(v.scale).size > 1:
                shape[v.axis] = np.asarray(v.scale).size
            s = np.asarray(v.scale, np.float32).astype(np.float64).reshape(shape if np.asarray(v.scale).size > 1 else ())
            z = np.asarray(v.zp, np.float64).reshape(shape if np.asarray(v.zp).size > 1 else ())
            return ((q - z) * s).astype(np.float32).astype(np.float64)
        self.fail(node, f"{what} {node.input[i]!r} must be a constant (float, or DequantizeLinear of an initializer)")

    def op_BatchNormalization(self, node):
        """A BatchNormalization left between DequantizeLinear and QuantizeLinear: the per-channel affine
        ``a * x + b`` as a depthwise 1x1 convolution (a diagonal :class:`~cimforge.golden.ir.Dense` on a vector),
        with per-channel symmetric int8 weights as onnxruntime quantizes a convolution's (``w = +-|w|``,
        ``s_w = |a| / |w|``: the weight exact up to float32) and an int32 bias at ``s_in * s_w``, the one rounded
        quantity. Once the output's quantisation is known, each channel takes the magnitude ``|w|`` in 64..127
        and the bias (rounded to nearest, or one either side) whose integer result agrees with the real affine,
        quantized, on the most input codes in single rounding (see :func:`_bn_magnitudes`)."""
        a = self.attrs(node)
        if a.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
            self.fail(node, "training mode (running mean / variance outputs) is not supported")
        onnx_form = self.numerics == "onnx"
        x = self.quantized_input(node, 0) if not onnx_form else \
            TensorInfo("shape", self.expr_shape(node, 0), "int8", 1.0, 0)
        c = x.shape[0]
        gamma, beta, mean, var = (self.real_const(node, i, w).ravel() for i, w in
                                  ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        if not all(v.size == c for v in (gamma, beta, mean, var)):
            self.fail(node, f"scale, B, mean and var must have {c} values (one per channel)")
        # in float32, in onnxruntime's order: new_scale = scale / sqrt(var + eps), new_bias = B - mean * new_scale
        f32 = np.float32
        inv_std = f32(1.0) / np.sqrt(var.astype(f32) + f32(a.get("epsilon", 1e-5)))
        mult = inv_std * gamma.astype(f32)
        shift = beta.astype(f32) - mean.astype(f32) * mult
        if onnx_form:  # exactly as onnxruntime: float32 x * new_scale + new_bias
            if len(x.shape) not in (1, 3):
                self.fail(node, f"only (C, H, W) and (C,) inputs are supported, per-sample shape {x.shape}")
            self.values[node.output[0]] = self.chain_affine(node, 0, mult, shift)
            return
        self.values[node.output[0]] = self.affine(node, x, mult.astype(np.float64), shift.astype(np.float64))

    def affine(self, node, x: TensorInfo, mult: np.ndarray, shift: np.ndarray) -> _Pending:
        """The pending layer of the per-channel affine ``mult[c] * x + shift[c]`` (BatchNormalization, a Mul or Add
        by a per-channel constant): a depthwise 1x1 :class:`~cimforge.golden.ir.Conv2d` (a diagonal
        :class:`~cimforge.golden.ir.Dense` on a vector) whose weights and bias :func:`_bn_magnitudes` chooses once
        the output's quantisation is known (see :meth:`op_BatchNormalization`)."""
        if len(x.shape) not in (1, 3):
            self.fail(node, f"only (C, H, W) and (C,) inputs are supported, per-sample shape {x.shape}")
        c = x.shape[0]
        mult, shift = np.asarray(mult, np.float64), np.asarray(shift, np.float64)
        name = self.layer_name(node)
        lo, hi = self.info_range(x)
        ends = np.stack([mult * lo + shift, mult * hi + shift])

        def make(out: TensorInfo) -> Layer:
            mag, nudge, want, bad = _bn_magnitudes(x, out, mult, shift,
                                                   lambda ws: self.bias(node, _Const(shift), x.scale, ws, c))
            ws = np.where(mult != 0, np.abs(mult) / mag, 1.0).astype(np.float32).astype(np.float64)
            w = (np.sign(mult) * mag).astype(np.int8)
            bias = (self.bias(node, _Const(shift), x.scale, ws, c).astype(np.int64) + nudge).astype(np.int32)
            for ch in np.nonzero((bad > 0) & (mult != 0))[0]:  # no exact candidate: solve for the scale too
                fit = _affine_fit(x, out, want[ch], int(np.sign(mult[ch])) * 127, int(bias[ch]))
                if fit is not None:
                    w[ch], ws[ch], bias[ch] = int(np.sign(mult[ch])) * 127, fit[0], fit[1]
            if len(x.shape) == 1:
                return Dense(name=name, inputs=(x,), output=out, weight=np.diag(w), bias=bias, weight_scale=ws)
            return Conv2d(name=name, inputs=(x,), output=out, weight=w.reshape(c, 1, 1, 1), bias=bias,
                          weight_scale=ws, groups=c)
        return _Pending(node.name or node.output[0], node.op_type, x.shape, make, float_only=True,
                        real_range=(float(ends.min()), float(ends.max())),
                        expr=("affine", ("dq", x), mult.astype(np.float32), shift.astype(np.float32)))

    def op_Sum(self, node):
        """n-ary float Sum between DequantizeLinear and QuantizeLinear: one quantized Add, or a chain of them
        whose intermediate sums are quantized like the output where that covers every partial sum's range,
        else on a scale that does (:meth:`partial_sum_info`; an extra rounding per link). In numerics "onnx"
        a sum of more than two is onnxruntime's float32 sum (a float chain)."""
        if len(node.input) >= 2 and (self.chained(node, range(len(node.input)))
                                     or (self.numerics == "onnx" and len(node.input) > 2)):
            self.values[node.output[0]] = self.chain(
                node, ("sum", tuple(self.float_expr(node, i) for i in range(len(node.input)))), self.expr_shape(node, 0))
            return
        xs = [self.quantized_input(node, i) for i in range(len(node.input))]
        if len(xs) < 2:
            self.fail(node, f"Sum of {len(xs)} input: at least two are needed")
        if any(t.shape != xs[0].shape for t in xs):
            self.fail(node, f"broadcasting sum {[t.shape for t in xs]} is not supported")
        name = self.layer_name(node)

        def make(out: TensorInfo) -> Layer:
            acc = xs[0]
            o_lo, o_hi = self.info_range(out)
            for k, t in enumerate(xs[1:-1], start=1):
                # a partial sum past where the rest would saturate the output needs no codes: clipped there, the
                # output is the same (it saturates either way), so its range is the smaller of the two
                (lo, hi), (r_lo, r_hi) = self.sum_range(xs[:k + 1]), self.sum_range(xs[k + 1:])
                part = self.partial_sum_info(out, f"{out.name}/sum{k}", max(lo, o_lo - r_hi), min(hi, o_hi - r_lo))
                self.emit(self.build(node, Add, name=f"{name}/{k}", inputs=(acc, t), output=part))
                acc = part
            return Add(name=name if len(xs) == 2 else f"{name}/{len(xs) - 1}", inputs=(acc, xs[-1]), output=out)
        self.values[node.output[0]] = _Pending(node.name or node.output[0], node.op_type, xs[0].shape, make,
                                               real_range=self.sum_range(xs),
                                               expr=("sum", tuple(("dq", t) for t in xs)))

    def op_Transpose(self, node):
        """The middle of a channel shuffle: ``Reshape (C, H, W) -> (g, C/g, H, W)``, ``Transpose (0, 2, 1, 3,
        4)``; the Reshape back to ``(C, H, W)`` makes it a 1x1 convolution by a permutation matrix."""
        v = self.get(node, 0)
        perm = list(self.attrs(node).get("perm", []))
        if isinstance(v, _Pending) and v.reshaped is not None:  # all float: quantized after the shuffle
            src = v.reshaped.shape
            if (perm != [0, 2, 1, 3, 4] or len(src) != 3 or len(v.shape) != 4 or v.shape[0] * v.shape[1] != src[0]
                    or v.shape[2:] != src[1:] or (v.lo, v.hi) != (-math.inf, math.inf)):
                self.fail(node, f"only the channel shuffle Reshape (N, g, C/g, H, W) -> Transpose perm (0, 2, 1, 3, "
                                f"4) -> Reshape (N, C, H, W) is supported (perm {perm}, input {v.shape})")
            g, cg = v.shape[0], v.shape[1]
            self.values[node.output[0]] = _Shuffle(TensorInfo(node.input[0], src, "int8", 1.0, 0), g,
                                                   (cg, g, *v.shape[2:]), True, v.reshaped)
            return
        if isinstance(v, _Permuted):
            self.values[node.output[0]] = self.permuted(node, v.src, v.index.reshape(v.shape), perm, v.dequant)
            return
        info = self.dequant(node, 0) if not isinstance(v, _Codes) else self.codes(node, 0)
        producer = next((i for i, l in enumerate(self.layers) if l.output.name == info.name), None)
        layer = None if producer is None else self.layers[producer]
        if (perm != [0, 2, 1, 3, 4] or not isinstance(layer, Reshape) or len(layer.input.shape) != 3
                or len(info.shape) != 4 or info.shape[0] * info.shape[1] != layer.input.shape[0]
                or info.shape[2:] != layer.input.shape[1:]):
            order = np.arange(int(np.prod(info.shape)), dtype=np.int64).reshape(info.shape)
            pv = self.permuted(node, info, order, perm, not isinstance(v, _Codes))
            inputs = {t.name for t in self.inputs} & set(self.float_inputs.values())
            readers = {node.input[0], info.name}
            if info.name in inputs and all(self.consumers.get(t, 0) == 1 and t not in self.graph_outputs
                                           for t in readers):
                pv = replace(pv, of_input=True)
            self.values[node.output[0]] = (self.transposed_input(pv, node.output[0]) if pv.of_input and not
                                           pv.dequant else pv)
            return
        if self.consumers.get(info.name, 0) != 1 or info.name in self.graph_outputs:
            self.fail(node, f"the reshaped tensor {info.name!r} has other consumers: cannot fold the shuffle")
        del self.layers[producer]
        g, cg = info.shape[0], info.shape[1]
        self.values[node.output[0]] = _Shuffle(layer.input, g, (cg, g, *info.shape[2:]), not isinstance(v, _Codes))

    def transposed_input(self, v: _Permuted, name: str) -> "_Codes":
        """The graph input ``v.src`` replaced by its transposition ``name``: the host transposes the user's
        data (an input step), so the fabric receives channels-first codes (quantisation commutes with it)."""
        new = v.src.renamed(name, v.shape)
        self.inputs[self.inputs.index(v.src)] = new
        f = next(f for f, q in self.float_inputs.items() if q == v.src.name)
        self.float_inputs[f] = name
        steps = self.input_steps.pop(v.src.name, ())
        self.input_steps[name] = (*steps, ("Transpose", np.array(v.perm), False))
        return _Codes(new)

    def permuted(self, node, src: TensorInfo, order: np.ndarray, perm: list, dequant: bool) -> _Permuted:
        """``Transpose(perm)`` of a tensor whose elements sit at ``order`` in ``src`` (:class:`_Permuted`)."""
        if sorted(perm) != list(range(order.ndim + 1)) or perm[0] != 0:
            self.fail(node, f"perm {perm} of a tensor (N, {', '.join(map(str, order.shape))}); allowed a "
                            f"permutation of its axes that keeps the batch axis 0 first")
        moved = np.transpose(order, [p - 1 for p in perm[1:]])
        return _Permuted(src, moved.ravel(), moved.shape, dequant, node.name or node.output[0], tuple(perm))

    def shuffle_conv(self, node, sh: _Shuffle):
        """The permutation ``out[b*g + a] = x[a*C/g + b]`` as a 1x1 convolution: weights 1 where an output
        channel takes an input channel, weight scale 1, bias 0; with the input's quantisation in and out the
        requantisation multiplier is exactly 1.0, which MultiplyByQuantizedMultiplier applies exactly in both
        rounding forms (docs/operators.md), so the codes are copied."""
        c, (cg, g) = sh.src.shape[0], sh.shape[:2]
        w = np.zeros((c, c, 1, 1), np.int8)
        for a_ in range(g):
            for b_ in range(cg):
                w[b_ * g + a_, a_ * cg + b_] = 1
        return sh.src.shape, lambda out: Conv2d(name=self.layer_name(node), inputs=(sh.src,), output=out, weight=w,
                                                weight_scale=1.0)

    def op_ConvInteger(self, node):
        x = self.codes(node, 0)
        if self.integer_zp(node, 2, x.dtype) != x.zero_point:
            self.fail(node, f"x_zero_point {self.integer_zp(node, 2, x.dtype)} differs from the zero point "
                            f"{x.zero_point} of {x.name!r}")
        w, wz = self.weights(node, self.const(node, 1, "weight"), self.optional_const(node, 3), axis=0)
        shape, make = self.conv(node, x, w, 1.0, None, wz, cls=ConvInteger)
        self.emit(self.build(node, make, TensorInfo(node.output[0], shape, "int32", 1.0, 0)))

    def op_MatMulInteger(self, node):
        x = self.codes(node, 0)
        if self.integer_zp(node, 2, x.dtype) != x.zero_point:
            self.fail(node, f"a_zero_point {self.integer_zp(node, 2, x.dtype)} differs from the zero point "
                            f"{x.zero_point} of {x.name!r}")
        b = self.const(node, 1, "B")
        if b.ndim != 2:
            self.fail(node, f"B must be a 2-D constant (K, N), has shape {b.shape}")
        w, wz = self.weights(node, b, self.optional_const(node, 3), axis=1)
        shape, make = self.dense(node, x, w.T, 1.0, None, wz, cls=MatMulInteger)
        self.emit(self.build(node, make, TensorInfo(node.output[0], shape, "int32", 1.0, 0)))

    def optional_const(self, node, i: int):
        return None if self.optional(node, i) is None else self.const(node, i, f"input {i}")

    def integer_zp(self, node, i: int, dtype: str | None = None) -> int:
        """The scalar zero point input ``i`` of ConvInteger / MatMulInteger (0 when absent)."""
        z = self.optional_const(node, i)
        if z is None:
            return 0
        z = np.asarray(z)
        if z.size != 1:
            self.fail(node, f"input zero point must be a scalar, has shape {z.shape}")
        if z.dtype not in _DTYPES or (dtype is not None and _DTYPES[z.dtype] != dtype):
            self.fail(node, f"input zero point has dtype {z.dtype}, the input is {dtype}")
        return int(z.ravel()[0])

    # -- driver -----------------------------------------------------------------------------------------------

    def run(self) -> Graph:
        import onnx
        from onnx import numpy_helper

        g = self.proto.graph
        ops = {n.op_type for n in g.node}
        if not ops & _QUANT_OPS:
            raise OnnxImportError(f"float-only model: none of its operators ({', '.join(sorted(ops))}) is quantized; "
                                  f"quantize it first (onnxruntime.quantization.quantize_static)", node=self.name)
        for init in g.initializer:
            if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
                self.narrow_zp[init.name] = (-8, 7) if init.data_type == onnx.TensorProto.INT4 else (0, 15)
            try:
                self.values[init.name] = _Const(widen_4bit_array(numpy_helper.to_array(init)))
            except Exception as e:  # noqa: BLE001 - any decoding failure means a corrupted initializer
                raise OnnxImportError(f"initializer cannot be decoded: {e}", node=init.name) from None
        self.graph_outputs = {o.name for o in g.output}
        for n in g.node:
            for i in n.input:
                self.consumers[i] = self.consumers.get(i, 0) + 1
        for inp in g.input:
            if inp.name in self.values:
                continue  # an initializer listed as input (old IR versions)
            self.values[inp.name] = self.graph_input(inp, g)
        for node in g.node:
            if node.domain not in (*_ONNX_DOMAINS, _MS):
                self.fail(node, f"operator domain {node.domain!r} is not supported")
            handler = getattr(self, f"op_{node.op_type}", None)
            folded = node.op_type in _FOLDABLE and isinstance(self.values.get(node.input[0] if node.input else ""),
                                                              _Const)
            evaluated = node.op_type in _CONST_EVAL and node.domain in _ONNX_DOMAINS and any(node.input) and all(
                isinstance(self.values.get(i), _Const) for i in node.input if i)
            if self.input_step(node):
                continue
            if evaluated and not folded:
                try:
                    self.fold_reference(node)
                except Exception as e:  # noqa: BLE001 - a malformed constant computation, named
                    self.fail(node, f"cannot fold this computation of constants ({type(e).__name__}: {e})")
                continue
            if not folded and (handler is None or ((node.domain == _MS) != (node.op_type in _MS_OPS)
                                                   and node.op_type not in _BOTH_DOMAINS)):
                advice = _ADVICE.get(node.op_type)
                self.fail(node, f"operator {node.op_type} (domain {node.domain or 'ai.onnx'!r}) is not supported"
                                + (f": {advice}" if advice else f"; supported: {', '.join(SUPPORTED_OPS)}"))
            try:
                self.fold(node) if folded else handler(node)
            except OnnxImportError:
                raise
            except Exception as e:  # noqa: BLE001 - a malformed node must still be named, never a raw traceback
                self.fail(node, f"cannot be imported ({type(e).__name__}: {e})")
        outputs, float_outputs = [], {}
        for o in g.output:
            v = self.values.get(o.name)
            if isinstance(v, _Codes):
                outputs.append(v.info.name)
            elif isinstance(v, _Dequant):
                outputs.append(v.info.name)
                float_outputs[o.name] = v.info.name
            elif isinstance(v, _Permuted):
                raise OnnxImportError(f"graph output is node {v.node!r}'s Transpose (perm {list(v.perm)}) of "
                                      f"{v.src.name!r}: allowed graph outputs are tensors the fabric computes, in "
                                      f"channels-first layout (end the model before the Transpose and transpose "
                                      f"its output on the host)", node=o.name)
            elif isinstance(v, _Pending) and self.exact_codes(v):  # a float Relu of codes at the end: exact
                info = self.exact_copy(o.name, v)
                outputs.append(info.name)
                float_outputs[o.name] = info.name
            elif isinstance(v, (_Pending, _Lut)):
                raise OnnxImportError(f"graph output is the float result of node {v.node!r} ({v.op}), never "
                                      f"quantized: allowed graph outputs are quantized tensors (a QuantizeLinear "
                                      f"after {v.node!r}, or the model ending before it)", node=o.name)
            else:
                raise OnnxImportError("graph output is not a computed tensor", node=o.name)
        if not self.inputs:
            raise OnnxImportError("the model has no quantized graph input", node=self.name)
        self.prune_tables(set(outputs))
        try:
            return Graph(self.name, tuple(self.inputs), tuple(self.layers), tuple(dict.fromkeys(outputs)),
                         dict(self.float_inputs), float_outputs, dict(self.input_steps))
        except IRError as e:
            raise OnnxImportError(str(e), node=self.name) from None

    def prune_tables(self, outputs: set[str]) -> None:
        """Drop the Lut layers nothing reads: a table a later one absorbed (``Sigmoid(x)`` of ``x * Sigmoid(x)``,
        the steps of a decomposed HardSwish) reads the chain's first input directly, so the fabric does not
        compute its intermediate tables."""
        while True:
            read = {t.name for layer in self.layers for t in layer.inputs} | outputs
            dead = [l for l in self.layers if isinstance(l, Lut) and l.output.name not in read]
            if not dead:
                return
            self.layers = [l for l in self.layers if not any(l is d for d in dead)]

    def graph_input(self, inp, g):
        import onnx

        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or not tt.HasField("shape"):
            raise OnnxImportError("graph input has no shape: a static shape (batch may be symbolic) is needed",
                                  node=inp.name)
        dims = list(tt.shape.dim)
        if len(dims) < 2:
            raise OnnxImportError(f"graph input has rank {len(dims)}; expected (N, ...) with a batch dimension",
                                  node=inp.name)
        shape = []
        for axis, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                what = repr(d.dim_param) if d.HasField("dim_param") else "unknown"
                raise OnnxImportError(f"dimension {axis} is dynamic or missing ({what}): only the batch dimension "
                                      f"(0) may be dynamic", node=inp.name)
            shape.append(int(d.dim_value))
        elem = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
        if elem in _DTYPES:  # the model takes codes: its first consumer states their quantisation
            return _Codes(self.code_input(inp.name, tuple(shape), _DTYPES[elem], g))
        if elem is None or not np.issubdtype(elem, np.floating):
            raise OnnxImportError(f"graph input has element type {elem}: float, int8 or uint8 expected",
                                  node=inp.name)
        return _FloatInput(inp.name, tuple(shape))

    def code_input(self, name, shape, dtype, g) -> TensorInfo:
        for node in g.node:
            for i, x in enumerate(node.input):
                if x != name:
                    continue
                if node.op_type in ("ConvInteger", "MatMulInteger") and i == 0:  # no scale: 1
                    info = self.build(node, TensorInfo, name, shape, dtype, 1.0, self.integer_zp(node, 2, dtype))
                    self.inputs.append(info)
                    return info
                if node.op_type == "DequantizeLinear" and i == 0:
                    idx = (1, 2)
                elif node.op_type in _QLINEAR_INPUTS and i in _QLINEAR_INPUTS[node.op_type](len(node.input)):
                    idx = (i + 1, i + 2)
                else:
                    continue
                scale, zp, dt = self.qparams(node, *idx, "input")
                if dt != dtype:
                    self.fail(node, f"input {name!r} is {dtype} but its zero point is {dt}")
                info = self.build(node, TensorInfo, name, shape, dtype, scale, zp)
                self.inputs.append(info)
                return info
        readers = [f"{n.name or n.output[0]!r} ({n.op_type})" for n in g.node if name in n.input]
        raise OnnxImportError(f"integer graph input with no quantized consumer stating its scale and zero point (read "
                              f"by {', '.join(readers) or 'no node'}; allowed a first reader DequantizeLinear, a "
                              f"QLinear* operator, ConvInteger or MatMulInteger; a float input for a model that "
                              f"casts its input)", node=name)


def _bn_magnitudes(x: TensorInfo, out: TensorInfo, mult: np.ndarray, shift: np.ndarray,
                   bias_of) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the weight magnitude in 64..127 and the bias nudge (0, -1 or +1 from the nearest) for a
    BatchNormalization's affine ``mult * x + shift`` whose integer result (bias ``bias_of(weight_scales)`` plus
    the nudge, requantised in single rounding) equals the real affine quantized into ``out`` on the most of the
    input's codes: the first candidate (127 without nudge, then down) that agrees on every code, else the best.
    Every magnitude gives an exact weight; they differ in how the int32 bias rounds, so this picks a bias that
    lands on no quantisation tie the input's codes can reach, where one exists (then the layer is exact on every
    code)."""
    from .requant import quantize_multipliers, requantize

    codes = np.arange(x.qmin, x.qmax + 1, dtype=np.int64) - x.zero_point
    # the target: onnxruntime's float32 evaluation (DequantizeLinear, x * mult + shift in float32 as its
    # BatchNormalization / Mul / Add kernels compute it, QuantizeLinear), so that an input whose real result lies
    # within float32 rounding of a tie comes out as onnxruntime's does
    real = codes.astype(np.float32) * np.float32(x.scale)
    y = real[None, :] * mult.astype(np.float32)[:, None] + shift.astype(np.float32)[:, None]
    want = np.clip(np.rint(y / np.float32(out.scale)).astype(np.float64) + out.zero_point, out.qmin, out.qmax)
    best, nudge = np.full(mult.size, 127), np.zeros(mult.size, np.int64)
    best_bad = np.full(mult.size, np.iinfo(np.int64).max)
    for m in range(127, 63, -1):
        todo = np.nonzero(best_bad > 0)[0]  # channels without a candidate that agrees everywhere yet
        if not todo.size:
            break
        ws = np.where(mult != 0, np.abs(mult) / m, 1.0).astype(np.float32).astype(np.float64)
        base = bias_of(ws).astype(np.int64)[todo]
        mq, sq = quantize_multipliers(x.scale * ws[todo] / out.scale)
        for d in (0, -1, 1):
            acc = (base + d)[:, None] + (np.sign(mult[todo]) * m).astype(np.int64)[:, None] * codes[None, :]
            got = requantize(acc, mq[:, None], sq[:, None], out.zero_point, out.qmin, out.qmax, "single")
            bad = (got != want[todo]).sum(axis=1)
            better = bad < best_bad[todo]
            best[todo] = np.where(better, m, best[todo])
            nudge[todo] = np.where(better, d, nudge[todo])
            best_bad[todo] = np.where(better, bad, best_bad[todo])
    return best, nudge, want, best_bad


def _affine_fit(x: TensorInfo, out: TensorInfo, want: np.ndarray, w: int, bias0: int,
                reach: int = 8) -> tuple[float, int] | None:
    """A weight scale and bias for one channel of an affine whose weight is ``w``, with which the integer result
    (single rounding) equals ``want`` (the output codes for every input code) exactly, or None. The requantised
    value is ``round(r * (bias + w * q))``: for each bias within ``reach`` of ``bias0`` the multipliers ``r`` that
    put every code in its rounding interval form one interval (an intersection of half-open intervals); its
    middle is taken and checked in fixed point. The weight scale is then ``r * s_out / s_in``. This is what the
    magnitude search cannot do: move the slope by less than one weight step."""
    from .requant import quantize_multiplier, requantize

    codes = np.arange(x.qmin, x.qmax + 1, dtype=np.int64) - x.zero_point
    k = want.astype(np.float64) - out.zero_point  # the wanted value of round(r * acc)
    for b in sorted(range(bias0 - reach, bias0 + reach + 1), key=lambda v: abs(v - bias0)):
        acc = (b + w * codes).astype(np.float64)
        lo, hi = 0.0, np.inf
        ok = True
        for a, kk, low_clamped, high_clamped in zip(acc, k, want <= out.qmin, want >= out.qmax):
            # round(r a) == kk, or <= kk where the output clamps low, >= kk where it clamps high
            lower = -np.inf if low_clamped else kk - 0.5
            upper = np.inf if high_clamped else kk + 0.5
            if a == 0:
                ok = lower <= 0 < upper
            elif a > 0:
                lo, hi = max(lo, lower / a), min(hi, upper / a)
            else:
                lo, hi = max(lo, upper / a), min(hi, lower / a)
            if not ok or lo >= hi:
                ok = False
                break
        if not ok or not np.isfinite(hi) or hi <= 0:
            continue
        r = (lo + hi) / 2
        ws = r * out.scale / x.scale
        m, sh = quantize_multiplier(x.scale * ws / out.scale)
        got = requantize(b + w * codes, m, sh, out.zero_point, out.qmin, out.qmax, "single")
        if np.array_equal(got, want):
            return ws, b
    return None


def widen_4bit_array(a: np.ndarray) -> np.ndarray:
    """ONNX int4 / uint4 tensors (opset 21; ``quantize_static(weight_type=QuantType.QInt4)``'s weights, decoded
    by onnx as ml_dtypes' int4 / uint4) as int8 / uint8 arrays of the same values: small integers, exact. Other
    arrays unchanged."""
    name = getattr(a.dtype, "name", "")
    if name == "int4":
        return a.astype(np.int8)
    if name == "uint4":
        return a.astype(np.uint8)
    return a


@dataclass
class _FakeNode:
    """Stands for the ONNX node of a pending layer in error messages and layer names."""
    name: str
    op_type: str
    out: str

    @property
    def output(self):
        return [self.out]


#: QLinear operators: input index of each quantized activation (followed by its scale and zero point).
_QLINEAR_INPUTS = {
    "QLinearConv": lambda n: (0,), "QLinearMatMul": lambda n: (0,), "QGemm": lambda n: (0,),
    "QLinearAdd": lambda n: (0, 3), "QLinearMul": lambda n: (0, 3), "QLinearAveragePool": lambda n: (0,), "QLinearGlobalAveragePool": lambda n: (0,),
    "QLinearConcat": lambda n: tuple(range(2, n, 3)), "QLinearSoftmax": lambda n: (0,),
    "QLinearSigmoid": lambda n: (0,), "QLinearLeakyRelu": lambda n: (0,),
}
#: Shape operators folded when their data is a constant (:meth:`_Importer.fold`).
_FOLDABLE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"}
#: What to do about an operator the importer does not take, where there is a better answer than the list.
_ADVICE = {
    "LogSoftmax": "onnxruntime leaves it in float as the graph output; end the model before it (its argmax is the "
                  "logits' argmax) or end it with a Softmax, which the host side of a run computes",
    "ArgMax": "end the model before it: every command reports the argmax of the first output (top-1)",
    "ReduceL2": "an L2 normalisation is not an 8-bit operator; end the model before it (an embedding's direction "
                "is that of the unnormalised vector)",
    "LpNormalization": "an L2 normalisation is not an 8-bit operator; end the model before it",
    "Cast": "casts of computed tensors are not supported; a uint8 image input is given as float real values "
            "(divide by 255 in the data, not in the model)",
    "LayerNormalization": "normalisations over the channels are not supported (allowed BatchNormalization)",
    "InstanceNormalization": "normalisations of each image's planes are not supported (allowed BatchNormalization)",
    "GroupNormalization": "normalisations of each image's channel groups are not supported (allowed "
                          "BatchNormalization)",
}

#: Operators evaluated at import when every input is a constant (shape arithmetic around ``Shape``, constant
#: weights built by the graph), by onnx's reference implementation.
_CONST_EVAL = {"Gather", "Concat", "Cast", "Slice", "Mul", "Add", "Sub", "Div", "Range", "ConstantOfShape",
               "Equal", "Where", "Expand", "ReduceProd", "Neg", "Abs", "Floor", "Ceil", "Min", "Max", "Sqrt",
               "Identity", "Split", "Tile", "Pow"}
#: Element-wise operators of one data input imported as a table (:meth:`_Importer.elementwise_table`); their
#: other inputs are parameters (Clip's bounds, PRelu's slope).
_TABLE_UNARY = {"Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softplus",
                "Softsign", "ThresholdedRelu", "Mish", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Abs",
                "Neg", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign", "PRelu", "Relu", "Clip"}
_MS_OPS = {"QLinearLeakyRelu", "QLinearSigmoid", "QGemm", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
           "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax"}
#: Operators of both domains: com.microsoft's QuantizeLinear / DequantizeLinear (``quantize_static``'s
#: ``UseQDQContribOps``) are the ONNX ones (the same inputs and ``axis``), on the same int8/uint8 codes.
_BOTH_DOMAINS = {"QuantizeLinear", "DequantizeLinear"}
#: Operator types the importer understands.
SUPPORTED_OPS = tuple(sorted(n[3:] for n in dir(_Importer) if n.startswith("op_")))

#: ONNX operator -> (IR kinds it imports to, how); the operator support table (docs/operators.md) is generated
#: from it, and tests/test_golden_ops_operators.py checks it names every operator of :data:`SUPPORTED_OPS`.
IMPORTS_TO: dict[str, tuple[tuple[str, ...], str]] = {
    "QLinearConv": (("conv2d",), "QOperator"),
    "Conv": (("conv2d",), "QDQ"),
    "ConvInteger": (("conv_integer",), "int32 output"),
    "QLinearMatMul": (("dense", "matmul"), "QOperator; an N-D input is a `matmul`"),
    "MatMul": (("dense", "matmul"), "QDQ; an N-D input is a `matmul`"),
    "MatMulInteger": (("matmul_integer",), "int32 output"),
    "QGemm": (("dense",), "QOperator (com.microsoft); `alpha` > 0 in the weight scale"),
    "Gemm": (("dense",), "QDQ; `transB` 0 or 1, `alpha` > 0 in the weight scale, `beta` in the bias"),
    "QLinearAdd": (("add", "conv2d", "lut"), "QOperator (com.microsoft); with a per-channel constant a depthwise "
                                             "1x1 `conv2d`; with a scalar or of two functions of one tensor a `lut`"),
    "QLinearMul": (("mul", "conv2d", "lut"), "com.microsoft; of two tensors a `mul` (the second may be one value "
                                             "per channel, `(C, 1, 1)`: squeeze-and-excitation); by a per-channel "
                                             "constant a depthwise 1x1 `conv2d`; by a scalar or of two functions of "
                                             "one tensor (`x * Sigmoid(x)`) a `lut`"),
    "Add": (("add", "conv2d", "lut", "float_chain"), "float add between DequantizeLinear and QuantizeLinear; with a "
                                                     "per-channel constant a depthwise 1x1 `conv2d`; with a scalar, or "
                                                     "of two functions of one tensor, a `lut`; of a float result "
                                                     "(numerics \"onnx\") a `float_chain`"),
    "Mul": (("mul", "conv2d", "lut", "float_chain"), "float product between DequantizeLinear and QuantizeLinear: "
                                                     "of two tensors a `mul` (one may be `(C, 1, 1)`); by a "
                                                     "per-channel constant a depthwise 1x1 `conv2d`; by a scalar or "
                                                     "of two functions of one tensor (`x * Sigmoid(x)`) a `lut`; "
                                                     "numerics \"onnx\": a `float_chain`"),
    "Sub": (("lut", "add", "float_chain"), "with scalar or per-channel constants, or of functions of one tensor, "
                                          "an element-wise table (as `Sigmoid`); of two computed tensors a "
                                          "negating `lut` then an `add` (the second may be `(C, 1, 1)`); numerics "
                                          "\"onnx\": a `float_chain`"),
    "Sum": (("add", "float_chain"), "n-ary float Sum: a chain of n - 1 adds; reading a float result (numerics "
                                    "\"onnx\") a `float_chain`"),
    "MaxPool": (("maxpool",), "on codes or QDQ; `ceil_mode` 1 as end padding"),
    "GlobalMaxPool": (("maxpool",), "a `maxpool` over the whole plane, on codes or a dequantized tensor; a "
                                    "requantising copy when its QuantizeLinear changes the quantisation"),
    "QLinearAveragePool": (("avgpool",), "QOperator (com.microsoft); `ceil_mode` 1 as for AveragePool, except "
                                         "that with `count_include_pad` the divisor is the whole window (its "
                                         "kernel's)"),
    "AveragePool": (("avgpool", "float_chain"), "QDQ; `ceil_mode` 1 as end padding that the divisor does not count "
                                                "(`method` \"integer\", or \"float\" with numerics \"onnx\"); of a "
                                                "float result a `float_chain` (numerics \"onnx\")"),
    "QLinearGlobalAveragePool": (("global_avgpool",), "QOperator (com.microsoft)"),
    "GlobalAveragePool": (("global_avgpool", "float_chain"), "QDQ, as `AveragePool`"),
    "ReduceMean": (("global_avgpool", "reshape", "float_chain"), "over axes 2 and 3 only: a `GlobalAveragePool` "
                                                                "(then a `reshape` with `keepdims` 0)"),
    "ReduceMax": (("maxpool", "reshape"), "over axes 2 and 3 only: a `GlobalMaxPool` (then a `reshape` with "
                                          "`keepdims` 0)"),
    "Gather": (("conv2d", "dense", "resize"), "of a computed tensor by constant 1-D indices: of the channels a "
                                              "one-hot 1x1 `conv2d` (`dense` on a vector), of rows or columns a "
                                              "`resize` gather; of constants folded"),
    "Slice": (("conv2d", "dense"), "of channels, rows and columns (steps >= 1, not the batch axis): a one-hot "
                                   "`conv2d` (depthwise when every channel is kept; `dense` on a vector)"),
    "Split": (("conv2d", "dense"), "along channels, rows or columns: a one-hot `conv2d` per output, as `Slice`"),
    "QLinearConcat": (("concat",), "QOperator (com.microsoft)"),
    "Concat": (("concat",), "on codes or QDQ"),
    "Reshape": (("reshape", "conv2d"), "a channel shuffle's last Reshape is a permutation `conv2d`"),
    "Flatten": (("reshape",), "axis 1"),
    "Squeeze": (("reshape",), "on codes or QDQ, not of the batch axis; of a constant folded at import"),
    "Unsqueeze": (("reshape",), "on codes or QDQ, not of the batch axis; of a constant folded at import"),
    "Resize": (("resize",), "mode `nearest` (every coordinate transformation and nearest mode, `scales` or "
                            "`sizes` of the spatial axes), on codes or QDQ; `linear` and `cubic` refused"),
    "Shape": ((), "a constant, the batch dimension 1; the shape arithmetic after it (Gather, Concat, Cast, Slice, "
                  "Mul, ...) folds at import, so `x.view(x.size(0), -1)` is a `reshape`"),
    "DepthToSpace": (("conv2d", "resize"), "PixelShuffle (DCR, CRD): a transposed convolution of one-hot weights, "
                                           "as `ConvTranspose`"),
    "SpaceToDepth": (("conv2d",), "a convolution of kernel and stride blocksize by one-hot weights"),
    "ConvTranspose": (("conv2d", "resize"), "QDQ: a zero `Pad` (`conv2d`), a `resize` gather spreading the input "
                                            "`stride` apart, and a stride-1 `conv2d` by the flipped kernel; explicit "
                                            "pads, output_padding, dilation, group"),
    "Transpose": (("conv2d", "reshape"), "the channel shuffle (perm 0, 2, 1, 3, 4): a permutation 1x1 `conv2d`; "
                  "channels-last (tf2onnx): of the float input a host-side step, before a Gemm / MatMul a "
                  "`reshape` with the weights' columns permuted"),
    "Pad": (("conv2d", "resize"), "of H and W; constant, by real zero: a depthwise 1x1 `conv2d` of weight 1 with "
                                  "that padding; reflect and edge: a `resize` gather of rows and columns"),
    "Relu": (("clamp", "lut"), "fused into the producer's output clamp where exact, else a `clamp`; of a table's "
                               "float value part of the `lut`"),
    "Clip": (("clamp", "lut"), "ReLU6 / Clip: fused into the producer's output clamp where exact, else a `clamp`; "
                               "of a table's float value part of the `lut`"),
    "BatchNormalization": (("conv2d", "float_chain"), "left between DequantizeLinear and QuantizeLinear: a "
                                                      "depthwise 1x1 `conv2d`; numerics \"onnx\": a `float_chain`"),
    "QLinearSoftmax": (("softmax",), "com.microsoft; `method` \"table\""),
    "Softmax": (("softmax",), "between DequantizeLinear and QuantizeLinear; `method` \"float\""),
    "LRN": (("lrn",), "between DequantizeLinear and QuantizeLinear"),
    "QLinearSigmoid": (("lut",), "com.microsoft: a table of onnxruntime's own node over the 256 codes"),
    "QLinearLeakyRelu": (("lut",), "com.microsoft: a table of onnxruntime's own node over the 256 codes"),
    **{op: (("lut", "float_chain"), "element-wise, between DequantizeLinear and QuantizeLinear (scalar "
                                    "parameters, or per-channel: a table per channel): a table of onnxruntime's "
                                    "evaluation at the 256 codes; chains of them and `x * f(x)` are one table")
       for op in ("Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softplus",
                  "Softsign", "ThresholdedRelu", "Mish", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Abs",
                  "Neg", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign", "PRelu", "Div", "Pow", "Max",
                  "Min")},
    "QuantizeLinear": ((), "graph-input quantisation, or the end of a QDQ layer"),
    "DequantizeLinear": ((), "the start of a QDQ layer, or weights and biases"),
    "Identity": ((), "no layer"),
    "Dropout": ((), "no layer (inference)"),
    "Constant": ((), "a constant"),
}


#: :func:`load_onnx`'s ``numerics``: ``"fabric"`` what the fabric computes, ``"onnx"`` onnxruntime's float parts.
NUMERICS = ("fabric", "onnx")


def read_model(model):
    """The ``onnx.ModelProto`` of a path or serialized bytes (a proto as it is), read with its external data.

    Raises
    ------
    OnnxImportError
        The file or bytes do not parse, or the model's external .data file is missing (the message names the
        file).
    """
    import onnx
    from google.protobuf.message import DecodeError

    if not isinstance(model, (str, Path, bytes, bytearray)):
        return model
    try:
        if isinstance(model, (str, Path)):
            return onnx.load(str(model))
        return onnx.load_from_string(bytes(model))
    except (DecodeError, ValueError, OSError, onnx.checker.ValidationError) as e:  # the last: missing external
        # data (a model copied without its .data file)
        where = {"node": str(model)} if isinstance(model, (str, Path)) else {}
        raise OnnxImportError(f"not a readable ONNX model (corrupted?): {e}", **where) from None


def load_onnx(model, name: str | None = None, *, numerics: str = "fabric") -> Graph:
    """Import a quantized ONNX model.

    Parameters
    ----------
    model : str, pathlib.Path, bytes or onnx.ModelProto
    name : str, optional
        Graph name (default: the file stem or the ONNX graph name).
    numerics : {"fabric", "onnx"}
        How the parts onnxruntime computes in float are imported (:data:`NUMERICS`). ``"fabric"`` (default): as
        the fabric computes them, with the kinds it runs (a QDQ average pool in the integer form, ``method
        "integer"``; a float chain through int8 intermediates), so the compiler maps every layer and the RTL
        equals the golden model. ``"onnx"``: the golden model reproduces onnxruntime's float32 computation (a
        QDQ average pool ``method "float"``; a float chain as one golden-only
        :class:`~cimforge.golden.ir.FloatChain`), which is what the agreement with onnxruntime is judged on
        (``cimforge golden``, bench/bench_models.py). The two differ only there (docs/operators.md).

    Returns
    -------
    Graph

    Raises
    ------
    OnnxImportError
        For a file that is missing or does not parse, a float-only model, dynamic or missing shapes, and any
        unsupported operator or attribute (naming the node, its operator and why).
    """
    import onnx

    if isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise OnnxImportError("model file does not exist", node=str(model))
        name = name or Path(model).stem
    proto = read_model(model)
    if not isinstance(proto, onnx.ModelProto):
        raise OnnxImportError(f"expected a path, bytes or onnx.ModelProto, got {type(proto).__name__}")
    if not proto.graph.node:
        raise OnnxImportError("the model has no nodes (empty or corrupted file?)", node=name)
    # No onnx.checker here: it refuses graph outputs without a shape, which onnxruntime accepts and hand-made
    # models often have; the importer checks what it uses and wraps anything unexpected per node.
    name = name or proto.graph.name or "model"
    if numerics not in NUMERICS:
        raise OnnxImportError(f"numerics {numerics!r}: allowed {', '.join(NUMERICS)}")
    return _Importer(proto, name, numerics=numerics).run()


# ----------------------------------------------------------------------------------------------------------
# Shape-only import: any ONNX model (float, QDQ or QOperator) as a ShapeGraph, for partitioning and what-if cost
# studies. Shapes come from ONNX shape inference; weights may be initializers or constant subgraphs (the
# topologies shipped with the onnx package build theirs with ConstantOfShape). Nothing is quantized or executed.


class UnknownOpWarning(UserWarning):
    """A shape-only import met operators it does not know and carried them as ``"other"`` layers (the message
    names them)."""


#: Weighted operators: op type -> (data input index, weight input index).
_SHAPE_WEIGHTED = {
    "Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3),
    "Gemm": (0, 1), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "QGemm": (0, 3),
}
_SHAPE_CONV = {"Conv", "ConvInteger", "QLinearConv"}
#: Operators without weights whose data is their first computed input.
_SHAPE_UNARY = {
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
    "Softsign", "Gelu", "Erf", "Softmax", "LogSoftmax", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "LRN", "Dropout", "Identity", "Cast", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeLinear", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
    "Pad", "Resize", "Upsample", "Split", "Slice", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Not", "ReduceMean", "ReduceMax", "ReduceSum", "QLinearLeakyRelu", "QLinearSigmoid",
}
#: Element-wise operators of two or more computed tensors (residual adds and the like).
_SHAPE_MERGE = {"Add", "Sum", "Sub", "Mul", "Div", "Max", "Min", "Mean", "QLinearAdd", "QLinearMul"}
_SHAPE_CONCAT = {"Concat", "QLinearConcat"}
#: Operators whose outputs are constants when their inputs are (shape computations, weight construction).
_SHAPE_CONST = {"Constant", "ConstantOfShape"}
_SHAPE_KNOWN = frozenset(_SHAPE_WEIGHTED) | _SHAPE_UNARY | _SHAPE_MERGE | _SHAPE_CONCAT | _SHAPE_CONST | {
    "Shape", "Gather", "Range"}
#: IR kinds of the operators that have an IR class; the other known ones are ``"unary"``.
_SHAPE_KIND = {"MaxPool": "maxpool", "AveragePool": "avgpool", "QLinearAveragePool": "avgpool",
               "GlobalAveragePool": "global_avgpool", "QLinearGlobalAveragePool": "global_avgpool",
               "Reshape": "reshape", "Flatten": "reshape", "Squeeze": "reshape", "Unsqueeze": "reshape",
               "Relu": "clamp", "Clip": "clamp"}
#: Contrib (com.microsoft) ops ONNX shape inference does not know, whose output has their first input's shape.
_SAME_SHAPE = {"QLinearAdd", "QLinearMul", "QLinearLeakyRelu", "QLinearSigmoid", "QuickGelu", "FusedGelu"}


def load_onnx_shapes(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
                     name: str | None = None):
    """Read any ONNX model (float, QDQ or QOperator) as a :class:`~cimforge.golden.ir.ShapeGraph`.

    Every computed node becomes a :class:`~cimforge.golden.ir.LayerShape`: convolutions and matrix products
    with constant weights are ``conv2d`` / ``dense`` with their shapes, operators the IR has a class for take
    its kind, the other known ones are ``unary`` / ``merge``, and unknown operators (and products of two
    computed tensors) are ``other``. The batch dimension (symbolic or 1) is dropped.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    input_shapes : mapping, optional
        Shapes to impose on graph inputs (``{"data_0": (1, 3, 224, 224)}``, batch included) before shape
        inference, for models with symbolic spatial dimensions.
    name : str, optional
        Graph name (default: the file's stem).

    Raises
    ------
    OnnxImportError
        The file cannot be read, shape inference fails, or a weighted layer's shapes stay unknown (the message
        names the node and the tensor).

    Warns
    -----
    UnknownOpWarning
        Unknown operators, carried as ``other`` layers.
    """
    path = Path(path)
    key = tuple(sorted((k, tuple(v)) for k, v in (input_shapes or {}).items()))
    try:
        stat = path.stat()
    except OSError as e:
        raise OnnxImportError(f"model {str(path)!r}: cannot read it ({e.strerror})") from None
    view, unknown = _load_shapes_cached(str(path.resolve()), stat.st_mtime_ns, key, name or path.stem)
    if unknown:
        note = " (where ONNX cannot infer their output, it is taken to have their first input's shape)"
        warnings.warn(UnknownOpWarning(unknown_ops_message(view.name, unknown, note)), stacklevel=2)
    return view


def unknown_ops_message(model: str, unknown: dict[str, list[str]], note: str = "") -> str:
    """The :class:`UnknownOpWarning` text: each unknown op with (up to four of) its nodes."""
    parts = [f"{op} (node{'s' if len(ns) > 1 else ''} {', '.join(ns[:4])}{', ...' if len(ns) > 4 else ''})"
             for op, ns in sorted(unknown.items())]
    return f"model {model!r}: unknown ops carried as zero-cost layers: " + "; ".join(parts) + note


@lru_cache(maxsize=32)
def _load_shapes_cached(path: str, mtime: int, input_shapes: tuple, name: str):
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(path)
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError and others
        raise OnnxImportError(f"model {path!r}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    for inp_name, shape in input_shapes:
        inputs = [i for i in graph.input if i.name == inp_name]
        if not inputs:
            real = [i.name for i in graph.input if i.name not in inits]
            raise OnnxImportError(f"model {path!r}: no graph input {inp_name!r}; inputs are {real}")
        dims = inputs[0].type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dims.add().dim_value = int(d)
    # Contrib ops (QLinearAdd, ...) stop ONNX shape inference; fill their outputs in and infer again.
    for _ in range(16):
        try:
            model = shape_inference.infer_shapes(model, data_prop=True)
        except Exception as e:  # noqa: BLE001 - any inference failure is reported with its text
            raise OnnxImportError(f"model {path!r}: ONNX shape inference failed: {e}") from None
        shapes, types = _shape_table(model.graph)
        added = _propagate_contrib_shapes(list(model.graph.node), shapes, _const_tensors(model.graph))
        if not added:
            break
        for t, (shape, like) in added.items():
            elem = types.get(t) or types.get(like) or onnx.TensorProto.FLOAT
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(t, elem, list(shape)))
    return _ShapeBuilder(model.graph, path).build(name)


def _dims(vi) -> tuple | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)


def _shape_table(graph) -> tuple[dict[str, tuple | None], dict[str, int]]:
    shapes: dict[str, tuple | None] = {}
    types: dict[str, int] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        shapes[vi.name] = _dims(vi)
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes, types


def _const_tensors(graph) -> set[str]:
    """Initializers and everything computed from constants only (weights built by ConstantOfShape, shapes)."""
    const = {i.name for i in graph.initializer}
    for n in graph.node:
        ins = [i for i in n.input if i]
        if n.op_type in _SHAPE_CONST or n.op_type == "Shape" or (ins and all(i in const for i in ins)):
            const.update(o for o in n.output if o)
    return const


def _node_attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _propagate_contrib_shapes(nodes: list, shapes: dict, const: set) -> dict[str, tuple[tuple, str]]:
    """Output shapes of contrib ops whose inputs' shapes are known and outputs' are not: ``{tensor: (shape,
    first input)}`` (the input gives the element type)."""
    added: dict[str, tuple] = {}
    for n in nodes:
        out = n.output[0] if n.output else None
        if not out or shapes.get(out) is not None:
            continue
        ins = [i for i in n.input if i and i not in const]
        first = shapes.get(ins[0]) if ins else None
        if first is None or not all(isinstance(d, int) for d in first[1:]):
            continue
        if n.op_type in _SAME_SHAPE or n.op_type not in _SHAPE_KNOWN:
            # Unknown ops are assumed to keep their first input's shape (the warning says so).
            added[out] = first
        elif n.op_type == "QLinearGlobalAveragePool" and len(first) >= 3:
            added[out] = tuple(first[:2]) + (1,) * (len(first) - 2)
        elif n.op_type == "QLinearConcat":
            # inputs: y_scale, y_zp, then (x, scale, zp) triples
            xs = [shapes.get(n.input[k]) for k in range(2, len(n.input), 3)]
            axis = int(_node_attr(n, "axis", 1)) % len(first)
            if all(x is not None and len(x) == len(first) for x in xs):
                added[out] = tuple(sum(x[axis] for x in xs) if d == axis else first[d] for d in range(len(first)))
    for t, shape in added.items():
        shapes[t] = shape
    return {t: (shape, next(i for i in n.input if i and i not in const))
            for n in nodes for t, shape in added.items() if n.output and n.output[0] == t}


@dataclass
class _ShapeBuilder:
    """One pass over an inferred ONNX graph making the :class:`LayerShape` of every computed node."""

    graph: object
    source: str

    def __post_init__(self):
        self.shapes, _ = _shape_table(self.graph)
        self.const = _const_tensors(self.graph)
        self.producer = {o: n for n in self.graph.node for o in n.output}

    def build(self, name: str):
        from .ir import LayerShape, ShapeGraph, with_flattened_sources

        nodes = list(self.graph.node)
        for k, n in enumerate(nodes):
            if not n.name:
                n.name = f"{n.op_type}_{k}"
        real = [i for i in self.graph.input if i.name not in self.const]
        if not real:
            raise OnnxImportError(f"model {self.source!r}: the graph has no non-constant input")
        layers: list[LayerShape] = []
        unknown: dict[str, list[str]] = defaultdict(list)
        for n in nodes:
            if all(o in self.const for o in n.output if o):
                continue
            kind, kw = self.kind(n)
            if kind == "other":
                unknown[n.op_type].append(n.name)
            ins = [n.input[_SHAPE_WEIGHTED[n.op_type][0]]] if kind in ("conv2d", "dense") else self.act_inputs(n)
            if kind not in ("conv2d", "dense"):
                kw.update(input_shapes=tuple(self.per_sample(i) for i in ins),
                          output_shape=self.per_sample(n.output[0]))
            try:
                layers.append(LayerShape(n.name, kind, tuple(ins), tuple(o for o in n.output if o), op=n.op_type, **kw))
            except IRError as e:
                raise OnnxImportError(str(e), node=n.name, op=n.op_type) from None
        inputs = {i.name: self.per_sample(i.name) for i in real}
        outputs = tuple(o.name for o in self.graph.output if o.name not in self.const)
        try:
            view = ShapeGraph(name, inputs, tuple(with_flattened_sources(layers)), outputs, self.source)
        except IRError as e:
            raise OnnxImportError(str(e), node=name) from None
        return view, dict(unknown)

    def per_sample(self, tensor: str) -> tuple | None:
        s = self.shapes.get(tensor)
        return None if s is None else tuple(s[1:])

    def act_inputs(self, n) -> list[str]:
        ins = [i for i in n.input if i and i not in self.const]
        return ins[:1] if n.op_type in _SHAPE_UNARY and ins else ins

    def kind(self, n) -> tuple[str, dict]:
        """The view's kind of node ``n`` and, for weighted layers, their shapes and window."""
        op = n.op_type
        if op in _SHAPE_WEIGHTED and not (op in ("MatMul", "MatMulInteger", "Gemm")
                                          and n.input[_SHAPE_WEIGHTED[op][1]] not in self.const):
            return ("conv2d", self.conv(n)) if op in _SHAPE_CONV else ("dense", self.dense(n))
        if op not in _SHAPE_KNOWN or op in _SHAPE_WEIGHTED:
            return "other", {}  # unknown ops, and products of two computed tensors (attention)
        if op in _SHAPE_CONCAT:
            axis = int(_node_attr(n, "axis", 1))
            return "concat", {"axis": axis - 1 if axis > 0 else axis}
        if op in _SHAPE_MERGE and len(self.act_inputs(n)) >= 2:
            return ("add" if op in ("Add", "Sum", "QLinearAdd") and len(self.act_inputs(n)) == 2 else "merge"), {}
        kind = _SHAPE_KIND.get(op, "unary")
        if kind in ("maxpool", "avgpool") and _node_attr(n, "kernel_shape", None):
            k = tuple(_node_attr(n, "kernel_shape", ()))
            return kind, {"kernel": k, "stride": tuple(_node_attr(n, "strides", (1,) * len(k)))}
        return kind, {}

    def known(self, tensor: str, node, rank: tuple[int, ...]) -> tuple[int, ...]:
        shape = self.shapes.get(tensor)
        if shape is None or len(shape) not in rank or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
            raise OnnxImportError(
                f"cannot infer the shape of tensor {tensor!r} ({'input' if tensor in node.input else 'output'} of "
                f"{node.op_type} node {node.name!r}): got {shape}; give the input shape (input_shapes, or "
                f"--input-shape NAME=1x3x224x224 on the command line)")
        return shape

    def conv(self, n) -> dict:
        x, w = n.input[_SHAPE_WEIGHTED[n.op_type][0]], n.input[_SHAPE_WEIGHTED[n.op_type][1]]
        xs, ys = self.known(x, n, (3, 4, 5)), self.known(n.output[0], n, (3, 4, 5))
        ws = self.shapes.get(w)
        kernel = tuple(_node_attr(n, "kernel_shape", ())) or (tuple(ws[2:]) if ws and len(ws) > 2 else None)
        if not kernel:
            raise OnnxImportError(f"cannot infer the kernel of {n.op_type} node {n.name!r}: no kernel_shape and "
                                  f"weight {w!r} has shape {ws}")
        stride = tuple(_node_attr(n, "strides", (1,) * len(kernel)))
        return dict(input_shapes=(tuple(xs[1:]),), output_shape=tuple(ys[1:]), kernel=kernel, stride=stride,
                    groups=int(_node_attr(n, "group", 1)))

    def dense(self, n) -> dict:
        x, w, y = n.input[_SHAPE_WEIGHTED[n.op_type][0]], n.input[_SHAPE_WEIGHTED[n.op_type][1]], n.output[0]
        xs, ws = self.known(x, n, (2, 3, 4)), self.shapes.get(w)
        if self.shapes.get(y) is None and ws and len(ws) == 2 and all(isinstance(d, int) for d in ws):
            # Contrib ops (QGemm) have no ONNX shape inference: the output follows from the weight's shape.
            n_out = ws[0] if _node_attr(n, "transB", 0) else ws[1]
            self.shapes[y] = tuple(xs[:-1]) + (n_out,)
        ys = self.known(y, n, (2, 3, 4))
        k = int(xs[0] if n.op_type == "Gemm" and _node_attr(n, "transA", 0) else xs[-1])
        # leading axes of the output are positions (a sequence): the input is taken to have the same
        return dict(input_shapes=((*ys[1:-1], k),), output_shape=tuple(ys[1:]))
