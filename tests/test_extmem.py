"""The external memory model (gen/extmem.py) alone in Amaranth's simulator, driven by a minimal AXI4 master:
its documented timing (read beats at ``t + latency + k * interval``, write beats accepted from ``t + 1`` every
``interval`` cycles, the response ``latency`` cycles after the last beat), ``wstrb``, back-pressure on R, and
backdoor access."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from cimforge.gen.axi import axi4_signature
from cimforge.gen.extmem import ExtMemory


def simulate(ext: ExtMemory, bench) -> None:
    sim = Simulator(ext)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("latency,interval", [(1, 1), (4, 1), (3, 3)])
def test_read_burst_timing_and_data(latency, interval):
    ext = ExtMemory(64, 32, latency, interval, init=[1000 + i for i in range(64)])
    got = []

    async def bench(ctx):
        axi = ext.axi
        ctx.set(axi.arvalid, 1)
        ctx.set(axi.araddr, 5 * 4)
        ctx.set(axi.arlen, 3)
        ctx.set(axi.rready, 1)
        assert ctx.get(axi.arready)
        await ctx.tick()  # handshake in cycle 0
        ctx.set(axi.arvalid, 0)
        for cycle in range(1, 40):
            if ctx.get(axi.rvalid):
                got.append((cycle, ctx.get(axi.rdata), ctx.get(axi.rlast)))
            await ctx.tick()
    simulate(ext, bench)
    assert got == [(latency + k * interval, 1005 + k, int(k == 3)) for k in range(4)]


def test_read_beat_held_without_rready():
    ext = ExtMemory(16, 32, 2, 1, init=list(range(16)))
    seen = []

    async def bench(ctx):
        axi = ext.axi
        ctx.set(axi.arvalid, 1)
        ctx.set(axi.arlen, 1)
        await ctx.tick()
        ctx.set(axi.arvalid, 0)
        for cycle in range(1, 12):
            ctx.set(axi.rready, cycle >= 6)
            if ctx.get(axi.rvalid) and cycle >= 6:
                seen.append((cycle, ctx.get(axi.rdata)))
            await ctx.tick()
    simulate(ext, bench)
    assert seen == [(6, 0), (7, 1)]


@pytest.mark.parametrize("latency,interval", [(1, 1), (5, 2)])
def test_write_burst_timing_strobes_and_backdoor(latency, interval):
    ext = ExtMemory(32, 32, latency, interval, init=[0x11111111] * 32)
    accepted, resp = [], []

    async def bench(ctx):
        axi = ext.axi
        ctx.set(axi.awvalid, 1)
        ctx.set(axi.awaddr, 8 * 4)
        ctx.set(axi.awlen, 2)
        ctx.set(axi.bready, 1)
        await ctx.tick()  # handshake in cycle 0
        ctx.set(axi.awvalid, 0)
        k = 0
        for cycle in range(1, 40):
            if k < 3:
                ctx.set(axi.wvalid, 1)
                ctx.set(axi.wdata, 0xA0A0A0A0 + k)
                ctx.set(axi.wstrb, 0b0011 if k == 1 else 0b1111)
                ctx.set(axi.wlast, k == 2)
            else:
                ctx.set(axi.wvalid, 0)
            if k < 3 and ctx.get(axi.wready):
                accepted.append(cycle)
                k += 1
            if ctx.get(axi.bvalid):
                resp.append(cycle)
            await ctx.tick()
        assert [ctx.get(ext.mem.data[i]) for i in range(7, 12)] == [
            0x11111111, 0xA0A0A0A0, 0x1111A0A1, 0xA0A0A0A2, 0x11111111]
    simulate(ext, bench)
    assert accepted == [1 + k * interval for k in range(3)]
    assert resp == [accepted[-1] + latency]


def test_signature_checks_the_data_width():
    assert axi4_signature(64).members["wstrb"].shape == 8 and axi4_signature(64).members["wdata"].shape == 64
    with pytest.raises(ValueError, match="AXI data width 48"):
        axi4_signature(48)
    with pytest.raises(ValueError, match="latency 0"):
        ExtMemory(16, 32, 0, 1)
