"""The relaxation engine: ``GRELAX``, one add-then-minimum pass over a block's arcs (Bellman-Ford SSSP, and
connected components by minimum-label propagation with weight 0; docs/graph.md section 4).

A block's arcs are activation words (:func:`relax_arc_layout`: source index, destination index, weight); the
vertex values are one per activation word, unsigned :data:`RELAX_VALUE_BITS`-bit in the low bits, in two
arrays: ``old`` (the values of the previous round, read only) and ``new`` (this round's, the host starts it as
a copy of ``old``). For each arc ``u -> v`` of ``count`` arcs from word ``arcs``::

    new[v] = min(new[v], sat(old[u] + w))        sat: saturating at INF = 2**RELAX_VALUE_BITS - 1

one arc per cycle through three stages: read the arc word; read ``old[u]`` and ``new[v]``; add, saturate,
take the minimum and write ``new[v]``. Reading ``old`` (not ``new``) for the source keeps the rounds
synchronous (Jacobi), exactly the golden model's. The write of one arc and the read of the next arc's
``new[v]`` fall in the same cycle; a register forwards the value just written when both arcs have the same
destination (the memory's read port is not transparent)::

    EXEC        arc 0's word read
    EXEC+i      arc i's word read; arc i-1's values read; arc i-2 written
    EXEC+n+1    arc n-1 written, done                      (n + 2 cycles; 2 for n = 0)
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In

from ..config import CimConfig
from .engine import VectorTiming, engine_members
from .isa import LANE_BITS, addr_width, grelax_layout, lanes

__all__ = ["RelaxEngine", "RELAX_TIMING", "RELAX_VALUE_BITS", "grelax_cycles", "relax_arc_layout",
           "relax_value_bits"]

#: Width of a vertex value (an SSSP distance, a component label); all ones is "unreached".
RELAX_VALUE_BITS = 32

#: ``GRELAX``: one cycle per arc, plus the arc word's read and the values' read before the last write (the
#: done cycle is the last write's). tests/test_graph_relax.py measures it on the RTL.
RELAX_TIMING = VectorTiming(extra=2, per_item=1)


def grelax_cycles(count: int) -> int:
    """Cycles of a ``GRELAX`` of ``count`` arcs (EXEC to done inclusive)."""
    return count * RELAX_TIMING.per_item + RELAX_TIMING.extra


def relax_value_bits(cfg: CimConfig) -> int:
    """The value width this configuration's engine computes: :data:`RELAX_VALUE_BITS`, or the activation word
    when it is narrower (the graph compiler then refuses SSSP and CC by name)."""
    return min(RELAX_VALUE_BITS, LANE_BITS * lanes(cfg))


def relax_arc_layout(cfg: CimConfig) -> data.StructLayout:
    """An arc word: ``src`` and ``dst`` (vertex indices into the ``old`` and ``new`` arrays, activation-address
    wide) and ``weight`` (what is left of the word, at most :data:`RELAX_VALUE_BITS` bits)."""
    aw = addr_width(cfg)
    return data.StructLayout({"src": unsigned(aw), "dst": unsigned(aw),
                              "weight": unsigned(max(1, min(RELAX_VALUE_BITS, LANE_BITS * lanes(cfg) - 2 * aw)))})


class RelaxEngine(wiring.Component):
    """Executes ``GRELAX`` (module docstring).

    Members
    -------
    start, args, busy, done
        The shared engine members (:func:`~cimforge.gen.engine.engine_members`), ``args`` in
        :func:`~cimforge.gen.isa.grelax_layout`.
    arc_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read port of its own (the arc words).
    old_rd, new_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read ports shared with the vector engines (synchronous).
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
        Activation memory write port.
    """

    name = "relax"
    TIMING = RELAX_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        aw, word = addr_width(cfg), LANE_BITS * lanes(cfg)
        port = memory.ReadPort.Signature(addr_width=aw, shape=word)
        super().__init__({
            **engine_members(grelax_layout(cfg)),
            "arc_rd": In(port), "old_rd": In(port), "new_rd": In(port),
            "act_w": In(memory.WritePort.Signature(addr_width=aw, shape=word)),
        })

    def elaborate(self, platform):
        m = Module()
        a = self.args
        vb = relax_value_bits(self.cfg)
        inf = (1 << vb) - 1
        lay = relax_arc_layout(self.cfg)
        running = Signal()
        issued = Signal(len(a.count))      # arc words read so far
        issue = Signal()
        m.d.comb += issue.eq(Mux(self.start, a.count != 0, running & (issued < a.count)))
        m.d.comb += [self.arc_rd.addr.eq(a.arcs + Mux(self.start, 0, issued)), self.arc_rd.en.eq(1)]
        with m.If(self.start):
            m.d.sync += [running.eq(1), issued.eq(a.count != 0)]
        with m.Elif(issue):
            m.d.sync += issued.eq(issued + 1)

        # stage 1: the arc word is out; address its source's old value and its destination's new value
        v1 = Signal()
        m.d.sync += v1.eq(issue)
        raw = Signal(lay.size)  # the word truncated (or zero-extended) to the arc layout
        m.d.comb += raw.eq(self.arc_rd.data)
        arc = data.View(lay, raw)
        m.d.comb += [self.old_rd.addr.eq(a.old + arc.src), self.old_rd.en.eq(1),
                     self.new_rd.addr.eq(a.new + arc.dst), self.new_rd.en.eq(1)]
        v2, dst2, w2 = Signal(), Signal.like(arc.dst), Signal(vb)
        m.d.sync += [v2.eq(v1), dst2.eq(arc.dst), w2.eq(arc.weight)]

        # stage 2: add, saturate, minimum, write; the previous arc's write forwarded to the same destination
        fwd_v, fwd_dst, fwd_val = Signal(), Signal.like(arc.dst), Signal(vb)
        cur, total, cand, res = Signal(vb), Signal(vb + 1), Signal(vb), Signal(vb)
        m.d.comb += [cur.eq(Mux(fwd_v & (fwd_dst == dst2), fwd_val, self.new_rd.data[:vb])),
                     total.eq(self.old_rd.data[:vb] + w2),
                     cand.eq(Mux(total[vb], inf, total[:vb])),
                     res.eq(Mux(cand < cur, cand, cur))]
        m.d.comb += [self.act_w.addr.eq(a.new + dst2), self.act_w.data.eq(res), self.act_w.en.eq(v2)]
        m.d.sync += [fwd_v.eq(v2), fwd_dst.eq(dst2), fwd_val.eq(res)]

        finish = Signal()
        m.d.comb += finish.eq(running & (issued == a.count) & ~v1 & (v2 | (a.count == 0)))
        # busy from EXEC on: the shared read ports follow the busy engine (the values are addressed from EXEC+1)
        m.d.comb += [self.done.eq(finish), self.busy.eq(running | self.start)]
        with m.If(finish):
            m.d.sync += running.eq(0)
        return m
