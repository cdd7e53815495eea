"""Named topologies: the real CNNs shipped with the onnx package, the project's digits models, and the layer
lists the AccPar authors evaluate (declared shapes, as in their networks/Alexnet.txt and ``gen_resnet``).

The onnx package's ``backend/test/data/light`` models carry batch 1 and 3 x 224 x 224 inputs (checked for every
file); the cost models take the batch as a parameter.
"""

from __future__ import annotations

from pathlib import Path

from .network import Layer, Network, PartitionError, chain, sequential

__all__ = ["ONNX_LIGHT", "light_dir", "resolve", "load_model", "digits_cnn", "accpar_alexnet", "accpar_resnet50",
           "MODELS_DIR"]

#: Short name -> file in onnx/backend/test/data/light/.
ONNX_LIGHT = {
    "alexnet": "light_bvlc_alexnet.onnx", "vgg19": "light_vgg19.onnx", "resnet50": "light_resnet50.onnx",
    "squeezenet": "light_squeezenet.onnx", "inception_v1": "light_inception_v1.onnx",
    "inception_v2": "light_inception_v2.onnx", "densenet121": "light_densenet121.onnx",
    "shufflenet": "light_shufflenet.onnx", "zfnet512": "light_zfnet512.onnx",
}
#: The project's model fixtures (digits CNN and its residual variant), written by models/make_digits_models.py.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def light_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def digits_cnn() -> Network:
    """The digits CNN's topology before its co-design for 64-row macros (8x8x1 input, conv3x3 8ch, ReLU, pool,
    conv3x3 16ch, ReLU, pool, FC 10), built without an ONNX file; models/digits_cnn_float.onnx now has an 8x8
    stem and 8-tap 3x3 kernels (models/make_digits_models.py)."""
    return sequential("digits_cnn", (1, 8, 8), [("conv", 8, 3, 1, 1), ("relu",), ("pool", 2),
                                                ("conv", 16, 3, 1, 1), ("relu",), ("pool", 2), ("fc", 10)])


def accpar_alexnet() -> Network:
    """AlexNet as the AccPar authors declare it (networks/Alexnet.txt: pooling folded into the next layer)."""
    convs = [(3, 224, 11, 96, 55), (96, 55, 5, 256, 27), (256, 27, 3, 384, 13), (384, 13, 3, 384, 13),
             (384, 13, 3, 256, 6)]
    layers = [Layer(f"conv{i + 1}", "Conv", "conv", ci, co, (h, h), (ho, ho), (k, k))
              for i, (ci, h, k, co, ho) in enumerate(convs)]
    layers += [Layer(f"fc{i + 1}", "Gemm", "fc", ci, co) for i, (ci, co) in
               enumerate([(9216, 4096), (4096, 4096), (4096, 1000)])]
    return chain("accpar_alexnet", layers, input_shape=(3, 224, 224))


def accpar_resnet50() -> Network:
    """ResNet-50 as the AccPar authors generate it (``gen_resnet(50)``: 49 convolutions without the projection
    shortcuts, every block's input taken as its bottleneck width, one fc), with a shortcut into each layer ``l``
    with ``l % 3 == 1, l > 3`` from layer ``l - 3`` (``is_layer_short_cut_in``)."""
    layers = [Layer("cv1", "Conv", "conv", 3, 64, (224, 224), (56, 56), (7, 7))]
    for stage, (repeat, width, hw) in enumerate([(3, 64, 56), (4, 128, 28), (6, 256, 14), (3, 512, 7)], start=2):
        for _ in range(repeat):
            for k, co in ((1, width), (3, width), (1, 4 * width)):
                layers.append(Layer(f"cv{stage}{len(layers) + 1}", "Conv", "conv", width, co, (hw, hw), (hw, hw), (k, k)))
    layers.append(Layer("fc", "Gemm", "fc", 2048, 1000))
    blocks = [(l - 3, l) for l in range(4, 50) if l % 3 == 1]
    return chain("accpar_resnet50", layers, blocks, input_shape=(3, 224, 224))


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


def load_model(model: str, input_shapes: dict | None = None) -> Network:
    """A network by name or path (see :func:`resolve`). ``digits`` falls back to :func:`digits_cnn` when
    models/ has no ONNX file."""
    from .onnx_import import load_onnx

    if model in _BUILTIN:
        return _BUILTIN[model]()
    path = resolve(model)
    if model in ("digits", "digits_cnn") and not path.exists():
        return digits_cnn()
    return load_onnx(path, input_shapes, name=model if path.stem != model else None)
