"""GraphR on the fabric: each algorithm on the largest graphs, fabric cycles and time at the energy model's clock
against this CPU (scipy.sparse.csgraph and networkx, measured in the same run), natural and RCM vertex order;
with ``--rtl`` the algorithm also runs on the generated fabric in Verilator in a closed loop.

    .venv/bin/python bench/bench_graph.py [--preset imagenet] [--macros N] [--graph SPEC ...]
                                          [--order natural rcm] [--algo bfs sssp cc pagerank] [--rtl]

    # the acceptance run: all four algorithms on the RTL on a 10,000-vertex, 99,627-edge graph
    .venv/bin/python bench/bench_graph.py --graph er:n=10000,p=0.002,seed=1,wmax=9 --order natural --rtl

Fabric cycles are the cost model's (controller, loader and the graph engines' INSTR_CYCLES rules, each
measured on the RTL); the compiler's execution is checked bit-exact against the golden model and the golden
model against networkx in the same run. With ``--rtl`` (:mod:`cimforge.graph.fabric`) every round runs on the
fabric, each built by the host from the fabric's previous result: the printed checks are the fabric's result
against the golden model (every round's state too) and against networkx, and the measured cycles against the
prediction. The default preset is ``imagenet`` (default's 64x64 macros, 8 pages, 65,536-word memories: SSSP and
CC keep 2n values and PageRank its slices and sums in the activation memory, which ``default``'s 4,096 words
cannot for 10,000 vertices). ``--rtl`` runs it on 4 macros instead of 16 (``--macros``; Verilator simulates 16
macros at about 11,000 cycles/s): the graph engines use one macro per block instruction and the ring's slots
are never waited for, so the cycles are the same (printed by the cost model for both). Assumptions of the
ratio: the fabric at synth/energy.py's clock with the graph's page rows, arc words and vectors written by the
host between runs (not in the cycles; the ``dma`` column is what the DMA engine would take to move them,
serially), the host's per-round work not counted; the CPU on one core of this machine with the graph in
memory, best of 3.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from cimforge.graph.cli import analyse
from cimforge.graph.io import load_graph
from cimforge.graph.tiling import rcm_permutation
from cimforge.presets import get_preset

LARGEST = ["er:n=10000,p=0.002,seed=1,wmax=9", "ba:n=10000,m=5,seed=1,wmax=9", "grid:100x100,wmax=9"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="imagenet")
    ap.add_argument("--macros", type=int, help="macros of the fabric (default: the preset's; 4 with --rtl)")
    ap.add_argument("--graph", nargs="*", default=LARGEST)
    ap.add_argument("--order", nargs="*", default=["natural", "rcm"], choices=["natural", "rcm"])
    ap.add_argument("--algo", nargs="*", default=["bfs", "sssp", "cc", "pagerank"],
                    choices=["bfs", "sssp", "cc", "pagerank"])
    ap.add_argument("--rtl", action="store_true", help="also run every algorithm on the fabric in Verilator")
    args = ap.parse_args()
    cfg = get_preset(args.preset)
    macros = args.macros or (4 if args.rtl else None)
    if macros and macros != cfg.fabric.n_macros:
        cfg = replace(cfg, name=f"{cfg.name}{macros}m", fabric=replace(cfg.fabric, n_macros=macros,
                                                                        ext_depth=min(cfg.fabric.ext_depth, 1 << 16)))
    print(f"preset {cfg.name}: {cfg.fabric.n_macros} macros of {cfg.macro.rows}x{cfg.macro.cols}, "
          f"{cfg.macro.pages} pages, {cfg.fabric.act_depth} activation and {cfg.fabric.weight_depth} weight words")
    head = (f"{'graph':<34} {'order':<7} {'algo':<8} {'blocks':>6} {'processed':>9} {'cycles':>10} "
            f"{'fabric us':>10} {'scipy us':>9} {'nx us':>10} {'x scipy':>7} {'x nx':>7} {'util %':>6}  check")
    print(head)
    for spec in args.graph:
        g0 = load_graph(spec)
        orders = {"natural": lambda: g0, "rcm": lambda: g0.permuted(rcm_permutation(g0), name=spec)}
        for name in args.order:
            g = orders[name]()
            for algo in args.algo:
                t0 = time.perf_counter()
                r = analyse(algo, g, cfg, rtl="verilator" if args.rtl else None)
                c = r["cpu"]
                ok = "bit-exact, " + ("networkx ok" if r["networkx"].startswith("matches") else r["networkx"])
                print(f"{spec:<34} {name:<7} {algo:<8} {r['blocks']:>6} {r['processed']:>9} {r['cycles']:>10} "
                      f"{r['time_s'] * 1e6:>10.1f} {c['scipy'] * 1e6:>9.1f} {c['networkx'] * 1e6:>10.1f} "
                      f"{c['scipy'] / r['time_s']:>7.2f} {c['networkx'] / r['time_s']:>7.2f} "
                      f"{100 * r['utilisation']:>6.2f}  {ok if r['bit_exact'] else 'NOT bit-exact'} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                if "fabric_rtl" in r:
                    x = r["fabric_rtl"]
                    w = x["host_words"]
                    same = x["measured"] == x["predicted"] == r["cycles"] and x["stamps_equal"]
                    print(f"    RTL closed loop: {'bit-exact' if x['bit_exact'] else 'DIFFERS: ' + str(x['first_difference'])}"
                          f" with the golden model ({x['rounds']} rounds, {x['runs']} runs, {x['instructions']} "
                          f"instructions); {'matches networkx' if x['networkx'].startswith('matches') else x['networkx']}"
                          f"; RTL cycles measured {x['measured']}, predicted {x['predicted']}"
                          f"{' = compiler, every retire stamp predicted' if same else ' MISMATCH'}; host wrote "
                          f"{w['program']} instruction, {w['weights']} weight, {w['arcs']} arc, {w['vectors']} vector "
                          f"words, read {w['read']} (DMA would take {w['dma_cycles']} cycles for the data words, "
                          f"{100 * w['dma_cycles'] / max(1, x['measured']):.0f} % of the fabric's); wall "
                          f"{x['wall']:.0f} s in the loop", flush=True)


if __name__ == "__main__":
    main()
