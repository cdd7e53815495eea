"""Max, average and global average pooling: one ``POOL`` instruction per image, a window pass over every word
of the input (average: the window sum requantised with one multiplier)."""

from __future__ import annotations

import numpy as np

from ...config import INT8_BITS, CimConfig
from ...gen.controller import CONTROLLER_TIMING
from ...gen.isa import Opcode, PoolMode, lanes
from ...golden.ir import AvgPool, GlobalAvgPool, Layer, MaxPool
from ..cost import LayerCost, pool_cycles
from ..state import CompileState, Step, emit_instr
from ..tiling import CompileError
from .base import Lowering, per_image_cost

__all__ = ["LOWERING", "LAYERS", "pool_args"]

#: The IR classes this module lowers.
LAYERS = (MaxPool, AvgPool, GlobalAvgPool)


def _window(layer: Layer, h: int, w: int) -> tuple[int, ...]:
    """(kh, kw, sh, sw, dh, dw, pt, pl): a global pool is one window over the whole ``h x w`` input."""
    if isinstance(layer, GlobalAvgPool):
        return h, w, 1, 1, 1, 1, 0, 0
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    return kh, kw, sh, sw, dh, dw, layer.padding[0], layer.padding[1]


def pool_args(layer: Layer, src, dst, pt: int | None = None) -> dict:
    """``POOL`` arguments of ``layer`` from stored input ``src`` to ``dst`` (``TensorPlace``s; a row band's
    places in external-memory mode, ``pt`` then the band's top padding instead of the layer's)."""
    c, h, w = src.phys
    _, oh, ow = dst.phys
    kh, kw, sh, sw, dh, dw, pt0, pl = _window(layer, h, w)
    pt = pt0 if pt is None else pt
    sh, sw = (1 if oh == 1 else sh), (1 if ow == 1 else sw)  # one output row/column: its stride moves nothing
    args = {"x_signed": int(layer.input.dtype == "int8"), "in_base": src.base, "in_h": h, "in_w": w,
            "cw": src.cw, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "dh": dh, "dw": dw, "pt": pt, "pl": pl,
            "oh": oh, "ow": ow, "out_base": dst.base}
    if isinstance(layer, MaxPool):
        args.update(mode=PoolMode.MAX, zp_out=0, act_min=layer.output.qmin, act_max=layer.output.qmax)
    else:
        rq = layer.requant
        if np.unique(rq.multiplier).size > 1 or np.unique(rq.shift).size > 1:
            raise CompileError(f"{layer.kind} layer {layer.name!r}: the requantisation differs between output "
                               f"positions (padding with count_include_pad = False): allowed one multiplier")
        args.update(mode=PoolMode.AVG, zp_in=layer.input.zero_point, mult=int(rq.multiplier.ravel()[0]),
                    shift=int(rq.shift.ravel()[0]), zp_out=layer.output.zero_point, act_min=layer.act_min,
                    act_max=layer.act_max, round_even=int(layer.round_even))
    return args


def emit(state: CompileState, step: Step) -> None:
    layer, image = step.layer, step.image
    src, dst = state.prog.tensors[(image, layer.input.name)], state.prog.tensors[(image, layer.output.name)]
    args = pool_args(layer, src, dst, None if step.band is None else step.band.pt)
    kh, kw = args["kh"], args["kw"]
    emit_instr(state, Opcode.POOL, layer.name, image, f"{layer.kind} {kh}x{kw}", **args)


def cost(layer: Layer, cfg: CimConfig, par, source_shape, images: int) -> LayerCost:
    """One tap of one word per cycle over every output's window, per image."""
    L = lanes(cfg)
    c, h, w = layer.input.shape
    _, oh, ow = layer.output.shape
    kh, kw = _window(layer, h, w)[:2]
    cw = -(-c // L)
    taps = oh * ow * cw * kh * kw
    cyc = pool_cycles(taps) + CONTROLLER_TIMING.prefetched
    one = LayerCost(cycles=cyc, compute_cycles=cyc,
                    act_traffic_bits=(taps + oh * ow * cw) * INT8_BITS * L)
    return per_image_cost(one, images)


LOWERING = Lowering("POOL", (Opcode.POOL,), emit, cost)
