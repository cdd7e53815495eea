"""``cimforge explore --space SPACE.toml --model M [--model M ...]``: search a design space for the models, on
Dask, and report the Pareto fronts (docs/explore.md).

Every point of the space (:mod:`.space`) is compiled for every model, costed by the cost model, synthesised
for area and priced by the energy model (:mod:`.evaluate`); a fraction of them also runs on the RTL. Jobs run on
a local Dask cluster sized to the machine (``--workers`` to choose), on ``--scheduler ADDRESS``, or in this
process (``--serial``); results are cached (:mod:`.cache`), so a rerun computes only new points. The report
(:mod:`.report`) goes to ``--out`` (default ``build/explore/<space>``).

Exit status: 0 when every job ended in an outcome (a point a model does not fit is one) and every RTL check
passed; 1 when a job failed or an RTL check did not pass; 2 on a user error (a bad space, option or model).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from ..errors import UserError, existing_file, int_at_least, output_dir, path_arg, positive_float

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .space import SEARCH_METHODS

    p.add_argument("--space", required=True, metavar="SPACE.toml", help="the space file (docs/explore.md)")
    p.add_argument("--model", action="append", required=True, metavar="M",
                   help="a quantized .onnx file, a committed digits model, a model of the MLPerf Tiny set "
                        "(resnet8, ds_cnn, mobilenet_v1_025, autoencoder) or tiny for all four; repeatable")
    p.add_argument("--out", type=path_arg, default=None, metavar="DIR",
                   help="report folder (default build/explore/<space name>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--serial", action="store_true", help="no Dask: every job in this process")
    p.add_argument("--workers", type=int_at_least(1), default=None, metavar="N",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--search", choices=SEARCH_METHODS, default=None,
                   help="override the space file's search.method")
    p.add_argument("--trials", type=int_at_least(1), default=None, metavar="N",
                   help="NSGA-II: distinct points to evaluate (override search.trials)")
    p.add_argument("--rtl-fraction", type=positive_float(1.0), default=None, metavar="F",
                   help="share of the points run on the RTL, at least one per run (override rtl.fraction)")
    p.add_argument("--rtl-images", type=int_at_least(1), default=None, metavar="N",
                   help="inputs per RTL check (override rtl.images)")
    p.add_argument("--cache", type=path_arg, default=None, metavar="DIR",
                   help="result cache (default $CIMFORGE_EXPLORE_CACHE or build/explore/cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_summary(ex, wall: float, out: Path) -> None:
    from .report import best_points, fronts

    n = len(ex.points)
    fits = sum(1 for pr in ex.points if pr.fitting())
    print(f"{ex.space.name}: {n} points ({ex.method}) x {len(ex.models)} model(s), {fits} fit at least one model, "
          f"{len(ex.invalid)} invalid; jobs computed {ex.computed}, cached {ex.cached}, errors {ex.errors}; "
          f"{wall:.1f} s wall, {60 * n / wall if wall else math.inf:.1f} points/min")
    for (a, b), per_scope in fronts(ex).items():
        for scope, front in per_scope.items():
            if front:
                pts = ", ".join(f"{pr.point.config.name} ({o[a]:.4g}, {o[b]:.4g})" for pr, o in front[:6])
                print(f"  front {a} / {b} [{scope}]: {len(front)} point(s): {pts}{' ...' if len(front) > 6 else ''}")
    for why, pr, obj, scope in best_points(ex)[:6]:
        print(f"  best ({why}, {scope}): {pr.point.config.name}: {pr.point.label}; area {obj['area_mm2']:.4g} mm^2, "
              f"{obj['energy_nj']:.4g} nJ, {obj['latency_cycles']:.6g} cycles")
    for pr, m, r in ex.rtl_checks:
        print(f"  RTL {pr.point.config.name} / {m}: {r['status']}"
              + (f" ({r['reason']})" if r.get("reason") else f", {r.get('images')} image(s) bit-exact, cycles as "
                                                              f"predicted ({r.get('seconds', 0):.0f} s)"))
    print(f"report: {out / 'report.md'} (and report.html, points.csv, results.json, best/*.toml)")


def run(args: argparse.Namespace) -> int:
    from .cache import ResultCache, default_cache_dir
    from .models import resolve_models
    from .report import write_report
    from .runner import DaskBackend, Runner, SerialBackend, dask_client
    from .search import explore
    from .space import load_space

    if args.workers and (args.serial or args.scheduler):
        raise UserError(f"--workers with {'--serial' if args.serial else '--scheduler'}: the local cluster's worker "
                        "count; allowed without them")
    space = load_space(existing_file("--space", args.space, (".toml",)))
    models = resolve_models(args.model)
    out = output_dir("--out", args.out or Path(default_cache_dir()).parent / space.name)
    cache = ResultCache(args.cache or default_cache_dir())
    t0 = time.perf_counter()
    kwargs = dict(method=args.search, trials=args.trials, rtl_fraction=args.rtl_fraction, rtl_images=args.rtl_images,
                  log_dir=str(out / "logs"), log=print)
    if args.serial:
        ex = explore(space, models, Runner(cache, SerialBackend(), progress=not args.no_progress), **kwargs)
    else:
        with dask_client(args.scheduler, args.workers) as client:
            ex = explore(space, models, Runner(cache, DaskBackend(client), progress=not args.no_progress), **kwargs)
    wall = time.perf_counter() - t0
    write_report(ex, out, {"wall time": f"{wall:.1f} s", "points per minute": f"{60 * len(ex.points) / wall:.1f}"})
    _print_summary(ex, wall, out)
    failed = [r for _, _, r in ex.rtl_checks if r["status"] != "pass"]
    return 1 if ex.errors or failed else 0
