"""Concatenations of partial activation words (compiler/concat_placement.py): inputs of any channel count (1..13
on 8 lanes, 1..3 on the tiny preset's 2), of the output's quantisation or requantised, int8 and uint8, planes and
vectors, two to four inputs: the rewritten graph equals the original on every original tensor (golden model),
and the compiled program equals the golden model in the instruction-set model. Inputs include the most
negative and the largest code. Seeds fixed and printed. The RTL run is in tests/test_user_models.py
(``test_rtl_bit_exact``, the ``concat_odd`` model)."""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.concat_placement import place_unaligned_concats, unaligned
from cimforge.compiler.iss import run_program
from cimforge.golden import ir
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset

SEED = 8080


def _graph(rng, vector: bool) -> ir.Graph:
    dtype = str(rng.choice(["int8", "uint8"]))
    lo, hi = ir.DTYPE_RANGES[dtype]
    out_q = (float(rng.uniform(0.02, 0.05)), int(rng.integers(lo + 20, hi - 20)))
    n = int(rng.integers(2, 5))
    chans = [int(rng.integers(1, 14)) for _ in range(n)]
    chans[0] = int(rng.choice([1, 3, 5, 7, 9, 13]))  # the first input is never whole words
    hw = () if vector else (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    ins = []
    for i, c in enumerate(chans):
        same = rng.random() < 0.5
        q = out_q if same else (float(rng.uniform(0.02, 0.05)), int(rng.integers(lo, hi + 1)))
        ins.append(ir.TensorInfo(f"x{i}", (c, *hw), dtype, *q))
    y = ir.TensorInfo("y", (sum(chans), *hw), dtype, *out_q)
    return ir.Graph("cat", tuple(ins), (ir.Concat(name="cat", inputs=tuple(ins), output=y),), ("y",))


@pytest.mark.parametrize("preset", ["default", "tiny"])
@pytest.mark.parametrize("case", range(6))
def test_unaligned_concat_is_exact(case, preset):
    seed = SEED + case + (100 if preset == "tiny" else 0)
    rng = np.random.default_rng(seed)
    cfg = get_preset(preset)
    graph = _graph(rng, vector=case % 3 == 2)
    print(f"{preset} case {case}: seed {seed}, inputs {[t.shape for t in graph.inputs]}")
    lanes = 8 if preset == "default" else 2
    rewritten = place_unaligned_concats(graph, lanes)
    assert unaligned(graph.layers[0], lanes) and len(rewritten.layers) == 2 * len(graph.inputs) - 1
    feeds = {}
    for t in graph.inputs:
        q = rng.integers(t.qmin, t.qmax + 1, (3, *t.shape))
        q.reshape(3, -1)[0, 0], q.reshape(3, -1)[-1, -1] = t.qmin, t.qmax
        feeds[t.name] = q.astype(t.np_dtype)
    want = run_graph(graph, feeds)
    np.testing.assert_array_equal(run_graph(rewritten, feeds)["y"], want["y"])
    iss, _ = run_program(compile_graph(graph, cfg, batch=3), feeds)
    np.testing.assert_array_equal(iss["y"], want["y"], err_msg="the compiled concatenation on the ISS")


def test_aligned_concat_is_not_rewritten():
    x = [ir.TensorInfo(f"x{i}", (8, 2, 2), "int8", 0.05, 0) for i in range(2)]
    y = ir.TensorInfo("y", (16, 2, 2), "int8", 0.05, 0)
    g = ir.Graph("cat", tuple(x), (ir.Concat(name="cat", inputs=tuple(x), output=y),), ("y",))
    assert place_unaligned_concats(g, 8) is g
