"""The cost model on its own: the extrapolation of long passes equals the full slot recurrence, the
partitioner's interface (``layer_cost``) answers for every layer kind, and the compiler's split choice is never
worse than any other valid split. (Agreement with RTL-measured cycles: tests/test_top_cosim.py.)"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler import cost
from cimforge.compiler.cost import (LayerCost, Parallelism, choose_parallelism, layer_cost, mac_pass_cycles,
                                    valid_parallelisms)
from cimforge.compiler.tiling import CompileError, geometry, k_tiles, rowpack_ok, tile_steps
from cimforge.gen.isa import lanes
from cimforge.golden import ir
from cimforge.presets import get_preset
from cimforge.sim.cosim import MODELS, load_digits_model

DEFAULT = get_preset("default")


@pytest.mark.parametrize("seed", range(20))
def test_extrapolation_equals_full_recurrence(seed, monkeypatch):
    rng = np.random.default_rng(300 + seed)
    steps = [int(s) for s in rng.integers(1, 14, int(rng.integers(1, 7)))]
    npos = int(rng.integers(1, 400))
    nt = int(rng.integers(1, 6))
    par = Parallelism(*(int(v) for v in rng.choice([1, 2, 4], 3)))
    ab = int(rng.choice([1, 4, 8]))
    print(f"seed {300 + seed}: steps {steps} npos {npos} nt {nt} {par} ab {ab}")
    fast = mac_pass_cycles(npos, steps, nt, par, ab)
    monkeypatch.setattr(cost, "_EXTRAPOLATE", False)
    full = mac_pass_cycles(npos, steps, nt, par, ab)
    assert fast == full


@pytest.mark.parametrize("model", MODELS)
def test_layer_cost_answers_for_every_layer(model):
    g = load_digits_model(model)
    for layer in g.layers:
        c = layer_cost(layer, DEFAULT)
        assert isinstance(c, LayerCost)
        assert c.cycles >= c.compute_cycles >= 0
        if layer in g.weighted_layers:
            assert c.weight_load_cycles > 0 and c.ideal_cycles > 0 and 1 <= c.pages <= DEFAULT.macro.pages
            assert c.act_traffic_bits > 0


def test_layer_cost_of_a_k_split_counts_partial_sums():
    g = load_digits_model("digits_cnn_qop")
    conv2 = g.layer("/4/Conv_quant")  # K = 64: two row tiles on 32-row macros
    r32 = replace(DEFAULT, macro=replace(DEFAULT.macro, rows=32))
    one = layer_cost(conv2, r32, Parallelism(1, 1, 1))
    split = layer_cost(conv2, r32, Parallelism(1, 2, 1))
    assert one.psum_traffic_bits == 0 and split.psum_traffic_bits > 0
    assert split.compute_cycles < one.compute_cycles


def test_layer_cost_refuses_what_does_not_fit():
    g = load_digits_model("digits_cnn_qop")
    tiny = replace(DEFAULT, macro=replace(DEFAULT.macro, rows=8, pages=2))
    with pytest.raises(CompileError, match=r"reduction of 64 elements needs 8 tiles.*allowed in_ch >= 4"):
        layer_cost(g.layer("/4/Conv_quant"), tiny, Parallelism(1, 2, 1))


@pytest.mark.parametrize("model", MODELS)
def test_chosen_split_is_the_cheapest(model):
    g = load_digits_model(model)
    for layer in g.weighted_layers:
        src = g.tensors[g.producer(layer.input.name).input.name].shape \
            if layer.kind == "dense" and g.producer(layer.input.name) is not None \
            and g.producer(layer.input.name).kind == "reshape" else None
        geo = geometry(layer, src, rowpack=rowpack_ok(layer, lanes(DEFAULT), DEFAULT.macro.rows))
        best = choose_parallelism(geo, DEFAULT)
        kt, nt = len(k_tiles(geo, DEFAULT)), -(-geo.cout // lanes(DEFAULT))
        chosen = layer_cost(layer, DEFAULT, best, source_shape=src).compute_cycles
        for par in valid_parallelisms(DEFAULT, kt, nt, geo.npos):
            assert chosen <= layer_cost(layer, DEFAULT, par, source_shape=src).compute_cycles


def _conv(cin, k, weight=None, w=8):
    x = ir.TensorInfo("x", (cin, 8, w), "uint8", 0.05, 3)
    y = ir.TensorInfo("y", (8, 8, w), "uint8", 0.05, 0)
    p = (k - 1) // 2
    wt = np.ones((8, cin, k, k), np.int8) if weight is None else weight
    return ir.Conv2d(name="c", inputs=(x,), output=y, weight=wt, bias=np.zeros(8, np.int32), weight_scale=0.01,
                     padding=(p, p, k - 1 - p, k - 1 - p))


def test_gather_steps_and_pruned_taps():
    """Gather steps per tile: a word per tap of one channel, a word per kernel row when row-packed; taps pruned
    from the end of every filter are not walked (and are no MACs)."""
    stem = _conv(1, 8)
    assert rowpack_ok(stem, 8, 64) and not rowpack_ok(_conv(1, 8, w=9), 8, 64)
    plain, packed = geometry(stem), geometry(stem, rowpack=True)
    assert [tile_steps(t, plain, 8) for t in k_tiles(plain, DEFAULT)] == [64]
    assert [tile_steps(t, packed, 8) for t in k_tiles(packed, DEFAULT)] == [8]
    assert [t.elems for t in k_tiles(packed, get_preset("isscc22"))] == [32, 32]  # whole kernel rows per tile
    wt = np.ones((8, 8, 3, 3), np.int8)
    assert len(k_tiles(geometry(_conv(8, 3, wt)), DEFAULT)) == 2  # K = 72 > 64 rows
    wt[:, :, 2, 2] = 0
    pruned = geometry(_conv(8, 3, wt))
    assert pruned.taps == 8 and pruned.K == 64 and pruned.macs == 64 * 64 * 8
    assert [(t.elems, tile_steps(t, pruned, 8)) for t in k_tiles(pruned, DEFAULT)] == [(64, 8)]
    wt[1, 3, 2, 2] = 1  # one filter still uses the tap: it is walked
    assert geometry(_conv(8, 3, wt)).K == 72


def _depthwise(c, k, stride=1):
    x = ir.TensorInfo("x", (c, 6, 6), "int8", 0.05, -3)
    y = ir.TensorInfo("y", (c, 6 // stride, 6 // stride), "int8", 0.05, 0)
    p = (k - 1) // 2
    return ir.Conv2d(name="dw", inputs=(x,), output=y, weight=np.ones((c, 1, k, k), np.int8), groups=c,
                     bias=np.zeros(c, np.int32), weight_scale=0.01, stride=(stride, stride),
                     padding=(p, p, k - 1 - p, k - 1 - p))


@pytest.mark.parametrize("rows, k, kt", [(64, 3, 2), (32, 3, 3), (128, 3, 1), (64, 5, 4), (16, 3, 5)])
def test_depthwise_bound_and_real_macs(rows, k, kt):
    """A depthwise k x k layer runs a word of channels per super-group (diagonal weights over kt tiles of whole
    taps): its bound is k*k / (kt * rows), at most 1/lanes; its ideal cycles count the real MACs (the IR's),
    not the zeros; 20 channels = two whole words and a half one."""
    from cimforge.compiler.planning import layer_geometries
    cfg = replace(DEFAULT, macro=replace(DEFAULT.macro, rows=rows))
    layer = _depthwise(20, k)
    geos = [geo for geo, _, _ in layer_geometries(layer, cfg)]
    assert [(geo.cin, geo.cout) for geo in geos] == [(8, 8), (8, 8), (4, 4)]
    assert [len(k_tiles(geo, cfg)) for geo in geos[:2]] == [kt, kt]
    assert cost.occupancy(geos[0], cfg) == pytest.approx(k * k / (kt * rows))
    assert cost.occupancy(geos[0], cfg) <= 1 / lanes(cfg)
    assert sum(geo.macs for geo in geos) == layer.macs
    c = layer_cost(layer, cfg)
    assert c.ideal_cycles == pytest.approx(cost.ideal_cycles(layer.macs, cfg))


@pytest.mark.parametrize("c, groups, stride", [(20, 20, 1), (13, 13, 2), (24, 3, 1), (12, 4, 2)])
def test_grouped_layer_cost_is_its_passes(c, groups, stride):
    """layer_cost of a grouped layer (super-groups of two geometries when the channels are not whole words)
    is the sum of the compiled program's MAC passes, each its own cost-model cycles."""
    from cimforge.compiler.compile import compile_graph
    layer = _depthwise(c, 3, stride)
    if groups != c:
        layer = ir.Conv2d(name="dw", inputs=layer.inputs, output=layer.output, groups=groups,
                          weight=np.ones((c, c // groups, 3, 3), np.int8), bias=layer.bias, weight_scale=0.01,
                          stride=layer.stride, padding=layer.padding)
    g = ir.Graph("g", layer.inputs, (layer,), (layer.output.name,))
    prog = compile_graph(g, DEFAULT, stream=True)
    passes = sum(cost.mac_instr_cycles(prog, pc) for pc in prog.pass_at)
    assert layer_cost(layer, DEFAULT).compute_cycles == passes
