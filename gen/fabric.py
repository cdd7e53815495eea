"""The accelerator top: macros, memories, the engines, the controller and the Wishbone host interface.

::

    Wishbone B4 (classic, 32-bit) ──► CSRs, and every memory through 32-bit slices (:func:`cimforge.gen.isa.host_map`)
    controller: fetch ─► dispatch ─┬─► LOAD  ─► weight loader (queue) ─► macro SRAM ports
                                   ├─► MAC   ─► MacEngine (gather units, macros, accumulate, requantise)
                                   ├─► POOL  ─► PoolEngine
                                   └─► EW    ─► EwEngine
    memories: program, activations (read ports: one per gather unit, two for the vector engines, one for the
    host), weights, per-channel parameters, tile descriptors, retired-instruction trace

The controller executes one instruction at a time (``LOAD`` only queues a command) and reads the next one while
it does, so an instruction that takes more than one cycle is followed by the next one's execution at once (a
one-cycle instruction costs one decode cycle more; the first of a run, fetch and decode). It stamps every retired
instruction into the trace memory (cycle, pc, opcode) and keeps the performance counters: total cycles,
weight-load cycles, and per macro busy, stall (the macro takes part in the running ``MAC`` pass but is not
computing) and weight-write cycles. Memories are meant to be accessed by the host while the controller is idle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import CimConfig
from .isa import (CSR, MAGIC, Opcode, addr_width, desc_layout, host_map, instr_layout, lanes,
                  param_layout)
from .library import VerilogLibrary, instantiate
from .loader import WeightLoader
from .mac_engine import MacEngine
from .macro import CimMacro
from .vector import EwEngine, PoolEngine

__all__ = ["CimFabric", "ENGINES", "trace_layout", "wishbone_signature", "fabric_params"]

#: The fabric's engines by their :class:`~cimforge.gen.isa.InstrSpec` engine name.
ENGINES = {cls.name: cls for cls in (MacEngine, PoolEngine, EwEngine, WeightLoader)}


def trace_layout() -> data.StructLayout:
    """A trace entry: the cycle counter when the instruction at ``pc`` retired, and its opcode."""
    return data.StructLayout({"cycle": unsigned(32), "pc": unsigned(16), "op": unsigned(4), "_pad": unsigned(12)})


def wishbone_signature(addr_width: int) -> wiring.Signature:
    """Wishbone B4 classic, 32-bit data, word addresses, from the initiator's side (the fabric's port is
    ``In(wishbone_signature(...))``). Accesses are whole words: a write whose ``sel`` is not ``0b1111`` is
    acknowledged and ignored."""
    return wiring.Signature({
        "cyc": Out(1), "stb": Out(1), "we": Out(1), "adr": Out(addr_width), "dat_w": Out(32), "sel": Out(4),
        "dat_r": In(32), "ack": In(1),
    })


def _padded(width: int) -> int:
    """Memory width with 32-bit write granularity (widths above 32 bits are padded to whole slices)."""
    return width if width <= 32 else -(-width // 32) * 32


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
    done : Out(1)
        The program reached ``END`` (level, until the next start).
    busy : Out(1)
    error : Out(1)
        The controller stopped at an unknown opcode.
    """

    def __init__(self, cfg: CimConfig, library: VerilogLibrary | None = None):
        self.cfg = cfg
        self.library = library
        self.hbits, self.regions = host_map(cfg)
        super().__init__({
            "wb": In(wishbone_signature(self.hbits + 3)),
            "done": Out(1), "busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        n, L = cfg.fabric.n_macros, lanes(cfg)
        aw = addr_width(cfg)
        R = self.regions

        # --- memories ------------------------------------------------------------------------------------
        def mem(name, width, depth):
            mm = memory.Memory(shape=unsigned(_padded(width)), depth=depth, init=[])
            m.submodules[name] = mm
            return mm
        imem = mem("imem", instr_layout(cfg).size, cfg.controller.program_depth)
        amem = mem("amem", 8 * L, cfg.fabric.act_depth)
        wmem = mem("wmem", cfg.macro.cols, cfg.fabric.weight_depth)
        pmem = mem("pmem", param_layout(cfg).size, cfg.fabric.param_depth)
        dmem = mem("dmem", desc_layout(cfg).size, cfg.fabric.desc_depth)
        tmem = mem("trace", 64, cfg.controller.trace_depth)

        def host_wport(mm, width):
            return mm.write_port(granularity=32 if _padded(width) > 32 else None)

        # --- macros and engines -------------------------------------------------------------------------------
        if self.library is None:  # inline (Amaranth simulation)
            macros = [CimMacro(cfg.macro) for _ in range(n)]
            for i, mac in enumerate(macros):
                m.submodules[f"macro{i}"] = mac
        else:  # one Verilog module, instantiated by name (generation time and size follow one macro)
            name, template = self.library.module("cim_macro", lambda: CimMacro(cfg.macro, library=self.library))
            macros = []
            for i in range(n):
                iface = template.signature.create(path=(f"macro{i}",))
                m.submodules[f"macro{i}"] = instantiate(name, template, iface)
                macros.append(iface)
        m.submodules.mac = mac_e = MacEngine(cfg)
        m.submodules.pool = pool_e = PoolEngine(cfg)
        m.submodules.ew = ew_e = EwEngine(cfg)
        m.submodules.loader = ld = WeightLoader(cfg)

        for i, mac in enumerate(macros):
            wiring.connect(m, mac_e.op[i], mac.op)
            m.d.comb += [mac_e.res_valid[i].eq(mac.res_valid), mac_e.res_y[i].eq(mac.res_y),
                         mac.mem_we.eq(ld.mem_we[i]), mac.mem_page.eq(ld.mem_page), mac.mem_row.eq(ld.mem_row),
                         mac.mem_wdata.eq(ld.mem_wdata)]
            u = mac_e.units[i]
            rp = amem.read_port()
            m.d.comb += [rp.addr.eq(u.rd_addr), rp.en.eq(u.rd_en), u.rd_data.eq(rp.data)]
            dp = dmem.read_port(domain="comb")
            m.d.comb += [dp.addr.eq(u.desc_addr), u.desc.eq(dp.data)]
        pp = pmem.read_port()
        m.d.comb += [pp.addr.eq(mac_e.p_addr), mac_e.p_data.eq(pp.data)]
        rpa = amem.read_port()
        rpb = amem.read_port()
        m.d.comb += [rpa.addr.eq(Mux(pool_e.busy, pool_e.rd_addr, ew_e.ra_addr)), rpa.en.eq(1),
                     pool_e.rd_data.eq(rpa.data), ew_e.ra_data.eq(rpa.data),
                     rpb.addr.eq(ew_e.rb_addr), rpb.en.eq(1), ew_e.rb_data.eq(rpb.data)]
        wp = wmem.read_port()
        m.d.comb += [wp.addr.eq(ld.w_addr), ld.w_data.eq(wp.data)]

        # --- controller -----------------------------------------------------------------------------------
        ilay = instr_layout(cfg)
        ir = Signal(ilay)
        pc = Signal(16)
        start_pc = Signal(16)
        cycles = Signal(32)
        load_cycles = Signal(32)
        trace_n = Signal(32)
        done = Signal()
        error = Signal()
        fp = imem.read_port()
        # prefetch: while an instruction executes, the port reads the next one, so an instruction that took more
        # than one cycle is followed by the next EXEC at once (a one-cycle one by DECODE, then EXEC)
        in_exec = Signal()
        pf_valid = Signal()  # fp.data is imem[pc + 1]: the previous cycle was this instruction's EXEC or WAIT
        m.d.comb += fp.addr.eq(Mux(in_exec, pc + 1, pc))
        m.d.comb += [mac_e.args.eq(ir.args.mac), pool_e.args.eq(ir.args.pool), ew_e.args.eq(ir.args.ew),
                     ld.cmd.eq(ir.args.load)]
        retire = Signal()
        start = Signal()
        tw = tmem.write_port()
        entry = Signal(trace_layout())
        m.d.comb += [entry.cycle.eq(cycles), entry.pc.eq(pc), entry.op.eq(ir.op.as_value()),
                     tw.addr.eq(trace_n), tw.data.eq(entry), tw.en.eq(retire & (trace_n < cfg.controller.trace_depth))]
        with m.If(retire):
            m.d.sync += [trace_n.eq(trace_n + 1), pc.eq(pc + 1)]
        m.d.sync += pf_valid.eq(in_exec & ~retire)
        running = Signal()
        m.d.comb += [self.busy.eq(running), self.done.eq(done), self.error.eq(error)]
        with m.If(running):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(ld.mem_we.any()):
            m.d.sync += load_cycles.eq(load_cycles + 1)
        engine_done = Signal()
        m.d.comb += engine_done.eq(mac_e.done | pool_e.done | ew_e.done)

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [pc.eq(start_pc), running.eq(1), done.eq(0), error.eq(0), cycles.eq(0),
                                 load_cycles.eq(0), trace_n.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += ir.eq(fp.data)
                m.next = "EXEC"
            with m.State("EXEC"):
                m.d.comb += in_exec.eq(1)
                with m.Switch(ir.op):
                    with m.Case(Opcode.END):
                        m.d.comb += retire.eq(1)
                        m.d.sync += [running.eq(0), done.eq(1), pc.eq(pc)]
                        m.next = "IDLE"
                    with m.Case(Opcode.LOAD):
                        m.d.comb += ld.cmd_valid.eq(1)
                        with m.If(ld.cmd_ready):
                            m.d.comb += retire.eq(1)
                            self._next_instruction(m, ir, fp, pf_valid)
                    with m.Case(Opcode.SYNC):
                        with m.If(~ld.busy):
                            m.d.comb += retire.eq(1)
                            self._next_instruction(m, ir, fp, pf_valid)
                    with m.Case(Opcode.MAC, Opcode.POOL, Opcode.EW):
                        m.d.comb += [mac_e.start.eq(ir.op == Opcode.MAC), pool_e.start.eq(ir.op == Opcode.POOL),
                                     ew_e.start.eq(ir.op == Opcode.EW)]
                        m.next = "WAIT"
                    with m.Default():
                        m.d.sync += [running.eq(0), error.eq(1)]
                        m.next = "IDLE"
            with m.State("WAIT"):
                m.d.comb += in_exec.eq(1)
                with m.If(engine_done):
                    m.d.comb += retire.eq(1)
                    self._next_instruction(m, ir, fp, pf_valid)

        # --- activation memory write port: engines, or the host while idle ------------------------------------
        aw_port = host_wport(amem, 8 * L)

        # --- performance counters -------------------------------------------------------------------------
        counters = []
        for i, mac in enumerate(macros):
            busy_c, stall_c, wl_c = Signal(32, name=f"busy_c{i}"), Signal(32, name=f"stall_c{i}"), \
                Signal(32, name=f"wload_c{i}")
            with m.If(start & ~running):
                m.d.sync += [busy_c.eq(0), stall_c.eq(0), wl_c.eq(0)]
            with m.Else():
                with m.If(running & mac.busy):
                    m.d.sync += busy_c.eq(busy_c + 1)
                with m.If(mac_e.unit_en[i] & ~mac.busy):
                    m.d.sync += stall_c.eq(stall_c + 1)
                with m.If(ld.mem_we[i]):
                    m.d.sync += wl_c.eq(wl_c + 1)
            counters.append((busy_c, stall_c, wl_c))

        # --- host interface (Wishbone classic) -------------------------------------------------------------
        bus = self.wb
        hb = self.hbits
        ack = Signal()
        req = Signal()
        m.d.comb += [req.eq(bus.cyc & bus.stb & ~ack), bus.ack.eq(ack)]
        m.d.sync += ack.eq(req)
        region = Signal(3)
        off = Signal(hb)
        m.d.comb += [region.eq(bus.adr[hb:hb + 3]), off.eq(bus.adr[:hb])]
        wr = Signal()  # whole-word writes only: a write with a partial byte select is acknowledged and ignored
        m.d.comb += wr.eq(req & bus.we & (bus.sel == 0xF))
        r_region = Signal(3)
        with m.If(req):
            m.d.sync += r_region.eq(region)

        def host_slice(reg):
            """(word address, slice index) of the bus offset within memory region ``reg``."""
            sb = (reg.slices - 1).bit_length()
            word = Signal(hb, name=f"{reg.name}_hword")
            sl = Signal(max(1, sb), name=f"{reg.name}_hslice")
            m.d.comb += [word.eq(off >> sb), sl.eq(off[:sb] if sb else 0)]
            return word, sl

        read_data = {}
        write_ports = {"imem": imem, "wmem": wmem, "pmem": pmem, "dmem": dmem}
        for name, mm in write_ports.items():
            reg = R[name]
            word, sl = host_slice(reg)
            port = host_wport(mm, reg.width)
            hit = Signal(name=f"{name}_hwe")
            m.d.comb += hit.eq(wr & (region == reg.index) & ~running)
            m.d.comb += [port.addr.eq(word), port.data.eq(bus.dat_w.replicate(max(1, _padded(reg.width) // 32))
                                                          if _padded(reg.width) > 32 else bus.dat_w)]
            if _padded(reg.width) > 32:
                m.d.comb += port.en.eq(Mux(hit, Const(1, _padded(reg.width) // 32) << sl, 0))
            else:
                m.d.comb += port.en.eq(hit)
        for name, mm in (("imem", imem), ("amem", amem), ("wmem", wmem), ("pmem", pmem), ("dmem", dmem),
                         ("trace", tmem)):
            reg = R[name]
            word, sl = host_slice(reg)
            rp = mm.read_port()
            m.d.comb += rp.addr.eq(word)
            r_sl = Signal.like(sl, name=f"{name}_rsl")
            with m.If(req):
                m.d.sync += r_sl.eq(sl)
            w32 = _padded(reg.width)
            if w32 > 32:
                read_data[reg.index] = rp.data.word_select(r_sl, 32)
            else:
                read_data[reg.index] = rp.data
        # activation memory: engines write when running, the host when idle
        a_reg = R["amem"]
        a_word, a_sl = host_slice(a_reg)
        host_a = Signal()
        m.d.comb += host_a.eq(wr & (region == a_reg.index) & ~running)
        eng_we = Signal()
        eng_addr = Signal(aw)
        eng_data = Signal(8 * L)
        m.d.comb += [
            eng_we.eq(mac_e.w_en | pool_e.w_en | ew_e.w_en),
            eng_addr.eq(Mux(mac_e.w_en, mac_e.w_addr, Mux(pool_e.w_en, pool_e.w_addr, ew_e.w_addr))),
            eng_data.eq(Mux(mac_e.w_en, mac_e.w_data, Mux(pool_e.w_en, pool_e.w_data, ew_e.w_data))),
        ]
        slices = _padded(8 * L) // 32 if _padded(8 * L) > 32 else 1
        m.d.comb += [
            aw_port.addr.eq(Mux(host_a, a_word, eng_addr)),
            aw_port.data.eq(Mux(host_a, bus.dat_w.replicate(slices) if slices > 1 else bus.dat_w, eng_data)),
        ]
        if slices > 1:
            m.d.comb += aw_port.en.eq(Mux(host_a, Const(1, slices) << a_sl, Mux(eng_we, (1 << slices) - 1, 0)))
        else:
            m.d.comb += aw_port.en.eq(host_a | eng_we)

        # CSRs
        csr_r = Signal(32)
        csr_idx = Signal(range(R["csr"].depth))
        m.d.comb += csr_idx.eq(off)
        csr_hit = Signal()
        m.d.comb += csr_hit.eq(req & (region == 0))
        with m.If(csr_hit & wr & (csr_idx == CSR["CTRL"]) & bus.dat_w[0] & ~running):
            m.d.comb += start.eq(1)
        with m.If(csr_hit & wr & (csr_idx == CSR["START_PC"])):
            m.d.sync += start_pc.eq(bus.dat_w[:16])
        status = Cat(running, done, error, ld.busy)
        values = {CSR["ID"]: MAGIC, CSR["STATUS"]: status, CSR["PC"]: pc, CSR["START_PC"]: start_pc,
                  CSR["CYCLES"]: cycles, CSR["LOAD_CYCLES"]: load_cycles, CSR["TRACE_COUNT"]: trace_n,
                  CSR["OPCODE"]: ir.op.as_value(), CSR["LANES"]: L, CSR["N_MACROS"]: n}
        for i, cs in enumerate(counters):
            for j, c in enumerate(cs):
                values[CSR["MACRO_BASE"] + 4 * i + j] = c
        with m.If(csr_hit & ~bus.we):
            with m.Switch(csr_idx):
                for k, v in values.items():
                    with m.Case(k):
                        m.d.sync += csr_r.eq(v)
                with m.Default():
                    m.d.sync += csr_r.eq(0)
        dat = Signal(32)
        with m.Switch(r_region):
            with m.Case(0):
                m.d.comb += dat.eq(csr_r)
            for idx, v in read_data.items():
                with m.Case(idx):
                    m.d.comb += dat.eq(v)
        m.d.comb += bus.dat_r.eq(dat)
        return m

    @staticmethod
    def _next_instruction(m: Module, ir, fp, pf_valid) -> None:
        """On retire: straight to EXEC with the prefetched word when the port holds it, else to DECODE (the
        retiring cycle addresses the next word)."""
        with m.If(pf_valid):
            m.d.sync += ir.eq(fp.data)
            m.next = "EXEC"
        with m.Else():
            m.next = "DECODE"



def fabric_params(cfg: CimConfig) -> dict:
    """The fabric's part of ``params.json``: lanes, the host address map, CSRs and the packed-word widths."""
    bits, regions = host_map(cfg)
    return {
        "lanes": lanes(cfg), "bus": "wishbone-b4-classic", "bus_addr_bits": bits + 3,
        "regions": {r.name: {"index": r.index, "depth": r.depth, "width": r.width, "slices": r.slices}
                    for r in regions.values()},
        "csr": dict(CSR), "magic": MAGIC,
        "words": {"instruction": instr_layout(cfg).size, "descriptor": desc_layout(cfg).size,
                  "parameters": param_layout(cfg).size, "trace": trace_layout().size},
    }
