"""Simulated cycles per wall second of the default fabric, on Verilator and on Icarus, for the same inference.

The same compiled program and the same digits images run on both simulators; the controller runs the whole
program from one start, and the bench awaits only ``done`` (the clock is the simulator-side GPI clock), so no
Python runs per cycle. Figures: simulation only (start to done), and end to end including the backdoor loads and
read-back of every tensor. Usage::

    .venv/bin/python bench/bench_sim_speed.py [--images N] [--preset NAME]
"""

from __future__ import annotations

import argparse
import sys
import time

from cimforge.compiler.compile import compile_graph
from cimforge.presets import get_preset
from cimforge.sim.cosim import digits_batch, load_digits_model
from cimforge.sim.fabric_check import first_divergence
from cimforge.sim.fabric_runner import fabric_verilog, run_fabric
from cimforge.sim.tools import available_simulators


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8, help="images in the inference (default 8)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--model", default="digits_cnn_qop")
    args = ap.parse_args(argv)
    cfg = get_preset(args.preset)
    g = load_digits_model(args.model)
    prog = compile_graph(g, cfg, batch=args.images)
    inputs, _, gold = digits_batch(g, 0, args.images)
    t0 = time.perf_counter()
    fabric_verilog(cfg)
    print(f"{args.model}, {args.images} images in one run on '{cfg.name}' ({cfg.fabric.n_macros} macros of "
          f"{cfg.macro.rows}x{cfg.macro.cols}); Verilog generation {time.perf_counter() - t0:.1f} s (cached)")
    print(f"{'simulator':<10} {'cycles':>8} {'sim s':>8} {'cycles/s':>10} {'end-to-end s':>13} {'cycles/s e2e':>13}  "
          f"bit-exact")
    for sim in available_simulators():
        t1 = time.perf_counter()
        fr = run_fabric(cfg, prog, [inputs], sim=sim)
        wall = time.perf_counter() - t1
        r = fr.runs[0]
        exact = first_divergence(prog, gold, prog.read_tensors(r.words, args.images)) is None
        e2e = r.run_wall + r.write_wall + r.read_wall + fr.load_wall
        print(f"{sim:<10} {r.cycles:>8} {r.run_wall:>8.2f} {r.cycles / r.run_wall:>10,.0f} {e2e:>13.2f} "
              f"{r.cycles / e2e:>13,.0f}  {'yes' if exact else 'NO'}   (launch incl. build check {wall:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
