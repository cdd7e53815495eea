# amaranth: UnusedElaboratable=no
"""The controller alone in Amaranth's simulator, with the real weight loader and stand-in compute engines that
take exactly the cycles their timing data gives: every retired instruction's trace entry (cycle, pc, opcode)
equals the cost model's :func:`~cimforge.compiler.cost.program_timing` (start, one-cycle and prefetched
instructions, LOADs queued beside compute, SYNC waiting for the loader); the report (STATUS, PC, counters)
after END and after an unknown opcode; an instruction without an engine that the controller does not execute
is refused at construction (the file's linter option silences the warning about those unelaborated
controllers).
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from cimforge.compiler.cost import program_timing
from cimforge.gen import controller as controller_mod
from cimforge.gen.controller import CONTROLLER_TIMING, Controller
from cimforge.gen.engine import control_signature
from cimforge.gen.isa import INSTRUCTIONS, Opcode, encode, instr_layout, trace_layout, unpack_word
from cimforge.gen.loader import WeightLoader
from cimforge.gen.vector import EW_TIMING, POOL_TIMING
from cimforge.presets import get_preset

TINY = get_preset("tiny")


def _cycles(name: str, a: dict) -> int:
    """EXEC to done inclusive of a stand-in engine (the real engines' timing)."""
    if name == "pool":
        return a["oh"] * a["ow"] * a["cw"] * a["kh"] * a["kw"] * POOL_TIMING.per_item + POOL_TIMING.extra
    if name == "ew":
        return a["npos"] * a["cw"] * EW_TIMING.per_item + EW_TIMING.extra
    return 5  # MAC: any pass length will do for the controller


class _Bench(Elaboratable):
    def __init__(self, cfg, code):
        self.ctrl = Controller(cfg)
        self.loader = WeightLoader(cfg)
        c = cfg.controller
        self.imem = memory.Memory(shape=unsigned(instr_layout(cfg).size), depth=c.program_depth, init=code)
        self.trace = memory.Memory(shape=unsigned(trace_layout().size), depth=c.trace_depth, init=[])
        self.wmem = memory.Memory(shape=unsigned(cfg.macro.cols), depth=cfg.fabric.weight_depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.ctrl, m.submodules.loader = self.ctrl, self.loader
        m.submodules.imem, m.submodules.trace, m.submodules.wmem = self.imem, self.trace, self.wmem
        wiring.connect(m, self.ctrl.imem_rd, self.imem.read_port())
        wiring.connect(m, self.ctrl.trace_w, self.trace.write_port())
        wiring.connect(m, self.ctrl.load, self.loader.cmd)
        wiring.connect(m, self.loader.w_rd, self.wmem.read_port())
        m.d.comb += [self.ctrl.loader_busy.eq(self.loader.busy), self.ctrl.macro_we.eq(self.loader.mem_we)]
        return m


def _run(cfg, code):
    bench = _Bench(cfg, code)
    ctrl = bench.ctrl
    out = {}

    def stand_in(name, spec):
        port = getattr(ctrl.engines, name)

        async def engine(ctx):
            while True:
                while not ctx.get(port.start):  # the EXEC cycle
                    await ctx.tick()
                a = unpack_word(spec.layout(cfg), ctx.get(port.args.as_value()))
                for _ in range(_cycles(name, a) - 1):
                    await ctx.tick()
                ctx.set(port.done, 1)
                await ctx.tick()
                ctx.set(port.done, 0)
        return engine

    async def host(ctx):
        ctx.set(ctrl.host.start, 1)
        await ctx.tick()
        ctx.set(ctrl.host.start, 0)
        for _ in range(5000):
            await ctx.tick()
            if not ctx.get(ctrl.busy):
                break
        rep = ctrl.host.report
        out["report"] = {k: ctx.get(getattr(rep, k).as_value()) if k == "status" else ctx.get(getattr(rep, k))
                         for k in ("status", "pc", "op", "cycles", "load_cycles", "trace_count")}
        out["status"] = unpack_word(rep.status.shape(), out["report"]["status"])
        out["trace"] = [unpack_word(trace_layout(), ctx.get(bench.trace.data[i]))
                        for i in range(out["report"]["trace_count"])]

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    for spec in INSTRUCTIONS:
        if spec.engine in ctrl.engines.signature.members:
            sim.add_testbench(stand_in(spec.engine, spec), background=True)
    sim.add_testbench(host)
    sim.run()
    return out


def _ew(npos, cw=1):
    return encode(TINY, Opcode.EW, npos=npos, cw=cw, act_min=-128, act_max=127)


def _pool(oh, kh):
    return encode(TINY, Opcode.POOL, in_h=oh, in_w=1, cw=1, kh=kh, kw=1, sh=1, sw=1, dh=1, dw=1, oh=oh, ow=1)


def _load(count, row0=0):
    return encode(TINY, Opcode.LOAD, src=0, count=count, mask=1, page=0, row0=row0)


def test_trace_equals_program_timing():
    code = [_load(3), _load(0), _ew(4), encode(TINY, Opcode.SYNC), _pool(2, 2), _load(5), _load(6, row0=2),
            _load(2), encode(TINY, Opcode.SYNC), encode(TINY, Opcode.SYNC), _ew(1), _ew(2, 2),
            encode(TINY, Opcode.END)]
    out = _run(TINY, code)
    want = program_timing(SimpleNamespace(cfg=TINY, code=code))
    got = [(t["cycle"], t["pc"], t["op"]) for t in out["trace"]]
    assert got == [(c, pc, code[pc] & 0xF) for pc, c in enumerate(want)]
    assert got[0][0] == CONTROLLER_TIMING.start  # a one-cycle LOAD: fetch and decode before it
    st = out["status"]
    assert (st["busy"], st["done"], st["error"], st["loader_busy"]) == (0, 1, 0, 0)
    rep = out["report"]
    assert rep["pc"] == len(code) - 1 and rep["op"] == Opcode.END.value
    assert rep["cycles"] == want[-1] + 1 and rep["load_cycles"] == 3 + 5 + 6 + 2


def test_unknown_opcode_stops_with_an_error():
    code = [_ew(2), 0xF, encode(TINY, Opcode.END)]
    out = _run(TINY, code)
    st = out["status"]
    assert (st["busy"], st["done"], st["error"]) == (0, 0, 1)
    assert out["report"]["pc"] == 1 and out["report"]["op"] == 0xF
    assert [t["pc"] for t in out["trace"]] == [0]


def test_instruction_without_engine_is_refused(monkeypatch):
    specs = tuple(replace(s, engine=None) if s.op == Opcode.POOL else s for s in INSTRUCTIONS)
    monkeypatch.setattr(controller_mod, "INSTRUCTIONS", specs)
    with pytest.raises(ValueError, match=r"POOL has no engine .* allowed without an engine: END, SYNC"):
        Controller(TINY)


def test_one_control_port_per_compute_engine():
    ports = Controller(TINY).engines.signature.members
    assert set(ports) == {s.engine for s in INSTRUCTIONS if s.engine not in (None, *controller_mod.QUEUED)}
    for s in INSTRUCTIONS:
        if s.engine in ports:
            assert ports[s.engine].signature == control_signature(s.layout(TINY))
