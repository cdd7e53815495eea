"""Full 224x224 inferences of the ImageNet set on the ``imagenet`` preset's RTL (Verilator), in external-memory
mode: every tensor bit-exact against the golden model, every instruction's retire cycle against the cost model.
Prints per model the wall times (import, compile, build and run), cycles, network and per-layer utilisation
(ideal over measured cycles) with its bound, and the cycles each layer stalled on the external memory.

    .venv/bin/python bench/bench_imagenet_rtl.py                 # SqueezeNet, ResNet-50 and MobileNetV2
    .venv/bin/python bench/bench_imagenet_rtl.py squeezenet --predict-only
    .venv/bin/python bench/bench_imagenet_rtl.py mobilenet_v2    # 2.7 M cycles predicted
    .venv/bin/python bench/bench_imagenet_rtl.py alexnet --iss   # the ISS against the golden model, no RTL

``--iss`` runs the compiled program on the instruction-set simulator instead of the RTL and compares every tensor
the program writes with the golden model (minutes per model: the ISS is exact, numpy per instruction); with
``check_hazards`` and the cost model's cycles it is what tests/test_compiler_memory.py checks on the tiny set.

The depthwise convolutions (MobileNetV2) get a summary line of their own: they run as dense convolutions over
super-groups of one activation word with block-diagonal weights (docs/grouped-conv.md), so a 3x3 depthwise layer
uses 9 of every 2 x 64 rows a column sums: its bound is 9/128 = 7 % on 64-row macros (docs/memory.md section 9).

A model the compiler cannot map prints the compiler's one-line error (which names the layer or the memory and
the size that would fit). The first run builds the ``imagenet`` system in Verilator (cached under build/sim).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def run(name: str, seed: int, timing_only: bool, iss: bool = False) -> int:
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.cost import program_timing
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.compiler.memory import check_hazards
    from cimforge.compiler.tiling import CompileError
    from cimforge.golden import model_sets as ms
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.presets import get_preset
    from cimforge.sim.cosim import simulate
    from cimforge.sim.fabric_check import layer_rows
    from cimforge.sim.tools import simulator_log

    cfg = get_preset("imagenet")
    t0 = time.perf_counter()
    graph = load_onnx(str(ms.build(name, seed=seed)))
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        fabric = split_host_tail(graph).fabric
        prog = compile_graph(fabric, cfg)
    except CompileError as e:
        print(f"{name}: import {t_import:.1f} s; does not compile: {e}")
        return 1
    t_compile = time.perf_counter() - t0
    stamps = program_timing(prog)
    hazards = check_hazards(prog, stamps)
    print(f"{name}: import {t_import:.1f} s, compile {t_compile:.1f} s: {len(prog.code)} instructions, "
          f"{len(prog.ext_init)} weight words in the external memory, {stamps[-1] + 1} cycles predicted, "
          f"{len(hazards)} DMA hazards", flush=True)
    if iss:
        return _iss(name, fabric, prog, seed) | (1 if hazards else 0)
    if timing_only:
        rows = layer_rows(prog, [{"pc": i, "cycle": c} for i, c in enumerate(stamps)])
        _table(name, rows, stamps[-1] + 1, graph)
        return 0
    x = ms.sample_inputs(name, 1, seed=seed)
    t0 = time.perf_counter()
    log = Path("build") / "reports" / f"bench-imagenet-{name}" / "sim.log"
    print(f"{name}: simulator output (Verilator build, cocotb) goes to {log}", flush=True)
    with simulator_log(log):
        res = simulate(graph, cfg, x, program=prog)
    wall = time.perf_counter() - t0
    exact_cycles = all([e["cycle"] for e in r.trace] == stamps for fr in res.runs for r in fr.runs)
    print(f"{name}: RTL run {wall:.1f} s wall (build included when not cached; simulation {res.run_wall:.1f} s), "
          f"{res.cycles} cycles, bit-exact on every tensor: {res.exact}"
          + ("" if res.exact else f" ({res.divergence})") + f", cost model exact: {exact_cycles}")
    _table(name, res.mean_rows(), res.cycles, graph)
    return 0 if res.exact and exact_cycles else 1


def _iss(name: str, g, prog, seed: int) -> int:
    """The program of graph ``g`` on the ISS: every tensor it writes against the golden model of ``g`` (exit
    status 0 when all equal; the tensors a fused epilogue keeps internal are not written)."""
    from cimforge.compiler.iss import run_program
    from cimforge.golden import model_sets as ms
    from cimforge.golden.cli import to_codes
    from cimforge.golden.runner import run_graph
    xs = {g.inputs[0].name: to_codes(g, ms.sample_inputs(name, 1, seed=seed), option="inputs")}
    t0 = time.perf_counter()
    got, _ = run_program(prog, xs)
    t_iss = time.perf_counter() - t0
    gold = run_graph(g, xs, rounding=prog.cfg.fabric.rounding)
    bad = [t for t in got if not (got[t].shape == gold[t].shape and (got[t] == gold[t]).all())]
    print(f"{name}: ISS {t_iss:.0f} s: {len(got)} tensors written, {len(got) - len(bad)} equal to the golden model"
          + (f"; differ: {bad[:5]}" if bad else ""), flush=True)
    return 1 if bad else 0


def _table(name: str, rows, cycles: int, graph) -> None:
    from cimforge.golden.ir import Conv2d
    ideal = sum(r.ideal for r in rows)
    conv = [r for r in rows if r.ideal]
    conv_util = sum(r.ideal for r in conv) / max(1, sum(r.measured for r in conv))
    stall = sum(r.stall for r in rows)
    print(f"{name}: network utilisation {ideal / cycles:.3f}, weighted layers {conv_util:.3f}, stalled on external "
          f"memory {stall} cycles ({stall / cycles:.1%})")
    dw = {layer.name for layer in graph.layers
          if isinstance(layer, Conv2d) and layer.groups > 1 and layer.groups == layer.input.shape[0]}
    depthwise = [r for r in rows if r.layer in dw]
    if depthwise:
        used = sum(r.ideal for r in depthwise)
        print(f"{name}: {len(depthwise)} depthwise layers: {sum(r.measured for r in depthwise)} cycles "
              f"({sum(r.measured for r in depthwise) / cycles:.1%} of the run), utilisation "
              f"{used / max(1, sum(r.measured for r in depthwise)):.3f}, at their bound "
              f"{used / max(1e-9, sum(r.ideal / r.occupancy for r in depthwise if r.occupancy)):.3f} "
              f"(block-diagonal super-groups of one word: docs/memory.md section 9)")
    print(f"  {'layer':24s} {'kind':14s} {'cycles':>9s} {'stall':>8s} {'util':>5s} {'bound':>5s}")
    for r in rows:
        print(f"  {r.layer:24s} {(r.kind + (' dw' if r.layer in dw else '')):14s} {r.measured:9d} {r.stall:8d} "
              f"{r.utilisation or 0:5.2f} {r.occupancy or 0:5.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["squeezenet", "resnet50", "mobilenet_v2"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predict-only", action="store_true",
                        help="compile and print the predicted per-layer figures; no RTL run")
    parser.add_argument("--iss", action="store_true",
                        help="compile, run the ISS and compare every tensor with the golden model; no RTL run")
    args = parser.parse_args(argv)
    status = 0
    for name in args.models:
        status |= run(name, args.seed, args.predict_only, args.iss)
    return status


if __name__ == "__main__":
    sys.exit(main())
