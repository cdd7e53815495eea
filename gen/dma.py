"""The DMA engine: 2-D tile transfers between the external memory (through the fabric's AXI4 master port) and
the on-chip activation and weight memories, queued beside compute like the weight loader's ``LOAD``.

A ``DMA`` instruction (:func:`cimforge.gen.isa.dma_layout`) only queues its command (one cycle when the queue
has room); the engine runs the commands in order while the controller goes on, so weight tiles stream into free
weight-memory words and activation tiles into free activation words while a pass computes (double buffering is
the compiler's choice of addresses); ``DSYNC`` waits until the queue is empty and the engine idle.

Each row of a tile is a sequence of AXI4 ``INCR`` bursts, split at 256 beats and at 4 KB boundaries, one
transaction at a time (one outstanding per direction, and the engine never overlaps two). Every delay is fixed,
so the cost model predicts each command's cycles from its arguments and the external memory's ``ext_latency``
and ``ext_interval`` (:func:`dma_command_cycles`, :data:`DMA_TIMING`; docs/memory.md has the derivation):

* a command pops from the queue in one cycle (the cycle after it was queued at the earliest, the cycle after
  the previous command's end at the earliest); its first burst's address is valid the next cycle;
* a read burst (``store = 0``) of ``n`` beats, address at ``t``: the memory accepts it at ``t``, beat ``k``
  arrives at ``t + ext_latency + k * ext_interval`` and is written on chip in that cycle; the burst ends with its
  last beat;
* a write burst (``store = 1``) of ``n`` beats, address at ``t``: the first word is read on chip at ``t``, beat
  ``k`` is accepted at ``t + 1 + k * ext_interval``, the response comes ``ext_latency`` cycles after the last
  beat and ends the burst;
* the next burst's address is valid the cycle after a burst ends; the engine is idle (``busy`` low, ``DSYNC``
  retires) the cycle after the last burst's end.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import CimConfig
from .axi import BOUNDARY_BYTES, BURST_INCR, CACHE_BUFFERABLE, MAX_BURST, axi4_signature, ext_bytes, ext_width
from .isa import LANE_BITS, dma_layout, lanes

__all__ = ["DmaEngine", "DmaTiming", "DMA_TIMING", "dma_bursts", "dma_command_cycles"]


@dataclass(frozen=True)
class DmaTiming:
    """Fixed delays of the DMA engine (cycles; ``ext_latency`` and ``ext_interval`` come from the
    configuration).

    Attributes
    ----------
    pop : int
        From a command's pop to its first burst's address.
    read_extra : int
        A read burst of ``n`` beats lasts ``ext_latency + (n - 1) * ext_interval + read_extra`` cycles from its
        address to the next burst's address.
    write_extra : int
        The same for a write burst (the cycle of the first on-chip read before the first beat).
    idle : int
        From the last burst's end to the engine's first idle cycle (and the earliest next pop).
    """

    pop: int
    read_extra: int
    write_extra: int
    idle: int


#: The DMA engine's fixed delays (module docstring; docs/memory.md).
DMA_TIMING = DmaTiming(pop=1, read_extra=1, write_extra=2, idle=1)


def dma_bursts(cfg: CimConfig, ext: int, length: int) -> list[int]:
    """Beats of each AXI4 burst of one row of ``length`` words from external word ``ext``: at most 256 beats,
    none crossing a 4 KB boundary."""
    per_boundary = BOUNDARY_BYTES // ext_bytes(cfg)
    out = []
    while length:
        n = min(length, MAX_BURST, per_boundary - ext % per_boundary)
        out.append(n)
        ext, length = ext + n, length - n
    return out


def dma_command_cycles(cfg: CimConfig, args: dict) -> int:
    """Cycles of one ``DMA`` command from its pop to the engine's first idle cycle (exclusive of the pop,
    inclusive of the idle cycle's predecessor): the next command pops ``dma_command_cycles`` cycles after this
    one, and ``DSYNC`` retires at ``pop + dma_command_cycles`` when it is the last."""
    f = cfg.fabric
    if not args["rows"] or not args["len"]:
        return DMA_TIMING.idle
    extra = DMA_TIMING.write_extra if args["store"] else DMA_TIMING.read_extra
    total = DMA_TIMING.pop - 1  # the first burst's address comes `pop` cycles after the pop
    for r in range(args["rows"]):
        for n in dma_bursts(cfg, args["ext"] + r * args["ext_stride"], args["len"]):
            total += f.ext_latency + (n - 1) * f.ext_interval + extra
    return total + DMA_TIMING.idle


class DmaEngine(wiring.Component):
    """Moves 2-D tiles between the external memory and the on-chip memories (``DMA``), from a command queue.

    Attributes
    ----------
    name : str
        ``"dma"``, the :class:`~cimforge.gen.isa.InstrSpec` engine name.
    TIMING : DmaTiming

    Members
    -------
    cmd : In(stream.Signature(dma_layout))
        Command queue input (a ``DMA`` instruction's arguments).
    busy : Out(1)
        A command is queued or in progress (``DSYNC`` waits for it to fall).
    error : Out(1)
        The running or last command got a response other than ``OKAY`` or with an ID other than 0 (set with
        that response, cleared when the next command pops); the transfer goes on regardless.
    axi : Out(axi4_signature(ext_width))
        The AXI4 master port.
    amem_r, wmem_r : In(memory.ReadPort.Signature)
        Read ports of the activation and weight memories (synchronous; stores).
    amem_w, wmem_w : In(memory.WritePort.Signature)
        Write ports of the activation and weight memories (loads), whole words.
    """

    name = "dma"
    TIMING = DMA_TIMING

    def __init__(self, cfg: CimConfig):
        from .host import padded_width  # gen/host.py imports the controller, which imports this module
        self.cfg = cfg
        f = cfg.fabric
        self.widths = {"amem": LANE_BITS * lanes(cfg), "wmem": cfg.macro.cols}
        depths = {"amem": f.act_depth, "wmem": f.weight_depth}
        members = {"cmd": In(stream.Signature(dma_layout(cfg))), "busy": Out(1), "error": Out(1),
                   "axi": Out(axi4_signature(ext_width(cfg)))}
        for mem, width in self.widths.items():
            aw, shape = ceil_log2(depths[mem]), unsigned(padded_width(width))
            members[f"{mem}_r"] = In(memory.ReadPort.Signature(addr_width=aw, shape=shape))
            members[f"{mem}_w"] = In(memory.WritePort.Signature(addr_width=aw, shape=shape))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lay = dma_layout(cfg)
        axi = self.axi
        m.submodules.queue = q = fifo.SyncFIFO(width=lay.size, depth=cfg.controller.load_queue)
        m.d.comb += [q.w_en.eq(self.cmd.valid), q.w_data.eq(self.cmd.payload), self.cmd.ready.eq(q.w_rdy)]
        head = Signal(lay)
        m.d.comb += head.eq(q.r_data)

        # the command being run, and where its current burst starts
        store, wmem = Signal(), Signal()
        length = Signal.like(head.len)
        ext_stride, stride = Signal.like(head.ext_stride), Signal.like(head.stride)
        ext_row, ext_ptr = Signal.like(head.ext), Signal.like(head.ext)
        on_row, on_ptr = Signal.like(head.addr), Signal.like(head.addr)
        row_left, rows_left = Signal.like(head.len), Signal.like(head.rows)
        # beats of the current burst: the row's rest, at most 256, up to the next 4 KB boundary
        per_boundary = BOUNDARY_BYTES // ext_bytes(cfg)
        n = Signal(range(MAX_BURST + 1))
        to_boundary = Signal(range(per_boundary + 1))
        m.d.comb += to_boundary.eq(per_boundary - ext_ptr[:exact_log2(per_boundary)])
        lim = Mux(to_boundary < MAX_BURST, to_boundary, MAX_BURST)
        m.d.comb += n.eq(Mux(row_left < lim, row_left, lim))
        beats = Signal(range(MAX_BURST + 1))   # beats of the burst transferred
        issued = Signal(range(MAX_BURST + 1))  # on-chip words read for a write burst
        wv = Signal()                          # the on-chip read port holds the next write beat

        addr = Signal(axi.awaddr.shape())
        m.d.comb += addr.eq(ext_ptr << exact_log2(ext_bytes(cfg)))
        size = exact_log2(ext_bytes(cfg))
        for p in ("aw", "ar"):
            m.d.comb += [getattr(axi, f"{p}addr").eq(addr), getattr(axi, f"{p}len").eq(n - 1),
                         getattr(axi, f"{p}size").eq(size), getattr(axi, f"{p}burst").eq(BURST_INCR),
                         getattr(axi, f"{p}cache").eq(CACHE_BUFFERABLE)]
        m.d.comb += [axi.wstrb.eq((1 << len(axi.wstrb)) - 1), axi.wlast.eq(beats == n - 1)]

        # on-chip ports: loads write the beat in its cycle, stores read a word ahead of its beat
        rd = {"amem": self.amem_r, "wmem": self.wmem_r}
        wr = {"amem": self.amem_w, "wmem": self.wmem_w}
        rd_data = Signal(ext_width(cfg))
        m.d.comb += rd_data.eq(Mux(wmem, self.wmem_r.data[:self.widths["wmem"]],
                                   self.amem_r.data[:self.widths["amem"]]))
        w_hs, fetch, r_hs = Signal(), Signal(), Signal()
        for name, port in rd.items():
            m.d.comb += [port.addr.eq(on_ptr), port.en.eq(fetch & (wmem == (name == "wmem")))]
        for name, port in wr.items():
            m.d.comb += [port.addr.eq(on_ptr), port.data.eq(axi.rdata[:self.widths[name]]),
                         port.en.eq(r_hs & (wmem == (name == "wmem")))]
        m.d.comb += axi.wdata.eq(rd_data)

        def next_burst():
            """At a burst's end: the rest of the row, the next row, or idle."""
            m.d.sync += [beats.eq(0), issued.eq(0)]
            with m.If(row_left != n):
                m.d.sync += [ext_ptr.eq(ext_ptr + n), row_left.eq(row_left - n)]
                m.next = "ADDR"
            with m.Elif(rows_left != 1):
                m.d.sync += [rows_left.eq(rows_left - 1), row_left.eq(length),
                             ext_row.eq(ext_row + ext_stride), ext_ptr.eq(ext_row + ext_stride),
                             on_row.eq(on_row + stride), on_ptr.eq(on_row + stride)]
                m.next = "ADDR"
            with m.Else():
                m.next = "IDLE"

        error = Signal()
        m.d.comb += self.error.eq(error)
        with m.If((r_hs & ((axi.rresp != 0) | (axi.rid != 0))) | (axi.bvalid & axi.bready &
                                                                  ((axi.bresp != 0) | (axi.bid != 0)))):
            m.d.sync += error.eq(1)
        with m.FSM(name="dma") as fsm:
            with m.State("IDLE"):
                with m.If(q.r_rdy):
                    m.d.comb += q.r_en.eq(1)
                    m.d.sync += error.eq(0)
                    m.d.sync += [store.eq(head.store), wmem.eq(head.wmem), length.eq(head.len),
                                 ext_stride.eq(head.ext_stride), stride.eq(head.stride), ext_row.eq(head.ext),
                                 ext_ptr.eq(head.ext), on_row.eq(head.addr), on_ptr.eq(head.addr),
                                 row_left.eq(head.len), rows_left.eq(head.rows), beats.eq(0), issued.eq(0)]
                    with m.If((head.rows != 0) & (head.len != 0)):
                        m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += [axi.awvalid.eq(store), axi.arvalid.eq(~store)]
                with m.If(store):
                    m.d.comb += fetch.eq(~wv)  # the first beat's word, read while the address is presented
                with m.If(Mux(store, axi.awready, axi.arready)):
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(store):
                    m.d.comb += [axi.wvalid.eq(wv), w_hs.eq(wv & axi.wready),
                                 fetch.eq((issued != n) & (~wv | w_hs))]
                    with m.If(w_hs):
                        m.d.sync += beats.eq(beats + 1)
                        with m.If(beats == n - 1):
                            m.next = "RESP"
                with m.Else():
                    m.d.comb += [axi.rready.eq(1), r_hs.eq(axi.rvalid)]
                    with m.If(r_hs):
                        m.d.sync += [beats.eq(beats + 1), on_ptr.eq(on_ptr + 1)]
                        with m.If(beats == n - 1):
                            next_burst()
            with m.State("RESP"):
                m.d.comb += axi.bready.eq(1)
                with m.If(axi.bvalid):
                    next_burst()
        with m.If(fetch):
            m.d.sync += [on_ptr.eq(on_ptr + 1), issued.eq(issued + 1)]
        m.d.sync += wv.eq(fetch | (wv & ~w_hs))
        m.d.comb += self.busy.eq(q.r_rdy | ~fsm.ongoing("IDLE"))
        return m
