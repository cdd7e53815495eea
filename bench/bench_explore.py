"""Design-space exploration over the MLPerf Tiny set (issue 16): at least 50 points, every point compiled for
resnet8, ds_cnn, mobilenet_v1_025 and autoencoder, costed, synthesised and priced, on a local Dask cluster;
prints the wall time, points per minute, the Pareto fronts and the RTL spot checks.

    .venv/bin/python bench/bench_explore.py [--workers N] [--fresh] [--out DIR] [--rtl-fraction F]

The space (:data:`SPACE`, 72 points): two array heights, two page counts, three macro counts, three weight
memory depths and two external-memory latencies around the default preset, with the parameter, descriptor,
program and trace memories large enough for the tiny set (the compiler's external-memory mode stages
activations and weights through the DMA, docs/memory.md). Four macro geometries, so four syntheses the first
time (cached by content under build/synth/cache, then seconds). Results are cached under
``build/explore/bench-cache``: a second run computes nothing (``--fresh`` empties the result cache first, to
measure the computation; synthesis stays cached).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPACE = {
    "name": "tiny_set", "base": "default",
    "fields": {
        "macro": {"rows": [32, 64], "pages": [4, 8]},
        "fabric": {"n_macros": [2, 4, 8], "weight_depth": [1024, 4096, 8192], "ext_latency": [16, 64],
                   "param_depth": [1024], "desc_depth": [1024]},
        "controller": {"program_depth": [16384], "trace_depth": [16384]},
    },
    "search": {"method": "exhaustive"},
    "rtl": {"fraction": 0.01, "images": 2},
}


def main(argv=None) -> int:
    from cimforge.explore.cache import ResultCache
    from cimforge.explore.models import resolve_models
    from cimforge.explore.report import best_points, fronts, write_report
    from cimforge.explore.runner import DaskBackend, Runner, dask_client
    from cimforge.explore.search import explore
    from cimforge.explore.space import parse_space

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
    ap.add_argument("--fresh", action="store_true", help="empty the bench's result cache first")
    ap.add_argument("--rtl-fraction", type=float, default=None, help="override rtl.fraction")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "explore" / "bench")
    args = ap.parse_args(argv)

    cache_dir = ROOT / "build" / "explore" / "bench-cache"
    if args.fresh and cache_dir.exists():
        shutil.rmtree(cache_dir)
    space = parse_space(SPACE)
    t0 = time.perf_counter()
    models = resolve_models(["tiny"])
    t_models = time.perf_counter() - t0
    print(f"space {space.name}: {space.size} points x {len(models)} models ({', '.join(m.label for m in models)}; "
          f"built or read from build/models in {t_models:.1f} s)", flush=True)
    t0 = time.perf_counter()
    with dask_client(workers=args.workers) as client:
        n_workers = len(client.scheduler_info()["workers"])
        t_cluster = time.perf_counter() - t0
        ex = explore(space, models, Runner(ResultCache(cache_dir), DaskBackend(client), progress=True),
                     rtl_fraction=args.rtl_fraction, log_dir=str(args.out / "logs"), log=print)
    wall = time.perf_counter() - t0
    n = len(ex.points)
    write_report(ex, args.out, {"wall time": f"{wall:.1f} s", "points per minute": f"{60 * n / wall:.1f}",
                                "workers": str(n_workers)})

    evals = [r for pr in ex.points for r in pr.results.values()]
    print(f"\n{n} points x {len(models)} models on {n_workers} Dask workers (cluster up in {t_cluster:.1f} s): "
          f"wall {wall:.1f} s, {60 * n / wall:.1f} points/min; jobs computed {ex.computed}, cached {ex.cached}, "
          f"errors {ex.errors}")
    for m in models:
        rs = [pr.results[m.label] for pr in ex.points]
        ok = [r for r in rs if r["status"] == "ok"]
        why = sorted({r.get("reason", "")[:90] for r in rs if r["status"] != "ok"})
        print(f"  {m.label}: fits {len(ok)} of {n} points"
              + (f"; cycles/inference {min(r['cycles_per_inference'] for r in ok):.0f}.."
                 f"{max(r['cycles_per_inference'] for r in ok):.0f}, energy "
                 f"{min(r['energy_per_inference_nj'] for r in ok):.1f}..{max(r['energy_per_inference_nj'] for r in ok):.1f}"
                 f" nJ" if ok else "") + (f"; not fitting: {why[:2]}" if why else ""))
    secs = [r["seconds"] for r in evals if "seconds" in r]
    if secs:
        print(f"  evaluation seconds per (point, model) when computed: median {sorted(secs)[len(secs) // 2]:.2f}, "
              f"max {max(secs):.1f}")
    print("\nPareto fronts (scope: a model, or all models with energy and latency summed):")
    for (a, b), per_scope in fronts(ex).items():
        for scope, front in per_scope.items():
            pts = "; ".join(f"{pr.point.label.replace('fabric.', '').replace('macro.', '')} "
                            f"-> ({o[a]:.4g}, {o[b]:.4g})" for pr, o in front[:4])
            print(f"  {a} vs {b} [{scope}]: {len(front)} on the front: {pts}{' ...' if len(front) > 4 else ''}")
    print("\nbest points:")
    for why, pr, obj, scope in best_points(ex)[:5]:
        print(f"  {why} [{scope}]: {pr.point.config.name} ({pr.point.label}): area {obj['area_mm2']:.3f} mm^2, "
              f"{obj['energy_nj']:.1f} nJ, {obj['latency_cycles']:.0f} cycles")
    print("\nRTL spot checks:")
    for pr, m, r in ex.rtl_checks:
        print(f"  {pr.point.config.name} / {m}: {r['status']}"
              + (f": {r['reason']}" if r.get("reason") else
                 f": {r['images']} inputs bit-exact, every retire cycle as predicted "
                 f"({r['measured_cycles_per_inference']} cycles per inference)") + f" [{r.get('seconds', 0):.0f} s]")
    if not ex.rtl_checks:
        print("  none (no point fits any model)")
    print(f"\nreport: {args.out / 'report.md'}")
    return 0 if not ex.errors and all(r["status"] == "pass" for _, _, r in ex.rtl_checks) else 1


if __name__ == "__main__":
    sys.exit(main())
