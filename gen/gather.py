"""Hardware im2col: the gather unit that builds one macro's activation vector per operation.

One unit sits in front of each macro. For every slot of a ``MAC`` pass it walks the taps of its reduction tile
(a tile descriptor, :func:`cimforge.gen.isa.desc_layout`) for its current output position, reading one
activation word (up to ``lanes`` channels of one pixel) per cycle, and shifts the elements into an
``rows``-element register; a padded tap (outside the input) supplies the pass's ``zp_in`` code instead of a
read. The finished vector moves to a ready register that the macro operation takes, so the next tile is
gathered while the macro computes.

Element order: the register starts at zero and each step shifts its ``n`` elements in at the top, so after a
tile of ``T`` elements, element ``e`` of the walk sits at row ``rows - T + e`` (rows below hold zero). The
compiler places weights accordingly (:mod:`cimforge.compiler.tiling`).

Pipeline: stage A holds the walk state and addresses the activation memory; stage B receives the word a cycle
later and shifts it in. A unit whose finished vector cannot move to the ready register (the macro has not taken
the previous one) stalls both stages and holds its memory read.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..bits import exact_log2
from ..config import CimConfig
from .isa import CH, CNT, DIM, PAR, SMALL, addr_width, desc_layout, lanes, mac_layout, role_layout

__all__ = ["GatherUnit"]


class GatherUnit(wiring.Component):
    """The gather unit of macro ``index``.

    Members
    -------
    args : In(mac_layout)
        The pass (stable while it runs).
    pos_init, pos_step, pos_bstep : In(1)
        Start of a pass (the unit latches its role, read from ``role_base + index``, and resets its position
        to 0) / advance the position by one / by ``b`` positions.
    bi, kk, nn, en : Out
        The unit's role in the pass (position group, K part, N part, takes part).
    pos_valid : Out(1)
        The current position is inside the pass (``p < npos``).
    go : In(1)
        Start the next tile (at most when ``idle_next``); ``tile_active`` says whether this unit has one;
        its descriptor is read through ``desc_rd``.
    desc_rd : In(memory.ReadPort.Signature(addr_width, desc_layout))
        Descriptor memory read port (asynchronous, ``en`` unused): the role table entry at ``pos_init``,
        else the tile ``desc_base + g_kbase + kk``.
    g_kbase : In
        First K tile of the reduction round about to start (``round * ki``).
    idle_next : Out(1)
        Stage A is idle or presents its last step (a ``go`` is welcome).
    stall : Out(1)
    act_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read port (synchronous: data the cycle after the address); the unit drives it.
    x : Out(ArrayLayout(unsigned(8), rows))
        The ready vector; ``full`` says it holds one; ``take`` (the macro accepted it) empties it.
    """

    def __init__(self, cfg: CimConfig, index: int):
        self.cfg, self.index = cfg, index
        self.lanes = lanes(cfg)
        rows = cfg.macro.rows
        aw = addr_width(cfg)
        super().__init__({
            "args": In(mac_layout(cfg)),
            "pos_init": In(1), "pos_step": In(1), "pos_bstep": In(1), "pos_valid": Out(1),
            "bi": Out(PAR), "kk": Out(PAR), "nn": Out(PAR), "en": Out(1),
            "go": In(1), "tile_active": In(1), "g_kbase": In(CNT),
            "desc_rd": In(memory.ReadPort.Signature(addr_width=mac_layout(cfg)["desc_base"].shape.width,
                                                    shape=desc_layout(cfg))),
            "idle_next": Out(1), "stall": Out(1),
            "act_rd": In(memory.ReadPort.Signature(addr_width=aw, shape=8 * self.lanes)),
            "x": Out(data.ArrayLayout(unsigned(8), rows)), "full": Out(1), "take": In(1),
        })
        # an asynchronous port has no enable: tied to 1, as amaranth.lib.memory ties a comb port's
        self.desc_rd.en = Const(1)

    def elaborate(self, platform):
        m = Module()
        cfg, a, L = self.cfg, self.args, self.lanes
        rows = cfg.macro.rows
        aw = addr_width(cfg) + 2
        # --- role: latched from the pass's role table at its start ---------------------------------------
        desc = self.desc_rd.data
        role = data.View(role_layout(cfg), desc.as_value()[:role_layout(cfg).size])
        bi, kk, nn, en = (Signal(PAR, name="bi"), Signal(PAR, name="kk"), Signal(PAR, name="nn"),
                          Signal(name="en"))
        with m.If(self.pos_init):
            m.d.sync += [bi.eq(role.bi), kk.eq(role.kk), nn.eq(role.nn), en.eq(role.en)]
        m.d.comb += [self.bi.eq(bi), self.kk.eq(kk), self.nn.eq(nn), self.en.eq(en)]
        m.d.comb += self.desc_rd.addr.eq(Mux(self.pos_init, a.role_base + self.index, a.desc_base + self.g_kbase + kk))

        # --- output position: index, column, top-left input pixel and its address -------------------------
        # (positions run over every image of the pass: past the last output row the window returns to the
        # top of the next image, whose tensor is img_delta further on)
        p = Signal(16)
        ox = Signal(DIM)
        oy = Signal(DIM)
        iy0 = Signal(signed(DIM + 3))
        ix0 = Signal(signed(DIM + 3))
        pos_addr = Signal(signed(aw))
        m.d.comb += self.pos_valid.eq(p < a.npos)
        step_b = self.pos_bstep
        d_ox = Signal(DIM + 1)
        m.d.comb += d_ox.eq(Mux(step_b, ox + a.br, ox + 1))
        wrap = Signal()
        m.d.comb += wrap.eq(d_ox >= a.ow)
        d_oy = Signal(DIM + 2)
        m.d.comb += d_oy.eq(oy + Mux(step_b, a.bq, 0) + wrap)
        iwrap = Signal()
        m.d.comb += iwrap.eq(d_oy >= a.oh)
        d_iy = Signal(signed(DIM + SMALL + 2))
        d_ix = Signal(signed(DIM + 4))
        d_addr = Signal(signed(aw))
        m.d.comb += [
            d_iy.eq(Mux(step_b, a.bq * a.sh, 0) + Mux(wrap, a.sh, 0) - Mux(iwrap, a.oh * a.sh, 0)),
            d_ix.eq(Mux(step_b, a.br * a.sw, a.sw) - Mux(wrap, a.ow * a.sw, 0)),
            d_addr.eq(Mux(step_b, a.pos_bstep + a.img_bstep, a.pos_ux) + Mux(wrap, a.pos_wrap, 0)
                      + Mux(iwrap, a.img_delta, 0)),
        ]
        with m.If(self.pos_init):
            m.d.sync += [p.eq(0), ox.eq(0), oy.eq(0), iy0.eq(-a.pt), ix0.eq(-a.pl), pos_addr.eq(a.pos0)]
        with m.Elif(self.pos_step | self.pos_bstep):
            m.d.sync += [
                p.eq(p + Mux(step_b, a.b, 1)),
                ox.eq(Mux(wrap, d_ox - a.ow, d_ox)), oy.eq(Mux(iwrap, d_oy - a.oh, d_oy)),
                iy0.eq(iy0 + d_iy), ix0.eq(ix0 + d_ix), pos_addr.eq(pos_addr + d_addr),
            ]

        # --- stage A: walk the tile's taps and channel words ---------------------------------------------
        active = Signal()
        c = Signal(CH)
        rem = Signal(range(rows + 1))
        ky = Signal(DIM)
        kx = Signal(DIM)
        iy = Signal(signed(DIM + 5))
        ix = Signal(signed(DIM + 5))
        row_ix = Signal(signed(DIM + 5))  # ix of the first tap of a kernel row at this position
        tap0 = Signal(signed(aw))
        addr = Signal(signed(aw))
        first = Signal()

        n_ch = Signal(CH)
        m.d.comb += n_ch.eq(a.cin - c)
        n = Signal(range(L + 1))
        lim = Signal(CH)
        m.d.comb += lim.eq(Mux(n_ch < rem, n_ch, rem))
        m.d.comb += n.eq(Mux(lim < L, lim, L))
        tap_end = Signal()
        last = Signal()
        oob = Signal()
        m.d.comb += [
            tap_end.eq(n == n_ch),
            last.eq(n == rem),
            # a row-packed step is one image row: only the row can be outside; columns are lanes (stage B)
            oob.eq((iy < 0) | (iy >= a.in_h) | (~a.rowpack & ((ix < 0) | (ix >= a.in_w)))),
        ]

        stall = Signal()
        m.d.comb += [self.stall.eq(stall), self.idle_next.eq(~active | last),
                     self.act_rd.addr.eq(addr[:addr_width(self.cfg)]), self.act_rd.en.eq(~stall)]

        with m.If(~stall):
            with m.If(self.go):
                d = desc
                start = Signal(signed(aw))
                m.d.comb += start.eq(pos_addr + d.off0)
                m.d.sync += [
                    active.eq(self.tile_active), c.eq(d.c0), rem.eq(d.elems), ky.eq(d.ky0), kx.eq(d.kx0),
                    iy.eq(iy0 + d.dy0), ix.eq(ix0 + d.dx0), row_ix.eq(ix0), tap0.eq(start),
                    addr.eq(start + self._cw0(m, d)), first.eq(1),
                ]
            with m.Elif(active):
                m.d.sync += [rem.eq(rem - n), first.eq(0)]
                with m.If(last):
                    m.d.sync += active.eq(0)
                with m.If(tap_end):
                    m.d.sync += c.eq(0)
                    with m.If(kx == a.kw - 1):
                        m.d.sync += [kx.eq(0), ky.eq(ky + 1), ix.eq(row_ix), iy.eq(iy + a.dh),
                                     tap0.eq(tap0 + a.ky_inc), addr.eq(tap0 + a.ky_inc)]
                    with m.Else():
                        m.d.sync += [kx.eq(kx + 1), ix.eq(ix + a.dw),
                                     tap0.eq(tap0 + a.kx_inc), addr.eq(tap0 + a.kx_inc)]
                with m.Else():
                    m.d.sync += [c.eq(c + n), addr.eq(addr + 1)]

        # --- stage B: shift the word's elements into the vector ------------------------------------------
        b_valid = Signal()
        b_n = Signal(range(L + 1))
        b_oob = Signal()
        b_first = Signal()
        b_last = Signal()
        b_ix = Signal(signed(DIM + 5))
        with m.If(~stall):
            m.d.sync += [b_valid.eq(active), b_n.eq(n), b_oob.eq(oob), b_first.eq(first), b_last.eq(last),
                         b_ix.eq(ix)]
        zp_word = Cat(*([a.zp_in] * L))
        # row-packed input: the lanes ix .. ix+L-1 of [zp x L | row (lanes >= in_w: zp) | zp x L]
        rd_data = self.act_rd.data
        row = Cat(*[Mux(a.in_w > x, rd_data[8 * x:8 * x + 8], a.zp_in) for x in range(L)])
        sel = Signal(range(2 * L + 1))
        m.d.comb += sel.eq(b_ix + L)  # -L < ix < L (padding < kernel width <= L, ix < in_w <= L)
        window = Signal(8 * L)
        m.d.comb += window.eq(Cat(zp_word, row, zp_word).bit_select(sel * 8, 8 * L))
        word = Signal(8 * L)
        m.d.comb += word.eq(Mux(b_oob, zp_word, Mux(a.rowpack, window, rd_data)))
        x_asm = Signal(8 * rows, reset_less=True)
        src = Signal(8 * rows)
        m.d.comb += src.eq(Mux(b_first, 0, x_asm))
        shifted = Signal(8 * rows)
        with m.Switch(b_n):
            for k in range(1, min(L, rows) + 1):
                with m.Case(k):
                    m.d.comb += shifted.eq(Cat(src[8 * k:], word[:8 * k]))
            with m.Default():
                m.d.comb += shifted.eq(src)
        x_rdy = Signal(8 * rows, reset_less=True)
        full = Signal()
        m.d.comb += stall.eq(b_valid & b_last & full & ~self.take)
        with m.If(b_valid & ~stall):
            with m.If(b_last):
                m.d.sync += x_rdy.eq(shifted)
            with m.Else():
                m.d.sync += x_asm.eq(shifted)
        with m.If(b_valid & b_last & ~stall):
            m.d.sync += full.eq(1)
        with m.Elif(self.take):
            m.d.sync += full.eq(0)
        m.d.comb += [self.full.eq(full), self.x.as_value().eq(x_rdy)]
        return m

    def _cw0(self, m: Module, d):
        """The tile's first channel word (``c0 // lanes``), a descriptor-derived constant division."""
        L = self.lanes
        if L & (L - 1) == 0:
            return d.c0 >> exact_log2(L)
        cw0 = Signal(CH, name="cw0")
        m.d.comb += cw0.eq(d.c0 // L)
        return cw0
