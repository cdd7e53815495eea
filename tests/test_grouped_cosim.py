"""Grouped and depthwise convolutions on the generated fabric RTL under cocotb, against the golden model.

Random grouped layers (depthwise with channel counts that are not whole words, channel multipliers, groups that
do not divide the lanes; most negative codes and weights) on a small fabric, a MobileNet-style model quantized
by onnxruntime on the default preset, and a MobileNetV2 with inverted residuals on the default preset in the
external-memory mode: bit-exact on every tensor, and the cost model's retire cycle of every instruction equal to
the trace's. The per-layer report (utilisation and its bound) is printed; the bound of a depthwise layer is
explained in docs/grouped-conv.md. Seeds are fixed and printed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import Parallelism, program_timing
from cimforge.config import MacroConfig
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset

pytestmark = [pytest.mark.cocotb, pytest.mark.slow]

DEFAULT = get_preset("default")
#: Two macros of 32 x 64 (8 lanes): a quick build, and depthwise super-groups of 9 taps x 8 channels need
#: three reduction tiles.
SMALL = replace(DEFAULT, name="small", macro=MacroConfig(rows=32, pages=8, cols=64),
                fabric=replace(DEFAULT.fabric, n_macros=2))


def _check_runs(cfg, items, golds, batch):
    """One simulator launch over ``items`` (program, inputs): every tensor equal to ``golds``, every retire
    cycle equal to :func:`program_timing`; returns the runs."""
    from cimforge.sim.fabric_check import first_divergence
    from cimforge.sim.fabric_runner import run_programs

    fr = run_programs(cfg, items)
    for (prog, _), gold, run in zip(items, golds, fr.runs):
        got = prog.read_tensors(run.words, batch)
        div = first_divergence(prog, gold, got, run.trace)
        assert div is None, str(div)
        assert [t["cycle"] for t in run.trace] == program_timing(prog)
    return fr.runs


def test_random_grouped_layers_rtl():
    """Random depthwise, channel-multiplier and grouped convolutions under the cost model's and forced splits,
    and a depthwise layer of 13 channels with every code and weight at -128."""
    from cimforge.sim.random_layers import extreme_depthwise_graph, random_grouped_conv_graph

    seed, batch = 4242, 2
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    P = Parallelism
    plan = [("depthwise", None), ("multiplier", P(2, 1, 1)), ("grouped", P(1, 2, 1)), ("depthwise", P(1, 1, 2)),
            ("grouped", None)]
    items, golds = [], []
    for kind, par in plan:
        while True:
            g = random_grouped_conv_graph(rng, kind)
            try:
                prog = compile_graph(g, SMALL, batch=batch, parallelism=None if par is None else {"conv": par})
                break
            except Exception as e:  # a split the layer cannot use: draw another layer
                print(f"skip: {e}")
        layer = g.layers[0]
        x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (batch, *layer.input.shape)).astype(layer.input.dtype)
        x[0, :, 0, 0] = layer.input.qmin
        print(f"{kind}: {layer.input.shape} groups {layer.groups} k{layer.kernel} s{layer.stride} d{layer.dilation} "
              f"p{layer.padding} -> {layer.output.shape} split {[str(mp.par) for mp in prog.passes][:2]}")
        golds.append(run_graph(g, x))
        items.append((prog, {"x": x}))
    g, xs = extreme_depthwise_graph(13, batch)
    golds.append(run_graph(g, xs))
    items.append((compile_graph(g, SMALL, batch=batch), {"x": xs}))
    _check_runs(SMALL, items, golds, batch)


def test_tiny_mobilenet_rtl():
    """The MobileNet-style model of tests/test_compiler_iss.py on the default preset: RTL = golden on every
    tensor, cost model exact; the per-layer utilisation and its bound are printed (depthwise layers are bounded
    by ``9 / (kt * rows)``, docs/grouped-conv.md)."""
    from cimforge.compiler.cost import occupancy
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.sim.fabric_check import layer_rows
    from cimforge.sim.random_layers import tiny_mobilenet_onnx

    g = load_onnx(tiny_mobilenet_onnx(12), name="tiny_mobilenet")
    t = g.inputs[0]
    batch = 2
    xs = np.random.default_rng(12).integers(t.qmin, t.qmax + 1, (batch, *t.shape)).astype(t.dtype)
    prog = compile_graph(g, DEFAULT, batch=batch)
    [run] = _check_runs(DEFAULT, [(prog, {t.name: xs})], [run_graph(g, xs)], batch)
    for row in layer_rows(prog, run.trace):
        if row.occupancy is None:
            continue
        geos = list({id(mp.geom): mp.geom for mp in prog.passes if mp.layer == row.layer}.values())
        bound = occupancy(geos, DEFAULT)
        print(f"{row.layer:8s} {row.measured:8.1f} cycles per image, utilisation {100 * row.utilisation:5.2f}% "
              f"bound {100 * bound:5.2f}%")
        assert row.utilisation <= bound + 1e-9


def test_mobilenet_v2_inverted_residuals_rtl():
    """A MobileNetV2 (expansion 6, inverted residuals with their adds, ReLU6, width 0.35 on 3x32x32) quantized by
    onnxruntime, on the default preset as shipped (its memories hold it in the external-memory mode: the same
    Verilator build as tests/test_tiny_set_rtl.py, which runs DS-CNN and MobileNetV1 0.25 of the tiny set):
    RTL = golden on every tensor, program_timing = trace; per-layer utilisation and bound printed."""
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.sim.fabric_check import layer_rows
    from cimforge.sim.random_layers import TINY_SET, separable_cnn_onnx

    name = "mobilenet_v2_035_32"
    g = load_onnx(separable_cnn_onnx(1, *TINY_SET[name], name=name), name=name)
    t = g.inputs[0]
    x = np.random.default_rng(1).integers(t.qmin, t.qmax + 1, (1, *t.shape)).astype(t.dtype)
    x.flat[0] = t.qmin
    prog = compile_graph(g, DEFAULT, batch=1)
    [run] = _check_runs(DEFAULT, [(prog, {t.name: x})], [run_graph(g, x)], 1)
    for row in layer_rows(prog, run.trace):
        if row.occupancy is not None:
            print(f"{name} {row.layer:6s} {row.measured:8.0f} cycles, utilisation "
                  f"{100 * row.utilisation:5.2f}% bound {100 * row.occupancy:5.2f}%")
