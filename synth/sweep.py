"""Design-space sweeps: array size x precision x pages, synthesised and modelled, with plots and a summary table.

Each point is a macro configuration (``rows``, ``cols``, ``pages``, precision ``b`` = ``max_wb`` = ``max_ab``),
generated and synthesised like any design (cached, so a repeated sweep is quick), and evaluated at its native
precision (``b x b`` MACs) with the calibrated energy model. Outputs, in the sweep directory:

``sweep.json`` / ``sweep.md``          one row per point (the summary table)
``transistors_per_bit.png``            transistors per stored bit vs pages, against the published 10T cell
``energy_per_mac.png``                 energy per MAC vs rows, per precision
``ideal_tops.png``                     ideal TOPS (docs/architecture.md section 6 peak) vs rows, per precision
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..outputs import write_atomic
from ..config import CimConfig, FabricConfig, MacroConfig
from .energy import PUBLISHED, TECH, MacroOp, ideal_tops
from .report import build_report
from .synthesize import SynthResult
from .yosys import DEFAULT_TIMEOUT

__all__ = ["SweepPoint", "GRIDS", "grid_points", "run_sweep", "write_sweep", "plot_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """One macro geometry of a sweep."""

    rows: int
    cols: int
    pages: int
    bits: int  # precision: max_wb = max_ab

    @property
    def name(self) -> str:
        return f"sweep_r{self.rows}_c{self.cols}_p{self.pages}_b{self.bits}"

    def config(self) -> CimConfig:
        return CimConfig(name=self.name, macro=MacroConfig(rows=self.rows, cols=self.cols, pages=self.pages,
                                                           max_wb=self.bits, max_ab=self.bits),
                         fabric=FabricConfig(n_macros=1))


#: Named grids: rows, cols, pages, precisions. ``default`` takes a few minutes the first time (then cached);
#: ``small`` is for tests and quick looks.
GRIDS: dict[str, dict[str, tuple[int, ...]]] = {
    "small": {"rows": (8, 16), "cols": (16,), "pages": (1, 2), "bits": (4,)},
    "default": {"rows": (16, 32, 64), "cols": (64,), "pages": (1, 4, 16), "bits": (4, 8)},
}


def grid_points(grid: str | dict) -> list[SweepPoint]:
    """The points of a named grid (or of a dict with rows, cols, pages, bits)."""
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"sweep grid {grid!r}: allowed {', '.join(GRIDS)}")
        grid = GRIDS[grid]
    return [SweepPoint(r, c, p, b) for r, c, p, b in
            itertools.product(grid["rows"], grid["cols"], grid["pages"], grid["bits"])]


def _row(pt: SweepPoint, result: SynthResult) -> dict:
    cfg = pt.config()
    rep = build_report(cfg, result)
    op = MacroOp(ab=pt.bits, wb=pt.bits)
    f = next(f for f in rep["ppa"]["by_precision"] if (f["ab"], f["wb"]) == (op.ab, op.wb))
    t = rep["totals"]
    return {
        "name": pt.name, "rows": pt.rows, "cols": pt.cols, "pages": pt.pages, "bits": pt.bits,
        "stored_bits": t["stored_bits"], "cells": t["cells"], "flip_flops": t["flip_flops"],
        "transistors": t["transistors"], "transistors_per_bit": t["transistors_per_bit"],
        "storage_transistors_per_bit": t["storage_transistors_per_bit"], "depth_flat": t["depth_flat"],
        "energy_per_mac_fj": f["energy_per_mac_fj"], "tops": f["tops"],
        "ideal_tops": ideal_tops(cfg.macro, op), "tops_per_w": f["tops_per_w"], "area_mm2": f["area_mm2"],
        "tops_per_mm2": f["tops_per_mm2"],
    }


def run_sweep(points: list[SweepPoint], out_dir: str | Path, *, timeout: float = DEFAULT_TIMEOUT,
              use_cache: bool = True, cache_dir: str | Path | None = None, log=print) -> list[dict]:
    """Synthesise and model every point; return the summary rows (in ``points`` order)."""
    from .flow import synthesize_config

    rows = []
    for i, pt in enumerate(points):
        t0 = time.perf_counter()
        result = synthesize_config(pt.config(), out_dir, flat_depth=True, timeout=timeout, use_cache=use_cache,
                                   cache_dir=cache_dir)
        rows.append(_row(pt, result))
        log(f"[{i + 1}/{len(points)}] {pt.name}: {rows[-1]['transistors_per_bit']:.1f} transistors/bit, "
            f"{rows[-1]['energy_per_mac_fj']:.1f} fJ/MAC ({time.perf_counter() - t0:.1f} s)")
    return rows


_COLUMNS = [("rows", "rows", "{}"), ("cols", "cols", "{}"), ("pages", "pages", "{}"), ("bits", "b (ab=wb)", "{}"),
            ("stored_bits", "stored bits", "{:,}"), ("transistors", "transistors", "{:,}"),
            ("transistors_per_bit", "T/bit", "{:.1f}"), ("storage_transistors_per_bit", "storage T/bit", "{:.1f}"),
            ("depth_flat", "depth", "{}"), ("energy_per_mac_fj", "fJ/MAC", "{:.1f}"), ("ideal_tops", "ideal TOPS",
            "{:.4f}"), ("tops_per_w", "TOPS/W", "{:.1f}"), ("area_mm2", "mm^2", "{:.4f}"),
            ("tops_per_mm2", "TOPS/mm^2", "{:.3f}")]


def summary_markdown(rows: list[dict]) -> str:
    """The sweep's summary table as Markdown."""
    lines = ["# Sweep: array size x precision x pages (estimates)", "",
             f"Each point is one macro at its native precision b x b, clock {TECH.clock_ns} ns, calibrated energy "
             f"model; transistors from Yosys `stat -tech cmos` (bit cells are flip-flops). Published ISSCC 2022 "
             f"cell: {PUBLISHED['transistors_per_bit']}T per bit (6T SRAM + 4T compute).", "",
             "| " + " | ".join(h for _, h, _ in _COLUMNS) + " |",
             "|" + "---:|" * len(_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[k]) if r[k] is not None else "-" for k, _, fmt in _COLUMNS)
                     + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """The three PNG plots of a sweep (matplotlib, Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = []

    def series(key_fn, filt=lambda r: True):
        groups: dict = {}
        for r in rows:
            if filt(r):
                groups.setdefault(key_fn(r), []).append(r)
        return sorted(groups.items())

    # transistors per stored bit vs pages, one line per (rows, cols, bits)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (R, C, b), rs in series(lambda r: (r["rows"], r["cols"], r["bits"])):
        rs = sorted(rs, key=lambda r: r["pages"])
        ax.plot([r["pages"] for r in rs], [r["transistors_per_bit"] for r in rs], marker="o",
                label=f"{R}x{C}, {b}b")
    ax.axhline(PUBLISHED["transistors_per_bit"], color="k", linestyle="--",
               label="ISSCC'22 cell (6T SRAM + 4T compute)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("pages (weight wordlines per row position)")
    ax.set_ylabel("transistors per stored bit")
    ax.set_title("Transistors per stored bit (Yosys stat -tech cmos)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    paths.append(out / "transistors_per_bit.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # energy per MAC and ideal TOPS vs rows (they do not depend on pages: take the fewest pages)
    for key, ylabel, title, fname in [
            ("energy_per_mac_fj", "energy per MAC (fJ)", "Energy per MAC (calibrated model, 28 nm, 0.8 V)",
             "energy_per_mac.png"),
            ("ideal_tops", "ideal TOPS (one macro)", f"Ideal throughput at {TECH.clock_ns} ns", "ideal_tops.png")]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        min_pages = min(r["pages"] for r in rows)
        for (C, b), rs in series(lambda r: (r["cols"], r["bits"]), lambda r: r["pages"] == min_pages):
            rs = sorted(rs, key=lambda r: r["rows"])
            ax.plot([r["rows"] for r in rs], [r[key] for r in rs], marker="o", label=f"{C} cols, {b}b x {b}b")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("rows (reduction length)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        paths.append(out / fname)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def write_sweep(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """``sweep.json``, ``sweep.md`` and the plots into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "sweep.json", json.dumps(rows, indent=1, sort_keys=True) + "\n")
    write_atomic(out / "sweep.md", summary_markdown(rows))
    return [out / "sweep.json", out / "sweep.md"] + plot_sweep(rows, out)
