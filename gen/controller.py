"""The fabric's controller: fetch, prefetch, decode, dispatch to the engines, trace stamping and counters.

The controller executes one instruction at a time and dispatches it by its
:class:`~cimforge.gen.isa.InstrSpec`: an instruction whose spec names a compute engine starts that engine
(``start`` for one cycle, its arguments on ``args``) and waits for its ``done``; ``LOAD`` and ``DMA`` only queue a
command to the weight loader's or the DMA engine's stream (:data:`QUEUED`); ``END``, ``SYNC`` (waits for the
loader) and ``DSYNC`` (waits for the DMA engine) are the controller's own. While an instruction executes, the
program memory's port reads the next one (prefetch), so an instruction that takes more than one cycle is followed
by the next one's execution at once (:data:`CONTROLLER_TIMING`).

It stamps every retired instruction into the trace memory (:func:`~cimforge.gen.isa.trace_layout`) and keeps the
performance counters: total cycles, weight-load cycles, and per macro busy, stall (the macro takes part in the
running ``MAC`` pass but is not computing) and weight-write cycles. The host sees them through
:func:`host_link` (:class:`~cimforge.gen.host.WishboneHost` maps them to CSRs).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import CimConfig
from .engine import ControllerTiming, control_signature
from .dma import DmaEngine
from .isa import INSTRUCTIONS, Opcode, dma_layout, instr_layout, load_layout, status_layout, trace_layout
from .loader import WeightLoader

__all__ = ["Controller", "CONTROLLER_TIMING", "QUEUED", "host_link", "report_layout", "counter_layout"]

#: FETCH and DECODE before a run's first instruction; DECODE after a one-cycle instruction (its EXEC addressed
#: the next word, the port delivers it a cycle later); nothing after a longer one (prefetched while it ran).
CONTROLLER_TIMING = ControllerTiming(start=2, short=1, prefetched=0)

#: Program counter bits (the ``PC`` and ``START_PC`` CSRs, the trace entries).
PC_BITS = 16


def counter_layout() -> data.StructLayout:
    """One macro's performance counters, in CSR order (``MACRO_BASE + 4 * m + 0, 1, 2``)."""
    return data.StructLayout({"busy": unsigned(32), "stall": unsigned(32), "wload": unsigned(32)})


def report_layout(cfg: CimConfig) -> data.StructLayout:
    """What the controller reports to the host: STATUS, the executing instruction and the counters."""
    return data.StructLayout({
        "status": status_layout(), "pc": unsigned(PC_BITS), "op": unsigned(Opcode.as_shape().width),
        "cycles": unsigned(32), "load_cycles": unsigned(32), "trace_count": unsigned(32),
        "macros": data.ArrayLayout(counter_layout(), cfg.fabric.n_macros),
    })


def host_link(cfg: CimConfig) -> wiring.Signature:
    """Between controller and host interface, from the controller's side: ``start`` (a one-cycle pulse, only
    while idle) at ``start_pc``, and the report (:func:`report_layout`)."""
    return wiring.Signature({"start": In(1), "start_pc": In(PC_BITS), "report": Out(report_layout(cfg))})


#: Engines fed by a command queue (their instruction only queues), each with the instruction that waits for it
#: to drain.
QUEUED = {WeightLoader.name: Opcode.SYNC, DmaEngine.name: Opcode.DSYNC}


def _compute_specs() -> list:
    """The instructions that start a compute engine and wait for it."""
    return [s for s in INSTRUCTIONS if s.engine is not None and s.engine not in QUEUED]


class Controller(wiring.Component):
    """Fetches, decodes and dispatches the program.

    Attributes
    ----------
    TIMING : ControllerTiming

    Members
    -------
    host : Out(host_link(cfg))
        Start, start address and the report to the host interface.
    imem_rd : In(memory.ReadPort.Signature(addr_width, instr_layout))
        Program memory read port (synchronous).
    trace_w : In(memory.WritePort.Signature(addr_width, trace_layout))
        Trace memory write port.
    engines : Out(Signature({name: Out(control_signature(layout))}))
        One control port per compute engine, named by its ``InstrSpec.engine``.
    load : Out(stream.Signature(load_layout)); loader_busy : In(1)
        The weight loader's command queue and its state (``SYNC`` waits for it).
    dma : Out(stream.Signature(dma_layout)); dma_busy : In(1)
        The DMA engine's command queue and its state (``DSYNC`` waits for it).
    macro_busy, unit_en, macro_we : In(n_macros)
        Per macro: computing, taking part in the running pass, being written (for the counters).
    busy, done, error : Out(1)
        A program runs / reached ``END`` / stopped at an unknown opcode (levels, until the next start).

    Raises
    ------
    ValueError
        An instruction without an engine that the controller does not execute itself.
    """

    TIMING = CONTROLLER_TIMING
    #: The instructions the controller executes itself (their spec names no engine).
    OWN = (Opcode.END, Opcode.SYNC, Opcode.DSYNC)

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        for spec in INSTRUCTIONS:
            if spec.engine is None and spec.op not in self.OWN:
                raise ValueError(f"instruction {spec.name} has no engine and the controller does not execute it; "
                                 f"allowed without an engine: {', '.join(o.name for o in self.OWN)}")
        c, n = cfg.controller, cfg.fabric.n_macros
        engines = {s.engine: Out(control_signature(s.layout(cfg))) for s in _compute_specs()}
        super().__init__({
            "host": Out(host_link(cfg)),
            "imem_rd": In(memory.ReadPort.Signature(addr_width=ceil_log2(c.program_depth), shape=instr_layout(cfg))),
            "trace_w": In(memory.WritePort.Signature(addr_width=ceil_log2(c.trace_depth), shape=trace_layout())),
            "engines": Out(wiring.Signature(engines)),
            "load": Out(stream.Signature(load_layout(cfg))), "loader_busy": In(1),
            "dma": Out(stream.Signature(dma_layout(cfg))), "dma_busy": In(1),
            "macro_busy": In(n), "unit_en": In(n), "macro_we": In(n),
            "busy": Out(1), "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rep = self.host.report
        ir = Signal(instr_layout(cfg))
        pc = Signal(PC_BITS)
        running, done, error = Signal(), Signal(), Signal()
        fp = self.imem_rd
        # prefetch: while an instruction executes, the port reads the next one, so an instruction that took more
        # than one cycle is followed by the next EXEC at once (a one-cycle one by DECODE, then EXEC)
        in_exec = Signal()
        pf_valid = Signal()  # fp.data is imem[pc + 1]: the previous cycle was this instruction's EXEC or WAIT
        m.d.comb += [fp.addr.eq(Mux(in_exec, pc + 1, pc)), fp.en.eq(1)]
        engines = {s.engine: (s, getattr(self.engines, s.engine)) for s in _compute_specs()}
        for spec, port in engines.values():
            m.d.comb += port.args.eq(ir.args[spec.name.lower()])
        queues = {WeightLoader.name: (self.load, self.loader_busy), DmaEngine.name: (self.dma, self.dma_busy)}
        waits = {QUEUED[name]: busy for name, (_, busy) in queues.items()}
        for spec in INSTRUCTIONS:
            if spec.engine in queues:
                m.d.comb += queues[spec.engine][0].payload.eq(ir.args[spec.name.lower()])
        retire = Signal()
        start = Signal()
        m.d.comb += start.eq(self.host.start)
        with m.If(retire):
            m.d.sync += pc.eq(pc + 1)
        m.d.sync += pf_valid.eq(in_exec & ~retire)
        m.d.comb += [self.busy.eq(running), self.done.eq(done), self.error.eq(error),
                     rep.status.busy.eq(running), rep.status.done.eq(done), rep.status.error.eq(error),
                     rep.status.loader_busy.eq(self.loader_busy), rep.pc.eq(pc), rep.op.eq(ir.op.as_value())]
        engine_done = Signal()
        m.d.comb += engine_done.eq(Cat(port.done for _, port in engines.values()).any())
        self._trace(m, start, running, retire, pc, ir)

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [pc.eq(self.host.start_pc), running.eq(1), done.eq(0), error.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += ir.eq(fp.data)
                m.next = "EXEC"
            with m.State("EXEC"):
                m.d.comb += in_exec.eq(1)
                with m.Switch(ir.op):
                    for spec in INSTRUCTIONS:
                        with m.Case(spec.op):
                            if spec.op == Opcode.END:
                                m.d.comb += retire.eq(1)
                                m.d.sync += [running.eq(0), done.eq(1), pc.eq(pc)]
                                m.next = "IDLE"
                            elif spec.op in waits:
                                with m.If(~waits[spec.op]):
                                    m.d.comb += retire.eq(1)
                                    self._next_instruction(m, ir, fp, pf_valid)
                            elif spec.engine in queues:
                                queue = queues[spec.engine][0]
                                m.d.comb += queue.valid.eq(1)
                                with m.If(queue.ready):
                                    m.d.comb += retire.eq(1)
                                    self._next_instruction(m, ir, fp, pf_valid)
                            else:
                                m.d.comb += engines[spec.engine][1].start.eq(1)
                                m.next = "WAIT"
                    with m.Default():
                        m.d.sync += [running.eq(0), error.eq(1)]
                        m.next = "IDLE"
            with m.State("WAIT"):
                m.d.comb += in_exec.eq(1)
                with m.If(engine_done):
                    m.d.comb += retire.eq(1)
                    self._next_instruction(m, ir, fp, pf_valid)
        return m

    def _trace(self, m: Module, start, running, retire, pc, ir) -> None:
        """Trace entries of retired instructions and the performance counters (cleared by ``start``)."""
        cfg, rep = self.cfg, self.host.report
        # counters are registers of their own: the report also carries combinational fields
        cycles, load_cycles, trace_n = Signal(32), Signal(32), Signal(32)
        m.d.comb += [rep.cycles.eq(cycles), rep.load_cycles.eq(load_cycles), rep.trace_count.eq(trace_n)]
        tw = self.trace_w
        entry = Signal(trace_layout())
        m.d.comb += [entry.cycle.eq(cycles), entry.pc.eq(pc), entry.op.eq(ir.op.as_value()),
                     tw.addr.eq(trace_n), tw.data.eq(entry), tw.en.eq(retire & (trace_n < cfg.controller.trace_depth))]
        with m.If(retire):
            m.d.sync += trace_n.eq(trace_n + 1)
        with m.If(running):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(self.macro_we.any()):
            m.d.sync += load_cycles.eq(load_cycles + 1)
        with m.If(start & ~running):
            m.d.sync += [cycles.eq(0), load_cycles.eq(0), trace_n.eq(0)]
        for i in range(cfg.fabric.n_macros):
            c = Signal(counter_layout(), name=f"counters{i}")
            m.d.comb += rep.macros[i].eq(c)
            with m.If(start & ~running):
                m.d.sync += [c.busy.eq(0), c.stall.eq(0), c.wload.eq(0)]
            with m.Else():
                with m.If(running & self.macro_busy[i]):
                    m.d.sync += c.busy.eq(c.busy + 1)
                with m.If(self.unit_en[i] & ~self.macro_busy[i]):
                    m.d.sync += c.stall.eq(c.stall + 1)
                with m.If(self.macro_we[i]):
                    m.d.sync += c.wload.eq(c.wload + 1)

    @staticmethod
    def _next_instruction(m: Module, ir, fp, pf_valid) -> None:
        """On retire: straight to EXEC with the prefetched word when the port holds it, else to DECODE (the
        retiring cycle addresses the next word)."""
        with m.If(pf_valid):
            m.d.sync += ir.eq(fp.data)
            m.next = "EXEC"
        with m.Else():
            m.next = "DECODE"
