"""A verification top holding many macro geometries in one Verilog build.

A Verilator build costs tens of seconds; thirty random geometries built one by one would cost many minutes. The
farm instantiates every geometry once, routes the shared stimulus ports to the macro that ``sel`` names, and
multiplexes its outputs back, so one build verifies them all. Ports are the macro's own, derived from its
signature (:func:`cimforge.sim.macro_stimulus.macro_ports`), sized to the largest geometry; narrower macros use
the low bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import MacroConfig
from ..gen.library import VerilogLibrary
from ..gen.macro import CimMacro
from .macro_stimulus import macro_ports

__all__ = ["MacroFarm", "farm_verilog"]


class MacroFarm(wiring.Component):
    """``len(cfgs)`` macros behind one set of ports; ``sel`` picks the macro that sees the stimulus and the clock.

    Parameters
    ----------
    cfgs : sequence of MacroConfig
    library : VerilogLibrary, optional
        Passed to every macro (tiles shared by name across geometries with equal tile parameters).
    """

    def __init__(self, cfgs: Sequence[MacroConfig], library: VerilogLibrary | None = None):
        self.cfgs = list(cfgs)
        self.library = library
        ports = [macro_ports(c) for c in self.cfgs]
        members = {"sel": In(range(max(2, len(self.cfgs))))}
        for name, (flow, _) in ports[0].items():
            members[name] = flow(max(p[name][1] for p in ports))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for i, cfg in enumerate(self.cfgs):
            # Each macro runs on its own clock, gated by sel: a simulator then evaluates only the selected
            # macro's registers. The bench changes sel only while clk is low, so the gated clock cannot glitch.
            domain = f"m{i}"
            m.domains += ClockDomain(domain)
            here = Signal(name=f"sel{i}")
            m.d.comb += [here.eq(self.sel == i), ClockSignal(domain).eq(ClockSignal() & here),
                         ResetSignal(domain).eq(ResetSignal())]
            mac = CimMacro(cfg, library=self.library)
            m.submodules[f"m{i}"] = DomainRenamer({"sync": domain})(mac)
            # inputs are gated too, so that stimulus for one macro does not re-evaluate the others' logic
            wires = []
            for path, member, value in mac.signature.flatten(mac):
                port, value = getattr(self, "__".join(map(str, path))), Value.cast(value)
                wires.append(value.eq(port) if member.flow == In else port.eq(value))
            with m.If(here):
                m.d.comb += wires
        return m


def farm_verilog(cfgs: Sequence[MacroConfig], name: str, out: Path) -> Path:
    """Write the farm's Verilog (tiles first) to ``out`` and return it."""
    lib = VerilogLibrary(prefix=f"{name}_")
    top = verilog.convert(MacroFarm(cfgs, library=lib), name=name, emit_src=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(lib.verilog() + top)
    return out
