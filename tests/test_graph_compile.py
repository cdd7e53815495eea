"""The graph compiler: block tiling, empty blocks skipped, orders, and the round programs' execution on the
block images equal to the golden models bit for bit; skipping empty blocks shows in the predicted cycles."""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.graph import golden
from cimforge.graph.compile import compile_graph, execute
from cimforge.graph.io import load_graph
from cimforge.graph.tiling import tile, vector_traffic, order
from cimforge.presets import get_preset

GRAPHS = ["karate", "lesmis", "florentine", "davis", "grid:9x11", "er:n=120,p=0.04,seed=1,directed=1,wmax=9",
          "ba:n=150,m=2,seed=3,wmax=5"]


@pytest.mark.parametrize("preset", ["tiny", "default", "isscc22"])
@pytest.mark.parametrize("spec", GRAPHS)
def test_execute_equals_golden(spec, preset):
    g = load_graph(spec)
    cfg = get_preset(preset)
    for algo in golden.ALGORITHMS:
        plan = compile_graph(g, algo, cfg)
        src = g.n // 2 if algo in ("bfs", "sssp") else None
        run = execute(plan, src)
        ref = golden.run_golden(algo, g, src)
        np.testing.assert_array_equal(run.result.values, ref.values)
        assert run.result.rounds == ref.rounds
        fast = execute(plan, src, per_block=False)  # the large-graph path builds the same programs
        assert fast.programs == run.programs and fast.cycles == run.cycles
        assert (fast.processed, fast.skipped_inactive, fast.macro_ops) == (run.processed, run.skipped_inactive,
                                                                            run.macro_ops)
        assert run.cycles == sum(run.round_cycles) > 0
        t = plan.tiling
        assert len(plan.blocks) + t.skipped == t.total


def test_tiling_covers_every_arc_once():
    g = load_graph("er:n=100,p=0.05,seed=7,directed=1")
    for orient in ("pull", "push"):
        t = tile(g, 8, 16, orient)
        seen = np.concatenate([b.arcs for b in t.blocks])
        assert sorted(seen.tolist()) == list(range(g.arcs))
        for b in t.blocks:
            s_lo, s_hi = t.source_segment(b)
            d_lo, d_hi = t.dest_segment(b)
            assert (s_lo <= g.src[b.arcs]).all() and (g.src[b.arcs] < s_hi).all()
            assert (d_lo <= g.dst[b.arcs]).all() and (g.dst[b.arcs] < d_hi).all()


def test_skipping_empty_blocks_shows_in_cycles():
    """A clustered vertex order (the grid row by row: arcs near the diagonal) against the same graph with its
    vertices shuffled: same results, far fewer non-empty blocks and fewer cycles."""
    g = load_graph("grid:16x16")
    rng = np.random.default_rng(5)
    print("seed 5")
    shuffled = g.permuted(rng.permutation(g.n), name="grid shuffled")
    cfg = get_preset("tiny")
    figures = {}
    for name, graph in (("clustered", g), ("shuffled", shuffled)):
        plan = compile_graph(graph, "bfs", cfg)
        run = execute(plan, 0)
        figures[name] = (len(plan.blocks), plan.tiling.skipped, run.cycles)
        print(name, "blocks", len(plan.blocks), "skipped", plan.tiling.skipped, "cycles", run.cycles)
    assert figures["clustered"][0] * 3 < figures["shuffled"][0]
    assert figures["clustered"][2] < 0.6 * figures["shuffled"][2]


def test_order_choice_is_measured():
    g = load_graph("ba:n=400,m=3,seed=2")
    t = tile(g, 8, 16, "pull")
    by_src = vector_traffic(t, order(t, "source"))
    by_dst = vector_traffic(t, order(t, "dest"))
    plan = compile_graph(g, "bfs", get_preset("tiny"))
    best = min(plan.order_figures.values(), key=lambda f: f["words"])
    assert plan.order_figures[plan.order_name] == best
    assert {by_src["words"], by_dst["words"]} == {f["words"] for f in plan.order_figures.values()}
