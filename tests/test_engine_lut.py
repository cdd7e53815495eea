"""The ``LUT`` engine (gen/lut.py) alone in Amaranth's simulator against the instruction-set model and the golden
operator: random tables with the code extremes forced in, inputs holding every one of the 256 codes (the most
negative and the largest included), int8 and uint8, channels not a multiple of the lanes and 4100 channels (513
words per pixel), on the ``tiny`` (2 lanes, 11 table words) and ``default`` (8 lanes, 3 table words) presets;
every instruction's cycles equal the timing data (the table's words, one per activation word, plus ``extra``).
Per-channel tables (``per_channel``: one table per channel, channel by channel) on both presets, one pixel
included (a word rewritten by the next channel right after the table load). Seeds fixed and printed.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cimforge.compiler.cost import lut_cycles, lut_instr_cycles
from cimforge.compiler.lowering.lut import lut_args, table_words
from cimforge.gen.isa import Opcode, encode, lanes, lut_table_words, pack_lanes
from cimforge.gen.lut import LUT_TIMING, LutEngine, lut_items
from cimforge.golden import ir
from cimforge.golden.runner import run_layer
from cimforge.presets import get_preset

from engine_bench import TableBench, iss_model, run_instructions


#: (preset, input dtype, output dtype, channels, h, w, one table per channel)
CASES = [
    ("tiny", "int8", "int8", 13, 4, 5, False),
    ("tiny", "uint8", "int8", 3, 10, 9, False),
    ("default", "int8", "uint8", 20, 4, 4, False),
    ("default", "uint8", "uint8", 16, 4, 4, False),
    ("default", "int8", "int8", 4100, 1, 1, False),  # 513 words per pixel
    ("tiny", "int8", "int8", 5, 3, 2, True),
    ("default", "uint8", "int8", 11, 2, 3, True),
    ("default", "int8", "int8", 9, 1, 1, True),  # one pixel: each channel rewrites the word its last one wrote
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-C{c[3]}{'-pc' if c[6] else ''}" for c in CASES])
def test_lut_engine_equals_iss_and_golden(case):
    preset, dt_in, dt_out, c, h, w, per_channel = case
    cfg = get_preset(preset)
    L = lanes(cfg)
    seed = 4600 + CASES.index(case)
    rng = np.random.default_rng(seed)
    print(f"{case}: seed {seed}")
    x = ir.TensorInfo("x", (c, h, w), dt_in, 0.05, 3 if dt_in == "int8" else 128)
    y = ir.TensorInfo("y", (c, h, w), dt_out, 0.02, -5 if dt_out == "int8" else 7)
    table = rng.integers(y.qmin, y.qmax + 1, (c if per_channel else 1, 256))
    table[:, :2], table[:, -2:] = y.qmin, y.qmax  # the output extremes
    table = table.ravel()
    layer = ir.Lut(name="lut", inputs=(x,), output=y, table=tuple(table), op="random")
    q = rng.integers(x.qmin, x.qmax + 1, (1, c, h, w))
    flat = q.reshape(-1)
    flat[:256] = np.arange(x.qmin, x.qmax + 1)[:min(256, flat.size)]  # every code (where the tensor has room)
    q = flat.reshape(q.shape).astype(x.np_dtype)
    cw = -(-c // L)
    words = {}
    for p in range(h * w):
        ch = list(q[0, :, p // w, p % w]) + [0] * (cw * L - c)
        for k in range(cw):
            words[p * cw + k] = pack_lanes(ch[k * L:(k + 1) * L])
    out_base = h * w * cw
    place = SimpleNamespace
    args = lut_args(layer, place(base=0, phys=(c, h, w), cw=cw), place(base=out_base, phys=(c, h, w), cw=cw), 0)
    prog = SimpleNamespace(cfg=cfg, code=[encode(cfg, Opcode.LUT, **args), encode(cfg, Opcode.END)],
                           wmem=[], pmem=[v for t in layer.tables for v in table_words(cfg, t)], dmem=[])
    assert len(prog.pmem) == lut_table_words(cfg) * len(layer.tables)
    assert layer.per_channel == per_channel == bool(args["per_channel"])
    bench = TableBench(cfg, [LutEngine.name], prog, words)
    got, cycles = run_instructions(bench, list(prog.code))
    want = iss_model(prog, words).amem
    assert got == want, f"activation memory differs from the ISS at {[a for a in range(len(got)) if got[a] != want[a]][:8]}"
    golden = run_layer(layer, q)
    for p in range(h * w):
        lanes_ = []
        for k in range(cw):
            word = got[out_base + p * cw + k]
            lanes_ += [(word >> (8 * i)) & 0xFF for i in range(L)]
        codes = np.array(lanes_[:c], dtype=np.uint8).astype(y.np_dtype)
        assert (codes == golden[0, :, p // w, p % w]).all(), f"pixel {p}"
        assert all(v == 0 for v in lanes_[c:]), "lanes past the channels are written 0"
    ((pc, n),) = cycles
    if per_channel:
        assert n == lut_instr_cycles(cfg, args) == lut_cycles(cfg, h * w * c, c) == \
            c * (lut_table_words(cfg) + h * w) + LUT_TIMING.extra
    else:
        assert n == lut_instr_cycles(cfg, args) == lut_cycles(cfg, h * w * cw) == \
            lut_items(cfg, h * w * cw) + LUT_TIMING.extra
    print(f"{n} cycles: {h * w * cw} words, tables {len(prog.pmem)} words")
