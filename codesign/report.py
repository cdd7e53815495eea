"""The co-design report in the papers' table form: per layer of each committed co-designed digits model the kept
reduction rows and filters, weight / activation bits, tiles, pages, cycles per image and estimated energy,
and per model the network's accuracy on the 450 held-out digits, against the dense int8 baseline of the same
topology.

    .venv/bin/python -m cimforge.codesign.report [--preset default] [--rtl]

Cycles are the cost model's (equal to the RTL's, asserted by tests/test_codesign_models.py); ``--rtl`` measures
them on the RTL (Verilator, one run of a batch of held-out digits per model) and prints both.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..golden.datasets import MODELS_DIR, load_digits_split
from ..golden.runner import run_graph
from ..presets import get_preset
from . import flow
from .importing import load_model

__all__ = ["MODELS", "BASELINE", "model_report", "main"]

#: The dense int8 baseline of the original topology, and the models compared with it.
BASELINE = "ssl_dense_cnn_qdq"
MODELS = (BASELINE, "ssl_cnn_qdq", "bsq_cnn_qdq", "bsq_int4_ort_qdq")


def model_report(name: str, cfg, *, rtl: bool = False) -> dict:
    """Compile ``name`` (compacted unless it is the onnxruntime model) and measure it: the table rows, cycles per
    image (predicted and, with ``rtl``, measured), accuracy on the held-out digits, energy per image."""
    c = flow.compile_codesign(load_model(MODELS_DIR / f"{name}.onnx"), cfg)
    s = load_digits_split()
    out = run_graph(c.graph, c.input_codes(s.x_test))[c.graph.outputs[0]]
    acc = float((out.reshape(len(out), -1).argmax(axis=1) == s.y_test).mean())
    rep = {"name": name, "compiled": c, "accuracy": acc,
           "energy_nj": flow.energy_figures(c)["energy_per_inference_nj"]}
    measured = None
    if rtl:
        res = flow.run_rtl(c, s.x_test[:c.batch])
        rep["rtl"] = res
        rows = res["rows"]
        measured = [type(r)(r.layer, r.kind, float(np.mean([rr[i].measured for rr in rows])), r.predicted, r.ideal,
                            r.exact, r.occupancy) for i, r in enumerate(rows[0])]
    rep["table"] = flow.layer_table(c, measured)
    rep["cycles"] = sum(t.cycles for t in rep["table"])
    return rep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="fabric preset (default: default)")
    parser.add_argument("--rtl", action="store_true", help="measure the cycles on the RTL (Verilator)")
    args = parser.parse_args(argv)
    cfg = get_preset(args.preset)
    reps = [model_report(n, cfg, rtl=args.rtl) for n in MODELS]
    base = reps[0]
    for r in reps:
        c = r["compiled"]
        pairs = sorted({p.pair for p in c.precisions.values()})
        title = (f"{r['name']}: accuracy {100 * r['accuracy']:.2f}% (baseline {100 * base['accuracy']:.2f}%), "
                 f"{r['cycles']:.1f} cycles/image ({base['cycles'] / r['cycles']:.2f}x fewer), energy "
                 f"{r['energy_nj']:.3f} nJ/image ({base['energy_nj'] / r['energy_nj']:.2f}x less), (w, a) bits "
                 f"{pairs}")
        if "rtl" in r:
            title += (f"; RTL: {r['rtl']['cycles'] / c.batch:.1f} cycles/image over a run of {c.batch}, "
                      f"bit-exact {r['rtl']['exact']}, cycle-exact {r['rtl']['cycle_exact']}")
        print(flow.format_table(title, r["table"]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
