"""The synthesis flow's mechanism on a small hand-written design: hierarchy kept, instances counted, totals equal
Yosys's own design totals, categories from module names, cache reuse."""

from __future__ import annotations

import json

import pytest

from cimforge import CimConfig, MacroConfig
from cimforge.synth import synthesize as synth_mod
from cimforge.synth.report import build_report, category_of, render_markdown, write_report
from cimforge.synth.synthesize import is_flip_flop, synthesize

# Shaped like the generator's output: every module carries Amaranth's (* top *) attribute, so the flow must find
# the real top itself; "mini_tile.storage" etc. are escaped identifiers as Amaranth emits for submodules.
VERILOG = r"""
(* top = 1 *)
module \mini_tile.storage (clk, we, a, d, q);
  input clk, we; input [1:0] a; input [3:0] d; output [3:0] q;
  reg [3:0] m0 = 0, m1 = 0, m2 = 0, m3 = 0;
  always @(posedge clk) if (we) case (a) 0: m0 <= d; 1: m1 <= d; 2: m2 <= d; 3: m3 <= d; endcase
  assign q = a == 0 ? m0 : a == 1 ? m1 : a == 2 ? m2 : m3;
endmodule
(* top = 1 *)
module \mini_tile.compute (x, w, s);
  input [3:0] x, w; output [2:0] s;
  wire [3:0] p = x & w;
  assign s = p[0] + p[1] + p[2] + p[3];
endmodule
(* top = 1 *)
module \mini_tile.accum (clk, en, s, acc);
  input clk, en; input [2:0] s; output reg [7:0] acc = 0;
  always @(posedge clk) if (en) acc <= acc + s;
endmodule
(* top = 1 *)
module mini_tile (clk, we, a, d, x, en, acc);
  input clk, we, en; input [1:0] a; input [3:0] d, x; output [7:0] acc;
  wire [3:0] q; wire [2:0] s;
  \mini_tile.storage storage (.clk(clk), .we(we), .a(a), .d(d), .q(q));
  \mini_tile.compute compute (.x(x), .w(q), .s(s));
  \mini_tile.accum accum (.clk(clk), .en(en), .s(s), .acc(acc));
endmodule
(* top = 1 *)
module mini_macro (clk, we, a, d, x, en, y);
  input clk, we, en; input [1:0] a; input [7:0] d, x; output [15:0] y;
  reg en_q = 0;
  always @(posedge clk) en_q <= en;
  mini_tile tile0 (.clk(clk), .we(we), .a(a), .d(d[3:0]), .x(x[3:0]), .en(en_q), .acc(y[7:0]));
  mini_tile tile1 (.clk(clk), .we(we), .a(a), .d(d[7:4]), .x(x[7:4]), .en(en_q), .acc(y[15:8]));
endmodule
"""

pytestmark = pytest.mark.synth


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    d = tmp_path_factory.mktemp("mini")
    (d / "mini.v").write_text(VERILOG)
    return d, synthesize([d / "mini.v"], cache_dir=d / "cache")


def test_top_found_despite_top_attributes(mini):
    _, r = mini
    assert r.top == "mini_macro"
    assert set(r.modules) == {"mini_macro", "mini_tile", "mini_tile.storage", "mini_tile.compute", "mini_tile.accum"}


def test_hierarchy_kept_and_instances_counted(mini):
    _, r = mini
    assert r.modules["mini_macro"].submodules == {"mini_tile": 2}
    assert r.modules["mini_tile"].submodules == {"mini_tile.accum": 1, "mini_tile.compute": 1,
                                                 "mini_tile.storage": 1}
    inst = r.instances()
    assert inst["mini_macro"] == 1 and inst["mini_tile"] == 2 and inst["mini_tile.storage"] == 2


def test_totals_equal_yosys_design_totals(mini):
    _, r = mini
    stat = json.loads((synth_mod.Path(r.workdir) / "stat.json").read_text())
    design = stat["design"]
    assert r.total("transistors") == int(design["estimated_num_transistors"])
    gates = sum(n for t, n in design["num_cells_by_type"].items() if t.startswith("$"))
    assert r.total("cells") == gates
    # 2 tiles x (16 storage bits + 8 accumulator bits) + the enable register
    assert r.total("flip_flops") == 2 * (16 + 8) + 1
    assert r.modules["mini_tile.compute"].flip_flops == 0
    assert all(is_flip_flop(t) for t in r.modules["mini_tile.storage"].cells if t.startswith("$_DFF"))


def test_depths_measured(mini):
    _, r = mini
    assert all(m.depth is not None and m.depth > 0 for m in r.modules.values())
    # the flattened path crosses storage read mux -> AND -> adder -> accumulator
    assert r.flat_depth > r.modules["mini_tile.compute"].depth


def test_categories_and_report(mini, tmp_path):
    _, r = mini
    cfg = CimConfig(name="mini", macro=MacroConfig(rows=4, pages=1, cols=8, max_wb=4, max_ab=4))
    assert category_of("mini_tile.storage", "mini") == "storage"
    assert category_of("mini_macro", "mini") == "control"
    # a design name containing a keyword must not capture every module
    assert category_of("compute_x_cim_macro", "compute_x") == "control"
    rep = build_report(cfg, r)
    cats = rep["categories"]
    assert cats["storage"]["flip_flops"] == 32 and cats["accum"]["flip_flops"] == 16
    assert cats["control"]["flip_flops"] == 1 and cats["compute"]["cells"] > 0
    assert sum(c["transistors"] for c in cats.values()) == rep["totals"]["transistors"]
    assert rep["totals"]["stored_bits"] == 32  # 1 page x 4 rows x 8 cols
    js, md = write_report(rep, tmp_path)
    assert json.loads(js.read_text())["design"] == "mini"
    text = md.read_text()
    assert "estimates" in text and "| storage |" in text and "`mini_tile.compute`" in text
    assert render_markdown(rep) == text


def test_cache_reused_and_bypassed(mini, monkeypatch):
    d, r = mini
    calls = []
    real = synth_mod.run_steps
    monkeypatch.setattr(synth_mod, "run_steps", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = synthesize([d / "mini.v"], cache_dir=d / "cache")
    assert calls == [] and again == r
    fresh = synthesize([d / "mini.v"], cache_dir=d / "cache", use_cache=False)
    assert calls == [1] and fresh == r  # deterministic


FABRIC = VERILOG + r"""
(* top = 1 *)
module mini_fabric (clk, we, a, d, x, en, y);
  input clk, we, en; input [1:0] a; input [7:0] d, x; output [15:0] y;
  wire [15:0] y0, y1;
  reg [15:0] sum = 0;
  always @(posedge clk) sum <= y0 + y1;
  mini_macro m0 (.clk(clk), .we(we), .a(a), .d(d), .x(x), .en(en), .y(y0));
  mini_macro m1 (.clk(clk), .we(we), .a(a), .d(d), .x(~x), .en(en), .y(y1));
  assign y = sum;
endmodule
"""


def test_fabric_of_macros_takes_whatever_modules_the_file_holds(tmp_path):
    (tmp_path / "fabric.v").write_text(FABRIC)
    r = synthesize([tmp_path / "fabric.v"], cache_dir=tmp_path / "cache", flat_depth=False)
    assert r.top == "mini_fabric" and r.flat_depth is None
    cfg = CimConfig(name="mini", macro=MacroConfig(rows=4, pages=1, cols=8, max_wb=4, max_ab=4))
    rep = build_report(cfg, r)
    assert rep["macros_in_design"] == 2 and rep["totals"]["stored_bits"] == 64
    assert rep["macro"]["module"] == "mini_macro"
    # the fabric's own adder and register sit outside the macros
    fabric = r.modules["mini_fabric"]
    assert rep["macro"]["outside_macros_transistors"] == fabric.transistors > 0
    assert rep["categories"]["control"]["flip_flops"] == 2 * 1 + 16
