"""``cimforge generate``: write the Verilog and params.json of a preset or a configuration file.

Validation before elaboration: the configuration (:mod:`cimforge.config`), the design-size bound
(:func:`cimforge.gen.size.check_generation_size`) and the output location (:func:`cimforge.outputs.check_output_dir`);
the output directory is then replaced as a whole (:func:`cimforge.gen.emit.generate`).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from ..presets import PRESETS
from .emit import generate

#: Seconds after which a running generation prints what it is doing (a small design is done before that).
PROGRESS_AFTER = 5.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=None, metavar="NAME", help=f"one of: {', '.join(PRESETS)}")
    src.add_argument("--config", metavar="FILE", help="a TOML configuration file")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")


def _progress(cfg, t0: float, done: threading.Event, every: float = 15.0) -> None:
    """Say once, then every ``every`` seconds, that the elaboration is still running and for how long."""
    from .size import generation_estimate
    est = generation_estimate(cfg)
    if done.wait(PROGRESS_AFTER):
        return
    print(f"elaborating '{cfg.name}' ({cfg.fabric.n_macros} macros of {cfg.macro.rows}x{cfg.macro.cols}x"
          f"{cfg.macro.pages}; estimated {est:.0f} s on one core) ...", file=sys.stderr, flush=True)
    while not done.wait(every):
        print(f"  ... still elaborating, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from ..cli import config_from_options
    from ..outputs import check_output_dir
    from .size import check_generation_size

    cfg = config_from_options(args)
    check_generation_size(cfg, "generate")
    check_output_dir("--out", args.out)
    t0 = time.perf_counter()
    done = threading.Event()
    ticker = threading.Thread(target=_progress, args=(cfg, t0, done), daemon=True)
    ticker.start()
    try:
        paths = generate(cfg, args.out)
    finally:
        done.set()
    dt = time.perf_counter() - t0
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"generated '{cfg.name}' in {dt:.2f} s")
    return 0
