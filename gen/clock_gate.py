"""Integrated clock gates for the fabric's macros and graph engines (docs/architecture.md, "Clock gating").

A macro is idle most of a network's cycles (waiting on the external memory, during pools, residual adds and the
other macros' layers), and in an idle cycle none of its registers or bit cells changes. Silicon gates the clock
of such a block with an integrated clock-gating cell (ICG): a latch, transparent while the clock is low, holds
the enable through the high phase, and the gated clock is ``clk & latched_enable``, free of glitches. The fabric
does the same per macro. Besides the power it saves, it is what makes a simulation of 16 macros affordable:
Verilator evaluates the logic of a clock domain only on that domain's edges, so an idle macro's adder trees cost
nothing (the tiles' compute was half of a ResNet-50 simulation's time).

The ICG is a library cell here as in a standard-cell flow: a few lines of Verilog (:data:`ICG_VERILOG`), added
to the design's :class:`~cimforge.gen.library.VerilogLibrary` and instantiated by name. Amaranth has no latch, and
the Amaranth-simulated fabric (no library) runs its macros and engines on the fabric clock: the same behaviour,
since the gate only removes edges at which no state would change (:func:`macro_clock_enable`,
:func:`engine_clock_enable`).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Signal

from .library import VerilogLibrary

__all__ = ["ICG_NAME", "ICG_VERILOG", "GATED_ENGINES", "macro_clock_enable", "engine_clock_enable", "gated_clock"]

#: Engines on a gated clock of their own: the graph engines, idle in every CNN, and the ``LUT`` engine (its
#: 256 table registers). Their registers change only at ``start``, while ``busy`` and in the two cycles after it
#: (the last write's and forwarding registers settle);
#: the MAC engine's gather units run ahead of ``busy`` and the loader and DMA engine take command queues, so
#: those stay on the fabric clock.
GATED_ENGINES = ("graph", "relax", "spmv", "lut")

#: Module name of the clock-gating cell (before the library's prefix).
ICG_NAME = "cim_icg"

#: The cell: a latch transparent while ``clk`` is low (the enable may change at any time in the low phase, e.g.
#: a testbench driving on the falling edge), then ``gclk = clk & en_l``.
ICG_VERILOG = """\
module {name}(clk, en, gclk);
  input clk;
  input en;
  output gclk;
  reg en_l = 1'b0;
  /* verilator lint_off LATCH */  // the latch is the cell's purpose
  always @(clk or en)
    if (!clk) en_l = en;
  /* verilator lint_on LATCH */
  assign gclk = clk & en_l;
endmodule
"""


def macro_clock_enable(m: Module, mac, name: str) -> Signal:
    """The enable of macro ``mac``'s clock (``mac`` its fabric-side interface, :meth:`CimMacro.signature_for`;
    signals named after ``name``): high in every cycle at whose end some macro register or bit cell may change, i.e. while the fabric is in reset, an
    operation is offered (``op.valid``: accepted at the next edge when ready), a page word is written or read,
    the macro is busy, its last compute cycle's partial sums are being accumulated (``busy`` one cycle
    earlier, :data:`~cimforge.gen.macro.LATENCY` = 1), or its result pulse ends (``res_valid``). In any other
    cycle every register of the macro would keep its value, except the tiles' partial-sum and stage-1 registers,
    which are rewritten in every compute cycle before they are read (docs/architecture.md, "Clock gating")."""
    busy_q = Signal(name=f"{name}_busy_q")
    m.d.sync += busy_q.eq(mac.busy)
    en = Signal(name=f"{name}_clk_en")
    m.d.comb += en.eq(ResetSignal() | mac.op.valid | mac.mem_we | mac.mem_re | mac.busy | busy_q | mac.res_valid)
    return en


def engine_clock_enable(m: Module, engine, name: str) -> Signal:
    """The enable of a :data:`GATED_ENGINES` engine's clock: reset, ``start``, ``busy`` and ``busy`` one and two
    cycles earlier (signals named after ``name``)."""
    q1, q2 = Signal(name=f"{name}_busy_q1"), Signal(name=f"{name}_busy_q2")
    m.d.sync += [q1.eq(engine.busy), q2.eq(q1)]
    en = Signal(name=f"{name}_clk_en")
    m.d.comb += en.eq(ResetSignal() | engine.start | engine.busy | q1 | q2)
    return en


def gated_clock(m: Module, library: VerilogLibrary, en: Signal, name: str) -> Signal:
    """A clock ``ClockSignal("sync") & latched en`` from an ICG cell instance called ``name``."""
    cell = library.raw(ICG_NAME, ICG_VERILOG)
    gclk = Signal(name=f"{name}_gclk")
    m.submodules[name] = Instance(cell, i_clk=ClockSignal(), i_en=en, o_gclk=gclk)
    return gclk
