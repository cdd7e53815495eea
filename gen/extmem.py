"""A simulation model of the external memory (an AXI4 slave inside the simulated design) and the simulated
system around the fabric.

:class:`ExtMemory` is one Amaranth memory of ``fabric.ext_depth`` words of the bus width with exactly the timing
the cost model assumes (``fabric.ext_latency``, ``fabric.ext_interval``; docs/memory.md), so no Python runs per
cycle while the DMA engine transfers: benches load and read it by backdoor (the Amaranth simulator's
``MemoryData`` or Verilator's array, :data:`EXT_ARRAY`). Read and write channels are independent, each
serving one burst at a time:

* read: ``arready`` while idle; after the address handshake at ``t`` beat ``k`` is valid from
  ``t + latency + k * interval`` (held until ``rready``);
* write: ``awready`` while idle; after the address handshake at ``t`` ``wready`` rises at ``t + 1`` and again
  ``interval`` cycles after each accepted beat; ``bvalid`` rises ``latency`` cycles after the last beat (the
  burst's ``awlen + 1``-th) and is held until ``bready``. Beats are written with their ``wstrb``.

:class:`CimSystem` is the fabric with this memory on its AXI4 port: what the benches simulate.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import CimConfig
from .axi import axi4_signature, ext_width

__all__ = ["ExtMemory", "CimSystem", "EXT_ARRAY"]

#: Hierarchical name of the model's storage inside :class:`CimSystem` (for backdoor access).
EXT_ARRAY = ("extmem", "mem")


class ExtMemory(wiring.Component):
    """AXI4 slave memory model.

    Parameters
    ----------
    depth : int
        Words (bus beats).
    width : int
        Data bits (the bus width).
    latency : int
        Cycles from a read address handshake to the first beat, and from a write's last beat to its response
        (>= 1).
    interval : int
        Cycles per beat (>= 1).
    init : sequence of int, optional
        Initial contents.

    Members
    -------
    axi : In(axi4_signature(width))

    Attributes
    ----------
    mem : amaranth.lib.memory.Memory
        The storage (backdoor: ``sim.memory`` / ``ctx.set(ext.mem.data[i], v)``).
    """

    def __init__(self, depth: int, width: int, latency: int, interval: int, init=()):
        if latency < 1 or interval < 1:
            raise ValueError(f"latency {latency}, interval {interval}: allowed integers >= 1")
        self.depth, self.width, self.latency, self.interval = depth, width, latency, interval
        self.mem = memory.Memory(shape=unsigned(width), depth=depth, init=list(init))
        super().__init__({"axi": In(axi4_signature(width))})

    @classmethod
    def for_config(cls, cfg: CimConfig, init=()) -> "ExtMemory":
        """The model of ``cfg``'s external memory (``fabric.ext_depth``, ``ext_latency``, ``ext_interval``)."""
        f = cfg.fabric
        return cls(f.ext_depth, ext_width(cfg), f.ext_latency, f.ext_interval, init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        self._read_channel(m)
        self._write_channel(m)
        return m

    def _word(self, byte_addr):
        return byte_addr >> exact_log2(self.width // 8)

    def _read_channel(self, m: Module) -> None:
        axi = self.axi
        port = self.mem.read_port(domain="comb")
        addr = Signal(ceil_log2(self.depth) + 1)
        left = Signal(9)
        wait = Signal(range(max(self.latency, self.interval) + 1))
        rid = Signal.like(axi.rid)
        m.d.comb += [port.addr.eq(addr), axi.rdata.eq(port.data), axi.rid.eq(rid), axi.rresp.eq(0),
                     axi.rlast.eq(left == 1)]
        with m.FSM(name="rd"):
            with m.State("IDLE"):
                m.d.comb += axi.arready.eq(1)
                with m.If(axi.arvalid):
                    m.d.sync += [addr.eq(self._word(axi.araddr)), left.eq(axi.arlen + 1), rid.eq(axi.arid),
                                 wait.eq(self.latency - 1)]
                    m.next = "BEAT"
            with m.State("BEAT"):
                m.d.comb += axi.rvalid.eq(wait == 0)
                with m.If(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
                with m.Elif(axi.rready):
                    m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), wait.eq(self.interval - 1)]
                    with m.If(left == 1):
                        m.next = "IDLE"

    def _write_channel(self, m: Module) -> None:
        axi = self.axi
        port = self.mem.write_port(granularity=8)
        addr = Signal(ceil_log2(self.depth) + 1)
        left = Signal(9)
        wait = Signal(range(max(self.latency, self.interval) + 1))
        bid = Signal.like(axi.bid)
        m.d.comb += [port.addr.eq(addr), port.data.eq(axi.wdata), axi.bid.eq(bid), axi.bresp.eq(0)]
        with m.FSM(name="wr"):
            with m.State("IDLE"):
                m.d.comb += axi.awready.eq(1)
                with m.If(axi.awvalid):
                    m.d.sync += [addr.eq(self._word(axi.awaddr)), left.eq(axi.awlen + 1), bid.eq(axi.awid),
                                 wait.eq(0)]
                    m.next = "BEAT"
            with m.State("BEAT"):
                m.d.comb += axi.wready.eq(wait == 0)
                with m.If(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
                with m.Elif(axi.wvalid):
                    m.d.comb += port.en.eq(axi.wstrb & (addr < self.depth).replicate(len(axi.wstrb)))
                    m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), wait.eq(self.interval - 1)]
                    with m.If(left == 1):
                        m.d.sync += wait.eq(self.latency - 1)
                        m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += axi.bvalid.eq(wait == 0)
                with m.If(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
                with m.Elif(axi.bready):
                    m.next = "IDLE"


class CimSystem(wiring.Component):
    """The fabric (:class:`cimforge.gen.fabric.CimFabric`) with its external memory model on the AXI4 port:
    the design the benches simulate. Same members as the fabric except the AXI port.

    Parameters
    ----------
    cfg : CimConfig
    library : VerilogLibrary, optional
        Passed to the fabric.
    ext_init : sequence of int, optional
        Initial external memory contents.
    """

    def __init__(self, cfg: CimConfig, library=None, ext_init=()):
        from .fabric import CimFabric
        self.cfg = cfg
        self.fabric = CimFabric(cfg, library=library)
        self.extmem = ExtMemory.for_config(cfg, ext_init)
        members = {k: v for k, v in self.fabric.signature.members.items() if k != "axi"}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fabric = fab = self.fabric
        m.submodules.extmem = self.extmem
        wiring.connect(m, fab.axi, self.extmem.axi)
        wiring.connect(m, wiring.flipped(self.wb), fab.wb)
        m.d.comb += [self.done.eq(fab.done), self.busy.eq(fab.busy), self.error.eq(fab.error),
                     self.dma_error.eq(fab.dma_error)]
        return m
