"""The generated macro Verilog against the golden model, under cocotb, on Verilator and Icarus.

- The shipped presets, each from the file `make generate` writes (what users run): all three on Verilator,
  tiny and ISSCC'22 on Icarus.
- Thirty random geometries (rows 1..64 including non-powers of two, pages 1..16, cols multiples of 8 up to 128,
  every max_wb and several max_ab), in one farm build, each with corner and random operations.
Seeds are fixed and printed; a failure names the macro, operation, lane, columns, tile and cycle.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from cimforge import get_preset
from cimforge.config import MacroConfig
from cimforge.gen.emit import generate
from cimforge.sim.macro_farm import farm_verilog
from cimforge.sim.macro_stimulus import GEOMETRY_SEED, MACRO_PORTS, N_GEOMETRIES, random_geometries
from cimforge.sim.tools import BUILD_ROOT, has_icarus, run_cocotb

# Verilator options for the macro benches, whose time goes to Python (cocotb), not to the model: keep the
# tile hierarchy (one C++ class per module, not one copy per instance) and compile without optimisation.
def lean(sim: str) -> dict:
    return {"build_args": ("-fno-inline",), "cxx_opt": "-O0"} if sim == "verilator" else {}

SIMS = [
    pytest.param("verilator", id="verilator"),
    pytest.param("icarus", id="icarus", marks=[pytest.mark.icarus,
                 pytest.mark.skipif(not has_icarus(), reason="Icarus Verilog (iverilog) not on PATH")]),
]


def _plan(cfgs: list[MacroConfig], seed: int, n_ops: int, farm: bool) -> str:
    return json.dumps({"farm": farm, "macros": [
        {"cfg": dataclasses.asdict(c), "seed": seed + i, "n_ops": n_ops} for i, c in enumerate(cfgs)]})


def _preset_cases():
    """Every shipped preset's macro file on Verilator; on Icarus the tiny and ISSCC'22 ones (the default preset's
    64x8x64 macro costs Icarus six minutes of a CI run for nothing the ISSCC'22 file and the farm's thirty
    geometries, up to 64x16x128, do not already show on that simulator)."""
    slow = pytest.mark.slow
    cases = []
    for sim in SIMS:
        name = sim.values[0]
        for preset in ("tiny", "default", "isscc22"):
            if name == "icarus" and preset == "default":
                continue
            cases.append(pytest.param(name, preset, id=f"{preset}-{name}",
                                      marks=[*sim.marks, *([slow] if preset != "tiny" else [])]))
    return cases


@pytest.mark.cocotb
@pytest.mark.parametrize("sim,preset", _preset_cases())
def test_preset_macro(sim, preset, tmp_path):
    cfg = get_preset(preset)
    seed = 1000
    print(f"preset {preset}, seed {seed}")
    verilog = generate(cfg, tmp_path)[0]
    run_cocotb(sim, [verilog], f"{cfg.name}_cim_macro", "cimforge.sim.macro_tb", public=MACRO_PORTS, **lean(sim),
               env={"CIMFORGE_MACRO_PLAN": _plan([cfg.macro], seed, 300, farm=False)})


def _run_farm(sim: str, cfgs: list[MacroConfig], name: str, seed: int, n_ops: int) -> None:
    print(f"geometry seed {GEOMETRY_SEED}, stimulus seed {seed}, {name}: " +
          ", ".join(f"{c.rows}x{c.pages}x{c.cols}/wb{c.max_wb}/ab{c.max_ab}" for c in cfgs))
    verilog = farm_verilog(cfgs, name, BUILD_ROOT / "farm" / f"{name}.v")
    run_cocotb(sim, [verilog], name, "cimforge.sim.macro_tb", public=MACRO_PORTS + ("sel",), **lean(sim),
               env={"CIMFORGE_MACRO_PLAN": _plan(cfgs, seed, n_ops, farm=True)})


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.icarus
@pytest.mark.skipif(not has_icarus(), reason="Icarus Verilog (iverilog) not on PATH")
@pytest.mark.parametrize("half", [0, 1])
def test_random_geometries_icarus(half):
    """All thirty random geometries on Icarus, in two clock-gated farm builds (one per pytest worker).

    Icarus compiles a farm in seconds and, with each macro's clock gated by ``sel``, simulates only the
    selected macro; Verilator would spend many minutes compiling thirty macros into C++. Every geometry gets
    its page fill, read-backs, corner and bitwise operations, then 48 random ones (Verilator runs 120 on eight).
    """
    _run_farm("icarus", icarus_halves()[half], f"macro_farm{half}", GEOMETRY_SEED + 100 * half, ICARUS_OPS)


#: Random operations per geometry on Icarus, after the fill and the corners.
ICARUS_OPS = 48


def _icarus_cost(c: MacroConfig) -> int:
    """Simulated work of one geometry, roughly: writes of the fill and the corners, and the random operations'
    bit-serial cycles, each over the macro's columns (Icarus evaluates every cell of a clocked macro)."""
    return (c.pages * c.rows + 2 * c.rows * c.max_wb.bit_length() + ICARUS_OPS * c.max_ab) * c.cols * c.rows


def icarus_halves() -> tuple[list[MacroConfig], list[MacroConfig]]:
    """The geometries in two halves of about equal simulation time (largest first, each to the lighter half),
    so that the two pytest workers finish together."""
    halves: tuple[list, list] = ([], [])
    for c in sorted(random_geometries(), key=_icarus_cost, reverse=True):
        min(halves, key=lambda h: sum(map(_icarus_cost, h))).append(c)
    return halves


@pytest.mark.cocotb
@pytest.mark.slow
def test_random_geometries_verilator():
    """Eight of the geometries (every max_wb, non-power-of-two rows, up to 16 pages) on Verilator."""
    by_size = sorted(random_geometries(), key=lambda c: c.bits)
    cfgs = [c for wb in (1, 2, 4, 8) for c in [c for c in by_size if c.max_wb == wb][:2]]
    assert {c.max_wb for c in cfgs} == {1, 2, 4, 8}
    _run_farm("verilator", cfgs, "macro_farm_v", GEOMETRY_SEED + 7, 120)


def test_geometries_cover_the_space():
    cfgs = random_geometries()
    a, b = icarus_halves()
    assert sorted(map(dataclasses.astuple, a + b)) == sorted(map(dataclasses.astuple, cfgs))
    assert len({dataclasses.astuple(c) for c in cfgs}) == N_GEOMETRIES
    rows = {c.rows for c in cfgs}
    assert 1 in rows and 64 in rows and any(r & (r - 1) for r in rows), "rows must include 1, 64, non-powers of 2"
    assert {c.pages for c in cfgs} >= {1, 16}
    assert all(c.cols % 8 == 0 and c.cols <= 128 for c in cfgs) and 128 in {c.cols for c in cfgs}
    assert {c.max_wb for c in cfgs} == {1, 2, 4, 8}
