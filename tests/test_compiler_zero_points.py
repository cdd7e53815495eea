"""Weights with zero points on the fabric (compiler/zero_points.py): the split of ``w - zp_w`` into int8 parts,
the expanded graph equal to the original on every original tensor (golden model), and compiled programs equal
to the golden model in the instruction-set model, for convolutions (dense, grouped, depthwise) and dense layers
with uint8-style zero points at both ends (the most negative and the largest ``w - zp_w``: -255 and +255), and
corner inputs (the most negative code, a plane of the zero point). Seeds fixed and printed. The RTL runs are in
tests/test_user_models.py (``test_rtl_bit_exact``, the uint8-weight model)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.iss import run_program
from cimforge.compiler.zero_points import copy_tensors, expand_weight_zero_points, split_parts
from cimforge.golden import ir
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_conv_graph, random_grouped_conv_graph

SEED = 7070


def test_split_parts_is_exact_and_short():
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    d = rng.integers(-255, 256, (40, 7))
    d[0, :4] = [-255, 255, 0, -128]
    parts = split_parts(d)
    assert len(parts) == 3 and all(p.dtype == np.int8 for p in parts)  # +255 needs three parts
    np.testing.assert_array_equal(sum(p.astype(np.int64) for p in parts), d)
    assert len(split_parts(np.array([-256, 254, 3]))) == 2
    assert len(split_parts(np.array([-128, 127]))) == 1


def _with_zero_points(graph: ir.Graph, rng) -> ir.Graph:
    """``graph``'s weighted layer with per-channel zero points that push ``w - zp_w`` outside int8 at both ends."""
    layer = graph.layers[0]
    n = layer.weight.shape[0]
    zp = rng.integers(-128, 128, n)
    zp[0], zp[-1] = -128, 127
    w = layer.weight.copy()
    w.reshape(n, -1)[0, 0], w.reshape(n, -1)[-1, 0] = 127, -128  # w - zp = 255 and -255
    return ir.Graph(graph.name, graph.inputs, (replace(layer, weight=w, weight_zero_point=zp),), graph.outputs)


def _codes(rng, t: ir.TensorInfo, n: int) -> np.ndarray:
    q = rng.integers(t.qmin, t.qmax + 1, (n, *t.shape))
    q.reshape(n, -1)[0, :] = t.qmin  # an image of the most negative code
    if n > 1:
        q.reshape(n, -1)[1, :] = t.zero_point  # one of the zero point (every x - zp_in = 0)
    return q.astype(t.np_dtype)


def _dense_graph(rng) -> ir.Graph:
    k, n = int(rng.choice([5, 16, 40])), int(rng.integers(1, 12))
    x = ir.TensorInfo("x", (k,), "uint8", 0.02, int(rng.integers(0, 256)))
    y = ir.TensorInfo("y", (n,), "int8", 0.5, int(rng.integers(-20, 20)))
    layer = ir.Dense(name="fc", inputs=(x,), output=y, weight=rng.integers(-128, 128, (n, k)).astype(np.int8),
                     bias=rng.integers(-3000, 3000, n).astype(np.int32), weight_scale=rng.uniform(0.001, 0.01, n))
    return ir.Graph("fc", (x,), (layer,), ("y",))


GRAPHS = ["conv", "grouped", "depthwise", "dense"]


@pytest.mark.parametrize("case", range(3))
@pytest.mark.parametrize("kind", GRAPHS)
def test_expanded_graph_equals_golden_and_compiles_exactly(kind, case):
    seed = SEED + 10 * GRAPHS.index(kind) + case
    rng = np.random.default_rng(seed)
    print(f"{kind} case {case}: seed {seed}")
    base = {"conv": lambda: random_conv_graph(rng), "grouped": lambda: random_grouped_conv_graph(rng, "grouped"),
            "depthwise": lambda: random_grouped_conv_graph(rng, "depthwise"), "dense": lambda: _dense_graph(rng)}[kind]()
    graph = _with_zero_points(base, rng)
    assert graph.layers[0].has_weight_zero_point
    expanded = expand_weight_zero_points(graph)
    assert not any(l.has_weight_zero_point for l in expanded.weighted_layers)
    assert copy_tensors(expanded) and all(t not in graph.tensors for t in copy_tensors(expanded))
    x = _codes(rng, graph.inputs[0], 3)
    want = run_graph(graph, {"x": x})
    got = run_graph(expanded, {"x": x})
    for t in want:
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"{kind}: tensor {t} of the expanded graph")
    prog = compile_graph(graph, get_preset("default"), batch=3)
    iss, _ = run_program(prog, {"x": x})
    compared = [t for t in want if t in iss]
    assert "y" in compared
    for t in compared:
        np.testing.assert_array_equal(iss[t], want[t], err_msg=f"{kind}: tensor {t} on the ISS")
