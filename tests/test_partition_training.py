"""The papers' training cost model: tables, strategies on real topologies, the authors' DP, heterogeneity."""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.compiler.partition import (Accelerators, PartitionError, PType, compare_strategies, dataflow,
                                         load_model, plan_training, sequential)
from cimforge.compiler.partition.reference import reference_partition
from cimforge.compiler.partition.tables import TYPE_SETS, block_parts, convert, inter_parts, Layout
from cimforge.compiler.partition.training import BASELINES, TrainingModel, TrainingPlan, run_hierarchy


# Coefficients of F and E as linghaosong/AccPar src/accpar.cpp writes them (Layer::Com_Cost_Inter_Layer and
# Layer::Com_Cost_Inter_Layer_Block), rows: previous / block-first layer type, columns: this layer's type.
AUTHORS_INTER = {"F": [[0, .25, .5], [0, 0, 0], [.25, 0, .5]], "E": [[0, .25, 0], [.5, .5, 0], [.25, 0, 0]]}
AUTHORS_BLOCK = {"F": [[0, .5, .25], [.25, .5, 0], [0, 0, 0]], "E": [[0, 0, .25], [.25, 0, 0], [.5, 0, .5]]}


def test_tables_from_layouts_equal_the_authors_tables():
    f, e = inter_parts()
    assert f.tolist() == AUTHORS_INTER["F"] and e.tolist() == AUTHORS_INTER["E"]
    f, e = block_parts()
    assert f.tolist() == AUTHORS_BLOCK["F"] and e.tolist() == AUTHORS_BLOCK["E"]


def test_conversion_costs_with_a_ratio():
    assert convert(Layout.ROW, Layout.COL, 0.25) == pytest.approx(0.1875)
    assert convert(Layout.COL, Layout.DUP, 0.25) == pytest.approx(0.75)
    assert convert(Layout.DUP, Layout.ROW, 0.25) == 0.0
    for a in (0.1, 0.3, 0.5):  # symmetric in the two sides
        assert convert(Layout.ROW, Layout.DUP, a) == pytest.approx(convert(Layout.ROW, Layout.DUP, 1 - a))


def test_hypar_two_accelerators_by_hand():
    # One fc layer, batch 4, 8 -> 2: dp costs A(dW) = 16, mp costs A(F_{l+1}) = 8, Type-III A(E_l) = 32.
    net = sequential("fc", (8, 1, 1), [("fc", 2)])
    costs = {s: plan_training(net, 2, 4, s).total_plain for s in ("dp", "mp", "tp", "hypar", "accpar")}
    assert costs == {"dp": 16, "mp": 8, "tp": 32, "hypar": 8, "accpar": 8}
    # Two fc layers 8 -> 8 -> 8, batch 64: gradients (64 each) are cheaper than activations; mp -> mp pays .5 E.
    net = sequential("fc2", (8, 1, 1), [("fc", 8), ("fc", 8)])
    p = plan_training(net, 2, 64, "mp")
    assert p.total_plain == 2 * 64 * 8 + 0.5 * 64 * 8
    assert plan_training(net, 2, 64, "hypar").total_plain == 128


def test_weighted_total_counts_the_pairs_of_each_level():
    p = plan_training(load_model("vgg19"), 64, 512, "accpar")
    assert p.total_weighted == pytest.approx(sum(2 ** h * c for h, c in enumerate(p.level_cost)))
    assert p.layer_plain.sum() == pytest.approx(p.total_plain)
    assert p.layer_weighted.sum() == pytest.approx(p.total_weighted)


@pytest.mark.parametrize("model,n", [("alexnet", 128), ("vgg19", 128), ("resnet50", 128), ("vgg19", 1024),
                                     ("resnet50", 1024), ("accpar_alexnet", 128), ("accpar_resnet50", 128)])
def test_hybrid_search_never_worse_than_any_baseline(model, n):
    plans = compare_strategies(load_model(model), n, 512)
    for hybrid in ("hypar", "accpar"):
        for base in BASELINES:
            assert plans[hybrid].total_plain <= plans[base].total_plain * (1 + 1e-12), (hybrid, base)
            assert plans[hybrid].total_weighted <= plans[base].total_weighted * (1 + 1e-12), (hybrid, base)
    # AccPar's three types include HyPar's two.
    assert plans["accpar"].total_plain <= plans["hypar"].total_plain * (1 + 1e-12)
    assert all(p.exact for p in plans.values())


def test_alexnet_table_figures():
    """The AlexNet table (batch 512, 128 accelerators): pinned totals in millions of elements."""
    plans = compare_strategies(load_model("alexnet"), 128, 512)
    got = {k: round(p.total_plain / 1e6, 2) for k, p in plans.items()}
    assert got == {"dp": 426.68, "mp": 2301.67, "owt": 58.12, "hypar": 51.09, "accpar": 38.52}
    # The one weird trick: conv layers Type-I at every level, fc layers Type-II.
    owt = plans["owt"].types()
    assert all(set(row) == {"I"} for row in owt[:5]) and all(set(row) == {"II"} for row in owt[5:])


@pytest.mark.parametrize("model", ["accpar_alexnet", "alexnet", "vgg19"])
@pytest.mark.parametrize("strategy", ["hypar", "accpar"])
def test_exact_dp_matches_the_authors_dp_on_chains(model, strategy):
    net = load_model(model)
    model_ = TrainingModel(net, 512)
    ref = reference_partition(model_, 7, TYPE_SETS[strategy])
    mine = plan_training(net, 128, 512, strategy)
    for h, (types, reported) in enumerate(ref):
        assert mine.levels[h][0].solution.cost == pytest.approx(reported, rel=1e-12)
        assert list(mine.levels[h][0].solution.types) == types


def test_exact_dp_not_worse_than_the_authors_shortcut_heuristic():
    net = load_model("accpar_resnet50")
    model = TrainingModel(net, 512)
    ref = reference_partition(model, 7, TYPE_SETS["accpar"])
    acc = Accelerators.homogeneous(128)
    ref_plan = TrainingPlan(model.net, 512, acc, "accpar", "reference",
                            run_hierarchy(model, acc, lambda m, s, a, h, lo: (ref[h][0], True)))
    mine = plan_training(net, acc, 512, "accpar")
    for h in range(7):
        # Level by level on the same tensors the exact DP is optimal; the authors' DP path is a candidate.
        ref_level = run_hierarchy(model, Accelerators.homogeneous(2 ** (h + 1)),
                                  lambda m, s, a, hh, lo: (mine.levels[hh][0].solution.types if hh < h
                                                           else ref[h][0], True))[h][0].solution.cost
        assert mine.levels[h][0].solution.cost <= ref_level * (1 + 1e-12)
    # Their DP under-reports shortcut layers (the running minimum starts without the shortcut term).
    assert sum(r[1] for r in ref) < ref_plan.total_plain
    assert mine.total_plain < ref_plan.total_plain


def test_resnet50_from_onnx_has_acccpar_shortcuts():
    net = dataflow(load_model("resnet50"))
    blocks = [(e.src, e.dst) for e in net.edges if e.kind == "block"]
    # 12 identity blocks; the merges before the three projection blocks feed two layers each.
    assert len(blocks) == 15
    names = [l.name for l in net.weighted]
    assert len(names) == 54  # 49 convs on the main path, 4 projections, 1 fc
    p = plan_training(net, 1024, 512, "accpar")
    assert p.exact and len(p.levels) == 10


def test_heterogeneous_split_balances_compute_and_uses_the_ratio():
    net = load_model("alexnet")
    acc = Accelerators.parse("4x1,4x3")
    p = plan_training(net, acc, 512, "accpar")
    assert p.levels[0][0].solution.alpha == pytest.approx(0.25)
    assert all(g.solution.alpha == pytest.approx(0.5) for g in p.levels[1])
    # Even splits leave the fast half idle: balanced time is sum(MACs)/sum(P), even splits sum(MACs)/(n*min P).
    assert p.compute_time() == pytest.approx(p.compute_macs().sum() / 16)
    assert p.naive_compute_time() == pytest.approx(p.compute_macs().sum() / 8)
    # The two sides of level 0 carry different tensors, so level 1 has two distinct groups.
    assert p.levels[1][0].solution is not p.levels[1][1].solution
    for base in BASELINES:
        assert p.total_plain <= plan_training(net, acc, 512, base).total_plain * (1 + 1e-12)


def test_bad_requests_name_the_value():
    net = load_model("alexnet")
    with pytest.raises(PartitionError, match="power of two"):
        plan_training(net, 12, 512)
    with pytest.raises(PartitionError, match="strategy 'foo'"):
        plan_training(net, 4, 512, "foo")
    with pytest.raises(PartitionError, match="batch = 0"):
        plan_training(net, 4, 0)
    with pytest.raises(PartitionError, match="joint search over 10 levels"):
        plan_training(load_model("resnet50"), 1024, 512, "accpar", search="joint")
    with pytest.raises(PartitionError, match="throughputs"):
        Accelerators.parse("4x1,4xfast")


def test_types_are_reported_per_level():
    p = plan_training(load_model("alexnet"), 8, 512, "accpar")
    t = p.types()
    assert len(t) == 8 and all(len(row) == 3 for row in t)
    assert {x for row in t for x in row} <= {"I", "II", "III"}
    assert PType.III.label == "III" and PType.II.meaning == "input channel"
    assert np.isfinite(p.compute_macs()).all()
