"""Checked-in synthesis baselines of the shipped presets, and the comparison that guards them.

A baseline (``synth/baselines/<preset>.json``) keeps, per module and for the design, the cells, flip-flops,
transistors and logic depth, with the tolerances the comparison allows. The tolerances absorb small ABC
differences between Yosys versions; they do not absorb a structural change (a doubled adder tree moves the compute
module's cells by ~100%, a page more moves the storage flip-flops). To accept an intended change, run
``cimforge synth --preset NAME --update-baselines`` and commit the new file with the change that caused it.
"""

from __future__ import annotations

import json
from pathlib import Path
from ..outputs import write_atomic

__all__ = ["BASELINE_DIR", "TOLERANCES", "baseline_from_report", "compare", "load_baseline", "save_baseline",
           "BaselineError"]

BASELINE_DIR = Path(__file__).resolve().parent / "baselines"

#: Allowed difference per figure: ``rel`` (fraction of the baseline) or ``abs`` (units), whichever is larger.
TOLERANCES: dict[str, dict[str, float]] = {
    "cells": {"rel": 0.03, "abs": 2},
    "transistors": {"rel": 0.03, "abs": 16},
    "flip_flops": {"rel": 0.0, "abs": 0},
    "depth": {"rel": 0.10, "abs": 2},
}

_TOTAL_KEYS = {"cells": "cells", "transistors": "transistors", "flip_flops": "flip_flops", "depth": "depth_flat"}


class BaselineError(ValueError):
    """A baseline file is missing or unreadable."""


def baseline_from_report(rep: dict) -> dict:
    """The figures of a report that a baseline keeps."""
    return {
        "design": rep["design"], "yosys": rep["yosys"], "flow_version": rep["flow_version"],
        "tolerances": TOLERANCES,
        "totals": {k: rep["totals"][src] for k, src in _TOTAL_KEYS.items()},
        "modules": {m["name"]: {k: m[k] for k in ("cells", "flip_flops", "transistors", "depth")}
                    for m in rep["modules"]},
    }


def _within(key: str, base, new, tol: dict) -> bool:
    if base is None or new is None:
        return base == new
    t = tol.get(key, {"rel": 0.0, "abs": 0})
    return abs(new - base) <= max(t.get("rel", 0.0) * abs(base), t.get("abs", 0))


def compare(baseline: dict, rep: dict) -> list[str]:
    """Differences between ``rep`` and ``baseline`` beyond the baseline's tolerances (empty when it passes).

    Each entry names the module (or ``design``), the figure, both values and the tolerance.
    """
    tol = baseline.get("tolerances", TOLERANCES)
    new = baseline_from_report(rep)
    problems = []

    def check(where: str, base: dict, cur: dict) -> None:
        for key in ("cells", "flip_flops", "transistors", "depth"):
            if not _within(key, base.get(key), cur.get(key), tol):
                b, c = base.get(key), cur.get(key)
                change = f" ({100 * (c - b) / b:+.1f}%)" if b and c is not None else ""
                problems.append(f"{where}: {key} {b} -> {c}{change}, tolerance {tol.get(key)}")

    check("design", baseline["totals"], new["totals"])
    for name in sorted(set(baseline["modules"]) | set(new["modules"])):
        if name not in new["modules"]:
            problems.append(f"{name}: module disappeared")
        elif name not in baseline["modules"]:
            problems.append(f"{name}: new module (not in the baseline)")
        else:
            check(name, baseline["modules"][name], new["modules"][name])
    return problems


def load_baseline(design: str, directory: str | Path = BASELINE_DIR) -> dict:
    """The baseline of ``design``.

    Raises
    ------
    BaselineError
        No baseline file, or not valid JSON.
    """
    path = Path(directory) / f"{design}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = sorted(p.stem for p in Path(directory).glob("*.json"))
        raise BaselineError(f"no baseline for design '{design}' in {directory}: known {known}; create it with "
                            f"`cimforge synth --preset {design} --update-baselines`") from None
    except ValueError as e:
        raise BaselineError(f"baseline {path} is not valid JSON: {e}") from None


def save_baseline(rep: dict, directory: str | Path = BASELINE_DIR) -> Path:
    """Write the baseline of ``rep``'s design."""
    path = Path(directory) / f"{rep['design']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(baseline_from_report(rep), indent=1, sort_keys=True) + "\n")
    return path
