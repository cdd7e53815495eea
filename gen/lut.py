"""The ``LUT`` engine: an element-wise table of 256 output codes, one activation word per cycle.

An element-wise function of a code (Sigmoid, Tanh, HardSwish, LeakyRelu, ``x * Sigmoid(x)``, ...) is a table
of its 256 results (:class:`cimforge.golden.ir.Lut`). The engine first copies the table from the parameter
memory into registers (:func:`cimforge.gen.isa.lut_table_words` words, one per cycle), then streams the input:
each word's lanes index the registers at once, so a word is looked up per cycle, as fast as the ``EW`` engine
copies one. Lanes past ``channels`` in a pixel's last word are written 0, as the other engines leave them.

A function whose constants vary by channel (``PRelu``'s per-channel slope) has a table per channel, and would
need ``lanes`` tables of registers to look a word up in one cycle. The engine instead runs ``per_channel``
instructions channel by channel: load channel ``c``'s table, then rewrite lane ``c % lanes`` of word
``c // lanes`` of every pixel (a read-modify-write: the word's other lanes are written back as read). That costs
``lanes`` times the cycles of one table, on layers that are a small part of a network's work, for no registers.

Pipeline: the table load (address, capture), then A address (pixel ``p``, word ``w``), B look-up and write.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring

from ..config import CimConfig
from .engine import VectorTiming
from .isa import CH, CW, LANE_BITS, POS, addr_width, lanes, lut_layout, lut_table_layout, lut_table_words
from .vector import table_engine_members

__all__ = ["LutEngine", "LUT_TIMING", "lut_items"]

#: ``LUT``: one word per cycle, plus the table's words, the start register, the last table word's capture, the
#: look-up stage and done (``per_item`` per word; the table's words come on top, :func:`lut_items`).
LUT_TIMING = VectorTiming(extra=3, per_item=1)


def lut_items(cfg: CimConfig, words: int, tables: int = 1) -> int:
    """Cycles of a ``LUT`` beyond ``extra``: each of the ``tables`` tables' parameter words (``per_channel``: one
    per channel), and ``words`` activation words (``per_channel``: ``npos`` per channel)."""
    return tables * lut_table_words(cfg) + words


class LutEngine(wiring.Component):
    """Executes ``LUT`` (:func:`cimforge.gen.isa.lut_layout`).

    Members
    -------
    start, args, busy, done
        The shared engine members (:func:`~cimforge.gen.engine.engine_members`).
    act_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read port (synchronous).
    param_rd : In(memory.ReadPort.Signature(param address bits, lut_table_layout))
        Parameter memory read port (the table; synchronous).
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
        Activation memory write port.
    """

    name = "lut"
    TIMING = LUT_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        super().__init__(table_engine_members(cfg, lut_layout(cfg), lut_table_layout(cfg)))

    def elaborate(self, platform):
        m = Module()
        a, L, aw = self.args, lanes(self.cfg), addr_width(self.cfg)
        per_word, n_words = lut_table_layout(self.cfg).length, lut_table_words(self.cfg)

        # the table: word t of the parameter memory, from tbase (table_base; per_channel: channel c's table) on,
        # into entries t*per_word ..
        table = [Signal(8, name=f"t{b}") for b in range(256)]
        loading, t = Signal(), Signal(range(max(n_words, 2)))
        tbase = Signal.like(a.table_base)
        cap_valid, cap_t = Signal(), Signal.like(t)
        m.d.comb += [self.param_rd.addr.eq(tbase + t), self.param_rd.en.eq(1)]
        m.d.sync += [cap_valid.eq(loading), cap_t.eq(t)]
        running = Signal()
        with m.If(loading):
            m.d.sync += t.eq(t + 1)
            with m.If(t == n_words - 1):
                m.d.sync += [loading.eq(0), running.eq(1)]
        with m.If(cap_valid):
            for w in range(n_words):
                with m.If(cap_t == w):
                    m.d.sync += [table[b].eq(self.param_rd.data[b - w * per_word])
                                 for b in range(w * per_word, min(256, (w + 1) * per_word))]
        m.d.comb += self.busy.eq(loading | running)

        # A: the stream counters address pixel p's word w (per_channel: word cw_c of channel c, lane c_lane; a
        # word's first channel reads the input, the others the output its earlier channels wrote)
        p, w = Signal(POS), Signal(CW)
        c, c_lane, c_word = Signal(CH), Signal(range(max(L, 2))), Signal(CW)
        pc = a.per_channel
        src = Mux(pc & (c_lane != 0), a.out_base, a.in_base)
        m.d.comb += [self.act_rd.addr.eq(src + p * a.cw + Mux(pc, c_word, w)), self.act_rd.en.eq(1)]
        with m.If(running & ~pc):
            m.d.sync += w.eq(w + 1)
            with m.If(w == a.cw - 1):
                m.d.sync += [w.eq(0), p.eq(p + 1)]
                with m.If(p == a.npos - 1):
                    m.d.sync += running.eq(0)
        with m.If(running & pc):
            m.d.sync += p.eq(p + 1)
            with m.If(p == a.npos - 1):
                # the channel's last pixel: the next channel's table, or the end
                m.d.sync += [running.eq(0), p.eq(0)]
                with m.If(c != a.channels - 1):
                    m.d.sync += [c.eq(c + 1), loading.eq(1), t.eq(0), tbase.eq(tbase + n_words)]
                    with m.If(c_lane == L - 1):
                        m.d.sync += [c_lane.eq(0), c_word.eq(c_word + 1)]
                    with m.Else():
                        m.d.sync += c_lane.eq(c_lane + 1)
        b_valid = Signal()
        b_addr = Signal(aw, reset_less=True)
        b_live = [Signal(name=f"live{l}", reset_less=True) for l in range(L)]  # lane below the channel count
        b_sel = [Signal(name=f"sel{l}", reset_less=True) for l in range(L)]  # lane looked up (else kept as read)
        first = Signal(CH + 1)
        m.d.comb += first.eq(w * L)
        m.d.sync += [b_valid.eq(running), b_addr.eq(a.out_base + p * a.cw + Mux(pc, c_word, w))]
        m.d.sync += [b_live[l].eq(pc | (first + l < a.channels)) for l in range(L)]
        m.d.sync += [b_sel[l].eq(~pc | (c_lane == l)) for l in range(L)]

        # B: every selected lane's code indexes the table; the word is written
        lookup = Array(table)
        lane_codes = [self.act_rd.data[LANE_BITS * l:LANE_BITS * (l + 1)] for l in range(L)]
        codes = [Mux(b_live[l], Mux(b_sel[l], lookup[lane_codes[l]], lane_codes[l]), 0) for l in range(L)]
        m.d.comb += [self.act_w.en.eq(b_valid), self.act_w.addr.eq(b_addr), self.act_w.data.eq(Cat(*codes))]

        started, finished = Signal(), Signal()
        m.d.comb += finished.eq(~loading & ~cap_valid & ~running & ~b_valid)
        with m.If(self.start):
            m.d.sync += [loading.eq(1), started.eq(1), t.eq(0), p.eq(0), w.eq(0), c.eq(0), c_lane.eq(0),
                         c_word.eq(0), tbase.eq(a.table_base)]
        with m.If(started & finished):
            m.d.sync += started.eq(0)
        m.d.comb += self.done.eq(started & finished)
        return m
