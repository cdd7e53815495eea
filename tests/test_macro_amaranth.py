"""The macro in Amaranth's simulator: the fast inner loop of development (no Verilog, no C++ build).

The same scoreboarded driver and stimulus as the cocotb benches (cimforge.sim.macro_stimulus) run against the
inline (non-instanced) macro. A test also shows that the scoreboard catches a fault: a macro whose tile
storage drops a column's writes must fail with a report naming the lane, columns and tile.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from cimforge.config import MacroConfig
from cimforge.gen.layouts import macro_op_layout
from cimforge.gen.macro import CimMacro
from cimforge.sim.macro_stimulus import AmaranthIO, MacroDriver, MismatchError, random_geometries

SEED = 7


def run_macro(cfg: MacroConfig, seed: int, n_ops: int, dut=None) -> MacroDriver:
    dut = dut or CimMacro(cfg)
    result = {}

    async def bench(ctx):
        drv = MacroDriver(AmaranthIO(ctx, dut), cfg, f"amaranth rows={cfg.rows} pages={cfg.pages} cols={cfg.cols}")
        await drv.run({"seed": seed, "n_ops": n_ops})
        result["driver"] = drv

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["driver"]


@pytest.mark.parametrize("cfg", [
    MacroConfig(rows=5, pages=2, cols=16),
    MacroConfig(rows=1, pages=1, cols=8),
    MacroConfig(rows=3, pages=3, cols=8, max_wb=2, max_ab=3),
    MacroConfig(rows=8, pages=1, cols=8, max_wb=1, max_ab=1),
], ids=lambda c: f"r{c.rows}p{c.pages}c{c.cols}w{c.max_wb}a{c.max_ab}")
def test_macro_matches_golden(cfg):
    """Hand-picked corners of the geometry space."""
    print(f"seed {SEED}")
    drv = run_macro(cfg, SEED, 60)
    assert drv.checked >= 60  # corners + random operations, all scored
    assert drv.skipped_planes > 0 or cfg.max_ab == 1


def _small_random_geometries():
    return [c for c in random_geometries() if c.bits <= 1024][:4]


@pytest.mark.parametrize("cfg", _small_random_geometries(), ids=lambda c: f"r{c.rows}p{c.pages}c{c.cols}")
def test_random_small_geometries(cfg):
    """Small members of the cocotb benches' random geometries, in the fast suite."""
    print(f"seed {SEED + 1}")
    assert run_macro(cfg, SEED + 1, 40).checked >= 40


class StuckAtZero(wiring.Component):
    """The macro with one bit of one input port stuck at 0 (a fault the scoreboard must catch)."""

    def __init__(self, cfg: MacroConfig, port: str, bit: int):
        self.inner, self.port, self.bit = CimMacro(cfg), port, bit
        super().__init__(self.inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        for name, member in self.signature.members.items():
            if name == "op":
                m.d.comb += [inner.op.valid.eq(self.op.valid), self.op.ready.eq(inner.op.ready)]
                src = self.op.payload.as_value()
                if self.port == "op__payload":
                    src = src & ~(1 << self.bit)
                m.d.comb += inner.op.payload.as_value().eq(src)
            elif member.flow == wiring.In:
                src = getattr(self, name)
                if name == self.port:
                    src = src & ~(1 << self.bit)
                m.d.comb += getattr(inner, name).eq(src)
            else:
                m.d.comb += getattr(self, name).eq(getattr(inner, name))
        return m


def test_scoreboard_catches_a_stuck_bit_line():
    """Bit 3 of every written word stuck at 0: the read-back check names column 3."""
    cfg = MacroConfig(rows=4, pages=1, cols=8)
    with pytest.raises(MismatchError) as err:
        run_macro(cfg, SEED, 20, dut=StuckAtZero(cfg, "mem_wdata", 3))
    print(err.value)
    assert "read-back" in str(err.value) and "columns [3]" in str(err.value)


def test_scoreboard_catches_a_stuck_activation_bit():
    """Bit 0 of activation x[0] stuck at 0: a MAC result is reported with its lane, columns and tile."""
    cfg = MacroConfig(rows=4, pages=1, cols=8)
    x_offset = macro_op_layout(cfg)["x"].offset
    with pytest.raises(MismatchError) as err:
        run_macro(cfg, SEED, 20, dut=StuckAtZero(cfg, "op__payload", x_offset))
    print(err.value)
    assert "op #" in str(err.value) and "lane y[" in str(err.value) and "tile" in str(err.value)
