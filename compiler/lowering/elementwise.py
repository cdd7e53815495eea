"""Residual adds, products and clamps: one ``EW`` instruction per image over every word of the input (an add
requantises both inputs and the sum, TFLite's integer scheme; a product requantises the exact product of the
inputs minus their zero points, reading a per-channel ``b`` at pixel stride 0; a clamp only narrows the range)."""

from __future__ import annotations

from ...config import INT8_BITS, CimConfig
from ...gen.controller import CONTROLLER_TIMING
from ...gen.isa import Opcode, lanes
from ...golden.ir import Add, Clamp, Layer, Mul
from ..cost import LayerCost, ew_cycles
from ..state import CompileState, Step, emit_instr
from ..tiling import CompileError
from .base import Lowering, per_image_cost

__all__ = ["LOWERING", "LAYERS", "copy_args", "words_of"]

#: The IR classes this module lowers.
LAYERS = (Add, Mul, Clamp)


def copy_args(a, out_base: int, out_cw: int, dtype: str, act_min: int, act_max: int) -> dict:
    """``EW`` arguments of a pass over every word of the stored tensor ``a`` (a ``TensorPlace``) into
    ``out_base`` (pixels ``out_cw`` words apart), clamped to ``act_min .. act_max``."""
    return {"a_base": a.base, "out_base": out_base, "npos": a.phys[1] * a.phys[2], "cw": a.cw, "a_stride": a.cw,
            "out_stride": out_cw, "x_signed": int(dtype == "int8"), "act_min": act_min, "act_max": act_max}


def words_of(t, L: int) -> int:
    """Activation words of one image of tensor ``t`` (a ``TensorInfo``)."""
    pix = 1 if len(t.shape) == 1 else t.shape[1] * t.shape[2]
    return pix * -(-t.shape[0] // L)


def emit(state: CompileState, step: Step) -> None:
    layer, image = step.layer, step.image
    T = state.prog.tensors
    a, dst = T[(image, layer.inputs[0].name)], T[(image, layer.output.name)]
    args = copy_args(a, dst.base, dst.cw, layer.inputs[0].dtype, layer.act_min, layer.act_max)
    args["zp_out"] = layer.output.zero_point if isinstance(layer, (Add, Mul)) else 0
    if isinstance(layer, (Add, Mul)):
        bt = T[(image, layer.inputs[1].name)]
        ta, tb = layer.inputs
        if ta.dtype != tb.dtype:
            raise CompileError(f"{layer.kind} layer {layer.name!r}: inputs of dtypes {ta.dtype} and {tb.dtype}: "
                               f"allowed equal dtypes")
    if isinstance(layer, Mul):
        args.update(b_base=bt.base, b_stride=0 if layer.broadcast else bt.cw, has_b=1, mul=1, rq_out=1,
                    zp_a=ta.zero_point, zp_b=tb.zero_point, mult_o=int(layer.requant.multiplier),
                    shift_o=int(layer.requant.shift))
    elif isinstance(layer, Add):
        args.update(b_base=bt.base, b_stride=0 if layer.broadcast else bt.cw, has_b=1, rq_in=1, rq_out=1,
                    ls=layer.left_shift,
                    zp_a=ta.zero_point, zp_b=tb.zero_point,
                    mult_a=int(layer.requant_a.multiplier), shift_a=int(layer.requant_a.shift),
                    mult_b=int(layer.requant_b.multiplier), shift_b=int(layer.requant_b.shift),
                    mult_o=int(layer.requant_out.multiplier), shift_o=int(layer.requant_out.shift))
    emit_instr(state, Opcode.EW, layer.name, image, layer.kind, **args)


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """One word per cycle, per image (an add or a product reads two)."""
    L = lanes(cfg)
    words = words_of(layer.inputs[0], L)
    cyc = ew_cycles(words) + CONTROLLER_TIMING.prefetched
    reads = 2 if isinstance(layer, (Add, Mul)) else 1
    one = LayerCost(cycles=cyc, compute_cycles=cyc, act_traffic_bits=words * INT8_BITS * L * (reads + 1))
    return per_image_cost(one, images)


LOWERING = Lowering("EW", (Opcode.EW,), emit, cost)
