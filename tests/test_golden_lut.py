"""Element-wise tables (golden/lut.py, the importer's ``op_table``, ir.Lut): every element-wise float operator
between a DequantizeLinear and a QuantizeLinear, and com.microsoft QLinearSigmoid / QLinearLeakyRelu, import as a
``lut`` layer whose 256 codes equal onnxruntime's on every input code (the table is onnxruntime's own evaluation),
and stay within 1 LSB of the operator's float64 definition (an independent check that the table is the operator's);
``x * Sigmoid(x)`` and chains of tables are one table of x (the intermediate ones dropped); constants that vary by
channel (PRelu's slope, a per-channel Sub or Div, then scalar operators after them) make one table per channel;
what cannot be a table is refused by node name.
Random scales and zero points with a fixed, printed seed; int8 and uint8; every code is an input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

from cimforge.golden.onnx_build import make_model, qparams, run_ort
from cimforge.golden.onnx_import import OnnxImportError, load_onnx
from cimforge.golden.runner import run_graph

SEED = 5150
QRANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def _erf(v):
    return np.vectorize(math.erf)(v)


#: op -> (attributes, float64 definition, input range scale): the ONNX definitions
OPS = {
    "Sigmoid": ({}, lambda x: 1 / (1 + np.exp(-x)), 6.0),
    "Tanh": ({}, np.tanh, 3.0),
    "LeakyRelu": ({"alpha": 0.1}, lambda x: np.where(x >= 0, x, 0.1 * x), 4.0),
    "HardSigmoid": ({"alpha": 0.2, "beta": 0.5}, lambda x: np.clip(0.2 * x + 0.5, 0, 1), 4.0),
    "HardSwish": ({}, lambda x: x * np.clip(x / 6 + 0.5, 0, 1), 5.0),
    "Elu": ({"alpha": 1.0}, lambda x: np.where(x > 0, x, np.exp(x) - 1), 3.0),
    "Softplus": ({}, lambda x: np.log1p(np.exp(x)), 4.0),
    "Gelu": ({}, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), 3.0),
    "Abs": ({}, np.abs, 2.0),
}


def _qdq_model(op: str, attrs: dict, dt: str, s_in: float, z_in: int, s_out: float, z_out: int, opset: int = 20):
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node(op, ["xf"], ["yf"], **attrs),
             helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zp"], ["y"])]
    from onnx import numpy_helper
    tt = helper.np_dtype_to_tensor_dtype(np.dtype(dt))
    inits = {**qparams("x", s_in, z_in, dt), **qparams("y", s_out, z_out, dt)}
    graph = helper.make_graph(nodes, op, [helper.make_tensor_value_info("x", tt, ["N", 256])],
                              [helper.make_tensor_value_info("y", tt, ["N", 256])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _params(rng, dt: str, span: float, f):
    lo, hi = QRANGE[dt]
    s_in = float(np.float32(2 * span / 255 * rng.uniform(0.7, 1.3)))
    z_in = int(rng.integers(lo + 64, hi - 63))
    real = f((np.arange(lo, hi + 1) - z_in) * s_in)
    r_lo, r_hi = min(real.min(), 0.0), max(real.max(), 0.0)
    s_out = float(np.float32((r_hi - r_lo) / 255 * rng.uniform(0.9, 1.1)))
    z_out = int(np.clip(np.rint(lo - r_lo / s_out), lo, hi))
    return s_in, z_in, s_out, z_out


@pytest.mark.parametrize("dt", ["int8", "uint8"])
@pytest.mark.parametrize("op", list(OPS))
def test_unary_op_is_a_table_equal_to_onnxruntime(op, dt):
    attrs, f, span = OPS[op]
    seed = SEED + list(OPS).index(op) * 2 + (dt == "uint8")
    rng = np.random.default_rng(seed)
    s_in, z_in, s_out, z_out = _params(rng, dt, span, f)
    print(f"{op} {dt}: seed {seed}, in ({s_in}, {z_in}), out ({s_out}, {z_out})")
    model = _qdq_model(op, attrs, dt, s_in, z_in, s_out, z_out)
    g = load_onnx(model.SerializeToString())
    (layer,) = g.layers
    assert layer.kind == "lut" and layer.op == op
    lo, hi = QRANGE[dt]
    x = np.arange(lo, hi + 1).astype(dt).reshape(1, 256)
    ref = run_ort(model, {"x": x})[0]
    got = run_graph(g, {g.inputs[0].name: x})[g.outputs[0]]
    np.testing.assert_array_equal(got, ref, err_msg=f"{op} {dt}: golden table differs from onnxruntime")
    exact = np.clip(np.rint(f((x.astype(np.float64) - z_in) * s_in) / s_out) + z_out, lo, hi)
    assert np.abs(got.astype(np.int64) - exact).max() <= 1, f"{op}: more than 1 LSB from the float64 definition"
    print(f"  {np.count_nonzero(got != exact)} of 256 codes 1 LSB from the float64 definition (float32 kernels)")


@pytest.mark.parametrize("op", ["QLinearSigmoid", "QLinearLeakyRelu"])
def test_qoperator_table_equals_onnxruntime(op):
    rng = np.random.default_rng(SEED + 100)
    for dt in ("int8", "uint8"):
        s_in, z_in, s_out, z_out = _params(rng, dt, 4.0, OPS["Sigmoid"][1])
        print(f"{op} {dt}: seed {SEED + 100}, in ({s_in}, {z_in}), out ({s_out}, {z_out})")
        attrs = {"alpha": 0.05} if op == "QLinearLeakyRelu" else {}
        n = helper.make_node(op, ["x", "x_scale", "x_zp", "y_scale", "y_zp"], ["y"], domain="com.microsoft", **attrs)
        model = make_model([n], {"x": (dt, (256,))}, {"y": dt},
                           {**qparams("x", s_in, z_in, dt), **qparams("y", s_out, z_out, dt)})
        g = load_onnx(model.SerializeToString())
        assert [l.kind for l in g.layers] == ["lut"]
        lo, hi = QRANGE[dt]
        x = np.arange(lo, hi + 1).astype(dt).reshape(1, 256)
        np.testing.assert_array_equal(run_graph(g, {g.inputs[0].name: x})[g.outputs[0]], run_ort(model, {"x": x})[0])


def _chain_model(dt: str, rng):
    """x -> Sigmoid -> Q -> DQ; x * Sigmoid(x) -> Q (SiLU, QDQ form); then (y - 0.25) / 3 -> Relu -> Q (a chain of
    element-wise float ops with scalar constants)."""
    lo, hi = QRANGE[dt]
    zx = int(rng.integers(lo + 100, hi - 99))
    q = {**qparams("x", 0.04, zx, dt), **qparams("s", 1 / 255, lo, dt), **qparams("m", 0.03, zx, dt),
         **qparams("o", 0.01, lo + 10, dt), "c1": np.float32(0.25), "c2": np.float32(3.0)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node("Sigmoid", ["xf"], ["sf"]),
             helper.make_node("QuantizeLinear", ["sf", "s_scale", "s_zp"], ["sq"]),
             helper.make_node("DequantizeLinear", ["sq", "s_scale", "s_zp"], ["sd"]),
             helper.make_node("Mul", ["xf", "sd"], ["mf"], name="silu"),
             helper.make_node("QuantizeLinear", ["mf", "m_scale", "m_zp"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "m_scale", "m_zp"], ["md"]),
             helper.make_node("Sub", ["md", "c1"], ["d1"]),
             helper.make_node("Div", ["d1", "c2"], ["d2"]),
             helper.make_node("Relu", ["d2"], ["d3"]),
             helper.make_node("QuantizeLinear", ["d3", "o_scale", "o_zp"], ["y"])]
    return make_model(nodes, {"x": (dt, (256,))}, {"y": dt}, q)


@pytest.mark.parametrize("dt", ["int8", "uint8"])
def test_silu_and_chains_are_one_function_of_the_input(dt):
    rng = np.random.default_rng(SEED + 200)
    print(f"seed {SEED + 200}")
    model = _chain_model(dt, rng)
    g = load_onnx(model.SerializeToString())
    # Sigmoid(x), x * Sigmoid(x) and the rest are one table of x; the intermediate tables nothing reads are dropped
    (layer,) = g.layers
    assert layer.kind == "lut" and layer.input.name == "x" and layer.output.name == "y"
    lo, hi = QRANGE[dt]
    x = np.arange(lo, hi + 1).astype(dt).reshape(1, 256)
    got = run_graph(g, {g.inputs[0].name: x})
    sess = run_ort(model, {"x": x})
    np.testing.assert_array_equal(got[g.outputs[0]], sess[0])


def test_what_is_no_function_of_one_code_is_refused_by_node():
    dt = "int8"
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node("Sub", ["xf", "c"], ["yf"], name="per_element_sub"),
             helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zp"], ["y"])]
    m = make_model(nodes, {"x": (dt, (2, 3, 4))}, {"y": dt},
                   {**qparams("x", 0.1, 0, dt), **qparams("y", 0.1, 0, dt),
                    "c": np.arange(12, dtype=np.float32).reshape(3, 4)})
    with pytest.raises(OnnxImportError, match=r"per_element_sub.*Sub.*varies by element, not by channel"):
        load_onnx(m.SerializeToString())
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node("DequantizeLinear", ["z", "x_scale", "x_zp"], ["zf"]),
             helper.make_node("Div", ["xf", "zf"], ["yf"], name="two_tensor_div"),
             helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zp"], ["y"])]
    m = make_model(nodes, {"x": (dt, (4,)), "z": (dt, (4,))}, {"y": dt},
                   {**qparams("x", 0.1, 0, dt), **qparams("y", 0.1, 0, dt)})
    with pytest.raises(OnnxImportError, match=r"two_tensor_div.*functions of different tensors"):
        load_onnx(m.SerializeToString())


def _per_channel_model(dt: str, rng, shape: tuple[int, ...]):
    """``PRelu(x, slope)`` with one slope per channel (negative, zero, above one included), then ``Sub`` of a
    per-channel constant and a scalar ``Mul`` and ``Tanh``: one table per channel of x."""
    c = shape[0]
    const_shape = (c,) + (1,) * (len(shape) - 1)
    slope = rng.uniform(-0.5, 1.5, c).astype(np.float32)
    slope[:3] = (-1.0, 0.0, 1.25)
    shift = rng.uniform(-1, 1, c).astype(np.float32)
    lo, hi = QRANGE[dt]
    q = {**qparams("x", float(np.float32(rng.uniform(0.02, 0.05))), int(rng.integers(lo + 100, hi - 99)), dt),
         **qparams("p", float(np.float32(rng.uniform(0.02, 0.05))), int(rng.integers(lo + 100, hi - 99)), dt),
         **qparams("y", float(np.float32(1 / 127)), 0 if dt == "int8" else 128, dt),
         "slope": slope.reshape(const_shape), "shift": shift.reshape(const_shape), "half": np.float32(0.5)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node("PRelu", ["xf", "slope"], ["pf"], name="prelu"),
             helper.make_node("QuantizeLinear", ["pf", "p_scale", "p_zp"], ["p"]),
             helper.make_node("DequantizeLinear", ["p", "p_scale", "p_zp"], ["pd"]),
             helper.make_node("Sub", ["pd", "shift"], ["sf"], name="shift"),
             helper.make_node("Mul", ["sf", "half"], ["mf"]),
             helper.make_node("Tanh", ["mf"], ["tf"]),
             helper.make_node("QuantizeLinear", ["tf", "y_scale", "y_zp"], ["y"])]
    return make_model(nodes, {"x": (dt, shape)}, {"y": dt}, q)


@pytest.mark.parametrize("shape", [(11, 3, 4), (19,)], ids=["chw", "vector"])
@pytest.mark.parametrize("dt", ["int8", "uint8"])
def test_per_channel_constants_make_a_table_per_channel(dt, shape):
    seed = SEED + 300 + len(shape) + (dt == "uint8")
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    model = _per_channel_model(dt, rng, shape)
    g = load_onnx(model.SerializeToString())
    (layer,) = g.layers  # the PRelu's table and the chain after it compose into one table per channel of x
    assert layer.kind == "lut" and layer.per_channel and layer.tables.shape == (shape[0], 256)
    lo, hi = QRANGE[dt]
    # every code in every channel, the extremes included
    n = 256
    x = np.empty((n,) + shape, dtype=dt)
    codes = np.arange(lo, hi + 1)
    for c in range(shape[0]):
        x[:, c] = np.roll(codes, 7 * c).reshape((n,) + (1,) * (len(shape) - 1))
    got = run_graph(g, {g.inputs[0].name: x})
    want = run_ort(model, {"x": x})[0]
    np.testing.assert_array_equal(got[g.outputs[0]], want)


@pytest.mark.parametrize("dt", ["int8", "uint8"])
@pytest.mark.parametrize("op", ["Relu", "Clip"])
def test_clamp_into_a_new_quantisation_is_a_table(op, dt):
    """A QDQ Relu or Clip (ReLU6, and bounds inside the input's range) whose QuantizeLinear has a scale and zero
    point of its own: a requantising table with the clamp folded into its codes, equal to onnxruntime on every
    code; with the input's own quantisation it stays a clamp of the codes."""
    from onnx import numpy_helper
    seed = SEED + 200 + (op == "Clip") * 2 + (dt == "uint8")
    rng = np.random.default_rng(seed)
    lo, hi = QRANGE[dt]
    for bounds in ([], [0.0, 6.0], [-0.7, 1.9]) if op == "Clip" else ([],):
        s_in, z_in, s_out, z_out = _params(rng, dt, 8.0, lambda v: np.clip(v, 0, 6))
        print(f"{op} {dt} bounds {bounds}: seed {seed}, in ({s_in}, {z_in}), out ({s_out}, {z_out})")
        for same in (False, True):
            so, zo = (s_in, z_in) if same else (s_out, z_out)
            inits = {**qparams("x", s_in, z_in, dt), **qparams("y", so, zo, dt),
                     **{f"b{i}": np.float32(b) for i, b in enumerate(bounds)}}
            tt = helper.np_dtype_to_tensor_dtype(np.dtype(dt))
            nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
                     helper.make_node(op, ["xf", *[f"b{i}" for i in range(len(bounds))]], ["yf"], name="act"),
                     helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zp"], ["y"])]
            graph = helper.make_graph(nodes, op, [helper.make_tensor_value_info("x", tt, ["N", 256])],
                                      [helper.make_tensor_value_info("y", tt, ["N", 256])],
                                      [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
            model.ir_version = 9
            g = load_onnx(model.SerializeToString())
            assert [l.kind for l in g.layers] == (["clamp"] if same else ["lut"]), (same, g.layers)
            x = np.arange(lo, hi + 1).astype(dt).reshape(1, 256)
            np.testing.assert_array_equal(run_graph(g, {g.inputs[0].name: x})[g.outputs[0]],
                                          run_ort(model, {"x": x})[0], err_msg=f"{op} {dt} {bounds} same={same}")


@pytest.mark.parametrize("dt", ["int8", "uint8"])
def test_requantising_dequantize_quantize_is_a_table(dt):
    """``DequantizeLinear -> QuantizeLinear`` into another scale and zero point: a table equal to onnxruntime's
    two nodes on every code (a seeded random pair of quantisations, the output range narrower at both ends:
    saturation)."""
    seed = SEED + 300 + (dt == "uint8")
    rng = np.random.default_rng(seed)
    lo, hi = QRANGE[dt]
    s_in, z_in = float(np.float32(rng.uniform(0.01, 0.1))), int(rng.integers(lo + 40, hi - 39))
    s_out, z_out = float(np.float32(s_in * rng.uniform(0.5, 0.9))), z_in  # a narrower range about the same zero
    print(f"{dt}: seed {seed}, in ({s_in}, {z_in}), out ({s_out}, {z_out})")
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node("QuantizeLinear", ["xf", "y_scale", "y_zp"], ["y"], name="requant")]
    model = make_model(nodes, {"x": (dt, (256,))}, {"y": dt},
                       {**qparams("x", s_in, z_in, dt), **qparams("y", s_out, z_out, dt)})
    g = load_onnx(model.SerializeToString())
    assert [l.kind for l in g.layers] == ["lut"]
    x = np.arange(lo, hi + 1).astype(dt).reshape(1, 256)
    got = run_graph(g, {g.inputs[0].name: x})[g.outputs[0]]
    ref = run_ort(model, {"x": x})[0]
    np.testing.assert_array_equal(got, ref)
    assert got.min() == lo and got.max() == hi  # both ends saturate
