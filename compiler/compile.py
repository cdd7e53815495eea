"""Compile a layer-IR graph (:mod:`cimforge.golden.ir`) into a fabric program.

Steps (each a function below): check the configuration can run int8 layers; place every tensor of every image
in the activation memory; choose a split (:class:`~cimforge.compiler.cost.Parallelism`) per weighted layer and
tile it (:mod:`cimforge.compiler.tiling`); place weights, descriptors and parameters; assign pages (all weights
resident when they fit, else streamed layer by layer into a ring of pages, the next pass's loads overlapping the
current pass); emit the instructions.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..config import CimConfig
from ..gen.isa import (Opcode, PoolMode, desc_layout, encode, lanes, pack_word, param_layout, role_layout)
from ..golden.ir import (Add, AvgPool, Clamp, Concat, Conv2d, Dense, GlobalAvgPool, Graph, Layer, MaxPool, Reshape,
                         TensorInfo)
from .cost import ACT_BITS, Parallelism, _mac_plan, choose_parallelism
from .program import InstrInfo, MacPass, Program, TensorPlace
from .tiling import CompileError, ConvGeom, geometry, group_geometries, page_words, rowpack_ok

__all__ = ["compile_graph", "max_batch"]


def _check_config(cfg: CimConfig) -> None:
    m = cfg.macro
    if m.max_wb < 8:
        raise CompileError(f"int8 weights need macro.max_wb = 8, the configuration has {m.max_wb}")
    if m.max_ab < ACT_BITS:
        raise CompileError(f"int8 activations need macro.max_ab = 8, the configuration has {m.max_ab}")


def _phys(t: TensorInfo) -> tuple[int, int, int]:
    if len(t.shape) == 3:
        return tuple(t.shape)
    if len(t.shape) == 1:
        return (t.shape[0], 1, 1)
    raise CompileError(f"tensor {t.name!r}: shape {t.shape}: allowed (C, H, W) or (F,)")


class _Layouts:
    """Tensor name -> (stored (C, H, W), owner tensor name): aliases for reshapes that keep the bytes."""

    def __init__(self, graph: Graph):
        self.phys: dict[str, tuple[int, int, int]] = {}
        self.owner: dict[str, str] = {}
        for t in graph.inputs:
            self.phys[t.name], self.owner[t.name] = _phys(t), t.name
        for layer in graph.layers:
            out = layer.output
            if isinstance(layer, Reshape):
                src = layer.input
                sp = self.phys[src.name]
                if len(out.shape) == 1 or (sp[1] == sp[2] == 1 and _phys(out) == sp):
                    self.phys[out.name], self.owner[out.name] = sp, self.owner[src.name]
                    continue
                raise CompileError(f"reshape layer {layer.name!r}: {src.shape} -> {out.shape}: allowed a flatten "
                                   f"to (F,) or a reshape of a vector to (F, 1, 1)")
            self.phys[out.name], self.owner[out.name] = _phys(out), out.name


def max_batch(graph: Graph, cfg: CimConfig) -> int:
    """How many images' tensors (every tensor kept) fit the activation memory at once."""
    lay = _Layouts(graph)
    L = lanes(cfg)
    per = sum(h * w * -(-c // L) for name, (c, h, w) in lay.phys.items() if lay.owner[name] == name)
    return max(0, cfg.fabric.act_depth // per)


def compile_graph(graph: Graph, cfg: CimConfig, *, batch: int = 1,
                  parallelism: dict[str, Parallelism] | None = None, stream: bool | None = None,
                  merge_images: bool = True) -> Program:
    """Compile ``graph`` for ``cfg``.

    Parameters
    ----------
    batch : int
        Images per run; every tensor of every image keeps its own place (so the host can check them all).
    parallelism : dict, optional
        Layer name -> split; other weighted layers get :func:`~cimforge.compiler.cost.choose_parallelism`.
    stream : bool, optional
        Force weight streaming (True) or residency (False); default: resident when the pages hold all weights.
    merge_images : bool
        One ``MAC`` pass per layer covers every image of the run (its positions run over all images, so the
        pass's fixed set-up and drain are paid once per run, and streamed weights are loaded once per run);
        the program then runs layer by layer. False: every image has its own passes, image by image.

    Raises
    ------
    CompileError
        A layer kind, shape or size the fabric cannot run, or memories too small; the message names the layer
        or tensor and the limit.
    """
    _check_config(cfg)
    if not isinstance(batch, int) or batch < 1:
        raise CompileError(f"batch = {batch!r}: allowed an integer >= 1")
    L = lanes(cfg)
    P = cfg.macro.pages
    parallelism = dict(parallelism or {})
    unknown = set(parallelism) - {layer.name for layer in graph.weighted_layers}
    if unknown:
        raise CompileError(f"parallelism given for {sorted(unknown)}: not weighted layers of graph {graph.name!r}")
    lay = _Layouts(graph)
    prog = Program(cfg=cfg, graph=graph, batch=batch)
    prog.pass_at = {}
    rowpacked = _rowpacked_inputs(graph, lay, cfg)

    # -- activation memory: every tensor of every image, the images of a tensor back to back -------------------
    # (so one MAC pass walks all images of a layer: image i of a tensor is i * words further on)
    addr = 0
    for name, t in graph.tensors.items():
        c, h, w = lay.phys[name]
        owner = lay.owner[name]
        place = TensorPlace(name, 0, tuple(t.shape), (c, h, w), 0, -(-c // L), t.dtype, name in rowpacked)
        for i in range(batch):
            base = prog.tensors[(i, owner)].base if owner != name else addr + i * place.words
            prog.tensors[(i, name)] = replace(place, image=i, base=base)
        if owner == name:
            addr += batch * place.words
    if addr > cfg.fabric.act_depth:
        raise CompileError(f"activation memory too small: {batch} image(s) of graph {graph.name!r} need {addr} words, "
                           f"fabric.act_depth = {cfg.fabric.act_depth}: allowed batch <= {max_batch(graph, cfg)}")

    # -- weighted layers: split, tiles, passes (a grouped convolution is one plan per group) ------------------
    plans: dict[tuple[str, int], tuple[ConvGeom, Parallelism, int, int]] = {}  # (layer, group) -> plan
    for layer in graph.weighted_layers:
        if layer.input.dtype not in ("int8", "uint8"):
            raise CompileError(f"layer {layer.name!r}: input dtype {layer.input.dtype}: allowed int8, uint8")
        if isinstance(layer, Dense):
            geos = [(geometry(layer, lay.phys[layer.input.name]), 0, 0)]
        else:
            geos = group_geometries(layer, L, rowpack=layer.input.name in rowpacked)
        par = parallelism.get(layer.name) or choose_parallelism(geos[0][0], cfg, images=batch if merge_images else 1)
        for gi, (g, in_off, out_off) in enumerate(geos):
            plans[(layer.name, gi)] = (g, par, in_off, out_off)
    pages_need = {}
    for key, (g, par, _, _) in plans.items():
        tiles, _, passes = _mac_plan(g, cfg, par)
        pages_need[key] = (tiles, passes)
    total_pages = sum(-(-len(t) // plans[k][1].in_ch) * -(-p[0][1] // plans[k][1].out_ch) * len(p)
                      for k, (t, p) in pages_need.items())
    resident = total_pages <= P if stream is None else not stream
    if resident and total_pages > P:
        raise CompileError(f"weights need {total_pages} pages per macro, macro.pages = {P}: cannot be resident "
                           f"(use stream=True)")
    if not resident:  # passes small enough to double-buffer where possible
        for key, (g, par, _, _) in plans.items():
            kr = -(-len(pages_need[key][0]) // par.in_ch)
            tiles, _, passes = _mac_plan(g, cfg, par, pages_avail=max(kr, P // 2))
            pages_need[key] = (tiles, passes)
    prog.resident = resident

    # -- weights, descriptors and parameters -----------------------------------------------------------------
    wblocks: dict[tuple, tuple[int, int]] = {}  # (layer, group, k, n) -> (src, rows)
    desc_base: dict[tuple[str, int], int] = {}
    param_base: dict[tuple[str, int], int] = {}
    dlay, play = desc_layout(cfg), param_layout(cfg)
    for key, (g, par, _, _) in plans.items():
        layer = graph.layer(key[0])
        tiles, _ = pages_need[key]
        nt = -(-g.cout // L)
        cw_in = prog.tensors[(0, layer.input.name)].cw  # the stored input's words per pixel
        for k, t in enumerate(tiles):
            for n in range(nt):
                words = page_words(g, t, n, cfg)
                wblocks[(*key, k, n)] = (len(prog.wmem), len(words))
                prog.wmem.extend(words)
        desc_base[key] = len(prog.dmem)
        for t in tiles:
            prog.dmem.append(_pack(layer.name, dlay, {
                "ky0": t.ky0, "kx0": t.kx0, "dy0": t.ky0 * g.dh, "dx0": t.kx0 * g.dw, "c0": t.c0, "elems": t.elems,
                "off0": t.ky0 * g.dh if g.rowpack else (t.ky0 * g.dh * g.w + t.kx0 * g.dw) * cw_in}))
        param_base[key] = len(prog.pmem)
        fb = layer.folded_bias
        if fb.size and (fb.min() < -2 ** 31 or fb.max() > 2 ** 31 - 1):
            raise CompileError(f"layer {layer.name!r}: folded bias beyond int32 ({fb.min()}..{fb.max()})")
        mult, shift = layer.requant.multiplier, layer.requant.shift
        c_off = key[1] * g.cout
        for n in range(nt):
            lanes_ = []
            for j in range(L):
                co = n * L + j
                if co < g.cout:
                    c = c_off + co
                    lanes_.append({"bias": int(fb[c]), "mult": int(mult[c]), "shift": int(shift[c])})
                else:
                    lanes_.append({"bias": 0, "mult": 0, "shift": 0})
            prog.pmem.append(_pack(layer.name, play, lanes_))
    # role tables: one word per macro per distinct split (macro m = (bi*ki + kk)*no + nn)
    role_base: dict[Parallelism, int] = {}
    rlay = role_layout(cfg)
    for key, (g, par, _, _) in plans.items():
        if par in role_base:
            continue
        role_base[par] = len(prog.dmem)
        for m in range(cfg.fabric.n_macros):
            nn, kk, bi = m % par.out_ch, (m // par.out_ch) % par.in_ch, m // (par.out_ch * par.in_ch)
            en = m < par.macros
            prog.dmem.append(_pack(key[0], rlay, {"bi": bi if en else 0, "kk": kk if en else 0,
                                                  "nn": nn if en else 0, "en": int(en)}))
    for what, mem, field_ in (("weight", prog.wmem, "weight_depth"), ("parameter", prog.pmem, "param_depth"),
                              ("descriptor", prog.dmem, "desc_depth")):
        depth = getattr(cfg.fabric, field_)
        if len(mem) > depth:
            raise CompileError(f"{what} memory too small for graph {graph.name!r}: needs {len(mem)} words, "
                               f"fabric.{field_} = {depth}")

    # -- passes and pages ---------------------------------------------------------------------------------------
    # merged: one pass per (layer, group, N range) walks the positions of every image, the program runs layer
    # by layer; else each image has its own passes and the program runs image by image
    pass_images = [(0, batch)] if merge_images else [(i, 1) for i in range(batch)]

    def make_passes(image: int, images: int) -> dict[str, list[MacPass]]:
        out: dict[str, list[MacPass]] = {}
        for key, (g, par, in_off, out_off) in plans.items():
            tiles, passes = pages_need[key]
            kr = -(-len(tiles) // par.in_ch)
            for n_base, nt in passes:
                mp = MacPass(key[0], g, par, tiles, n_base, nt, kr, -(-nt // par.out_ch), image=image, images=images)
                mp.desc_base, mp.param_base = desc_base[key], param_base[key] + n_base
                mp.role_base, mp.group, mp.in_off, mp.out_off = role_base[par], key[1], in_off, out_off
                out.setdefault(key[0], []).append(mp)
        return out

    all_passes = {image: make_passes(image, images) for image, images in pass_images}
    # program order: ("mac", pass) and ("vec", layer, image) steps
    steps: list[tuple] = []
    for i in ([0] if merge_images else range(batch)):
        for layer in graph.layers:
            if layer.name in all_passes[i]:
                steps += [("mac", mp) for mp in all_passes[i][layer.name]]
            else:
                steps += [("vec", layer, j) for j in (range(batch) if merge_images else [i])]
    order = [st[1] for st in steps if st[0] == "mac"]
    ptr = 0
    for mp in order:
        if resident and mp.image > 0:
            continue
        if ptr + mp.pages > P:
            ptr = 0
        mp.page_base = ptr
        ptr += mp.pages
    if resident:  # every image uses image 0's pages
        for i in range(1, len(pass_images)):
            for name, lst in all_passes[i].items():
                for mp, first in zip(lst, all_passes[0][name]):
                    mp.page_base = first.page_base
    for mp in order:
        mp.loads = _loads(mp, wblocks, cfg)

    # -- code ----------------------------------------------------------------------------------------------------
    def emit(op: Opcode, layer: str | None, image: int | None, text: str, **args) -> int:
        try:
            word = encode(cfg, op, **args)
        except ValueError as e:
            raise CompileError(f"layer {layer!r}: {op.name} instruction: {e}") from None
        pc = len(prog.code)
        prog.code.append(word)
        prog.instrs.append(InstrInfo(pc, op.name, layer, image, text))
        return pc

    def emit_loads(mp: MacPass):
        for ld in mp.loads:
            emit(Opcode.LOAD, mp.layer, mp.image_label, f"page {ld['page']} rows {ld['row0']}+{ld['count']} "
                 f"macros {ld['mask']:#x}", **ld)

    if resident:
        for mp in order:
            if mp.image == 0:
                emit_loads(mp)
        emit(Opcode.SYNC, None, None, "weights resident")
        prog.prologue = list(range(len(prog.code)))
    else:
        emit_loads(order[0])
    pending_sync = not resident
    mac_index = 0
    for st in steps:
        if st[0] == "vec":
            _emit_vector(st[1], prog, st[2], cfg, emit)
            continue
        mp = st[1]
        layer = graph.layer(mp.layer)
        if pending_sync:
            emit(Opcode.SYNC, layer.name, mp.image_label, "wait for this pass's weights")
        nxt = order[mac_index + 1] if mac_index + 1 < len(order) else None
        overlap = False
        if not resident and nxt is not None:
            overlap = _disjoint(mp, nxt)
            if overlap:
                emit_loads(nxt)
        grp = f" group {mp.group}" if mp.group else ""
        imgs = f" images 0..{mp.images - 1}" if mp.images > 1 else ""
        pc = emit(Opcode.MAC, layer.name, mp.image_label, f"{mp.par}{grp} n tiles {mp.n_base}..{mp.n_base + mp.nt - 1}"
                  f"{imgs}", **_mac_args(mp, prog, layer, cfg))
        prog.pass_at[pc] = mp
        prog.passes.append(mp)
        if not resident and nxt is not None and not overlap:
            emit_loads(nxt)
        pending_sync = not resident
        mac_index += 1
    emit(Opcode.END, None, None, "end")
    if len(prog.code) > cfg.controller.program_depth:
        raise CompileError(f"program of {len(prog.code)} instructions for batch {batch}: controller.program_depth = "
                           f"{cfg.controller.program_depth}: lower the batch")
    prog.options = {"stream": not resident}
    return prog


def _rowpacked_inputs(graph: Graph, lay: _Layouts, cfg: CimConfig) -> set[str]:
    """Graph inputs stored row-packed: one-channel inputs read only by convolutions that can walk them so
    (:func:`~cimforge.compiler.tiling.rowpack_ok`), with no alias (a flatten reads pixels)."""
    L, rows = lanes(cfg), cfg.macro.rows
    out = set()
    for t in graph.inputs:
        readers = [layer for layer in graph.layers if any(x.name == t.name for x in layer.inputs)]
        aliased = any(lay.owner[n] == t.name and n != t.name for n in lay.owner)
        if readers and not aliased and all(rowpack_ok(layer, L, rows) for layer in readers):
            out.add(t.name)
    return out


def _pack(owner: str, layout, value) -> int:
    try:
        return pack_word(layout, value)
    except ValueError as e:
        raise CompileError(f"layer {owner!r}: {e}") from None


def _disjoint(a: MacPass, b: MacPass) -> bool:
    return a.page_base + a.pages <= b.page_base or b.page_base + b.pages <= a.page_base


def _loads(mp: MacPass, wblocks, cfg: CimConfig) -> list[dict]:
    """LOAD arguments filling the pages of ``mp``: one per (K tile, N tile), to every replica at once."""
    par, R = mp.par, cfg.macro.rows
    kt = len(mp.tiles)
    loads = []
    for nl in range(mp.nt):
        n = mp.n_base + nl
        for k in range(kt):
            mask = 0
            for bi in range(par.batch):
                mask |= 1 << ((bi * par.in_ch + k % par.in_ch) * par.out_ch + nl % par.out_ch)
            src, rows = wblocks[(mp.layer, mp.group, k, n)]
            loads.append({"src": src, "count": rows, "mask": mask, "page": mp.page_of(k, n), "row0": R - rows})
    return loads


def _mac_args(mp: MacPass, prog: Program, layer: Layer, cfg: CimConfig) -> dict:
    g: ConvGeom = mp.geom
    src = prog.tensors[(mp.image, layer.input.name)]
    dst = prog.tensors[(mp.image, layer.output.name)]
    cw = src.cw
    b = mp.par.batch
    whole, rest = divmod(b, g.npos)  # a step of b positions: whole images, then rest positions (< an image)
    bq, br = divmod(rest, g.ow)
    par = mp.par
    row_words = 1 if g.rowpack else g.w * cw  # words of one input row
    img = {"oh": g.oh, "img_delta": src.words - g.oh * g.sh * row_words, "img_bstep": whole * src.words}
    if g.rowpack:
        # one word per image row: the walk is kh steps of one "tap" of kw pixels (the lanes under the window);
        # addresses move with rows only, columns are the lane selection (ix)
        walk = {"in_cw": 1, "cin": g.kw, "kw": 1, "dw": 1, "pos0": src.base - g.pt, "kx_inc": 0, "ky_inc": g.dh,
                "pos_ux": 0, "pos_wrap": g.sh, "pos_bstep": bq * g.sh, "rowpack": 1}
    else:
        walk = {"in_cw": cw, "cin": g.cin, "kw": g.kw, "dw": g.dw, "pos0": src.base + mp.in_off - (g.pt * g.w + g.pl) * cw,
                "kx_inc": g.dw * cw, "ky_inc": g.dh * g.w * cw - (g.kw - 1) * g.dw * cw, "pos_ux": g.sw * cw,
                "pos_wrap": (g.sh * g.w - g.ow * g.sw) * cw, "pos_bstep": (bq * g.sh * g.w + br * g.sw) * cw,
                "rowpack": 0}
    return {
        "in_h": g.h, "in_w": g.w, "kh": g.kh, "dh": g.dh,
        "sh": g.sh, "sw": g.sw, "pt": g.pt, "pl": g.pl, "ow": g.ow, "npos": mp.npos, **walk, **img,
        "bq": bq, "br": br,
        "desc_base": mp.desc_base, "kt": len(mp.tiles), "nt": mp.nt, "kr": mp.kr, "nr": mp.nr,
        "b": par.batch, "ki": par.in_ch, "no": par.out_ch, "groups": par.batch * par.out_ch,
        "role_base": mp.role_base, "page_base": mp.page_base,
        "out_base": dst.base + mp.out_off + mp.n_base, "out_cw": dst.cw, "param_base": mp.param_base,
        "zp_in": layer.input.zero_point & 0xFF, "zp_out": layer.output.zero_point,
        "act_min": layer.act_min, "act_max": layer.act_max,
        "ab_m1": ACT_BITS - 1, "wb_log2": 3, "x_signed": int(layer.input.dtype == "int8"), "w_signed": 1,
    }


def _emit_vector(layer: Layer, prog: Program, image: int, cfg: CimConfig, emit) -> None:
    """POOL / EW instructions of a layer without weights (Reshape: nothing, the tensor is an alias)."""
    L = lanes(cfg)
    T = prog.tensors
    if isinstance(layer, Reshape):
        return
    if isinstance(layer, (MaxPool, AvgPool, GlobalAvgPool)):
        src, dst = T[(image, layer.input.name)], T[(image, layer.output.name)]
        c, h, w = src.phys
        _, oh, ow = dst.phys
        if isinstance(layer, GlobalAvgPool):
            kh, kw, sh, sw, dh, dw, pt, pl = h, w, 1, 1, 1, 1, 0, 0
        else:
            (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
            pt, pl = layer.padding[0], layer.padding[1]
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
                        act_max=layer.act_max)
        emit(Opcode.POOL, layer.name, image, f"{layer.kind} {kh}x{kw}", **args)
        return
    if isinstance(layer, (Add, Clamp)):
        a = T[(image, layer.inputs[0].name)]
        dst = T[(image, layer.output.name)]
        pix = a.phys[1] * a.phys[2]
        args = {"a_base": a.base, "out_base": dst.base, "npos": pix, "cw": a.cw, "a_stride": a.cw,
                "out_stride": dst.cw, "x_signed": int(layer.inputs[0].dtype == "int8"),
                "zp_out": layer.output.zero_point if isinstance(layer, Add) else 0,
                "act_min": layer.act_min, "act_max": layer.act_max}
        if isinstance(layer, Add):
            bt = T[(image, layer.inputs[1].name)]
            if layer.inputs[0].dtype != layer.inputs[1].dtype:
                raise CompileError(f"add layer {layer.name!r}: inputs of dtypes {layer.inputs[0].dtype} and "
                                   f"{layer.inputs[1].dtype}: allowed equal dtypes")
            ta, tb = layer.inputs
            args.update(b_base=bt.base, b_stride=bt.cw, has_b=1, rq_in=1, rq_out=1, ls=layer.left_shift,
                        zp_a=ta.zero_point, zp_b=tb.zero_point,
                        mult_a=int(layer.requant_a.multiplier), shift_a=int(layer.requant_a.shift),
                        mult_b=int(layer.requant_b.multiplier), shift_b=int(layer.requant_b.shift),
                        mult_o=int(layer.requant_out.multiplier), shift_o=int(layer.requant_out.shift))
        emit(Opcode.EW, layer.name, image, layer.kind, **args)
        return
    if isinstance(layer, Concat):
        if layer.axis != 0:
            raise CompileError(f"concat layer {layer.name!r}: axis {layer.axis}: allowed 0 (channels)")
        dst = T[(image, layer.output.name)]
        off = 0
        for t, rq in zip(layer.inputs, layer.requants):
            if t.shape[0] % L and t is not layer.inputs[-1]:
                raise CompileError(f"concat layer {layer.name!r}: input {t.name!r} has {t.shape[0]} channels: "
                                   f"allowed a multiple of the lanes ({L}) except for the last input")
            a = T[(image, t.name)]
            args = {"a_base": a.base, "out_base": dst.base + off, "npos": a.phys[1] * a.phys[2], "cw": a.cw,
                    "a_stride": a.cw, "out_stride": dst.cw, "x_signed": int(t.dtype == "int8"),
                    "act_min": layer.output.qmin, "act_max": layer.output.qmax}
            if rq is not None:
                args.update(zp_a=t.zero_point, rq_out=1, mult_o=int(rq.multiplier), shift_o=int(rq.shift),
                            zp_out=layer.output.zero_point)
            emit(Opcode.EW, layer.name, image, f"concat part {t.name}", **args)
            off += a.cw
        return
    raise CompileError(f"layer {layer.name!r}: kind {layer.kind} is not supported by the fabric")
