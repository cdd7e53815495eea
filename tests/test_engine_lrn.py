"""The ``LRN`` engine (gen/lrn.py) alone in Amaranth's simulator against the instruction-set model and the golden
operator: random codes with the corners forced in (the most negative and the largest code, a pixel of all-zero
``d``), zero points at both ends, odd, even and unit window sizes, channels not a multiple of the lanes and fewer
than the window, on the ``tiny`` (2 lanes) and ``default`` (8 lanes) presets; every instruction's cycles equal
the timing data (one per channel and trailing window step of each pixel plus ``extra``). Seeds fixed and printed.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.lib import wiring

from cimforge.compiler.cost import lrn_cycles
from cimforge.compiler.lowering.lrn import lrn_args, table_words
from cimforge.gen.isa import Opcode, encode, lanes, pack_lanes
from cimforge.gen.lrn import LRN_TIMING, LrnEngine, lrn_items
from cimforge.golden import ir
from cimforge.golden.runner import run_layer
from cimforge.presets import get_preset

from engine_bench import EngineBench, iss_model, run_instructions


class LrnBench(EngineBench):
    """The bench with the ``LRN`` engine's ports (activation read and write, parameter read) connected."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        e = self.engines[LrnEngine.name]
        wiring.connect(m, e.act_rd, self.amem.read_port())
        wiring.connect(m, e.act_w, self.amem.write_port())
        port = self.pmem.read_port()
        m.d.comb += [port.addr.eq(e.param_rd.addr), port.en.eq(e.param_rd.en), e.param_rd.data.eq(port.data)]
        return m


#: (preset, dtype, zp_in, channels, size, alpha, h, w)
CASES = [
    ("tiny", "int8", -128, 13, 5, 1e-3, 2, 3),
    ("tiny", "uint8", 255, 3, 5, 2e-3, 2, 2),
    ("default", "int8", 127, 13, 4, 0.01, 1, 3),
    ("default", "uint8", 0, 20, 1, 0.02, 2, 1),
    ("default", "int8", 0, 16, 3, 1e-4, 1, 2),
]


def _layer(dtype, zp_in, c, size, alpha, h, w):
    x = ir.TensorInfo("x", (c, h, w), dtype, 0.05, zp_in)
    y = ir.TensorInfo("y", (c, h, w), dtype, 0.03, 0 if dtype == "int8" else 128)
    return ir.LRN(name="lrn", inputs=(x,), output=y, size=size, alpha=alpha, beta=0.75, bias=1.0)


def _codes(rng, t):
    q = rng.integers(t.qmin, t.qmax + 1, (1, *t.shape))
    q[0, :, 0, 0] = t.qmin
    q[0, :, -1, -1] = t.qmax
    if t.shape[1] * t.shape[2] > 2:
        q[0, :, 0, -1] = t.zero_point  # every d of a pixel zero
    return q.astype(t.dtype)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-zp{c[2]}-C{c[3]}-size{c[4]}" for c in CASES])
def test_lrn_engine_equals_iss_and_golden(case):
    preset, *spec = case
    cfg = get_preset(preset)
    L = lanes(cfg)
    seed = 4400 + CASES.index(case)
    rng = np.random.default_rng(seed)
    print(f"{case}: seed {seed}")
    layer = _layer(*spec)
    c, h, w = layer.input.shape
    cw = -(-c // L)
    q = _codes(rng, layer.input)
    words = {}
    for p in range(h * w):
        ch = list(q[0, :, p // w, p % w]) + [0] * (cw * L - c)
        for k in range(cw):
            words[p * cw + k] = pack_lanes(ch[k * L:(k + 1) * L])
    out_base = h * w * cw
    place = SimpleNamespace
    src = place(base=0, phys=(c, h, w), cw=cw)
    dst = place(base=out_base, phys=(c, h, w), cw=cw)
    args = lrn_args(layer, src, dst, 0)
    prog = SimpleNamespace(cfg=cfg, code=[encode(cfg, Opcode.LRN, **args), encode(cfg, Opcode.END)],
                           wmem=[], pmem=table_words(cfg, layer.table), dmem=[])
    assert len(prog.pmem) <= cfg.fabric.param_depth
    bench = LrnBench(cfg, [LrnEngine.name], prog, words)
    got, cycles = run_instructions(bench, list(prog.code))
    want = iss_model(prog, words).amem
    assert got == want, f"activation memory differs from the ISS at {[a for a in range(len(got)) if got[a] != want[a]][:8]}"
    golden = run_layer(layer, q)
    for p in range(h * w):
        lanes_ = []
        for k in range(cw):
            word = got[out_base + p * cw + k]
            lanes_ += [(word >> (8 * i)) & 0xFF for i in range(L)]
        codes = np.array(lanes_[:c], dtype=np.uint8).astype(layer.output.np_dtype)
        assert (codes == golden[0, :, p // w, p % w]).all(), f"pixel {p}"
        assert all(v == 0 for v in lanes_[c:]), "lanes past the channels are written 0"
    ((pc, n),) = cycles
    assert n == lrn_cycles(h * w, c, layer.size) == lrn_items(h * w, c, layer.size) + LRN_TIMING.extra
    print(f"{n} cycles, table {len(layer.table_g)} entries in {len(prog.pmem)} words")


def test_lrn_timing_follows_the_pipeline():
    # the start register, five pipeline stages (B..F) and the done cycle
    assert LRN_TIMING.extra == 7 and LRN_TIMING.per_item == 1
    assert lrn_items(55 * 55, 96, 5) == 55 * 55 * 98
