"""The weight loader: copies weight-memory words into macro pages through the macros' SRAM ports, one row per
cycle, to every macro of a mask at once (replicated weights cost no extra cycles). It queues ``LOAD``
commands so that the controller can go on with compute instructions while pages that are not in use fill
(double buffering); ``SYNC`` waits for it to drain.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import CimConfig
from .engine import LoaderTiming
from .isa import load_layout

__all__ = ["WeightLoader", "LOAD_TIMING"]

#: Read latency of the weight memory (a synchronous read port): a row is written the cycle after its read.
_READ_LATENCY = 1
#: The loader's timing: a command pops in one cycle, then reads one row per cycle and writes each a read latency
#: later; back to back, the next pop overlaps the last write.
LOAD_TIMING = LoaderTiming(overhead=1 + _READ_LATENCY, per_command=1)


class WeightLoader(wiring.Component):
    """Copies weight rows into macro pages (``LOAD``), from a command queue.

    Attributes
    ----------
    name : str
        ``"loader"``, the :class:`~cimforge.gen.isa.InstrSpec` engine name.
    TIMING : LoaderTiming

    Members
    -------
    cmd : In(stream.Signature(load_layout))
        Command queue input (a ``LOAD`` instruction's arguments).
    busy : Out(1)
        A command is queued or in progress.
    w_rd : In(memory.ReadPort.Signature(addr_width, cols))
        Weight memory read port (synchronous).
    mem_we : Out(n_macros); mem_page, mem_row : Out; mem_wdata : Out(cols)
        To the macros' SRAM ports (``mem_wdata`` is the weight memory's data, shared by all macros).
    """

    name = "loader"
    TIMING = LOAD_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        lay = load_layout(cfg)
        super().__init__({
            "cmd": In(stream.Signature(lay)), "busy": Out(1),
            "w_rd": In(memory.ReadPort.Signature(addr_width=lay["src"].shape.width, shape=cfg.macro.cols)),
            "mem_we": Out(cfg.fabric.n_macros), "mem_page": Out(cfg.macro.page_width),
            "mem_row": Out(cfg.macro.row_width), "mem_wdata": Out(cfg.macro.cols),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lay = load_layout(cfg)
        m.submodules.queue = q = fifo.SyncFIFO(width=lay.size, depth=cfg.controller.load_queue)
        m.d.comb += [q.w_en.eq(self.cmd.valid), q.w_data.eq(self.cmd.payload), self.cmd.ready.eq(q.w_rdy)]
        head = Signal(lay)
        m.d.comb += head.eq(q.r_data)

        active = Signal()
        src = Signal.like(self.w_rd.addr)
        left = Signal(16)
        mask = Signal(cfg.fabric.n_macros)
        page = Signal(cfg.macro.page_width)
        row = Signal(cfg.macro.row_width)
        with m.If(~active & q.r_rdy):
            m.d.comb += q.r_en.eq(1)
            m.d.sync += [active.eq(head.count != 0), src.eq(head.src), left.eq(head.count), mask.eq(head.mask),
                         page.eq(head.page), row.eq(head.row0)]
        # read one word per cycle; write it the next cycle
        m.d.comb += [self.w_rd.addr.eq(src), self.w_rd.en.eq(1)]
        wr = Signal()
        wr_page = Signal.like(page)
        wr_row = Signal.like(row)
        wr_mask = Signal.like(mask)
        m.d.sync += wr.eq(active)
        with m.If(active):
            m.d.sync += [src.eq(src + 1), left.eq(left - 1), wr_page.eq(page), wr_row.eq(row), wr_mask.eq(mask)]
            with m.If(left == 1):
                m.d.sync += active.eq(0)
            with m.If(row == cfg.macro.rows - 1):
                m.d.sync += [row.eq(0), page.eq(page + 1)]
            with m.Else():
                m.d.sync += row.eq(row + 1)
        m.d.comb += [
            self.mem_we.eq(wr_mask & wr.replicate(cfg.fabric.n_macros)),
            self.mem_page.eq(wr_page), self.mem_row.eq(wr_row), self.mem_wdata.eq(self.w_rd.data),
            self.busy.eq(active | wr | q.r_rdy),
        ]
        return m
