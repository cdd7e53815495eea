"""Judge the golden model by onnxruntime: run both on the same inputs and measure agreement tensor by tensor.

Every IR tensor carries the name of the ONNX tensor holding the same codes, so onnxruntime is asked for all of
them as extra graph outputs (its default session, graph optimisations included: the QDQ form then runs on
onnxruntime's fused integer kernels) and the codes are compared element by element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .ir import Graph

__all__ = ["TensorAgreement", "Agreement", "ort_tensors", "run_onnx", "compare_tensors", "layerwise",
           "AGREEMENT_MIN", "MAX_LSB", "mixed_sign_layers", "exact_reference", "SATURATION_NOTE"]

#: Acceptance bounds (issue 3): fraction of bit-identical elements, and the largest allowed difference.
AGREEMENT_MIN = 0.999
MAX_LSB = 1


@dataclass(frozen=True)
class TensorAgreement:
    """Agreement of one tensor: element count, bit-identical elements, largest absolute code difference."""

    name: str
    elements: int
    equal: int
    max_diff: int

    @property
    def fraction(self) -> float:
        return self.equal / self.elements if self.elements else 1.0


@dataclass(frozen=True)
class Agreement:
    """Agreement over many tensors (``tensors``) and in total."""

    tensors: tuple[TensorAgreement, ...]

    @property
    def elements(self) -> int:
        return sum(t.elements for t in self.tensors)

    @property
    def equal(self) -> int:
        return sum(t.equal for t in self.tensors)

    @property
    def fraction(self) -> float:
        return self.equal / self.elements if self.elements else 1.0

    @property
    def max_diff(self) -> int:
        return max((t.max_diff for t in self.tensors), default=0)

    @property
    def worst_fraction(self) -> float:
        """The lowest per-tensor fraction of identical elements."""
        return min((t.fraction for t in self.tensors), default=1.0)

    def ok(self, min_fraction: float = AGREEMENT_MIN, max_lsb: int = MAX_LSB) -> bool:
        """True when every tensor is at least ``min_fraction`` identical and none differs by more than
        ``max_lsb``."""
        return self.worst_fraction >= min_fraction and self.max_diff <= max_lsb

    def format(self, per_tensor: bool = True) -> str:
        lines = []
        if per_tensor:
            for t in self.tensors:
                lines.append(f"  {t.name:<48} {t.equal:>8}/{t.elements:<8} identical ({100 * t.fraction:7.3f}%), "
                             f"max diff {t.max_diff} LSB")
        lines.append(f"  total: {self.equal}/{self.elements} elements identical ({100 * self.fraction:.4f}%), "
                     f"worst tensor {100 * self.worst_fraction:.3f}%, max diff {self.max_diff} LSB")
        return "\n".join(lines)


def compare_tensors(golden: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> Agreement:
    """Compare the tensors present in both mappings (in ``golden``'s order); shapes must match."""
    out = []
    for name, g in golden.items():
        if name not in reference:
            continue
        r = np.asarray(reference[name])
        g = np.asarray(g)
        if g.shape != r.shape:
            raise ValueError(f"tensor {name!r}: golden shape {g.shape} != reference shape {r.shape}")
        d = np.abs(g.astype(np.int64) - r.astype(np.int64))
        out.append(TensorAgreement(name, int(d.size), int((d == 0).sum()), int(d.max()) if d.size else 0))
    return Agreement(tuple(out))


def _fixed_batch(proto) -> int | None:
    """The batch size the model's first input fixes (a positive ``dim_value``), or None when it is free."""
    graph_inputs = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in graph_inputs:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
        return None
    return None


#: onnxruntime's message prefix: error code, source location and the C++ signature of the function that failed
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (\S+:\d+ [^(]*\(.*?\) (?=[A-Z]))?")


def _ort_failure(what: str, e: Exception):
    from ..errors import UserError
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return UserError(f"onnxruntime cannot {what}: {_ORT_PREFIX.sub('', first) or first}")


def run_onnx(model, inputs: Mapping[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]:
    """onnxruntime's outputs for ``inputs`` (a leading batch axis on every array), in ``output_names`` order
    (default: the model's outputs).

    A model whose input fixes the batch (every model of the onnx model zoo has batch 1) is run that many samples
    at a time, the last chunk padded with copies of its first sample, and the outputs concatenated. A model
    whose input leaves the batch free but whose nodes pin it (a ``Resize`` with constant ``sizes`` or a
    ``Reshape`` with a constant shape whose batch entry is 1) is run image by image: its outputs would
    otherwise mix the images.

    Parameters
    ----------
    model : str, pathlib.Path, bytes or onnx.ModelProto
    inputs : mapping of str to numpy.ndarray
        By the model's input names; a single array under another name is given to a single-input model.

    Raises
    ------
    cimforge.errors.UserError
        onnxruntime refuses the model or the inputs (its first message line).
    """
    from .onnx_build import ort_session
    from .onnx_import import read_model

    proto = read_model(model)
    try:
        sess = ort_session(proto)
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors share no base class worth naming
        raise _ort_failure("load the model", e) from None
    names = [i.name for i in sess.get_inputs()]
    feeds = dict(inputs)
    if len(names) == 1 and len(feeds) == 1 and names[0] not in feeds:
        feeds = {names[0]: next(iter(feeds.values()))}
    output_names = output_names or [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    step = _fixed_batch(proto) or max(n, 1)
    chunks = []
    if step == n > 1:  # a free batch: one run, unless a node pins the batch (a Resize's or Reshape's constant
        # batch entry of 1, as exporters write for batch-1 models): then image by image, as a fixed batch
        try:
            outs = sess.run(output_names, feeds)
        except Exception:  # noqa: BLE001 - a pinned batch may refuse n images; image by image names a real error
            outs = None
        if outs is not None and all(np.ndim(o) == 0 or len(o) == n for o in outs):
            return [np.asarray(o) for o in outs]
        step = 1
    for s in range(0, n, step):
        part = {k: np.asarray(v)[s:s + step] for k, v in feeds.items()}
        k = len(next(iter(part.values())))
        if k < step:
            part = {name: np.concatenate([v, np.repeat(v[:1], step - k, axis=0)]) for name, v in part.items()}
        try:
            outs = sess.run(output_names, part)
        except Exception as e:  # noqa: BLE001
            raise _ort_failure(f"run the model on inputs {({n: v.shape for n, v in part.items()})}", e) from None
        chunks.append([np.asarray(o)[:k] if np.ndim(o) else np.asarray(o) for o in outs])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(output_names))]


def ort_tensors(model, graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run onnxruntime on ``model`` and return every IR tensor of ``graph`` that exists in the model.

    Parameters
    ----------
    model : str, pathlib.Path or onnx.ModelProto
        The model ``graph`` was imported from.
    graph : Graph
    inputs : mapping of str to numpy.ndarray
        The ONNX model's inputs by name (float arrays for float inputs, codes for integer inputs); a model
        with a fixed batch size is run in chunks of it (:func:`run_onnx`).

    Returns
    -------
    dict of str to numpy.ndarray
        Codes by IR tensor name, reshaped to ``(N, *tensor.shape)``.
    """
    import onnx

    from .onnx_import import read_model

    proto = read_model(model)
    proto_copy = onnx.ModelProto()
    proto_copy.CopyFrom(proto)
    g = proto_copy.graph
    existing = {o.name for o in g.output}
    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input}
    names = [t for t in graph.tensors if t in produced]
    four_bit = _four_bit_tensors(g)
    fetch = {}  # IR tensor -> the ONNX output that holds its codes
    for t in names:
        elem = onnx.helper.np_dtype_to_tensor_dtype(graph.tensors[t].np_dtype)
        if t in four_bit:  # onnxruntime returns no 4-bit arrays: a Cast to the IR's int8 / uint8 (exact)
            fetch[t] = f"{t}/as_{graph.tensors[t].dtype}"
            g.node.append(onnx.helper.make_node("Cast", [t], [fetch[t]], to=elem))
            g.output.append(onnx.helper.make_tensor_value_info(fetch[t], elem, None))
        elif t not in existing:
            g.output.append(onnx.helper.make_tensor_value_info(t, elem, None))
    out_names = [o.name for o in g.output]
    values = dict(zip(out_names, run_onnx(proto_copy, inputs, out_names)))
    values.update({t: values[f] for t, f in fetch.items()})
    result = {}
    for t in names:
        v = values.get(t)
        if v is None:  # a graph input of codes
            v = np.asarray(inputs[t])
        v = np.asarray(v)
        result[t] = v.reshape(v.shape[0], *graph.tensors[t].shape)
    return result


def _four_bit_tensors(g) -> dict[str, int]:
    """Outputs of QuantizeLinear / QLinear nodes whose zero point is an int4 / uint4 initializer (their ONNX
    element type; the IR holds such codes as int8 / uint8)."""
    import onnx

    four = {t.name: t.data_type for t in g.initializer if t.data_type in (onnx.TensorProto.INT4,
                                                                          onnx.TensorProto.UINT4)}
    out = {}
    for n in g.node:
        zp = n.input[2] if n.op_type == "QuantizeLinear" and len(n.input) > 2 else \
            n.input[7] if n.op_type in ("QLinearConv", "QLinearMatMul") and len(n.input) > 7 else None
        if zp in four:
            out[n.output[0]] = four[zp]
    return out


def layerwise(graph: Graph, reference: Mapping[str, np.ndarray], rounding: str | None = None) -> dict[str, np.ndarray]:
    """Each layer's golden output computed from the *reference's* values of its inputs.

    This isolates each operator: a 1 LSB difference in one layer is not propagated (and amplified by the
    following scales) into the next, as it is in an end-to-end run. A tensor the reference lacks (one the
    importer adds inside a chain onnxruntime computes in float, e.g. ``<name>/quantized``) is taken from this
    golden computation, so the chain is judged at its end as a whole; layers with an input neither has are
    skipped.
    """
    from .runner import run_layer

    out = {}
    for layer in graph.layers:
        src = [reference[t.name] if t.name in reference else out.get(t.name) for t in layer.inputs]
        if all(v is not None for v in src):
            out[layer.output.name] = run_layer(layer, *src, rounding=rounding)
    return out


#: Why a uint8 x int8 layer may differ from onnxruntime by many LSB (docs/golden.md).
SATURATION_NOTE = ("onnxruntime's uint8 x int8 kernels add pairs of products with int16 saturation on a CPU without "
                   "AVX-VNNI (VPMADDUBSW), so they are judged against an exact evaluation of the same integer layers")


def mixed_sign_layers(graph: Graph) -> list:
    """The convolutions and matrix products on uint8 activations (their weights are int8 in the IR): the layers
    onnxruntime may compute with its saturating uint8 x int8 kernels (:data:`SATURATION_NOTE`)."""
    return [l for l in graph.layers if l.kind in ("conv2d", "dense", "matmul") and l.input.dtype == "uint8"]


def exact_reference(layers, reference: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each of ``layers``' output codes evaluated exactly from the *reference's* inputs, as onnxruntime's
    requantisation would give them without the int16 saturation: the exact integer accumulator (bias included),
    times the float32 multiplier ``s_in s_w / s_out``, in float32, rounded half to even, plus the zero point,
    clamped to the layer's ``[act_min, act_max]``. Layers whose input the reference lacks are skipped."""
    from .ops import conv2d_acc, dense_acc

    out = {}
    for layer in layers:
        x = reference.get(layer.input.name)
        if x is None:
            continue
        conv = layer.kind == "conv2d"
        acc = conv2d_acc(layer, x) if conv else dense_acc(layer, x)
        m = (np.float32(layer.input.scale) * np.asarray(layer.weight_scale, np.float32)
             / np.float32(layer.output.scale)).astype(np.float32)
        if conv:
            m = m.reshape(-1, 1, 1)
        y = np.rint(acc.astype(np.float32) * m) + layer.output.zero_point
        out[layer.output.name] = np.clip(y, layer.act_min, layer.act_max).astype(layer.output.np_dtype)
    return out
