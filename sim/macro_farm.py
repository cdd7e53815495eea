"""A verification top holding many macro geometries in one Verilog build.

A Verilator build costs tens of seconds; thirty random geometries built one by one would cost many minutes. The
farm instantiates every geometry once, routes the shared stimulus ports to the macro that ``sel`` names, and
multiplexes its outputs back, so one build verifies them all. Ports are the macro's own (see
:class:`cimforge.gen.macro.CimMacro`), sized to the largest geometry; narrower macros use the low bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import MacroConfig
from ..gen.layouts import macro_op_layout, macro_result_layout
from ..gen.library import VerilogLibrary
from ..gen.macro import CimMacro

__all__ = ["MacroFarm", "farm_verilog"]


def _widths(cfg: MacroConfig) -> dict[str, int]:
    return {
        "op__payload": macro_op_layout(cfg).size, "mem_page": cfg.page_width, "mem_row": cfg.row_width,
        "mem_wdata": cfg.cols, "mem_rdata": cfg.cols, "res_y": macro_result_layout(cfg).size,
        "res_bits": cfg.cols, "res_pop": (cfg.tile_cols.bit_length()) * cfg.n_tiles,
        "res_total": cfg.cols.bit_length(),
    }


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
        w = {k: max(_widths(c)[k] for c in self.cfgs) for k in _widths(self.cfgs[0])}
        super().__init__({
            "sel": In(range(max(2, len(self.cfgs)))),
            "op__valid": In(1), "op__ready": Out(1), "op__payload": In(w["op__payload"]),
            "mem_we": In(1), "mem_re": In(1), "mem_page": In(w["mem_page"]), "mem_row": In(w["mem_row"]),
            "mem_wdata": In(w["mem_wdata"]), "mem_rdata": Out(w["mem_rdata"]),
            "res_valid": Out(1), "res_y": Out(w["res_y"]), "res_bits": Out(w["res_bits"]),
            "res_pop": Out(w["res_pop"]), "res_total": Out(w["res_total"]), "busy": Out(1),
        })

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
            with m.If(here):
                m.d.comb += [
                    mac.op.valid.eq(self.op__valid), mac.op.payload.as_value().eq(self.op__payload),
                    mac.mem_we.eq(self.mem_we), mac.mem_re.eq(self.mem_re),
                    mac.mem_page.eq(self.mem_page), mac.mem_row.eq(self.mem_row), mac.mem_wdata.eq(self.mem_wdata),
                ]
            with m.If(here):
                m.d.comb += [
                    self.op__ready.eq(mac.op.ready), self.mem_rdata.eq(mac.mem_rdata),
                    self.res_valid.eq(mac.res_valid), self.res_y.eq(mac.res_y.as_value()),
                    self.res_bits.eq(mac.res_bits), self.res_pop.eq(mac.res_pop.as_value()),
                    self.res_total.eq(mac.res_total), self.busy.eq(mac.busy),
                ]
        return m


def farm_verilog(cfgs: Sequence[MacroConfig], name: str, out: Path) -> Path:
    """Write the farm's Verilog (tiles first) to ``out`` and return it."""
    lib = VerilogLibrary(prefix=f"{name}_")
    top = verilog.convert(MacroFarm(cfgs, library=lib), name=name, emit_src=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(lib.verilog() + top)
    return out
