"""Scoring a fabric run: every tensor against the golden model, per-layer cycles against the cost model, and a
report of the first divergence that names the layer, the tile, the macro and the output element.

Per-layer cycles (measured and predicted alike) are intervals between retire stamps of the trace: a layer's
interval runs from the retire of the previous compute instruction (``MAC``/``POOL``/``EW``; the prologue's
``SYNC`` or the previous image for the first layer) to the retire of its own last compute instruction, so it
includes the weight loads and waits issued in between.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import INT8_BITS
from ..gen.isa import LAYER_COMPUTE
from ..compiler.cost import ideal_cycles, occupancy, program_timing
from ..compiler.memory import sync_stalls
from ..compiler.program import Program
from ..golden.ir import Conv2d, Dense

__all__ = ["LayerRow", "Divergence", "layer_rows", "first_divergence", "expected_counters"]

#: The instructions that count as a layer's cycles (gen.isa.LAYER_COMPUTE).
COMPUTE = LAYER_COMPUTE


@dataclass
class LayerRow:
    """One layer of one image: cycles measured and predicted, ideal cycles, and bit-exactness."""

    layer: str
    kind: str
    measured: int
    predicted: int
    ideal: float
    exact: bool | None = None
    occupancy: float | None = None
    #: Cycles of the layer's interval spent in ``DSYNC``s waiting on the external memory (measured).
    stall: int = 0

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured if self.measured else 0.0

    @property
    def utilisation(self) -> float | None:
        return self.ideal / self.measured if self.ideal and self.measured else None


def _intervals(program: Program, stamps: dict[int, int], image: int) -> dict[str, float]:
    """Layer -> cycles of ``image`` from retire stamps ``{pc: cycle}``. An instruction over several images (a
    merged ``MAC`` pass) counts for each of them in equal shares."""
    out: dict[str, float] = {}
    last = stamps[program.prologue[-1]] if program.prologue else -1
    shares = {mp_pc: mp.images for mp_pc, mp in program.pass_at.items()}
    for info in program.instrs:
        if info.op not in COMPUTE:
            continue
        if info.pc not in stamps:  # past the trace memory's depth: not measured
            break
        if info.layer is not None and (info.image == image or info.image is None):
            share = shares.get(info.pc, 1) if info.image is None else 1
            delta = stamps[info.pc] - last
            out[info.layer] = out.get(info.layer, 0) + (delta / share if share > 1 else delta)
        last = stamps[info.pc]
    return out


def layer_rows(program: Program, trace: list[dict], image: int = 0,
               exact: dict[str, bool] | None = None) -> list[LayerRow]:
    """Per-layer rows of ``image`` (measured from ``trace``, predicted by :func:`program_timing`)."""
    stamps = {t["pc"]: t["cycle"] for t in trace}
    measured = _intervals(program, stamps, image)
    stalls: dict[str, int] = {}
    if sorted(stamps) == list(range(len(stamps))):  # a straight-line run: every pc once, in order
        # a DSYNC's wait counts toward the next compute instruction, as its cycles do (_intervals)
        waits = sync_stalls(program, [stamps[pc] for pc in range(len(stamps))])
        pending = 0
        for pc, (_, w) in enumerate(waits):
            info = program.instrs[pc]
            if info.op == "DSYNC":
                pending += w
            elif info.op in COMPUTE:
                if info.layer is not None and info.image in (image, None):
                    stalls[info.layer] = stalls.get(info.layer, 0) + pending
                pending = 0
    pred_stamps = program_timing(program)
    predicted = _intervals(program, dict(enumerate(pred_stamps)), image)
    rows = []
    geoms: dict[str, list] = {}  # every group's geometry per layer (a last super-group may differ)
    for (name, _), geo in {(mp.layer, mp.group): mp.layer_geom for mp in program.passes}.items():
        geoms.setdefault(name, []).append(geo)
    macs = {name: sum(geo.macs for geo in geos) for name, geos in geoms.items()}  # kept taps, real MACs
    for layer in program.graph.layers:
        if layer.name not in measured:
            continue
        weighted = isinstance(layer, (Conv2d, Dense))
        ideal = ideal_cycles(macs[layer.name], program.cfg) if weighted else 0.0
        occ = occupancy(geoms[layer.name], program.cfg) if weighted else None
        rows.append(LayerRow(layer.name, layer.kind, measured[layer.name], predicted[layer.name], ideal,
                             None if exact is None else exact.get(layer.output.name), occ,
                             stalls.get(layer.name, 0)))
    return rows


@dataclass
class Divergence:
    """Where a run first departs from the golden model (tensors in execution order)."""

    image: int
    tensor: str
    layer: str | None
    index: tuple
    expected: int
    got: int
    count: int
    detail: str = ""
    inputs_match: bool = True

    def __str__(self) -> str:
        where = f"layer {self.layer!r}" if self.layer else "graph input"
        ok = "its inputs match" if self.inputs_match else "its inputs already differ"
        return (f"first divergence: image {self.image}, {where} (tensor {self.tensor!r}), output element "
                f"{self.index}: expected {self.expected}, got {self.got} ({self.count} elements differ; {ok})"
                + (f"; {self.detail}" if self.detail else ""))


def _provenance(program: Program, layer, index: tuple, image: int, trace: list[dict] | None) -> str:
    """Which tile, macros and pages computed output element ``index`` of a weighted layer, and when."""
    passes = [mp for mp in program.passes if mp.layer == layer.name and mp.image <= image < mp.image + mp.images]
    if not passes:
        return ""
    L = program.lanes
    band = ""
    if isinstance(layer, Conv2d):
        c, y, x = index
        # a layer run in row bands (external mode): the band's passes, the position within the band
        passes = [mp for mp in passes if mp.row0 <= y < mp.row0 + mp.geom.oh] or passes
        if passes[0].full_geom is not None:
            band = f"in row band {passes[0].row0}..{passes[0].row0 + passes[0].geom.oh - 1} "
        pos = (y - passes[0].row0) * layer.output.shape[2] + x
    else:
        (c,) = index
        pos = 0
    pos += (image - passes[0].image) * passes[0].geom.npos  # the position within a pass over several images
    gi, c_local = divmod(c, passes[0].geom.cout)  # grouped convolutions: one pass set per group
    n = c_local // L
    mp = next(p for p in passes if p.group == gi and p.n_base <= n < p.n_base + p.nt)
    kt = len(mp.tiles)
    macros = sorted({mp.macro_of(pos, k, n) for k in range(kt)})
    pages = sorted({mp.page_of(k, n) for k in range(kt)})
    pc = next(pc for pc, p in program.pass_at.items() if p is mp)
    text = (f"computed {band}by output-channel tile {n} (lane {c % L}) at position {pos} from reduction tiles "
            f"0..{kt - 1} "
            f"on macro(s) {macros}, page(s) {pages}, split {mp.par}, instruction pc {pc}")
    if trace:
        stamps = {t["pc"]: t["cycle"] for t in trace}
        if pc in stamps and pc - 1 in stamps:
            text += f", executed in cycles {stamps[pc - 1] + 1}..{stamps[pc]}"
    return text


def first_divergence(program: Program, golden: dict[str, np.ndarray], got: dict[str, np.ndarray],
                     trace: list[dict] | None = None) -> Divergence | None:
    """The first tensor (graph order) and element where ``got`` differs from ``golden``; None if none does."""
    g = program.graph
    order = [t.name for t in g.inputs] + [layer.output.name for layer in g.layers]
    producer = {layer.output.name: layer for layer in g.layers}
    n = next(iter(got.values())).shape[0]
    for image in range(n):
        bad_before = set()
        for name in order:
            if name not in got or name not in golden:  # overwritten on chip (liveness allocation): not read
                continue  # back; or a tensor of the program only (an input's copies, compiler/zero_points.py)
            e, r = golden[name][image], got[name][image]
            if np.array_equal(e, r):
                continue
            idx = tuple(int(v) for v in np.argwhere(e != r)[0])
            layer = producer.get(name)
            inputs_match = layer is None or all(t.name not in bad_before for t in layer.inputs)
            detail = ""
            if isinstance(layer, (Conv2d, Dense)):
                detail = _provenance(program, layer, idx, image, trace)
            bad_before.add(name)
            return Divergence(image, name, layer.name if layer else None, idx, int(e[idx]), int(r[idx]),
                              int((e != r).sum()), detail, inputs_match)
    return None


def expected_counters(program: Program, inputs: dict[str, np.ndarray]) -> dict:
    """The performance counters a run of ``program`` on ``inputs`` must end with: total cycles, loader write
    cycles, and per macro ``[busy, stall, weight-write]`` (the register order), derived from the program
    (operations counted by the instruction-set model, pass lengths by the cost model, rows by the loads)."""
    from ..compiler.cost import mac_instr_cycles
    from ..compiler.iss import run_program
    from ..gen.isa import Opcode, decode_op
    cfg = program.cfg
    _, model = run_program(program, inputs)
    ab = INT8_BITS  # the compiler runs every MAC at 8-bit activations: ab cycles per macro operation
    n = cfg.fabric.n_macros
    busy = [ops * ab for ops in model.ops_per_macro]
    enabled = [0] * n
    wload = [0] * n
    rows = 0
    for pc, word in enumerate(program.code):
        op, args = decode_op(cfg, word)
        if op == Opcode.LOAD.value:
            rows += args["count"]
            for m in range(n):
                if args["mask"] >> m & 1:
                    wload[m] += args["count"]
        elif op == Opcode.MAC.value:
            running = mac_instr_cycles(program, pc, args) - 1  # the engine runs from after EXEC to done
            for m in range(min(n, program.pass_at[pc].par.macros)):
                enabled[m] += running
    stamps = program_timing(program)
    return {"cycles": stamps[-1] + 1, "load_cycles": rows,
            "macros": [[busy[m], enabled[m] - busy[m], wload[m]] for m in range(n)]}
