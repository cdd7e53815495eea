"""The energy/throughput model and its calibration to the ISSCC 2022 macro (no Yosys needed)."""

from __future__ import annotations

import math

import pytest

from cimforge import MacroConfig, get_preset
from cimforge.synth.calibrate import calibration_report, fit_activity, round_sig
from cimforge.synth.energy import (CALIBRATED, EVENTS, PUBLISHED, TECH, Constants, MacroOp, area_mm2,
                                   cycle_counts, ideal_tops, macro_figures, op_counts, op_energy_fj, tree_adders)


def test_calibrated_isscc22_within_10_percent_of_published():
    cal = calibration_report()
    assert cal["published_tops_per_w"] == 27.38
    assert abs(cal["error_percent"]) < 10
    # and the model at the calibration point is what the report says
    f = macro_figures(get_preset("isscc22").macro, MacroOp(8, 8))
    assert f["tops_per_w"] == pytest.approx(cal["calibrated_tops_per_w"])
    assert abs(f["tops_per_w"] - 27.38) / 27.38 < 0.10


def test_constant_in_use_is_the_rounded_fit():
    # the checked-in constant must be the fit (two significant digits), not a hand-tuned number
    assert CALIBRATED.activity == round_sig(fit_activity(), 2)
    assert 0.05 < CALIBRATED.activity < 0.5  # a physically plausible switching activity


def test_report_states_estimates_and_constants():
    cal = calibration_report()
    assert "Estimates" in cal["statement"] and "27.38" in cal["statement"]
    assert cal["constants"]["activity"]["fitted"] is True
    assert len(cal["constants"]) <= 2


def test_every_event_has_a_source():
    assert set(EVENTS) == {"cell", "fa", "shift_add", "reg", "buffer"}
    for e in EVENTS.values():
        assert e.fj > 0 and len(e.source) > 20 and e.description


def test_tree_adders_matches_closed_form():
    # balanced tree of ripple-carry adders over n 1-bit terms: 2n - log2(n) - 2 (ZigZag-IMC's count)
    for n in (2, 4, 8, 32, 64, 256):
        assert tree_adders([1] * n) == 2 * n - int(math.log2(n)) - 2
    assert tree_adders([1]) == 0
    assert tree_adders([1, 1, 1]) == 1 + 2  # (1+1) -> 2 bits, + 1 -> a 2-bit adder


def test_counts_follow_geometry():
    m = MacroConfig(rows=32, pages=16, cols=64)
    c8, c1 = cycle_counts(m, MacroOp(8, 8)), cycle_counts(m, MacroOp(8, 1))
    assert c8["cell"] == c1["cell"] == 32 * 64
    assert c8["shift_add"] == 8 * m.acc_width and c1["shift_add"] == 64 * m.acc_width
    op = op_counts(m, MacroOp(8, 8))
    assert op["cell"] == 8 * 32 * 64 and op["buffer"] == 0
    assert op_counts(m, MacroOp(8, 8), with_buffers=True)["buffer"] == 32 * 8


def test_energy_scales_with_activity_and_voltage():
    counts = {"fa": 10, "reg": 4}
    full = 10 * EVENTS["fa"].fj + 4 * EVENTS["reg"].fj
    assert op_energy_fj(counts, Constants(1.0)) == pytest.approx(full * (TECH.vdd / 0.9) ** 2)
    assert op_energy_fj(counts, Constants(0.5)) == pytest.approx(0.5 * op_energy_fj(counts, Constants(1.0)))
    with pytest.raises(ValueError, match="unknown energy events.*allowed"):
        op_energy_fj({"dram": 1})


def test_precision_trends():
    m = get_preset("isscc22").macro
    e = {b: macro_figures(m, MacroOp(b, b))["energy_per_mac_fj"] for b in (1, 2, 4, 8)}
    assert e[1] < e[2] < e[4] < e[8]
    with pytest.raises(ValueError, match="allowed"):
        macro_figures(get_preset("tiny").macro.__class__(rows=8, pages=1, cols=8, max_wb=4), MacroOp(8, 8))


def test_throughput_and_area_definitions():
    m = get_preset("isscc22").macro
    f = macro_figures(m, MacroOp(8, 8), transistors=1e6)
    # 32 rows x 64 cols / 64 one-bit products per 8b MAC = 32 MACs per cycle, 2 ops each, at 3 ns
    assert f["tops"] == pytest.approx(2 * 32 / 3e-9 / 1e12)
    assert f["tops"] == pytest.approx(ideal_tops(m, MacroOp(8, 8)))
    assert f["area_mm2"] == pytest.approx(area_mm2(1e6)) == pytest.approx(1e6 * 0.614 / 4 * 1e-6)
    assert f["tops_per_mm2"] == pytest.approx(f["tops"] / f["area_mm2"])
    # the published macro's area, for scale: 32 Kb at 1.041 Mb/mm^2
    assert PUBLISHED["area_mm2"] == pytest.approx(0.0315, abs=0.0001)
