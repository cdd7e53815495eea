"""Train, export and quantize the two digits CNNs committed beside this script.

Run from the project root (needs the optional ``train`` extra, i.e. torch)::

    .venv/bin/python models/make_digits_models.py [--out DIR]

(``--out`` writes elsewhere, e.g. to check that a rerun reproduces the committed files byte for byte.)

What it writes (all small, committed):

* ``digits_split.json``: the fixed split of scikit-learn's 1797 digits, stratified, seed 0: 450 test images,
  150 calibration images, 1197 training images (index lists, see :mod:`cimforge.golden.datasets`).
* ``digits_cnn_float.onnx``: conv8x8(1->8, "same") ReLU maxpool2, masked conv3x3(8->16) ReLU maxpool2, flatten,
  FC(64->10); quantized with per-tensor weight scales to ``digits_cnn_qop.onnx`` (QOperator form) and
  ``digits_cnn_qdq.onnx`` (QDQ form).
* ``digits_resnet_float.onnx``: conv8x8(1->8, "same") ReLU, a residual block (masked conv3x3 ReLU masked
  conv3x3, add, ReLU), masked conv3x3(8->16, stride 2) ReLU, global average pool, FC(16->10); quantized with
  per-channel weight scales to ``digits_resnet_qop.onnx`` and ``digits_resnet_qdq.onnx``.
* ``digits_models.json``: float and int8 (onnxruntime) accuracy on the test split at creation time.

The shapes are co-designed with the accelerator, whose macro column reduces over 64 rows (the reduction length
K = C_in x kernel taps fills the rows, one 64-row tile at a time):

* The stem is an 8x8 kernel on the one input channel, K = 64 (a 3x3 stem fills 9 of the 64 rows). It keeps
  the 8x8 output with the asymmetric "same" padding top/left 3, bottom/right 4, exported as one Conv with
  ``pads = [3, 3, 4, 4]`` (the Pad node torch emits is folded into the Conv, see :func:`fold_pad_into_conv`).
* Every 3x3 conv with 8 input channels has structured (filter-shape, SSL-style) sparsity: the tap
  (ky, kx) = (2, 2) is zero in every filter and channel, so K = 8 taps x 8 channels = 64, one tile instead of
  two for K = 72. Training multiplies the weight by a fixed mask (:func:`masked_conv3x3`), so the pruned tap
  stays exactly zero through BN folding and quantization (checked on the int8 weights, :func:`check_shapes`).

Batch normalisation is used in training and folded into the convolutions by the export.

Quantization is onnxruntime ``quantize_static`` (MinMax calibration on the calibration split, int8 activations
and weights). Reproducible: fixed seeds, one thread, deterministic torch algorithms; the split is written once
and reused if present.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from cimforge.golden.datasets import DIGITS_SPLIT, load_digits_split, make_digits_split

HERE = Path(__file__).resolve().parent

SEED = 0
EPOCHS = 60
#: Both quantized forms of each model are shipped, so both importers run on every real model.
FORMATS = ("qop", "qdq")
#: The 8x8 stem's "same" padding in torch's F.pad order (left, right, top, bottom) and as the ONNX Conv's
#: ``pads`` (top, left, bottom, right): 3 + 8 + 4 - 8 + 1 = 8 output rows and columns.
STEM_PAD = (3, 4, 3, 4)
STEM_ONNX_PADS = [3, 3, 4, 4]
#: The 3x3 kernel tap (ky, kx) pruned from every 8-input-channel 3x3 conv: 8 taps x 8 channels = 64 rows.
PRUNED_TAP = (2, 2)


def _torch():
    try:
        import torch
    except ImportError:
        sys.exit("make_digits_models.py needs torch: pip install -e '.[train]'")
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return torch


def stem(nn):
    """The 8x8 conv (1->8) with "same" output size: K = 1 x 8 x 8 = 64 fills a macro column's 64 rows. torch's
    Conv2d pads symmetrically only, so this one pads its input in forward (exported as a Pad that
    :func:`fold_pad_into_conv` folds into the Conv). One module, so the layers keep their names and indices
    (``/0/Conv``, ``/4/Conv``, ``/stem/stem.0/Conv``) from the 3x3-stem models."""

    class SameConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(nn.functional.pad(x, STEM_PAD))

    return SameConv(1, 8, 8)


def masked_conv3x3(nn, cin: int, cout: int, stride: int = 1):
    """A 3x3 conv (padding 1) whose weight is multiplied in every forward pass by a fixed mask that zeroes the
    tap :data:`PRUNED_TAP` of every filter and input channel (structured, filter-shape sparsity as in SSL):
    with 8 input channels K = 8 x 8 = 64, one 64-row tile instead of two for K = 72. A parametrization, so
    the optimizer only ever sees the masked weight; :func:`bake_masks` makes it a plain Conv for export."""

    class TapMask(nn.Module):
        def __init__(self, weight):
            super().__init__()
            mask = weight.new_ones(weight.shape)
            mask[:, :, PRUNED_TAP[0], PRUNED_TAP[1]] = 0
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    nn.utils.parametrize.register_parametrization(conv, "weight", TapMask(conv.weight))
    return conv


def build_cnn(nn):
    """The plain CNN: conv, ReLU, pool, conv, ReLU, pool, FC. Batch normalisation (which trains far better on
    1197 images) is folded into the convolutions by the ONNX export, so the exported graph has none."""
    return nn.Sequential(
        stem(nn), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        masked_conv3x3(nn, 8, 16), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


def build_resnet(nn):
    """The residual CNN: stem, one residual block, strided conv, global average pool, FC."""

    def bn(conv, cout):
        return nn.Sequential(conv, nn.BatchNorm2d(cout))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = bn(stem(nn), 8)
            self.conv1 = bn(masked_conv3x3(nn, 8, 8), 8)
            self.conv2 = bn(masked_conv3x3(nn, 8, 8), 8)
            self.down = bn(masked_conv3x3(nn, 8, 16, stride=2), 16)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 10)
            self.relu = nn.ReLU()

        def forward(self, x):
            s = self.relu(self.stem(x))
            y = self.conv2(self.relu(self.conv1(s)))
            y = self.relu(y + s)
            y = self.relu(self.down(y))
            return self.fc(self.pool(y).flatten(1))

    return Residual()


def train(torch, model, x, y, epochs: int = EPOCHS):
    """Adam with a cosine learning-rate schedule, batch 32, shuffling from a seeded generator. No augmentation:
    shifting 8x8 digits (tried) costs accuracy."""
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 32):
            b = perm[i:i + 32]
            opt.zero_grad()
            loss_fn(model(xt[b]), yt[b]).backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def bake_masks(torch, model) -> int:
    """Replace each masked weight by its masked value (a plain parameter with exact zeros at the pruned tap),
    so the export sees ordinary Convs and folds batch normalisation into them (a parametrized weight is
    exported as a Mul, which blocks the folding). Folding scales each filter, so the zeros stay zero.
    Returns the number of weights the masks hold at zero."""
    parametrize = torch.nn.utils.parametrize
    pruned = 0
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            pruned += int((module.parametrizations.weight[0].mask == 0).sum())
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return pruned


def export(torch, model, path: Path):
    """Legacy (TorchScript) ONNX export, opset 17, dynamic batch dimension only; the stem's Pad is then folded
    into its Conv."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    folded = fold_pad_into_conv(onnx.load(str(path)))
    onnx.checker.check_model(folded, full_check=True)
    onnx.save(folded, str(path))


def _constant(graph, name: str) -> np.ndarray:
    """The value of tensor ``name``, computed by the nodes it depends on, which must not depend on a graph
    input (the exporter computes ZeroPad2d's pads with a Constant / Reshape / Slice / Cast chain)."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = {t.name: t for t in graph.initializer}
    if name in inits:
        return numpy_helper.to_array(inits[name])
    producer = {o: n for n in graph.node for o in n.output}
    needed, todo, used_inits = set(), [name], set()
    while todo:
        t = todo.pop()
        if t in inits:
            used_inits.add(t)
        elif t in producer:
            node = producer[t]
            if id(node) not in needed:
                needed.add(id(node))
                todo.extend(i for i in node.input if i)
        else:
            raise ValueError(f"tensor {name!r} depends on graph input {t!r}: not a constant")
    nodes = [n for n in graph.node if id(n) in needed]
    sub = helper.make_graph(nodes, "constant", [], [onnx.ValueInfoProto(name=name)],
                            [inits[t] for t in sorted(used_inits)])
    model = helper.make_model(sub, opset_imports=[helper.make_opsetid("", 17)])
    return np.asarray(ReferenceEvaluator(model).run(None, {})[0])


def fold_pad_into_conv(model):
    """Fold each constant zero Pad that feeds only a Conv into the Conv's ``pads`` and drop the nodes left
    unused. torch exports the stem's ZeroPad2d as Pad -> Conv; the accelerator's importers (and any plain
    Conv consumer) then see one Conv with ``pads = [top, left, bottom, right]``.

    Raises
    ------
    ValueError
        A Pad that cannot be folded (non-constant mode or value, padding of batch or channels, several users).
    """
    from onnx import helper

    graph = model.graph
    users: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            users.setdefault(i, []).append(node)
    outputs = {o.name for o in graph.output}
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in pad.attribute}
        after = users.get(pad.output[0], [])
        if attrs.get("mode", b"constant") != b"constant" or len(after) != 1 or after[0].op_type != "Conv" \
                or pad.output[0] in outputs or len(pad.input) > 3:
            raise ValueError(f"Pad {pad.name!r}: only a constant Pad feeding one Conv folds")
        value = _constant(graph, pad.input[2]) if len(pad.input) > 2 and pad.input[2] else 0
        pads = [int(p) for p in _constant(graph, pad.input[1])]
        if np.any(value != 0) or len(pads) != 8 or pads[0:2] + pads[4:6] != [0, 0, 0, 0] or min(pads) < 0:
            raise ValueError(f"Pad {pad.name!r}: pads {pads} value {value}: only zero padding of H and W folds")
        conv = after[0]
        conv_attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if conv_attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            raise ValueError(f"Conv {conv.name!r}: auto_pad {conv_attrs['auto_pad']!r} does not fold a Pad")
        old = list(conv_attrs.get("pads", [0, 0, 0, 0]))
        new = [pads[2] + old[0], pads[3] + old[1], pads[6] + old[2], pads[7] + old[3]]
        kept = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend(kept + [helper.make_attribute("pads", new)])
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
    # drop what only the Pads used (the exporter's computation of their pads), until nothing is dead
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    produced = {o for n in graph.node for o in n.output}
    live_info = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(live_info)
    return model


def quantize(float_path: Path, out_path: Path, x_cal: np.ndarray, fmt: str, per_channel: bool):
    """onnxruntime static quantization, int8 activations and weights, MinMax calibration."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": x_cal[i:i + 1]} for i in range(len(x_cal))])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), Reader(),
                        quant_format=QuantFormat.QOperator if fmt == "qop" else QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def check_shapes(path: Path) -> list[str]:
    """Check the co-designed shapes in an exported (float or quantized) model and describe its convs: no Pad
    node, the 8x8 stem with ``pads`` :data:`STEM_ONNX_PADS`, every 3x3 conv over 8 input channels with
    ``pads = [1, 1, 1, 1]`` and its stored weights (int8 when quantized) exactly zero at :data:`PRUNED_TAP`.

    Raises
    ------
    ValueError
        The first shape or weight that is not as designed.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    if any(n.op_type == "Pad" for n in graph.node):
        raise ValueError(f"{path.name}: has a Pad node")
    lines = []
    for node in graph.node:
        if node.op_type not in ("Conv", "QLinearConv"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel, pads = list(attrs["kernel_shape"]), list(attrs.get("pads", [0, 0, 0, 0]))
        w_name = node.input[3 if node.op_type == "QLinearConv" else 1]
        if w_name in producer and producer[w_name].op_type == "DequantizeLinear":  # QDQ: int8 weight -> DQ
            w_name = producer[w_name].input[0]
        w = inits[w_name]
        line = (f"{node.op_type} {node.name}: kernel {kernel} pads {pads} strides {list(attrs.get('strides'))} "
                f"weight {list(w.shape)} {w.dtype}")
        if kernel == [8, 8] and pads != STEM_ONNX_PADS:
            raise ValueError(f"{path.name}: stem {node.name} pads {pads}, expected {STEM_ONNX_PADS}")
        if kernel == [3, 3] and w.shape[1] == 8:
            tap = w[:, :, PRUNED_TAP[0], PRUNED_TAP[1]]
            if pads != [1, 1, 1, 1] or np.any(tap != 0):
                raise ValueError(f"{path.name}: {node.name} pads {pads}, tap {PRUNED_TAP} max |w| "
                                 f"{np.abs(tap).max()}")
            line += f"; tap {PRUNED_TAP}: all {tap.size} weights == 0"
        lines.append(line)
    return lines


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"image": x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this script)")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    torch = _torch()
    split_path = out / DIGITS_SPLIT.name
    if not split_path.exists():
        split_path.write_text(json.dumps(make_digits_split(SEED)) + "\n")
    split = load_digits_split(split_path)
    report = {"seed": SEED, "epochs": EPOCHS, "models": {}}
    for name, build, per_channel in (("digits_cnn", build_cnn, False), ("digits_resnet", build_resnet, True)):
        torch.manual_seed(SEED)
        model = train(torch, build(torch.nn), split.x_train, split.y_train)
        n_w = sum(p.numel() for p in model.parameters())
        pruned = bake_masks(torch, model)
        float_path = out / f"{name}_float.onnx"
        export(torch, model, float_path)
        check_shapes(float_path)
        acc_f = ort_accuracy(float_path, split.x_test, split.y_test)
        print(f"{name}: {n_w} parameters ({pruned} masked to zero), float {100 * acc_f:.2f}% on "
              f"{len(split.y_test)} test images")
        for fmt in FORMATS:
            q_path = out / f"{name}_{fmt}.onnx"
            quantize(float_path, q_path, split.x_cal, fmt, per_channel)
            acc_q = ort_accuracy(q_path, split.x_test, split.y_test)
            report["models"][q_path.stem] = {
                "float": float_path.name, "format": fmt, "per_channel": per_channel, "parameters": n_w,
                "masked_weights": pruned, "float_accuracy": acc_f, "int8_onnxruntime_accuracy": acc_q}
            print(f"  int8 {fmt}: {100 * acc_q:.2f}% (onnxruntime)")
            for line in check_shapes(q_path):
                print(f"    {line}")
    (out / "digits_models.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
