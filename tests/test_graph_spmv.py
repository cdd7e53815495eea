"""The SpMV engine (``GSPMV``, MAC mode at one-bit weights) in Amaranth's simulator with real macros: random
blocks and contributions (full-scale 32-bit ones included) on small macros (fast) and the default and isscc22
presets (slow); the
accumulated words equal the macro model's (:class:`cimforge.golden.macro.MacroModel`) sliced products added to
the words' previous values, and every instruction takes ``gspmv_cycles(cfg)`` cycles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from cimforge.config import FabricConfig, MacroConfig
from cimforge.gen.graph_spmv import SPMV_SLICES, SpmvEngine, gspmv_cycles, slice_words
from cimforge.gen.isa import LANE_BITS, gspmv_layout, lanes, pack_lanes, pack_word
from cimforge.golden.macro import MacroModel
from cimforge.graph.run import EngineBench, execute, write_page
from cimforge.presets import get_preset


def slice_image(cfg, c: np.ndarray) -> list[int]:
    """The contribution words of one source segment (``rows`` values): slice-major, lanes LSB first."""
    rows, L, rl = cfg.macro.rows, lanes(cfg), slice_words(cfg)
    out = []
    for s in range(SPMV_SLICES):
        b = np.zeros(rl * L, dtype=np.int64)
        b[:rows] = (c >> (8 * s)) & 0xFF
        out += [pack_lanes(b[k * L:(k + 1) * L].tolist()) for k in range(rl)]
    return out


SMALL = "16x32 macros"


@pytest.mark.parametrize("preset,seed", [(SMALL, 3), pytest.param("default", 1, marks=pytest.mark.slow),
                                         pytest.param("isscc22", 2, marks=pytest.mark.slow)])
def test_gspmv_random_blocks(preset, seed):
    """(default and isscc22: 45 s each in Amaranth's simulator, slow.)"""
    print(f"seed {seed}")
    if preset == SMALL:  # two macros of 16 rows x 32 columns: 4 lanes, 4 words per slice
        cfg = replace(get_preset("default"), name="small", macro=MacroConfig(rows=16, pages=2, cols=32),
                      fabric=FabricConfig(n_macros=2))
    else:
        cfg = get_preset(preset)
    mc, n_mac = cfg.macro, cfg.fabric.n_macros
    rng = np.random.default_rng(seed)
    W = LANE_BITS * lanes(cfg)
    models = [MacroModel(mc) for _ in range(n_mac)]
    pages = {}
    for mi in range(n_mac):
        bits = (rng.random((mc.rows, mc.cols)) < 0.2).astype(np.uint8)
        bits[:, 3] = 1  # a column with every source
        pages[(mi, 1)] = bits
        models[mi].bits[1] = bits
    rl = slice_words(cfg)
    init = [0] * 512
    xs = []
    for j in range(2):
        c = rng.integers(0, 1 << 32, mc.rows, dtype=np.int64)
        if j == 1:
            c[:] = (1 << 32) - 1  # full scale: every slice 255
        xs.append(c)
        init[j * SPMV_SLICES * rl:(j + 1) * SPMV_SLICES * rl] = slice_image(cfg, c)
    y0 = 200
    for k in range(mc.cols * 2):
        init[y0 + k] = int(rng.integers(0, 1 << 40))
    instrs = [{"macro": mi, "page": 1, "x": j * SPMV_SLICES * rl, "y": y0 + mc.cols * (j % 2)}
              for j, mi in ((0, 0), (1, n_mac - 1), (1, 0))]
    want = list(init)
    for a in instrs:
        c = xs[a["x"] // (SPMV_SLICES * rl)]
        y = sum(models[a["macro"]].mac((c >> (8 * s)) & 0xFF, 1, wb=1, ab=8, w_signed=False, x_signed=False)
                << (8 * s) for s in range(SPMV_SLICES))
        for col in range(mc.cols):
            want[a["y"] + col] = (want[a["y"] + col] + int(y[col])) % (1 << W)
    bench = EngineBench(cfg, dict(enumerate(init)), engine=SpmvEngine)
    cycles, got = [], []

    async def tb(ctx):
        for (mi, pg), bits in pages.items():
            await write_page(ctx, bench.macros[mi], pg, bits)
        for a in instrs:
            cycles.append(await execute(ctx, bench.eng, pack_word(gspmv_layout(cfg), a)))
        got.extend(ctx.get(bench.amem.data[k]) for k in range(len(init)))

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert got == want
    assert cycles == [gspmv_cycles(cfg)] * len(instrs)
