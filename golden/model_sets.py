"""The model sets of the real-network issues, built reproducibly at run time (nothing large is committed).

Two sets of float topologies, each quantized by onnxruntime's ``quantize_static`` on seeded random calibration
data, in QDQ or QOperator form, per-channel or per-tensor (:func:`build`):

* :data:`TINY_SET`, the MLPerf Tiny reference topologies, written here with ``onnx.helper`` as the reference
  Keras models define them (mlcommons/tiny ``benchmark/training``): ``resnet8`` (image classification,
  3x32x32, 16/32/64 channels, residual adds, a 1x1 stride-2 convolution on the shortcut of stacks 2 and 3),
  ``ds_cnn`` (keyword spotting, 1x49x10, a 10x4 stride-2 stem and four depthwise-separable blocks of 64
  channels, average pool 24x5), ``mobilenet_v1_025`` (visual wake words, 3x96x96, alpha 0.25: thirteen
  depthwise-separable blocks, 2 classes) and ``autoencoder`` (anomaly detection, 640 inputs, four 128-unit
  dense layers, an 8-unit bottleneck, four 128-unit dense layers, 640 outputs). The reference models train
  with BatchNormalization after every convolution or dense layer but the last, so these carry
  BatchNormalization nodes (not folded: the importer sees them); Keras' ``padding="same"`` is TensorFlow's
  (extra padding at the bottom/right, e.g. ``pads = [0, 0, 1, 1]`` for a 3x3 stride-2 convolution of an even
  input); classifiers end in Softmax as the references do. Batch dimension symbolic (``N``).
* :data:`IMAGENET_SET`: the topologies the onnx package ships under ``onnx/backend/test/data/light``
  (:data:`LIGHT_FILES`), whose weights are ``ConstantOfShape`` nodes filling 0.02 everywhere (every channel
  identical, which hides bugs), with every such constant replaced by a seeded random initializer of the same
  shape (:func:`randomize_light`) and the model converted to opset 13; plus ``mobilenet_v2`` (1.0, 224x224),
  written here: BatchNormalization folded, Clip(0, 6) as ReLU6, as exported models of it are. Batch 1 fixed,
  as the onnx package's models have it (the ``golden`` command runs such models image by image).

Weights are He-scaled (normal, variance ``2 / fan_in``) so that activations keep their magnitude through
convolution + ReLU chains; biases are non-zero; BatchNormalization parameters are random per channel with the
gain ``scale / sqrt(var)`` near 1, so a chain of them neither grows nor shrinks the signal. The branch of a
residual sum in the onnx package's models is damped (gain 1/2), so that the sums do not double the variance
per block.

Quantized models are cached under :func:`cache_dir` (``build/models`` below the working directory, or
``$CIMFORGE_MODELS_CACHE``), named by a hash of the model, the options, the seed, the onnx and onnxruntime
versions and :data:`BUILDER_VERSION`, and written atomically (a temporary file, then ``os.replace``) with a
SHA-256 beside them, so an interrupted build never leaves a half-written model and a corrupt entry is rebuilt;
a new build removes the entries of the same model and options with another key.

Example
-------
>>> from cimforge.golden import model_sets as ms                     # doctest: +SKIP
>>> path = ms.build("resnet8", fmt="qdq", per_channel=True, seed=0)  # doctest: +SKIP
>>> x = ms.sample_inputs("resnet8", 4, seed=1)                       # (4, 3, 32, 32) float32
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["TINY_SET", "IMAGENET_SET", "MODELS", "LIGHT_FILES", "FORMATS", "BUILDER_VERSION", "ModelSpec",
           "build", "float_model", "float_proto", "calibration_data", "sample_inputs", "cache_dir", "cache_key",
           "randomize_light", "light_dir"]

#: Bump when a builder changes what it writes: every cached model is rebuilt.
BUILDER_VERSION = 3
#: Quantized forms :func:`build` makes: onnxruntime's QuantFormat.QDQ and QuantFormat.QOperator.
FORMATS = ("qdq", "qop")
OPSET = 13
#: The onnx package's file for each model of the ImageNet set that it ships.
LIGHT_FILES = {
    "resnet50": "light_resnet50.onnx",
    "squeezenet": "light_squeezenet.onnx",
    "shufflenet": "light_shufflenet.onnx",
    "inception_v1": "light_inception_v1.onnx",
    "densenet121": "light_densenet121.onnx",
    "alexnet": "light_bvlc_alexnet.onnx",
    "zfnet512": "light_zfnet512.onnx",
    "vgg19": "light_vgg19.onnx",
}
_QUANT_TYPES = ("int8", "uint8")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a set: its name, set, per-sample input shape and calibration sample count."""

    name: str
    set: str
    input_shape: tuple[int, ...]
    calibration_samples: int
    about: str


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("resnet8", "tiny", (3, 32, 32), 8, "MLPerf Tiny image classification (CIFAR-10), ResNet-8"),
    ModelSpec("ds_cnn", "tiny", (1, 49, 10), 8, "MLPerf Tiny keyword spotting, DS-CNN (12 classes)"),
    ModelSpec("mobilenet_v1_025", "tiny", (3, 96, 96), 8, "MLPerf Tiny visual wake words, MobileNetV1 0.25"),
    ModelSpec("autoencoder", "tiny", (640,), 8, "MLPerf Tiny anomaly detection, FC autoencoder"),
    ModelSpec("resnet50", "imagenet", (3, 224, 224), 4, "onnx package light_resnet50, random weights"),
    ModelSpec("squeezenet", "imagenet", (3, 224, 224), 4, "onnx package light_squeezenet, random weights"),
    ModelSpec("shufflenet", "imagenet", (3, 224, 224), 4, "onnx package light_shufflenet, random weights"),
    ModelSpec("inception_v1", "imagenet", (3, 224, 224), 4, "onnx package light_inception_v1, random weights"),
    ModelSpec("densenet121", "imagenet", (3, 224, 224), 4, "onnx package light_densenet121, random weights"),
    ModelSpec("alexnet", "imagenet", (3, 224, 224), 4, "onnx package light_bvlc_alexnet, random weights"),
    ModelSpec("zfnet512", "imagenet", (3, 224, 224), 4, "onnx package light_zfnet512, random weights"),
    ModelSpec("vgg19", "imagenet", (3, 224, 224), 4, "onnx package light_vgg19, random weights"),
    ModelSpec("mobilenet_v2", "imagenet", (3, 224, 224), 4, "MobileNetV2 1.0 224x224, written here"),
)}
TINY_SET = tuple(n for n, s in MODELS.items() if s.set == "tiny")
IMAGENET_SET = tuple(n for n, s in MODELS.items() if s.set == "imagenet")


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"model {name!r}: allowed {', '.join(MODELS)}")
    return MODELS[name]


# -- random parameters ------------------------------------------------------------------------------------------

def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, rectified: bool = True) -> np.ndarray:
    """Normal weights of variance ``gain / fan_in``: gain 2 on a rectified (ReLU) input, whose second moment is
    half its variance (He et al. 2015), gain 1 on a linear input, so each layer keeps the signal's magnitude."""
    return (rng.standard_normal(shape) * np.sqrt((2.0 if rectified else 1.0) / fan_in)).astype(np.float32)


#: Operators whose output is non-negative when their inputs are (a rectified signal stays rectified).
_KEEPS_SIGN = {"MaxPool", "AveragePool", "GlobalAveragePool", "Reshape", "Flatten", "Transpose", "Dropout",
               "Concat"}


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(0.0, 0.1, n).astype(np.float32)


def _bn_params(rng: np.random.Generator, c: int, gain: float = 1.0, eps: float = 1e-5) -> list[np.ndarray]:
    """(scale, bias, mean, var) of a BatchNormalization over ``c`` channels whose per-channel gain
    ``scale / sqrt(var + eps)`` is ``gain`` times a random factor of mean square 1."""
    var = rng.uniform(0.5, 1.5, c)
    g = rng.uniform(0.75, 1.25, c) / np.sqrt(1 + 0.25 ** 2 / 3)
    scale = gain * g * np.sqrt(var + eps)
    return [a.astype(np.float32) for a in (scale, _bias(rng, c), rng.normal(0.0, 0.1, c), var)]


# -- the tiny set, written with onnx.helper ---------------------------------------------------------------------

def _same_pads(size: tuple[int, int], k: tuple[int, int], s: tuple[int, int]) -> list[int]:
    """TensorFlow's ``padding="same"``: output ``ceil(size / s)``, the odd pixel of padding at the bottom/right."""
    begin, end = [], []
    for n, kk, ss in zip(size, k, s):
        total = max((-(-n // ss) - 1) * ss + kk - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


class _Net:
    """Accumulates nodes and initializers of one float model; ``shape`` tracks the current (C, H, W)."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.count = rng, [], [], {}
        self.rectified: set[str] = set()  # tensors that are non-negative: ReLU / ReLU6 outputs, pooled ...
        self.consts: set[str] = set()

    def _name(self, kind: str) -> str:
        self.count[kind] = self.count.get(kind, 0) + 1
        return f"{kind}{self.count[kind]}"

    def const(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(np.asarray(value), base))
        self.consts.add(base)
        return base

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper
        name = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        if op in _KEEPS_SIGN and all(i in self.rectified for i in inputs if i not in self.consts):
            self.rectified.add(name)
        return name

    def conv(self, x: str, cin: int, cout: int, k, stride=1, pads=None, groups: int = 1) -> str:
        k = (k, k) if isinstance(k, int) else tuple(k)
        s = (stride, stride) if isinstance(stride, int) else tuple(stride)
        n = f"conv{self.count.get('conv', 0) + 1}"
        w = self.const(f"{n}.weight", _he(self.rng, (cout, cin // groups, *k), cin // groups * k[0] * k[1],
                                          x in self.rectified))
        b = self.const(f"{n}.bias", _bias(self.rng, cout))
        return self.node("Conv", [x, w, b], kernel_shape=list(k), strides=list(s),
                         pads=list(pads) if pads is not None else [0, 0, 0, 0], group=groups)

    def bn(self, x: str, c: int, gain: float = 1.0) -> str:
        n = f"bn{self.count.get('batchnormalization', 0) + 1}"
        params = [self.const(f"{n}.{p}", a) for p, a in zip(("scale", "bias", "mean", "var"),
                                                            _bn_params(self.rng, c, gain))]
        return self.node("BatchNormalization", [x, *params], epsilon=1e-5)

    def dense(self, x: str, fin: int, fout: int) -> str:
        n = f"fc{self.count.get('gemm', 0) + 1}"
        w = self.const(f"{n}.weight", _he(self.rng, (fout, fin), fin, x in self.rectified))
        b = self.const(f"{n}.bias", _bias(self.rng, fout))
        return self.node("Gemm", [x, w, b], transB=1)

    def relu(self, x: str) -> str:
        y = self.node("Relu", [x])
        self.rectified.add(y)
        return y

    def relu6(self, x: str) -> str:
        if not self.count.get("clip"):  # one pair of bounds, shared by every Clip
            self.const("relu6.min", np.float32(0.0))
            self.const("relu6.max", np.float32(6.0))
        y = self.node("Clip", [x, "relu6.min", "relu6.max"])
        self.rectified.add(y)
        return y

    def model(self, name: str, input_shape: tuple[int, ...], x_in: str, y: str, outputs: int, batch="N",
              doc: str = ""):
        from onnx import TensorProto, helper
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info(x_in, TensorProto.FLOAT, [batch, *input_shape])],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, [batch, outputs])], self.inits)
        m = helper.make_model(graph, producer_name="cimforge.golden.model_sets", producer_version=str(BUILDER_VERSION),
                              opset_imports=[helper.make_opsetid("", OPSET)], doc_string=doc)
        m.ir_version = 8
        return m


def _resnet8(rng) -> "onnx.ModelProto":
    net = _Net(rng)
    x = net.relu(net.bn(net.conv("input", 3, 16, 3, pads=_same_pads((32, 32), (3, 3), (1, 1))), 16))
    size, cin = 32, 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        y = net.conv(x, cin, cout, 3, stride, _same_pads((size, size), (3, 3), (stride, stride)))
        size = -(-size // stride)
        y = net.relu(net.bn(y, cout))
        y = net.bn(net.conv(y, cout, cout, 3, 1, _same_pads((size, size), (3, 3), (1, 1))), cout)
        if stride != 1:  # the reference's shortcut: a 1x1 stride-2 convolution, no BatchNormalization
            x = net.conv(x, cin, cout, 1, stride)
        x = net.relu(net.node("Add", [x, y]))
        cin = cout
    x = net.node("AveragePool", [x], kernel_shape=[size, size], strides=[size, size])
    x = net.node("Flatten", [x], axis=1)
    y = net.node("Softmax", [net.dense(x, 64, 10)], axis=-1)
    return net.model("resnet8", (3, 32, 32), "input", y, 10, doc=MODELS["resnet8"].about)


def _dw_separable(net: _Net, x: str, cin: int, cout: int, size: tuple[int, int], stride: int,
                  act: Callable[[str], str]) -> tuple[str, tuple[int, int]]:
    """Depthwise 3x3 (TF "same"), BN, activation, pointwise 1x1, BN, activation."""
    y = net.conv(x, cin, cin, 3, stride, _same_pads(size, (3, 3), (stride, stride)), groups=cin)
    y = act(net.bn(y, cin))
    size = (-(-size[0] // stride), -(-size[1] // stride))
    return act(net.bn(net.conv(y, cin, cout, 1), cout)), size


def _ds_cnn(rng):
    net = _Net(rng)
    x = net.conv("input", 1, 64, (10, 4), (2, 2), _same_pads((49, 10), (10, 4), (2, 2)))
    x = net.relu(net.bn(x, 64))
    size = (25, 5)
    for _ in range(4):
        x, size = _dw_separable(net, x, 64, 64, size, 1, net.relu)
    # the reference pools (49 // 2, 10 // 2) = (24, 5) over the 25x5 map: one output, the last row unused
    x = net.node("AveragePool", [x], kernel_shape=[24, 5], strides=[24, 5])
    x = net.node("Flatten", [x], axis=1)
    y = net.node("Softmax", [net.dense(x, 64, 12)], axis=-1)
    return net.model("ds_cnn", (1, 49, 10), "input", y, 12, doc=MODELS["ds_cnn"].about)


def _mobilenet_v1_025(rng):
    net = _Net(rng)
    c = 8
    x = net.relu(net.bn(net.conv("input", 3, c, 3, 2, _same_pads((96, 96), (3, 3), (2, 2))), c))
    size = (48, 48)
    # (output channels, stride) of the thirteen depthwise-separable blocks, alpha 0.25
    for cout, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), *[(128, 1)] * 5, (256, 2),
                         (256, 1)):
        x, size = _dw_separable(net, x, c, cout, size, stride, net.relu)
        c = cout
    x = net.node("AveragePool", [x], kernel_shape=list(size), strides=list(size))
    x = net.node("Flatten", [x], axis=1)
    y = net.node("Softmax", [net.dense(x, 256, 2)], axis=-1)
    return net.model("mobilenet_v1_025", (3, 96, 96), "input", y, 2, doc=MODELS["mobilenet_v1_025"].about)


def _autoencoder(rng):
    net = _Net(rng)
    x, fin = "input", 640
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = net.relu(net.bn(net.dense(x, fin, units), units))
        fin = units
    y = net.dense(x, fin, 640)
    return net.model("autoencoder", (640,), "input", y, 640, doc=MODELS["autoencoder"].about)


def _mobilenet_v2(rng):
    """MobileNetV2 1.0 (Sandler et al. 2018, table 2) at 224x224, BatchNormalization folded, symmetric padding
    as exported from PyTorch."""
    net = _Net(rng)
    x = net.relu6(net.conv("input", 3, 32, 3, 2, [1, 1, 1, 1]))
    c = 32
    for t, cout, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                          (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c * t
            y = net.relu6(net.conv(x, c, hidden, 1)) if t != 1 else x
            y = net.relu6(net.conv(y, hidden, hidden, 3, stride, [1, 1, 1, 1], groups=hidden))
            y = net.conv(y, hidden, cout, 1)
            x = net.node("Add", [x, y]) if stride == 1 and c == cout else y
            c = cout
    x = net.relu6(net.conv(x, c, 1280, 1))
    x = net.node("GlobalAveragePool", [x])
    x = net.node("Flatten", [x], axis=1)
    y = net.dense(x, 1280, 1000)
    return net.model("mobilenet_v2", (3, 224, 224), "input", y, 1000, batch=1, doc=MODELS["mobilenet_v2"].about)


_WRITERS = {"resnet8": _resnet8, "ds_cnn": _ds_cnn, "mobilenet_v1_025": _mobilenet_v1_025,
            "autoencoder": _autoencoder, "mobilenet_v2": _mobilenet_v2}


# -- the onnx package's light models, with random weights ------------------------------------------------------

def light_dir() -> Path:
    """The folder of the onnx package's light models (``onnx/backend/test/data/light``)."""
    import onnx
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _constant_fill(node) -> float | None:
    from onnx import helper, numpy_helper
    for a in node.attribute:
        if a.name == "value":
            return float(numpy_helper.to_array(helper.get_attribute_value(a)).ravel()[0])
    return 0.0


#: Operators whose non-first inputs :func:`randomize_light` draws at random.
_PARAM_USERS = {"Conv", "Gemm", "BatchNormalization", "Mul", "Add"}

#: What the light models' operators need to move from opset 9 to 13 (checked: the others did not change).
_LIGHT_OPS = {"ConstantOfShape", "Conv", "BatchNormalization", "Relu", "MaxPool", "Sum", "AveragePool", "Reshape",
              "Gemm", "Softmax", "Concat", "Dropout", "GlobalAveragePool", "Transpose", "LRN", "Unsqueeze", "Mul",
              "Add"}


def _light_to_opset13(proto):
    """A copy of a light model (opset 9) in opset 13, node for node.

    ``onnx.version_converter`` would wrap each Softmax in Shape/Flatten/Reshape and turn attributes into
    Constant nodes; instead the three operators that changed are rewritten in place: Unsqueeze takes its
    ``axes`` as an initializer input (opset 13), Dropout loses ``ratio`` (an input since opset 12; inference
    ignores it), and Softmax gets its axis explicitly, which keeps its meaning because the old
    "flatten from ``axis``" form and the new single axis agree when the axis is the last one of size > 1
    (checked on the inferred shapes).
    """
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
    shapes.update({v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in g.input})
    for node in g.node:
        if node.op_type not in _LIGHT_OPS:
            raise ValueError(f"{g.name}: node {node.name!r} ({node.op_type}) not in the opset 9 -> 13 rewrite")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Unsqueeze":
            axes = f"{node.output[0]}_axes"
            g.initializer.append(numpy_helper.from_array(np.asarray(attrs["axes"], np.int64), axes))
            node.input.append(axes)
            del node.attribute[:]
        elif node.op_type == "Dropout":
            del node.attribute[:]
        elif node.op_type == "Softmax":
            axis, dims = attrs.get("axis", 1), shapes[node.input[0]]
            if any(d != 1 for d in dims[axis + 1:]):
                raise ValueError(f"{g.name}: Softmax {node.name!r} over {dims} from axis {axis} changes meaning")
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axis", axis))
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("", OPSET))
    m.ir_version = 8
    return m


def randomize_light(proto, rng: np.random.Generator):
    """A copy of a light model with every ``ConstantOfShape`` weight (and every float initializer in a
    parameter's role) replaced by a seeded random initializer of the same shape, chosen by its role (which operator reads it, at which input, looking through an Unsqueeze
    or Reshape on the way), initializers dropped from the graph inputs, and the opset raised to 13
    (:func:`_light_to_opset13`).

    Roles: a Conv or Gemm weight is He-scaled by its fan-in (:func:`_he`; Gemm's ``transB`` respected), a bias
    is normal with sigma 0.1, a BatchNormalization's four parameters come together (:func:`_bn_params`; gain 1/2
    when its output feeds a Sum or Add: the residual branch), a per-channel Mul is uniform in 0.5..1.5 and a
    per-channel Add normal with sigma 0.1. A constant in any other role keeps its fill value.
    """
    from onnx import numpy_helper

    m = _light_to_opset13(proto)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, list[tuple[object, int]]] = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    fills = {n.output[0]: n for n in g.node if n.op_type == "ConstantOfShape" and n.input[0] in inits}
    rectified: set[str] = set()
    for node in g.node:
        data = [i for i in node.input if i not in inits and i not in fills]
        if node.op_type == "Relu" or (node.op_type in _KEEPS_SIGN and all(i in rectified for i in data)):
            rectified.add(node.output[0])

    def role(name: str) -> tuple[object, int] | None:
        users = consumers.get(name, [])
        if len(users) == 1 and users[0][0].op_type in ("Unsqueeze", "Reshape") and users[0][1] == 0:
            users = consumers.get(users[0][0].output[0], [])  # a weight reshaped on its way (inception_v1)
        return users[0] if len(users) == 1 else None

    # the parameters to draw: every fill, and the few float initializers some models carry over from training
    # (resnet50's first BatchNormalizations, densenet121's BatchNormalization scale 1 / bias 0, a bias of
    # 1e-5 in shufflenet): with random weights around them they would scale the signal arbitrarily
    shapes = {out: tuple(int(d) for d in inits[n.input[0]]) for out, n in fills.items()}
    for t in g.initializer:
        r = role(t.name)
        if inits[t.name].dtype == np.float32 and r and r[0].op_type in _PARAM_USERS and r[1] > 0:
            shapes[t.name] = inits[t.name].shape
    values: dict[str, np.ndarray] = {}
    for node in g.node:  # BatchNormalization parameters in fours, in node order (deterministic)
        if node.op_type == "BatchNormalization" and all(i in shapes for i in node.input[1:5]):
            c = shapes[node.input[1]][0]
            residual = any(u.op_type in ("Sum", "Add") for u, _ in consumers.get(node.output[0], []))
            for name, a in zip(node.input[1:5], _bn_params(rng, c, 0.5 if residual else 1.0)):
                values[name] = a
    for out in shapes:
        if out in values:
            continue
        shape, r = shapes[out], role(out)
        op, idx = (r[0].op_type, r[1]) if r else (None, None)
        if op == "Conv" and idx == 1:
            values[out] = _he(rng, shape, int(np.prod(shape[1:])), r[0].input[0] in rectified)
        elif op == "Gemm" and idx == 1:
            trans_b = any(a.name == "transB" and a.i for a in r[0].attribute)
            dims = [d for d in shape if d != 1] or [1, 1]  # (1, 1, N, K) reshaped to (N, K) in inception_v1
            fan_in = dims[-1] if trans_b else dims[0]
            values[out] = _he(rng, shape, fan_in, r[0].input[0] in rectified)
        elif (op in ("Conv", "Gemm") and idx == 2) or op == "Add":
            values[out] = _bias(rng, int(np.prod(shape))).reshape(shape)
        elif op == "Mul":
            values[out] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif out in fills:
            values[out] = np.full(shape, _constant_fill(fills[out]), np.float32)
    keep = [n for n in g.node if n.output[0] not in fills]
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    new_inits = [t for t in g.initializer if t.name in used and t.name not in values]
    new_inits += [numpy_helper.from_array(values[o], o) for o in shapes if o in values]
    del g.initializer[:]
    g.initializer.extend(new_inits)
    graph_inputs = [i for i in g.input if i.name not in inits]  # IR 3 listed every initializer as an input
    del g.input[:]
    g.input.extend(graph_inputs)
    m.producer_name, m.producer_version = "cimforge.golden.model_sets", str(BUILDER_VERSION)
    return m


def _light(name: str):
    def write(rng):
        import onnx
        return randomize_light(onnx.load(str(light_dir() / LIGHT_FILES[name])), rng)
    return write


for _n in LIGHT_FILES:
    _WRITERS[_n] = _light(_n)


# -- data -------------------------------------------------------------------------------------------------------

def _data(name: str, n: int, seed: int, stream: int) -> np.ndarray:
    spec = _spec(name)
    rng = np.random.default_rng([seed, stream, *name.encode()])
    return rng.standard_normal((n, *spec.input_shape)).astype(np.float32)


def calibration_data(name: str, n: int | None = None, seed: int = 0) -> np.ndarray:
    """``n`` seeded calibration samples ``(n, *input_shape)`` float32, standard normal (default: the model's
    :attr:`ModelSpec.calibration_samples`). Independent of :func:`sample_inputs` for the same seed."""
    return _data(name, _spec(name).calibration_samples if n is None else n, seed, 0)


def sample_inputs(name: str, n: int = 1, seed: int = 0) -> np.ndarray:
    """``n`` seeded test inputs ``(n, *input_shape)`` float32 from the calibration distribution (standard
    normal), drawn from a different stream than :func:`calibration_data`."""
    return _data(name, n, seed, 1)


# -- cache ------------------------------------------------------------------------------------------------------

def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The model cache: ``path``, else ``$CIMFORGE_MODELS_CACHE``, else ``build/models`` below the working
    directory."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("CIMFORGE_MODELS_CACHE", Path.cwd() / "build" / "models"))


def cache_key(name: str, **options) -> str:
    """A short hash of what decides a built file: model, options, seed, tool versions, builder version."""
    import onnx
    import onnxruntime
    text = json.dumps({"name": name, **options, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                       "builder": BUILDER_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached(path: Path, make: Callable[[Path], None]) -> Path:
    """``path`` when it and its ``.sha256`` agree, else made by ``make(temporary path)`` and moved into place
    (model first, digest second: a model without a matching digest is rebuilt)."""
    sidecar = path.with_name(path.name + ".sha256")
    if path.is_file() and sidecar.is_file():
        if sidecar.read_text().strip() == _digest(path):
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = _temporary(path)
    try:
        make(Path(tmp))
        digest = _digest(Path(tmp))
        os.replace(tmp, path)
        tmp = _temporary(path)
        Path(tmp).write_text(digest + "\n")
        os.replace(tmp, sidecar)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _prune(path)
    return path


def _temporary(path: Path) -> str:
    """A new empty file beside ``path`` with the permissions of an ordinary file (mkstemp makes it 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def _remove_stale_temporaries(path: Path, age_s: float = 3600.0) -> None:
    """Remove temporary files of ``path`` older than ``age_s``: a build killed by a signal leaves its temporary
    file behind, and no build (VGG-19 takes about a minute) runs that long."""
    import time
    for old in path.parent.glob(path.stem + ".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - old.stat().st_mtime > age_s:
                old.unlink()


def _prune(path: Path) -> None:
    """Remove the entries of the same model and options with another key (older builder or tool versions), so
    the cache does not grow by a VGG-19 per version."""
    prefix = path.name[: path.name.rindex("-") + 1]  # "<name>-<form>-s<seed>-"
    for old in path.parent.glob(prefix + "*.onnx"):
        if old != path and len(old.name) == len(path.name):
            for f in (old, old.with_name(old.name + ".sha256")):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()


def _save(proto, path: Path) -> None:
    import onnx
    onnx.save(proto, str(path))


def float_proto(name: str, seed: int = 0):
    """The float ONNX model ``name`` with weights from ``seed`` (built in memory, not cached)."""
    import onnx
    spec = _spec(name)
    m = _WRITERS[name](np.random.default_rng([seed, *name.encode()]))
    m.graph.name = m.graph.name or name
    if spec.set == "tiny" or name == "mobilenet_v2":
        onnx.checker.check_model(m)
    return m


def float_model(name: str, seed: int = 0, cache: str | os.PathLike | None = None) -> Path:
    """Path of the cached float ONNX model ``name`` with weights from ``seed`` (built on first use)."""
    key = cache_key(name, form="float", seed=seed)
    return _cached(cache_dir(cache) / f"{name}-float-s{seed}-{key}.onnx", lambda p: _save(float_proto(name, seed), p))


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer logs a pre-processing advice on the root logger on every call: hold it back."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(src: Path, dst: Path, name: str, fmt: str, per_channel: bool, activations: str, weights: str,
              seed: int) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import onnx
    proto = onnx.load(str(src))
    feed = next(i.name for i in proto.graph.input)
    data = calibration_data(name, seed=seed)

    class Reader(CalibrationDataReader):
        """One calibration sample per call (fixed-batch models take one image)."""

        def __init__(self):
            self.it = iter(data[i:i + 1] for i in range(len(data)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {feed: x}

    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with _quiet_quantizer():
        quantize_static(str(src), str(dst), Reader(),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        per_channel=per_channel, activation_type=qtype[activations], weight_type=qtype[weights])


def build(name: str, fmt: str = "qdq", per_channel: bool = True, seed: int = 0, *, activations: str = "int8",
          weights: str = "int8", cache: str | os.PathLike | None = None) -> Path:
    """Path of the quantized model ``name``, built on first use and cached.

    Parameters
    ----------
    name
        A model of :data:`TINY_SET` or :data:`IMAGENET_SET`.
    fmt
        ``"qdq"`` (QuantizeLinear/DequantizeLinear around float operators) or ``"qop"`` (QLinear* operators).
    per_channel
        Per-output-channel weight scales (else one per tensor).
    seed
        Seed of the weights and of the calibration data (:func:`calibration_data`).
    activations, weights
        ``"int8"`` or ``"uint8"``.
    cache
        Cache folder (default :func:`cache_dir`).

    Raises
    ------
    ValueError
        An unknown model, format or type (the message names the allowed values).
    """
    _spec(name)
    if fmt not in FORMATS:
        raise ValueError(f"fmt {fmt!r}: allowed {', '.join(FORMATS)}")
    for what, t in (("activations", activations), ("weights", weights)):
        if t not in _QUANT_TYPES:
            raise ValueError(f"{what} {t!r}: allowed {', '.join(_QUANT_TYPES)}")
    src = float_model(name, seed, cache)
    options = dict(form=fmt, per_channel=bool(per_channel), seed=seed, activations=activations, weights=weights,
                   calibration=_spec(name).calibration_samples)
    tag = f"{fmt}-{'pc' if per_channel else 'pt'}" + ("" if (activations, weights) == ("int8", "int8")
                                                       else f"-a{activations}-w{weights}")
    path = cache_dir(cache) / f"{name}-{tag}-s{seed}-{cache_key(name, **options)}.onnx"
    return _cached(path, lambda p: _quantize(src, p, name, fmt, per_channel, activations, weights, seed))
