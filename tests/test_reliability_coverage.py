"""Issue 15 item 7: the coverage reader (sim/coverage.py) on a synthetic Verilator ``coverage.dat``, and the
real ``make coverage`` run of the macro bench (slow, cocotb)."""

from __future__ import annotations

import pytest

from cimforge.sim.coverage import format_table, read_coverage


def _point(page: str, line: int, name: str, hier: str, count: int) -> str:
    fields = {"t": page.split("/")[0][2:], "page": page, "f": "/x/d.v", "l": str(line), "n": "0", "o": name,
              "h": hier}
    return "C '" + "".join(f"\x01{k}\x02{v}" for k, v in fields.items()) + f"' {count}\n"


def test_read_coverage_merges_instances(tmp_path):
    dat = tmp_path / "coverage.dat"
    dat.write_text("# SystemC::Coverage-3\n"
                   + _point("v_line/mac", 10, "block", "TOP.m0", 0) + _point("v_line/mac", 10, "block", "TOP.m1", 3)
                   + _point("v_line/mac", 12, "if", "TOP.m0", 0) + _point("v_line/mac", 12, "if", "TOP.m1", 0)
                   + _point("v_toggle/mac", 5, "x:0", "TOP.m0", 2) + _point("v_toggle/mac", 5, "x:1", "TOP.m0", 0)
                   + _point("v_line/top", 3, "block", "TOP", 1) + _point("v_branch/top", 3, "if", "TOP", 0))
    cov = read_coverage(dat)
    assert set(cov) == {"mac", "top"}
    mac = cov["mac"]
    assert (mac.lines, mac.lines_hit, mac.toggles, mac.toggles_hit) == (2, 1, 2, 1)
    assert mac.missed_lines == [12]
    table = format_table("t", cov)
    assert "| mac | 1/2 (50.0%) | 1/2 (50.0%) |" in table and "| **total** | 2/3 (66.7%)" in table
    assert "mac: lines 12" in table


@pytest.mark.slow
@pytest.mark.cocotb
def test_macro_bench_coverage_figures():
    """The macro bench on the tiny preset's macro: every module has line points and most are covered."""
    from cimforge.sim.coverage import macro_coverage

    cov = macro_coverage("tiny", n_ops=200)
    print(format_table("macro bench on 'tiny'", cov))
    lines = sum(c.lines for c in cov.values())
    hit = sum(c.lines_hit for c in cov.values())
    assert lines > 0 and hit / lines >= 0.9
