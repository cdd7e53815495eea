"""Acceptance on the real generator: `make synth`'s reports, the macro's split into categories, transistors per
stored bit against the published cell, and the checked-in baselines (with an injected regression that must fail).

Each shipped preset is generated and synthesised once per session (and cached on disk by the Verilog's hash, so
pytest-xdist workers share the work): about a minute in all on a cold cache.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from cimforge import PRESETS, get_preset
from cimforge.cli import main
from cimforge.synth.baseline import TOLERANCES, compare, load_baseline
from cimforge.synth.flow import synthesize_config
from cimforge.synth.report import build_report

pytestmark = [pytest.mark.slow, pytest.mark.synth]

SHIPPED = ["tiny", "default", "isscc22", "imagenet"]


@pytest.fixture(scope="session")
def synthesised(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_presets")
    return {name: synthesize_config(get_preset(name), out) for name in SHIPPED}


@pytest.fixture(scope="session")
def reports(synthesised):
    return {name: build_report(get_preset(name), r) for name, r in synthesised.items()}


def test_every_shipped_preset_has_a_baseline():
    assert set(SHIPPED) == set(PRESETS)


def test_make_synth_writes_reports(tmp_path, synthesised, capsys):
    # exactly what `make synth` runs (the synthesis itself comes from the session's cache)
    rc = main(["synth", "--preset", "default", "--preset", "isscc22", "--out", str(tmp_path)])
    assert rc == 0
    for name in ("default", "isscc22"):
        rep = json.loads((tmp_path / f"{name}.json").read_text())
        md = (tmp_path / f"{name}.md").read_text()
        assert rep["design"] == name and rep["totals"]["transistors"] > 0
        for m in rep["modules"]:
            assert m["cells_by_type"] and m["depth"] is not None and m["transistors"] > 0
        assert set(rep["categories"]) == {"storage", "compute", "accum", "control"}
        assert "estimates" in md and "## By category" in md and "## Calibration" in md
        assert rep["network"]["tops_per_w"] > 0 and "## Digits CNN run (estimates)" in md
    summary = (tmp_path / "summary.md").read_text()
    assert "| default |" in summary and "| isscc22 |" in summary
    assert "27.38" in capsys.readouterr().out


@pytest.mark.parametrize("name", SHIPPED)
def test_macro_split_into_categories(reports, name):
    cfg = get_preset(name)
    rep = reports[name]
    cats = rep["categories"]
    m = cfg.macro
    assert all(cats[k]["modules"] for k in ("storage", "compute", "accum", "control"))
    assert cats["storage"]["flip_flops"] == m.bits  # one flip-flop per bit cell
    assert cats["compute"]["flip_flops"] == 0       # AND + adder trees are combinational
    assert cats["accum"]["flip_flops"] == m.cols * m.acc_width
    assert rep["totals"]["stored_bits"] == m.bits
    tile = [x for x in rep["modules"] if x["name"].endswith(".storage")][0]
    assert tile["instances"] == m.n_tiles


@pytest.mark.parametrize("name", SHIPPED)
def test_transistors_per_bit_against_published_cell(reports, name):
    t = reports[name]["totals"]
    assert t["published_transistors_per_bit"] == 10
    # flip-flop bit cells (16T DFF + write enable mux + read mux share) are several times the 6T+4T cell
    assert 16 < t["storage_transistors_per_bit"] < 100
    assert t["transistors_per_bit"] > t["storage_transistors_per_bit"]


@pytest.mark.parametrize("name", SHIPPED)
def test_energy_model_counts_track_the_synthesised_compute(reports, name):
    # the model's adders per cycle (priced as 28T mirror full adders, products as 6T ANDs) against the compute
    # logic Yosys built: if the generator's adder structure changes, the activity counts must follow
    from cimforge.synth.energy import MacroOp, cycle_counts

    m = get_preset(name).macro
    c = cycle_counts(m, MacroOp(m.max_ab, m.max_wb))
    ratio = reports[name]["categories"]["compute"]["transistors"] / (28 * c["fa"] + 6 * c["cell"])
    assert 0.6 < ratio < 1.6, ratio


@pytest.mark.parametrize("name", SHIPPED)
def test_baseline_matches(reports, name):
    problems = compare(load_baseline(name), reports[name])
    assert problems == [], "synthesis moved beyond the baseline tolerances (if intended, run `cimforge synth " \
        f"--preset {name} --update-baselines` and commit it):\n" + "\n".join(problems)


def _double_compute(result):
    """The synthesis result as if the adder trees were built twice."""
    mods = dict(result.modules)
    for name, m in result.modules.items():
        if name.endswith(".compute"):
            mods[name] = replace(m, cells={t: 2 * n for t, n in m.cells.items()}, transistors=2 * m.transistors)
    return replace(result, modules=mods)


def test_baseline_fails_on_doubled_adder_tree(synthesised):
    cfg = get_preset("isscc22")
    rep = build_report(cfg, _double_compute(synthesised["isscc22"]))
    problems = compare(load_baseline("isscc22"), rep)
    assert any(p.startswith("isscc22_cim_tile_r32_p16_w8_a8.compute: cells") for p in problems)
    assert any(p.startswith("isscc22_cim_tile_r32_p16_w8_a8.compute: transistors") for p in problems)
    assert any(p.startswith("design: transistors") for p in problems)


def test_baseline_fails_on_structural_changes(reports):
    base = load_baseline("isscc22")
    rep = copy.deepcopy(reports["isscc22"])
    storage = next(m for m in rep["modules"] if m["category"] == "storage")
    storage["flip_flops"] += 8  # one more word per tile
    rep["modules"].append({**storage, "name": "isscc22_extra"})
    problems = compare(base, rep)
    assert any("storage: flip_flops 4096 -> 4104" in p for p in problems)
    assert "isscc22_extra: new module (not in the baseline)" in problems
    rep2 = copy.deepcopy(reports["isscc22"])
    rep2["modules"] = rep2["modules"][1:]
    assert any("module disappeared" in p for p in compare(base, rep2))
    rep3 = copy.deepcopy(reports["isscc22"])
    rep3["totals"]["depth_flat"] += 20
    assert any(p.startswith("design: depth") for p in compare(base, rep3))


def test_baseline_tolerates_small_noise(reports):
    rep = copy.deepcopy(reports["isscc22"])
    for m in rep["modules"]:
        m["cells"] = int(m["cells"] * (1 + TOLERANCES["cells"]["rel"] / 2))
        m["depth"] += 1
    assert [p for p in compare(load_baseline("isscc22"), rep) if not p.startswith("design")] == []


def test_check_baselines_cli(tmp_path, synthesised, capsys):
    assert main(["synth", "--preset", "tiny", "--out", str(tmp_path), "--check-baselines"]) == 0
    assert "tiny: matches its baseline" in capsys.readouterr().out
    # a baseline directory without the design gives a clear error
    rc = main(["synth", "--config", str(_config_file(tmp_path)), "--out", str(tmp_path), "--check-baselines"])
    assert rc == 2
    assert "no baseline for design 'unlisted'" in capsys.readouterr().err


def _config_file(tmp_path):
    p = tmp_path / "unlisted.toml"
    p.write_text('name = "unlisted"\n[macro]\nrows = 8\npages = 1\ncols = 8\n')
    return p


def test_sweep_small_writes_plots_and_table(tmp_path):
    assert main(["synth", "--sweep", "small", "--out", str(tmp_path)]) == 0
    sweep = tmp_path / "sweep"
    rows = json.loads((sweep / "sweep.json").read_text())
    assert len(rows) == 4 and all(r["transistors_per_bit"] > 10 for r in rows)
    # more pages share the periphery: fewer transistors per stored bit
    by = {(r["rows"], r["pages"]): r for r in rows}
    assert by[(8, 2)]["transistors_per_bit"] < by[(8, 1)]["transistors_per_bit"]
    for png in ("transistors_per_bit.png", "energy_per_mac.png", "ideal_tops.png"):
        data = (sweep / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert (sweep / "sweep.md").read_text().count("\n| ") == 1 + 4  # header + 4 points
