"""Max, average and global average pooling: one ``POOL`` instruction per image, a window pass over every word
of the input (average: the window sum requantised with one multiplier).

An average pool that excludes padded taps from its divisor (``count_include_pad = False``, onnxruntime's
default) has one divisor per output position where a window crosses the border. The POOL engine has one
multiplier per instruction, so such a layer becomes several instructions (:func:`window_parts`), each over outputs
of one divisor with the window cut to its taps inside the input (no padding left): a run of whole output rows
whose windows are not cut horizontally is one instruction; otherwise each output row is cut into its border
columns (one instruction each) and the run of columns between them. Same taps, same sums, one multiplier each:
the result is the golden operator's, and the cycles are those of the taps actually read plus one instruction's
overhead per part."""

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

__all__ = ["LOWERING", "LAYERS", "pool_args", "window_parts"]

#: The IR classes this module lowers.
LAYERS = (MaxPool, AvgPool, GlobalAvgPool)


def _window(layer: Layer, h: int, w: int) -> tuple[int, ...]:
    """(kh, kw, sh, sw, dh, dw, pt, pl): a global pool is one window over the whole ``h x w`` input."""
    if isinstance(layer, GlobalAvgPool):
        return h, w, 1, 1, 1, 1, 0, 0
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    return kh, kw, sh, sw, dh, dw, layer.padding[0], layer.padding[1]


def _axis_parts(outs: range, size: int, k: int, s: int, p: int, d: int) -> list[tuple[int, int, int, int]]:
    """Along one axis, ``(first output, outputs, first input, taps)`` of each part: a run of outputs whose
    windows lie inside the input (``k`` taps, inputs ``o * s - p`` on), or one output whose window the border
    cuts (its taps inside, ``d`` apart)."""
    parts: list[list[int]] = []
    for o in outs:
        inside = [o * s - p + j * d for j in range(k) if 0 <= o * s - p + j * d < size]
        if not inside:
            raise CompileError(f"an average pool window of output {o} holds no input (padding {p} >= kernel {k})")
        whole = len(inside) == k
        if whole and parts and parts[-1][3] == k and parts[-1][4]:
            parts[-1][1] += 1
        else:
            parts.append([o, 1, inside[0], len(inside), whole])
    return [tuple(q[:4]) for q in parts]


def window_parts(layer: Layer, o0: int = 0, o1: int | None = None) -> list[tuple[tuple, tuple]] | None:
    """The instructions of an average pool whose divisor varies between output positions, for its output rows
    ``o0 .. o1 - 1`` (a row band, or all): ``((oy, rows, iy, kh), (ox, cols, ix, kw))`` each, global output and
    input coordinates, the window cut to ``kh x kw`` taps from ``(iy, ix)`` on. None when one multiplier serves
    every position (one instruction as usual)."""
    if not isinstance(layer, AvgPool):
        return None
    rq = layer.requant
    if np.unique(rq.multiplier).size == 1 and np.unique(rq.shift).size == 1:
        return None
    (_, h, w), (_, oh, ow) = layer.input.shape, layer.output.shape
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    rows = _axis_parts(range(o0, oh if o1 is None else o1), h, kh, sh, layer.padding[0], dh)
    cols = _axis_parts(range(ow), w, kw, sw, layer.padding[1], dw)
    if len(cols) > 1:  # a part narrower than the output has a row pitch of its own width: one row per part
        rows = [(oy + i, 1, iy + i * sh, k) for oy, n, iy, k in rows for i in range(n)]
    return [(r, c) for r in rows for c in cols]


def _part_args(layer: Layer, src, dst, o0: int, r0: int, part) -> dict:
    """``POOL`` arguments of one :func:`window_parts` part from stored input ``src`` (its first row is the
    layer's input row ``r0``) to ``dst`` (its first row is output row ``o0``)."""
    (oy, rows, iy, kh), (ox, cols, ix, kw) = part
    _, h, w = src.phys
    _, _, ow = dst.phys
    rq = layer.requant
    mult, shift = rq.multiplier[oy:oy + rows, ox:ox + cols], rq.shift[oy:oy + rows, ox:ox + cols]
    assert np.unique(mult).size == 1 and np.unique(shift).size == 1, (layer.name, part)
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    return {"x_signed": int(layer.input.dtype == "int8"), "in_base": src.base + ((iy - r0) * w + ix) * src.cw,
            "in_h": h - (iy - r0), "in_w": w, "cw": src.cw, "kh": kh, "kw": kw, "sh": 1 if rows == 1 else sh,
            "sw": 1 if cols == 1 else sw, "dh": dh, "dw": dw, "pt": 0, "pl": 0, "oh": rows, "ow": cols,
            "out_base": dst.base + ((oy - o0) * ow + ox) * dst.cw, "mode": PoolMode.AVG,
            "zp_in": layer.input.zero_point, "mult": int(mult.ravel()[0]), "shift": int(shift.ravel()[0]),
            "zp_out": layer.output.zero_point, "act_min": layer.act_min, "act_max": layer.act_max,
            "round_even": int(layer.round_even)}


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
        rq = layer.requant  # one multiplier here: window_parts splits a layer of several (emit)
        args.update(mode=PoolMode.AVG, zp_in=layer.input.zero_point, mult=int(rq.multiplier.ravel()[0]),
                    shift=int(rq.shift.ravel()[0]), zp_out=layer.output.zero_point, act_min=layer.act_min,
                    act_max=layer.act_max, round_even=int(layer.round_even))
    return args


def emit(state: CompileState, step: Step) -> None:
    layer, image = step.layer, step.image
    src, dst = state.prog.tensors[(image, layer.input.name)], state.prog.tensors[(image, layer.output.name)]
    o0, o1 = (0, None) if step.band is None else (step.band.o0, step.band.o1)
    parts = window_parts(layer, o0, o1)
    if parts is not None:
        r0 = 0 if step.band is None else o0 * layer.stride[0] - layer.padding[0] + step.band.pt
        for part in parts:
            args = _part_args(layer, src, dst, o0, r0, part)
            emit_instr(state, Opcode.POOL, layer.name, image, f"{layer.kind} {args['kh']}x{args['kw']} part", **args)
        return
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
    parts = window_parts(layer)
    if parts is None:
        taps = oh * ow * cw * kh * kw
        cyc = pool_cycles(taps) + CONTROLLER_TIMING.prefetched
    else:
        sizes = [r[1] * c_[1] * cw * r[3] * c_[3] for r, c_ in parts]
        taps = sum(sizes)
        cyc = sum(pool_cycles(t) + CONTROLLER_TIMING.prefetched for t in sizes)
    one = LayerCost(cycles=cyc, compute_cycles=cyc,
                    act_traffic_bits=(taps + oh * ow * cw) * INT8_BITS * L)
    return per_image_cost(one, images)


LOWERING = Lowering("POOL", (Opcode.POOL,), emit, cost)
