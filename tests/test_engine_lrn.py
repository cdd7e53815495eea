"""The ``LRN`` engine (gen/lrn.py) alone in Amaranth's simulator against the instruction-set model and the golden
operator: random codes with the corners forced in (the most negative and the largest code, a pixel of all-zero
``d``), zero points at both ends, odd, even and unit window sizes, channels not a multiple of the lanes, fewer
than the window and 4100 (513 words per pixel), on the ``tiny`` (2 lanes) and ``default`` (8 lanes) presets; every instruction's cycles equal
the timing data (one per channel and trailing window step of each pixel plus ``extra``). Seeds fixed and printed.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cimforge.compiler.cost import lrn_cycles
from cimforge.compiler.lowering.lrn import lrn_args, table_words
from cimforge.gen.isa import Opcode, decode_op, encode, lanes, pack_lanes
from cimforge.gen.lrn import LRN_TIMING, LrnEngine, lrn_items
from cimforge.golden import ir
from cimforge.golden.runner import run_layer
from cimforge.presets import get_preset

from engine_bench import TableBench, iss_model, run_instructions


#: (preset, dtype, zp_in, channels, size, alpha, h, w)
CASES = [
    ("tiny", "int8", -128, 13, 5, 4e-4, 2, 3),
    ("tiny", "uint8", 255, 3, 5, 6e-4, 2, 2),
    ("default", "int8", 127, 13, 4, 0.01, 1, 3),
    ("default", "uint8", 0, 20, 1, 0.02, 2, 1),
    ("default", "int8", 0, 16, 3, 1e-4, 1, 2),
    ("default", "int8", -128, 4100, 5, 1e-4, 1, 1),  # 513 words per pixel: past 9-bit word counters
]


def _layer(dtype, zp_in, c, size, alpha, h, w):
    x = ir.TensorInfo("x", (c, h, w), dtype, 0.05, zp_in)
    y = ir.TensorInfo("y", (c, h, w), dtype, 0.03, 0 if dtype == "int8" else 128)
    return ir.LRN(name="lrn", inputs=(x,), output=y, size=size, alpha=alpha, beta=0.75, bias=1.0)


def _codes(rng, t):
    q = rng.integers(t.qmin, t.qmax + 1, (1, *t.shape))
    if t.shape[1] * t.shape[2] > 1:
        q[0, :, 0, 0] = t.qmin
        q[0, :, -1, -1] = t.qmax
    else:  # one pixel: its first channels the most negative code, its last the largest
        q[0, :8], q[0, -8:] = t.qmin, t.qmax
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
    bench = TableBench(cfg, [LrnEngine.name], prog, words)
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


# -- a conv -> relu -> LRN -> conv graph, compiled for the default preset ------------------------------------------

def _graph(tmp_path, seed: int, c: int = 12, hw: int = 6):
    """A quantized ``Conv -> Relu -> LRN -> Conv`` model (onnxruntime quantize_static, QDQ) imported in the
    fabric numerics, with ``c`` channels (not a multiple of the 8 lanes) between the convolutions and a strong
    normalisation (alpha 0.5, bias 2), and seeded random inputs."""
    from onnx import helper
    from test_golden_ops_operators import _conv, _float_model, _quantize

    from cimforge.golden.onnx_import import load_onnx
    rng = np.random.default_rng(seed)
    c1, i1 = _conv("c1", "x", "a", rng, 3, c)
    c2, i2 = _conv("c2", "l", "y", rng, c, 4)
    nodes = [c1, helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("LRN", ["r"], ["l"], name="lrn", size=5, alpha=0.5, beta=0.75, bias=2.0), c2]
    model = _quantize(_float_model(nodes, (3, hw, hw), "y", {**i1, **i2}), tmp_path, rng, (3, hw, hw))
    graph = load_onnx(model)
    assert any(isinstance(layer, ir.LRN) for layer in graph.layers)
    x = graph.inputs[0]
    codes = rng.integers(x.qmin, x.qmax + 1, (2, *x.shape)).astype(x.dtype)
    codes[0].flat[0], codes[1].flat[-1] = x.qmin, x.qmax
    return graph, {x.name: codes}


@pytest.mark.parametrize("memory", ["onchip", "external"])
def test_iss_equals_golden_on_a_graph_with_lrn(tmp_path, memory):
    """The ISS run of the compiled graph equals the golden model on every tensor of both images, with the
    tensors on chip or in the external memory (the LRN in row bands); the cost model gives every instruction."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.cost import program_timing
    from cimforge.compiler.iss import run_program
    from cimforge.golden.runner import run_graph

    seed = 4500
    print(f"seed {seed}, memory {memory}")
    graph, inputs = _graph(tmp_path, seed, hw=6 if memory == "onchip" else 24)
    prog = compile_graph(graph, get_preset("default"), batch=2, memory=memory)
    n_lrn = sum(decode_op(prog.cfg, w)[0] == Opcode.LRN.value for w in prog.code)
    print(f"{n_lrn} LRN instructions")
    # one per image on chip; in the external memory a 24 x 24 x 12 tensor (1152 words) and its output do not
    # fit half the activation memory at once: several row bands per image
    assert n_lrn == 2 if memory == "onchip" else n_lrn > 2
    got, _ = run_program(prog, inputs)
    golden = run_graph(graph, next(iter(inputs.values())))
    for name, v in golden.items():
        if name in got:
            np.testing.assert_array_equal(got[name], v, err_msg=name)
    assert graph.outputs[0] in got
    # every LRN instruction takes its engine cycles (lrn_cycles) after the instruction before it, plus the decode
    # cycle a one-cycle instruction before it leaves (a DMA queued, external); on chip that is the layer's cost
    # per image (the partitioner's interface)
    from cimforge.compiler.cost import layer_cost, lrn_cycles
    stamps = program_timing(prog)
    lrn = next(layer for layer in graph.layers if isinstance(layer, ir.LRN))
    for pc, w in enumerate(prog.code):
        op, a = decode_op(prog.cfg, w)
        if op == Opcode.LRN.value:
            after_short = decode_op(prog.cfg, prog.code[pc - 1])[0] == Opcode.DMA.value
            took = stamps[pc] - stamps[pc - 1]
            assert took == lrn_cycles(a["npos"], a["channels"], a["size"]) + after_short, pc
            if memory == "onchip":
                assert took == layer_cost(lrn, prog.cfg).cycles
            else:  # the hazard check sees what each band's LRN reads and writes
                assert pc in prog.access, pc
    # the per-layer report gives the LRN layer its own cycles (not folded into the next layer's)
    from cimforge.sim.fabric_check import layer_rows
    rows = {row.layer: row for row in layer_rows(prog, [{"pc": pc, "cycle": c} for pc, c in enumerate(stamps)])}
    assert rows[lrn.name].measured > 0 and rows[lrn.name].kind == lrn.kind


@pytest.mark.cocotb
def test_lrn_graph_on_the_rtl(tmp_path):
    """The default fabric's RTL (Verilator, cocotb) runs the conv -> relu -> LRN -> conv graph on two images:
    every tensor equals the golden model, every instruction retires at the predicted cycle (about 20 s with a
    cached build)."""
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.cost import program_timing
    from cimforge.golden.runner import run_graph
    from cimforge.sim.fabric_check import first_divergence
    from cimforge.sim.fabric_runner import run_programs

    seed = 4501
    print(f"seed {seed}")
    cfg = get_preset("default")
    graph, inputs = _graph(tmp_path, seed)
    prog = compile_graph(graph, cfg, batch=2)
    gold = run_graph(graph, next(iter(inputs.values())))
    run = run_programs(cfg, [(prog, inputs)]).runs[0]
    assert first_divergence(prog, gold, prog.read_tensors(run.words, 2), run.trace) is None
    want = program_timing(prog)
    assert [t["cycle"] for t in run.trace] == want
    lrn_pcs = [pc for pc, w in enumerate(prog.code) if decode_op(cfg, w)[0] == Opcode.LRN.value]
    print(f"{len(prog.code)} instructions, {want[-1]} cycles; LRN at pc {lrn_pcs}")
