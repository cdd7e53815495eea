"""Network-level figures: activity counts of the digits CNN, zero-plane skipping as the golden macro defines it,
and the totals (no Yosys needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cimforge import get_preset
from cimforge.golden.macro import op_cycles
from cimforge.synth.network import (LayerActivity, activity_from_graph, chunk_cycles, digits_figures,
                                    network_figures)
from cimforge.synth.report import _network_markdown

SEED = 1234


def test_chunk_cycles_match_golden_op_cycles():
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    rows, ab = 8, 8
    # sparse codes so that many planes are zero; K = 19 leaves a padded last chunk
    x = rng.integers(-128, 128, size=(5, 19)) * (rng.random((5, 19)) < 0.3)
    x[0] = 0            # all-zero operation: still one cycle
    x[1, :8] = -128     # only the sign plane
    got = chunk_cycles(x, rows, ab)
    assert got.shape == (5, 3)
    for i in range(5):
        for c in range(3):
            chunk = np.zeros(rows, dtype=np.int64)
            part = x[i, c * rows:(c + 1) * rows]
            chunk[:len(part)] = part
            assert got[i, c] == op_cycles(ab, chunk, skip=True)
    assert got[0].tolist() == [1, 1, 1] and got[1, 0] == 1


@pytest.fixture(scope="module")
def digits():
    from cimforge.golden.datasets import load_dataset
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.golden.runner import run_float
    from cimforge.synth.network import DIGITS_MODEL

    graph = load_onnx(DIGITS_MODEL)
    x, _ = load_dataset("digits")
    return graph, run_float(graph, x), x.shape[0]


def test_activity_counts_follow_the_mapping(digits):
    graph, tensors, n = digits
    cfg = get_preset("isscc22")
    m = cfg.macro
    dense = activity_from_graph(graph, cfg, tensors, skip=False)
    sparse = activity_from_graph(graph, cfg, tensors, skip=True)
    assert [a.name for a in dense] == [layer.name for layer in graph.weighted_layers]
    for a, s, layer in zip(dense, sparse, graph.weighted_layers):
        g = layer.gemm
        ops = n * g.groups * g.M * math.ceil(g.K / m.rows) * math.ceil(g.N / (m.cols // 8))
        assert a.macro_ops == s.macro_ops == ops
        assert a.macs == g.macs * n and a.cycles == ops * 8
        assert ops <= s.cycles <= a.cycles
        assert a.weight_bits == g.K * g.N * g.groups * 8


def test_network_totals_add_up(digits):
    graph, tensors, n = digits
    cfg = get_preset("isscc22")
    layers = activity_from_graph(graph, cfg, tensors)
    f = network_figures(layers, cfg, n_samples=n, counts_source="test", transistors_per_macro=1e6)
    assert f["macs"] == graph.macs * n
    assert f["energy_fj"] == pytest.approx(sum(la["energy_fj"] for la in f["layers"]))
    assert f["tops_per_w"] == pytest.approx(2 * f["macs"] / f["energy_fj"] * 1e3)
    assert 0 < f["utilisation"] <= 1.5 and f["weights_resident"]
    assert f["energy_breakdown_fj"]["buffer"] > 0
    # skipping zero planes saves cycles and energy
    g = network_figures(activity_from_graph(graph, cfg, tensors, skip=False), cfg, n_samples=n, counts_source="t")
    assert f["cycles"] < g["cycles"] and f["energy_fj"] < g["energy_fj"]


def test_weights_not_resident_is_flagged():
    cfg = get_preset("tiny")
    la = LayerActivity("big", macs=100, macro_ops=10, cycles=80, ab=8, wb=8, weight_bits=10 ** 5, weight_tiles=99)
    f = network_figures([la], cfg, n_samples=1, counts_source="test")
    assert not f["weights_resident"] and f["weight_tile_capacity"] == cfg.fabric.n_macros * cfg.macro.pages
    assert "do NOT fit" in "\n".join(_network_markdown({**f, "model": "m", "skip_zero_planes": True}))


def test_digits_figures_state_their_source():
    f = digits_figures(get_preset("default"), transistors_per_macro=1e6)
    assert "compiler's op counts were not available" in f["counts_source"]
    assert f["n_samples"] == 450 and f["tops_per_w"] > 0 and f["tops_per_mm2"] > 0
    md = "\n".join(_network_markdown(f))
    assert "## Digits CNN run (estimates)" in md and "/0/Conv_quant" in md


def test_precision_beyond_macro_rejected(digits):
    graph, tensors, _ = digits
    cfg = get_preset("tiny").with_macro(max_wb=4)
    with pytest.raises(ValueError, match="allows ab <= 8, wb <= 4"):
        activity_from_graph(graph, cfg, tensors)
