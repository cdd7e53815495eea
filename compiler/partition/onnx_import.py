"""Layer shapes and data-flow edges from an ONNX model (float, QDQ or QOperator).

Shapes come from :func:`onnx.shape_inference.infer_shapes`; the batch dimension (symbolic or 1) is dropped, the
cost models take the batch as a parameter. Weights may be initializers or constant subgraphs (the topologies
shipped with the onnx package build theirs with ``ConstantOfShape``).

Edges between weighted layers follow the data through every known zero-cost op (activations, normalisation,
pooling, reshapes, quantize/dequantize), split by channel share at a ``Concat``, and at a residual merge
(``Add``/``Sum`` of two activations) they are made the way AccPar counts ResNet shortcuts: the branch that ends in
a weighted layer gives an ordinary inter-layer edge; an identity branch gives a ``block`` edge from the block's
first weighted layer (the other consumer of the shortcut's source) to the layer that consumes the merged tensor.

Unknown ops are carried as zero-cost layers (a :class:`~.network.UnknownOpWarning` names them) and the data is
followed through them.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from .graph_edges import Node, trace_edges
from .network import Layer, Network, PartitionError, UnknownOpWarning

__all__ = ["load_onnx", "WEIGHTED_OPS", "KNOWN_OPS"]

#: Weighted ops: op type -> (data input index, weight input index).
WEIGHTED_OPS = {
    "Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3),
    "Gemm": (0, 1), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "QGemm": (0, 3),
}
_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv"}
#: Zero-cost ops the data is followed through (first activation input).
_UNARY = {
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
    "Softsign", "Gelu", "Erf", "Softmax", "LogSoftmax", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "LRN", "Dropout", "Identity", "Cast", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeLinear", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
    "Pad", "Resize", "Upsample", "Split", "Slice", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Not", "ReduceMean", "ReduceMax", "ReduceSum", "QLinearLeakyRelu", "QLinearSigmoid",
}
#: Element-wise ops that merge two activations (residual adds).
_MERGE = {"Add", "Sum", "Sub", "Mul", "Div", "Max", "Min", "Mean", "QLinearAdd", "QLinearMul"}
_CONCAT = {"Concat", "QLinearConcat"}
#: Ops whose outputs are constants when their inputs are (shape computations, weight construction).
_CONST_OPS = {"Constant", "ConstantOfShape"}
KNOWN_OPS = frozenset(WEIGHTED_OPS) | _UNARY | _MERGE | _CONCAT | _CONST_OPS | {"Shape", "Gather", "Range"}


def _dims(vi: Any) -> tuple | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.rpartition("=")
    try:
        shape = tuple(int(x) for x in dims.lower().split("x"))
    except ValueError:
        raise PartitionError(f"input shape {text!r}: expected NAME=DxDxD (e.g. data_0=1x3x224x224)") from None
    return name, shape


def load_onnx(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
              name: str | None = None) -> Network:
    """Read an ONNX file into a :class:`~.network.Network`.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    input_shapes : mapping, optional
        Shapes to impose on graph inputs (``{"data_0": (1, 3, 224, 224)}``) before shape inference, for
        models with symbolic spatial dimensions.
    name : str, optional
        Display name (default: the file's stem).

    Raises
    ------
    PartitionError
        The file cannot be read, shape inference fails, or a weighted layer's shapes stay unknown (the message
        names the node and tensor).

    Warns
    -----
    UnknownOpWarning
        Unknown ops, carried as zero-cost layers.
    """
    path = Path(path)
    key = tuple(sorted((k, tuple(v)) for k, v in (input_shapes or {}).items()))
    try:
        stat = path.stat()
    except OSError as e:
        raise PartitionError(f"model {str(path)!r}: cannot read it ({e.strerror})") from None
    net, unknown = _load_cached(str(path.resolve()), stat.st_mtime_ns, key, name or path.stem)
    if unknown:
        note = " (where ONNX cannot infer their output, it is taken to have their first input's shape)"
        warnings.warn(UnknownOpWarning(_unknown_message(net.name, unknown, note)), stacklevel=2)
    return net


def _unknown_message(model: str, unknown: dict[str, list[str]], note: str = "") -> str:
    parts = [f"{op} (node{'s' if len(ns) > 1 else ''} {', '.join(ns[:4])}{', ...' if len(ns) > 4 else ''})"
             for op, ns in sorted(unknown.items())]
    return f"model {model!r}: unknown ops carried as zero-cost layers: " + "; ".join(parts) + note


@lru_cache(maxsize=32)
def _load_cached(path: str, mtime: int, input_shapes: tuple, name: str) -> tuple[Network, dict]:
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(path)
    except Exception as e:  # onnx raises DecodeError and others
        raise PartitionError(f"model {path!r}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    graph = model.graph
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    for inp_name, shape in input_shapes:
        inputs = [i for i in graph.input if i.name == inp_name]
        if not inputs:
            real = [i.name for i in graph.input if i.name not in inits]
            raise PartitionError(f"model {path!r}: no graph input {inp_name!r}; inputs are {real}")
        dims = inputs[0].type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dims.add().dim_value = int(d)
    # Contrib ops (QLinearAdd, ...) stop ONNX shape inference; fill their outputs in and infer again.
    for _ in range(16):
        try:
            model = shape_inference.infer_shapes(model, data_prop=True)
        except Exception as e:
            raise PartitionError(f"model {path!r}: ONNX shape inference failed: {e}") from None
        shapes, types = _shape_table(model.graph)
        const = _const_tensors(model.graph)
        added = _propagate_contrib_shapes(list(model.graph.node), shapes, const)
        if not added:
            break
        for t, (shape, like) in added.items():
            elem = types.get(t) or types.get(like) or onnx.TensorProto.FLOAT
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(t, elem, list(shape)))
    return _build(model, name, path)


def _shape_table(graph: Any) -> tuple[dict[str, tuple | None], dict[str, int]]:
    shapes: dict[str, tuple | None] = {}
    types: dict[str, int] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        shapes[vi.name] = _dims(vi)
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes, types


def _const_tensors(graph: Any) -> set[str]:
    """Initializers and everything computed from constants only (weights built by ConstantOfShape, shapes)."""
    const = {i.name for i in graph.initializer}
    for n in graph.node:
        ins = [i for i in n.input if i]
        if n.op_type in _CONST_OPS or n.op_type == "Shape" or (ins and all(i in const for i in ins)):
            const.update(o for o in n.output if o)
    return const


def _build(model: Any, name: str, source: str) -> tuple[Network, dict]:
    graph = model.graph
    shapes, _ = _shape_table(graph)
    const = _const_tensors(graph)
    producer: dict[str, Any] = {}
    nodes = list(graph.node)
    for k, n in enumerate(nodes):
        if not n.name:
            n.name = f"{n.op_type}_{k}"
        for o in n.output:
            producer[o] = n

    def act_inputs(n: Any) -> list[str]:
        if n.op_type in WEIGHTED_OPS and n.name in layer_of:
            return [n.input[WEIGHTED_OPS[n.op_type][0]]]
        ins = [i for i in n.input if i and i not in const]
        if n.op_type in _UNARY and ins:
            return ins[:1]
        return ins

    real_inputs = [i for i in graph.input if i.name not in const]
    if not real_inputs:
        raise PartitionError(f"model {source!r}: the graph has no non-constant input")
    in_shape = shapes.get(real_inputs[0].name) or ()

    layers: list[Layer] = []
    layer_of: dict[str, int] = {}      # node name -> layer index
    unknown: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        if all(o in const for o in n.output if o):
            continue
        op = n.op_type
        if op in WEIGHTED_OPS and not (op in ("MatMul", "MatMulInteger", "Gemm")
                                       and n.input[WEIGHTED_OPS[op][1]] not in const):
            layer_of[n.name] = len(layers)
            layers.append(_weighted_layer(n, shapes, producer, const))
        elif op not in KNOWN_OPS or op in WEIGHTED_OPS:
            # Unknown ops, and products of two activations (attention), are carried at zero cost.
            unknown[op].append(n.name)
            layer_of[n.name] = len(layers)
            layers.append(Layer(n.name, op, "other"))

    graph_nodes = []
    for n in nodes:
        if all(o in const for o in n.output if o):
            continue
        li = layer_of.get(n.name)
        if li is not None:
            role = "weighted" if layers[li].weighted else "carried"
        elif n.op_type in _CONCAT:
            role = "concat"
        elif n.op_type in _MERGE and len(act_inputs(n)) >= 2:
            role = "merge"
        else:
            role = "unary"
        ins = act_inputs(n)
        shares = [_channels(shapes.get(i), n) for i in ins] if role == "concat" else []
        graph_nodes.append(Node(n.name, role, ins, [o for o in n.output if o], shares))
    edge_list = trace_edges(graph_nodes, layer_of)
    net = Network(name, tuple(layers), edge_list, tuple(d for d in in_shape[1:] if isinstance(d, int)), source)
    return net, dict(unknown)


#: Contrib (com.microsoft) ops ONNX shape inference does not know, whose output has their first input's shape.
_SAME_SHAPE = {"QLinearAdd", "QLinearMul", "QLinearLeakyRelu", "QLinearSigmoid", "QuickGelu", "FusedGelu"}


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
        if n.op_type in _SAME_SHAPE or n.op_type not in KNOWN_OPS:
            # Unknown ops are assumed to keep their first input's shape (the warning says so).
            added[out] = first
        elif n.op_type == "QLinearGlobalAveragePool" and len(first) >= 3:
            added[out] = tuple(first[:2]) + (1,) * (len(first) - 2)
        elif n.op_type == "QLinearConcat":
            # inputs: y_scale, y_zp, then (x, scale, zp) triples
            xs = [shapes.get(n.input[k]) for k in range(2, len(n.input), 3)]
            axis = int(_attr(n, "axis", 1)) % len(first)
            if all(x is not None and len(x) == len(first) for x in xs):
                added[out] = tuple(sum(x[axis] for x in xs) if d == axis else first[d] for d in range(len(first)))
    for t, shape in added.items():
        shapes[t] = shape
    return {t: (shape, next(i for i in n.input if i and i not in const))
            for n in nodes for t, shape in added.items() if n.output and n.output[0] == t}


def _channels(shape: tuple | None, node: Any) -> float:
    axis = 1
    for a in node.attribute:
        if a.name == "axis":
            axis = a.i
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        return 1.0
    return float(shape[axis])


def _known(shape: tuple | None, tensor: str, node: Any, rank: tuple[int, ...]) -> tuple[int, ...]:
    if shape is None or len(shape) not in rank or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise PartitionError(
            f"cannot infer the shape of tensor {tensor!r} ({'input' if tensor in node.input else 'output'} of "
            f"{node.op_type} node {node.name!r}): got {shape}; give the input shape (--input-shape NAME=1x3x224x224)")
    return shape


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _weighted_layer(n: Any, shapes: dict, producer: dict, const: set) -> Layer:
    op = n.op_type
    x, w = n.input[WEIGHTED_OPS[op][0]], n.input[WEIGHTED_OPS[op][1]]
    y = n.output[0]
    if op in _CONV_OPS:
        xs = _known(shapes.get(x), x, n, (3, 4, 5))
        ys = _known(shapes.get(y), y, n, (3, 4, 5))
        ws = shapes.get(w)
        groups = int(_attr(n, "group", 1))
        kernel = tuple(_attr(n, "kernel_shape", ())) or (tuple(ws[2:]) if ws and len(ws) > 2 else None)
        if not kernel:
            raise PartitionError(f"cannot infer the kernel of {op} node {n.name!r}: no kernel_shape and weight "
                                 f"{w!r} has shape {ws}")
        stride = tuple(_attr(n, "strides", (1,) * len(kernel)))
        return Layer(n.name, op, "conv", int(xs[1]), int(ys[1]), tuple(xs[2:]), tuple(ys[2:]), kernel, stride, groups)
    xs = _known(shapes.get(x), x, n, (2, 3, 4))
    ws = shapes.get(w)
    if shapes.get(y) is None and ws and len(ws) == 2 and all(isinstance(d, int) for d in ws):
        # Contrib ops (QGemm) have no ONNX shape inference: the output follows from the weight's shape.
        n_out = ws[0] if _attr(n, "transB", 0) else ws[1]
        shapes[y] = tuple(xs[:-1]) + (n_out,)
    ys = _known(shapes.get(y), y, n, (2, 3, 4))
    trans_a = op == "Gemm" and _attr(n, "transA", 0)
    k = int(xs[0] if trans_a else xs[-1])
    seq = 1
    for d in ys[1:-1]:
        seq *= int(d)
    # An fc fed by a flattened C x h x w map remembers (h, w), for scaling topologies.
    flat = (1, 1)
    t = x
    while t in producer and producer[t].op_type in ("Reshape", "Flatten", "QuantizeLinear", "DequantizeLinear"):
        t = producer[t].input[0]
        s = shapes.get(t)
        if s and len(s) == 4 and all(isinstance(d, int) for d in s[1:]) and s[1] * s[2] * s[3] == k:
            flat = (int(s[2]), int(s[3]))
            break
    return Layer(n.name, op, "fc", k, int(ys[-1]), (seq, 1), (seq, 1), flat_hw=flat)
