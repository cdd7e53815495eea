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
from cimforge.compiler.tiling import CompileError, geometry, k_tiles, tile_steps
from cimforge.gen.isa import lanes
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
    conv2 = g.layer("/4/Conv_quant")
    one = layer_cost(conv2, DEFAULT, Parallelism(1, 1, 1))
    split = layer_cost(conv2, DEFAULT, Parallelism(1, 2, 1))
    assert one.psum_traffic_bits == 0 and split.psum_traffic_bits > 0
    assert split.compute_cycles < one.compute_cycles


def test_layer_cost_refuses_what_does_not_fit():
    g = load_digits_model("digits_cnn_qop")
    tiny = replace(DEFAULT, macro=replace(DEFAULT.macro, rows=8, pages=2))
    with pytest.raises(CompileError, match=r"reduction of 72 elements needs 9 tiles.*allowed in_ch >= 8"):
        layer_cost(g.layer("/4/Conv_quant"), tiny, Parallelism(1, 4, 1))


@pytest.mark.parametrize("model", MODELS)
def test_chosen_split_is_the_cheapest(model):
    g = load_digits_model(model)
    for layer in g.weighted_layers:
        src = g.tensors[g.producer(layer.input.name).input.name].shape \
            if layer.kind == "dense" and g.producer(layer.input.name) is not None \
            and g.producer(layer.input.name).kind == "reshape" else None
        geo = geometry(layer, src)
        best = choose_parallelism(geo, DEFAULT)
        kt, nt = len(k_tiles(geo, DEFAULT)), -(-geo.cout // lanes(DEFAULT))
        chosen = layer_cost(layer, DEFAULT, best, source_shape=src).compute_cycles
        for par in valid_parallelisms(DEFAULT, kt, nt, geo.npos):
            assert chosen <= layer_cost(layer, DEFAULT, par, source_shape=src).compute_cycles


def test_gather_steps():
    assert tile_steps(k_tiles(geometry(load_digits_model("digits_cnn_qop").layers[0]), DEFAULT)[0], 1, 8) == 9
