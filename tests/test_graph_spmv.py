"""The SpMV engine (``GSPMV``, MAC mode at one-bit weights) in Amaranth's simulator with real macros: random
blocks and contributions (full-scale 32-bit ones included), row masks, slice counts and runs of blocks closed
by a flush, on small macros (fast) and the default preset (slow); the accumulated words equal the macro
model's (:class:`cimforge.golden.macro.MacroModel`) sliced products added to the words' previous values, and
every instruction takes ``gspmv_cycles(cfg, slices, flush)`` cycles."""

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


@pytest.mark.parametrize("preset,seed", [(SMALL, 3), pytest.param("default", 1, marks=pytest.mark.slow)])
def test_gspmv_random_blocks(preset, seed):
    """Random pages, contributions, row masks and slice counts; runs of blocks that keep their sums
    (``flush = 0``) closed by a flush, on two destination ranges; corner cases: an empty and a full row
    mask, one slice and all four, full-scale contributions (every slice 255), a flush of a single block.
    (default: about 25 s in Amaranth's simulator, slow; the 16x32 macros are a second geometry.)"""
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
        for pg in (0, 1):
            bits = (rng.random((mc.rows, mc.cols)) < 0.2).astype(np.uint8)
            bits[:, 3] = 1  # a column with every source
            pages[(mi, pg)] = bits
            models[mi].bits[pg] = bits
    rl = slice_words(cfg)
    init = [0] * 512
    xs = []
    for j in range(3):
        c = rng.integers(0, 1 << 32, mc.rows, dtype=np.int64)
        if j == 1:
            c[:] = (1 << 32) - 1  # full scale: every slice 255
        xs.append(c)
        init[j * SPMV_SLICES * rl:(j + 1) * SPMV_SLICES * rl] = slice_image(cfg, c)
    y0 = 200
    for k in range(mc.cols * 2):
        init[y0 + k] = int(rng.integers(0, 1 << 40))
    full, none = (1 << mc.rows) - 1, 0
    instrs = []
    for run, (length, y) in enumerate([(3, y0), (1, y0 + mc.cols), (4, y0), (2, y0 + mc.cols)]):
        for b in range(length):
            mask = [full, none][b] if run == 0 and b < 2 else int.from_bytes(rng.bytes(8), "little") & full
            instrs.append({"macro": int(rng.integers(n_mac)), "page": int(rng.integers(2)),
                           "x": int(rng.integers(3)) * SPMV_SLICES * rl, "y": y, "rows": mask,
                           "slices_m1": [3, 0][b] if run == 0 and b < 2 else int(rng.integers(4)),
                           "flush": int(b == length - 1)})
    want = list(init)
    acc = np.zeros(mc.cols, dtype=object)
    for a in instrs:
        c = xs[a["x"] // (SPMV_SLICES * rl)] * np.array([a["rows"] >> r & 1 for r in range(mc.rows)])
        acc = acc + sum(models[a["macro"]].mac((c >> (8 * s)) & 0xFF, a["page"], wb=1, ab=8, w_signed=False,
                                               x_signed=False).astype(object) << (8 * s)
                        for s in range(a["slices_m1"] + 1))
        if a["flush"]:
            for col in range(mc.cols):
                want[a["y"] + col] = (want[a["y"] + col] + int(acc[col])) % (1 << W)
            acc[:] = 0
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
    assert cycles == [gspmv_cycles(cfg, a["slices_m1"] + 1, bool(a["flush"])) for a in instrs]
    if preset == "default":  # the figures docs/graph.md quotes
        assert [gspmv_cycles(cfg, s, f) for s, f in ((4, True), (4, False), (2, False), (1, False))] == \
            [109, 44, 28, 20]
