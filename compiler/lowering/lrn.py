"""Local response normalisation: one ``LRN`` instruction per image (per row band in external-memory mode: the
operator is pointwise in space, so a band is the same rows of input and output), the layer's table of the
normaliser in the parameter memory (:func:`cimforge.golden.lrn.lrn_table`, packed by :func:`table_words`).
docs/lrn.md describes the engine."""

from __future__ import annotations

from ...config import INT8_BITS, CimConfig
from ...gen.controller import CONTROLLER_TIMING
from ...gen.isa import LRN_SIZE_MAX, Opcode, lanes, lrn_table_layout
from ...golden.ir import LRN, Layer
from ...golden.lrn import LrnTable
from ..cost import LayerCost, lrn_cycles
from ..state import CompileState, Step, emit_instr, pack_checked
from ..tiling import CompileError
from .base import Lowering, per_image_cost

__all__ = ["LOWERING", "LAYERS", "table_words", "lrn_args"]

#: The IR classes this module lowers.
LAYERS = (LRN,)


def table_words(cfg: CimConfig, table: LrnTable, owner: str = "lrn") -> list[int]:
    """The parameter words of ``table`` (:func:`cimforge.gen.isa.lrn_table_layout`: entry ``k`` in word
    ``k // n``, slot ``k % n``; the last word's unused slots zero)."""
    tl = lrn_table_layout(cfg)
    n = tl.length
    entries = [{"g": g, "dg": dg} for g, dg in zip(table.g, table.dg)]
    return [pack_checked(owner, tl, entries[i:i + n] + [{"g": 0, "dg": 0}] * (n - len(entries[i:i + n])))
            for i in range(0, len(entries), n)]


def _check(layer: LRN) -> None:
    if layer.method != "integer":
        raise CompileError(f"layer {layer.name!r}: lrn method {layer.method!r} (float64, numerics 'onnx') does "
                           f"not run on the fabric: allowed 'integer' (load_onnx's default numerics='fabric')")
    if layer.size > LRN_SIZE_MAX:
        raise CompileError(f"layer {layer.name!r}: lrn size {layer.size}: allowed 1..{LRN_SIZE_MAX}")
    if len(layer.input.shape) not in (1, 3):
        raise CompileError(f"layer {layer.name!r}: lrn input shape {layer.input.shape}: allowed (C,) or (C, H, W)")


def place(state: CompileState, layer: LRN) -> None:
    """The table into the parameter memory."""
    _check(layer)
    state.param_base[(layer.name, "lrn")] = len(state.prog.pmem)
    state.prog.pmem.extend(table_words(state.cfg, layer.table, layer.name))


def lrn_args(layer: LRN, src, dst, table_base: int) -> dict:
    """``LRN`` arguments of ``layer`` from stored input ``src`` to ``dst`` (``TensorPlace``s; a row band's in
    external-memory mode)."""
    c, h, w = src.phys
    t = layer.table
    return {"in_base": src.base, "out_base": dst.base, "npos": h * w, "cw": src.cw, "channels": c,
            "size": layer.size, "x_signed": int(layer.input.dtype == "int8"), "zp_in": layer.input.zero_point,
            "zp_out": layer.output.zero_point, "act_min": layer.output.qmin, "act_max": layer.output.qmax,
            "table_base": table_base, "shift": t.shift, "frac": t.frac}


def emit(state: CompileState, step: Step) -> None:
    layer, image = step.layer, step.image
    T = state.prog.tensors
    src, dst = T[(image, layer.input.name)], T[(image, layer.output.name)]
    args = lrn_args(layer, src, dst, state.param_base[(layer.name, "lrn")])
    emit_instr(state, Opcode.LRN, layer.name, image, f"lrn size {layer.size}", **args)


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """One channel per cycle (plus ``size // 2`` per pixel), per image."""
    L = lanes(cfg)
    c = layer.input.shape[0]
    npos = 1 if len(layer.input.shape) == 1 else layer.input.shape[1] * layer.input.shape[2]
    cyc = lrn_cycles(npos, c, layer.size) + CONTROLLER_TIMING.prefetched
    words = npos * -(-c // L)
    one = LayerCost(cycles=cyc, compute_cycles=cyc, act_traffic_bits=2 * words * INT8_BITS * L)
    return per_image_cost(one, images)


LOWERING = Lowering("LRN", (Opcode.LRN,), emit, cost, place=place)
