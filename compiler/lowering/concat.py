"""Concatenations: one ``EW`` copy per input and image into the output's words at the input's channel offset
(requantising when the input's scale differs). Every input but the last must be whole words; the compiler
rewrites other concatenations first (:mod:`cimforge.compiler.concat_placement`). Along the rows (or the width of
one-row tensors) each input is a run of the output's pixels, copied at its pixel offset."""

from __future__ import annotations

from ...config import INT8_BITS, CimConfig
from ...gen.controller import CONTROLLER_TIMING
from ...gen.isa import Opcode, lanes
from ...golden.ir import Concat, Layer
from ..cost import LayerCost, ew_cycles
from ..state import CompileState, Step, emit_instr
from ..tiling import CompileError
from .base import Lowering, per_image_cost
from .elementwise import copy_args, words_of

__all__ = ["LOWERING", "LAYERS"]

#: The IR classes this module lowers.
LAYERS = (Concat,)


def emit(state: CompileState, step: Step) -> None:
    layer, image = step.layer, step.image
    L = lanes(state.cfg)
    T = state.prog.tensors
    dst = T[(image, layer.output.name)]
    if layer.axis != 0:
        _check_pixel_runs(state, layer, image)
    off = 0
    for t, rq in zip(layer.inputs, layer.requants):
        if layer.axis == 0 and t.shape[0] % L and t is not layer.inputs[-1]:
            raise CompileError(f"concat layer {layer.name!r}: input {t.name!r} has {t.shape[0]} channels: "
                               f"allowed a multiple of the lanes ({L}) except for the last input")
        a = T[(image, t.name)]
        args = copy_args(a, dst.base + off, dst.cw, t.dtype, layer.output.qmin, layer.output.qmax)
        if rq is not None:
            args.update(zp_a=t.zero_point, rq_out=1, mult_o=int(rq.multiplier), shift_o=int(rq.shift),
                        zp_out=layer.output.zero_point)
        emit_instr(state, Opcode.EW, layer.name, image, f"concat part {t.name}", **args)
        # channels: the next input starts a.cw words into each pixel; rows (or the width of one-row tensors):
        # the inputs are consecutive runs of the output's pixels, so the next starts after this one's words
        off += a.cw if layer.axis == 0 else a.phys[1] * a.phys[2] * dst.cw


def _check_pixel_runs(state: CompileState, layer: Concat, image: int) -> None:
    """A concatenation along a spatial axis is a copy per input when each input is a run of consecutive pixels
    of the output (pixels are stored row after row, every pixel ``cw`` words): along the rows, or along the
    width of one-row tensors (a ``(C, L)`` sequence is stored ``(C, 1, L)``: YOLO heads concatenate anchors so).
    Row bands (external mode) map output rows to input rows one to one, so there only the one-row case runs."""
    T = state.prog.tensors
    dst = T[(image, layer.output.name)]
    rank = len(layer.output.shape)
    names = ("channels", "height", "width") if rank == 3 else ("channels", "length")
    what = f"ONNX axis {layer.axis + 1} ({names[layer.axis] if rank in (2, 3) else 'a per-sample axis'})"
    rows = layer.output.shape[1] if rank == 3 else 1
    if rank not in (2, 3) or dst.rowpack or any(T[(image, t.name)].rowpack for t in layer.inputs):
        raise CompileError(f"concat layer {layer.name!r}: {what} of a tensor of per-sample shape "
                           f"{layer.output.shape}: allowed axis 1 (channels), the height, or the width of one-row "
                           f"tensors")
    if rank == 3 and layer.axis == 2 and rows != 1:
        raise CompileError(f"concat layer {layer.name!r}: {what} of {rows}-row tensors: allowed axis 1 (channels), "
                           f"axis 2 (height), or the width of one-row tensors")
    if state.external and rows != 1:
        raise CompileError(f"concat layer {layer.name!r}: {what} in external-memory mode (row bands map output "
                           f"rows to input rows one to one): allowed axis 1 (channels) there, or the height with "
                           f"every tensor on chip (a larger fabric.act_depth, --memory onchip)")


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """One ``EW`` copy per input, one word per cycle, per image."""
    L = lanes(cfg)
    parts = [words_of(t, L) for t in layer.inputs]
    cyc = sum(ew_cycles(words) + CONTROLLER_TIMING.prefetched for words in parts)
    one = LayerCost(cycles=cyc, compute_cycles=cyc, act_traffic_bits=sum(parts) * INT8_BITS * L * 2)
    return per_image_cost(one, images)


LOWERING = Lowering("EW parts", (Opcode.EW,), emit, cost)
