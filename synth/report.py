"""Synthesis and PPA reports (JSON and Markdown) of one generated design.

A report joins the synthesis result (:mod:`.synthesize`) with the configuration: per-module figures, the design
totals, the macro split into categories (bit cells, compute, shift-add and accumulators, control), transistors per
stored bit against the published 10T cell, and the energy/throughput/area estimates (:mod:`.energy`) with their
sources and the calibration statement (:mod:`.calibrate`).

Categories come from module names: the generator names the tile's submodules ``storage``, ``compute`` and
``accum``; everything else (the macro top's plane sequencer and output muxing, the tile's pipeline and read-back
registers and bitwise path, and later the fabric) is ``control``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..outputs import write_atomic
from ..config import WEIGHT_BITS, CimConfig, config_to_dict
from .calibrate import calibration_report
from .energy import CALIBRATED, EVENTS, PUBLISHED, TECH, MacroOp, macro_figures
from .synthesize import FLOW_VERSION, SynthResult

__all__ = ["CATEGORIES", "category_of", "build_report", "write_report", "render_markdown", "ESTIMATE_NOTE"]

#: category key -> (keyword in the module name, description). Checked in order; no match means ``control``.
CATEGORIES: dict[str, tuple[str | None, str]] = {
    "storage": ("storage", "bit cells (storage): pages x rows x cols flip-flops, write decode, read muxes"),
    "compute": ("compute", "compute: in-array AND, per-column adder trees, per-wb combine"),
    "accum": ("accum", "shift-add and accumulators"),
    "control": (None, "control and periphery: plane sequencer, pipeline and read-back registers, bitwise path, "
                      "output muxing"),
}

ESTIMATE_NOTE = ("All figures are estimates from open tools and public models, not silicon measurements: cell and "
                 "transistor counts are Yosys generic gates priced by `stat -tech cmos` (flip-flops as 16T "
                 "static DFFs, so the bit cells are flip-flops, not 6T SRAM); energy, throughput and area come "
                 "from the per-event model below with one constant fitted to the published ISSCC 2022 macro.")


def category_of(module: str, design: str = "") -> str:
    """The category of ``module``; the design-name prefix is ignored so that a design called e.g. ``compute_x``
    does not put every module into ``compute``."""
    name = module[len(design) + 1:] if design and module.startswith(design + "_") else module
    name = name.lower()
    for key, (word, _) in CATEGORIES.items():
        if word is not None and word in name:
            return key
    return "control"


def _stored_bits(cfg: CimConfig, result: SynthResult, inst: dict[str, int]) -> int:
    """Bits stored in the design: the macro's bits times the macros present, counted by storage instances."""
    storage_inst = sum(n for name, n in inst.items() if category_of(name, cfg.name) == "storage")
    if storage_inst and storage_inst % cfg.macro.n_tiles == 0:
        return cfg.macro.bits * (storage_inst // cfg.macro.n_tiles)
    # an unfamiliar structure: count the storage flip-flops instead
    return sum(result.modules[n].flip_flops * k for n, k in inst.items() if category_of(n, cfg.name) == "storage")


def _macro_module(cfg: CimConfig, result: SynthResult) -> str | None:
    """The module holding one whole macro: the largest one whose subtree has exactly ``n_tiles`` storage
    instances (the macro itself when it is the top; the macro inside a fabric otherwise)."""
    storage: dict[str, int] = {}

    def count(name: str) -> int:
        if name not in storage:
            own = 1 if category_of(name, cfg.name) == "storage" else 0
            storage[name] = own + sum(n * count(s) for s, n in result.modules[name].submodules.items())
        return storage[name]

    cands = [n for n in result.modules if count(n) == cfg.macro.n_tiles]
    hier = {n: _hier_transistors(result, n) for n in cands}
    return max(cands, key=lambda n: (hier[n], n)) if cands else None


def _hier_transistors(result: SynthResult, name: str) -> int:
    m = result.modules[name]
    return m.transistors + sum(n * _hier_transistors(result, s) for s, n in m.submodules.items())


def _ops(cfg: CimConfig) -> list[MacroOp]:
    m = cfg.macro
    ops = [MacroOp(ab=min(wb, m.max_ab), wb=wb) for wb in WEIGHT_BITS if wb <= m.max_wb]
    native = MacroOp(ab=m.max_ab, wb=m.max_wb)
    if native not in ops:
        ops.append(native)
    return ops


def _published_reference() -> dict:
    """The published macro's figures with this model's throughput definition (isscc22 geometry, 8b x 8b)."""
    from ..presets import get_preset

    tops = macro_figures(get_preset("isscc22").macro, MacroOp(8, 8))["tops"]
    ref = {k: PUBLISHED[k] for k in ("tops_per_w", "area_mm2", "bits", "mb_per_mm2", "clock_ns", "source")}
    return {**ref, "tops": tops, "tops_per_mm2": tops / PUBLISHED["area_mm2"]}


def _network(cfg: CimConfig, transistors_per_macro: float) -> dict:
    """The digits CNN on ``cfg``'s fabric, or why it cannot run there."""
    from .network import digits_figures

    if cfg.macro.max_wb < 8 or cfg.macro.max_ab < 8:
        return {"skipped": f"the digits CNN is int8; this macro allows ab <= {cfg.macro.max_ab}, "
                           f"wb <= {cfg.macro.max_wb}"}
    return digits_figures(cfg, transistors_per_macro=transistors_per_macro)


def build_report(cfg: CimConfig, result: SynthResult, *, network: bool = False) -> dict:
    """The full report of ``cfg`` synthesised as ``result`` (plain data, deterministic); with ``network``, also
    the digits CNN run on the fabric (:mod:`.network`)."""
    inst = result.instances()
    modules = []
    for name in sorted(result.modules, key=lambda n: (n != result.top, n)):
        ms = result.modules[name]
        modules.append({
            "name": name, "category": category_of(name, cfg.name), "instances": inst[name],
            "cells": ms.num_cells, "flip_flops": ms.flip_flops, "transistors": ms.transistors, "depth": ms.depth,
            "submodules": ms.submodules, "cells_by_type": ms.cells,
        })
    cats = {}
    for key, (_, desc) in CATEGORIES.items():
        members = [m for m in modules if m["category"] == key]
        cats[key] = {
            "description": desc, "modules": [m["name"] for m in members],
            "cells": sum(m["cells"] * m["instances"] for m in members),
            "flip_flops": sum(m["flip_flops"] * m["instances"] for m in members),
            "transistors": sum(m["transistors"] * m["instances"] for m in members),
        }
    total_tr = result.total("transistors")
    for c in cats.values():
        c["transistor_share"] = c["transistors"] / total_tr if total_tr else 0.0
    bits = _stored_bits(cfg, result, inst)
    totals = {
        "cells": result.total("cells"), "flip_flops": result.total("flip_flops"), "transistors": total_tr,
        "depth_flat": result.flat_depth,
        "stored_bits": bits,
        "transistors_per_bit": total_tr / bits if bits else None,
        "storage_transistors_per_bit": cats["storage"]["transistors"] / bits if bits else None,
        "published_transistors_per_bit": PUBLISHED["transistors_per_bit"],
        "critical_path_ns": (result.flat_depth * TECH.nd2_delay_ps / 1000) if result.flat_depth else None,
    }
    macros = max(1, bits // cfg.macro.bits) if bits else 1
    macro_mod = _macro_module(cfg, result)
    macro_tr = _hier_transistors(result, macro_mod) if macro_mod else total_tr / macros
    ppa = [macro_figures(cfg.macro, op, transistors=macro_tr) for op in _ops(cfg)]
    return {
        "design": cfg.name, "top": result.top, "yosys": result.yosys, "flow_version": FLOW_VERSION,
        "config": config_to_dict(cfg),
        "note": ESTIMATE_NOTE,
        "incomplete_transistors": result.incomplete_transistors,
        "totals": totals,
        "categories": cats,
        "modules": modules,
        "macros_in_design": macros,
        "macro": {"module": macro_mod, "transistors": macro_tr,
                  "outside_macros_transistors": total_tr - macros * macro_tr},
        "ppa": {
            "scope": "one macro, MAC operations back to back, macro-level energy (no buffers), "
                     f"clock {TECH.clock_ns} ns (the published macro's), area at the stated density",
            "technology": {"node_nm": TECH.node_nm, "vdd": TECH.vdd, "clock_ns": TECH.clock_ns,
                           "nd2_area_um2": TECH.nd2_area_um2, "nd2_delay_ps": TECH.nd2_delay_ps,
                           "sources": TECH.sources},
            "events": {k: {"description": e.description, "fj_full_swing_0v9": e.fj, "source": e.source}
                       for k, e in EVENTS.items()},
            "constants": CALIBRATED.describe(),
            "by_precision": ppa,
            "published": _published_reference(),
        },
        "calibration": calibration_report(),
        "network": _network(cfg, macro_tr) if network else None,
    }


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def render_markdown(rep: dict) -> str:
    """The report as Markdown."""
    t = rep["totals"]
    lines = [f"# Synthesis and PPA report: {rep['design']}", "",
             f"> {rep['note']}", "",
             f"Top module `{rep['top']}`, {rep['yosys']}, flow v{rep['flow_version']}. Geometry: "
             + ", ".join(f"{k}={v}" for k, v in rep["config"]["macro"].items()) + ".", ""]
    if rep.get("incomplete_transistors"):
        lines += ["**Warning:** some cell types have no CMOS cost; transistor figures are lower bounds.", ""]
    lines += ["## Totals", "", "| cells | flip-flops | transistors | depth (flat) | stored bits | "
              "transistors/bit | storage transistors/bit | published cell | critical path est. |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| {_fmt(t['cells'])} | {_fmt(t['flip_flops'])} | {_fmt(t['transistors'])} | {_fmt(t['depth_flat'])} "
              f"| {_fmt(t['stored_bits'])} | {_fmt(t['transistors_per_bit'])} | "
              f"{_fmt(t['storage_transistors_per_bit'])} | {t['published_transistors_per_bit']}T (6T SRAM + 4T) | "
              f"{_fmt(t['critical_path_ns'])} ns |", "",
              "Critical path estimate = flat depth x NAND2 delay (47.8 ps, ZigZag-IMC 28 nm).", "",
              "## By category", "", "| category | cells | flip-flops | transistors | share | what |",
              "|---|---:|---:|---:|---:|---|"]
    for key, c in rep["categories"].items():
        lines.append(f"| {key} | {_fmt(c['cells'])} | {_fmt(c['flip_flops'])} | {_fmt(c['transistors'])} | "
                     f"{100 * c['transistor_share']:.1f}% | {c['description']} |")
    lines += ["", "## Per module (each counted once; x instances for the design)", "",
              "| module | category | instances | cells | flip-flops | transistors | depth | top cell types |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for m in rep["modules"]:
        top_types = ", ".join(f"{k.strip('$_')} {v}" for k, v in
                              sorted(m["cells_by_type"].items(), key=lambda kv: (-kv[1], kv[0]))[:4])
        lines.append(f"| `{m['name']}` | {m['category']} | {m['instances']} | {_fmt(m['cells'])} | "
                     f"{_fmt(m['flip_flops'])} | {_fmt(m['transistors'])} | {_fmt(m['depth'])} | {top_types} |")
    lines += ["", "Depth is `ltp -noff` inside the module, a submodule instance counting as one level; the flat "
              "depth above crosses the hierarchy.", ""]
    ppa = rep["ppa"]
    lines += ["## Throughput, energy, area (estimates)", "", f"Scope: {ppa['scope']}.", "",
              "| ab x wb | MACs/op | cycles/op | fJ/MAC | TOPS | TOPS/W | area mm^2 | TOPS/mm^2 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in ppa["by_precision"]:
        lines.append(f"| {f['ab']} x {f['wb']} | {f['macs_per_op']} | {f['cycles_per_op']} | "
                     f"{_fmt(f['energy_per_mac_fj'])} | {_fmt(f['tops'])} | {_fmt(f['tops_per_w'])} | "
                     f"{_fmt(f.get('area_mm2'))} | {_fmt(f.get('tops_per_mm2'))} |")
    pub = rep["ppa"]["published"]
    lines += ["", f"Published ISSCC 2022 macro for scale (8b x 8b): {pub['tops_per_w']} TOPS/W, "
              f"{pub['area_mm2']:.4f} mm^2 ({pub['bits']:,} b at {pub['mb_per_mm2']} Mb/mm^2), "
              f"{pub['tops']:.4f} TOPS and {pub['tops_per_mm2']:.3f} TOPS/mm^2 at {pub['clock_ns']} ns with this "
              "model's throughput definition."]
    lines += ["", "### Per-event energies (28 nm, full swing at 0.9 V; x activity x (Vdd/0.9)^2)", "",
              "| event | fJ | what | source |", "|---|---:|---|---|"]
    for k, e in ppa["events"].items():
        lines.append(f"| {k} | {e['fj_full_swing_0v9']:.3g} | {e['description']} | {e['source']} |")
    lines += ["", "Technology: " + "; ".join(f"{k}: {v}" for k, v in ppa["technology"]["sources"].items()) + ".",
              ""]
    lines += _network_markdown(rep.get("network"))
    cal = rep["calibration"]
    lines += ["## Calibration", "", cal["statement"], "",
              f"- published: {cal['published_tops_per_w']} TOPS/W (range {cal['published_range'][0]}-"
              f"{cal['published_range'][1]}); {cal['published_source']}",
              f"- uncalibrated model (activity 1): {cal['uncalibrated_tops_per_w']:.2f} TOPS/W",
              f"- fitted activity {cal['fitted_activity']:.4f}, in use {cal['activity_in_use']} "
              f"(two significant digits): {cal['calibrated_tops_per_w']:.2f} TOPS/W, "
              f"{cal['error_percent']:+.1f}% from the published figure", ""]
    return "\n".join(lines)


def _network_markdown(net: dict | None) -> list[str]:
    if not net:
        return []
    if "skipped" in net:
        return ["## Digits CNN run", "", f"Not run: {net['skipped']}.", ""]
    lines = ["## Digits CNN run (estimates)", "",
             f"`{net['model']}` on {net['n_samples']} held-out digits, {net['n_macros']} macros; activity counts "
             f"{net['counts_source']}. {net['assumptions'].capitalize()}. Weight tiles {net['weight_tiles']} of "
             f"{net['weight_tile_capacity']} pages"
             + ("" if net["weights_resident"] else " (do NOT fit: weight reloads are not counted)") + ".", "",
             "| layer | MACs | macro ops | cycles | utilisation | energy nJ |", "|---|---:|---:|---:|---:|---:|"]
    for la in net["layers"]:
        lines.append(f"| {la['name']} | {la['macs']:,} | {la['macro_ops']:,} | {la['cycles']:,} | "
                     f"{la['utilisation']:.2f} | {la['energy_fj'] * 1e-6:.2f} |")
    lines += ["", f"Total: {net['energy_per_inference_nj']:.2f} nJ/inference, {net['energy_per_mac_fj']:.0f} fJ/MAC "
              f"(buffers included), utilisation {net['utilisation']:.2f}, {_fmt(net['tops'])} TOPS, "
              f"{_fmt(net['tops_per_w'])} TOPS/W, {_fmt(net.get('tops_per_mm2'))} TOPS/mm^2 (macros only), "
              f"{net['inferences_per_s']:,.0f} inferences/s.", ""]
    return lines


def write_report(rep: dict, out_dir: str | Path) -> list[Path]:
    """Write ``<design>.json`` and ``<design>.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / f"{rep['design']}.json"
    md = out / f"{rep['design']}.md"
    write_atomic(js, json.dumps(rep, indent=1, sort_keys=True) + "\n")
    write_atomic(md, render_markdown(rep))
    return [js, md]
