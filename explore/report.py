"""The report of an exploration: a table of every point, Pareto fronts per pair of objectives (PNG), the best
points and their configurations as TOML ready for ``cimforge generate --config``, in Markdown and HTML.

Files written into the output folder (each atomically):

``results.json``           every point: its values, configuration, per-model results and RTL checks
``points.csv``             one row per (point, model): the table
``pareto_<a>_<b>.png``     per pair of objectives: every point per model, its Pareto front as a line
``best/<name>.toml``       the configuration of each best point (``cimforge generate --config best/<name>.toml``)
``report.md``, ``report.html``

Pareto fronts are over the points a model fits, per model, and over the points every model fits ("all
models": energy and latency summed over the models). The best points are those on the three-objective front
of "all models" (or, when no point fits every model, of each model), up to :data:`MAX_BEST`, plus the point with
the least of each objective.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
from pathlib import Path

import tomli_w

from ..config import config_to_dict
from ..outputs import write_atomic
from .search import OBJECTIVES, Exploration, PointResult

__all__ = ["pareto_front", "fronts", "best_points", "write_report", "table_rows", "MAX_BEST"]

#: Best points listed (and written as TOML) at most.
MAX_BEST = 12
ALL = "all models"


def pareto_front(items: list, keys: tuple[str, ...], value=lambda item, k: item[k]) -> list:
    """The items no other item dominates on ``keys`` (all minimised): another item is at most as large on every
    key and smaller on one. Ties keep both. Order: by the keys."""
    vals = [tuple(value(it, k) for k in keys) for it in items]
    front = []
    for i, vi in enumerate(vals):
        dominated = any(all(a <= b for a, b in zip(vj, vi)) and any(a < b for a, b in zip(vj, vi))
                        for j, vj in enumerate(vals) if j != i)
        if not dominated:
            front.append((vi, items[i]))
    return [it for _, it in sorted(front, key=lambda x: x[0])]


def _scopes(ex: Exploration) -> dict[str, list[tuple[PointResult, dict]]]:
    """Scope (a model's label, or "all models") -> (point, objectives) of the points it covers."""
    out = {m.label: [(pr, pr.objectives(m.label)) for pr in ex.points if pr.objectives(m.label)] for m in ex.models}
    if len(ex.models) > 1:
        out[ALL] = [(pr, pr.objectives()) for pr in ex.points if pr.objectives()]
    return out


def fronts(ex: Exploration) -> dict[tuple[str, str], dict[str, list[tuple[PointResult, dict]]]]:
    """Per pair of objectives, per scope: the Pareto front (points with their objectives)."""
    out = {}
    for a, b in itertools.combinations(OBJECTIVES, 2):
        out[(a, b)] = {scope: pareto_front(items, (a, b), lambda it, k: it[1][k])
                       for scope, items in _scopes(ex).items()}
    return out


def best_points(ex: Exploration) -> list[tuple[str, PointResult, dict, str]]:
    """(why, point, objectives, scope) of the best points (see the module docstring); a point best in several
    objectives is listed once, with every reason."""
    scopes = _scopes(ex)
    use = [ALL] if scopes.get(ALL) else [m.label for m in ex.models]
    out: dict[tuple[str, str], list] = {}
    for scope in use:
        items = scopes.get(scope, [])
        if not items:
            continue
        for k, label in OBJECTIVES.items():
            pr, obj = min(items, key=lambda it: (it[1][k], it[0].point.key))
            entry = out.setdefault((scope, pr.point.key), [[], pr, obj, scope])
            entry[0].append(f"least {label}")
        for pr, obj in pareto_front(items, tuple(OBJECTIVES), lambda it, k: it[1][k]):
            if (scope, pr.point.key) not in out and len(out) < MAX_BEST:
                out[(scope, pr.point.key)] = [["on the 3-objective Pareto front"], pr, obj, scope]
    return [("; ".join(why), pr, obj, scope) for why, pr, obj, scope in out.values()]


def table_rows(ex: Exploration) -> list[dict]:
    """One row per (point, model): the varied values, the outcome and the figures."""
    rows = []
    for pr in ex.points:
        for label, r in pr.results.items():
            row = {"point": pr.point.config.name, **dict(pr.point.values), "model": label, "status": r["status"]}
            if r["status"] == "ok":
                row.update({"area_mm2": r["area_mm2"], "transistors": r["transistors"],
                            "cycles_per_inference": r["cycles_per_inference"], "run_cycles": r["run_cycles"],
                            "utilisation": r["utilisation"], "energy_nj": r["energy_per_inference_nj"]})
            else:
                row["reason"] = r.get("reason", "")
            rtl = pr.rtl.get(label)
            row["rtl"] = "" if rtl is None else rtl["status"] + (f": {rtl['reason']}" if rtl.get("reason") else "")
            rows.append(row)
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _plot(ex: Exploration, pair: tuple[str, str], per_scope: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = pair
    fig, ax = plt.subplots(figsize=(7, 4.8))
    markers = itertools.cycle("os^Dvx*P")
    for scope, items in _scopes(ex).items():
        if not items:
            continue
        mk = next(markers)
        pts = ax.scatter([o[a] for _, o in items], [o[b] for _, o in items], marker=mk, alpha=0.35, s=22)
        front = per_scope[scope]
        ax.plot([o[a] for _, o in front], [o[b] for _, o in front], marker=mk, color=pts.get_facecolor()[0][:3],
                drawstyle="steps-post", label=f"{scope} ({len(items)} points, {len(front)} on the front)")
    ax.set_xlabel(OBJECTIVES[a])
    ax.set_ylabel(OBJECTIVES[b])
    for axis, key in ((ax.xaxis, a), (ax.yaxis, b)):
        vals = [o[key] for items in _scopes(ex).values() for _, o in items if o[key] > 0]
        if vals and max(vals) > 10 * min(vals):  # log only where the values span a decade
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"Pareto front: {OBJECTIVES[a]} vs {OBJECTIVES[b]}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def _results_json(ex: Exploration) -> dict:
    return {
        "space": ex.space.name, "method": ex.method, "models": [m.label for m in ex.models],
        "axes": ex.space.axes, "constraints": ex.space.constraints,
        "jobs": {"computed": ex.computed, "cached": ex.cached, "errors": ex.errors},
        "invalid": [{"values": dict(p.values), "reason": p.invalid} for p in ex.invalid],
        "points": [{"name": pr.point.config.name, "key": pr.point.key, "values": dict(pr.point.values),
                    "config": config_to_dict(pr.point.config), "results": pr.results, "rtl": pr.rtl}
                   for pr in ex.points],
    }


def _markdown(ex: Exploration, rows: list[dict], best, plots: list[str], stats: dict) -> str:
    axes = list(ex.space.axes)
    lines = [f"# Design-space exploration: {ex.space.name}", "",
             f"{len(ex.points)} points evaluated ({ex.method}) for {len(ex.models)} model(s): "
             f"{', '.join(m.label for m in ex.models)}; {len(ex.invalid)} invalid point(s) not evaluated; "
             f"jobs computed {ex.computed}, from the cache {ex.cached}, errors {ex.errors}.", ""]
    for k, v in stats.items():
        lines.append(f"- {k}: {v}")
    lines += ["", "Figures are estimates: cycles from the cost model (exact against the RTL where checked), area "
              "from the synthesised macros and 6T memories, energy from the calibrated per-event model "
              "(docs/explore.md).", "", "## Best points", "",
              "| why | scope | point | " + " | ".join(axes) + " | area (mm^2) | energy (nJ) | latency (cycles) | config |",
              "|---|---|---|" + "---|" * len(axes) + "---:|---:|---:|---|"]
    for why, pr, obj, scope in best:
        vals = dict(pr.point.values)
        lines.append(f"| {why} | {scope} | `{pr.point.config.name}` | " + " | ".join(_fmt(vals[a]) for a in axes)
                     + f" | {obj['area_mm2']:.4g} | {obj['energy_nj']:.4g} | {obj['latency_cycles']:.6g} | "
                     f"[best/{pr.point.config.name}.toml](best/{pr.point.config.name}.toml) |")
    if not best:
        lines.append("| no point fits any model | | | " + " | " * len(axes) + " | | | |")
    lines += ["", "Each configuration runs as `cimforge generate --config best/NAME.toml --out DIR`.", "",
              "## Pareto fronts", ""]
    lines += [f"![{p}]({p})" for p in plots]
    checks = ex.rtl_checks
    lines += ["", "## RTL spot checks", "",
              f"{len(checks)} check(s): {sum(r['status'] == 'pass' for _, _, r in checks)} passed "
              "(bit-exact, every instruction's retire cycle as predicted).", "",
              "| point | model | status | images | measured cycles per inference | seconds | reason |",
              "|---|---|---|---:|---|---:|---|"]
    for pr, m, r in checks:
        lines.append(f"| `{pr.point.config.name}` | {m} | {r['status']} | {r.get('images', '')} | "
                     f"{r.get('measured_cycles_per_inference', '')} | {r.get('seconds', 0):.1f} | "
                     f"{r.get('reason') or ''} |")
    cols = ["point", *axes, "model", "status", "area_mm2", "cycles_per_inference", "utilisation", "energy_nj",
            "rtl", "reason"]
    lines += ["", "## Every point", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)).replace("|", "/") for c in cols) + " |")
    if ex.invalid:
        lines += ["", "## Invalid points (not evaluated)", ""]
        lines += [f"- {p.label}: {p.invalid}" for p in ex.invalid[:50]]
    return "\n".join(lines) + "\n"


def _html(markdown: str, title: str) -> str:
    """A self-contained HTML page of the report's Markdown (tables, headings, images, lists)."""
    import re

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', text)
        text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)

    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:80%}"
           "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:48%}</style></head><body>"]
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip("|").split(" | ")])
                i += 1
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in block[0]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in block[2:]]
            out.append("</table>")
            continue
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    return "\n".join(out + ["</body></html>"]) + "\n"


def write_report(ex: Exploration, out: str | Path, stats: dict | None = None) -> list[Path]:
    """Write the report files (see the module docstring) into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(ex)
    written = []
    write_atomic(out / "results.json", json.dumps(_results_json(ex), indent=1, sort_keys=True) + "\n")
    buf = io.StringIO()
    fieldnames = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "points.csv", buf.getvalue())
    written += [out / "results.json", out / "points.csv"]
    plots = []
    for pair, per_scope in fronts(ex).items():
        name = f"pareto_{pair[0]}_{pair[1]}.png"
        if any(per_scope.values()):
            _plot(ex, pair, per_scope, out / name)
            plots.append(name)
            written.append(out / name)
    best = best_points(ex)
    for _, pr, _, _ in best:
        path = out / "best" / f"{pr.point.config.name}.toml"
        write_atomic(path, tomli_w.dumps(config_to_dict(pr.point.config)))
        written.append(path)
    md = _markdown(ex, rows, best, plots, stats or {})
    write_atomic(out / "report.md", md)
    write_atomic(out / "report.html", _html(md, f"cimforge explore: {ex.space.name}"))
    return written + [out / "report.md", out / "report.html"]
