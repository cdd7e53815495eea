"""The SpMV engine: ``GSPMV``, PageRank's sparse matrix-vector product over one adjacency block in the macros'
MAC mode (docs/graph.md section 4).

A block is stored as one macro page in the push orientation: row ``r`` = source ``r`` of the block's source
segment, bit column ``c`` = destination ``c`` of its destination segment, one-bit weights. The sources'
contributions are up to :data:`SPMV_SLICES` unsigned 8-bit slices each; slice ``s`` of the segment is ``rl =
ceil(rows / lanes)`` activation words from ``x + s * rl`` (row ``r`` in lane ``r % lanes`` of word ``r //
lanes``). The engine::

    EXEC ..     reads the S * rl contribution words (S = slices_m1 + 1), one per cycle
    ...         one MAC operation per slice (wb = 1, ab = 8, unsigned), issued when its words are in and the
                macro is ready: y_s[c] = sum_r (rows[r] ? x_s[r] : 0) * W[page][r][c]
    ...         acc[c] += sum_s y_s[c] << 8 s, as the results arrive (acc kept across instructions)
    flush:      for each column c: amem[y + c] += acc[c] (read, add, write: one per cycle), then acc = 0

Why these three fields: a page may hold only the rows of the block that carry arcs (``LOAD`` of those rows
only), the others keeping an earlier block's bits, which ``rows`` masks; the host knows how many slices of
the contributions are non-zero (``slices_m1``); and the blocks of one destination segment, consecutive in
destination-major order, add into the same column sums, so only the last one writes them back (``flush``):
the 64 read-add-writes were 64 of the 109 cycles of every block. The sums wrap at the activation word's
width, as the words do. Cycles: :func:`gspmv_cycles` of the configuration, ``slices`` and ``flush``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import CimConfig
from ..golden.macro import LATENCY
from .engine import VectorTiming, engine_members
from .isa import LANE_BITS, addr_width, gspmv_layout, lanes
from .layouts import MacroMode, macro_op_layout, macro_result_layout

__all__ = ["SpmvEngine", "SPMV_TIMING", "SPMV_SLICES", "SPMV_AB", "gspmv_cycles", "slice_words"]

#: Unsigned 8-bit slices of a contribution (32 bits) and the activation precision of each MAC operation.
SPMV_SLICES = 4
SPMV_AB = 8

#: ``per_item``: cycles per contribution word read; ``extra``: from an operation's acceptance to its result in
#: the accumulators (the macro's operation register and ``LATENCY``) plus the last write's cycle.
#: :func:`gspmv_cycles` composes them; tests/test_graph_spmv.py measures it on the RTL.
SPMV_TIMING = VectorTiming(extra=1 + LATENCY, per_item=1)


def slice_words(cfg: CimConfig) -> int:
    """Activation words of one slice of a source segment: ``ceil(rows / lanes)``."""
    return -(-cfg.macro.rows // lanes(cfg))


def gspmv_cycles(cfg: CimConfig, slices: int = SPMV_SLICES, flush: bool = True) -> int:
    """Cycles of a ``GSPMV`` (EXEC to done inclusive): the contribution words read from EXEC on, slice ``s``'s
    operation accepted when its words are in and the macro is ready (``SPMV_AB`` cycles after the previous
    one), the results (done with the last one without ``flush``), then one read-add-write per column."""
    rl = slice_words(cfg)
    accept = -SPMV_AB
    for s in range(slices):
        accept = max((s + 1) * rl * SPMV_TIMING.per_item + 1, accept + SPMV_AB)
    last_result = accept + SPMV_AB + SPMV_TIMING.extra
    return last_result + cfg.macro.cols + 2 if flush else last_result + 1


class SpmvEngine(wiring.Component):
    """Executes ``GSPMV`` (module docstring).

    Members
    -------
    start, args, busy, done
        The shared engine members, ``args`` in :func:`~cimforge.gen.isa.gspmv_layout`.
    op : Out(stream.Signature(macro_op_layout)).array(n_macros)
        Macro operations (the fabric selects these while ``busy``).
    res_valid, res_y : In, array(n_macros)
        Each macro's result strobe and result lanes.
    rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read port (contribution words, then the accumulated words).
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
    """

    name = "spmv"
    TIMING = SPMV_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        mc, n, word = cfg.macro, cfg.fabric.n_macros, LANE_BITS * lanes(cfg)
        aw = addr_width(cfg)
        super().__init__({
            **engine_members(gspmv_layout(cfg)),
            "op": Out(stream.Signature(macro_op_layout(mc))).array(n),
            "res_valid": In(1).array(n),
            "res_y": In(macro_result_layout(mc)).array(n),
            "rd": In(memory.ReadPort.Signature(addr_width=aw, shape=word)),
            "act_w": In(memory.WritePort.Signature(addr_width=aw, shape=word)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, a = self.cfg, self.args
        mc, L, W = cfg.macro, lanes(cfg), LANE_BITS * lanes(cfg)
        R, C, S = mc.rows, mc.cols, SPMV_SLICES
        rl = slice_words(cfg)
        K = S * rl
        sb = max(1, (S - 1).bit_length())
        running = Signal()
        m.d.comb += self.busy.eq(running | self.start)
        n_sl = Signal(range(S + 1))
        m.d.comb += n_sl.eq(a.slices_m1 + 1)

        # contribution words: read i at cycle i (from EXEC), stored the cycle after
        i = Signal(range(K + 1))
        k_words = Signal(range(K + 1))
        m.d.comb += k_words.eq(Array([(s + 1) * rl for s in range(S)])[a.slices_m1])
        loading = Signal()
        m.d.comb += loading.eq(Mux(self.start, 1, running & (i < k_words)))
        xbuf = [Signal(W, name=f"xbuf{k}") for k in range(K)]
        ld_v, ld_i = Signal(), Signal(range(K))
        loaded = Signal(range(K + 1))
        m.d.sync += [ld_v.eq(loading), ld_i.eq(Mux(self.start, 0, i))]
        with m.If(self.start):
            m.d.sync += i.eq(1)
        with m.Elif(loading):
            m.d.sync += i.eq(i + 1)
        with m.If(ld_v):
            with m.Switch(ld_i):
                for k in range(K):
                    with m.Case(k):
                        m.d.sync += xbuf[k].eq(self.rd.data)
            m.d.sync += loaded.eq(loaded + 1)

        # one MAC operation per slice, in slice order; rows outside the mask take activation 0
        issued = Signal(range(S + 1))
        got = Signal(range(S + 1))
        slices = []
        for s in range(S):
            bytes_ = Cat(*xbuf[s * rl:(s + 1) * rl])
            slices.append(Cat(*(Mux(a.rows[r], bytes_[LANE_BITS * r:LANE_BITS * r + mc.max_ab], 0)
                                for r in range(R))))
        x_sel = Array(slices)[issued[:sb]]
        need = Array([(s + 1) * rl for s in range(S)] + [K])[issued]
        want = Signal()
        m.d.comb += want.eq(running & (issued < n_sl) & (loaded >= need))
        sel_ready = Array(o.ready for o in self.op)[a.macro]
        for k, o in enumerate(self.op):
            p = o.payload
            m.d.comb += [o.valid.eq(want & (a.macro == k)), p.mode.eq(MacroMode.MAC), p.page.eq(a.page),
                         p.wb_log2.eq(0), p.ab_m1.eq(SPMV_AB - 1), p.w_signed.eq(0), p.x_signed.eq(0),
                         p.skip.eq(0), p.x.as_value().eq(x_sel)]
        with m.If(want & sel_ready):
            m.d.sync += issued.eq(issued + 1)

        # results, shift-added per column into sums that wrap at the word width (as the words do)
        sel_valid = Array(self.res_valid)[a.macro]
        sel_y = Array(self.res_y)[a.macro]
        acc = [Signal(W, name=f"acc{c}") for c in range(C)]
        arrive = Signal()
        m.d.comb += arrive.eq(running & sel_valid & (got < n_sl))
        with m.If(arrive):
            m.d.sync += got.eq(got + 1)
            for c in range(C):
                lane = sel_y[c]
                m.d.sync += acc[c].eq(acc[c] + Array(lane << (LANE_BITS * s) for s in range(S))[got[:sb]])

        # flush: read, add, write each column's word, then clear the sums
        j = Signal(range(C + 1))
        w_v, w_j = Signal(), Signal(range(C))
        reading = Signal()
        m.d.comb += reading.eq(running & a.flush & (got == n_sl) & (j < C))
        m.d.comb += [self.rd.en.eq(1),
                     self.rd.addr.eq(Mux(self.start, a.x, Mux(got == n_sl, a.y + j, a.x + i)))]
        with m.If(reading):
            m.d.sync += j.eq(j + 1)
        m.d.sync += [w_v.eq(reading), w_j.eq(j)]
        m.d.comb += [self.act_w.en.eq(w_v), self.act_w.addr.eq(a.y + w_j),
                     self.act_w.data.eq(self.rd.data + Array(acc)[w_j])]
        finish = Signal()
        m.d.comb += finish.eq(Mux(a.flush, w_v & (w_j == C - 1), arrive & (got == n_sl - 1)))
        m.d.comb += self.done.eq(finish)
        with m.If(self.start):
            m.d.sync += [running.eq(1), loaded.eq(0), issued.eq(0), got.eq(0), j.eq(0)]
        with m.If(finish):
            m.d.sync += running.eq(0)
        with m.If(finish & a.flush):
            m.d.sync += [x.eq(0) for x in acc]
        return m
