"""Compaction (compiler/compaction.py) under random structured-sparsity masks of every SSL group type: the
compacted graph computes the same outputs bit for bit (both rounding forms), the compiled program equals the
golden model in the instruction-set model, the cost model's cycles never grow, and the removed groups are
reported per layer. Seeds are fixed and printed."""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.codesign.random_nets import MASK_KINDS, random_masked_cnn
from cimforge.compiler.compaction import compact
from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import program_timing
from cimforge.compiler.iss import run_program
from cimforge.golden import ir
from cimforge.golden.requant import ROUNDING_MODES
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset

DEFAULT = get_preset("default")


def _inputs(g, rng, n=3):
    t = g.inputs[0]
    x = rng.integers(t.qmin, t.qmax + 1, (n, *t.shape)).astype(t.dtype)
    x[0] = t.qmin  # extremes: every code at the bottom and the top of the range
    x[1] = t.qmax
    return x


@pytest.mark.parametrize("kind", [*MASK_KINDS, "all"])
@pytest.mark.parametrize("seed", [0, 1, *(pytest.param(s, marks=pytest.mark.slow) for s in range(2, 6))])
def test_random_masks_bit_exact(kind, seed):
    """Masks of one group type (or all): same outputs, ISS equal to golden, cycles never up (two seeds per
    kind in the fast suite, four more in the slow one)."""
    s = 7000 + seed + 100 * ([*MASK_KINDS, "all"].index(kind))
    rng = np.random.default_rng(s)
    g = random_masked_cnn(rng, set(MASK_KINDS) if kind == "all" else {kind})
    c = compact(g)
    print(f"seed {s} ({kind}): " + ", ".join(f"{n} rows {lc.rows}->{lc.kept_rows} cols {lc.cols}->{lc.kept_cols}"
                                           for n, lc in c.layers.items()))
    x = _inputs(g, rng)
    for rounding in ROUNDING_MODES:
        assert np.array_equal(run_graph(g, x, rounding=rounding)["y"], run_graph(c.graph, x, rounding=rounding)["y"])
    p0, p1 = compile_graph(g, DEFAULT, batch=3), compile_graph(c.graph, DEFAULT, batch=3)
    got, _ = run_program(p1, {"x": x})
    assert np.array_equal(got["y"], run_graph(g, x)["y"])
    assert program_timing(p1)[-1] <= program_timing(p0)[-1]
    for name, lc in c.layers.items():
        layer = c.graph.layer(name)
        assert lc.kept_cols == (layer.out_channels if isinstance(layer, ir.Conv2d) else layer.out_features)
        assert len(lc.removed_filters) == lc.cols - lc.kept_cols


def _conv(name, t, out, w, pad, bias=None):
    return ir.Conv2d(name=name, inputs=(t,), output=out, weight=w, bias=bias, weight_scale=0.004, padding=pad)


def _two_convs(w1, w2, pad2=(1, 1, 1, 1), bias1=None):
    x = ir.TensorInfo("x", (8, 6, 6), "int8", 0.05, 3)
    a = ir.TensorInfo("a", (w1.shape[0], 6, 6), "uint8", 0.03, 5)
    oh = ir.conv_output_size(6, w2.shape[2], 1, pad2[0], pad2[2], 1)
    ow = ir.conv_output_size(6, w2.shape[3], 1, pad2[1], pad2[3], 1)
    y = ir.TensorInfo("y", (w2.shape[0], oh, ow), "int8", 0.07, -2)
    c1 = ir.with_clamp(_conv("c1", x, a, w1, (1, 1, 1, 1), bias1), 5, 255)
    return ir.Graph(name="two", inputs=(x,), layers=(c1, _conv("c2", a, y, w2, pad2)), outputs=("y",))


def test_each_rewrite_by_hand():
    """A dead channel, a zero-point constant filter, a folded constant filter, a refused one, a cropped kernel."""
    rng = np.random.default_rng(11)
    print("seed 11")
    w1 = rng.integers(-128, 128, (12, 8, 3, 3)).astype(np.int8)
    w2 = rng.integers(-128, 128, (16, 12, 3, 3)).astype(np.int8)
    w2[:, 3] = 0            # channel 3 of a is read by nobody: filter 3 of c1 goes (dead)
    w1[7] = 0               # filter 7 of c1 outputs its zero point (bias 0, ReLU at zp): goes
    bias1 = rng.integers(-500, 500, 12).astype(np.int32)
    bias1[7] = 0
    w1[9] = 0               # filter 9 outputs a constant != zp and c2 pads: kept
    bias1[9] = 4000
    w2[:, :, 0, :] = 0      # top kernel row of c2 zero everywhere: cropped off its padding
    g = _two_convs(w1, w2, bias1=bias1)
    c = compact(g)
    lc1, lc2 = c.layers["c1"], c.layers["c2"]
    assert sorted(lc1.removed_filters) == [3, 7] and lc1.kept_cols == 10
    assert sorted(lc2.removed_inputs) == [3, 7] and lc2.kept_kernel == (2, 3)
    assert c.graph.layer("c2").padding == (0, 1, 1, 1)
    x = _inputs(g, rng)
    assert np.array_equal(run_graph(g, x)["y"], run_graph(c.graph, x)["y"])
    # without padding in c2 the constant filter 9 is folded into c2's bias instead
    g2 = _two_convs(w1, w2[:, :, 1:], pad2=(0, 0, 0, 0), bias1=bias1)
    c2 = compact(g2)
    assert sorted(c2.layers["c1"].removed_filters) == [3, 7, 9] and c2.layers["c2"].folded == 1
    assert np.array_equal(run_graph(g2, x)["y"], run_graph(c2.graph, x)["y"])


def test_evenly_spaced_rows_become_dilation():
    """Kernel rows 0 and 2 kept (the middle row zero in every filter): a 2x3 kernel of vertical dilation 2."""
    rng = np.random.default_rng(12)
    w1 = rng.integers(-128, 128, (8, 8, 3, 3)).astype(np.int8)
    w2 = rng.integers(-128, 128, (4, 8, 3, 3)).astype(np.int8)
    w2[:, :, 1, :] = 0
    g = _two_convs(w1, w2)
    c = compact(g)
    layer = c.graph.layer("c2")
    assert layer.kernel == (2, 3) and layer.dilation == (2, 1)
    x = _inputs(g, rng)
    assert np.array_equal(run_graph(g, x)["y"], run_graph(c.graph, x)["y"])


def test_nothing_to_remove_is_identity():
    rng = np.random.default_rng(13)
    g = _two_convs(rng.integers(1, 128, (8, 8, 3, 3)).astype(np.int8), rng.integers(1, 128, (4, 8, 3, 3)).astype(np.int8))
    c = compact(g)
    assert not c.changed and [l.name for l in c.graph.layers] == ["c1", "c2"]


@pytest.mark.slow
@pytest.mark.cocotb
def test_random_masks_rtl():
    """Three random masked CNNs (all group types), compacted, on the RTL (Verilator, default fabric): every
    tensor equal to the golden model of the compacted graph, the outputs to the uncompacted one's, and every
    instruction's retire cycle to the cost model's (seeds 7900..7902)."""
    from cimforge.sim.fabric_runner import run_programs, system_verilog

    items, checks = [], []
    for seed in (7900, 7901, 7902):
        rng = np.random.default_rng(seed)
        g = random_masked_cnn(rng, set(MASK_KINDS))
        c = compact(g)
        print(f"seed {seed}: " + ", ".join(f"{n} rows {lc.rows}->{lc.kept_rows} cols {lc.cols}->{lc.kept_cols}"
                                          for n, lc in c.layers.items()))
        x = _inputs(g, rng)
        prog = compile_graph(c.graph, DEFAULT, batch=3)
        items.append((prog, {"x": x}))
        checks.append((g, c.graph, prog, x))
    # the system top: the bench's backdoor writes its external memory model on every run
    fr = run_programs(DEFAULT, items, design=system_verilog(DEFAULT, []))
    for (g, cg, prog, x), run in zip(checks, fr.runs):
        got = prog.read_tensors(run.words, len(x))
        gold = run_graph(cg, {"x": x})
        assert all(np.array_equal(got[k], gold[k]) for k in gold)
        assert np.array_equal(got["y"], run_graph(g, x)["y"])
        assert [t["cycle"] for t in run.trace] == program_timing(prog)[:len(run.trace)]
