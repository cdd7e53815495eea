"""``cimforge sim`` (``make sim``): the digits CNNs on the generated fabric, cycle by cycle, scored bit for bit.

Generates the fabric of a preset (or configuration file), compiles a digits CNN onto it, runs test images in
Verilator (or Icarus) with a progress bar, and prints per layer the measured and predicted cycles, the
utilisation (ARCHITECTURE.md section 6) and bit-exactness, then the accuracy and the simulated cycles per wall
second. ``--macro`` runs the macro demo instead (:mod:`cimforge.sim.macro_demo`).
"""

from __future__ import annotations

import argparse
import sys

from ..config import load_config
from ..presets import PRESETS, get_preset

__all__ = ["add_arguments", "run", "print_report"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--macro", action="store_true", help="run the macro demo instead of the network")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", metavar="NAME", default=None, help=f"one of: {', '.join(PRESETS)} (default: default)")
    src.add_argument("--config", metavar="FILE", help="a TOML configuration file")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="digits_cnn_qop (default), digits_resnet_qdq, digits_cnn_qdq, digits_resnet_qop, or all")
    p.add_argument("--images", type=int, default=100, metavar="N", help="test images to run (default 100)")
    p.add_argument("--start", type=int, default=0, metavar="I", help="first test image (default 0)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--batch", type=int, default=None, metavar="B", help="images per fabric run (default: what fits)")
    p.add_argument("--per-image-passes", action="store_true",
                   help="one MAC pass per layer and image (default: one per layer over the images of a run)")
    p.add_argument("--ops", type=int, default=None, help="(--macro) random operations")
    p.add_argument("--seed", type=int, default=None, help="(--macro) stimulus seed")


def print_report(res, out=sys.stdout) -> None:
    """The per-layer table and the totals of a :class:`~cimforge.sim.cosim.Cosim`."""
    rows = res.mean_rows()
    p = res.program
    out.write(f"\n{res.graph.name} on '{res.cfg.name}': {res.cfg.fabric.n_macros} macros of "
              f"{res.cfg.macro.rows}x{res.cfg.macro.cols} bits, {res.cfg.macro.pages} pages; weights "
              f"{'resident' if p.resident else 'streamed per layer'}; {p.batch} images per run, "
              f"{'one MAC pass per layer over them' if p.passes and p.passes[0].images > 1 else 'passes per image'}\n")
    out.write(f"{'layer':<44} {'kind':<15} {'split':<7} {'measured':>8} {'predicted':>9} {'error':>7} "
              f"{'ideal':>7} {'util':>6} {'bound':>6}  bit-exact\n")
    splits = {mp.layer: f"{mp.par.batch}x{mp.par.in_ch}x{mp.par.out_ch}" for mp in p.passes}
    for r in rows:
        util = f"{100 * r.utilisation:5.1f}%" if r.utilisation is not None else "    - "
        ideal = f"{r.ideal:7.1f}" if r.ideal else "      -"
        bound = f"{100 * r.occupancy:5.1f}%" if r.occupancy is not None else "    - "
        out.write(f"{r.layer[-44:]:<44} {r.kind:<15} {splits.get(r.layer, '-'):<7} {r.measured:>8} {r.predicted:>9} "
                  f"{100 * r.error:+6.1f}% {ideal} {util} {bound}  {'yes' if r.exact else 'NO'}\n")
    per_image = sum(r.measured for r in rows)
    conv = [r for r in rows if r.kind == "conv2d"]
    ideal = sum(r.ideal for r in rows)
    worst = max((abs(r.error) for rs in res.rows for r in rs), default=0.0)
    out.write("bound: the share of a macro's rows x columns the layer's tiles can occupy (utilisation <= bound)\n")
    out.write(f"per image: {per_image} cycles (layers), network utilisation {100 * ideal / per_image:.1f}%, "
              f"conv layers {100 * sum(r.ideal for r in conv) / max(1, sum(r.measured for r in conv)):.1f}%; "
              f"cost model worst error {100 * worst:.2f}% over {res.n_images} images x {len(rows)} layers\n")
    if p.prologue:
        out.write(f"prologue (resident weights, once per run): {len(p.prologue) - 1} loads\n")
    ga, ra = res.accuracy
    exact = "all tensors bit-exact" if res.exact else f"MISMATCH: {res.divergence}"
    out.write(f"{res.n_images} images: {exact}; accuracy RTL {100 * ra:.2f}%, golden {100 * ga:.2f}%\n")
    out.write(f"simulated {res.cycles} cycles in {res.run_wall:.2f} s of simulation "
              f"({res.cycles / max(res.run_wall, 1e-9):,.0f} cycles/s); {res.total_wall:.1f} s wall in all\n")


def run(args: argparse.Namespace) -> int:
    if args.macro:
        from .macro_demo import main
        return main(args)
    from tqdm import tqdm

    from .cosim import MODELS, cosimulate, load_digits_model
    cfg = load_config(args.config) if args.config else get_preset(args.preset or "default")
    models = MODELS if args.model == "all" else [args.model or MODELS[0]]
    ok = True
    for name in models:
        g = load_digits_model(name)
        print(f"{name}: compiling for '{cfg.name}' and generating the fabric (the first Verilator build takes a "
              f"minute or two; later runs reuse it)", flush=True)
        with tqdm(total=args.images, unit="img", desc=name, file=sys.stdout) as bar:
            res = cosimulate(g, cfg, args.images, sim=args.sim, start=args.start, batch=args.batch,
                             batches_per_launch=1, progress=bar, merge_images=not args.per_image_passes)
        print_report(res)
        ok &= res.exact and res.accuracy[0] == res.accuracy[1]
    return 0 if ok else 1
