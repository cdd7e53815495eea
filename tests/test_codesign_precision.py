"""Per-layer precision (compiler/precision.py) and the precision-carrying import (codesign/importing.py): the
narrowest macro precisions, page words repacked at run-time weight precision computing the same products on the
macro model, 4-bit ONNX weights widened, 16-bit ones refused by name, graph-input clamps moved to the host."""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.codesign.importing import host_input_clamps, widen_4bit
from cimforge.compiler.precision import activation_bits, layer_precisions, pack_weight_words
from cimforge.config import MacroConfig
from cimforge.errors import UserError
from cimforge.gen.isa import pack_lanes_array
from cimforge.golden import ir
from cimforge.golden.macro import MacroModel


@pytest.mark.parametrize("lo,hi,signed,ab", [(0, 0, False, 1), (0, 1, False, 1), (0, 7, False, 3), (0, 8, False, 4),
                                             (0, 255, False, 8), (-1, 0, True, 1), (-4, 3, True, 3),
                                             (-5, 3, True, 4), (-128, 127, True, 8), (0, 15, True, 5)])
def test_activation_bits(lo, hi, signed, ab):
    assert activation_bits(lo, hi, signed) == ab


@pytest.mark.parametrize("wb", [1, 2, 4, 8])
@pytest.mark.parametrize("signed", [True])
def test_repacked_pages_compute_the_same(wb, signed):
    """Weights of ``wb`` bits in 8-bit lanes, repacked at ``wb`` bits per lane, give the same macro results at
    run-time precision ``wb`` as the int8 layout at 8 bits, extremes included (seed 31)."""
    rng = np.random.default_rng(31)
    cfg = MacroConfig(rows=16, pages=2, cols=64)
    L = cfg.cols // cfg.max_wb
    lo, hi = (-(1 << (wb - 1)), (1 << (wb - 1)) - 1) if signed else (0, (1 << wb) - 1)
    if signed and wb == 1:
        lo, hi = -1, 0
    hi = min(hi, 127)  # weights are int8 codes
    w = rng.integers(lo, hi + 1, (cfg.rows, L))
    w[0], w[1] = lo, hi
    words8 = [int(v) for v in pack_lanes_array(w)]
    m8, mw = MacroModel(cfg), MacroModel(cfg)
    for r, (a, b) in enumerate(zip(words8, pack_weight_words(words8, L, wb))):
        m8.write(0, r, a)
        mw.write(0, r, b)
    for ab, xs in ((8, True), (3, False), (1, False)):
        x = rng.integers(-(1 << (ab - 1)) if xs else 0, (1 << (ab - 1)) if xs else (1 << ab), cfg.rows)
        want = m8.mac(x, 0, 8, ab, True, xs)[:L]
        got = mw.mac(x, 0, wb, ab, signed, xs)[:L]
        assert np.array_equal(got, want), (wb, signed, ab)


def _onnx_with(dtype):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", dtype, [2, 2], [1, -2, 3, -1] if dtype in (TensorProto.INT4, TensorProto.INT16) else [1, 2, 3, 4])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_widen_4bit_and_refuse_16bit():
    from onnx import TensorProto, numpy_helper

    m = widen_4bit(_onnx_with(TensorProto.INT4))
    w = numpy_helper.to_array(m.graph.initializer[0])
    assert w.dtype == np.int8 and w.tolist() == [[1, -2], [3, -1]]
    assert numpy_helper.to_array(widen_4bit(_onnx_with(TensorProto.UINT4)).graph.initializer[0]).dtype == np.uint8
    for t, name in ((TensorProto.INT16, "int16"), (TensorProto.UINT16, "uint16")):
        with pytest.raises(UserError, match=rf"initializer 'w' has type {name}: allowed int4, uint4, int8"):
            widen_4bit(_onnx_with(t))


def _clamped_input_graph(hi=7):
    x = ir.TensorInfo("x", (1, 4, 4), "uint8", 1 / hi, 0)
    xc = x.renamed("xc")
    y = ir.TensorInfo("y", (2, 4, 4), "uint8", 0.1, 0)
    clamp = ir.Clamp(name="bits", inputs=(x,), output=xc, act_min=0, act_max=hi)
    w = np.array([[[[1, -1, 2], [0, 3, 1], [1, 1, 1]]], [[[0, 0, 0], [0, -2, 0], [0, 0, 0]]]], np.int8)
    conv = ir.with_clamp(ir.Conv2d(name="conv", inputs=(xc,), output=y, weight=w, weight_scale=0.01,
                                   padding=(1, 1, 1, 1)), 0, 15)
    return ir.Graph(name="g", inputs=(x,), layers=(clamp, conv), outputs=("y",), float_inputs={"img": "x"})


def test_host_input_clamps_state_the_input_bits():
    g = _clamped_input_graph()
    g2, ranges = host_input_clamps(g)
    assert [l.name for l in g2.layers] == ["conv"] and ranges == {"xc": (0, 7)} and g2.float_inputs == {"img": "xc"}
    assert layer_precisions(g2, None, ranges)["conv"].pair == (4, 3)   # weights -2..3: 4 bits; codes 0..7: 3
    assert layer_precisions(g, None)["conv"].pair == (4, 3)            # through the clamp layer alike
    assert host_input_clamps(g2)[0] is g2


def test_precision_beyond_the_macro_is_a_named_error():
    from dataclasses import replace

    from cimforge.compiler.tiling import CompileError
    from cimforge.presets import get_preset

    cfg = get_preset("default")
    g = _clamped_input_graph(hi=255)
    small = replace(cfg, macro=replace(cfg.macro, max_ab=4, max_wb=8))
    with pytest.raises(CompileError, match=r"layer 'conv': activations need 8 bits, macro.max_ab = 4"):
        layer_precisions(g, small)
