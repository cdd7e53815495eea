"""The hardware requantisation pipeline (Amaranth simulator) against golden/requant.py, bit for bit.

Random int32 accumulators, multipliers and shifts over the whole TFLite range, plus the corners: the most
negative and positive accumulators, zero and saturated multipliers, ties of both rounding steps, saturating left
shifts; in both rounding forms of the golden model. Seed fixed and printed.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimforge.gen.requant import MBQM_LATENCY, Mbqm
from cimforge.golden.requant import multiply_by_quantized_multiplier

SEED = 7


def _cases(rng):
    n = 1500
    x = np.concatenate([rng.integers(-2**31, 2**31, n), rng.integers(-3000, 3000, n),
                        [-2**31, 2**31 - 1, 0, -1, 1, 2**30, -2**30, 3, -3, 5, -5, 2**24, -2**24]])
    m = rng.integers(2**30, 2**31, x.size)
    s = np.concatenate([rng.integers(-31, 31, n), rng.integers(-12, 3, x.size - n)])
    m[:40] = 0
    m[40:80] = 2**31 - 1
    m[80:120] = 2**30       # ties of the doubling high multiply
    s[120:200] = 30         # saturating left shifts (TFLite shifts are -31..30)
    s[200:260] = -31
    return x, m, s


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mbqm_matches_golden(rounding):
    print(f"seed {SEED}, rounding {rounding}")
    rng = np.random.default_rng(SEED)
    x, mult, shift = _cases(rng)
    lanes = 4
    pad = -x.size % lanes
    x, mult, shift = (np.concatenate([a, a[:pad]]) for a in (x, mult, shift))
    expected = multiply_by_quantized_multiplier(x, mult, shift, rounding)
    dut = Mbqm(lanes, rounding=rounding)
    got: list[int] = []

    async def bench(ctx):
        n = x.size // lanes
        for i in range(n + MBQM_LATENCY + 1):
            ctx.set(dut.i_valid, int(i < n))
            if i < n:
                for k in range(lanes):
                    j = i * lanes + k
                    ctx.set(dut.x[k], int(x[j]))
                    ctx.set(dut.mult[k], int(mult[j]))
                    ctx.set(dut.shift[k], int(shift[j]))
            await ctx.tick()
            if ctx.get(dut.o_valid):
                got.extend(ctx.get(dut.y[k]) for k in range(lanes))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got_a = np.array(got)
    assert got_a.size == x.size
    bad = np.nonzero(got_a != expected)[0]
    assert not bad.size, (f"{bad.size} mismatches, first at x={x[bad[0]]} M={mult[bad[0]]} shift={shift[bad[0]]}: "
                          f"expected {expected[bad[0]]}, got {got_a[bad[0]]}")
