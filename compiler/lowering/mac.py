"""Convolutions and fully connected layers: ``MAC`` passes over weights held in the macros' pages.

Planned per group (a grouped convolution is one plan per group of whole words) with a split chosen by the cost
model; placed as page images (:func:`~cimforge.compiler.tiling.page_words`), reduction-tile descriptors and
per-channel requantisation parameters; emitted as one ``MAC`` instruction per pass, with the ``LOAD``s that fill
its pages and, when weights stream, a ``SYNC`` before it.
"""

from __future__ import annotations

from ...config import INT8_BITS, CimConfig
from ...gen.isa import Opcode, desc_layout, lanes, param_layout
from ...gen.loader import LOAD_TIMING
from ...golden.ir import Conv2d, Dense, Layer
from ..cost import (LayerCost, Parallelism, choose_parallelism, ideal_cycles, plan_cycles,
                    weight_load_cycles)
from ..fusion import FusedConv2d
from ..planning import layer_geometries, mac_plan, n_tiles
from ..precision import pack_weight_words, precision_for
from ..program import MacPass
from ..state import CompileState, GroupPlan, Step, emit_instr, pack_checked
from ..tiling import CompileError, ConvGeom, k_tiles, page_words
from .base import Lowering

__all__ = ["LOWERING", "LAYERS", "group_splits", "weight_loads", "merge_loads", "emit_loads", "mac_args"]

#: The IR classes this module lowers (a :class:`~cimforge.compiler.fusion.FusedConv2d` as a ``Conv2d``).
LAYERS = (Conv2d, Dense)


def _groups(state: CompileState, layer: Layer) -> list[tuple[tuple[str, int], GroupPlan]]:
    return [(key, gp) for key, gp in state.plans.items() if key[0] == layer.name]


# -- plan ----------------------------------------------------------------------------------------------------


def plan(state: CompileState, layer: Layer) -> None:
    """Geometry of each group (super-group of a grouped convolution) and its split: the requested one, else the
    cost model's choice for a pass over the images a pass walks; the passes follow once residency is known."""
    if layer.input.dtype not in ("int8", "uint8"):
        raise CompileError(f"layer {layer.name!r}: input dtype {layer.input.dtype}: allowed int8, uint8")
    geos = layer_geometries(layer, state.cfg, rowpack=layer.input.name in state.rowpacked,
                            source_shape=state.layouts.phys[layer.input.name])
    images = state.batch if state.merge_images else 1
    pars = group_splits([g for g, _, _ in geos], state.cfg, state.parallelism.get(layer.name), images)
    for gi, ((g, in_off, out_off), par) in enumerate(zip(geos, pars)):
        state.plans[(layer.name, gi)] = GroupPlan(g, par, in_off, out_off, None)


def group_splits(geos: list[ConvGeom], cfg: CimConfig, par: Parallelism | None, images: int
                 ) -> list[Parallelism]:
    """The split of each group of a layer: ``par`` for the first (largest) group and, fitted to its fewer
    tiles, for a smaller last super-group; without ``par``, the cost model's choice for each distinct
    geometry."""
    out, chosen = [], {}
    for gi, g in enumerate(geos):
        shape = (g.cin, g.cout, g.taps)
        if par is None:
            if shape not in chosen:
                chosen[shape] = _split_or_refuse(g, cfg, images)
            out.append(chosen[shape])
        elif gi == 0 or shape == (geos[0].cin, geos[0].cout, geos[0].taps):
            out.append(par)
        else:  # a split never uses more K or N parts than the group has tiles
            kt, nt = len(k_tiles(g, cfg)), n_tiles(g, cfg)
            out.append(Parallelism(par.batch, min(par.in_ch, kt), min(par.out_ch, nt)))
    return out


def _split_or_refuse(g: ConvGeom, cfg: CimConfig, images: int) -> Parallelism:
    """:func:`~cimforge.compiler.cost.choose_parallelism`, or, when no split fits, an error that names the
    smallest ``macro.pages`` that would (a K-split over every macro, partial sums never spilled): VGG-19's fc6
    on the imagenet preset, a reduction of 25 088 in 392 tiles of 64 rows over 16 macros, needs 25 pages."""
    try:
        return choose_parallelism(g, cfg, images=images)
    except CompileError as e:
        kt = len(k_tiles(g, cfg))
        need = -(-kt // min(cfg.fabric.n_macros, kt))
        if need <= cfg.macro.pages:
            raise
        raise CompileError(f"layer {g.name!r}: a reduction of {g.K} elements is {kt} tiles of {cfg.macro.rows} rows, "
                           f"{need} pages per macro split over all {cfg.fabric.n_macros} macros; macro.pages = "
                           f"{cfg.macro.pages}: allowed macro.pages >= {need} (partial sums are not spilled to "
                           f"memory)") from e


# -- place ---------------------------------------------------------------------------------------------------


def place(state: CompileState, layer: Layer) -> None:
    """Page images into the weight memory, one descriptor per reduction tile, one parameter word per
    output-channel tile (bias, multiplier, shift of each lane); a fused epilogue's words follow each group's
    (:func:`_epilogue_params`)."""
    prog, cfg = state.prog, state.cfg
    L = lanes(cfg)
    dlay, play = desc_layout(cfg), param_layout(cfg)
    cw_in = prog.tensors[(0, layer.input.name)].cw  # the stored input's words per pixel
    descs: dict[tuple, int] = {}  # super-groups with the same tiles share their descriptors
    for key, gp in _groups(state, layer):
        g, tiles = gp.geom, gp.plan.tiles
        nt = n_tiles(g, cfg)
        for n, k in _image_order(gp.par, len(tiles), nt):
            t = tiles[k]
            words = pack_weight_words(page_words(g, t, n, cfg), L, precision_for(state, layer).wb)  # at the run-time wb
            state.wblocks[(*key, k, n)] = (len(prog.wmem), len(words))
            prog.wmem.extend(words)
        try:
            words = [pack_checked(layer.name, dlay, {
                "ky0": t.ky0, "kx0": t.kx0, "dy0": t.ky0 * g.dh, "dx0": t.kx0 * g.dw, "c0": t.c0, "elems": t.elems,
                "off0": t.ky0 * g.dh if g.rowpack else (t.ky0 * g.dh * g.w + t.kx0 * g.dw) * cw_in}) for t in tiles]
        except CompileError:
            # a tap offset wider than the address field: the window's rows cannot be in the activation memory
            # at once, which the band planner says in the user's terms (the buffer and the size that fits)
            from ..memory import raise_act_depth
            raise_act_depth(state, 0)
            raise
        if tuple(words) not in descs:
            descs[tuple(words)] = len(prog.dmem)
            prog.dmem.extend(words)
        state.desc_base[key] = descs[tuple(words)]
        state.param_base[key] = len(prog.pmem)
        prog.pmem.extend(pack_checked(layer.name, play, lanes_) for lanes_ in _params(layer, gp.out_off * L,
                                                                                        g.cout, nt, L))
        if isinstance(layer, FusedConv2d):  # at param_base + nt (epilogue_base)
            prog.pmem.extend(pack_checked(layer.epilogue.name, play, lanes_)
                             for lanes_ in _epilogue_params(layer.epilogue, gp.out_off * L, g.cout, nt, L))


def _params(layer: Layer, c_off: int, cout: int, nt: int, L: int) -> list[list[dict]]:
    """Per output-channel tile the lanes' bias, multiplier and shift (zero beyond the group's channels)."""
    fb = layer.folded_bias
    if fb.size and (fb.min() < -2 ** 31 or fb.max() > 2 ** 31 - 1):
        raise CompileError(f"layer {layer.name!r}: folded bias beyond int32 ({fb.min()}..{fb.max()})")
    mult, shift = layer.requant.multiplier, layer.requant.shift
    out = []
    for n in range(nt):
        lanes_ = []
        for j in range(L):
            co = n * L + j
            if co < cout:
                c = c_off + co
                lanes_.append({"bias": int(fb[c]), "mult": int(mult[c]), "shift": int(shift[c])})
            else:
                lanes_.append({"bias": 0, "mult": 0, "shift": 0})
        out.append(lanes_)
    return out


def _epilogue_params(bn: Conv2d, c_off: int, cout: int, nt: int, L: int) -> list[list[dict]]:
    """Per output-channel tile the lanes' parameters of a fused depthwise 1x1 layer ``bn``: its weight, its
    bias with its input zero point folded in (``acc = bias + (q - zp) * w = folded_bias + q * w``, the golden
    accumulator), its multiplier and shift (zero beyond the group's channels)."""
    fb = bn.folded_bias
    if fb.size and (fb.min() < -2 ** 31 or fb.max() > 2 ** 31 - 1):
        raise CompileError(f"layer {bn.name!r}: folded bias beyond int32 ({fb.min()}..{fb.max()})")
    w = bn.weight.reshape(-1)
    mult, shift = bn.requant.multiplier, bn.requant.shift
    return [[{"bias": int(fb[c_off + co]), "mult": int(mult[c_off + co]), "shift": int(shift[c_off + co]),
              "w": int(w[c_off + co])} if co < cout else {"bias": 0, "mult": 0, "shift": 0, "w": 0}
             for co in (n * L + j for j in range(L))] for n in range(nt)]


def epilogue_base(state: CompileState, mp: MacPass) -> int:
    """The first epilogue parameter word of pass ``mp`` (its group's follow the group's own words)."""
    key = (mp.layer, mp.group)
    return state.param_base[key] + n_tiles(state.plans[key].geom, state.cfg) + mp.n_base


# -- steps ---------------------------------------------------------------------------------------------------


def steps(state: CompileState, layer: Layer, image: int, images: int) -> list[Step]:
    """One ``MAC`` pass per group and output-channel range, over images ``image .. image + images - 1``."""
    out = []
    for key, gp in _groups(state, layer):
        tiles, par = gp.plan.tiles, gp.par
        kr = gp.plan.k_rounds
        for n_base, nt in gp.plan.passes:
            mp = MacPass(key[0], gp.geom, par, tiles, n_base, nt, kr, -(-nt // par.out_ch), image=image, images=images)
            mp.desc_base, mp.param_base = state.desc_base[key], state.param_base[key] + n_base
            mp.role_base, mp.group, mp.in_off, mp.out_off = state.role_base[par], key[1], gp.in_off, gp.out_off
            out.append(Step(layer, image, mp))
    return out


# -- emit ----------------------------------------------------------------------------------------------------


def _image_order(par: Parallelism, kt: int, n1: int, n0: int = 0) -> list[tuple[int, int]]:
    """``(n tile, k tile)`` of the page images of N tiles ``n0 .. n1 - 1`` in weight-memory (and load) order:
    N tile outer, so that a pass's images are one contiguous run; then the K-split's macro, then the reduction
    rounds, so that the images one macro takes into consecutive pages follow each other (one ``LOAD``)."""
    return [(n, k) for n in range(n0, n1) for kk in range(par.in_ch) for k in range(kk, kt, par.in_ch)]


def weight_loads(mp: MacPass, state: CompileState) -> list[dict]:
    """``LOAD`` arguments filling the pages of ``mp``: one per (K tile, N tile), to every replica at once."""
    par, R = mp.par, state.cfg.macro.rows
    loads = []
    for n, k in _image_order(par, len(mp.tiles), mp.n_base + mp.nt, mp.n_base):
        nl = n - mp.n_base
        mask = 0
        for bi in range(par.batch):
            mask |= 1 << ((bi * par.in_ch + k % par.in_ch) * par.out_ch + nl % par.out_ch)
        src, rows = state.wblocks[(mp.layer, mp.group, k, n)]
        loads.append({"src": src, "count": rows, "mask": mask, "page": mp.page_of(k, n), "row0": R - rows})
    cap = state.wstream.half if state.wstream is not None else None
    return merge_loads(loads, R, cap)


def merge_loads(loads: list[dict], rows: int, cap: int | None = None) -> list[dict]:
    """Consecutive ``LOAD``s as one where the loader's walk continues exactly (it wraps from a page's last row to
    the next page's row 0): same macros, contiguous sources, the first ending on a page's last row and the next
    starting at row 0 of the next page; at most ``cap`` rows each."""
    out: list[dict] = []
    for ld in loads:
        p = out[-1] if out else None
        if (p is not None and p["mask"] == ld["mask"] and p["src"] + p["count"] == ld["src"]
                and ld["row0"] == 0 and (p["row0"] + p["count"]) % rows == 0
                and p["page"] + (p["row0"] + p["count"]) // rows == ld["page"]
                and (cap is None or p["count"] + ld["count"] <= cap)):
            p["count"] += ld["count"]
        else:
            out.append(dict(ld))
    return out


def emit_loads(state: CompileState, mp: MacPass) -> None:
    """The ``LOAD`` instructions of ``mp``'s pages (brought into the weight memory first when the weights live
    in the external memory: ``state.wstream``)."""
    if state.wstream is not None:
        state.wstream.emit_loads(state, mp)
        return
    for ld in mp.loads:
        emit_instr(state, Opcode.LOAD, mp.layer, mp.image_label, f"page {ld['page']} rows {ld['row0']}+"
                   f"{ld['count']} macros {ld['mask']:#x}", **ld)


def _disjoint(a: MacPass, b: MacPass) -> bool:
    return a.page_base + a.pages <= b.page_base or b.page_base + b.pages <= a.page_base


def emit(state: CompileState, step: Step) -> None:
    """One pass: streamed weights wait for its loads (``SYNC``), and the next pass's loads are queued before it
    when their pages are free (they run beside it), else after it."""
    mp, layer = step.mac, step.layer
    streamed = not state.resident
    if streamed:
        emit_instr(state, Opcode.SYNC, layer.name, mp.image_label, "wait for this pass's weights")
    nxt = state.next_pass(mp) if streamed else None
    overlap = nxt is not None and _disjoint(mp, nxt) and (state.wstream is None or state.wstream.ready(state, nxt))
    if overlap:
        emit_loads(state, nxt)
    elif nxt is not None and state.wstream is not None:  # the next pass's first weight chunks beside this one
        state.wstream.stage_ahead(state, nxt)
    grp = f" group {mp.group}" if mp.group else ""
    imgs = f" images 0..{mp.images - 1}" if mp.images > 1 else ""
    pc = emit_instr(state, Opcode.MAC, layer.name, mp.image_label, f"{mp.par}{grp} n tiles {mp.n_base}.."
                    f"{mp.n_base + mp.nt - 1}{imgs}", **mac_args(mp, state, layer))
    state.prog.pass_at[pc] = mp
    state.prog.passes.append(mp)
    if nxt is not None and not overlap:
        emit_loads(state, nxt)


def mac_args(mp: MacPass, state: CompileState, layer: Layer) -> dict:
    """The ``MAC`` instruction's arguments: the gather's walk over the stored input, the pass's tiles, split,
    pages and parameters, and the output's place."""
    g: ConvGeom = mp.geom
    src = state.prog.tensors[(mp.image, layer.input.name)]
    dst = state.prog.tensors[(mp.image, layer.output.name)]
    par = mp.par
    whole, rest = divmod(par.batch, g.npos)  # a step of b positions: whole images, then rest positions (< an image)
    bq, br = divmod(rest, g.ow)
    row_words = 1 if g.rowpack else g.w * src.cw  # words of one input row
    # a pass of no more positions than b never steps b positions on to one it reads (a band of one position
    # under batch parallelism 4: a step of whole images past the staged band, too wide for its field)
    img = {"oh": g.oh, "img_delta": src.words - g.oh * g.sh * row_words,
           "img_bstep": whole * src.words if mp.npos > par.batch else 0}
    return {
        "in_h": g.h, "in_w": g.w, "kh": g.kh, "dh": g.dh,
        "sh": g.sh, "sw": g.sw, "pt": g.pt, "pl": g.pl, "ow": g.ow, "npos": mp.npos,
        **_walk(g, src.base + mp.in_off, src.base, src.cw, bq, br), **img, "bq": bq, "br": br,
        "desc_base": mp.desc_base, "kt": len(mp.tiles), "nt": mp.nt, "kr": mp.kr, "nr": mp.nr,
        "b": par.batch, "ki": par.in_ch, "no": par.out_ch, "groups": par.batch * par.out_ch,
        "role_base": mp.role_base, "page_base": mp.page_base,
        "out_base": dst.base + mp.out_off + mp.n_base, "out_cw": dst.cw, "param_base": mp.param_base,
        "zp_in": layer.input.zero_point & 0xFF, **_write_back(state, mp, layer),
        **precision_for(state, layer).mac_fields(),  # the layer's ab, wb, signedness (compiler/precision.py)
    }


def _write_back(state: CompileState, mp: MacPass, layer: Layer) -> dict:
    """The requantisation's zero point and clamp, and a fused epilogue's (the first ones then the
    convolution's own, to the tensor it no longer writes)."""
    if not isinstance(layer, FusedConv2d):
        return {"zp_out": layer.output.zero_point, "act_min": layer.act_min, "act_max": layer.act_max}
    bn = layer.epilogue
    return {"zp_out": layer.mid.zero_point, "act_min": layer.act_min, "act_max": layer.act_max,
            "epi": 1, "epi_base": epilogue_base(state, mp), "epi_zp_out": bn.output.zero_point,
            "epi_min": bn.act_min, "epi_max": bn.act_max}


def _walk(g: ConvGeom, base: int, image_base: int, cw: int, bq: int, br: int) -> dict:
    """The gather's address walk: per tap, per position and per step of ``b`` positions."""
    if g.rowpack:
        # one word per image row: the walk is kh steps of one "tap" of kw pixels (the lanes under the window);
        # addresses move with rows only, columns are the lane selection (ix)
        return {"in_cw": 1, "cin": g.kw, "kw": 1, "dw": 1, "pos0": image_base - g.pt, "kx_inc": 0, "ky_inc": g.dh,
                "pos_ux": 0, "pos_wrap": g.sh, "pos_bstep": bq * g.sh, "rowpack": 1}
    return {"in_cw": cw, "cin": g.cin, "kw": g.kw, "dw": g.dw, "pos0": base - (g.pt * g.w + g.pl) * cw,
            "kx_inc": g.dw * cw, "ky_inc": g.dh * g.w * cw - (g.kw - 1) * g.dw * cw, "pos_ux": g.sw * cw,
            "pos_wrap": (g.sh * g.w - g.ow * g.sw) * cw, "pos_bstep": (bq * g.sh * g.w + br * g.sw) * cw,
            "rowpack": 0}


# -- cost ----------------------------------------------------------------------------------------------------


def cost(layer: Layer, cfg: CimConfig, par: Parallelism | None, source_shape: tuple[int, ...] | None,
         images: int) -> LayerCost:
    """Every pass of every group over ``images`` images' positions (with a fused epilogue's longer write-back),
    and one load of the weights (a grouped convolution's super-groups alike counted once per distinct geometry, a
    smaller last one on its own)."""
    L = lanes(cfg)
    groups = [geo for geo, _, _ in layer_geometries(layer, cfg, source_shape=source_shape)]
    pars = group_splits(groups, cfg, par, images)
    kinds: dict[tuple, list] = {}  # distinct geometry -> [geometry, split, count]
    for g, p in zip(groups, pars):
        kinds.setdefault((g.cin, g.cout, g.taps), [g, p, 0])[2] += 1
    compute = wl = act_bits = psum = 0
    plans = []
    for g, p, n_groups in kinds.values():
        plan_ = mac_plan(g, cfg, p)
        plans.append(plan_)
        npos = g.npos * images
        nt = n_tiles(g, cfg)
        compute += n_groups * plan_cycles(plan_, npos, epilogue=isinstance(layer, FusedConv2d))
        wl += weight_load_cycles(plan_, nt, n_groups) - LOAD_TIMING.overhead  # the overhead once per layer
        act_bits += n_groups * npos * (-(-nt // p.out_ch) * g.K + g.cout) * INT8_BITS
        psum += n_groups * npos * nt * L * 32 * (p.in_ch - 1)  # int32 partial sums per extra macro of a K-split
    wl += LOAD_TIMING.overhead
    return LayerCost(cycles=compute + wl, compute_cycles=compute, weight_load_cycles=wl,
                     psum_traffic_bits=psum, act_traffic_bits=act_bits, pages=plans[0].first_pass_pages,
                     macros=pars[0].macros, ideal_cycles=ideal_cycles(sum(geo.macs for geo in groups), cfg),
                     passes=plans[0].passes)


LOWERING = Lowering("MAC passes", (Opcode.LOAD, Opcode.SYNC, Opcode.MAC), emit, cost, plan=plan, place=place,
                    steps=steps)
