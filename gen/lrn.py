"""The ``LRN`` engine: local response normalisation across channels, one channel per cycle.

Channels sit in the lanes of a pixel's consecutive activation words (docs/fabric.md section 2), so the window
crosses words. The engine streams a pixel's channels ``j = 0 .. channels + hi - 1`` (``hi = size // 2``; codes
past the last channel enter as 0) through a delay line of ``d = x - zp_in`` and keeps the running window sum
``S_c = S_{c-1} + d_{c+hi}**2 - d_{c-lo-1}**2``; each channel then looks its normaliser up in the layer's table
(parameter memory, :func:`cimforge.gen.isa.lrn_table_layout`), interpolates, multiplies and rounds exactly as
:mod:`cimforge.golden.lrn` does, and a word is written per ``lanes`` channels. Pixels follow one another with no
gap: the delay line's older entries are masked at a pixel's first channels instead of cleared.

Pipeline: A address (activation word of channel ``j``), B lane select, delay line and window sum, C table
address, D interpolation, E product, rounding and clamp, F write (docs/lrn.md).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring

from ..config import CimConfig
from .engine import VectorTiming
from .isa import CH, CW, LRN_SIZE_MAX, POS, addr_width, lanes, lrn_layout, lrn_table_layout
from .requant import clamp_code
from .vector import table_engine_members

__all__ = ["LrnEngine", "LRN_TIMING", "lrn_items"]

#: Cycles from a channel's read address to its word's write: B, C, D, E registered, the write in F.
_LRN_PIPELINE = 5
#: ``LRN``: one channel (or trailing window step) per cycle, plus the start register, the pipeline and done.
LRN_TIMING = VectorTiming(extra=1 + _LRN_PIPELINE + 1, per_item=1)


def _divmod(v, n: int) -> tuple:
    """``(v // n, v % n)`` of a non-negative value by a constant: bit slices when ``n`` is a power of two (the
    table's entries per word always are, the lanes on every preset), else a constant division."""
    if n & (n - 1):
        return v // n, v % n
    b = n.bit_length() - 1
    return v >> b, v[:b] if b else 0


def lrn_items(npos: int, channels: int, size: int) -> int:
    """Cycles of the stream: ``channels + size // 2`` per pixel (the window's leading channels past the last)."""
    return npos * (channels + size // 2)


class LrnEngine(wiring.Component):
    """Executes ``LRN`` (:func:`cimforge.gen.isa.lrn_layout`).

    Members
    -------
    start, args, busy, done
        The shared engine members (:func:`~cimforge.gen.engine.engine_members`).
    act_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read port (synchronous).
    param_rd : In(memory.ReadPort.Signature(param address bits, lrn_table_layout))
        Parameter memory read port (the table; synchronous).
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
        Activation memory write port.
    """

    name = "lrn"
    TIMING = LRN_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        super().__init__(table_engine_members(cfg, lrn_layout(cfg), lrn_table_layout(cfg)))

    def elaborate(self, platform):
        m = Module()
        a, L, aw = self.args, lanes(self.cfg), addr_width(self.cfg)
        per_word = lrn_table_layout(self.cfg).length
        hi = Signal(4)
        m.d.comb += hi.eq(a.size >> 1)

        # A: the stream counters (pixel p, channel j = word w, lane l) address channel j's word
        running = Signal()
        p, j, w, lane = Signal(POS), Signal(CH + 1), Signal(CW), Signal(range(max(L, 2)))
        pix = Signal(aw)  # p * cw, kept by addition
        m.d.comb += [self.busy.eq(running), self.act_rd.addr.eq(a.in_base + pix + w), self.act_rd.en.eq(1)]
        last_j = Signal()
        m.d.comb += last_j.eq(j == a.channels + hi - 1)
        with m.If(running):
            m.d.sync += [j.eq(j + 1), lane.eq(lane + 1)]
            with m.If(lane == L - 1):
                m.d.sync += [lane.eq(0), w.eq(w + 1)]
            with m.If(last_j):
                m.d.sync += [j.eq(0), lane.eq(0), w.eq(0), p.eq(p + 1), pix.eq(pix + a.cw)]
                with m.If(p == a.npos - 1):
                    m.d.sync += running.eq(0)
        b_valid, b_feed = Signal(), Signal()
        b_lane, b_j = Signal.like(lane), Signal.like(j)
        b_pix = Signal(aw)
        m.d.sync += [b_valid.eq(running), b_feed.eq(j < a.channels), b_lane.eq(lane), b_j.eq(j), b_pix.eq(pix)]

        # B: the entering code, the delay line (t[0] enters, t[i] entered i cycles ago) and the window sum
        raw = Signal(8)
        with m.Switch(b_lane):
            for l in range(L):
                with m.Case(l):
                    m.d.comb += raw.eq(self.act_rd.data[8 * l:8 * l + 8])
        x = Signal(signed(10))
        m.d.comb += x.eq(Mux(a.x_signed, raw.as_signed(), raw.as_unsigned()))
        d_in = Signal(signed(10))
        m.d.comb += d_in.eq(Mux(b_feed, x - a.zp_in, 0))
        line = [Signal(signed(10), name=f"dl{i}") for i in range(LRN_SIZE_MAX)]
        taps = [d_in] + line
        with m.If(b_valid):
            m.d.sync += [line[0].eq(d_in)] + [line[i].eq(line[i - 1]) for i in range(1, LRN_SIZE_MAX)]
        leave, centre = Signal(signed(10)), Signal(signed(10))
        for i in range(1, LRN_SIZE_MAX + 1):
            with m.If(a.size == i):
                m.d.comb += leave.eq(Mux(b_j >= i, taps[i], 0))
        for i in range(LRN_SIZE_MAX // 2 + 1):
            with m.If(hi == i):
                m.d.comb += centre.eq(taps[i])
        s_bits = (LRN_SIZE_MAX * 255 * 255).bit_length()
        s_run = Signal(unsigned(s_bits))
        s_new = Signal(signed(s_bits + 2))
        m.d.comb += s_new.eq(Mux(b_j == 0, 0, s_run) + d_in * d_in - leave * leave)
        with m.If(b_valid):
            m.d.sync += s_run.eq(s_new)
        c = Signal(signed(CH + 2))
        m.d.comb += c.eq(b_j - hi)
        c_word, c_lane_of = _divmod(c.as_unsigned(), L)
        c_valid, c_d, c_s = Signal(), Signal(signed(10)), Signal(unsigned(s_bits))
        c_lane, c_last = Signal(range(max(L, 2))), Signal()
        c_addr = Signal(aw)
        m.d.sync += [c_valid.eq(b_valid & (c >= 0)), c_d.eq(centre), c_s.eq(s_new[:s_bits]),
                     c_lane.eq(c_lane_of), c_last.eq((c_lane_of == L - 1) | (c == a.channels - 1)),
                     c_addr.eq(a.out_base + b_pix + c_word)]

        # C: the table entry of S (its word; the slot and the fraction f go along)
        k = Signal(unsigned(s_bits))
        m.d.comb += k.eq(c_s >> a.shift)
        k_word, k_slot = _divmod(k, per_word)
        m.d.comb += [self.param_rd.addr.eq(a.table_base + k_word), self.param_rd.en.eq(1)]
        d_valid, d_d, d_last = Signal(), Signal(signed(10)), Signal()
        d_f = Signal(unsigned(s_bits))
        d_slot = Signal(range(max(per_word, 2)))
        d_lane, d_addr = Signal.like(c_lane), Signal(aw)
        m.d.sync += [d_valid.eq(c_valid), d_d.eq(c_d), d_last.eq(c_last), d_lane.eq(c_lane), d_addr.eq(c_addr),
                     d_f.eq(c_s & ((Const(1, 1) << a.shift) - 1)), d_slot.eq(k_slot)]

        # D: interpolation g = G + ((D*f + 2**(shift-1)) >> shift)
        g, dg = Signal(signed(32)), Signal(signed(32))
        with m.Switch(d_slot):
            for sl in range(per_word):
                with m.Case(sl):
                    m.d.comb += [g.eq(self.param_rd.data[sl].g), dg.eq(self.param_rd.data[sl].dg)]
        step = Signal(signed(32 + s_bits + 2))
        m.d.comb += step.eq((dg * d_f + ((Const(1, 1) << a.shift) >> 1)) >> a.shift)
        e_valid, e_d, e_last = Signal(), Signal(signed(10)), Signal()
        e_g = Signal(signed(34))
        e_lane, e_addr = Signal.like(c_lane), Signal(aw)
        m.d.sync += [e_valid.eq(d_valid), e_d.eq(d_d), e_last.eq(d_last), e_lane.eq(d_lane), e_addr.eq(d_addr),
                     e_g.eq(g + step)]

        # E: y = clamp(zp_out + ((d * g + 2**(frac-1)) >> frac))
        prod = Signal(signed(66))
        m.d.comb += prod.eq((e_d * e_g + ((Const(1, 1) << a.frac) >> 1)) >> a.frac)
        y = Signal(signed(34))
        m.d.comb += y.eq(Mux(prod > (1 << 31), 1 << 31, Mux(prod < -(1 << 31), -(1 << 31), prod)))
        code = clamp_code(m, y, a.zp_out, a.act_min, a.act_max, "lrn_code")
        f_valid, f_last = Signal(), Signal()
        f_code = Signal(signed(10))
        f_lane, f_addr = Signal.like(c_lane), Signal(aw)
        m.d.sync += [f_valid.eq(e_valid), f_last.eq(e_last), f_lane.eq(e_lane), f_addr.eq(e_addr), f_code.eq(code)]

        # F: the word's lanes gather in buf (0 past the last channel); written with its last lane
        buf = [Signal(8, name=f"buf{l}") for l in range(L)]
        with m.If(f_valid):
            for l in range(L):
                with m.If(f_last):
                    m.d.sync += buf[l].eq(0)
                with m.Elif(f_lane == l):
                    m.d.sync += buf[l].eq(f_code[:8])
        m.d.comb += [self.act_w.en.eq(f_valid & f_last), self.act_w.addr.eq(f_addr),
                     self.act_w.data.eq(Cat(Mux(f_lane == l, f_code[:8], buf[l]) for l in range(L)))]

        started, finished = Signal(), Signal()
        m.d.comb += finished.eq(~running & ~b_valid & ~c_valid & ~d_valid & ~e_valid & ~f_valid)
        with m.If(self.start):
            m.d.sync += [running.eq(1), started.eq(1), p.eq(0), j.eq(0), w.eq(0), lane.eq(0), pix.eq(0)]
        with m.If(started & finished):
            m.d.sync += started.eq(0)
        m.d.comb += self.done.eq(started & finished)
        return m
