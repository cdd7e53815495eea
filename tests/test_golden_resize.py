"""Nearest-neighbour resizes (ir.Resize, the importer's ``op_Resize``): ONNX ``Resize`` in mode ``nearest``, on codes (QOperator form) and between a DequantizeLinear and a QuantizeLinear (QDQ, the output's
quantisation the input's or another), equal to onnxruntime on every element for every coordinate transformation
and nearest mode, upsamplings by 2 and 3, a downsampling, a non-integer ``sizes``, a resize of one axis; the
copies the compiler emits cover every output pixel once; a linear resize is refused by node name.
Random codes with a fixed, printed seed, the code extremes included; int8 and uint8.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from cimforge.compiler.lowering.resize import column_runs, copies
from cimforge.golden.onnx_build import make_model, qparams, run_ort
from cimforge.golden.onnx_import import OnnxImportError, load_onnx
from cimforge.golden.runner import run_graph

SEED = 7300
QRANGE = {"int8": (-128, 127), "uint8": (0, 255)}

#: (name, input (C, H, W), Resize attributes, scales or None, sizes or None)
CASES = [
    ("up2_half_pixel", (3, 4, 5), {}, [1, 1, 2, 2], None),
    ("up3_asymmetric", (2, 3, 4), {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     [1, 1, 3, 3], None),
    ("up2_align_corners_ceil", (4, 5, 3), {"coordinate_transformation_mode": "align_corners",
                                           "nearest_mode": "round_prefer_ceil"}, [1, 1, 2, 2], None),
    ("down2", (3, 8, 6), {"nearest_mode": "floor"}, [1, 1, 0.5, 0.5], None),
    ("sizes_7x5", (9, 4, 3), {"coordinate_transformation_mode": "pytorch_half_pixel"}, None, [1, 9, 7, 5]),
    ("height_only", (2, 3, 4), {}, [1, 1, 2, 1], None),
]


def _model(case, dt: str, form: str, same_quant: bool, rng):
    name, shape, attrs, scales, sizes = case
    lo, hi = QRANGE[dt]
    s = float(np.float32(rng.uniform(0.01, 0.1)))
    z = int(rng.integers(lo + 20, hi - 19))
    s_out, z_out = (s, z) if same_quant else (float(np.float32(s * 1.37)), int(np.clip(z + 5, lo, hi)))
    inits = {"roi": np.zeros(0, np.float32), **qparams("x", s, z, dt), **qparams("y", s_out, z_out, dt)}
    ins = ["roi"]
    if scales is not None:
        inits["scales"] = np.asarray(scales, np.float32)
        ins.append("scales")
    else:
        inits["sizes"] = np.asarray(sizes, np.int64)
        ins += ["", "sizes"]
    if form == "qop":  # a float input quantized by the graph, as onnxruntime's QOperator graphs begin
        nodes = [helper.make_node("QuantizeLinear", ["xf", "x_scale", "x_zp"], ["x"]),
                 helper.make_node("Resize", ["x", *ins], ["y"], name="resize", mode="nearest", **attrs)]
        return make_model(nodes, {"xf": (np.float32, shape)}, {"y": dt}, inits)
    else:
        nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
                 helper.make_node("Resize", ["xf", *ins], ["yf"], name="resize", mode="nearest", **attrs),
                 helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zp"], ["y"])]
    return make_model(nodes, {"x": (dt, shape)}, {"y": dt}, inits)


@pytest.mark.parametrize("form,same_quant", [("qop", True), ("qdq", True), ("qdq", False)],
                         ids=["qop", "qdq", "qdq-requant"])
@pytest.mark.parametrize("dt", ["int8", "uint8"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_nearest_resize_equals_onnxruntime(case, dt, form, same_quant):
    seed = SEED + CASES.index(case) * 8 + (dt == "uint8") * 4 + (form == "qdq") * 2 + same_quant
    rng = np.random.default_rng(seed)
    print(f"{case[0]} {dt} {form}: seed {seed}")
    model = _model(case, dt, form, same_quant, rng)
    g = load_onnx(model.SerializeToString())
    (layer,) = g.layers
    assert layer.kind == "resize" and (layer.requant is None) == same_quant
    lo, hi = QRANGE[dt]
    x = rng.integers(lo, hi + 1, (3, *case[1])).astype(dt)
    x.reshape(-1)[:2] = lo, hi
    got = run_graph(g, {g.inputs[0].name: x})[g.outputs[0]]
    s, z = g.inputs[0].scale, g.inputs[0].zero_point
    feed = {"xf": ((x.astype(np.float32) - z) * np.float32(s)).astype(np.float32)} if form == "qop" else {"x": x}
    # image by image: a ``sizes`` of batch 1 resizes the batch axis too
    want = np.concatenate([run_ort(model, {k: v[i:i + 1] for k, v in feed.items()})[0] for i in range(len(x))])
    assert got.shape == want.shape
    if same_quant:
        np.testing.assert_array_equal(got, want)
    else:  # a requantising copy: the integer requantisation, within 1 LSB of onnxruntime's float QuantizeLinear
        diff = np.abs(got.astype(np.int64) - want)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.99, f"{(diff == 0).mean():.4f} identical"
    # the compiler's copies write every output pixel exactly once, from the source pixel the maps name
    _, h, w = layer.input.shape
    _, oh, ow = layer.output.shape
    src = np.full(oh * ow, -1)
    for o0, so, i0, si, n in copies(layer):
        for k in range(n):
            assert src[o0 + k * so] == -1, "an output pixel written twice"
            src[o0 + k * so] = i0 + k * si
    want_src = (np.asarray(layer.rows)[:, None] * w + np.asarray(layer.cols)[None, :]).ravel()
    np.testing.assert_array_equal(src, want_src)


def test_column_runs_are_few():
    assert column_runs((0, 0, 1, 1, 2, 2)) == [(0, 2, 0, 1, 3), (1, 2, 0, 1, 3)]  # up by 2: two phases
    assert column_runs((0, 2, 4)) == [(0, 1, 0, 2, 3)]  # down by 2: one copy at source stride 2
    assert len(column_runs((0, 0, 0, 1, 1, 1, 2, 2, 2))) == 3  # up by 3
    assert column_runs((0, 1, 1, 3)) == [(0, 2, 0, 1, 2), (1, 2, 1, 2, 2)]  # period 2: steps 1 and 2
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    for _ in range(200):  # any non-decreasing map: the runs cover each output column once, from its source
        cols = tuple(int(v) for v in np.cumsum(rng.integers(0, 3, int(rng.integers(1, 12)))))
        got = [None] * len(cols)
        for ox0, so, ix0, si, n in column_runs(cols):
            for k in range(n):
                assert got[ox0 + k * so] is None
                got[ox0 + k * so] = ix0 + k * si
        assert tuple(got) == cols


def test_bad_resizes_are_named():
    dt = "int8"
    q = {**qparams("x", 0.1, 0, dt), **qparams("y", 0.1, 0, dt), "sc": np.asarray([1, 1, 2, 2], np.float32)}
    for attrs, ins, match in [({"mode": "linear"}, ["roi", "sc"], r"resize.*Resize.*mode 'linear'.*allowed 'nearest'"),
                              ({"mode": "nearest"}, ["roi", "sc_c"], r"resize.*scales.*allowed 1 on the batch and channel")]:
        nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
                 helper.make_node("Resize", ["xf", *ins], ["yf"], name="resize", **attrs),
                 helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zp"], ["y"])]
        m = make_model(nodes, {"x": (dt, (2, 3, 3))}, {"y": dt},
                       {**q, "roi": np.zeros(0, np.float32), "sc_c": np.asarray([1, 2, 2, 2], np.float32)})
        with pytest.raises(OnnxImportError, match=match):
            load_onnx(m.SerializeToString())
