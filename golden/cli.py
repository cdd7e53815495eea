"""``cimforge golden MODEL``: run a quantized ONNX model on the golden model and judge it by onnxruntime.

Prints the imported layer IR, top-1 accuracy (golden int8, onnxruntime int8 and, when a float model is given or
found beside the quantized one as ``<name>_float.onnx``, the float model) and the agreement of every tensor
with onnxruntime, both layer by layer (each layer fed onnxruntime's own inputs) and end to end.
Inputs: ``--dataset`` (its held-out split), ``--input FILE`` (see :func:`read_inputs`) or seeded random data
(``--samples``, ``--seed``); without labels only agreement is printed.

This module also holds what every command takes as a model's input data (``golden``, ``sim``), so that all
read files and tell real values from codes the same way: :func:`load_model`, :func:`read_inputs`,
:func:`random_inputs`, :func:`to_codes`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError, existing_file, int_at_least, path_arg

__all__ = ["add_arguments", "run", "load_model", "resolve_model", "NamedModel", "committed_models", "read_inputs",
           "random_inputs", "to_codes", "onnx_feeds", "n_samples", "take", "LABEL_KEYS"]

#: Names an ``.npz`` input file may give its labels (integer class per image; optional).
LABEL_KEYS = ("labels", "label", "y")


# -- model input data (shared by the commands) ------------------------------------------------------------------

def load_model(path, option: str = "MODEL", numerics: str = "fabric"):
    """Import the quantized ONNX model at ``path`` (a :class:`~cimforge.errors.UserError` naming ``option``
    when it is not a readable file; the importer's own errors name the node) in ``numerics`` (``"fabric"``, what
    a simulation runs, or ``"onnx"``: see :func:`~cimforge.golden.onnx_import.load_onnx`)."""
    from .onnx_import import load_onnx
    graph = load_onnx(existing_file(option, path, (".onnx",)), numerics=numerics)
    if not graph.outputs:  # the importer accepts it; every command reads the first output
        raise UserError(f"{option} {str(path)!r}: the graph has no output (allowed a model with at least one "
                        "graph output)")
    return graph


def committed_models() -> list[str]:
    """Names of the committed digits models (``models/digits_models.json``), usable wherever a model file is."""
    import json

    from .datasets import MODELS_DIR
    return sorted(json.loads((MODELS_DIR / "digits_models.json").read_text())["models"])


@dataclass(frozen=True)
class NamedModel:
    """A model as a user named it: ``label`` (for reports), the ONNX file, the imported graph, and the data set
    it is evaluated on by default (None: no default data)."""

    label: str
    path: Path
    graph: object
    dataset: str | None


def resolve_model(name, option: str = "MODEL", numerics: str = "fabric") -> NamedModel:
    """The model a user names: a committed digits model by name (default data set ``digits``), else a quantized
    ONNX file (label: the file's stem), imported in ``numerics`` (:func:`load_model`)."""
    from .datasets import MODELS_DIR

    known = committed_models()
    text = str(name)
    if text in known:
        path = MODELS_DIR / f"{text}.onnx"
        return NamedModel(text, path, load_model(path, option, numerics), "digits")
    if text.lower().endswith(".onnx") or "/" in text or Path(text).exists():
        return NamedModel(Path(text).stem, Path(text), load_model(text, option, numerics), None)
    raise UserError(f"{option} {text!r}: allowed a quantized .onnx file or one of {', '.join(known)}")


def _single_input(graph):
    if len(graph.inputs) != 1:
        raise UserError(f"model {graph.name!r} has {len(graph.inputs)} inputs "
                        f"({', '.join(t.name for t in graph.inputs)}): give one array per input")
    return graph.inputs[0]


def _input_pairs(graph) -> list[tuple]:
    """(quantized graph input, the float input its QuantizeLinear reads or None) for every graph input."""
    inv = {q: f for f, q in graph.float_inputs.items()}
    return [(t, inv.get(t.name)) for t in graph.inputs]


def n_samples(data) -> int:
    """Samples in ``data``: an array ``(N, ...)``, or a dict of them (one per input of a multi-input model)."""
    return len(next(iter(data.values()))) if isinstance(data, dict) else len(data)


def take(data, index):
    """``data[index]`` along the samples, for an array or a dict of arrays."""
    return {k: v[index] for k, v in data.items()} if isinstance(data, dict) else data[index]


def user_shape(graph, t) -> tuple[int, ...]:
    """The per-sample shape of the data a user gives for graph input ``t``: the model's own input layout (an
    NHWC input the model transposes first stays NHWC, :func:`cimforge.golden.ops.input_shape`)."""
    from .ops import input_shape
    return input_shape(t.shape, graph.input_steps.get(t.name, ()))


def _sample_shape(option: str, p, data: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    """``data`` as ``(N, *shape)`` (one sample ``shape`` gets the batch axis), else a UserError."""
    shape = tuple(shape)
    if tuple(data.shape) == shape:
        data = data[None]
    if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != shape or not len(data):
        raise UserError(f"{option} {str(p)!r}: {what} of shape {tuple(data.shape)}; allowed (N, "
                        f"{', '.join(map(str, shape))}) with N >= 1, the model's input layout")
    return data


def _check_labels(option: str, p, labels, n: int, graph) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{option} {str(p)!r}: labels of shape {labels.shape} and dtype {labels.dtype}; "
                        f"allowed ({n},) integers, one class per sample")
    # accuracy is the argmax of the first output, flattened: a label past its size can never be right
    classes = int(np.prod(graph.tensors[graph.outputs[0]].shape))
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{option} {str(p)!r}: label {int(labels[i])} of sample {i}; allowed 0..{classes - 1}, "
                        f"the classes of output {graph.outputs[0]!r}")
    return labels


def read_inputs(path, graph, option: str = "--input") -> tuple:
    """(data, labels or None) from a ``.npy`` or ``.npz`` file for ``graph``'s inputs.

    The data is in the ONNX model's input layout: ``(N, *shape)`` (channels first, as the model's input), or
    one sample ``shape``. Its dtype says what it holds: a float array holds real values (quantized with the
    model's input scale and zero point, as its ``QuantizeLinear`` does), an integer array holds the input's
    codes (int8 or uint8 range). An ``.npz`` holds the data under the model's input name (float or quantized
    name), ``x`` or ``input``, or as its only array, and may hold integer labels under one of
    :data:`LABEL_KEYS` (accuracy is reported then). A model of several inputs takes an ``.npz`` of one array
    per input, each named by the input (float or quantized name); the data is then a dict by quantized input
    name.

    Raises
    ------
    UserError
        Missing or unreadable file, no or ambiguous data array, wrong shape, labels of the wrong length.
    """
    p = existing_file(option, path, (".npy", ".npz"))
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{option} {str(p)!r}: not a readable numpy file ({e})") from None
    labels = None
    pairs = _input_pairs(graph)
    if isinstance(loaded, np.ndarray):
        if len(pairs) != 1:
            raise UserError(f"{option} {str(p)!r}: one array for a model of {len(pairs)} inputs; allowed an .npz "
                            f"of one array per input, named {', '.join(repr(f or t.name) for t, f in pairs)}")
        return _sample_shape(option, p, loaded, user_shape(graph, pairs[0][0]), "data"), None
    with loaded:
        arrays = {k: loaded[k] for k in loaded.files}
    label_keys = [k for k in LABEL_KEYS if k in arrays]
    labels = arrays.pop(label_keys[0]) if label_keys else None
    if len(pairs) > 1:
        data = {}
        for t, f in pairs:
            key = next((k for k in (f, t.name) if k and k in arrays), None)
            if key is None:
                raise UserError(f"{option} {str(p)!r}: arrays {sorted(arrays)}, none for input {f or t.name!r}; "
                                f"allowed one array per input, named "
                                f"{', '.join(repr(f or t.name) for t, f in pairs)} (labels under "
                                f"{'/'.join(LABEL_KEYS)})")
            data[t.name] = _sample_shape(option, p, arrays[key], user_shape(graph, t), f"array {key!r}")
        counts = {k: len(v) for k, v in data.items()}
        if len(set(counts.values())) > 1:
            raise UserError(f"{option} {str(p)!r}: samples per input {counts}; allowed the same number for every "
                            f"input")
        n = n_samples(data)
    else:
        q_in = pairs[0][0]
        names = list(dict.fromkeys([*graph.float_inputs, q_in.name, "x", "input"]))
        key = next((k for k in names if k in arrays), None)
        if key is None and len(arrays) == 1:
            key = next(iter(arrays))
        if key is None and not arrays:
            raise UserError(f"{option} {str(p)!r}: holds labels ({label_keys[0]!r}) and no data; allowed an array "
                            f"named {' or '.join(repr(n) for n in names)} (or the only other array) beside them")
        if key is None:
            raise UserError(f"{option} {str(p)!r}: arrays {sorted(arrays)}; allowed one array, or one named "
                            f"{' or '.join(repr(n) for n in names)} (labels under {'/'.join(LABEL_KEYS)})")
        data = _sample_shape(option, p, arrays[key], user_shape(graph, q_in), "data")
        n = len(data)
    return data, None if labels is None else _check_labels(option, p, labels, n, graph)


def _codes_of(t, data, option: str, steps: tuple = ()) -> np.ndarray:
    """The codes of input ``t`` for ``data``: real values (float) quantized with its scale and zero point, after
    the model's own float ``steps`` on its input (``(x - mean) / std``), or codes (integer) checked against its
    range (not for a model with steps: its float input is what a user has)."""
    from .ops import input_real, quantize

    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all():
            raise UserError(f"{option}: the float data holds NaN or infinite values; allowed finite reals")
        return quantize(input_real(data, steps), t)
    if not np.issubdtype(data.dtype, np.integer):
        raise UserError(f"{option}: data of dtype {data.dtype}; allowed float (real values) or integer (codes)")
    if steps:
        raise UserError(f"{option}: integer data (codes) for a model that computes on its float input first "
                        f"({', '.join(op for op, _, _ in steps)} before the QuantizeLinear of {t.name!r}); allowed "
                        f"real values, a float array")
    if data.size and (data.min() < t.qmin or data.max() > t.qmax):
        raise UserError(f"{option}: integer data is read as {t.dtype} codes of input {t.name!r}, but its "
                        f"values span [{data.min()}, {data.max()}]; allowed [{t.qmin}, {t.qmax}] (give real "
                        f"values as a float array)")
    return data.astype(t.np_dtype)


def to_codes(graph, data, option: str = "--input"):
    """The codes of ``graph``'s input for ``data`` ``(N, *shape)`` (:func:`_codes_of`); for a model of several
    inputs, ``data`` and the result are dicts by quantized input name."""
    steps = graph.input_steps
    if isinstance(data, dict):
        return {t.name: _codes_of(t, data[t.name], f"{option} (input {f or t.name!r})", steps.get(t.name, ()))
                for t, f in _input_pairs(graph)}
    t = _single_input(graph)
    return _codes_of(t, data, option, steps.get(t.name, ()))


def random_inputs(graph, n: int, seed: int):
    """``n`` seeded random samples for ``graph``'s input: real values uniform over the range the input's codes
    represent when the model takes real values (before the model's own steps on its float input, where it has
    them), else uniform codes; a dict by quantized input name for a model of several inputs (drawn input after
    input from one generator)."""
    from .ops import input_bounds

    rng = np.random.default_rng(seed)

    def draw(t, real: bool) -> np.ndarray:
        if real:
            lo, hi = (t.qmin - t.zero_point) * t.scale, (t.qmax - t.zero_point) * t.scale
            lo, hi = input_bounds(lo, hi, graph.input_steps.get(t.name, ()), t.shape)
            return rng.uniform(lo, hi, size=(n, *user_shape(graph, t))).astype(np.float32)
        return rng.integers(t.qmin, t.qmax + 1, size=(n, *t.shape)).astype(t.np_dtype)
    pairs = _input_pairs(graph)
    if len(pairs) == 1:
        return draw(pairs[0][0], bool(graph.float_inputs))
    return {t.name: draw(t, f is not None) for t, f in pairs}


def onnx_feeds(graph, data, codes) -> dict[str, np.ndarray]:
    """onnxruntime's feeds for the same samples: each float input (real values; codes dequantized) or quantized
    input (codes)."""
    from .ops import dequantize

    pairs = _input_pairs(graph)
    if not isinstance(data, dict):
        data, codes = {pairs[0][0].name: data}, {pairs[0][0].name: codes}
    feeds = {}
    for t, f in pairs:
        x = np.asarray(data[t.name])
        if f is None:
            feeds[t.name] = codes[t.name]
        else:
            feeds[f] = x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else dequantize(codes[t.name], t)
    return feeds


# -- the command --------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .datasets import DATASETS
    from .onnx_import import NUMERICS
    from .requant import DEFAULT_ROUNDING, ROUNDING_MODES

    parser.add_argument("model", help="quantized ONNX model (QOperator or QDQ form), or a committed digits model's "
                        "name")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=sorted(DATASETS), help="evaluate on this data set's held-out split")
    src.add_argument("--input", type=path_arg, metavar="FILE",
                     help=".npy/.npz data in the model's input layout (N, C, H, W): float arrays are real values, "
                          "integer arrays are codes; an .npz may carry 'labels'")
    src.add_argument("--samples", type=int_at_least(1), default=None,
                     help="random inputs (default 64 without --dataset/--input)")
    parser.add_argument("--float-model", type=path_arg, help="float ONNX model for the float accuracy "
                        "(default: <name>_float.onnx beside MODEL, if present)")
    parser.add_argument("--limit", type=int_at_least(1), help="use only the first N images")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--rounding", choices=ROUNDING_MODES, default=None,
                        help=f"requantisation rounding (default: {DEFAULT_ROUNDING!r}, what a design builds unless "
                             "fabric.rounding says otherwise)")
    parser.add_argument("--numerics", choices=NUMERICS, default="onnx",
                        help="how the parts onnxruntime computes in float are modelled: 'onnx' (default) its float32 "
                             "computation, 'fabric' what the fabric computes (the form cimforge sim runs)")
    parser.add_argument("--per-tensor", action="store_true", help="print agreement per tensor")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the layer-by-layer agreement meets the acceptance bounds")


def _float_model(model: Path, given: Path | None, graph) -> Path | None:
    """The float model whose accuracy is printed beside the int8 ones: ``given`` (checked now: readable, and
    taking the quantized model's float input, by name and per-sample shape), else ``<model>_float.onnx`` beside
    the model when it exists and fits (a guess that does not fit is left out)."""
    from .onnx_import import OnnxImportError, read_model

    def misfit(path: Path) -> str | None:
        proto = read_model(path)
        inits = {i.name for i in proto.graph.initializer}
        ins = {v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
               for v in proto.graph.input if v.name not in inits}
        want = {f: user_shape(graph, graph.tensors[q]) for f, q in graph.float_inputs.items()}
        if set(ins) != set(want) or any(len(ins[n]) != 1 + len(s) or any(
                d is not None and d != e for d, e in zip(ins[n][1:], s)) for n, s in want.items()):
            got = ", ".join(f"{n!r} {ins[n]}" for n in ins) or "no input"
            allowed = ", ".join(f"{n!r} {('N', *s)}".replace("'N'", "N") for n, s in want.items()) or "(none)"
            return f"takes {got}; allowed the quantized model's float input {allowed}"
        return None

    if given is not None:
        path = existing_file("--float-model", given, (".onnx",))
        try:
            why = misfit(path)
        except OnnxImportError as e:
            raise UserError(f"--float-model {e}") from None
        if why:
            raise UserError(f"--float-model {str(path)!r} {why}")
        return path
    guess = model.with_name(re.sub(r"_(qop|qdq|int8|quant\w*)$", "", model.stem) + "_float.onnx")
    if guess == model or not guess.is_file():
        return None
    try:
        return None if misfit(guess) else guess
    except OnnxImportError:
        return None


def _data(args, graph) -> tuple:
    from .datasets import load_dataset

    if args.dataset:
        x, labels = load_dataset(args.dataset)
        if len(graph.inputs) != 1 or x.shape[1:] != graph.inputs[0].shape:
            raise UserError(f"--dataset {args.dataset}: images are {x.shape[1:]}, the model takes "
                            f"{', '.join(str(t.shape) for t in graph.inputs)} (give --input or --samples)")
    elif args.input:
        x, labels = read_inputs(args.input, graph)
    else:
        n = args.samples or 64
        x, labels = random_inputs(graph, n, args.seed), None
        print(f"random inputs: {n_samples(x)} samples, seed {args.seed}")
    if args.limit:
        x = take(x, slice(None, args.limit))
        labels = None if labels is None else labels[:args.limit]
    return x, labels


def _judge_saturating(graph, each: dict, ref: dict, local):
    """The layer-by-layer agreement the acceptance judges, and the tensors it judged against an exact evaluation
    instead of onnxruntime: those of uint8 x int8 layers that miss the bound against onnxruntime, whose kernels
    saturate (:data:`~cimforge.golden.compare.SATURATION_NOTE`); each is printed with both figures."""
    from .compare import AGREEMENT_MIN, MAX_LSB, SATURATION_NOTE, compare_tensors, exact_reference, mixed_sign_layers

    bad = {t.name for t in local.tensors if not (t.fraction >= AGREEMENT_MIN and t.max_diff <= MAX_LSB)}
    layers = [l for l in mixed_sign_layers(graph) if l.output.name in bad]
    exact = exact_reference(layers, ref)
    if not exact:
        return local, {}
    print(f"note: {SATURATION_NOTE}:")
    against = compare_tensors({k: each[k] for k in exact}, exact)
    ort = {t.name: t for t in local.tensors}
    for t in against.tensors:
        o = ort[t.name]
        print(f"  {t.name}: onnxruntime {100 * o.fraction:.3f}% identical, max {o.max_diff} LSB; exact "
              f"{100 * t.fraction:.3f}%, max {t.max_diff} LSB")
    return compare_tensors(each, {**ref, **exact}), exact


def run(args: argparse.Namespace) -> int:
    from .compare import AGREEMENT_MIN, MAX_LSB, compare_tensors, layerwise, ort_tensors
    from .requant import DEFAULT_ROUNDING
    from .runner import run_graph

    rounding = args.rounding or DEFAULT_ROUNDING
    named = resolve_model(args.model, numerics=args.numerics)
    graph = named.graph
    float_model = _float_model(named.path, args.float_model, graph)  # a given one is checked now, used with labels
    print(graph.summary())
    x, labels = _data(args, graph)
    codes = to_codes(graph, x)
    golden = run_graph(graph, codes, rounding=rounding)
    ref = ort_tensors(named.path, graph, onnx_feeds(graph, x, codes))
    out = graph.outputs[0]
    if labels is not None:
        source = f"{args.dataset} ({len(labels)} held-out images)" if args.dataset else \
            f"{args.input.name} ({len(labels)} samples)"
        print(f"top-1 accuracy on {source}:")
        n = n_samples(x)
        rows = [(f"golden int8 ({rounding} rounding)", np.mean(golden[out].reshape(n, -1).argmax(1) == labels)),
                ("onnxruntime int8", np.mean(ref[out].reshape(n, -1).argmax(1) == labels))]
        if float_model is not None and graph.float_inputs:
            from .compare import run_onnx

            logits = run_onnx(float_model, onnx_feeds(graph, x, codes))[0]
            rows.append((f"float ({float_model.name})", np.mean(logits.reshape(n, -1).argmax(1) == labels)))
        width = max(len(r[0]) for r in rows) + 1
        for label, acc in rows:
            print(f"  {label + ':':<{width}} {100 * acc:6.2f}%")
    each = layerwise(graph, ref, rounding)
    local = compare_tensors(each, ref)
    e2e = compare_tensors(golden, ref)
    print(f"agreement with onnxruntime, layer by layer (each layer fed onnxruntime's inputs; {rounding} rounding):")
    print(local.format(args.per_tensor))
    print("agreement with onnxruntime, end to end (differences propagate):")
    print(e2e.format(args.per_tensor))
    judged, exact = _judge_saturating(graph, each, ref, local)
    ok = judged.ok(AGREEMENT_MIN, MAX_LSB)
    print(f"acceptance (every tensor >= {100 * AGREEMENT_MIN:.1f}% identical, max {MAX_LSB} LSB, layer by layer"
          f"{', ' + str(len(exact)) + ' tensor(s) against the exact evaluation' if exact else ''}): "
          f"{'met' if ok else 'NOT met'}")
    return 1 if args.check and not ok else 0
