"""Nearest-neighbour resizes (:class:`cimforge.golden.ir.Resize`: ONNX ``Resize`` in mode ``nearest``) as
``EW`` copies. Output row ``oy`` is a copy of source row ``rows[oy]``; its columns split into the
residue classes ``ox = r + k P`` of the smallest period ``P`` of the column map whose source columns advance by
a constant step in every class (``P`` = 2 for an upsampling by 2, 1 for a downsampling by 2 or an identity), and
each class is one ``EW`` copy with ``a_stride = step * cw`` and ``out_stride = P * cw``, requantising when the
output's quantisation differs. So an upsampling by ``f`` costs ``f`` copies per output row, each of ``W`` pixels,
one word per cycle. In external-memory mode a row band of output rows stages the source rows from the first to
the last it copies (:func:`cimforge.compiler.memory.input_rows`) and copies from those."""

from __future__ import annotations

from ...config import INT8_BITS, CimConfig
from ...gen.controller import CONTROLLER_TIMING
from ...gen.isa import Opcode, lanes
from ...golden.ir import Layer, Resize
from ..cost import LayerCost, ew_cycles
from ..state import CompileState, Step, emit_instr
from ..tiling import CompileError
from .base import Lowering, per_image_cost

__all__ = ["LOWERING", "LAYERS", "column_runs", "copies"]

#: The IR classes this module lowers.
LAYERS = (Resize,)


def column_runs(cols: tuple[int, ...]) -> list[tuple[int, int, int, int, int]]:
    """The column map as arithmetic runs ``(ox0, out_step, ix0, in_step, count)``: the residue classes of the
    smallest period whose source columns advance by a constant, non-negative step (a period of ``len(cols)``,
    every column alone, always does)."""
    n = len(cols)
    for period in range(1, n + 1):
        runs = []
        for r in range(period):
            src = cols[r::period]
            step = src[1] - src[0] if len(src) > 1 else 0
            if step < 0 or any(b - a != step for a, b in zip(src, src[1:])):
                break
            runs.append((r, period, src[0], step, len(src)))
        else:
            return runs
    return []  # no columns


def copies(layer: Resize, o0: int = 0, o1: int | None = None) -> list[tuple[int, int, int, int, int]]:
    """The copies of output rows ``o0 .. o1 - 1`` (all by default) of one image: ``(first output pixel, out
    pixel step, first source pixel, source pixel step, count)`` per run, row by row, pixels counted from output
    row ``o0`` and from the first source row those rows copy (a row band in external-memory mode stages those
    rows only); consecutive output rows that copy consecutive source rows whole (a resize of the height only)
    are one copy."""
    _, h, w = layer.input.shape
    _, oh, ow = layer.output.shape
    rows = layer.rows[o0:o1]
    r0 = min(rows, default=0)
    runs = column_runs(layer.cols)
    whole = runs == [(0, 1, 0, 1, w)] and ow == w
    out: list = []
    for oy, iy in enumerate(r - r0 for r in rows):
        if whole and out and out[-1][2] + out[-1][4] == iy * w and out[-1][0] + out[-1][4] == oy * ow:
            o0, so, i0, si, n = out[-1]
            out[-1] = (o0, so, i0, si, n + w)
            continue
        out.extend((oy * ow + ox0, so, iy * w + ix0, si, n) for ox0, so, ix0, si, n in runs)
    return out


def emit(state: CompileState, step: Step) -> None:
    layer, image = step.layer, step.image
    T = state.prog.tensors
    a, dst = T[(image, layer.input.name)], T[(image, layer.output.name)]
    if a.rowpack or dst.rowpack:
        name = layer.input.name if a.rowpack else layer.output.name
        raise CompileError(f"resize layer {layer.name!r}: tensor {name!r} is stored row-packed: allowed tensors "
                           f"stored by pixel")
    out = layer.output
    band = (0, None) if step.band is None else (step.band.o0, step.band.o1)
    for o0, so, i0, si, n in copies(layer, *band):
        args = {"a_base": a.base + i0 * a.cw, "out_base": dst.base + o0 * dst.cw, "npos": n, "cw": a.cw,
                "a_stride": si * a.cw, "out_stride": so * dst.cw, "x_signed": int(out.dtype == "int8"),
                "act_min": out.qmin, "act_max": out.qmax}
        if layer.requant is not None:
            args.update(zp_a=layer.input.zero_point, rq_out=1, mult_o=int(layer.requant.multiplier),
                        shift_o=int(layer.requant.shift), zp_out=out.zero_point)
        emit_instr(state, Opcode.EW, layer.name, image, "resize copy", **args)


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """One ``EW`` copy per run, one word per cycle, per image."""
    cw = -(-layer.input.shape[0] // lanes(cfg))
    runs = copies(layer)
    cyc = sum(ew_cycles(n * cw) + CONTROLLER_TIMING.prefetched for *_, n in runs)
    words = sum(n for *_, n in runs) * cw
    one = LayerCost(cycles=cyc, compute_cycles=cyc, act_traffic_bits=2 * words * INT8_BITS * lanes(cfg))
    return per_image_cost(one, images)


LOWERING = Lowering("EW copies", (Opcode.EW,), emit, cost)
