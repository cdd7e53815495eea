"""Conv-layer utilisation of the digits CNNs across design points, from the compiler's cycle model.

The cycle model predicts every instruction's retire cycle exactly as the RTL measures it (asserted on Verilator
by tests/test_top_cosim.py and tests/test_partition_rtl.py), so this sweep runs in seconds without a simulator.
For each design point (macro rows, pages, macros) and each model it prints the utilisation (docs/architecture.md
section 6) of every conv layer and of the conv layers together, with one ``MAC`` pass per layer over the images
of a run (the compiler's default) and with one pass per image. Usage::

    .venv/bin/python bench/bench_utilisation.py [--images N]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from cimforge.compiler.compile import compile_graph, max_batch
from cimforge.compiler.cost import program_timing
from cimforge.compiler.tiling import CompileError
from cimforge.presets import get_preset
from cimforge.sim.cosim import MODELS, load_digits_model
from cimforge.sim.fabric_check import layer_rows

#: (label, rows, pages, macros): the default preset and its neighbours, and the ISSCC'22 organisation.
POINTS = [("default", 64, 8, 4), ("default, 1 macro", 64, 8, 1), ("default, 2 macros", 64, 8, 2),
          ("32 rows", 32, 16, 4), ("128 rows", 128, 8, 4), ("isscc22 (2 macros)", 32, 16, 2)]


def conv_utilisation(graph, cfg, images: int, merge: bool) -> tuple[list[float], float]:
    """(per conv layer, all conv layers) utilisation of ``graph`` on ``cfg``, per the cycle model."""
    prog = compile_graph(graph, cfg, batch=images, merge_images=merge)
    trace = [{"pc": pc, "cycle": c} for pc, c in enumerate(program_timing(prog))]
    rows = [r for r in layer_rows(prog, trace) if r.kind == "conv2d"]
    return [r.utilisation for r in rows], sum(r.ideal for r in rows) / sum(r.measured for r in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=None, help="images per run (default: what the memory holds)")
    args = ap.parse_args(argv)
    base = get_preset("default")
    print(f"{'design point':<20} {'model':<18} {'images':>6}  {'merged passes: conv layers':<34} "
          f"{'one pass per image':<30}")
    for i, (label, rows, pages, n) in enumerate(POINTS):
        cfg = replace(base, name=f"point{i}", macro=replace(base.macro, rows=rows, pages=pages),
                      fabric=replace(base.fabric, n_macros=n))
        for model in MODELS:
            g = load_digits_model(model)
            images = args.images or min(16, max_batch(g, cfg))
            try:
                cols = [conv_utilisation(g, cfg, images, merge) for merge in (True, False)]
            except CompileError as e:
                print(f"{label:<20} {model:<18} {images:>6}  does not compile: {e}")
                continue
            text = ["  ".join(f"{100 * u:4.0f}" for u in per) + f"  (all {100 * tot:.1f}%)" for per, tot in cols]
            print(f"{label:<20} {model:<18} {images:>6}  {text[0]:<34} {text[1]:<30}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
