"""cocotb testbench of the CIM macro: drives the generated Verilog through its ports and scores every result,
and its cycle count, against the golden model (:class:`cimforge.golden.macro.MacroModel`).

The plan (which geometries, seeds, how many operations) comes as JSON in ``CIMFORGE_MACRO_PLAN``; the DUT is
either one macro or a :class:`~cimforge.sim.macro_farm.MacroFarm` (then ``sel`` picks the macro). Stimulus
comes from :func:`cimforge.sim.macro_stimulus.actions`, shared with the demo and the Amaranth-simulator tests.

Timing discipline: inputs change and outputs are sampled at falling edges; ``op.ready`` depends on state only,
so an operation presented while ready is high is accepted at the next rising edge.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from ..config import MacroConfig
from .macro_stimulus import MacroDriver


class CocotbIO:
    """The driver's port access over cocotb: a tick is a falling edge (mid-cycle, outputs settled)."""

    def __init__(self, dut):
        self.dut = dut

    async def tick(self) -> None:
        await FallingEdge(self.dut.clk)

    def get(self, name: str) -> int:
        value = getattr(self.dut, name).value  # a Logic for 1-bit ports, a LogicArray otherwise
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)

    def set(self, name: str, value: int) -> None:
        getattr(self.dut, name).value = value


def _init_inputs(dut) -> None:
    for name in ("op__valid", "mem_we", "mem_re", "mem_page", "mem_row", "mem_wdata", "op__payload"):
        getattr(dut, name).value = 0


@cocotb.test()
async def macro_random_and_corners(dut):
    """Every macro in the plan: fill, read back, corner operations, random operations with interleaved writes."""
    plan = json.loads(os.environ["CIMFORGE_MACRO_PLAN"])
    farm = plan.get("farm", False)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    _init_inputs(dut)
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    total_ops = total_cycles = 0
    for i, entry in enumerate(plan["macros"]):
        cfg = MacroConfig(**entry["cfg"])
        label = f"macro[{i}] rows={cfg.rows} pages={cfg.pages} cols={cfg.cols} seed={entry['seed']}"
        drv = MacroDriver(CocotbIO(dut), cfg, label, i if farm else None)
        await drv.run(entry)
        total_ops += drv.checked
        total_cycles += drv.cycle
        dut._log.info("%s: %d operations bit-exact, %d compute cycles (%d planes skipped), %d cycles in all",
                      label, drv.checked, drv.compute_cycles, drv.skipped_planes, drv.cycle)
    dut._log.info("all %d macros: %d operations bit-exact in %d cycles", len(plan["macros"]), total_ops,
                  total_cycles)
    assert total_ops > 0, "the plan produced no operation"
