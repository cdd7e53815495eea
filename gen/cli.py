"""``cimforge generate``: write the Verilog and params.json of a preset or a configuration file."""

from __future__ import annotations

import argparse
import time

from ..config import load_config
from ..presets import PRESETS, get_preset
from .emit import generate


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=None, metavar="NAME", help=f"one of: {', '.join(PRESETS)}")
    src.add_argument("--config", metavar="FILE", help="a TOML configuration file")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")


def run(args: argparse.Namespace) -> int:
    cfg = get_preset(args.preset) if args.preset else load_config(args.config)
    t0 = time.perf_counter()
    paths = generate(cfg, args.out)
    dt = time.perf_counter() - t0
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"generated '{cfg.name}' in {dt:.2f} s")
    return 0
