"""The co-design flow on the fabric: compact, compile at per-layer precision, run (ISS or RTL), and report per
layer in the form of the SSL and BSQ papers' tables.

:func:`compile_codesign` compacts a model's graph (:func:`cimforge.compiler.compaction.compact`) and compiles it
with the graph inputs' host-side ranges, so each layer's ``MAC`` passes run at its precision
(:mod:`cimforge.compiler.precision`). :func:`layer_table` gives per weighted layer the kept reduction rows and
filters, weight and activation bits, tiles, pages, cycles (the cost model's, which equal the RTL's, or measured
ones) and the energy estimate (:mod:`cimforge.synth.network` on the program's own operation counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..compiler.compaction import Compaction, compact
from ..compiler.compile import compile_graph, max_batch
from ..compiler.cost import program_timing
from ..compiler.precision import Precision, layer_precisions
from ..compiler.program import Program
from ..compiler.tiling import tile_steps
from ..config import CimConfig
from ..golden.ir import Conv2d, Dense, Graph
from ..gen.isa import lanes
from ..golden.runner import run_graph
from ..sim.fabric_check import LayerRow, layer_rows
from ..synth.network import LayerActivity, network_figures
from .importing import CodesignModel

__all__ = ["Compiled", "compile_codesign", "layer_table", "format_table", "run_iss", "run_rtl", "energy_figures"]


@dataclass
class Compiled:
    """A model compiled for the fabric: the program, its compaction and each weighted layer's precision."""

    model: CodesignModel
    graph: Graph
    compaction: Compaction | None
    program: Program
    precisions: dict[str, Precision]
    batch: int

    def input_codes(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.input_codes(x)


def compile_codesign(model: CodesignModel, cfg: CimConfig, *, batch: int | None = None, compaction: bool = True,
                     merge_images: bool = True) -> Compiled:
    """Compact ``model``'s graph (unless ``compaction`` is False) and compile it at per-layer precision for
    ``batch`` images per run (default: as many as fit, at most 22)."""
    comp = compact(model.graph) if compaction else None
    graph = comp.graph if comp is not None else model.graph
    batch = batch or max(1, min(22, max_batch(graph, cfg)))
    prog = compile_graph(graph, cfg, batch=batch, merge_images=merge_images, input_ranges=model.input_ranges)
    return Compiled(model, graph, comp, prog, layer_precisions(graph, cfg, model.input_ranges), batch)


def predicted_rows(prog: Program, image: int = 0) -> list[LayerRow]:
    """Per-layer cycles of ``image`` as the cost model predicts them (equal to the RTL's trace intervals)."""
    trace = [{"pc": pc, "cycle": c} for pc, c in enumerate(program_timing(prog))]
    return layer_rows(prog, trace, image)


def _layer_ops(prog: Program) -> dict[str, dict]:
    """Per weighted layer over the run: macro operations, K and N tiles, pages, real MACs."""
    out: dict[str, dict] = {}
    for mp in prog.passes:
        d = out.setdefault(mp.layer, {"ops": 0, "kt": 0, "nt": 0, "macs": 0, "geoms": {}})
        d["ops"] += mp.npos * len(mp.tiles) * mp.nt
        d["macs"] += mp.geom.macs * mp.images
        d["geoms"][mp.group] = (len(mp.tiles), mp.geom)
    for d in out.values():
        d["kt"] = sum(kt for kt, _ in d["geoms"].values())
        d["nt"] = sum(-(-g.cout // (prog.cfg.macro.cols // prog.cfg.macro.max_wb)) for _, g in d["geoms"].values())
    return out


def energy_figures(c: Compiled) -> dict:
    """:func:`cimforge.synth.network.network_figures` of one run of ``c``'s program: each weighted layer's
    operations at its precision (``ab`` cycles each), its weight bits written once."""
    acts = []
    ops = _layer_ops(c.program)
    for layer in c.graph.weighted_layers:
        d, pr = ops[layer.name], c.precisions[layer.name]
        k = sum(g.K * g.cout for _, g in d["geoms"].values())
        acts.append(LayerActivity(name=layer.name, macs=d["macs"], macro_ops=d["ops"], cycles=d["ops"] * pr.ab,
                                  ab=pr.ab, wb=pr.wb, weight_bits=k * pr.wb, weight_tiles=d["kt"] * d["nt"]))
    return network_figures(acts, c.program.cfg, n_samples=c.batch,
                           counts_source="the compiled program's MAC operations at their precision")


@dataclass
class TableRow:
    """One line of the per-layer table."""

    layer: str
    kind: str
    rows: str = "-"
    cols: str = "-"
    bits: str = "-"
    tiles: str = "-"
    pages: int | str = "-"
    cycles: float = 0.0
    energy_nj: float | None = None
    extra: dict = field(default_factory=dict)


def layer_table(c: Compiled, measured: list[LayerRow] | None = None) -> list[TableRow]:
    """Per layer of image 0: kept rows / rows and kept filters / filters (compaction), ``wb/ab`` bits, K x N
    tiles, pages, cycles (``measured`` rows when given, else the cost model's) and energy per image."""
    rows = measured or predicted_rows(c.program)
    ops = _layer_ops(c.program)
    fig = energy_figures(c)
    e = {r["name"]: r["energy_fj"] / c.batch * 1e-6 for r in fig["layers"]}
    out = []
    for r in rows:
        t = TableRow(r.layer, r.kind, cycles=r.measured)
        layer = c.graph.layer(r.layer)
        if isinstance(layer, (Conv2d, Dense)):
            lc = c.compaction.layers.get(r.layer) if c.compaction else None
            d = ops[r.layer]
            pr = c.precisions[r.layer]
            if lc is not None:
                t.rows, t.cols = f"{lc.kept_rows}/{lc.rows}", f"{lc.kept_cols}/{lc.cols}"
            t.bits = f"{pr.wb}/{pr.ab}"
            t.tiles = f"{d['kt']}x{d['nt']}"
            t.pages = d["kt"] * d["nt"]
            t.energy_nj = e[r.layer]
        out.append(t)
    return out


def format_table(title: str, table: list[TableRow]) -> str:
    """A markdown table of :func:`layer_table` rows, with totals."""
    lines = [f"**{title}**", "", "| layer | rows kept | filters kept | w/a bits | K x N tiles | pages | cycles/image "
             "| energy nJ/image |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in table:
        en = f"{t.energy_nj:.3f}" if t.energy_nj is not None else "-"
        lines.append(f"| {t.layer} | {t.rows} | {t.cols} | {t.bits} | {t.tiles} | {t.pages} | {t.cycles:.1f} | {en} |")
    total_e = sum(t.energy_nj or 0 for t in table)
    lines.append(f"| total | | | | | | {sum(t.cycles for t in table):.1f} | {total_e:.3f} |")
    return "\n".join(lines)


def run_iss(c: Compiled, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The program on the instruction-set model for real inputs ``x`` (one run of at most ``batch`` images):
    ``(ISS tensors, golden tensors of the compacted graph)``."""
    from ..compiler.iss import run_program

    codes = c.input_codes(x)
    got, _ = run_program(c.program, codes)
    return got, run_graph(c.graph, codes, rounding=c.program.cfg.fabric.rounding)


def run_rtl(c: Compiled, x: np.ndarray, *, sim: str = "verilator") -> dict:
    """The program on the RTL for real inputs ``x`` (runs of ``batch`` images): every tensor against the golden
    model of the compacted graph, its outputs against the original model's, measured and predicted cycles.

    Returns
    -------
    dict
        ``exact`` (every tensor of every image), ``outputs_equal`` (graph outputs equal the uncompacted model's
        golden outputs), ``pred`` (top-1 per image), ``cycles`` (total measured), ``rows`` (measured
        :class:`~cimforge.sim.fabric_check.LayerRow` per image), ``cycle_exact`` (every instruction's retire
        cycle equals the cost model's).
    """
    from ..golden.runner import run_float
    from ..sim.fabric_runner import run_programs, system_verilog

    codes = c.input_codes(x)
    name = c.graph.inputs[0].name
    batches = [{name: codes[name][s:s + c.batch]} for s in range(0, len(x), c.batch)]
    # on the system top (the fabric with its external memory model, unused here): the bench's backdoor writes
    # the external memory model for every run
    design = system_verilog(c.program.cfg, []) if sim == "verilator" else None
    fr = run_programs(c.program.cfg, [(c.program, b) for b in batches], sim=sim, design=design)
    stamps = program_timing(c.program)
    res = {"exact": True, "outputs_equal": True, "pred": [], "cycles": 0, "rows": [], "cycle_exact": True}
    out = c.graph.outputs[0]
    original = run_float(c.model.original, x, rounding=c.program.cfg.fabric.rounding)[c.model.original.outputs[0]]
    for b, run in zip(batches, fr.runs):
        k = len(b[name])
        got = c.program.read_tensors(run.words, k)
        gold = run_graph(c.graph, b, rounding=c.program.cfg.fabric.rounding)
        res["exact"] &= all(np.array_equal(got[t], gold[t]) for t in gold)
        s = len(res["pred"]) and sum(len(p) for p in res["pred"])
        res["outputs_equal"] &= bool(np.array_equal(got[out], original[s:s + k]))
        res["pred"].append(got[out].reshape(k, -1).argmax(axis=1))
        res["cycles"] += run.cycles
        res["cycle_exact"] &= [t["cycle"] for t in run.trace] == stamps[:len(run.trace)]
        for i in range(k):
            res["rows"].append(layer_rows(c.program, run.trace, image=i))
    res["pred"] = np.concatenate(res["pred"])
    return res


def skip_savings(c: Compiled, x: np.ndarray) -> dict[str, dict]:
    """What activation zero-bit-plane skipping would save, measured on real inputs ``x``: per weighted layer
    the macro compute cycles of its operations at ``ab`` each (the fabric issues no skip) and with skipping
    (each operation's bit planes that are non-zero in some row of its tile, at least 1:
    :func:`cimforge.golden.macro.op_cycles`), and both again with each operation bounded below by its gather
    (``steps + 1`` cycles: the part of the saving a slot could use; the serializer's ``b * no`` and the lockstep
    of the macros of a slot can only take more). Ungrouped layers."""
    from ..golden import ops

    codes = c.input_codes(x)
    tensors = run_graph(c.graph, codes, rounding=c.program.cfg.fabric.rounding)
    out: dict[str, dict] = {}
    for mp in c.program.passes:
        if mp.image != 0:
            continue
        layer = c.graph.layer(mp.layer)
        pr = c.precisions[layer.name]
        xin = tensors[layer.input.name].astype(np.int64)
        if isinstance(layer, Conv2d):
            cols = ops.im2col(xin, layer.input.zero_point, layer.kernel, layer.stride, layer.padding,
                              layer.dilation, layer.groups, layer.output.shape[1:])[:, 0]  # (N, M, K)
            kh, kw = layer.kernel
            cin = layer.in_channels // layer.groups
            index = lambda e: (e[0] * kh + e[1]) * kw + e[2]  # noqa: E731 - im2col order (ci, ky, kx)
        else:
            cols = xin.reshape(len(xin), 1, -1)
            g = mp.geom
            index = lambda e, g=g: (e[0] * g.kh + e[1]) * g.kw + e[2]  # noqa: E731 - flatten order (c, y, x)
        d = out.setdefault(layer.name, {"ab": pr.ab, "ops": 0, "cycles": 0, "skip_cycles": 0, "slot_cycles": 0,
                                        "skip_slot_cycles": 0})
        for t in mp.tiles:
            sel = cols[:, :, [index(e) for e in t.elements]] & ((1 << pr.ab) - 1)
            ored = np.bitwise_or.reduce(sel, axis=-1)
            planes = np.maximum(sum((ored >> b) & 1 for b in range(pr.ab)), 1)
            floor = tile_steps(t, mp.geom, lanes(c.program.cfg)) + 1  # a slot waits for its gather too
            n = planes.size * mp.nt
            d["ops"] += n
            d["cycles"] += n * pr.ab
            d["skip_cycles"] += int(planes.sum()) * mp.nt
            d["slot_cycles"] += n * max(pr.ab, floor)
            d["skip_slot_cycles"] += int(np.maximum(planes, floor).sum()) * mp.nt
    return out
