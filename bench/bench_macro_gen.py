"""Generation time and Verilog size of the macro generator.

Goal (issue 2): a 256x256 macro (64 Kb, pages 1) in at most 10 s with at most 2 MB of Verilog. The column tile
is elaborated once and instantiated by name, so both figures follow the unique logic, not the bit count.
Run: .venv/bin/python bench/bench_macro_gen.py
"""

from __future__ import annotations

import time

from cimforge import CimConfig, MacroConfig, get_preset
from cimforge.gen.emit import macro_verilog

CASES = [
    ("64x64, 1 page", CimConfig(name="b64", macro=MacroConfig(rows=64, cols=64, pages=1))),
    ("128x128, 1 page", CimConfig(name="b128", macro=MacroConfig(rows=128, cols=128, pages=1))),
    ("256x256, 1 page", CimConfig(name="b256", macro=MacroConfig(rows=256, cols=256, pages=1))),
    ("isscc22 (32x64, 16 pages)", get_preset("isscc22")),
]


def main() -> None:
    print(f"{'macro':28s} {'bits':>8s} {'time (s)':>9s} {'Verilog (KiB)':>14s} {'bytes/bit':>10s}")
    for label, cfg in CASES:
        t0 = time.perf_counter()
        _, text = macro_verilog(cfg)
        dt = time.perf_counter() - t0
        size = len(text.encode())
        print(f"{label:28s} {cfg.macro.bits:8d} {dt:9.2f} {size / 1024:14.0f} {size / cfg.macro.bits:10.1f}")
        if cfg.macro.bits == 65536:
            verdict = "meets" if dt <= 10 and size <= 2_000_000 else "MISSES"
            print(f"{'':28s} goal <= 10 s and <= 2 MB for 64 Kb: {verdict}")


if __name__ == "__main__":
    main()
