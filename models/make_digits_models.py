"""Train, export and quantize the two digits CNNs committed beside this script.

Run from the project root (needs the optional ``train`` extra, i.e. torch)::

    .venv/bin/python models/make_digits_models.py [--out DIR]

(``--out`` writes elsewhere, e.g. to check that a rerun reproduces the committed files byte for byte.)

What it writes (all small, committed):

* ``digits_split.json``: the fixed split of scikit-learn's 1797 digits, stratified, seed 0: 450 test images,
  150 calibration images, 1197 training images (index lists, see :mod:`cimforge.golden.datasets`).
* ``digits_cnn_float.onnx``: conv3x3(1->8) ReLU maxpool2, conv3x3(8->16) ReLU maxpool2, flatten, FC(64->10);
  quantized with per-tensor weight scales to ``digits_cnn_qop.onnx`` (QOperator form) and
  ``digits_cnn_qdq.onnx`` (QDQ form).
* ``digits_resnet_float.onnx``: conv3x3(1->8) ReLU, a residual block (conv3x3 ReLU conv3x3, add, ReLU),
  conv3x3(8->16, stride 2) ReLU, global average pool, FC(16->10); quantized with per-channel weight scales
  to ``digits_resnet_qop.onnx`` and ``digits_resnet_qdq.onnx``.
* ``digits_models.json``: float and int8 (onnxruntime) accuracy on the test split at creation time.

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


def _torch():
    try:
        import torch
    except ImportError:
        sys.exit("make_digits_models.py needs torch: pip install -e '.[train]'")
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return torch


def build_cnn(nn):
    """The plain CNN: conv, ReLU, pool, conv, ReLU, pool, FC. Batch normalisation (which trains far better on
    1197 images) is folded into the convolutions by the ONNX export, so the exported graph has none."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


def build_resnet(nn):
    """The residual CNN: stem, one residual block, strided conv, global average pool, FC."""

    def conv_bn(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_bn(1, 8)
            self.conv1 = conv_bn(8, 8)
            self.conv2 = conv_bn(8, 8)
            self.down = conv_bn(8, 16, stride=2)
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


def export(torch, model, path: Path):
    """Legacy (TorchScript) ONNX export, opset 17, dynamic batch dimension only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})


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
        float_path = out / f"{name}_float.onnx"
        export(torch, model, float_path)
        acc_f = ort_accuracy(float_path, split.x_test, split.y_test)
        n_w = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n_w} parameters, float {100 * acc_f:.2f}% on {len(split.y_test)} test images")
        for fmt in FORMATS:
            q_path = out / f"{name}_{fmt}.onnx"
            quantize(float_path, q_path, split.x_cal, fmt, per_channel)
            acc_q = ort_accuracy(q_path, split.x_test, split.y_test)
            report["models"][q_path.stem] = {
                "float": float_path.name, "format": fmt, "per_channel": per_channel, "parameters": n_w,
                "float_accuracy": acc_f, "int8_onnxruntime_accuracy": acc_q}
            print(f"  int8 {fmt}: {100 * acc_q:.2f}% (onnxruntime)")
    (out / "digits_models.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
