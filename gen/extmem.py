"""A simulation model of the external memory (an AXI4 slave inside the simulated design) and the simulated
system around the fabric.

:class:`ExtMemory` is one Amaranth memory of ``fabric.ext_depth`` words of the bus width with exactly the timing
the cost model assumes (``fabric.ext_latency``, ``fabric.ext_interval``; docs/memory.md), so no Python runs per
cycle while the DMA engine transfers: benches load and read it by backdoor. In the Amaranth simulator that is the
memory's ``MemoryData``; in Verilog (a :class:`~cimforge.gen.library.VerilogLibrary` given) the storage is the
hand-written cell :data:`STORE_VERILOG`, whose file backdoor (``$readmemh`` and ``$writememh``, started by the
bench through :data:`EXT_BACKDOOR`) moves millions of words in seconds where one simulator call per word took
minutes (ResNet-50 keeps 3.2 M words of weights there). Read and write channels are independent, each serving
one burst at a time:

* read: ``arready`` while idle; after the address handshake at ``t`` beat ``k`` is valid from
  ``t + latency + k * interval`` (held until ``rready``);
* write: ``awready`` while idle; after the address handshake at ``t`` ``wready`` rises at ``t + 1`` and again
  ``interval`` cycles after each accepted beat; ``bvalid`` rises ``latency`` cycles after the last beat (the
  burst's ``awlen + 1``-th) and is held until ``bready``. Beats are written with their ``wstrb``.

:class:`CimSystem` is the fabric with this memory on its AXI4 port: what the benches simulate.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import CimConfig
from .axi import axi4_signature, ext_width

__all__ = ["ExtMemory", "CimSystem", "EXT_BACKDOOR", "STORE_NAME", "STORE_VERILOG"]

#: Module name of the Verilog storage cell (before the library's prefix).
STORE_NAME = "ext_store"

#: Hierarchical path of the storage instance inside :class:`CimSystem`, and the backdoor's registers and plusargs
#: (:class:`cimforge.sim.fabric_tb.Host` drives them): the bench pulses ``load`` for one cycle to read the file
#: named by ``+cimforge_ext_in=PATH`` (``@address`` lines and hex words: only the addresses it names are
#: written), or sets ``lo``/``hi`` and pulses ``dump`` to write words ``lo .. hi`` to ``+cimforge_ext_out=PATH``.
EXT_BACKDOOR = {"path": ("extmem", "store"), "load": "bd_load", "dump": "bd_dump", "lo": "bd_lo", "hi": "bd_hi",
                "in": "cimforge_ext_in", "out": "cimforge_ext_out"}

#: The storage cell: what Amaranth's memory with a combinational read port and a byte-strobed write port emits,
#: plus the file backdoor (in the write port's process, so the file's words and the bus's never race). ``{init}``
#: holds initial contents (assignments in the ``initial`` block).
STORE_VERILOG = """\
module {name}(clk, raddr, rdata, waddr, wdata, wen);
  input clk;
  input [{aw}:0] raddr;
  output [{w}:0] rdata;
  input [{aw}:0] waddr;
  input [{w}:0] wdata;
  input [{nb}:0] wen;
  reg [{w}:0] mem [0:{depth}];
  reg bd_load, bd_dump;
  reg [{aw}:0] bd_lo, bd_hi;
  reg [8*4096-1:0] bd_in, bd_out;
  integer i;
  initial begin
    bd_load = 1'b0;
    bd_dump = 1'b0;
    bd_lo = 0;
    bd_hi = 0;
    if (!$value$plusargs("{plus_in}=%s", bd_in)) bd_in = 0;
    if (!$value$plusargs("{plus_out}=%s", bd_out)) bd_out = 0;
{init}  end
  assign rdata = mem[raddr];
  always @(posedge clk) begin
    for (i = 0; i <= {nb}; i = i + 1)
      if (wen[i]) mem[waddr][8*i +: 8] <= wdata[8*i +: 8];
    if (bd_load) $readmemh(bd_in, mem);
    if (bd_dump) $writememh(bd_out, mem, bd_lo, bd_hi);
  end
endmodule
"""


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
    library : VerilogLibrary, optional
        For Verilog: the storage is the library cell :data:`STORE_VERILOG` (with its file backdoor) instead of
        an Amaranth memory.

    Members
    -------
    axi : In(axi4_signature(width))

    Attributes
    ----------
    mem : amaranth.lib.memory.Memory or None
        The storage without a library (backdoor: ``sim.memory`` / ``ctx.set(ext.mem.data[i], v)``).
    """

    def __init__(self, depth: int, width: int, latency: int, interval: int, init=(), library=None):
        if latency < 1 or interval < 1:
            raise ValueError(f"latency {latency}, interval {interval}: allowed integers >= 1")
        self.depth, self.width, self.latency, self.interval = depth, width, latency, interval
        self.library, self.init = library, list(init)
        self.mem = None if library is not None else memory.Memory(shape=unsigned(width), depth=depth, init=self.init)
        super().__init__({"axi": In(axi4_signature(width))})

    @classmethod
    def for_config(cls, cfg: CimConfig, init=(), library=None) -> "ExtMemory":
        """The model of ``cfg``'s external memory (``fabric.ext_depth``, ``ext_latency``, ``ext_interval``)."""
        f = cfg.fabric
        return cls(f.ext_depth, ext_width(cfg), f.ext_latency, f.ext_interval, init, library)

    def elaborate(self, platform):
        m = Module()
        aw = ceil_log2(self.depth)
        self._raddr, self._rdata = Signal(aw), Signal(self.width)
        self._waddr, self._wdata, self._wen = Signal(aw), Signal(self.width), Signal(self.width // 8)
        if self.library is None:
            m.submodules.mem = self.mem
            rd, wr = self.mem.read_port(domain="comb"), self.mem.write_port(granularity=8)
            m.d.comb += [rd.addr.eq(self._raddr), self._rdata.eq(rd.data), wr.addr.eq(self._waddr),
                         wr.data.eq(self._wdata), wr.en.eq(self._wen)]
        else:
            init = "".join(f"    mem[{i}] = {self.width}'h{w:x};\n" for i, w in enumerate(self.init) if w)
            if self.init:  # given contents are all defined, zeros included (Icarus starts memories at x)
                init = f"    for (i = 0; i < {self.depth}; i = i + 1) mem[i] = 0;\n" + init
            name = self.library.raw(STORE_NAME, STORE_VERILOG.replace("{init}", init).format(
                name="{name}", aw=aw - 1, w=self.width - 1, nb=self.width // 8 - 1, depth=self.depth - 1,
                plus_in=EXT_BACKDOOR["in"], plus_out=EXT_BACKDOOR["out"]))
            m.submodules[EXT_BACKDOOR["path"][1]] = Instance(
                name, i_clk=ClockSignal(), i_raddr=self._raddr, o_rdata=self._rdata, i_waddr=self._waddr,
                i_wdata=self._wdata, i_wen=self._wen)
        self._read_channel(m)
        self._write_channel(m)
        return m

    def _word(self, byte_addr):
        return byte_addr >> exact_log2(self.width // 8)

    def _read_channel(self, m: Module) -> None:
        axi = self.axi
        addr = Signal(ceil_log2(self.depth) + 1)
        left = Signal(9)
        wait = Signal(range(max(self.latency, self.interval) + 1))
        rid = Signal.like(axi.rid)
        m.d.comb += [self._raddr.eq(addr), axi.rdata.eq(self._rdata), axi.rid.eq(rid), axi.rresp.eq(0),
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
        addr = Signal(ceil_log2(self.depth) + 1)
        left = Signal(9)
        wait = Signal(range(max(self.latency, self.interval) + 1))
        bid = Signal.like(axi.bid)
        m.d.comb += [self._waddr.eq(addr), self._wdata.eq(axi.wdata), axi.bid.eq(bid), axi.bresp.eq(0)]
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
                    m.d.comb += self._wen.eq(axi.wstrb & (addr < self.depth).replicate(len(axi.wstrb)))
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
        Passed to the fabric and the memory model (Verilog).
    ext_init : sequence of int, optional
        Initial external memory contents.
    """

    def __init__(self, cfg: CimConfig, library=None, ext_init=()):
        from .fabric import CimFabric
        self.cfg = cfg
        self.fabric = CimFabric(cfg, library=library)
        self.extmem = ExtMemory.for_config(cfg, ext_init, library)
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
