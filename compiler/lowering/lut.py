"""Element-wise tables (:class:`cimforge.golden.ir.Lut`: Sigmoid, Tanh, HardSwish, LeakyRelu, ...): the layer's
256 output codes (one table per channel when its constants vary by channel) in the parameter memory
(:func:`table_words`), one ``LUT`` instruction per image (per row band
in external-memory mode: the operator is element-wise, so a band is the same rows of input and output).
gen/lut.py describes the engine."""

from __future__ import annotations

from ...config import INT8_BITS, CimConfig
from ...gen.controller import CONTROLLER_TIMING
from ...gen.isa import Opcode, lanes, lut_table_layout
from ...golden.ir import Layer, Lut
from ..cost import LayerCost, lut_instr_cycles
from ..state import CompileState, Step, emit_instr, pack_checked
from .base import Lowering, per_image_cost

__all__ = ["LOWERING", "LAYERS", "table_words", "lut_args"]

#: The IR classes this module lowers.
LAYERS = (Lut,)


def table_words(cfg: CimConfig, table, owner: str = "lut") -> list[int]:
    """The parameter words of a 256-entry ``table`` of codes (:func:`cimforge.gen.isa.lut_table_layout`: entry
    ``b`` in word ``b // n``, slot ``b % n``, as bytes; the last word's unused slots zero)."""
    tl = lut_table_layout(cfg)
    n = tl.length
    entries = [int(v) & 0xFF for v in table]
    return [pack_checked(owner, tl, entries[i:i + n] + [0] * (n - len(entries[i:i + n])))
            for i in range(0, len(entries), n)]


def place(state: CompileState, layer: Lut) -> None:
    """The table into the parameter memory."""
    state.param_base[(layer.name, "lut")] = len(state.prog.pmem)
    for table in layer.tables:  # per channel: channel c's table at table_base + c * lut_table_words
        state.prog.pmem.extend(table_words(state.cfg, table, layer.name))


def lut_args(layer: Lut, src, dst, table_base: int) -> dict:
    """``LUT`` arguments of ``layer`` from stored input ``src`` to ``dst`` (``TensorPlace``s; a row band's in
    external-memory mode)."""
    phys = src.phys
    c = phys[0]
    npos = 1 if len(phys) == 1 else phys[1] * phys[2]
    return {"in_base": src.base, "out_base": dst.base, "npos": npos, "cw": src.cw, "channels": c,
            "table_base": table_base, "per_channel": int(layer.per_channel)}


def emit(state: CompileState, step: Step) -> None:
    layer, image = step.layer, step.image
    T = state.prog.tensors
    src, dst = T[(image, layer.input.name)], T[(image, layer.output.name)]
    args = lut_args(layer, src, dst, state.param_base[(layer.name, "lut")])
    emit_instr(state, Opcode.LUT, layer.name, image, f"lut {layer.op or 'table'}", **args)


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """The table's words, then one word per cycle, per image (per channel: each channel's table and one word of
    every pixel)."""
    L = lanes(cfg)
    shape = layer.input.shape
    args = {"npos": 1 if len(shape) == 1 else shape[1] * shape[2], "cw": -(-shape[0] // L),
            "channels": shape[0], "per_channel": layer.per_channel}
    cyc = lut_instr_cycles(cfg, args) + CONTROLLER_TIMING.prefetched
    # words read (and written back): every word once, or once per channel of it in per-channel mode
    words = args["npos"] * (args["channels"] if layer.per_channel else args["cw"])
    one = LayerCost(cycles=cyc, compute_cycles=cyc, act_traffic_bits=2 * words * INT8_BITS * L)
    return per_image_cost(one, images)


LOWERING = Lowering("LUT", (Opcode.LUT,), emit, cost, place=place)
