"""Print, for every model of the model sets and every quantized form, what the toolkit does with it today.

Columns: build time (first build; cached builds are instant: ``--rebuild`` forces one), whether
``golden.onnx_import.load_onnx`` imports it (else the importer's message: node and operator), the layer-by-layer
agreement with onnxruntime in both rounding forms (imported with ``numerics="fabric"``, the default: what the
fabric computes; or ``--numerics onnx``: onnxruntime's float parts in float32, golden only; the compile columns
use the fabric's form) (worst tensor, its share of identical elements, largest
difference in LSB, and whether the acceptance bound is met; each layer fed onnxruntime's own inputs,
``golden.compare.layerwise``), end to end (the golden model run from the input: the largest difference of any
tensor, and the share of inputs whose top-1 class agrees with onnxruntime's), and whether ``cimforge compile MODEL --preset default`` maps it (else the
compiler's one-line error), and the same for the graph without the layers the host side of a run applies (a final
Softmax; ``compiler.lowering.host.split_host_tail``).

    .venv/bin/python bench/bench_models.py                    # the tiny set, 4 forms each
    .venv/bin/python bench/bench_models.py --set imagenet --samples 1
    .venv/bin/python bench/bench_models.py resnet8 ds_cnn --forms qdq-pc qop-pt --markdown
    .venv/bin/python bench/bench_models.py --set imagenet --samples 1 --no-compile --numerics onnx
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

FORMS = ("qdq-pc", "qdq-pt", "qop-pc", "qop-pt")


@dataclass
class Row:
    model: str
    form: str
    build_s: float = 0.0
    imported: str = ""
    agreement: dict = field(default_factory=dict)  # rounding -> (worst fraction, max diff, ok, worst) or error
    end_to_end: dict = field(default_factory=dict)  # rounding -> (max diff of any tensor, top-1 agreement)
    compiled: str = ""
    body: str = ""  # compile without the trailing host-side layers (Softmax), when there are any


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def measure(model: str, form: str, samples: int, seed: int, rebuild: bool, cache=None, numerics: str = "fabric",
            compile_: bool = True) -> Row:
    """Build one model in one form and measure import, agreement (both roundings) and compile."""
    from cimforge.golden import model_sets as ms
    from cimforge.golden.cli import onnx_feeds, to_codes
    from cimforge.golden.compare import AGREEMENT_MIN, MAX_LSB, compare_tensors, layerwise, ort_tensors
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.golden.requant import ROUNDING_MODES
    from cimforge.golden.runner import run_graph

    fmt, scales = form.split("-")
    row = Row(model, form)
    t = time.perf_counter()
    kwargs = dict(fmt=fmt, per_channel=scales == "pc", seed=seed, cache=cache)
    path = ms.build(model, **kwargs)
    if rebuild:
        path.unlink()
        t = time.perf_counter()
        path = ms.build(model, **kwargs)
    row.build_s = time.perf_counter() - t
    try:
        graph = load_onnx(path, numerics=numerics)  # judged in these numerics; compiled in the fabric's form
    except Exception as e:  # the importer's message is the measurement
        row.imported = _one_line(e)
        return row
    row.imported = "yes"
    x = ms.sample_inputs(model, samples, seed + 1)
    try:
        codes = to_codes(graph, x)
        ref = ort_tensors(path, graph, onnx_feeds(graph, x, codes))
        for rounding in ROUNDING_MODES:
            a = compare_tensors(layerwise(graph, ref, rounding), ref)
            worst = min(a.tensors, key=lambda t: t.fraction).name if a.tensors else "-"
            row.agreement[rounding] = (a.worst_fraction, a.max_diff, a.ok(AGREEMENT_MIN, MAX_LSB), worst)
            golden = run_graph(graph, codes, rounding=rounding)
            out = graph.outputs[0]
            top1 = np.mean(golden[out].reshape(len(x), -1).argmax(1) == ref[out].reshape(len(x), -1).argmax(1))
            row.end_to_end[rounding] = (compare_tensors(golden, ref).max_diff, float(top1))
    except Exception as e:
        row.agreement = {r: _one_line(e) for r in ROUNDING_MODES}
    if compile_:
        row.compiled = compile_default(path)
        row.body = compile_body(load_onnx(path))
    return row


def compile_body(graph) -> str:
    """``compile_graph`` on the default preset of the fabric part of ``graph`` (``split_host_tail``: without the
    trailing layers the host side of a run applies, e.g. a final Softmax, whose refusal by ``cimforge compile``
    would hide what the rest of the network needs): "yes", its error, or "-" when there is no such tail."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.presets import get_preset

    split = split_host_tail(graph)
    if not split.tail:
        return "-"
    try:
        compile_graph(split.fabric, get_preset("default"))
    except Exception as e:
        return _one_line(e)
    return "yes"


def compile_default(path) -> str:
    """``cimforge compile PATH --preset default --out TMP`` in this process: "yes" or its one-line error."""
    from cimforge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(["compile", str(path), "--preset", "default", "--out", tmp])
        except SystemExit as e:
            rc = e.code
    if rc == 0:
        return "yes"
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit {rc}").replace("cimforge compile: error: ", "")


def _agreement_cell(v) -> str:
    if not v:
        return "-"
    if isinstance(v, str):
        return v
    frac, diff, ok, worst = v
    return f"{100 * frac:.3f}% / {diff} LSB ({'met' if ok else 'NOT met'}; {worst})"


def _e2e_cell(v) -> str:
    return "-" if not v else f"{v[0]} LSB, {100 * v[1]:.0f}%"


def format_table(rows: list[Row], markdown: bool) -> str:
    head = ["model", "form", "build s", "imports", "double (worst tensor / max)", "single (worst tensor / max)",
            "end to end double / single (max diff, top-1)", "compile default",
            "compile default, fabric part (split_host_tail)"]
    cells = [[r.model, r.form, f"{r.build_s:.1f}", r.imported, _agreement_cell(r.agreement.get("double")),
              _agreement_cell(r.agreement.get("single")),
              " / ".join(_e2e_cell(r.end_to_end.get(k)) for k in ("double", "single")),
              r.compiled or "-", r.body or "-"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    return "\n".join("  ".join(c for c in row) for row in [head, *cells])


def main(argv: list[str] | None = None) -> int:
    from cimforge.golden import model_sets as ms

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help=f"models (default: the --set); known: {', '.join(ms.MODELS)}")
    p.add_argument("--set", choices=("tiny", "imagenet", "all"), default="tiny")
    p.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    p.add_argument("--samples", type=int, default=4, help="test inputs per model (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rebuild", action="store_true", help="rebuild each model to time its build")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--numerics", choices=("onnx", "fabric"), default="fabric",
                   help="import for the agreement columns: what the fabric computes (default) or onnxruntime's "
                        "float parts in float32 (golden only)")
    p.add_argument("--no-compile", action="store_true", help="leave out the compile columns")
    args = p.parse_args(argv)
    models = args.models or {"tiny": ms.TINY_SET, "imagenet": ms.IMAGENET_SET,
                             "all": ms.TINY_SET + ms.IMAGENET_SET}[args.set]
    rows = []
    for m in models:
        for f in args.forms:
            rows.append(measure(m, f, args.samples, args.seed, args.rebuild, numerics=args.numerics,
                                compile_=not args.no_compile))
            print(format_table(rows[-1:], False).splitlines()[-1], file=sys.stderr, flush=True)
    print(format_table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    np.set_printoptions(linewidth=160)
    raise SystemExit(main())
