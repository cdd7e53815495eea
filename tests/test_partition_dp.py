"""The layer-wise DP against brute force: one level, each level of the hierarchy (H up to 3), and the joint
search over all levels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cimforge.compiler.partition import Dataflow, Edge, plan_training
from cimforge.compiler.partition.dp import Problem, brute_force, evaluate, solve
from cimforge.compiler.partition.tables import TYPE_SETS
from cimforge.compiler.partition.training import Accelerators, TrainingModel, run_hierarchy, policy_for
from cimforge.golden.ir import LayerShape

SEED = 20261124


def _fc(name: str, fin: int, fout: int) -> LayerShape:
    return LayerShape(name, "dense", ("x",), (name,), ((fin,),), (fout,), op="Gemm")


def _conv(name: str, cin: int, cout: int, hw: int, k: int) -> LayerShape:
    return LayerShape(name, "conv2d", ("x",), (name,), ((cin, hw, hw),), (cout, hw, hw), op="Conv", kernel=(k, k),
                      stride=(1, 1))


def random_network(rng: np.random.Generator, n: int) -> Dataflow:
    """A small DAG: a chain, plus random skip, concat-share and shortcut (block) edges."""
    layers = []
    for i in range(n):
        if i >= n - 1 and rng.random() < 0.5:
            layers.append(_fc(f"fc{i}", int(rng.integers(16, 512)), int(rng.integers(8, 512))))
        else:
            k = int(rng.choice([1, 3, 5]))
            hw = int(rng.choice([7, 14, 28]))
            layers.append(_conv(f"c{i}", int(rng.integers(3, 256)), int(rng.integers(8, 256)), hw, k))
    edges = {(i, i + 1, "inter"): 1.0 for i in range(n - 1)}
    for _ in range(int(rng.integers(0, n))):
        s = int(rng.integers(0, n - 1))
        d = int(rng.integers(s + 1, n))
        kind = "block" if rng.random() < 0.5 else "inter"
        edges[(s, d, kind)] = float(rng.choice([0.25, 0.5, 1.0]))
    return Dataflow("random", layers, [Edge(s, d, w, k) for (s, d, k), w in sorted(edges.items())])


def test_solve_equals_brute_force_on_random_problems():
    rng = np.random.default_rng(SEED)
    print("seed", SEED)
    for trial in range(200):
        n = int(rng.integers(1, 8))
        d = int(rng.integers(2, 4))
        unary = [rng.random(d) * 10 for _ in range(n)]
        edges = []
        for _ in range(int(rng.integers(0, 2 * n))):
            if n < 2:
                break
            i = int(rng.integers(0, n - 1))
            j = int(rng.integers(i + 1, n))
            edges.append((i, j, rng.random((d, d)) * 10))
        p = Problem(unary, edges)
        got, want = solve(p), brute_force(p)
        assert got.exact
        assert got.cost == pytest.approx(want.cost, rel=1e-12), trial
        assert evaluate(p, got.choice) == pytest.approx(got.cost, rel=1e-12)


def test_solve_fallback_when_the_frontier_is_too_wide():
    # Every layer talks to every later one (DenseNet-like): with a tiny table budget the DP drops edges and
    # refines; the answer is marked inexact, costs what it says, and is no worse than any uniform assignment.
    rng = np.random.default_rng(SEED + 1)
    n, d = 8, 3
    unary = [rng.random(d) for _ in range(n)]
    edges = [(i, j, rng.random((d, d))) for i in range(n) for j in range(i + 1, n)]
    p = Problem(unary, edges)
    got = solve(p, max_table=27, fallback_table=9)
    assert not got.exact
    assert evaluate(p, got.choice) == pytest.approx(got.cost)
    assert got.cost <= min(evaluate(p, (k,) * n) for k in range(d)) + 1e-12
    assert got.cost >= brute_force(p).cost - 1e-12


@pytest.mark.parametrize("strategy", ["hypar", "accpar"])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_each_level_of_the_hierarchy_is_optimal(strategy, levels):
    """At every level, the DP's choice costs the minimum over all type assignments of that level (on the tensors
    the levels above have cut)."""
    rng = np.random.default_rng(SEED + levels)
    types = TYPE_SETS[strategy]
    for trial in range(12):
        net = random_network(rng, int(rng.integers(2, 7)))
        model = TrainingModel(net, int(rng.choice([1, 32, 512])))
        acc = Accelerators.homogeneous(2 ** levels)
        sizes = model.sizes0  # the tensors as the levels above have cut them (homogeneous: every group alike)
        for gs in run_hierarchy(model, acc, policy_for(strategy)):
            sol = gs[0].solution
            best = min(model.per_layer(sizes, 0.5, [int(t) for t in assign]).sum()
                       for assign in itertools.product(types, repeat=model.n))
            assert sol.cost == pytest.approx(best, rel=1e-12), (trial, sol.types)
            sizes = model.split(sizes, [int(t) for t in sol.types], 0.5)


@pytest.mark.parametrize("strategy", ["hypar", "accpar"])
@pytest.mark.parametrize("objective", ["plain", "weighted"])
def test_joint_search_equals_brute_force_over_all_levels(strategy, objective):
    rng = np.random.default_rng(SEED + 7)
    types = TYPE_SETS[strategy]
    for levels, n in [(1, 4), (2, 3), (3, 2), (2, 4)]:
        net = random_network(rng, n)
        acc = Accelerators.homogeneous(2 ** levels)
        joint = plan_training(net, acc, 64, strategy, search="joint", objective=objective)
        greedy = plan_training(net, acc, 64, strategy)
        model = TrainingModel(net, 64)
        best = np.inf
        for per_level in itertools.product(itertools.product(types, repeat=n), repeat=levels):
            lv = run_hierarchy(model, acc, lambda m, s, a, h, lo: (per_level[h], True))
            plan_cost = sum((2.0 ** h if objective == "weighted" else 1.0) * gs[0].solution.cost
                            for h, gs in enumerate(lv))
            best = min(best, plan_cost)
        got = joint.total_weighted if objective == "weighted" else joint.total_plain
        assert got == pytest.approx(best, rel=1e-12), (levels, n)
        # The papers' level-by-level search can only do as well as the joint optimum.
        g = greedy.total_weighted if objective == "weighted" else greedy.total_plain
        assert g >= got - 1e-9 * got
