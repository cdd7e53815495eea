"""The graph engine: ``GBFS``, one BFS frontier expansion over one adjacency block in the macro's BITWISE mode.

A block is stored as one macro page (docs/graph.md section 2): row ``r`` = destination ``r`` of the block's
destination segment, bit column ``c`` = source ``c`` of its source segment. For every row ``r`` in the
instruction's ``rows`` mask (rows holding an arc whose destination is not yet visited: the visited mask is
applied by the host's compiler when it writes the round's program) the engine issues one BITWISE operation
``AND(frontier word, W[page][r])`` on macro ``macro``, one per cycle; a destination is reached when the
operation's total popcount is non-zero. The reached bits are OR-ed into the next-frontier word at ``dst``::

    EXEC    read the frontier word (src) and the next-frontier word (dst)
    +1 ..   one BITWISE AND per set bit of ``rows``, lowest row first, back to back
    ...     results arrive in issue order (the macro's LATENCY), reached |= (total != 0) << row
    last    write dst = old | reached, done

An empty ``rows`` mask only reads and writes back ``dst``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import CimConfig
from ..golden.macro import LATENCY
from .engine import VectorTiming, engine_members
from .isa import LANE_BITS, addr_width, gbfs_layout, lanes
from .layouts import BitOp, MacroMode, macro_op_layout
from .macro import CimMacro

__all__ = ["GraphEngine", "GBFS_TIMING", "gbfs_cycles", "gbfs_layout", "gbfs_fields"]

#: ``GBFS``: one cycle per row operation, plus: the frontier read (1), from the last operation's acceptance to
#: its result strobe (the macro's operation register, one BITWISE compute cycle and its LATENCY: 3), the
#: result register and the write-back/done cycle (1). An empty ``rows`` mask takes 3 cycles (read, latch,
#: write). tests/test_graph_engine.py measures both on the RTL.
GBFS_TIMING = VectorTiming(extra=1 + (1 + 1 + LATENCY) + 1, per_item=1)


def gbfs_cycles(rows: int) -> int:
    """Cycles of a ``GBFS`` instruction (EXEC to done inclusive) with row mask ``rows``."""
    k = bin(rows).count("1")
    return k * GBFS_TIMING.per_item + GBFS_TIMING.extra if k else 3


def gbfs_fields(cfg: CimConfig, *, macro: int, page: int, rows: int, src: int, dst: int) -> dict:
    """The ``GBFS`` argument values, checked against the configuration."""
    if not 0 <= macro < cfg.fabric.n_macros or not 0 <= page < cfg.macro.pages:
        raise ValueError(f"GBFS macro {macro} page {page}: allowed 0..{cfg.fabric.n_macros - 1}, "
                         f"0..{cfg.macro.pages - 1}")
    if not 0 <= rows < 1 << cfg.macro.rows:
        raise ValueError(f"GBFS rows mask {rows:#x} wider than {cfg.macro.rows} rows")
    return {"macro": macro, "page": page, "rows": rows, "src": src, "dst": dst}


def _lowest(m: Module, mask, width: int, name: str):
    """Index of the lowest set bit of ``mask`` (0 when none): a priority encoder."""
    idx = Signal(range(max(2, width)), name=name)
    for r in reversed(range(width)):
        with m.If(mask[r]):
            m.d.comb += idx.eq(r)
    return idx


class GraphEngine(wiring.Component):
    """Executes ``GBFS`` (module docstring) on the macros' BITWISE mode.

    Members
    -------
    start, args, busy, done
        The shared engine members (:func:`~cimforge.gen.engine.engine_members`), ``args`` in
        :func:`gbfs_layout`.
    op : Out(stream.Signature(macro_op_layout)).array(n_macros)
        Macro operations (the fabric selects these over the MAC engine's while ``busy``).
    res_valid, res_total : In, array(n_macros)
        Each macro's result strobe and total popcount.
    src_rd, dst_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read ports (synchronous).
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
        Activation memory write port.
    """

    name = "graph"
    TIMING = GBFS_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        mc, n, word = cfg.macro, cfg.fabric.n_macros, LANE_BITS * lanes(cfg)
        if mc.rows > word or mc.cols > word:
            raise ValueError(f"GBFS needs rows and cols <= {word} (an activation word), got {mc.rows} x {mc.cols}")
        port = memory.ReadPort.Signature(addr_width=addr_width(cfg), shape=word)
        super().__init__({
            **engine_members(gbfs_layout(cfg)),
            "op": Out(stream.Signature(macro_op_layout(mc))).array(n),
            "res_valid": In(1).array(n),
            "res_total": In(CimMacro.signature_for(mc).members["res_total"].shape).array(n),
            "src_rd": In(port), "dst_rd": In(port),
            "act_w": In(memory.WritePort.Signature(addr_width=addr_width(cfg), shape=word)),
        })

    def elaborate(self, platform):
        m = Module()
        a, mc, n = self.args, self.cfg.macro, self.cfg.fabric.n_macros
        R = mc.rows
        m.d.comb += [self.src_rd.addr.eq(a.src), self.src_rd.en.eq(1),
                     self.dst_rd.addr.eq(a.dst), self.dst_rd.en.eq(1)]
        started = Signal()      # between EXEC and done
        issuing = Signal()      # the words are read: rows are issued from ``pending``
        pending = Signal(R)     # rows still to issue
        waiting = Signal(R)     # rows issued or to issue whose results have not arrived, in row order
        old = Signal(LANE_BITS * lanes(self.cfg))
        reached = Signal(R)
        # busy from the EXEC cycle on: the fabric gives the shared activation read ports to the busy engine, and
        # the frontier and next-frontier words are addressed in EXEC (their data is used the cycle after)
        m.d.comb += self.busy.eq(started | self.start)

        row = _lowest(m, pending, R, "issue_row")
        res_row = _lowest(m, waiting, R, "result_row")
        sel_ready = Array(o.ready for o in self.op)[a.macro]
        sel_valid = Array(self.res_valid)[a.macro]
        sel_total = Array(self.res_total)[a.macro]
        want = Signal()
        m.d.comb += want.eq(started & pending.any())
        for i, o in enumerate(self.op):
            m.d.comb += [o.valid.eq(want & (a.macro == i)), o.payload.mode.eq(MacroMode.BITWISE),
                         o.payload.page.eq(a.page), o.payload.row.eq(row), o.payload.bop.eq(BitOp.AND),
                         o.payload.word.eq(self.src_rd.data[:mc.cols])]
        with m.If(want & sel_ready):
            m.d.sync += pending.eq(pending & ~(Const(1, R) << row)[:R])
        with m.If(started & sel_valid):
            m.d.sync += waiting.eq(waiting & ~(Const(1, R) << res_row)[:R])
            with m.If(sel_total != 0):
                m.d.sync += reached.eq(reached | (Const(1, R) << res_row)[:R])

        finish = Signal()
        m.d.comb += finish.eq(issuing & ~waiting.any())
        m.d.comb += [self.act_w.addr.eq(a.dst), self.act_w.data.eq(old | reached),
                     self.act_w.en.eq(finish), self.done.eq(finish)]
        with m.If(self.start):
            m.d.sync += [started.eq(1), issuing.eq(0), pending.eq(a.rows), waiting.eq(a.rows), reached.eq(0)]
        with m.Elif(started & ~issuing):
            m.d.sync += [issuing.eq(1), old.eq(self.dst_rd.data)]
        with m.If(finish):
            m.d.sync += [started.eq(0), issuing.eq(0)]
        return m
