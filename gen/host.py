"""The fabric's host interface: Wishbone B4 classic (32-bit data, word addresses) to the CSRs and to every memory
through 32-bit slices, laid out by :func:`cimforge.gen.isa.host_map`.

A bus word address is ``region << offset_bits | offset``; region 0 holds the CSRs (:data:`cimforge.gen.isa.CSR`),
the others one memory each, word ``i``, slice ``j`` of a memory at offset ``i * slices + j``. Every access is
acknowledged the cycle after the request; reads return data with the acknowledgement. Writes are whole words:
a write whose ``sel`` is not ``0b1111`` is acknowledged and ignored; memory writes are ignored while a program
runs (memories are meant to be accessed while the controller is idle), and so is a start.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..bits import ceil_log2
from ..config import CimConfig
from .controller import PC_BITS, counter_layout, host_link
from .isa import CSR, MAGIC, host_map, lanes

__all__ = ["WishboneHost", "wishbone_signature", "padded_width", "mem_read_signature", "mem_write_signature"]

#: Data bits of the bus.
BUS_BITS = 32
#: Region-number bits at the top of a bus address.
REGION_BITS = 3


def wishbone_signature(addr_width: int) -> wiring.Signature:
    """Wishbone B4 classic, 32-bit data, word addresses, from the initiator's side (the fabric's port is
    ``In(wishbone_signature(...))``). Accesses are whole words: a write whose ``sel`` is not ``0b1111`` is
    acknowledged and ignored."""
    return wiring.Signature({
        "cyc": Out(1), "stb": Out(1), "we": Out(1), "adr": Out(addr_width), "dat_w": Out(BUS_BITS), "sel": Out(4),
        "dat_r": In(BUS_BITS), "ack": In(1),
    })


def padded_width(width: int) -> int:
    """Memory width with 32-bit write granularity (widths above 32 bits are padded to whole slices)."""
    return width if width <= BUS_BITS else -(-width // BUS_BITS) * BUS_BITS


def _granularity(width: int) -> int | None:
    return BUS_BITS if padded_width(width) > BUS_BITS else None


def mem_read_signature(depth: int, width: int) -> memory.ReadPort.Signature:
    """A read port of a fabric memory of ``depth`` words of ``width`` bits (stored padded)."""
    return memory.ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(padded_width(width)))


def mem_write_signature(depth: int, width: int) -> memory.WritePort.Signature:
    """A host write port of a fabric memory: one enable per 32-bit slice when the word is wider than the bus."""
    return memory.WritePort.Signature(addr_width=ceil_log2(depth), shape=unsigned(padded_width(width)),
                                      granularity=_granularity(width))


class WishboneHost(wiring.Component):
    """CSRs and memory slices on the Wishbone bus.

    Members
    -------
    wb : In(wishbone_signature(offset_bits + 3))
        The host bus.
    ctrl : In(host_link(cfg))
        To the controller: start pulse and address, and its report (STATUS, PC, counters).
    <region>_r : In(memory.ReadPort.Signature)
        A read port of every memory region (``imem``, ``amem``, ``wmem``, ``pmem``, ``dmem``, ``trace``).
    <region>_w : In(memory.WritePort.Signature)
        A write port of every writable region (the fabric shares ``amem_w`` with the engines: its enable is
        only set while no program runs).
    """

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        self.hbits, self.regions = host_map(cfg)
        members = {"wb": In(wishbone_signature(self.hbits + REGION_BITS)), "ctrl": In(host_link(cfg))}
        for reg in self._memories():
            members[f"{reg.name}_r"] = In(mem_read_signature(reg.depth, reg.width))
            if reg.writable:
                members[f"{reg.name}_w"] = In(mem_write_signature(reg.depth, reg.width))
        super().__init__(members)

    def _memories(self) -> list:
        return [r for r in self.regions.values() if r.name != "csr"]

    def elaborate(self, platform):
        m = Module()
        bus, hb = self.wb, self.hbits
        ack, req = Signal(), Signal()
        m.d.comb += [req.eq(bus.cyc & bus.stb & ~ack), bus.ack.eq(ack)]
        m.d.sync += ack.eq(req)
        region = Signal(REGION_BITS)
        off = Signal(hb)
        m.d.comb += [region.eq(bus.adr[hb:hb + REGION_BITS]), off.eq(bus.adr[:hb])]
        wr = Signal()  # whole-word writes only: a write with a partial byte select is acknowledged and ignored
        m.d.comb += wr.eq(req & bus.we & (bus.sel == 0xF))
        r_region = Signal(REGION_BITS)
        with m.If(req):
            m.d.sync += r_region.eq(region)
        running = self.ctrl.report.status.busy

        read_data = {self.regions["csr"].index: self._csrs(m, req, wr, region, off, running)}
        for reg in self._memories():
            word, sl = self._slice(m, reg, off)
            rp = getattr(self, f"{reg.name}_r")
            m.d.comb += [rp.addr.eq(word), rp.en.eq(1)]
            r_sl = Signal.like(sl, name=f"{reg.name}_rsl")
            with m.If(req):
                m.d.sync += r_sl.eq(sl)
            read_data[reg.index] = rp.data.word_select(r_sl, BUS_BITS) if _granularity(reg.width) else rp.data
            if reg.writable:
                self._write(m, reg, word, sl, wr & (region == reg.index) & ~running)
        dat = Signal(BUS_BITS)
        with m.Switch(r_region):
            for idx, v in read_data.items():
                with m.Case(idx):
                    m.d.comb += dat.eq(v)
        m.d.comb += bus.dat_r.eq(dat)
        return m

    def _slice(self, m: Module, reg, off):
        """(word address, slice index) of the bus offset within memory region ``reg``."""
        sb = ceil_log2(reg.slices)
        word = Signal(self.hbits, name=f"{reg.name}_hword")
        sl = Signal(max(1, sb), name=f"{reg.name}_hslice")
        m.d.comb += [word.eq(off >> sb), sl.eq(off[:sb] if sb else 0)]
        return word, sl

    def _write(self, m: Module, reg, word, sl, hit) -> None:
        """The host write of region ``reg``: the bus word replicated into every slice, the addressed one
        enabled."""
        port = getattr(self, f"{reg.name}_w")
        dat_w = self.wb.dat_w
        m.d.comb += port.addr.eq(word)
        if _granularity(reg.width):
            n = padded_width(reg.width) // BUS_BITS
            m.d.comb += [port.data.eq(dat_w.replicate(n)), port.en.eq(Mux(hit, Const(1, n) << sl, 0))]
        else:
            m.d.comb += [port.data.eq(dat_w), port.en.eq(hit)]

    def _csrs(self, m: Module, req, wr, region, off, running):
        """The CSR block: CTRL starts the controller, START_PC is held here, the rest reads the report.
        Returns the registered read data."""
        cfg, bus, link = self.cfg, self.wb, self.ctrl
        rep = link.report
        csr_r = Signal(BUS_BITS)
        csr_idx = Signal(range(self.regions["csr"].depth))
        m.d.comb += csr_idx.eq(off)
        csr_hit = Signal()
        m.d.comb += csr_hit.eq(req & (region == self.regions["csr"].index))
        start_pc = Signal(PC_BITS)
        m.d.comb += link.start_pc.eq(start_pc)
        with m.If(csr_hit & wr & (csr_idx == CSR["CTRL"]) & bus.dat_w[0] & ~running):
            m.d.comb += link.start.eq(1)
        with m.If(csr_hit & wr & (csr_idx == CSR["START_PC"])):
            m.d.sync += start_pc.eq(bus.dat_w[:PC_BITS])
        values = {CSR["ID"]: MAGIC, CSR["STATUS"]: rep.status.as_value(), CSR["PC"]: rep.pc,
                  CSR["START_PC"]: start_pc, CSR["CYCLES"]: rep.cycles, CSR["LOAD_CYCLES"]: rep.load_cycles,
                  CSR["TRACE_COUNT"]: rep.trace_count, CSR["OPCODE"]: rep.op, CSR["LANES"]: lanes(cfg),
                  CSR["N_MACROS"]: cfg.fabric.n_macros}
        for i in range(cfg.fabric.n_macros):
            for j, (name, _) in enumerate(counter_layout()):
                values[CSR["MACRO_BASE"] + 4 * i + j] = rep.macros[i][name]
        with m.If(csr_hit & ~bus.we):
            with m.Switch(csr_idx):
                for k, v in values.items():
                    with m.Case(k):
                        m.d.sync += csr_r.eq(v)
                with m.Default():
                    m.d.sync += csr_r.eq(0)
        return csr_r
