"""Tables (text and markdown) and plots of partitioning results."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cimforge.compiler.cost import Parallelism
from cimforge.golden.ir import LayerShape

from .dataflow import out_positions, plane
from .inference import InferencePlan
from .training import STRATEGIES, TrainingPlan

__all__ = ["describe", "split_label", "training_rows", "strategy_rows", "inference_rows", "inference_summary_rows",
           "format_table", "markdown_table", "write_training_report", "write_inference_report"]


def _m(x: float) -> str:
    """Millions with three significant digits."""
    return f"{x / 1e6:.4g}"


def describe(layer: LayerShape) -> str:
    """A short shape string: ``3x224x224 -> 96x54x54 k11 s4`` (conv2d), ``9216 -> 4096`` (dense)."""
    if layer.kind == "conv2d":
        (h, w), (ho, wo) = plane(layer.input_shape[1:]), plane(layer.output_shape[1:])
        (k0, k1), s0 = plane(layer.kernel), plane(layer.stride or (1,))[0]
        g = f" g{layer.groups}" if layer.groups > 1 else ""
        return (f"{layer.in_channels}x{h}x{w} -> {layer.out_channels}x{ho}x{wo} k{k0}" + (f"x{k1}" if k1 != k0 else "")
                + (f" s{s0}" if s0 > 1 else "") + g)
    if layer.kind == "dense":
        seq = f" (x{out_positions(layer)})" if out_positions(layer) > 1 else ""
        return f"{layer.in_channels} -> {layer.out_channels}{seq}"
    return "(zero cost)"


def split_label(par: Parallelism) -> str:
    """``"BxKxN"``: a split's replicas, reduction groups and output groups."""
    return f"{par.batch}x{par.in_ch}x{par.out_ch}"


def training_rows(plan: TrainingPlan) -> tuple[list[str], list[list[str]]]:
    """Per weighted layer: index, name, op, shape, types per level, communication (plain, weighted; millions of
    elements) and training compute per accelerator (GMAC)."""
    header = ["#", "layer", "shape", "types (level 0..H-1)", "comm Mel", "comm x pairs Mel", "GMAC/acc"]
    types = plan.types()
    plain, weighted = plan.layer_plain, plan.layer_weighted
    macs = plan.compute_macs() / plan.accelerators.n
    rows = []
    for i, l in enumerate(plan.network.weighted):
        rows.append([str(i), l.name, describe(l), " ".join(types[i]) or "-", _m(plain[i]), _m(weighted[i]),
                     f"{macs[i] / 1e9:.4g}"])
    rows.append(["", "total", "", "", _m(plan.total_plain), _m(plan.total_weighted), f"{macs.sum() / 1e9:.4g}"])
    return header, rows


def strategy_rows(plans: Mapping[str, TrainingPlan], bytes_per_element: float = 2.0
                  ) -> tuple[list[str], list[list[str]]]:
    """Totals per strategy, with the ratio to data parallelism."""
    header = ["strategy", "comm Mel", "comm GB", "comm x pairs Mel", "vs dp", "vs dp (x pairs)", "exact"]
    base = plans.get("dp")
    rows = []
    for name, p in plans.items():
        rp = base.total_plain / p.total_plain if base and p.total_plain else float("nan")
        rw = base.total_weighted / p.total_weighted if base and p.total_weighted else float("nan")
        rows.append([name, _m(p.total_plain), f"{p.total_plain * bytes_per_element / 1e9:.4g}", _m(p.total_weighted),
                     f"{rp:.2f}x", f"{rw:.2f}x", "yes" if p.exact else "no"])
    return header, rows


def inference_rows(plan: InferencePlan) -> tuple[list[str], list[list[str]]]:
    header = ["#", "layer", "shape", "par bxkxn", "macros", "stage", "pages", "resident", "compute cyc",
              "wload cyc", "psum kbit", "act kbit", "cyc/batch"]
    rows = []
    for i, m in enumerate(plan.mappings):
        rows.append([str(i), m.layer.name, describe(m.layer), split_label(m.par),
                     f"{m.first_macro}..{m.first_macro + m.n_macros - 1}", str(m.stage), str(m.cost.pages),
                     "yes" if m.resident else "no", str(m.cost.compute_cycles), str(m.cost.weight_load_cycles),
                     f"{m.cost.psum_traffic_bits / 1e3:.4g}", f"{m.cost.act_traffic_bits / 1e3:.4g}",
                     str(m.per_batch_cycles)])
    return header, rows


def inference_summary_rows(plans: Mapping[str, InferencePlan]) -> tuple[list[str], list[list[str]]]:
    header = ["strategy", "schedule", "cycles/batch", "latency", "setup", "reload cyc/batch", "psum kbit",
              "act kbit", "speedup vs dp", "vs mp"]
    dp, mp = plans.get("dp"), plans.get("mp")
    rows = []
    for name, p in plans.items():
        rows.append([name, p.schedule, str(p.per_batch_cycles), str(p.latency_cycles), str(p.setup_cycles),
                     str(p.reload_cycles), f"{p.psum_bits / 1e3:.4g}", f"{p.act_bits / 1e3:.4g}",
                     f"{dp.per_batch_cycles / p.per_batch_cycles:.2f}x" if dp else "",
                     f"{mp.per_batch_cycles / p.per_batch_cycles:.2f}x" if mp else ""])
    return header, rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned plain-text table (numbers right-aligned)."""
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]

    def cell(v: str, w: int) -> str:
        s = str(v)
        return s.rjust(w) if s[:1].isdigit() or s[:1] == "-" else s.ljust(w)

    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(cell(v, w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(v).replace("|", "/") for v in r) + " |" for r in rows]
    return "\n".join(out)


def _plot_training(plans: Mapping[str, TrainingPlan], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    H = max(len(p.levels) for p in plans.values())
    width = 0.8 / max(1, len(plans))
    for k, (name, p) in enumerate(plans.items()):
        ax1.bar(np.arange(H) + k * width, p.level_cost, width, label=name)
    ax1.set_yscale("log")
    ax1.set_xlabel("hierarchy level h")
    ax1.set_ylabel("elements received per side")
    ax1.set_title("communication per level")
    ax1.legend(fontsize=8)
    best = min(plans.values(), key=lambda p: p.total_plain)
    ax2.bar(range(len(best.network.weighted)), best.layer_plain / 1e6)
    ax2.set_xlabel("weighted layer")
    ax2.set_ylabel("M elements (sum over levels)")
    ax2.set_title(f"per layer, {best.strategy}")
    fig.suptitle(f"{best.network.name}: {best.accelerators.n} accelerators, batch {best.batch}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_inference(plans: Mapping[str, InferencePlan], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.2))
    n = len(next(iter(plans.values())).mappings)
    width = 0.8 / max(1, len(plans))
    for k, (name, p) in enumerate(plans.items()):
        ax.bar(np.arange(n) + k * width, [m.per_batch_cycles for m in p.mappings], width,
               label=f"{name} ({p.schedule}, {p.per_batch_cycles} cyc/batch)")
    ax.set_yscale("log")
    ax.set_xlabel("weighted layer")
    ax.set_ylabel("cycles per batch (steady state)")
    any_plan = next(iter(plans.values()))
    ax.set_title(f"{any_plan.network.name} on {any_plan.cfg.name}: batch {any_plan.batch}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_training_report(plans: Mapping[str, TrainingPlan], chosen: str, path: str | Path,
                          bytes_per_element: float = 2.0) -> Path:
    """Markdown report (strategy totals, the chosen strategy's per-layer table) and a PNG beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_suffix(".png")
    _plot_training(plans, png)
    p = plans[chosen]
    acc = p.accelerators
    lines = [f"# Partitioning {p.network.name} for training", "",
             f"{acc.n} accelerators ({acc.levels} levels), batch {p.batch}, search {p.search}; "
             f"communication in millions of elements (x{bytes_per_element:g} bytes), "
             "per level what one side of a pair receives; 'x pairs' weights level h by its 2^h pairs.", "",
             "## Strategies", "", markdown_table(*strategy_rows(plans, bytes_per_element)), "",
             *[f"- `{k}`: {STRATEGIES[k]}" for k in plans], "",
             f"## Per layer: {chosen}", "", "Types: I batch, II input channel, III output channel.", "",
             markdown_table(*training_rows(p)), "", f"![communication]({png.name})", ""]
    if not acc.homogeneous_array:
        lines += [f"Heterogeneous array: balanced compute time {p.compute_time():.4g} vs "
                  f"{p.naive_compute_time():.4g} with even splits.", ""]
    path.write_text("\n".join(lines))
    return path


def write_inference_report(plans: Mapping[str, InferencePlan], chosen: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_suffix(".png")
    _plot_inference(plans, png)
    p = plans[chosen]
    m = p.cfg.macro
    lines = [f"# Mapping {p.network.name} for inference on {p.cfg.name}", "",
             f"{p.n_macros} macros of {m.rows} rows x {m.cols} cols x {m.pages} pages, batch {p.batch}; cycle model: "
             f"{p.cycle_model}.", "", "## Strategies", "", markdown_table(*inference_summary_rows(plans)), "",
             f"## Per layer: {chosen} ({p.schedule})", "", markdown_table(*inference_rows(p)), "",
             f"![cycles]({png.name})", ""]
    path.write_text("\n".join(lines))
    return path
