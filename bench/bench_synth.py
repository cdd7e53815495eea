"""Synthesis and PPA figures of the shipped presets, with the calibration against the ISSCC 2022 macro.

Prints, per preset: cells, flip-flops, transistors, flat logic depth, transistors per stored bit (all and bit cells
only, against the published 10T cell), the macro's TOPS/W and TOPS/mm^2 at its native precision, the digits CNN's
energy per inference, and the wall time (generation included; a cached synthesis takes about a second). Then
the calibration: the fitted constant and the calibrated isscc22 point against the published 27.38 TOPS/W.

Run: ``.venv/bin/python bench/bench_synth.py [PRESET ...]`` (default: every preset).
"""

from __future__ import annotations

import sys
import tempfile
import time

from cimforge import PRESETS, get_preset
from cimforge.synth.calibrate import calibration_report
from cimforge.synth.flow import synthesize_config
from cimforge.synth.report import build_report


def main(names: list[str]) -> int:
    print(f"{'preset':9} {'cells':>9} {'FFs':>7} {'transistors':>12} {'depth':>5} {'T/bit':>6} {'cell T/bit':>10} "
          f"{'TOPS/W':>7} {'TOPS/mm2':>9} {'digits nJ':>9} {'time':>8}")
    with tempfile.TemporaryDirectory() as out:
        for name in names:
            cfg = get_preset(name)
            t0 = time.perf_counter()
            result = synthesize_config(cfg, out)
            dt = time.perf_counter() - t0
            rep = build_report(cfg, result, network=True)
            t, f, net = rep["totals"], rep["ppa"]["by_precision"][-1], rep["network"]
            nj = f"{net['energy_per_inference_nj']:.2f}" if "energy_per_inference_nj" in net else "-"
            print(f"{name:9} {t['cells']:>9,} {t['flip_flops']:>7,} {t['transistors']:>12,} {t['depth_flat']:>5} "
                  f"{t['transistors_per_bit']:>6.1f} {t['storage_transistors_per_bit']:>10.1f} "
                  f"{f['tops_per_w']:>7.1f} {f['tops_per_mm2']:>9.3f} {nj:>9} {dt:>7.1f}s")
    cal = calibration_report()
    print(cal["statement"])
    print(f"uncalibrated {cal['uncalibrated_tops_per_w']:.2f} TOPS/W; fitted activity {cal['fitted_activity']:.4f}, "
          f"in use {cal['activity_in_use']}; published cell {t['published_transistors_per_bit']}T per bit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(PRESETS)))
