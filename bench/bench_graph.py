"""GraphR on the fabric: each algorithm on the largest graphs, fabric cycles and time at the energy model's clock
against this CPU (scipy.sparse.csgraph and networkx, measured in the same run), natural and RCM vertex order.

    .venv/bin/python bench/bench_graph.py [--preset imagenet] [--graph SPEC ...] [--order natural rcm]
                                          [--algo bfs sssp cc pagerank] [--rtl]

Fabric cycles are the cost model's (controller, loader and the graph engines' INSTR_CYCLES rules, each
measured on the RTL); the fabric's values are checked bit-exact against the golden model and the golden model
against networkx in the same run. With ``--rtl`` every round also runs on the generated fabric in Verilator
(:mod:`cimforge.graph.fabric`): bit-exact and measured cycles printed beside the prediction. The default preset
is ``imagenet`` (default's 64x64 macros, 16 of them, 65,536-word memories: SSSP and CC keep 2n values and
PageRank its slices and sums in the activation memory, which ``default``'s 4,096 words cannot for 10,000
vertices). Assumptions of the ratio: the fabric at synth/energy.py's clock with the graph already in its
weight memory (no host transfer, no round trips between rounds or runs); the CPU on one core of this machine
with the graph in memory, best of 3.
"""

from __future__ import annotations

import argparse
import time

from cimforge.graph.cli import analyse
from cimforge.graph.io import load_graph
from cimforge.graph.tiling import rcm_permutation
from cimforge.presets import get_preset

LARGEST = ["er:n=10000,p=0.002,seed=1,wmax=9", "ba:n=10000,m=5,seed=1,wmax=9", "grid:100x100,wmax=9"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="imagenet")
    ap.add_argument("--graph", nargs="*", default=LARGEST)
    ap.add_argument("--order", nargs="*", default=["natural", "rcm"], choices=["natural", "rcm"])
    ap.add_argument("--algo", nargs="*", default=["bfs", "sssp", "cc", "pagerank"],
                    choices=["bfs", "sssp", "cc", "pagerank"])
    ap.add_argument("--rtl", action="store_true", help="also run every round on the fabric in Verilator")
    args = ap.parse_args()
    cfg = get_preset(args.preset)
    print(f"preset {cfg.name}: {cfg.fabric.n_macros} macros of {cfg.macro.rows}x{cfg.macro.cols}, "
          f"{cfg.macro.pages} pages")
    head = (f"{'graph':<34} {'order':<7} {'algo':<8} {'blocks':>7} {'processed':>9} {'cycles':>10} "
            f"{'fabric us':>10} {'scipy us':>9} {'nx us':>10} {'x scipy':>8} {'x nx':>7} {'util %':>6}  check")
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
                if "fabric_rtl" in r:
                    x = r["fabric_rtl"]
                    ok += (", RTL bit-exact" if x["bit_exact"] else f", RTL DIFFERS ({x['first_difference']})") + \
                        f", RTL cycles {x['measured']}" + (" = predicted" if x["measured"] == r["cycles"] and
                                                           x["stamps_equal"] else " != predicted")
                print(f"{spec:<34} {name:<7} {algo:<8} {r['blocks']:>7} {r['processed']:>9} {r['cycles']:>10} "
                      f"{r['time_s'] * 1e6:>10.1f} {c['scipy'] * 1e6:>9.1f} {c['networkx'] * 1e6:>10.1f} "
                      f"{c['scipy'] / r['time_s']:>8.2f} {c['networkx'] / r['time_s']:>7.2f} "
                      f"{100 * r['utilisation']:>6.2f}  {ok if r['bit_exact'] else 'NOT bit-exact'} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
