"""Formal equivalence of the requantisation pipeline (gen/requant.py Mbqm) with a word-level
multiply_by_quantized_multiplier (golden/requant.py), both rounding forms (synth/formal.py, docs/formal.md).

The reference is itself checked against the golden numpy function on random and corner inputs (Amaranth
simulation), so the proof's reference is the golden model's, not a second reading of the RTL.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from cimforge.gen.requant import MBQM_LATENCY, Mbqm
from cimforge.golden.requant import INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier
from cimforge.synth.formal import mbqm_reference, prove_requant
from cimforge.synth.yosys import YosysError

SEED = 1515


class _Ref(wiring.Component):
    """:func:`mbqm_reference` alone, for simulation against the golden function."""

    def __init__(self, rounding):
        self.rounding = rounding
        super().__init__({"x": In(signed(32)), "mult": In(signed(32)), "shift": In(signed(8)), "y": Out(signed(32))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(mbqm_reference(m, self.x, self.mult, self.shift, self.rounding))
        return m


def _cases(rng, n):
    edge_x = [0, 1, -1, INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1, 1 << 30, -(1 << 30)]
    edge_m = [0, 1 << 30, INT32_MAX, INT32_MIN, (1 << 30) + 1, -1, 1]
    edge_s = [-31, -30, -1, 0, 1, 29, 30]
    cases = [(x, mm, s) for x in edge_x for mm in edge_m for s in edge_s]
    for _ in range(n):
        cases.append((int(rng.integers(INT32_MIN, INT32_MAX + 1)), int(rng.integers(INT32_MIN, INT32_MAX + 1)),
                      int(rng.integers(-31, 31))))
    return cases


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_reference_matches_golden(rounding):
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    cases = _cases(rng, 300)
    dut = _Ref(rounding)
    got = []

    async def bench(ctx):
        for x, mm, s in cases:
            ctx.set(dut.x, x)
            ctx.set(dut.mult, mm)
            ctx.set(dut.shift, s)
            got.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    xs, ms, ss = (np.array(c, dtype=np.int64) for c in zip(*cases))
    want = multiply_by_quantized_multiplier(xs, ms, ss, rounding)
    assert got == [int(v) for v in want]


@pytest.mark.synth
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requant_equals_reference(rounding):
    res = prove_requant(rounding)
    print(res)
    assert res.proven, str(res)


class _Wrapped(wiring.Component):
    """A correct Mbqm lane with its input ``x`` or its output ``y`` altered when the input shift was ``when``."""

    def __init__(self, rounding, where, when=-1):
        self.inner = Mbqm(1, rounding=rounding)
        self.where, self.when = where, when
        super().__init__(self.inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        shifts = [Signal(signed(8), name=f"s{i}") for i in range(4)]
        m.d.sync += [shifts[0].eq(self.shift[0])] + [shifts[i].eq(shifts[i - 1]) for i in range(1, 4)]
        x, y = self.x[0], inner.y[0]
        if self.where == "x":      # the accumulator's bit 3 inverted on its way in
            x = x ^ ((self.shift[0] == self.when) << 3)
        else:                      # the result's bit 0 inverted on its way out
            y = y ^ (shifts[-1] == self.when)
        m.d.comb += [inner.i_valid.eq(self.i_valid), inner.x[0].eq(x), inner.mult.eq(self.mult),
                     inner.shift.eq(self.shift), self.o_valid.eq(inner.o_valid), self.busy.eq(inner.busy),
                     self.y[0].eq(y)]
        return m


@pytest.mark.synth
@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("where", ["x", pytest.param("y", marks=pytest.mark.slow)])  # y: ~40 s each
def test_injected_bug_gives_counterexample(rounding, where):
    res = prove_requant(rounding, dut=lambda r: _Wrapped(r, where), path="dut.inner",
                        name=f"bug_requant_{rounding}_{where}")
    print(res)
    assert not res.proven
    # a wrong operand is caught at the operand register (one cycle after the input), a wrong result at the end
    assert res.failures[0] == ((2, "x1_0") if where == "x" else (MBQM_LATENCY + 1, "y")), res.failures


@pytest.mark.synth
def test_other_rounding_form_gives_counterexample():
    """The single-rounding pipeline is not the double-rounding function: the proof must tell them apart."""
    res = prove_requant("double", dut=lambda r: Mbqm(1, rounding="single"), name="bug_requant_wrong_form")
    print(res)
    assert not res.proven and res.failures[0] == (2, "x1_0"), res.failures  # it skips the saturating left shift


@pytest.mark.synth
def test_renamed_registers_fail_loudly():
    with pytest.raises(YosysError) as e:
        prove_requant("single", path="dut.nosuch", name="bad_requant_names")
    assert e.value.step == "prove"


def test_bad_rounding():
    with pytest.raises(ValueError, match="rounding must be one of"):
        prove_requant("half")
