"""Channel concatenations: one ``EW`` copy per input and image into the output's words at the input's channel
offset (requantising when the input's scale differs). Every input but the last must be whole words; the
compiler rewrites other concatenations first (:mod:`cimforge.compiler.concat_placement`)."""

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
    if layer.axis != 0:
        what = ("channels", "height", "width")[layer.axis] if len(layer.output.shape) == 3 else "a per-sample axis"
        raise CompileError(f"concat layer {layer.name!r}: ONNX axis {layer.axis + 1} ({what}): allowed axis 1 "
                           f"(channels)")
    dst = T[(image, layer.output.name)]
    off = 0
    for t, rq in zip(layer.inputs, layer.requants):
        if t.shape[0] % L and t is not layer.inputs[-1]:
            raise CompileError(f"concat layer {layer.name!r}: input {t.name!r} has {t.shape[0]} channels: "
                               f"allowed a multiple of the lanes ({L}) except for the last input")
        a = T[(image, t.name)]
        args = copy_args(a, dst.base + off, dst.cw, t.dtype, layer.output.qmin, layer.output.qmax)
        if rq is not None:
            args.update(zp_a=t.zero_point, rq_out=1, mult_o=int(rq.multiplier), shift_o=int(rq.shift),
                        zp_out=layer.output.zero_point)
        emit_instr(state, Opcode.EW, layer.name, image, f"concat part {t.name}", **args)
        off += a.cw


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """One ``EW`` copy per input, one word per cycle, per image."""
    L = lanes(cfg)
    parts = [words_of(t, L) for t in layer.inputs]
    cyc = sum(ew_cycles(words) + CONTROLLER_TIMING.prefetched for words in parts)
    one = LayerCost(cycles=cyc, compute_cycles=cyc, act_traffic_bits=sum(parts) * INT8_BITS * L * 2)
    return per_image_cost(one, images)


LOWERING = Lowering("EW parts", (Opcode.EW,), emit, cost)
