"""Conv-layer utilisation of the digits CNNs across design points, from the compiler's cycle model.

The cycle model predicts every instruction's retire cycle exactly as the RTL measures it (asserted on Verilator
by tests/test_top_cosim.py and tests/test_partition_rtl.py), so this sweep runs in seconds without a simulator.
For each design point (macro rows, pages, macros) and each model it prints the utilisation (docs/architecture.md
section 6) of every conv layer and of the conv layers together, with one ``MAC`` pass per layer over the images
of a run (the compiler's default) and with one pass per image. ``--tiny`` prints, for the MLPerf Tiny models on
the default preset (external-memory mode, one image), every weighted layer's cycles, cycles stalled on the
external memory, utilisation and its bound, and the conv layers' utilisation with the most the layers' bounds
allow (docs/memory.md section 9); the BatchNormalizations that follow convolutions run fused into those
convolutions' passes (the MAC engine's epilogue, compiler/fusion.py) unless ``--no-fuse``. Usage::

    .venv/bin/python bench/bench_utilisation.py [--images N]
    .venv/bin/python bench/bench_utilisation.py --tiny [resnet8 ...] [--no-fuse]
    .venv/bin/python bench/bench_utilisation.py --points
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


def tiny_table(name: str, fuse: bool = True) -> None:
    """Per-layer figures of tiny-set model ``name`` on the default preset, from the (exact) cycle model."""
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden import model_sets as ms
    from cimforge.golden.onnx_import import load_onnx
    graph = split_host_tail(load_onnx(str(ms.build(name, seed=0)))).fabric
    prog = compile_graph(graph, get_preset("default"), fuse=fuse)
    stamps = program_timing(prog)
    rows = layer_rows(prog, [{"pc": pc, "cycle": c} for pc, c in enumerate(stamps)])
    conv = [r for r in rows if r.kind == "conv2d"]
    print(f"{name}{'' if fuse else ' (no fusion)'}: {len(prog.code)} instructions, {stamps[-1] + 1} cycles, "
          f"stalled on external memory {sum(r.stall for r in rows)}")
    print(f"  {'layer':28s} {'kind':8s} {'cycles':>7s} {'stall':>6s} {'util':>6s} {'bound':>6s}")
    for r in rows:
        print(f"  {r.layer:28s} {r.kind:8s} {r.measured:7d} {r.stall:6d} {100 * (r.utilisation or 0):5.1f}% "
              f"{100 * (r.occupancy or 0):5.1f}%")
    if conv:
        ideal = sum(r.ideal for r in conv)
        best = sum(r.ideal / r.occupancy for r in conv if r.occupancy)
        print(f"  conv layers: {100 * ideal / sum(r.measured for r in conv):.1f}% of peak; at their bounds they "
              f"would take {best:.0f} cycles: {100 * ideal / best:.1f}% at most")


#: (label, macro fields, fabric fields) over the default preset: the default preset and arrays of the same peak
#: (4096 bit-cell products per cycle per macro) with 32-row columns, more pages or a larger weight memory.
TINY_POINTS = [("4 x 64x64, 8 pages, wmem 1024 (default)", {}, {}),
               ("4 x 64x64, 8 pages, wmem 4096", {}, {"weight_depth": 4096}),
               ("8 x 32x64, 16 pages, wmem 4096", {"rows": 32, "pages": 16}, {"n_macros": 8, "weight_depth": 4096}),
               ("4 x 32x128, 8 pages, wmem 1024", {"rows": 32, "cols": 128}, {}),
               ("4 x 32x128, 16 pages, wmem 1024", {"rows": 32, "cols": 128, "pages": 16}, {}),
               ("4 x 32x128, 16 pages, wmem 4096", {"rows": 32, "cols": 128, "pages": 16}, {"weight_depth": 4096}),
               ("4 x 32x128, 16 pages, wmem 8192", {"rows": 32, "cols": 128, "pages": 16},
                {"weight_depth": 8192})]


def tiny_points() -> None:
    """Cycles per image of the tiny set and the digits CNNs, and ResNet-8's conv-layer utilisation with its
    ceiling, on each of :data:`TINY_POINTS` (the cycle model, exact against the RTL)."""
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden import model_sets as ms
    from cimforge.golden.onnx_import import load_onnx
    graphs = {n: split_host_tail(load_onnx(str(ms.build(n, seed=0)))).fabric for n in ms.TINY_SET}
    graphs.update({m: load_digits_model(m) for m in MODELS})
    base = get_preset("default")
    print(f"{'design point':<44} {'resnet8 conv (ceiling)':>22} " + " ".join(f"{n[:16]:>16}" for n in graphs))
    for label, macro, fabric in TINY_POINTS:
        cfg = replace(base, macro=replace(base.macro, **macro),
                      fabric=replace(base.fabric, **fabric, desc_depth=256))
        cells, conv = [], ""
        for name, g in graphs.items():
            prog = compile_graph(g, cfg)
            stamps = program_timing(prog)
            cells.append(f"{stamps[-1] + 1:>16}")
            if name == "resnet8":
                rows = [r for r in layer_rows(prog, [{"pc": pc, "cycle": c} for pc, c in enumerate(stamps)])
                        if r.kind == "conv2d"]
                ideal = sum(r.ideal for r in rows)
                conv = (f"{100 * ideal / sum(r.measured for r in rows):.1f}% "
                        f"({100 * ideal / sum(r.ideal / r.occupancy for r in rows):.1f}%)")
        print(f"{label:<44} {conv:>22} " + " ".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=None, help="images per run (default: what the memory holds)")
    ap.add_argument("--tiny", nargs="*", default=None, metavar="MODEL",
                    help="the MLPerf Tiny models (default all) on the default preset, per layer")
    ap.add_argument("--no-fuse", action="store_true",
                    help="with --tiny: run the BatchNormalizations as passes of their own (compile_graph(fuse=False))")
    ap.add_argument("--points", action="store_true",
                    help="the tiny set and the digits CNNs on the default preset and arrays of the same peak")
    args = ap.parse_args(argv)
    if args.points:
        tiny_points()
        return 0
    if args.tiny is not None:
        from cimforge.golden import model_sets as ms
        for name in args.tiny or ms.TINY_SET:
            tiny_table(name, fuse=not args.no_fuse)
        return 0
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
