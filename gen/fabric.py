"""The accelerator top: macros, memories, the engines, the controller and the Wishbone host interface, wired.

::

    Wishbone B4 (classic, 32-bit) ──► WishboneHost (gen/host.py): CSRs, every memory through 32-bit slices
    Controller (gen/controller.py): fetch ─► dispatch by InstrSpec.engine ─┬─► "loader" ─► WeightLoader
                                                                           ├─► "mac"    ─► MacEngine
                                                                           ├─► "pool"   ─► PoolEngine
                                                                           ├─► "ew"     ─► EwEngine
                                                                           ├─► "dma"    ─► DmaEngine (AXI4)
                                                                           ├─► "graph"  ─► GraphEngine (GBFS)
                                                                           ├─► "relax"  ─► RelaxEngine (GRELAX)
                                                                           ├─► "spmv"   ─► SpmvEngine (GSPMV)
                                                                           ├─► "lrn"    ─► LrnEngine (LRN)
                                                                           └─► "lut"    ─► LutEngine (LUT)
    memories: program, activations (read ports: one per gather unit, two for the vector engines, one for the
    host), weights, per-channel parameters, tile descriptors, retired-instruction trace

The engines are instantiated from :data:`ENGINES` and reach the memories through ``amaranth.lib.memory`` port
signatures (the shared engine members are in :mod:`cimforge.gen.engine`). Memories are padded to 32-bit host
slices; an engine's port in its own word layout is attached with :func:`_read`. Memories are meant to be
accessed by the host while the controller is idle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockDomain, DomainRenamer, Module, Mux, ResetSignal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import CimConfig
from .axi import axi4_signature, ext_width
from .controller import Controller
from .dma import DmaEngine
from .graph_engine import GraphEngine
from .graph_relax import RelaxEngine
from .graph_spmv import SpmvEngine
from .engine import connect_control
from .host import REGION_BITS, WishboneHost, padded_width, wishbone_signature
from .isa import CSR, MAGIC, desc_layout, host_map, instr_layout, lanes, param_layout, trace_layout
from .clock_gate import GATED_ENGINES, engine_clock_enable, gated_clock, macro_clock_enable
from .library import VerilogLibrary, instantiate
from .loader import WeightLoader
from .lrn import LrnEngine
from .lut import LutEngine
from .mac_engine import MacEngine
from .macro import CimMacro
from .vector import EwEngine, PoolEngine

__all__ = ["CimFabric", "ENGINES", "wishbone_signature", "fabric_params"]

#: The fabric's engines by their :class:`~cimforge.gen.isa.InstrSpec` engine name; the fabric instantiates
#: them in this order, which is also the priority of their activation memory writes (they never run at once).
ENGINES = {cls.name: cls for cls in (MacEngine, PoolEngine, EwEngine, WeightLoader, DmaEngine, GraphEngine,
                                     RelaxEngine, SpmvEngine, LrnEngine, LutEngine)}

def _read(m: Module, mem: memory.Memory, user, domain: str = "sync") -> None:
    """Attach a user's read port (an ``In(memory.ReadPort.Signature(...))`` member of an engine or the
    controller, in its own word layout) to a new read port of ``mem``, whose words may be padded to 32-bit
    slices (so the data is truncated rather than ``wiring.connect``-ed). An asynchronous port has no enable."""
    port = mem.read_port(domain=domain)
    m.d.comb += [port.addr.eq(user.addr), user.data.eq(port.data)]
    if domain != "comb":
        m.d.comb += port.en.eq(user.en)


def _shared_read(m: Module, mem: memory.Memory, users: list) -> None:
    """One read port of ``mem`` for engines that never run at once: ``users`` is a list of (selected, port),
    the first selected one addresses it (the last one when none is), all of them see its data."""
    port = mem.read_port()
    addr, en = users[-1][1].addr, users[-1][1].en
    for sel, user in reversed(users[:-1]):
        addr, en = Mux(sel, user.addr, addr), Mux(sel, user.en, en)
    m.d.comb += [port.addr.eq(addr), port.en.eq(en)] + [user.data.eq(port.data) for _, user in users]


def _shared_write(m: Module, port, host, engines: list) -> None:
    """The activation memory's write port: the host's writes (only while no program runs) or else the engines'
    whole-word writes, the first enabled engine of ``engines`` winning."""
    we = Cat(e.en for e in engines).any()
    addr, data = engines[-1].addr, engines[-1].data
    for e in reversed(engines[:-1]):
        addr, data = Mux(e.en, e.addr, addr), Mux(e.en, e.data, data)
    host_on = host.en.any()
    slices = len(port.en)
    m.d.comb += [port.addr.eq(Mux(host_on, host.addr, addr)),
                 port.data.eq(Mux(host_on, host.data, data)),
                 port.en.eq(Mux(host_on, host.en, Mux(we, (1 << slices) - 1, 0)) if slices > 1 else host.en | we)]


class CimFabric(wiring.Component):
    """The generated accelerator.

    Parameters
    ----------
    cfg : CimConfig
    library : VerilogLibrary, optional
        Passed to the macros (their column tiles become separate Verilog modules).

    Members
    -------
    wb : In(wishbone_signature)
        Host bus.
    axi : Out(axi4_signature(ext_width(cfg)))
        AXI4 master port to the external memory (the DMA engine's; docs/memory.md).
    done : Out(1)
        The program reached ``END`` (level, until the next start).
    busy : Out(1)
    error : Out(1)
        The controller stopped at an unknown opcode.
    dma_error : Out(1)
        The DMA engine's last command got an error response (:class:`cimforge.gen.dma.DmaEngine`).
    """

    def __init__(self, cfg: CimConfig, library: VerilogLibrary | None = None):
        self.cfg = cfg
        self.library = library
        self.hbits, self.regions = host_map(cfg)
        super().__init__({
            "wb": In(wishbone_signature(self.hbits + REGION_BITS)),
            "axi": Out(axi4_signature(ext_width(cfg))),
            "done": Out(1), "busy": Out(1), "error": Out(1), "dma_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        mems = {}  # every memory of the host address map, its words padded to 32-bit host slices
        for reg in self.regions.values():
            if reg.name != "csr":
                mems[reg.name] = m.submodules[reg.name] = memory.Memory(shape=unsigned(padded_width(reg.width)),
                                                                        depth=reg.depth, init=[])
        self.memories = mems  # for simulator backdoor access (Amaranth's ``MemoryData``), after elaboration
        macros = self._macros(m)
        engines = {}
        for name, cls in ENGINES.items():
            engines[name] = eng = cls(cfg)
            if self.library is not None and name in GATED_ENGINES:  # on its own gated clock (gen/clock_gate.py)
                cd = ClockDomain(f"{name}_gated", local=True)
                m.domains += cd
                gclk = gated_clock(m, self.library, engine_clock_enable(m, eng, name), f"{name}_icg")
                m.d.comb += [cd.clk.eq(gclk), cd.rst.eq(ResetSignal())]
                eng = DomainRenamer({"sync": f"{name}_gated"})(eng)
            m.submodules[name] = eng
        m.submodules.ctrl = ctrl = Controller(cfg)
        m.submodules.host = host = WishboneHost(cfg)

        self._wire_macros(m, macros, engines, mems)
        self._wire_vector(m, engines, mems)
        self._wire_control(m, ctrl, host, macros, engines, mems)
        self._wire_host(m, host, engines, mems)
        self._wire_dma(m, engines[DmaEngine.name], mems)
        return m

    def _macros(self, m: Module) -> list:
        """The macros: inline for Amaranth simulation, else one Verilog module instantiated by name (generation
        time and size follow one macro), each clocked through its clock gate (:mod:`.clock_gate`)."""
        cfg = self.cfg
        n = cfg.fabric.n_macros
        if self.library is None:
            macros = [CimMacro(cfg.macro) for _ in range(n)]
            for i, mac in enumerate(macros):
                m.submodules[f"macro{i}"] = mac
            return macros
        name, template = self.library.module("cim_macro", lambda: CimMacro(cfg.macro, library=self.library))
        macros = []
        for i in range(n):
            iface = template.signature.create(path=(f"macro{i}",))
            # each macro on its own gated clock: no edge in a cycle in which none of its state changes
            gclk = gated_clock(m, self.library, macro_clock_enable(m, iface, f"macro{i}"), f"macro{i}_icg")
            m.submodules[f"macro{i}"] = instantiate(name, template, iface, clk=gclk)
            macros.append(iface)
        return macros

    @staticmethod
    def _wire_macros(m: Module, macros: list, engines: dict, mems: dict) -> None:
        """The MAC engine's operations and results (the graph engines' operations while one is busy: they never
        run at once), the loader's writes and every gather unit's ports."""
        mac_e, ld, gr = engines[MacEngine.name], engines[WeightLoader.name], engines[GraphEngine.name]
        sp = engines[SpmvEngine.name]
        for i, mac in enumerate(macros):
            valid, payload = mac_e.op[i].valid, mac_e.op[i].payload.as_value()
            for e in (sp, gr):
                valid, payload = Mux(e.busy, e.op[i].valid, valid), Mux(e.busy, e.op[i].payload.as_value(), payload)
            m.d.comb += [mac.op.valid.eq(valid), mac.op.payload.eq(payload),
                         mac_e.op[i].ready.eq(mac.op.ready), gr.op[i].ready.eq(mac.op.ready),
                         sp.op[i].ready.eq(mac.op.ready),
                         gr.res_valid[i].eq(mac.res_valid), gr.res_total[i].eq(mac.res_total),
                         sp.res_valid[i].eq(mac.res_valid), sp.res_y[i].eq(mac.res_y)]
            m.d.comb += [mac_e.res_valid[i].eq(mac.res_valid), mac_e.res_y[i].eq(mac.res_y),
                         mac.mem_we.eq(ld.mem_we[i]), mac.mem_page.eq(ld.mem_page), mac.mem_row.eq(ld.mem_row),
                         mac.mem_wdata.eq(ld.mem_wdata)]
            _read(m, mems["amem"], mac_e.act_rd[i])
            _read(m, mems["dmem"], mac_e.desc_rd[i], domain="comb")
        _read(m, mems["pmem"], mac_e.param_rd)
        if "epi_rd" in mac_e.signature.members:  # the epilogue's parameters, read beside the pass's own
            _read(m, mems["pmem"], mac_e.epi_rd)

    @staticmethod
    def _wire_vector(m: Module, engines: dict, mems: dict) -> None:
        """The vector engines and the graph engines share two activation read ports (GBFS's frontier, GRELAX's
        old values, GSPMV's words, POOL's, EW's operand a; GBFS's next frontier, GRELAX's new values, EW's operand b; GRELAX
        reads its arc words through a third port of its own) and the weight loader reads the weight memory."""
        pool_e, ew_e, gr = engines[PoolEngine.name], engines[EwEngine.name], engines[GraphEngine.name]
        rx, sp, lrn = engines[RelaxEngine.name], engines[SpmvEngine.name], engines[LrnEngine.name]
        lut = engines[LutEngine.name]
        _shared_read(m, mems["amem"], [(gr.busy, gr.src_rd), (rx.busy, rx.old_rd), (sp.busy, sp.rd),
                                       (lrn.busy, lrn.act_rd), (lut.busy, lut.act_rd), (pool_e.busy, pool_e.act_rd),
                                       (ew_e.busy, ew_e.a_rd)])
        _shared_read(m, mems["pmem"], [(lut.busy, lut.param_rd), (lrn.busy, lrn.param_rd)])  # tables
        _shared_read(m, mems["amem"], [(gr.busy, gr.dst_rd), (rx.busy, rx.new_rd), (ew_e.busy, ew_e.b_rd)])
        _read(m, mems["amem"], rx.arc_rd)
        _read(m, mems["wmem"], engines[WeightLoader.name].w_rd)

    def _wire_control(self, m: Module, ctrl: Controller, host: WishboneHost, macros: list, engines: dict,
                      mems: dict) -> None:
        """The controller: program and trace memories, its engines (by name), the loader's queue, the counters'
        inputs and the host link."""
        _read(m, mems["imem"], ctrl.imem_rd)
        wiring.connect(m, ctrl.trace_w, mems["trace"].write_port())
        for name, _ in ctrl.engines.signature.members.items():
            connect_control(m, getattr(ctrl.engines, name), engines[name])
        ld, mac_e = engines[WeightLoader.name], engines[MacEngine.name]
        wiring.connect(m, ctrl.load, ld.cmd)
        wiring.connect(m, ctrl.dma, engines[DmaEngine.name].cmd)
        m.d.comb += ctrl.dma_busy.eq(engines[DmaEngine.name].busy)
        m.d.comb += [ctrl.loader_busy.eq(ld.busy), ctrl.macro_we.eq(ld.mem_we), ctrl.unit_en.eq(mac_e.unit_en),
                     ctrl.macro_busy.eq(Cat(mac.busy for mac in macros))]
        wiring.connect(m, ctrl.host, host.ctrl)
        m.d.comb += [self.busy.eq(ctrl.busy), self.done.eq(ctrl.done), self.error.eq(ctrl.error)]

    def _wire_host(self, m: Module, host: WishboneHost, engines: dict, mems: dict) -> None:
        """The host bus, the host's memory ports, and the activation memory's write port shared with the
        engines."""
        wiring.connect(m, wiring.flipped(self.wb), host.wb)
        for name, mm in mems.items():
            wiring.connect(m, getattr(host, f"{name}_r"), mm.read_port())
        for name, mm in mems.items():
            if self.regions[name].writable and name != "amem":
                wp = getattr(host, f"{name}_w")
                wiring.connect(m, wp, mm.write_port(granularity=wp.signature.granularity))
        act_w = [e.act_w for e in engines.values() if "act_w" in e.signature.members]
        amem_port = mems["amem"].write_port(granularity=host.amem_w.signature.granularity)
        _shared_write(m, amem_port, host.amem_w, act_w)


    def _wire_dma(self, m: Module, dma: DmaEngine, mems: dict) -> None:
        """The DMA engine: the AXI4 port, and a read and a write port of its own on the activation and weight
        memories, so that transfers run beside the engines (the compiler keeps their words apart)."""
        wiring.connect(m, dma.axi, wiring.flipped(self.axi))
        m.d.comb += self.dma_error.eq(dma.error)
        for name in ("amem", "wmem"):
            wiring.connect(m, getattr(dma, f"{name}_r"), mems[name].read_port())
            wiring.connect(m, getattr(dma, f"{name}_w"), mems[name].write_port())


def fabric_params(cfg: CimConfig) -> dict:
    """The fabric's part of ``params.json``: lanes, the host address map, CSRs and the packed-word widths."""
    bits, regions = host_map(cfg)
    return {
        "lanes": lanes(cfg), "bus": "wishbone-b4-classic", "bus_addr_bits": bits + REGION_BITS,
        "regions": {r.name: {"index": r.index, "depth": r.depth, "width": r.width, "slices": r.slices}
                    for r in regions.values()},
        "csr": dict(CSR), "magic": MAGIC,
        "words": {"instruction": instr_layout(cfg).size, "descriptor": desc_layout(cfg).size,
                  "parameters": param_layout(cfg).size, "trace": trace_layout().size},
    }
