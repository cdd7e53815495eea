"""``cimforge golden MODEL``: run a quantized ONNX model on the golden model and judge it by onnxruntime.

Prints the imported layer IR, top-1 accuracy (golden int8, onnxruntime int8 and, when a float model is given or
found beside the quantized one as ``<name>_float.onnx``, the float model) and the agreement of every tensor
with onnxruntime, both layer by layer (each layer fed onnxruntime's own inputs) and end to end.
Without ``--dataset`` the inputs are random (seeded) and only agreement is printed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .datasets import DATASETS
    from .requant import ROUNDING_MODES

    parser.add_argument("model", type=Path, help="quantized ONNX model (QOperator or QDQ form)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), help="evaluate on this data set's held-out split")
    parser.add_argument("--float-model", type=Path, help="float ONNX model for the float accuracy "
                        "(default: <name>_float.onnx beside MODEL, if present)")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--samples", type=int, default=64, help="random inputs without --dataset (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--rounding", choices=ROUNDING_MODES, default=None,
                        help="requantisation rounding (default: the architecture's, 'double')")
    parser.add_argument("--per-tensor", action="store_true", help="print agreement per tensor")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the layer-by-layer agreement meets the acceptance bounds")


def _float_model(model: Path, given: Path | None) -> Path | None:
    if given is not None:
        return given
    guess = model.with_name(re.sub(r"_(qop|qdq|int8|quant\w*)$", "", model.stem) + "_float.onnx")
    return guess if guess != model and guess.is_file() else None


def run(args: argparse.Namespace) -> int:
    from .compare import AGREEMENT_MIN, MAX_LSB, compare_tensors, layerwise, ort_tensors
    from .datasets import load_dataset
    from .onnx_import import OnnxImportError, load_onnx
    from .requant import DEFAULT_ROUNDING
    from .runner import run_graph

    rounding = args.rounding or DEFAULT_ROUNDING
    try:
        graph = load_onnx(args.model)
    except OnnxImportError as e:
        print(f"cimforge golden: error: {e}", file=sys.stderr)
        return 2
    print(graph.summary())
    if len(graph.inputs) != 1:
        print("cimforge golden: error: only single-input models are supported here", file=sys.stderr)
        return 2
    q_in = graph.inputs[0]
    f_in = next(iter(graph.float_inputs), None)
    labels = None
    if args.dataset:
        x, labels = load_dataset(args.dataset)
        if args.limit:
            x, labels = x[:args.limit], labels[:args.limit]
        if x.shape[1:] != q_in.shape:
            print(f"cimforge golden: error: dataset {args.dataset} images are {x.shape[1:]}, the model takes "
                  f"{q_in.shape}", file=sys.stderr)
            return 2
    else:
        rng = np.random.default_rng(args.seed)
        lo, hi = (q_in.qmin - q_in.zero_point) * q_in.scale, (q_in.qmax - q_in.zero_point) * q_in.scale
        x = rng.uniform(lo, hi, size=(args.samples, *q_in.shape)).astype(np.float32)
        if f_in is None:
            x = rng.integers(q_in.qmin, q_in.qmax + 1, size=(args.samples, *q_in.shape)).astype(q_in.np_dtype)
        print(f"random inputs: {len(x)} samples, seed {args.seed}")
    from .ops import quantize

    codes = quantize(x, q_in) if f_in is not None else x
    feeds = {f_in or q_in.name: x}
    golden = run_graph(graph, codes, rounding=rounding)
    ref = ort_tensors(args.model, graph, feeds)
    out = graph.outputs[0]
    if labels is not None:
        print(f"top-1 accuracy on {args.dataset} ({len(labels)} held-out images):")
        rows = [(f"golden int8 ({rounding} rounding)", np.mean(golden[out].argmax(1) == labels)),
                ("onnxruntime int8", np.mean(ref[out].argmax(1) == labels))]
        fm = _float_model(args.model, args.float_model)
        if fm is not None:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(fm), providers=["CPUExecutionProvider"])
            logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
            rows.append((f"float ({fm.name})", np.mean(logits.argmax(1) == labels)))
        width = max(len(r[0]) for r in rows) + 1
        for label, acc in rows:
            print(f"  {label + ':':<{width}} {100 * acc:6.2f}%")
    local = compare_tensors(layerwise(graph, ref, rounding), ref)
    e2e = compare_tensors(golden, ref)
    print(f"agreement with onnxruntime, layer by layer (each layer fed onnxruntime's inputs; {rounding} rounding):")
    print(local.format(args.per_tensor))
    print("agreement with onnxruntime, end to end (differences propagate):")
    print(e2e.format(args.per_tensor))
    ok = local.ok(AGREEMENT_MIN, MAX_LSB)
    print(f"acceptance (every tensor >= {100 * AGREEMENT_MIN:.1f}% identical, max {MAX_LSB} LSB, layer by layer): "
          f"{'met' if ok else 'NOT met'}")
    return 1 if args.check and not ok else 0
