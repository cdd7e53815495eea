"""The generated macro Verilog against the golden model, under cocotb, on Verilator and Icarus.

- The shipped presets, each from the file `make generate` writes (what users run).
- Thirty random geometries (rows 1..64 including non-powers of two, pages 1..16, cols multiples of 8 up to 128,
  every max_wb and several max_ab), in one farm build, each with corner and random operations.
Seeds are fixed and printed; a failure names the macro, operation, lane, columns, tile and cycle.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cimforge import get_preset
from cimforge.config import MacroConfig
from cimforge.gen.emit import generate
from cimforge.sim.macro_farm import farm_verilog
from cimforge.sim.tools import BUILD_ROOT, has_icarus, run_cocotb

GEOMETRY_SEED = 20261124
N_GEOMETRIES = 30

SIMS = [
    pytest.param("verilator", id="verilator"),
    pytest.param("icarus", id="icarus", marks=[pytest.mark.icarus,
                 pytest.mark.skipif(not has_icarus(), reason="Icarus Verilog (iverilog) not on PATH")]),
]


def random_geometries(seed: int = GEOMETRY_SEED, n: int = N_GEOMETRIES) -> list[MacroConfig]:
    """``n`` distinct geometries, the extremes first, then random ones."""
    rng = np.random.default_rng(seed)
    cfgs = [MacroConfig(rows=1, pages=1, cols=8), MacroConfig(rows=64, pages=16, cols=128),
            MacroConfig(rows=63, pages=3, cols=8, max_wb=1), MacroConfig(rows=17, pages=16, cols=24, max_ab=3)]
    seen = {dataclasses.astuple(c) for c in cfgs}
    while len(cfgs) < n:
        cfg = MacroConfig(rows=int(rng.integers(1, 65)), pages=int(rng.integers(1, 17)),
                          cols=8 * int(rng.integers(1, 17)), max_wb=int(rng.choice([1, 2, 4, 8, 8, 8])),
                          max_ab=int(rng.choice([8, 8, 8, 1, 2, 5])))
        if dataclasses.astuple(cfg) not in seen:
            seen.add(dataclasses.astuple(cfg))
            cfgs.append(cfg)
    return cfgs


def _plan(cfgs: list[MacroConfig], seed: int, n_ops: int, farm: bool) -> str:
    return json.dumps({"farm": farm, "macros": [
        {"cfg": dataclasses.asdict(c), "seed": seed + i, "n_ops": n_ops} for i, c in enumerate(cfgs)]})


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("preset", ["tiny", pytest.param("default", marks=pytest.mark.slow),
                                    pytest.param("isscc22", marks=pytest.mark.slow)])
def test_preset_macro(sim, preset, tmp_path):
    cfg = get_preset(preset)
    seed = 1000
    print(f"preset {preset}, seed {seed}")
    verilog = generate(cfg, tmp_path)[0]
    run_cocotb(sim, [verilog], f"{cfg.name}_cim_macro", "cimforge.sim.macro_tb",
               env={"CIMFORGE_MACRO_PLAN": _plan([cfg.macro], seed, 300, farm=False)})


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("half", [0, 1])
def test_random_geometries(sim, half):
    """Thirty random geometries in two farm builds (one per pytest worker)."""
    cfgs = random_geometries()[half::2]
    print(f"geometry seed {GEOMETRY_SEED}, half {half}: " +
          ", ".join(f"{c.rows}x{c.pages}x{c.cols}/wb{c.max_wb}/ab{c.max_ab}" for c in cfgs))
    verilog = farm_verilog(cfgs, f"macro_farm{half}", BUILD_ROOT / "farm" / f"macro_farm{half}.v")
    run_cocotb(sim, [verilog], f"macro_farm{half}", "cimforge.sim.macro_tb",
               env={"CIMFORGE_MACRO_PLAN": _plan(cfgs, GEOMETRY_SEED + 100 * half, 120, farm=True)})


def test_geometries_cover_the_space():
    cfgs = random_geometries()
    assert len({dataclasses.astuple(c) for c in cfgs}) == N_GEOMETRIES
    rows = {c.rows for c in cfgs}
    assert 1 in rows and 64 in rows and any(r & (r - 1) for r in rows), "rows must include 1, 64, non-powers of 2"
    assert {c.pages for c in cfgs} >= {1, 16}
    assert all(c.cols % 8 == 0 and c.cols <= 128 for c in cfgs) and 128 in {c.cols for c in cfgs}
    assert {c.max_wb for c in cfgs} == {1, 2, 4, 8}
