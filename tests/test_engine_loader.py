"""The weight loader alone in Amaranth's simulator: queued ``LOAD`` commands become the macro SRAM writes the
instruction-set model performs (rows wrapping into the next page, every macro of the mask at once), in the
cycles of :data:`~cimforge.gen.loader.LOAD_TIMING`. Random commands (seed fixed and printed) plus the corners:
an empty command, a command that wraps past the last row, the whole mask, back-to-back commands.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from cimforge.gen.isa import load_layout, pack_word
from cimforge.gen.loader import LOAD_TIMING, WeightLoader
from cimforge.presets import get_preset

TINY = get_preset("tiny")


class _Bench(Elaboratable):
    def __init__(self, cfg, wmem):
        self.loader = WeightLoader(cfg)
        self.wmem = memory.Memory(shape=unsigned(cfg.macro.cols), depth=cfg.fabric.weight_depth, init=wmem)

    def elaborate(self, platform):
        m = Module()
        m.submodules.loader, m.submodules.wmem = self.loader, self.wmem
        wiring.connect(m, self.loader.w_rd, self.wmem.read_port())
        return m


def _expected(cfg, wmem, cmds):
    """(mask, page, row, word) of every write, as cimforge.compiler.iss.FabricModel._load performs them."""
    out = []
    for c in cmds:
        page, row = c["page"], c["row0"]
        for i in range(c["count"]):
            out.append((c["mask"], page, row, wmem[c["src"] + i]))
            row += 1
            if row == cfg.macro.rows:
                row, page = 0, page + 1
    return out


def _run(cfg, wmem, cmds):
    """Push all commands (as fast as the queue takes them); return the writes and the busy cycles from the
    first pop (the cycle after the first push) to the last write inclusive."""
    bench = _Bench(cfg, wmem)
    ld = bench.loader
    writes, busy = [], []

    async def tb(ctx):
        for c in cmds:
            ctx.set(ld.cmd.payload.as_value(), pack_word(load_layout(cfg), c))
            ctx.set(ld.cmd.valid, 1)
            await ctx.tick().until(ld.cmd.ready)
        ctx.set(ld.cmd.valid, 0)

    async def monitor(ctx):
        n = 0
        async for _clk, _rst, we, page, row, data, b in ctx.tick().sample(ld.mem_we, ld.mem_page, ld.mem_row,
                                                                        ld.mem_wdata, ld.busy):
            n += 1
            if we:
                writes.append((we, page, row, data))
            busy.append(b)
            if n > 4 * (sum(c["count"] for c in cmds) + 10):
                break

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.add_testbench(monitor, background=True)
    sim.run_until(1e-6 * 4 * (sum(c["count"] for c in cmds) + 12))
    return writes, busy


def _command(cfg, rng, **over):
    rows, pages = cfg.macro.rows, cfg.macro.pages
    c = {"src": int(rng.integers(0, 20)), "count": int(rng.integers(0, rows * pages)),
         "mask": int(rng.integers(1, 1 << cfg.fabric.n_macros)), "page": int(rng.integers(0, pages)),
         "row0": int(rng.integers(0, rows))}
    c.update(over)
    page_rows = (pages - c["page"]) * rows - c["row0"]
    c["count"] = min(c["count"], page_rows)
    return c


@pytest.mark.parametrize("seed", range(3))
def test_loader_writes_and_timing(seed):
    seed = 5000 + seed
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    cfg = TINY
    wmem = [int(v) for v in rng.integers(0, 1 << cfg.macro.cols, cfg.fabric.weight_depth)]
    full = (1 << cfg.fabric.n_macros) - 1
    cmds = [_command(cfg, rng, row0=cfg.macro.rows - 2, page=0, count=5, mask=full),  # wraps into page 1
            _command(cfg, rng, count=0),                                              # empty
            _command(cfg, rng), _command(cfg, rng)]
    writes, busy = _run(cfg, wmem, cmds)
    assert writes == _expected(cfg, wmem, cmds)
    # from the first pop, back to back: count + per_command cycles per command (an empty one: its pop),
    # the last one's overhead beyond the pop
    first = busy.index(1)
    last = len(busy) - 1 - busy[::-1].index(1)
    assert all(busy[first:last + 1])
    n = sum(c["count"] + LOAD_TIMING.per_command if c["count"] else 1 for c in cmds)
    expected = n - LOAD_TIMING.per_command + LOAD_TIMING.overhead if cmds[-1]["count"] else n
    assert last - first + 1 == expected


def test_one_command_takes_count_plus_overhead():
    cfg = TINY
    wmem = list(range(cfg.fabric.weight_depth))
    cmd = {"src": 3, "count": 6, "mask": 1, "page": 1, "row0": 0}
    writes, busy = _run(cfg, wmem, [cmd])
    assert [w[3] for w in writes] == [3, 4, 5, 6, 7, 8] and {w[0] for w in writes} == {1}
    assert sum(busy) == cmd["count"] + LOAD_TIMING.overhead
    assert WeightLoader.TIMING is LOAD_TIMING and LOAD_TIMING.overhead == 2
