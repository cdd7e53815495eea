"""Instruction-set model of the fabric: executes encoded programs with the RTL's algorithms, without cycles.

It decodes every word with :func:`cimforge.gen.isa.decode_op`, steps positions and walks tiles exactly as the
gather units do (:mod:`cimforge.gen.gather`), computes macro operations with the golden macro model
(:class:`cimforge.golden.macro.MacroModel`) and requantises with the golden functions. So it checks the
compiler and the encoder against the golden network on its own (fast, no simulator), and it is the reference a
failing RTL run is compared with, instruction by instruction.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from ..bits import ceil_log2
from ..config import CimConfig
from ..gen.isa import (LANE_BITS, Opcode, PoolMode, decode_op, desc_layout, lanes, lrn_table_layout,
                       lut_table_layout, lut_table_words,
                       pack_lanes, param_layout,
                       role_layout, unpack_lanes, unpack_word)
from ..golden.lrn import LrnTable, lrn_integer, lrn_square_max
from ..golden.macro import MacroModel
from ..golden.requant import multiply_by_quantized_multiplier as mbqm
from .program import Program

__all__ = ["FabricModel", "run_program", "EXECUTORS", "STOP"]


class FabricModel:
    """Memories and macros of a fabric, and an executor of its instructions.

    Attributes
    ----------
    amem : list of int
        Activation words.
    macros : list of MacroModel
    ops : int
        Macro operations executed; ``ops_per_macro`` by macro.
    """

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        self.L = lanes(cfg)
        f = cfg.fabric
        self.amem = [0] * f.act_depth
        self.wmem = [0] * f.weight_depth
        self.pmem = [0] * f.param_depth
        self.dmem = [0] * f.desc_depth
        self.code: list[int] = []
        self.macros = [MacroModel(cfg.macro) for _ in range(f.n_macros)]
        self.ops = 0
        self.ops_per_macro = [0] * f.n_macros
        self.rounding = f.rounding  # the requantisation form the RTL builds
        self.trace: list[int] = []
        self.ext: dict[int, int] = {}  # the external memory (DMA), sparse: words never written read 0
        self.spmv_acc = [0] * cfg.macro.cols  # GSPMV's column sums, kept between instructions until a flush

    def load_program(self, prog: Program) -> None:
        self.code = list(prog.code)
        for dst, src in ((self.wmem, prog.wmem), (self.pmem, prog.pmem), (self.dmem, prog.dmem)):
            dst[:len(src)] = src

    def write_words(self, words: dict[int, int]) -> None:
        for a, w in words.items():
            self.amem[a] = w

    # -- execution ---------------------------------------------------------------------------------------
    def run(self, max_instructions: int = 10 ** 7) -> int:
        """Execute from pc 0 to END; returns the pc of END.

        Raises
        ------
        RuntimeError
            An unknown opcode, or more than ``max_instructions`` executed.
        """
        by_value = {op.value: fn for op, fn in EXECUTORS.items()}
        pc = 0
        for _ in range(max_instructions):
            value, args = decode_op(self.cfg, self.code[pc])
            self.trace.append(pc)
            execute = by_value.get(value)
            if execute is None:
                raise RuntimeError(f"unknown opcode {value} at pc {pc}")
            if execute(self, args) is STOP:
                return pc
            pc += 1
        raise RuntimeError(f"no END after {max_instructions} instructions")

    def _end(self, a) -> object:
        return STOP

    def _sync(self, a) -> None:
        """Loads complete at once here: nothing to wait for."""

    def _load(self, a: dict) -> None:
        page, row = a["page"], a["row0"]
        for i in range(a["count"]):
            word = self.wmem[a["src"] + i]
            for m, mac in enumerate(self.macros):
                if a["mask"] >> m & 1:
                    mac.write(page, row, word)
            row += 1
            if row == self.cfg.macro.rows:
                row, page = 0, page + 1

    def _codes(self, word: int, signed: bool) -> list[int]:
        return unpack_lanes(word, self.L, signed)

    def _roles(self, a: dict) -> list[tuple[int, int, int, bool]]:
        """(bi, kk, nn, enabled) of every macro from the pass's role table."""
        rl = role_layout(self.cfg)
        out = []
        for m in range(self.cfg.fabric.n_macros):
            r = unpack_word(rl, self.dmem[a["role_base"] + m] & ((1 << rl.size) - 1))
            out.append((r["bi"], r["kk"], r["nn"], bool(r["en"])))
        return out

    @staticmethod
    def _step(a: dict, st: tuple, by_b: bool) -> tuple:
        """A gather unit's position state (p, ox, oy, iy0, ix0, pos_addr) one position on, or ``b`` positions
        on (``by_b``), as the gather units keep it."""
        b = a["b"]
        p, ox, oy, iy0, ix0, addr = st
        d_ox = ox + (a["br"] if by_b else 1)
        wrap = d_ox >= a["ow"]
        d_oy = oy + (a["bq"] if by_b else 0) + wrap
        iwrap = d_oy >= a["oh"]  # into the next image
        iy0 += (a["bq"] * a["sh"] if by_b else 0) + (a["sh"] if wrap else 0) - (a["oh"] * a["sh"] if iwrap else 0)
        ix0 += (a["br"] * a["sw"] if by_b else a["sw"]) - (a["ow"] * a["sw"] if wrap else 0)
        addr += (a["pos_bstep"] + a["img_bstep"] if by_b else a["pos_ux"]) + (a["pos_wrap"] if wrap else 0) \
            + (a["img_delta"] if iwrap else 0)
        return (p + (b if by_b else 1), d_ox - a["ow"] if wrap else d_ox, d_oy - a["oh"] if iwrap else d_oy,
                iy0, ix0, addr)

    def _mac(self, a: dict) -> None:
        L, b, ki, no = self.L, a["b"], a["ki"], a["no"]
        n = self.cfg.fabric.n_macros
        dl = desc_layout(self.cfg)
        roles = self._roles(a)
        pos = []
        for bi, _, _, _ in roles:
            st = (0, 0, 0, -a["pt"], -a["pl"], a["pos0"])
            for _ in range(bi if bi < b else 0):
                st = self._step(a, st, False)
            pos.append(st)
        signed = bool(a["x_signed"])
        zp_code = a["zp_in"]
        zp_val = zp_code - 256 if signed and zp_code >= 128 else zp_code
        acc = [np.zeros(L, dtype=np.int64) for _ in range(n)]
        for r in range(-(-a["npos"] // b)):
            for nr in range(a["nr"]):
                page = a["page_base"] + nr * a["kr"]
                for kr in range(a["kr"]):
                    for m, (bi, kk, nn, en) in enumerate(roles):
                        k, nt = kr * ki + kk, nr * no + nn
                        if kr == 0:
                            acc[m][:] = 0
                        if not (en and pos[m][0] < a["npos"] and k < a["kt"] and nt < a["nt"]):
                            continue
                        d = unpack_word(dl, self.dmem[a["desc_base"] + k])
                        x = self._gather(a, d, pos[m], signed, zp_val)
                        y = self.macros[m].mac(np.array(x), page + kr, 1 << a["wb_log2"], a["ab_m1"] + 1,
                                               bool(a["w_signed"]), signed)
                        self.ops += 1
                        self.ops_per_macro[m] += 1
                        acc[m] += y[:L]
                self._serialize(a, roles, acc, r, nr)  # after the last reduction round
            pos = [self._step(a, st, True) if en else st for st, (_, _, _, en) in zip(pos, roles)]

    def _serialize(self, a: dict, roles: list, acc: list, r: int, nr: int) -> None:
        """Sum each output group's partial sums over its K-split, requantise and write it."""
        b, no = a["b"], a["no"]
        aw = 1 << ceil_log2(len(self.amem))
        pl = param_layout(self.cfg)
        for g in range(a["groups"]):
            g_bi, g_nn = g // no, g % no
            p = r * b + g_bi
            nch = nr * no + g_nn
            if p >= a["npos"] or nch >= a["nt"]:
                continue
            total = sum(acc[m] for m, (bi, kk, nn, en) in enumerate(roles) if en and bi == g_bi and nn == g_nn)
            prm = unpack_word(pl, self.pmem[a["param_base"] + nch])
            bias = np.array([q["bias"] for q in prm], dtype=np.int64)
            mult = np.array([q["mult"] for q in prm], dtype=np.int64)
            shift = np.array([q["shift"] for q in prm], dtype=np.int64)
            v = ((total + bias + 2 ** 31) % 2 ** 32) - 2 ** 31
            y = mbqm(v, mult, shift, self.rounding) + a["zp_out"]
            y = np.clip(y, a["act_min"], a["act_max"])
            if a["epi"]:  # the epilogue: a depthwise 1x1 layer's accumulator of the codes, requantised
                epi = unpack_word(pl, self.pmem[a["epi_base"] + nch])
                w = np.array([q["w"] for q in epi], dtype=np.int64)
                bias = np.array([q["bias"] for q in epi], dtype=np.int64)
                v = ((y * w + bias + 2 ** 31) % 2 ** 32) - 2 ** 31
                y = mbqm(v, np.array([q["mult"] for q in epi], dtype=np.int64),
                         np.array([q["shift"] for q in epi], dtype=np.int64), self.rounding) + a["epi_zp_out"]
                y = np.clip(y, a["epi_min"], a["epi_max"])
            self.amem[(a["out_base"] + p * a["out_cw"] + nch) % aw] = pack_lanes(y)

    def _gather(self, a: dict, d: dict, st, signed: bool, zp_val: int) -> list[int]:
        """The activation vector of one tile at one position (rows ``R - elems ..`` hold the walk)."""
        L, R = self.L, self.cfg.macro.rows
        _, _, _, iy0, ix0, pos_addr = st
        c, rem, ky, kx = d["c0"], d["elems"], d["ky0"], d["kx0"]
        iy, ix, row_ix = iy0 + d["dy0"], ix0 + d["dx0"], ix0
        tap0 = pos_addr + d["off0"]
        addr = tap0 + d["c0"] // L
        out: list[int] = []
        while rem:
            nstep = min(L, a["cin"] - c, rem)
            if a["rowpack"]:  # one image row per word: the lanes under the window, zp outside the image
                row = self._codes(self.amem[addr % len(self.amem)], signed)
                vals = [zp_val] * L if iy < 0 or iy >= a["in_h"] else \
                    [row[x] if 0 <= x < a["in_w"] else zp_val for x in range(ix, ix + L)]
            else:
                oob = iy < 0 or iy >= a["in_h"] or ix < 0 or ix >= a["in_w"]
                vals = [zp_val] * L if oob else self._codes(self.amem[addr % len(self.amem)], signed)
            out.extend(vals[:nstep])
            rem -= nstep
            if nstep == a["cin"] - c:
                c = 0
                if kx == a["kw"] - 1:
                    kx, ky, ix, iy = 0, ky + 1, row_ix, iy + a["dh"]
                    tap0 += a["ky_inc"]
                else:
                    kx, ix = kx + 1, ix + a["dw"]
                    tap0 += a["kx_inc"]
                addr = tap0
            else:
                c += nstep
                addr += 1
        return [0] * (R - len(out)) + out

    def _gbfs(self, a: dict) -> None:
        """``GBFS``: a BITWISE AND of the frontier word with each selected row, reached bits OR-ed into ``dst``."""
        mac, cols = self.macros[a["macro"]], self.cfg.macro.cols
        word = self.amem[a["src"]] & ((1 << cols) - 1)
        reached = 0
        for r in range(self.cfg.macro.rows):
            if a["rows"] >> r & 1:
                _, _, total = mac.bitwise(a["page"], r, word, "AND")
                reached |= (total != 0) << r
                self.ops += 1
                self.ops_per_macro[a["macro"]] += 1
        self.amem[a["dst"]] |= reached

    def _grelax(self, a: dict) -> None:
        """``GRELAX``: per arc word, ``new[v] = min(new[v], sat(old[u] + w))`` in arc order (the RTL forwards each
        write to the next arc, so this sequential form is exact)."""
        from ..gen.graph_relax import relax_arc_layout, relax_value_bits
        lay, vb = relax_arc_layout(self.cfg), relax_value_bits(self.cfg)
        inf = (1 << vb) - 1
        for i in range(a["count"]):
            arc = unpack_word(lay, self.amem[a["arcs"] + i] & ((1 << lay.size) - 1))
            old = self.amem[a["old"] + arc["src"]] & inf
            dst = a["new"] + arc["dst"]
            self.amem[dst] = min(self.amem[dst] & inf, min(old + arc["weight"], inf))

    def _gspmv(self, a: dict) -> None:
        """``GSPMV``: per slice (``slices_m1 + 1`` of them) a MAC operation (``wb = 1``, ``ab = 8``, unsigned) of
        the slice's activation words, rows outside ``rows`` at 0, with the page, shift-added into the engine's
        column sums; ``flush`` adds them into ``y .. y + cols - 1`` and clears them (sums and words wrap at the
        word width)."""
        from ..gen.graph_spmv import slice_words
        rows, cols, rl = self.cfg.macro.rows, self.cfg.macro.cols, slice_words(self.cfg)
        mac, width = self.macros[a["macro"]], LANE_BITS * self.L
        keep = np.array([a["rows"] >> r & 1 for r in range(rows)], dtype=np.int64)
        for s in range(a["slices_m1"] + 1):
            x = []
            for k in range(rl):
                x += self._codes(self.amem[a["x"] + s * rl + k], False)
            y = mac.mac(np.array(x[:rows], dtype=np.int64) * keep, a["page"], wb=1, ab=8, w_signed=False,
                        x_signed=False)
            self.spmv_acc = [(v + (int(w) << (8 * s))) % (1 << width) for v, w in zip(self.spmv_acc, y)]
            self.ops += 1
            self.ops_per_macro[a["macro"]] += 1
        if a["flush"]:
            for c in range(cols):
                self.amem[a["y"] + c] = (self.amem[a["y"] + c] + self.spmv_acc[c]) % (1 << width)
            self.spmv_acc = [0] * cols

    def _pool(self, a: dict) -> None:
        signed = bool(a["x_signed"])
        L = self.L
        for oy in range(a["oh"]):
            for ox in range(a["ow"]):
                for w in range(a["cw"]):
                    red = None
                    for ky in range(a["kh"]):
                        for kx in range(a["kw"]):
                            iy = oy * a["sh"] - a["pt"] + ky * a["dh"]
                            ix = ox * a["sw"] - a["pl"] + kx * a["dw"]
                            if iy < 0 or iy >= a["in_h"] or ix < 0 or ix >= a["in_w"]:
                                continue
                            x = np.array(self._codes(self.amem[a["in_base"] + (iy * a["in_w"] + ix) * a["cw"] + w],
                                                     signed), dtype=np.int64)
                            if a["mode"] == PoolMode.MAX.value:
                                red = x if red is None else np.maximum(red, x)
                            else:
                                red = (x - a["zp_in"]) if red is None else red + x - a["zp_in"]
                    if red is None:
                        red = np.zeros(L, dtype=np.int64)
                    if a["mode"] == PoolMode.AVG.value:
                        red = np.clip(mbqm(red, a["mult"], a["shift"], self.rounding, bool(a["round_even"]))
                                      + a["zp_out"], a["act_min"], a["act_max"])
                    self.amem[a["out_base"] + (oy * a["ow"] + ox) * a["cw"] + w] = pack_lanes(red)

    def _ew(self, a: dict) -> None:
        signed = bool(a["x_signed"])
        for p in range(a["npos"]):
            for w in range(a["cw"]):
                xa = np.array(self._codes(self.amem[a["a_base"] + p * a["a_stride"] + w], signed), dtype=np.int64)
                va = xa - a["zp_a"]
                if a["has_b"]:
                    xb = np.array(self._codes(self.amem[a["b_base"] + p * a["b_stride"] + w], signed), dtype=np.int64)
                    vb = xb - a["zp_b"]
                else:
                    vb = np.zeros_like(va)
                if a["rq_in"]:
                    va = mbqm(va << a["ls"], a["mult_a"], a["shift_a"], self.rounding)
                    vb = mbqm(vb << a["ls"], a["mult_b"], a["shift_b"], self.rounding)
                s = va * vb if a["mul"] else ((va + vb + 2 ** 31) % 2 ** 32) - 2 ** 31
                if a["rq_out"]:
                    s = mbqm(s, a["mult_o"], a["shift_o"], self.rounding)
                y = np.clip(s + a["zp_out"], a["act_min"], a["act_max"])
                self.amem[a["out_base"] + p * a["out_stride"] + w] = pack_lanes(y)

    def _lrn(self, a: dict) -> None:
        """``LRN``: every pixel's channels through :func:`cimforge.golden.lrn.lrn_integer` with the table read
        from the parameter memory (the entries the window sums reach), lanes past the channels written 0."""
        L, cw, ch = self.L, a["cw"], a["channels"]
        codes = np.array([self._codes(self.amem[a["in_base"] + i], bool(a["x_signed"]))
                          for i in range(a["npos"] * cw)], dtype=np.int64).reshape(a["npos"], cw * L)[:, :ch]
        d = codes - a["zp_in"]
        tl = lrn_table_layout(self.cfg)
        kmax = lrn_square_max(ch, a["size"], int(np.abs(d).max(initial=0))) >> a["shift"]
        entries = [unpack_word(tl, self.pmem[a["table_base"] + k // tl.length] & ((1 << tl.size) - 1))[k % tl.length]
                   for k in range(kmax + 1)]
        table = LrnTable(a["shift"], a["frac"], tuple(e["g"] for e in entries), tuple(e["dg"] for e in entries))
        y = lrn_integer(d.T[None], table, a["size"], a["zp_out"], a["act_min"], a["act_max"])[0].T
        out = np.zeros((a["npos"], cw * L), dtype=np.int64)
        out[:, :ch] = y
        for p in range(a["npos"]):
            for w in range(cw):
                self.amem[a["out_base"] + p * cw + w] = pack_lanes(out[p, w * L:(w + 1) * L])

    def _lut(self, a: dict) -> None:
        """``LUT``: every lane of every input word through the table read from the parameter memory (entry ``b``
        in word ``b // n``, slot ``b % n``), lanes past ``channels`` in a pixel's last word written 0."""
        L, cw, n = self.L, a["cw"], lut_table_layout(self.cfg).length
        if a["per_channel"]:
            self._lut_per_channel(a)
            return
        table = [(self.pmem[a["table_base"] + b // n] >> (8 * (b % n))) & 0xFF for b in range(256)]
        for p in range(a["npos"]):
            for w in range(cw):
                word = self.amem[a["in_base"] + p * cw + w]
                out = [table[(word >> (LANE_BITS * l)) & 0xFF] if w * L + l < a["channels"] else 0 for l in range(L)]
                self.amem[a["out_base"] + p * cw + w] = sum(v << (LANE_BITS * l) for l, v in enumerate(out))

    def _lut_per_channel(self, a: dict) -> None:
        """``LUT`` with ``per_channel``: channel ``c``'s table at ``table_base + c * words``, looked up in lane
        ``c % L`` of word ``c // L`` of every pixel (read from the input for a word's first channel, else from the
        output), the word's other lanes written back as read."""
        L, cw, n = self.L, a["cw"], lut_table_layout(self.cfg).length
        words = lut_table_words(self.cfg)
        for c in range(a["channels"]):
            base = a["table_base"] + c * words
            table = [(self.pmem[base + b // n] >> (8 * (b % n))) & 0xFF for b in range(256)]
            w, lane = divmod(c, L)
            src = a["in_base"] if lane == 0 else a["out_base"]
            for p in range(a["npos"]):
                word = self.amem[src + p * cw + w]
                code = table[(word >> (LANE_BITS * lane)) & 0xFF]
                mask = 0xFF << (LANE_BITS * lane)
                self.amem[a["out_base"] + p * cw + w] = (word & ~mask) | (code << (LANE_BITS * lane))

    def _dma(self, a: dict) -> None:
        """``DMA``: the tile's words one by one, as the RTL moves them (the on-chip word in the low bits of a
        beat, the rest of a stored beat zero)."""
        f = self.cfg.fabric
        onchip, depth, width = ((self.wmem, f.weight_depth, self.cfg.macro.cols) if a["wmem"] else
                                (self.amem, f.act_depth, LANE_BITS * self.L))
        for r in range(a["rows"]):
            for i in range(a["len"]):
                e, o = a["ext"] + r * a["ext_stride"] + i, a["addr"] + r * a["stride"] + i
                if e >= f.ext_depth or o >= depth:
                    raise RuntimeError(f"DMA word ({r}, {i}): external {e} (depth {f.ext_depth}) or on-chip "
                                       f"{o} (depth {depth}) out of range")
                if a["store"]:
                    self.ext[e] = onchip[o]
                else:
                    onchip[o] = self.ext.get(e, 0) & ((1 << width) - 1)

    def _dsync(self, a) -> None:
        """Transfers complete at once here: nothing to wait for."""


#: Returned by an executor when the controller stops.
STOP = object()


#: Opcode -> ``f(model, args)`` executing one instruction (returns :data:`STOP` for END), one entry per
#: instruction of :data:`cimforge.gen.isa.INSTRUCTIONS` (tests/test_registry.py checks it).
EXECUTORS: dict[Opcode, Callable[[FabricModel, dict | None], object]] = {
    Opcode.END: FabricModel._end,
    Opcode.LOAD: FabricModel._load,
    Opcode.SYNC: FabricModel._sync,
    Opcode.MAC: FabricModel._mac,
    Opcode.POOL: FabricModel._pool,
    Opcode.EW: FabricModel._ew,
    Opcode.GBFS: FabricModel._gbfs,
    Opcode.GRELAX: FabricModel._grelax,
    Opcode.GSPMV: FabricModel._gspmv,
    Opcode.DMA: FabricModel._dma,
    Opcode.DSYNC: FabricModel._dsync,
    Opcode.LRN: FabricModel._lrn,
    Opcode.LUT: FabricModel._lut,
}


def run_program(prog: Program, inputs: dict[str, np.ndarray], model: FabricModel | None = None
                ) -> tuple[dict[str, np.ndarray], FabricModel]:
    """Run ``prog`` on ``inputs`` (``{name: (N, *shape)}``, N <= batch) in the instruction-set model; return
    every tensor of the N images and the model (for its memories)."""
    model = model or FabricModel(prog.cfg)
    model.load_program(prog)
    if prog.external:  # tensors and (some) weights in the external memory (compiler/memory.py)
        model.ext.update(prog.ext_init)
        model.ext.update(prog.input_words(inputs))
    else:
        model.write_words(prog.input_words(inputs))
    model.run()
    n = next(iter(inputs.values())).shape[0]
    return prog.read_tensors(defaultdict(int, model.ext) if prog.external else model.amem, n), model
