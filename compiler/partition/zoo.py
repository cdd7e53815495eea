"""Named topologies: the real CNNs shipped with the onnx package, the project's digits models, and the layer
lists the AccPar authors evaluate (declared shapes, as in their networks/Alexnet.txt and ``gen_resnet``), all as
:class:`cimforge.golden.ir.ShapeGraph` views.

The onnx package's ``backend/test/data/light`` models carry batch 1 and 3 x 224 x 224 inputs (checked for every
file); the cost models take the batch as a parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from cimforge.golden.datasets import MODELS_DIR
from cimforge.golden.ir import IRError, LayerShape, ShapeGraph, with_flattened_sources
from cimforge.golden.onnx_import import OnnxImportError, load_onnx_shapes

from .dataflow import PartitionError

__all__ = ["ONNX_LIGHT", "light_dir", "resolve", "load_model", "load_onnx", "sequential", "digits_cnn",
           "accpar_alexnet", "accpar_resnet50"]

#: Short name -> file in onnx/backend/test/data/light/.
ONNX_LIGHT = {
    "alexnet": "light_bvlc_alexnet.onnx", "vgg19": "light_vgg19.onnx", "resnet50": "light_resnet50.onnx",
    "squeezenet": "light_squeezenet.onnx", "inception_v1": "light_inception_v1.onnx",
    "inception_v2": "light_inception_v2.onnx", "densenet121": "light_densenet121.onnx",
    "shufflenet": "light_shufflenet.onnx", "zfnet512": "light_zfnet512.onnx",
}


def light_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def load_onnx(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
              name: str | None = None) -> ShapeGraph:
    """:func:`cimforge.golden.onnx_import.load_onnx_shapes` with its errors as :class:`PartitionError`; imposed
    input shapes must agree with the model (:func:`check_imposed_shapes`)."""
    try:
        if input_shapes:
            check_imposed_shapes(path, input_shapes)
        view = load_onnx_shapes(path, dict(input_shapes or {}), name)
    except OnnxImportError as e:
        raise PartitionError(_diagnose(path) or str(e)) from None
    if input_shapes:
        _check_weights_agree(path, view)
    return view


def _graph(path: str | Path):
    return _model(path).graph


def _model(path: str | Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError and others
        raise PartitionError(f"model {str(path)!r}: not a readable ONNX file ({type(e).__name__}: {e})") from None


def _diagnose(path: str | Path) -> str | None:
    """A clearer cause than "give the input shape" when shape inference stopped because of the model itself: a
    tensor nothing defines (a missing initializer) or an operator its opset does not have (an old opset)."""
    from onnx import defs

    try:
        model = _model(path)
    except PartitionError:
        return None
    graph = model.graph
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    defined = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    producer = {o: m.name or m.op_type for m in graph.node for o in m.output if o}
    for n in graph.node:
        for t in n.input:
            if t and t not in defined and t in producer:
                return (f"model {str(path)!r}: input {t!r} of {n.op_type} node {n.name!r} is produced by a later "
                        f"node {producer[t]!r}: allowed nodes in topological order (no cycle)")
            if t and t not in defined:
                return (f"model {str(path)!r}: input {t!r} of {n.op_type} node {n.name!r} is neither a graph input, "
                        "an initializer nor a node's output (a missing initializer?)")
        defined.update(o for o in n.output if o)
        domain = n.domain or "ai.onnx"
        if domain == "ai.onnx" and domain in opsets:
            try:
                defs.get_schema(n.op_type, opsets[domain], "")
            except defs.SchemaError:
                return (f"model {str(path)!r}: {n.op_type} node {n.name!r} does not exist in opset {opsets[domain]} "
                        f"of ai.onnx (the model's opset); allowed an opset that defines every operator it uses")
    return None


def check_imposed_shapes(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise :class:`PartitionError` when an imposed input shape (``--input-shape``) has another rank than the
    model's declared input, or another size on an axis the model fixes (the batch axis, 0, is free)."""
    graph = _graph(path)
    declared = {i.name: i for i in graph.input}
    for name, shape in input_shapes.items():
        if name not in declared:
            continue  # load_onnx_shapes names the inputs there are
        t = declared[name].type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        text = "x".join(str(d) for d in shape)
        want = "x".join(str(d) if d else "?" for d in dims)
        if len(dims) != len(shape):
            raise PartitionError(f"--input-shape {name}={text}: rank {len(shape)}, the model declares {name!r} as "
                                 f"{want} (rank {len(dims)})")
        for axis, (d, s) in enumerate(zip(dims, shape)):
            if axis and d and d != s:
                raise PartitionError(f"--input-shape {name}={text}: axis {axis} is {s}, the model fixes it at {d} "
                                     f"({name!r} is {want})")


def _check_weights_agree(path: str | Path, view: ShapeGraph) -> None:
    """Every weighted layer's input (from the imposed shapes, through ONNX shape inference) must fit its weights:
    convolution input channels = weight channels x groups, dense features = the weight's reduction axis."""
    from onnx import helper

    from cimforge.golden.onnx_import import _SHAPE_WEIGHTED

    graph = _graph(path)
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    nodes = {n.name or f"{n.op_type}_{k}": n for k, n in enumerate(graph.node)}
    for layer in view.weighted_layers:
        n = nodes.get(layer.name)
        if n is None or n.op_type not in _SHAPE_WEIGHTED:
            continue
        ws = inits.get(n.input[_SHAPE_WEIGHTED[n.op_type][1]])
        x = layer.input_shapes[0] if layer.input_shapes else None
        if not ws or not x or len(ws) < 2:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if layer.kind == "conv2d":
            want = ws[1] * int(attrs.get("group", 1))
            got = x[0]
        else:
            want = ws[1] if attrs.get("transB", 0) else ws[-2]
            got = x[-1]
        if want != got:
            raise PartitionError(f"--input-shape: layer {layer.name!r} ({n.op_type}) gets {got} input "
                                 f"{'channels' if layer.kind == 'conv2d' else 'features'}, its weights "
                                 f"{list(ws)} take {want}: the imposed input shape contradicts the weights")


def _layer(name: str, kind: str, x: str, in_shape: tuple, out_shape: tuple, **kw) -> LayerShape:
    op = {"conv2d": "Conv", "dense": "Gemm", "maxpool": "MaxPool", "clamp": "Relu", "reshape": "Flatten"}[kind]
    return LayerShape(name, kind, (x,), (name,), (in_shape,), out_shape, op=op, **kw)


def sequential(name: str, input_shape: tuple[int, int, int], specs: Iterable[tuple]) -> ShapeGraph:
    """Build a chain from simple specs, computing shapes like ONNX does.

    Specs: ``("conv", out_ch, k, stride=1, pad=0, groups=1)``, ``("pool", k, stride=k)`` (max or average: the
    same shapes), ``("fc", out_features)``, and shape-preserving ``("relu",)``. A ``fc`` after a map flattens it.
    Weighted layers are named ``conv<i>`` / ``fc<i>`` by their position among the weighted layers.

    Examples
    --------
    The digits CNN of ``models/``: ``sequential("digits", (1, 8, 8), [("conv", 8, 3, 1, 1), ("relu",),
    ("pool", 2), ("conv", 16, 3, 1, 1), ("relu",), ("pool", 2), ("fc", 10)])``.
    """
    shape, x, weighted = tuple(input_shape), "input", 0
    layers: list[LayerShape] = []
    try:
        for n, spec in enumerate(specs):
            op, *args = spec
            if op == "conv":
                out_ch, k, *rest = args
                s, p, g = (list(rest) + [1, 0, 1][len(rest):])[:3]
                c, h, w = shape
                ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
                if ho < 1 or wo < 1:
                    raise PartitionError(f"sequential {name!r}: spec {n} {spec} gives an empty map from {h}x{w}")
                new = _layer(f"conv{weighted}", "conv2d", x, shape, (out_ch, ho, wo), kernel=(k, k), stride=(s, s),
                             groups=g)
                weighted += 1
            elif op == "pool":
                k, *rest = args
                s = rest[0] if rest else k
                c, h, w = shape
                new = _layer(f"pool{n}", "maxpool", x, shape, (c, (h - k) // s + 1, (w - k) // s + 1),
                             kernel=(k, k), stride=(s, s))
            elif op == "fc":
                if len(shape) == 3:
                    layers.append(_layer(f"flatten{n}", "reshape", x, shape, (shape[0] * shape[1] * shape[2],)))
                    x, shape = layers[-1].output, layers[-1].output_shape
                new = _layer(f"fc{weighted}", "dense", x, shape, (args[0],))
                weighted += 1
            elif op == "relu":
                new = _layer(f"relu{n}", "clamp", x, shape, shape)
            else:
                raise PartitionError(f"sequential {name!r}: unknown spec {spec!r}; allowed conv, pool, fc, relu")
            layers.append(new)
            x, shape = new.output, new.output_shape
        return ShapeGraph(name, {"input": tuple(input_shape)}, tuple(with_flattened_sources(layers)), (x,))
    except IRError as e:
        raise PartitionError(f"sequential {name!r}: {e}") from None


def digits_cnn() -> ShapeGraph:
    """The digits CNN's topology before its co-design for 64-row macros (8x8x1 input, conv3x3 8ch, ReLU, pool,
    conv3x3 16ch, ReLU, pool, FC 10), built without an ONNX file; models/digits_cnn_float.onnx now has an 8x8
    stem and 8-tap 3x3 kernels (models/make_digits_models.py)."""
    return sequential("digits_cnn", (1, 8, 8), [("conv", 8, 3, 1, 1), ("relu",), ("pool", 2),
                                                ("conv", 16, 3, 1, 1), ("relu",), ("pool", 2), ("fc", 10)])


def _conv(name: str, x: str, ci: int, h: int, k: int, co: int, ho: int) -> LayerShape:
    """A declared convolution (stride 1: the authors' lists give the output size, not the stride)."""
    return _layer(name, "conv2d", x, (ci, h, h), (co, ho, ho), kernel=(k, k), stride=(1, 1))


def accpar_alexnet() -> ShapeGraph:
    """AlexNet as the AccPar authors declare it (networks/Alexnet.txt: pooling folded into the next layer)."""
    convs = [(3, 224, 11, 96, 55), (96, 55, 5, 256, 27), (256, 27, 3, 384, 13), (384, 13, 3, 384, 13),
             (384, 13, 3, 256, 6)]
    layers, x = [], "input"
    for i, (ci, h, k, co, ho) in enumerate(convs):
        layers.append(_conv(f"conv{i + 1}", x, ci, h, k, co, ho))
        x = layers[-1].output
    for i, (ci, co) in enumerate([(9216, 4096), (4096, 4096), (4096, 1000)]):
        layers.append(_layer(f"fc{i + 1}", "dense", x, (ci,), (co,)))
        x = layers[-1].output
    return ShapeGraph("accpar_alexnet", {"input": (3, 224, 224)}, tuple(layers), (x,))


def accpar_resnet50() -> ShapeGraph:
    """ResNet-50 as the AccPar authors generate it (``gen_resnet(50)``: 49 convolutions without the projection
    shortcuts, every block's input taken as its bottleneck width, one fc). Each bottleneck block's output is added
    to its input, which gives the authors' shortcuts (``is_layer_short_cut_in``): into each weighted layer ``l``
    with ``l % 3 == 1, l > 3`` from layer ``l - 3``."""
    layers = [_conv("cv1", "input", 3, 224, 7, 64, 56)]
    x, n_conv = layers[0].output, 1
    for stage, (repeat, width, hw) in enumerate([(3, 64, 56), (4, 128, 28), (6, 256, 14), (3, 512, 7)], start=2):
        for _ in range(repeat):
            block_in = x
            for k, co in ((1, width), (3, width), (1, 4 * width)):
                n_conv += 1
                layers.append(_conv(f"cv{stage}{n_conv}", x, width, hw, k, co, hw))
                x = layers[-1].output
            merged = f"res{n_conv}"
            layers.append(LayerShape(merged, "add", (x, block_in), (merged,), ((4 * width, hw, hw),) * 2,
                                     (4 * width, hw, hw), op="Add"))
            x = merged
    layers.append(_layer("fc", "dense", x, (2048,), (1000,)))
    return ShapeGraph("accpar_resnet50", {"input": (3, 224, 224)}, tuple(layers), ("fc",))


_BUILTIN = {"accpar_alexnet": accpar_alexnet, "accpar_resnet50": accpar_resnet50}


def resolve(model: str) -> Path | None:
    """The ONNX file a model name stands for: a path, a short name of :data:`ONNX_LIGHT`, or ``digits`` /
    ``digits_resnet`` (models/); ``None`` for the builtin declared networks."""
    if model in _BUILTIN:
        return None
    if model in ONNX_LIGHT:
        return light_dir() / ONNX_LIGHT[model]
    if model in ("digits", "digits_cnn", "digits_resnet"):
        stem = "digits_resnet" if model == "digits_resnet" else "digits_cnn"
        return MODELS_DIR / f"{stem}_float.onnx"
    p = Path(model)
    if p.suffix == ".onnx" or p.exists():
        return p
    raise PartitionError(f"model {model!r}: not a file; known names: "
                         + ", ".join([*ONNX_LIGHT, "digits", "digits_resnet", *_BUILTIN]))


def load_model(model: str, input_shapes: dict | None = None) -> ShapeGraph:
    """A topology by name or path (see :func:`resolve`). ``digits`` falls back to :func:`digits_cnn` when
    models/ has no ONNX file."""
    if model in _BUILTIN:
        return _BUILTIN[model]()
    path = resolve(model)
    if model in ("digits", "digits_cnn") and not path.exists():
        return digits_cnn()
    return load_onnx(path, input_shapes, name=model if path.stem != model else None)
