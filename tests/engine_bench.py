"""Amaranth-simulator bench shared by the engine unit tests (tests/test_engine_*.py).

:class:`EngineBench` holds the engines under test with the memories they use, connected through their
``amaranth.lib.memory`` port signatures with ``wiring.connect`` (memories of the ports' own widths) and
initialised from a compiled :class:`~cimforge.compiler.program.Program`; the testbench plays the controller
(:func:`run_instructions`): it executes the program's instructions of those engines one at a time (``start`` for
one cycle, then ``done``; ``LOAD`` through the loader's command stream and ``SYNC`` on its ``busy``), records
each instruction's cycles (EXEC to ``done`` inclusive, as the cost model counts them) and returns the activation
memory. The reference is the compiler's instruction-set model (:mod:`cimforge.compiler.iss`) on the same
program.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from cimforge.compiler.iss import FabricModel
from cimforge.gen.fabric import ENGINES
from cimforge.gen.isa import Opcode, decode_op, desc_layout, instr_spec, lanes, param_layout, pack_word
from cimforge.gen.macro import CimMacro

__all__ = ["EngineBench", "run_instructions", "iss_model"]


class EngineBench(Elaboratable):
    """The engines ``names`` (keys of :data:`cimforge.gen.fabric.ENGINES`) of ``cfg`` with the activation,
    weight, parameter and descriptor memories of ``prog`` (activations: ``amem`` words by address), and the
    macros when the MAC engine or the loader is among them."""

    def __init__(self, cfg, names, prog, amem: dict[int, int]):
        self.cfg = cfg
        self.engines = {n: ENGINES[n](cfg) for n in names}
        f, L = cfg.fabric, lanes(cfg)
        init = [0] * f.act_depth
        for a, w in amem.items():
            init[a] = w
        self.amem = memory.Memory(shape=unsigned(8 * L), depth=f.act_depth, init=init)
        self.wmem = memory.Memory(shape=unsigned(cfg.macro.cols), depth=f.weight_depth, init=prog.wmem)
        self.pmem = memory.Memory(shape=unsigned(param_layout(cfg).size), depth=f.param_depth, init=prog.pmem)
        self.dmem = memory.Memory(shape=unsigned(desc_layout(cfg).size), depth=f.desc_depth, init=prog.dmem)
        need_macros = "mac" in names or "loader" in names
        self.macros = [CimMacro(cfg.macro) for _ in range(f.n_macros)] if need_macros else []

    def elaborate(self, platform):
        m = Module()
        m.submodules.amem, m.submodules.wmem = self.amem, self.wmem
        m.submodules.pmem, m.submodules.dmem = self.pmem, self.dmem
        for name, e in self.engines.items():
            m.submodules[name] = e
        for i, mac in enumerate(self.macros):
            m.submodules[f"macro{i}"] = mac
        e = self.engines
        if "mac" in e:
            mac_e = e["mac"]
            for i, mac in enumerate(self.macros):
                wiring.connect(m, mac_e.op[i], mac.op)
                m.d.comb += [mac_e.res_valid[i].eq(mac.res_valid), mac_e.res_y[i].eq(mac.res_y)]
                wiring.connect(m, mac_e.act_rd[i], self.amem.read_port())
                wiring.connect(m, mac_e.desc_rd[i], self.dmem.read_port(domain="comb"))
            wiring.connect(m, mac_e.param_rd, self.pmem.read_port())
            wiring.connect(m, mac_e.act_w, self.amem.write_port())
        if "loader" in e:
            ld = e["loader"]
            wiring.connect(m, ld.w_rd, self.wmem.read_port())
            for i, mac in enumerate(self.macros):
                m.d.comb += [mac.mem_we.eq(ld.mem_we[i]), mac.mem_page.eq(ld.mem_page), mac.mem_row.eq(ld.mem_row),
                             mac.mem_wdata.eq(ld.mem_wdata)]
        if "pool" in e:
            wiring.connect(m, e["pool"].act_rd, self.amem.read_port())
            wiring.connect(m, e["pool"].act_w, self.amem.write_port())
        if "ew" in e:
            wiring.connect(m, e["ew"].a_rd, self.amem.read_port())
            wiring.connect(m, e["ew"].b_rd, self.amem.read_port())
            wiring.connect(m, e["ew"].act_w, self.amem.write_port())
        return m


def run_instructions(bench: EngineBench, code: list[int], max_cycles: int = 200_000
                     ) -> tuple[list[int], list[tuple[int, int]]]:
    """Execute the instructions of ``code`` (up to ``END``) on the bench's engines.

    Returns (activation memory words, [(pc, cycles)] of every instruction executed by an engine: EXEC to
    ``done`` inclusive for compute instructions, the loader's busy cycles for ``LOAD``).
    """
    cfg = bench.cfg
    cycles: list[tuple[int, int]] = []
    words: list[int] = []

    async def controller(ctx):
        for pc, word in enumerate(code):
            op, args = decode_op(cfg, word)
            spec = instr_spec(op)
            if spec.op == Opcode.END:
                break
            if spec.op == Opcode.SYNC:
                if "loader" in bench.engines:
                    while ctx.get(bench.engines["loader"].busy):
                        await ctx.tick()
                continue
            if spec.engine not in bench.engines:
                continue
            eng = bench.engines[spec.engine]
            packed = pack_word(spec.layout(cfg), args)
            if spec.engine == "loader":
                ctx.set(eng.cmd.payload.as_value(), packed)
                ctx.set(eng.cmd.valid, 1)
                await ctx.tick().until(eng.cmd.ready)
                ctx.set(eng.cmd.valid, 0)
                n = 1  # the loader is busy from the cycle after the push until its last write
                while ctx.get(eng.busy):
                    await ctx.tick()
                    n += 1
                cycles.append((pc, n - 1))
                continue
            ctx.set(eng.args.as_value(), packed)
            ctx.set(eng.start, 1)
            n = 1
            while True:  # EXEC is the start cycle; count to done inclusive
                if ctx.get(eng.done) and n > 1:
                    break
                await ctx.tick()
                ctx.set(eng.start, 0)
                n += 1
                assert n < max_cycles, f"pc {pc}: no done within {max_cycles} cycles"
            await ctx.tick()
            cycles.append((pc, n))
        words.extend(ctx.get(bench.amem.data[i]) for i in range(cfg.fabric.act_depth))

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(controller)
    sim.run()
    return words, cycles


def iss_model(prog, amem: dict[int, int]) -> FabricModel:
    """The instruction-set model after running ``prog`` from activation words ``amem``."""
    model = FabricModel(prog.cfg)
    model.load_program(prog)
    model.write_words(amem)
    model.run()
    return model


class TableBench(EngineBench):
    """The bench of one engine that reads a table from the parameter memory (``LRN``, ``LUT``): its activation
    read and write ports and its parameter read port connected."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        (e,) = self.engines.values()
        wiring.connect(m, e.act_rd, self.amem.read_port())
        wiring.connect(m, e.act_w, self.amem.write_port())
        port = self.pmem.read_port()
        m.d.comb += [port.addr.eq(e.param_rd.addr), port.en.eq(e.param_rd.en), e.param_rd.data.eq(port.data)]
        return m
