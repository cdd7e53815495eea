"""Inference mapping on the fabric: the chosen mapping against all-data-parallel and all-model-parallel."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cimforge.compiler.cost import LayerCost, Parallelism
from cimforge.compiler.partition import PartitionError, load_model
from cimforge.compiler.partition.fabric_cost import analytic_layer_cost, cycle_model, pages_per_macro
from cimforge.compiler.partition.inference import compare_inference, parallelisms, plan_inference, scale_to_fabric
from cimforge.compiler.partition.report import split_label
from cimforge.compiler.partition.zoo import digits_cnn
from cimforge.golden.datasets import MODELS_DIR
from cimforge.config import CimConfig, FabricConfig, MacroConfig
from cimforge.presets import get_preset

BIG = CimConfig(name="big", macro=MacroConfig(rows=64, pages=16, cols=64), fabric=FabricConfig(n_macros=64))


def digits_networks():
    nets = [digits_cnn()]
    try:
        from cimforge.golden.onnx_import import load_onnx as golden_load

        if (MODELS_DIR / "digits_cnn_qop.onnx").exists():
            nets.append(golden_load(str(MODELS_DIR / "digits_cnn_qop.onnx")))
    except ImportError:
        pass
    return nets


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("macros", [4, 8])
def test_digits_cnn_mapping_beats_all_dp_and_all_mp(macros, batch):
    cfg = get_preset("default")
    cfg = replace(cfg, fabric=replace(cfg.fabric, n_macros=macros))
    for net in digits_networks():
        plans = compare_inference(net, cfg, batch)
        best = plans["search"].per_batch_cycles
        print(net.name, macros, batch, {k: p.per_batch_cycles for k, p in plans.items()})
        assert best < plans["dp"].per_batch_cycles
        assert best < plans["mp"].per_batch_cycles
        _check_plan(plans["search"], cfg)


def test_digits_cnn_on_isscc22_pages_search_never_worse_and_better_where_it_can_be():
    # 16 pages per macro hold the whole network replicated (dp is all resident here), yet the fabric's model
    # still prefers a mix: a replica splits one image's positions, and the fc layer has one position, so
    # replicating it idles macros that an output split would use. The acceptance property: never worse than
    # either baseline, strictly better than one whose choice differs from the search's on a layer it prices higher.
    cfg = replace(get_preset("isscc22"), fabric=FabricConfig(n_macros=4))
    for batch in (1, 8):
        plans = compare_inference(digits_cnn(), cfg, batch)
        s = plans["search"]
        assert plans["dp"].reload_cycles == 0  # nothing forces dp to stream: the gain is the split alone
        for base in ("dp", "mp"):
            b = plans[base]
            assert s.per_batch_cycles <= b.per_batch_cycles, (batch, base)
            cheaper = [m.layer.name for m, n in zip(s.mappings, b.mappings) if m.per_batch_cycles < n.per_batch_cycles]
            if cheaper:
                assert s.per_batch_cycles < b.per_batch_cycles, (batch, base, cheaper)
        assert s.per_batch_cycles < plans["dp"].per_batch_cycles < plans["mp"].per_batch_cycles
        _check_plan(s, cfg)


def test_digits_mapping_figures_on_a_four_page_fabric():
    # Pinned figures of the analytic model (the compiler's model is checked by the test above), on the default
    # fabric with 4 pages per macro instead of 8, where residency decides between the plans.
    cfg = get_preset("default")
    cfg = replace(cfg, macro=replace(cfg.macro, pages=4))
    plans = compare_inference(digits_cnn(), cfg, 1, layer_cost=analytic_layer_cost)
    assert {k: p.per_batch_cycles for k, p in plans.items()} == {"dp": 1364, "mp": 810, "search": 330}
    s = plans["search"]
    assert [split_label(m.par) for m in s.mappings] == ["4x1x1", "1x2x2", "1x1x2"]
    assert all(m.resident for m in s.mappings) and s.reload_cycles == 0
    # All-data-parallel replicates conv2's 4 pages on 4 macros: it cannot stay resident, so it reloads.
    assert not plans["dp"].mappings[1].resident and plans["dp"].reload_cycles == 1024
    assert s.parallelism_by_layer()[s.mappings[1].layer.name] == Parallelism(1, 2, 2)


@pytest.mark.parametrize("model, fabric", [pytest.param("squeezenet", True, marks=pytest.mark.slow),  # 34 s
                                           ("alexnet", False)])
def test_real_topology_scaled_to_the_fabric(model, fabric):
    # AlexNet scaled down keeps its grouped convolutions with groups of 6 channels, which the fabric cannot run
    # (test below): it is mapped with the analytic model; SqueezeNet with the fabric compiler's own model.
    net = scale_to_fabric(load_model(model), BIG, spatial_div=4)
    bits = sum(l.weight_count for l in net.weighted_layers) * 8
    assert bits <= BIG.fabric.n_macros * BIG.macro.bits < 2 * bits * 4  # the smallest power-of-two divisor
    plans = compare_inference(net, BIG, 4, layer_cost=None if fabric else analytic_layer_cost)
    assert all(p.cycle_model.startswith("cimforge.compiler.cost") == fabric for p in plans.values())
    best = plans["search"]
    print(model, net.name, {k: (p.schedule, p.per_batch_cycles) for k, p in plans.items()})
    assert best.per_batch_cycles < plans["dp"].per_batch_cycles
    assert best.per_batch_cycles < plans["mp"].per_batch_cycles
    _check_plan(best, BIG)


def _check_plan(plan, cfg):
    """Macro budgets, page budgets and stage times are what the plan claims."""
    M, P = plan.n_macros, cfg.macro.pages
    if plan.schedule == "pipeline":
        stages = {}
        for m in plan.mappings:
            assert m.par.macros <= m.n_macros
            stages.setdefault(m.stage, []).append(m)
        assert sum(ms[0].n_macros for ms in stages.values()) <= M
        times = [sum(m.per_batch_cycles for m in ms) for ms in stages.values()]
        assert plan.per_batch_cycles == max(times)
        assert plan.latency_cycles == sum(times)
        for ms in stages.values():
            if all(m.resident for m in ms):
                assert sum(m.cost.pages for m in ms) <= P
    else:
        assert plan.per_batch_cycles == sum(m.per_batch_cycles for m in plan.mappings)
        assert sum(m.cost.pages * m.par.macros for m in plan.mappings if m.resident) <= M * P
    for m in plan.mappings:
        assert m.par.macros <= M
        if m.resident:
            assert m.cost.pages <= P


def test_pipeline_balances_stages():
    # Eight layers on 16 macros (analytic model: the fabric itself runs layers one after the other): the
    # pipeline gives the heavy layers more macros so no stage starves.
    net = scale_to_fabric(load_model("alexnet"), BIG, spatial_div=4)
    plan = plan_inference(net, replace(BIG, fabric=FabricConfig(n_macros=16)), 64, layer_cost=analytic_layer_cost)
    _check_plan(plan, BIG)
    assert plan.schedule == "pipeline" and plan.alternatives["pipeline"] < plan.alternatives["sequential"]
    per_stage = {}
    for m in plan.mappings:
        per_stage[m.stage] = per_stage.get(m.stage, 0) + m.per_batch_cycles
    assert max(per_stage.values()) == plan.per_batch_cycles and len(per_stage) > 1


def test_fabric_model_skips_splits_the_compiler_rejects():
    # conv2 of the digits CNN (K = 72: two row tiles) on a 1-page macro: only K-splits of >= 2 macros fit
    # (no partial-sum spill); the search skips the rest instead of failing.
    cfg = get_preset("default")
    cfg = replace(cfg, macro=replace(cfg.macro, pages=1))
    fn, _ = cycle_model()
    conv2 = digits_cnn().weighted_layers[1]
    with pytest.raises(ValueError, match="partial sums are not spilled"):
        fn(conv2, cfg, Parallelism(4, 1, 1), 1)
    for strategy in ("search", "dp", "mp"):
        plan = plan_inference(digits_cnn(), cfg, 1, strategy)
        assert plan.parallelism_by_layer()["conv1"].in_ch >= 2, strategy
        assert plan.schedule == "sequential"


def test_fabric_model_names_a_layer_it_cannot_run():
    # a reduction of 64 elements on 2 macros of one 16-row page: no split holds it (partial sums are not spilled)
    from cimforge.golden.onnx_import import load_onnx as golden_load

    graph = golden_load(str(MODELS_DIR / "digits_cnn_qop.onnx"))
    small = CimConfig(name="small", macro=MacroConfig(rows=16, pages=1, cols=64), fabric=FabricConfig(n_macros=2))
    with pytest.raises(PartitionError, match=r"layer '/0/Conv_quant': no split of 2 macros .* allowed in_ch >= 4"):
        plan_inference(graph, small, 1)


def test_fabric_model_runs_grouped_convolutions():
    # AlexNet / 8 has groups of 6 channels, less than a word: super-groups with block-diagonal weights run them
    net = scale_to_fabric(load_model("alexnet"), BIG, spatial_div=4)
    plan = plan_inference(net, BIG, 1)
    assert "n4" in {m.layer.name for m in plan.mappings} and plan.per_batch_cycles > 0


@pytest.mark.parametrize("batch", [1, 3])
def test_fabric_plans_compile(batch):
    # What the partitioner chooses with the compiler's model is what compile_graph runs: every plan compiles,
    # with the residency the plan assumed and the plan's figures from the same per-layer model.
    from cimforge.compiler.compile import compile_graph
    from cimforge.compiler.cost import Parallelism as FabricParallelism
    from cimforge.golden.onnx_import import load_onnx as golden_load

    graph = golden_load(str(MODELS_DIR / "digits_cnn_qop.onnx"))
    cfg = get_preset("default")
    plans = compare_inference(graph, cfg, batch)
    for name, plan in plans.items():
        assert plan.cycle_model == "cimforge.compiler.cost.layer_cost" and plan.schedule == "sequential"
        par = {k: FabricParallelism(p.batch, p.in_ch, p.out_ch) for k, p in plan.parallelism_by_layer().items()}
        assert set(par) == {l.name for l in graph.weighted_layers}
        prog = compile_graph(graph, cfg, batch=batch, parallelism=par)
        assert prog.resident == all(m.resident for m in plan.mappings), name
        assert {mp.layer: mp.par for mp in prog.passes} == par
        _check_plan(plan, cfg)


def test_analytic_cost_follows_the_macro_contract():
    cfg = get_preset("default")  # 64 rows, 64 cols, 4 pages
    conv2 = digits_cnn().weighted_layers[1]  # K = 72, N = 16: 2 row tiles x 2 column tiles (8 weights per row)
    c = analytic_layer_cost(conv2, cfg, Parallelism(1, 1, 1))
    assert c.pages == 4 and c.compute_cycles == 4 * 16 * (8 + 2) and c.weight_load_cycles == 4 * 64
    c = analytic_layer_cost(conv2, cfg, Parallelism(1, 2, 2), batch=3)
    assert c.pages == 1 and c.compute_cycles == 48 * 10
    assert c.psum_traffic_bits == 48 * 16 * 1 * cfg.macro.acc_width
    assert c.act_traffic_bits == 48 * 72 * 8 * 2
    assert pages_per_macro(conv2, cfg, Parallelism(4, 1, 1)) == 4
    assert len(parallelisms(4)) == 13


def test_cycle_model_is_pluggable():
    calls = []

    def flat(layer, cfg, par, batch):
        calls.append(par)
        return LayerCost(100 // par.macros + 1, 100 // par.macros, 1, 0, 0, 1)

    plan = plan_inference(digits_cnn(), get_preset("default"), 1, layer_cost=flat)
    assert plan.cycle_model == "flat" and calls
    fn, name = cycle_model()
    assert callable(fn) and name


def test_bad_inference_requests():
    with pytest.raises(PartitionError, match="inference strategy 'x'"):
        plan_inference(digits_cnn(), get_preset("default"), 1, "x")
    with pytest.raises(PartitionError, match="batch = 0"):
        plan_inference(digits_cnn(), get_preset("default"), 0)


def test_ir_layers_for_the_compilers_cycle_model():
    pytest.importorskip("cimforge.golden.ir")
    from cimforge.compiler.partition.fabric_cost import ir_layer

    for l in [*load_model("alexnet").weighted_layers[:3], *digits_cnn().weighted_layers]:
        ir = ir_layer(l)
        assert ir.gemm.M == l.gemm.M and ir.gemm.K == l.gemm.K and ir.gemm.N == l.gemm.N
        assert ir.gemm.groups == l.groups
