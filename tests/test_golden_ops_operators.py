"""The operators beyond convolution and pooling, against onnxruntime: softmax (QLinearSoftmax and
DequantizeLinear-Softmax-QuantizeLinear), LRN, an unfolded BatchNormalization, n-ary Sum, the channel shuffle,
Clip(0, 6), weights with zero points (uint8, quantize_static(weight_type=QUInt8)), N-D QLinearMatMul, ConvInteger
and MatMulInteger.

Each case builds a small model with onnx.helper inside the test, quantizes it with onnxruntime's
``quantize_static`` on seeded random calibration data where the operator comes from quantization (or builds the
quantized node itself), imports it, and compares every IR tensor with onnxruntime's value layer by layer
(``compare.layerwise``): each tensor within 1 LSB, and for requantising layers at least 99.9 % identical with
``single`` rounding. Seeds are fixed and printed (``-s``).

No case pairs uint8 activations with int8 weights (onnxruntime's U8S8 kernels; also uint8 weights with zero point
128, which it converts to int8): without AVX-VNNI (this machine) they sum pairs of products with int16
saturation and differ from the exact result by many LSB. tests/test_golden_ops_ort.py's uint8 cases fail on such
a machine for that reason.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.tiling import CompileError
from cimforge.golden import ir
from cimforge.golden.cli import to_codes
from cimforge.golden.compare import AGREEMENT_MIN, MAX_LSB, compare_tensors, ort_tensors
from cimforge.golden.onnx_build import make_model, qparams, run_ort
from cimforge.golden.onnx_import import load_onnx
from cimforge.golden.requant import multiply_by_quantized_multiplier, quantize_multiplier
from cimforge.golden.runner import run_graph, run_layer
from cimforge.presets import get_preset

SEED = 2024
N = 6


# -- helpers -------------------------------------------------------------------------------------------------------

def _float_model(nodes, x_shape, y_name, inits, opset=17):
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
        [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _quantize(model, tmp_path, rng, x_shape, fmt="qdq", act="int8", weight="int8", **extra):
    """``quantize_static`` of ``model`` on 16 seeded random calibration inputs; returns the quantized proto."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": rng.standard_normal((1, *x_shape)).astype(np.float32)} for _ in range(16)])

        def get_next(self):
            return next(self.data, None)

    src, dst = tmp_path / "float.onnx", tmp_path / f"q_{fmt}.onnx"
    onnx.save(model, str(src))
    qt = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ if fmt == "qdq" else
                    QuantFormat.QOperator, activation_type=qt[act], weight_type=qt[weight],
                    per_channel=extra.pop("per_channel", False), extra_options=extra or None)
    return onnx.load(str(dst))


def _layerwise(tag, model, x, requantised=True):
    """Every IR tensor against onnxruntime's, layer by layer (each layer from onnxruntime's values of its inputs;
    a tensor onnxruntime does not have, such as the inner sums of a Sum chain, from the golden model): max 1 LSB;
    with single rounding >= 99.9 % identical where ``requantised``. Returns the graph."""
    graph = load_onnx(model)
    ref = ort_tensors(model, graph, {"x": x})
    for mode in ("single", "double"):
        vals = {}
        for layer in graph.layers:
            ins = [ref[t.name] if t.name in ref else vals.get(t.name) for t in layer.inputs]
            if any(v is None for v in ins):  # an input onnxruntime does not have (a 4-bit input's wide codes)
                continue
            vals[layer.output.name] = run_layer(layer, *ins, rounding=mode)
        got = {k: v for k, v in vals.items() if k in ref}
        a = compare_tensors(got, {k: ref[k] for k in got})
        print(f"{tag} [{mode}]: {a.equal}/{a.elements} identical ({100 * a.fraction:.3f}%), max {a.max_diff} LSB")
        assert got and a.max_diff <= MAX_LSB, f"{tag} [{mode}]: {a.format()}"
        if mode == "single" and requantised:
            assert a.worst_fraction >= AGREEMENT_MIN, f"{tag} [{mode}]: {a.format()}"
    return graph


def _exact_acc(layer, x):
    """The accumulators of a Conv2d / Dense evaluated directly from the definition in float64 (no im2col, no
    correction term): ``bias + sum (x - zp_in) * (w - zp_w)``; an independent check of the golden operator where
    onnxruntime's own kernels are not exact (see the module docstring)."""
    xc = x.astype(np.float64) - layer.input.zero_point
    wz = layer.weight_zero_point.reshape(-1, *([1] * (layer.weight.ndim - 1)))
    w = layer.weight.astype(np.float64) - wz
    if isinstance(layer, ir.Dense):
        return xc @ w.T + layer.bias
    (pt, pl, pb, pr), (kh, kw), (ho, wo) = layer.padding, layer.kernel, layer.output.shape[1:]
    xp = np.pad(xc, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    (sh, sw), g = layer.stride, layer.groups
    y = np.zeros((x.shape[0], layer.out_channels, ho, wo))
    n, cg = layer.out_channels // g, layer.in_channels // g
    for ky in range(kh):
        for kx in range(kw):
            win = xp[:, :, ky:ky + sh * (ho - 1) + 1:sh, kx:kx + sw * (wo - 1) + 1:sw]
            for gi in range(g):
                y[:, gi * n:(gi + 1) * n] += np.einsum("nchw,oc->nohw", win[:, gi * cg:(gi + 1) * cg],
                                                       w[gi * n:(gi + 1) * n, :, ky, kx])
    return y + layer.bias[None, :, None, None]


def _exact_codes(layer, x):
    """Output codes from :func:`_exact_acc`, requantised in float64 (round half to even, as onnxruntime)."""
    acc = _exact_acc(layer, x)
    shape = (1, -1) + (1,) * (acc.ndim - 2) if isinstance(layer, ir.Conv2d) else (-1,)
    real = acc * layer.input.scale * layer.weight_scale.reshape(shape) / layer.output.scale
    return np.clip(np.rint(real) + layer.output.zero_point, layer.act_min, layer.act_max)


def _conv(name, x, y, rng, cin, cout, k=3, pads=1, group=1):
    w = (rng.standard_normal((cout, cin // group, k, k)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    node = helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [y], name=name, pads=[pads] * 4, group=group)
    return node, {f"{name}_w": w, f"{name}_b": b}


# -- the identity requantisation the channel shuffle relies on -----------------------------------------------------

def test_multiplier_one_is_exact_in_both_roundings():
    m, s = quantize_multiplier(1.0)
    assert (m, s) == (2**30, 1)
    x = np.concatenate([np.arange(-70000, 70000), [-2**30, 2**30 - 1, -2**29, 2**29]])
    for mode in ("single", "double"):
        np.testing.assert_array_equal(multiply_by_quantized_multiplier(x, m, s, mode), x)


# -- softmax -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", range(8))
def test_qlinearsoftmax_random(case):
    rng = np.random.default_rng([SEED, case])
    print(f"seed [{SEED}, {case}]")
    dtype = ["uint8", "int8"][case % 2]
    opset = [13, 12][case // 2 % 2]
    shape = [(10,), (4, 7), (3, 2, 5), (1000,)][case // 2 % 4 if case < 6 else 3]
    axis = -1 if opset >= 13 else 1
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    x = rng.integers(lo, hi + 1, (N, *shape)).astype(dtype)
    x_scale = float(np.float32(rng.uniform(0.02, 0.3)))
    x_zp = int(rng.integers(lo, hi + 1))
    y_zp = 0 if dtype == "uint8" else -128
    init = {**qparams("x", x_scale, x_zp, dtype), **qparams("y", 1 / 256, y_zp, dtype)}
    node = helper.make_node("QLinearSoftmax", ["x", "x_scale", "x_zp", "y_scale", "y_zp"], ["y"], name="sm",
                            domain="com.microsoft", axis=axis, opset=opset)
    model = make_model([node], {"x": (np.dtype(dtype), shape)}, {"y": np.dtype(dtype)}, init)
    graph = load_onnx(model)
    (layer,) = graph.layers
    assert isinstance(layer, ir.Softmax) and layer.method == "table"
    ref = run_ort(model, {"x": x})[0]
    got = run_graph(graph, {"x": x})[graph.outputs[0]]
    a = compare_tensors({"y": got}, {"y": ref})
    print(f"QLinearSoftmax {dtype} opset {opset} {shape}: {a.equal}/{a.elements} identical, max {a.max_diff}")
    assert a.max_diff == 0


@pytest.mark.parametrize("case", range(4))
def test_dq_softmax_q_random(case):
    rng = np.random.default_rng([SEED, 10 + case])
    print(f"seed [{SEED}, {10 + case}]")
    dtype = ["uint8", "int8"][case % 2]
    shape = [(10,), (5, 8)][case // 2]
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    x = rng.integers(lo, hi + 1, (N * 50, *shape)).astype(dtype)
    x_scale, x_zp = float(np.float32(rng.uniform(0.02, 0.2))), int(rng.integers(lo, hi + 1))
    y_zp = 0 if dtype == "uint8" else -128
    init = {**qparams("x", x_scale, x_zp, dtype), **qparams("y", 1 / 256, y_zp, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node("Softmax", ["xf"], ["s"], name="sm", axis=-1),
             helper.make_node("QuantizeLinear", ["s", "y_scale", "y_zp"], ["y"])]
    model = make_model(nodes, {"x": (np.dtype(dtype), shape)}, {"y": np.dtype(dtype)}, init)
    graph = load_onnx(model)
    assert isinstance(graph.layers[0], ir.Softmax) and graph.layers[0].method == "float"
    ref = run_ort(model, {"x": x})[0]
    got = run_graph(graph, {"x": x})[graph.outputs[0]]
    a = compare_tensors({"y": got}, {"y": ref})
    print(f"DQ-Softmax-Q {dtype} {shape}: {a.equal}/{a.elements} identical ({100 * a.fraction:.4f}%), "
          f"max {a.max_diff}")
    assert a.max_diff <= MAX_LSB and a.fraction >= AGREEMENT_MIN


def _classifier(rng, tmp_path, fmt):
    """Gemm(16 -> 10) -> Softmax, quantized by quantize_static."""
    w = (rng.standard_normal((10, 16)) * 0.5).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["z"], name="fc", transB=1),
             helper.make_node("Softmax", ["z"], ["y"], name="sm", axis=-1)]
    return _quantize(_float_model(nodes, (16,), "y", {"w": w, "b": np.zeros(10)}, opset=13), tmp_path, rng,
                     (16,), fmt=fmt)


@pytest.mark.parametrize("fmt", ["qoperator"])
def test_classifier_softmax_quantized_by_onnxruntime(fmt, tmp_path):
    """Gemm -> Softmax quantized by quantize_static: QLinearSoftmax at the end of the classifier."""
    rng = np.random.default_rng([SEED, 20])
    print(f"seed [{SEED}, 20]")
    model = _classifier(rng, tmp_path, fmt)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    graph = _layerwise(f"gemm-softmax {fmt}", model, x)
    assert [type(layer).__name__ for layer in graph.layers] == ["Dense", "Softmax"]
    with pytest.raises(CompileError, match=r"layer '.*': kind softmax does not run on the fabric .* host side"):
        compile_graph(graph, get_preset("default"))


# -- LRN -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_lrn_between_convolutions(fmt, tmp_path):
    rng = np.random.default_rng([SEED, 30])
    print(f"seed [{SEED}, 30]")
    c1, i1 = _conv("c1", "x", "a", rng, 3, 8)
    c2, i2 = _conv("c2", "n", "y", rng, 8, 4)
    # LRN -> MaxPool as AlexNet has it: onnxruntime leaves both in float, the importer quantizes the LRN like
    # the pool's output (exact: a max commutes with a monotonic quantisation)
    nodes = [c1, helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("LRN", ["r"], ["l"], name="lrn", size=5, alpha=1e-2, beta=0.75, bias=2.0),
             helper.make_node("MaxPool", ["l"], ["n"], name="pool", kernel_shape=[3, 3], strides=[1, 1],
                              pads=[1, 1, 1, 1]), c2]
    model = _quantize(_float_model(nodes, (3, 8, 8), "y", {**i1, **i2}), tmp_path, rng, (3, 8, 8), fmt=fmt)
    x = rng.standard_normal((N, 3, 8, 8)).astype(np.float32)
    graph = _layerwise(f"conv-lrn-conv {fmt}", model, x)
    assert {"LRN", "MaxPool"} <= {type(layer).__name__ for layer in graph.layers}
    # the fabric runs it (the LRN engine): the ISS equals the golden model on every tensor of every image, and
    # the float form of numerics "onnx" is refused by name
    from cimforge.compiler.iss import run_program
    codes = ops_input(graph, x)
    prog = compile_graph(graph, get_preset("default"), batch=N)
    got, _ = run_program(prog, codes)
    golden = run_graph(graph, codes)
    for name, v in golden.items():
        np.testing.assert_array_equal(got[name], v, err_msg=name)
    with pytest.raises(CompileError, match=r"lrn method 'float' .* allowed 'integer'"):
        compile_graph(load_onnx(model, numerics="onnx"), get_preset("default"))


# -- folded at import: BatchNormalization, Sum, channel shuffle, Clip ----------------------------------------------

@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_batchnorm_after_add_is_a_depthwise_conv(fmt, tmp_path):
    """A BatchNormalization that cannot fold into a convolution (it follows an Add) becomes a per-channel
    affine: a depthwise 1x1 convolution with int8 weights of magnitude 64..127 (each channel's magnitude the
    one whose bias rounds best)."""
    rng = np.random.default_rng([SEED, 40])
    print(f"seed [{SEED}, 40]")
    c1, i1 = _conv("c1", "x", "a", rng, 4, 6)
    c2, i2 = _conv("c2", "x", "b", rng, 4, 6)
    c3, i3 = _conv("c3", "n", "y", rng, 6, 3)
    bn = {"g": rng.uniform(0.5, 2.0, 6) * rng.choice([-1, 1], 6), "beta": rng.standard_normal(6) * 0.2,
          "mean": rng.standard_normal(6) * 0.3, "var": rng.uniform(0.5, 2.0, 6)}
    nodes = [c1, c2, helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("BatchNormalization", ["s", "g", "beta", "mean", "var"], ["n"], name="bn"), c3]
    model = _quantize(_float_model(nodes, (4, 6, 6), "y", {**i1, **i2, **i3, **bn}), tmp_path, rng, (4, 6, 6),
                      fmt=fmt)
    x = rng.standard_normal((N * 4, 4, 6, 6)).astype(np.float32)
    graph = _layerwise(f"add-bn {fmt}", model, x)
    dw = [layer for layer in graph.layers if isinstance(layer, ir.Conv2d) and layer.is_depthwise]
    assert len(dw) == 1 and np.all((np.abs(dw[0].weight) >= 64) & (np.abs(dw[0].weight) <= 127))
    # The weights are exact (w * |a|/|w|); the int32 bias is rounded at s_in * s_w, at worst half of
    # s_in * s_w / s_out output LSB: only outputs that close to a rounding tie can differ from onnxruntime's float
    # BatchNormalization (about twice that fraction).
    bn_layer = dw[0]
    err = 0.5 * bn_layer.input.scale * bn_layer.weight_scale.max() / bn_layer.output.scale
    ref = ort_tensors(model, graph, {"x": x})
    got = run_layer(bn_layer, ref[bn_layer.input.name], rounding="single")
    a = compare_tensors({"bn": got}, {"bn": ref[bn_layer.output.name]})
    print(f"add-bn {fmt}: bias error up to {err:.4f} LSB, {100 * (1 - a.fraction):.3f}% differ")
    assert a.max_diff <= 1 and 1 - a.fraction <= 4 * err + 4 / a.elements


def test_batchnorm_on_vectors_is_a_diagonal_dense(tmp_path):
    rng = np.random.default_rng([SEED, 45])
    print(f"seed [{SEED}, 45]")
    w1, w2 = (rng.standard_normal((12, 10)) * 0.4).astype(np.float32), (rng.standard_normal((4, 12)) * 0.4)
    bn = {"g": rng.uniform(0.5, 2.0, 12), "beta": rng.standard_normal(12) * 0.2,
          "mean": rng.standard_normal(12) * 0.3, "var": rng.uniform(0.5, 2.0, 12)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], name="fc1", transB=1),
             helper.make_node("BatchNormalization", ["a", "g", "beta", "mean", "var"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1)]
    inits = {"w1": w1, "b1": np.zeros(12), "w2": w2, "b2": np.zeros(4), **bn}
    model = _quantize(_float_model(nodes, (10,), "y", inits), tmp_path, rng, (10,))
    x = rng.standard_normal((256, 10)).astype(np.float32)
    graph = _layerwise("gemm-bn-relu-gemm", model, x)
    diag = graph.layer("bn")
    assert isinstance(diag, ir.Dense) and np.count_nonzero(diag.weight) == 12 and diag.act_min == diag.output.zero_point


@pytest.mark.parametrize("n_inputs", [2, 3])
def test_sum_is_a_chain_of_adds(n_inputs, tmp_path):
    rng = np.random.default_rng([SEED, 50 + n_inputs])
    print(f"seed [{SEED}, {50 + n_inputs}]")
    convs, inits = [], {}
    for i in range(n_inputs):
        c, ini = _conv(f"c{i}", "x", f"a{i}", rng, 3, 4)
        convs.append(c)
        inits.update(ini)
    last, ini = _conv("last", "s", "y", rng, 4, 2)
    nodes = convs + [helper.make_node("Sum", [f"a{i}" for i in range(n_inputs)], ["s"], name="sum"), last]
    model = _quantize(_float_model(nodes, (3, 5, 5), "y", {**inits, **ini}), tmp_path, rng, (3, 5, 5))
    x = rng.standard_normal((N, 3, 5, 5)).astype(np.float32)
    graph = _layerwise(f"sum of {n_inputs}", model, x, requantised=n_inputs == 2)
    assert sum(isinstance(layer, ir.Add) for layer in graph.layers) == n_inputs - 1


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_channel_shuffle_is_a_permutation_conv(fmt, bn, tmp_path):
    """With ``bn``, ShuffleNet's Conv -> BatchNormalization -> Relu before the shuffle (QOperator: all of it
    float until the QuantizeLinear after the shuffle)."""
    rng = np.random.default_rng([SEED, 60])
    print(f"seed [{SEED}, 60]")
    g, cg = 3, 4
    c1, i1 = _conv("c1", "x", "a0" if bn else "a", rng, 4, g * cg, k=1, pads=0, group=1)
    if bn:
        i1.update({"g": rng.uniform(0.5, 2.0, g * cg), "beta": rng.standard_normal(g * cg) * 0.2,
                   "mean": rng.standard_normal(g * cg) * 0.3, "var": rng.uniform(0.5, 2.0, g * cg)})
        c1 = [c1, helper.make_node("BatchNormalization", ["a0", "g", "beta", "mean", "var"], ["b0"], name="bn"),
              helper.make_node("Relu", ["b0"], ["a"])]
    else:
        c1 = [c1]
    c2, i2 = _conv("c2", "s", "y", rng, g * cg, 4)
    shapes = {"shape5": np.array([0, g, cg, 5, 5]), "shape4": np.array([0, g * cg, 5, 5])}
    nodes = [*c1, helper.make_node("Reshape", ["a", "shape5"], ["r5"], name="split"),
             helper.make_node("Transpose", ["r5"], ["t5"], name="shuffle", perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "shape4"], ["s"], name="merge"), c2]
    fm = _float_model(nodes, (4, 5, 5), "y", {**i1, **i2})
    for k, v in shapes.items():
        fm.graph.initializer.append(numpy_helper.from_array(v.astype(np.int64), k))
    model = _quantize(fm, tmp_path, rng, (4, 5, 5), fmt=fmt)
    x = rng.standard_normal((N, 4, 5, 5)).astype(np.float32)
    graph = _layerwise(f"shuffle {fmt}", model, x)
    perm = [layer for layer in graph.layers if layer.name.startswith("merge")]
    assert len(perm) == 1 and isinstance(perm[0], ir.Conv2d) and perm[0].kernel == (1, 1)
    assert not any(isinstance(layer, ir.Reshape) for layer in graph.layers)
    # the permutation with its identity requantisation copies the codes: out[b*g + a] = x[a*cg + b]
    src = run_graph(graph, ops_input(graph, x))
    moved = src[perm[0].input.name].reshape(N, g, cg, 5, 5).transpose(0, 2, 1, 3, 4).reshape(N, g * cg, 5, 5)
    np.testing.assert_array_equal(src[perm[0].output.name], moved)


def ops_acc(layer, x):
    from cimforge.golden import ops
    return (ops.conv2d_acc if isinstance(layer, ir.Conv2d) else ops.dense_acc)(layer, x)


def ops_input(graph, x):
    from cimforge.golden import ops
    return {graph.inputs[0].name: ops.quantize(x, graph.inputs[0])}


def test_clip_0_6_is_relu6(tmp_path):
    rng = np.random.default_rng([SEED, 70])
    print(f"seed [{SEED}, 70]")
    c1, i1 = _conv("c1", "x", "a", rng, 3, 4)
    nodes = [c1, helper.make_node("Clip", ["a", "lo", "hi"], ["y"], name="relu6")]
    model = _quantize(_float_model(nodes, (3, 6, 6), "y", {**i1, "lo": np.float32(0), "hi": np.float32(6)}),
                      tmp_path, rng, (3, 6, 6))
    x = (rng.standard_normal((N, 3, 6, 6)) * 4).astype(np.float32)
    graph = _layerwise("conv-clip(0,6)", model, x)
    (conv,) = graph.layers
    out = conv.output
    assert conv.act_min == max(out.qmin, out.zero_point)
    assert conv.act_max == min(out.qmax, out.zero_point + int(np.rint(6 / out.scale)))


# -- weights with zero points ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("per_channel", [False, True])
def test_uint8_weights_with_zero_points(fmt, symmetric, per_channel, tmp_path):
    """quantize_static(weight_type=QUInt8): symmetric weights (zero point 128) are plain int8 weights;
    asymmetric ones keep their zero points and the golden convolution and matrix product subtract the
    correction term."""
    case = 100 + 4 * (fmt == "qdq") + 2 * symmetric + per_channel
    rng = np.random.default_rng([SEED, case])
    print(f"seed [{SEED}, {case}]")
    c1, i1 = _conv("c1", "x", "a", rng, 3, 5)
    i1["c1_w"] = i1["c1_w"] + 0.2  # off-centre weights: asymmetric zero points far from 128
    w = (rng.standard_normal((5 * 4 * 4, 7)) * 0.2 + 0.1).astype(np.float32)
    nodes = [c1, helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "fc_w"], ["y"], name="fc")]
    model = _quantize(_float_model(nodes, (3, 4, 4), "y", {**i1, "fc_w": w}), tmp_path, rng, (3, 4, 4), fmt=fmt,
                      act="uint8", weight="uint8", per_channel=per_channel, WeightSymmetric=symmetric)
    x = rng.standard_normal((32, 3, 4, 4)).astype(np.float32)
    tag = f"uint8 weights {fmt} {'symmetric' if symmetric else 'asymmetric'} {'per-channel' if per_channel else 'per-tensor'}"
    if fmt == "qoperator" and per_channel:
        # onnxruntime's QLinearConv turns per-channel uint8 weights into int8 ones and runs its U8S8 kernel,
        # which saturates here (up to 45 LSB off): judge the golden operators by the exact evaluation instead
        graph = load_onnx(model)
        ref = ort_tensors(model, graph, {"x": x})
        for layer in graph.weighted_layers:
            xin = ref[layer.input.name]
            np.testing.assert_array_equal(ops_acc(layer, xin), _exact_acc(layer, xin))
            got = run_layer(layer, xin, rounding="single")
            a = compare_tensors({"y": got}, {"y": _exact_codes(layer, xin)})
            print(f"{tag} {layer.name} vs exact evaluation: {a.equal}/{a.elements} identical, max {a.max_diff}")
            assert a.max_diff <= MAX_LSB and a.fraction >= AGREEMENT_MIN
    else:
        graph = _layerwise(tag, model, x)
    weighted = graph.weighted_layers
    assert len(weighted) == 2
    # onnxruntime's zero points (its QDQ quantizer keeps per-channel uint8 weights symmetric even when asked not
    # to); full-range uint8 codes minus a zero point other than 128 leave int8, so those keep theirs
    zps = np.concatenate([numpy_helper.to_array(i).ravel() for i in model.graph.initializer
                          if i.name.endswith("_w_zero_point")])
    if symmetric or np.all(zps == 128):
        assert not any(layer.has_weight_zero_point for layer in weighted)
    else:
        assert any(layer.has_weight_zero_point for layer in weighted)
        # the compiler runs them over copies of their input (compiler/zero_points.py): the ISS equals the golden
        from cimforge.compiler.iss import run_program
        codes = to_codes(graph, x[:4])
        got, _ = run_program(compile_graph(graph, get_preset("default"), batch=4), {graph.inputs[0].name: codes})
        want = run_graph(graph, codes)
        for t in want:
            if t in got:
                np.testing.assert_array_equal(got[t], want[t], err_msg=f"{tag}: tensor {t} on the ISS")


@pytest.mark.parametrize("case", range(6))
def test_nd_qlinearmatmul_random(case):
    rng = np.random.default_rng([SEED, 200 + case])
    print(f"seed [{SEED}, {200 + case}]")
    # onnxruntime has no int8 x uint8 QLinearMatMul and its uint8 x int8 one saturates (module docstring)
    dtype = ["uint8", "int8"][case % 2]
    w_dtype = np.uint8 if dtype == "uint8" else np.int8
    lead = [(3,), (2, 4), (5,)][case // 2]
    k, n = int(rng.integers(4, 20)), int(rng.integers(2, 9))
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    x = rng.integers(lo, hi + 1, (N, *lead, k)).astype(dtype)
    b = rng.integers(0, 256, (k, n)).astype(np.uint8) if w_dtype == np.uint8 else \
        rng.integers(-128, 128, (k, n)).astype(np.int8)
    b_zp = int(rng.integers(60, 200)) if w_dtype == np.uint8 else int(rng.integers(-20, 20))
    x_scale, w_scale = float(np.float32(rng.uniform(0.01, 0.05))), float(np.float32(rng.uniform(0.005, 0.03)))
    real = ((x.astype(np.float64) - (x_zp := int(rng.integers(lo, hi + 1)))) @ (b.astype(np.float64) - b_zp)
            * x_scale * w_scale)
    y_scale = float(np.float32((np.percentile(real, 99) - np.percentile(real, 1)) / 255))
    y_zp = int(np.clip(np.rint(lo - np.percentile(real, 1) / y_scale), lo, hi))
    init = {**qparams("x", x_scale, x_zp, dtype), "b": b, **qparams("b", w_scale, b_zp, w_dtype),
            **qparams("y", y_scale, y_zp, dtype)}
    node = helper.make_node("QLinearMatMul", ["x", "x_scale", "x_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"],
                            ["y"], name="mm")
    model = make_model([node], {"x": (np.dtype(dtype), (*lead, k))}, {"y": np.dtype(dtype)}, init)
    graph = load_onnx(model)
    (layer,) = graph.layers
    assert isinstance(layer, ir.MatMul) and layer.output.shape == (*lead, n)
    ref = run_ort(model, {"x": x})[0]
    for mode in ("single", "double"):
        got = run_graph(graph, {"x": x}, rounding=mode)[graph.outputs[0]]
        a = compare_tensors({"y": got}, {"y": ref})
        print(f"N-D QLinearMatMul {dtype} x {np.dtype(w_dtype)} (zp {b_zp}) {lead}x{k}x{n} [{mode}]: "
              f"{a.equal}/{a.elements} identical, max {a.max_diff} LSB")
        assert a.max_diff <= MAX_LSB
        if mode == "single":
            assert a.fraction >= AGREEMENT_MIN
    # the (positions, features) graph input is refused first, as any tensor that is not (C, H, W) or (F,)
    with pytest.raises(CompileError, match=r"kind matmul does not run on the fabric|allowed \(C, H, W\) or \(F,\)"):
        compile_graph(graph, get_preset("default"))


@pytest.mark.parametrize("case", range(6))
def test_conv_integer_and_matmul_integer_random(case):
    rng = np.random.default_rng([SEED, 300 + case])
    print(f"seed [{SEED}, {300 + case}]")
    x_dtype = ["uint8", "int8"][case % 2]
    w_dtype = ["uint8", "int8"][case // 2 % 2]
    lo, hi = (0, 255) if x_dtype == "uint8" else (-128, 127)
    wlo, whi = (0, 255) if w_dtype == "uint8" else (-128, 127)
    x_zp, w_zp = int(rng.integers(lo, hi + 1)), int(rng.integers(wlo, whi + 1))
    if case < 4:  # ConvInteger
        cin, cout, kk = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
        shape = (cin, 7, 6)
        w = rng.integers(wlo, whi + 1, (cout, cin, kk, kk)).astype(w_dtype)
        w_zps = np.array(w_zp, w_dtype) if case % 3 else rng.integers(wlo, whi + 1, cout).astype(w_dtype)
        node = helper.make_node("ConvInteger", ["x", "w", "x_zp", "w_zp"], ["y"], name="ci", pads=[1, 0, 0, 1],
                                strides=[1, 2])
        cls = ir.ConvInteger
    else:  # MatMulInteger, N-D
        k, n = int(rng.integers(3, 30)), int(rng.integers(1, 8))
        shape = (3, k)
        w = rng.integers(wlo, whi + 1, (k, n)).astype(w_dtype)
        w_zps = rng.integers(wlo, whi + 1, n).astype(w_dtype)  # per column
        node = helper.make_node("MatMulInteger", ["x", "w", "x_zp", "w_zp"], ["y"], name="mi")
        cls = ir.MatMulInteger
    x = rng.integers(lo, hi + 1, (N, *shape)).astype(x_dtype)
    init = {"w": w, "x_zp": np.array(x_zp, x_dtype), "w_zp": w_zps}
    model = make_model([node], {"x": (np.dtype(x_dtype), shape)}, {"y": np.dtype(np.int32)}, init)
    graph = load_onnx(model)
    (layer,) = graph.layers
    assert type(layer) is cls and layer.output.dtype == "int32"
    got = run_graph(graph, {"x": x})[graph.outputs[0]]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, _exact_acc(layer, x))
    ref = run_ort(model, {"x": x})[0]
    print(f"{cls.__name__} x {x_dtype} (zp {x_zp}) w {w_dtype} zp {np.asarray(w_zps).ravel()[:4]}: "
          f"{int((got == ref).sum())}/{ref.size} identical to onnxruntime")
    if x_dtype == w_dtype:  # mixed signedness: onnxruntime's kernels saturate here (module docstring)
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(CompileError, match=rf"kind {cls.kind} does not run on the fabric|allowed \(C, H, W\)"):
        compile_graph(graph, get_preset("default"))


def test_int32_tensors_only_leave_the_graph():
    x = ir.TensorInfo("x", (4,), "uint8", 1.0, 3)
    mi = ir.MatMulInteger(name="mi", inputs=(x,), output=ir.TensorInfo("y", (2,), "int32", 1.0, 0),
                          weight=np.ones((2, 4), np.int8))
    with pytest.raises(ir.IRError, match=r"dense layer 'fc': invalid input dtype"):
        ir.Dense(name="fc", inputs=(mi.output,), output=ir.TensorInfo("z", (2,), "int8", 1.0, 0),
                 weight=np.ones((2, 2), np.int8))
    with pytest.raises(ir.IRError, match=r"dense layer 'fc': invalid output dtype = 'int32'"):
        ir.Dense(name="fc", inputs=(x,), output=ir.TensorInfo("z", (2,), "int32", 1.0, 0),
                 weight=np.ones((2, 4), np.int8))


# -- the support table -----------------------------------------------------------------------------------------------

def test_docs_operators_md_is_fresh():
    """docs/operators.md is what the registries render (regenerate with the command it names)."""
    from pathlib import Path

    from cimforge.compiler.lowering import support

    committed = (Path(__file__).resolve().parents[1] / "docs" / "operators.md").read_text()
    assert committed == support.operators_markdown(), f"docs/operators.md is stale: run `{support.MARKDOWN_COMMAND}`"


def test_the_import_table_names_every_operator_and_kind():
    from cimforge.golden.onnx_import import IMPORTS_TO, SUPPORTED_OPS

    assert set(IMPORTS_TO) == set(SUPPORTED_OPS)
    kinds = {k for ks, _ in IMPORTS_TO.values() for k in ks}
    assert kinds == set(ir.LAYER_KINDS), "every kind is made by some operator, and no operator names another"


def test_a_final_softmax_runs_on_the_host_side_of_a_run(tmp_path):
    """split_host_tail cuts a classifier before its softmax: the fabric program (here the ISS) computes the rest,
    the host applies the golden softmax to its output, and together they equal the golden model."""
    from cimforge.compiler.iss import run_program
    from cimforge.compiler.lowering.host import split_host_tail

    rng = np.random.default_rng([SEED, 400])
    print(f"seed [{SEED}, 400]")
    model = _classifier(rng, tmp_path, "qoperator")
    graph = load_onnx(model)
    split = split_host_tail(graph)
    assert [type(layer) for layer in split.tail] == [ir.Softmax]
    assert split.fabric.outputs == (graph.layers[0].output.name,)
    codes = ops_input(graph, rng.standard_normal((4, 16)).astype(np.float32))
    prog = compile_graph(split.fabric, get_preset("default"), batch=4)
    fabric_tensors, _ = run_program(prog, codes)
    whole = split.finish(fabric_tensors)
    golden = run_graph(graph, codes)
    for name in graph.outputs:
        np.testing.assert_array_equal(whole[name], golden[name])
    assert split_host_tail(split.fabric).tail == ()


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_weights_reshaped_by_the_graph_are_folded(fmt, tmp_path):
    """Inception-v1's classifier reshapes its weight initializer in the graph; onnxruntime then quantizes the
    result as an activation (QuantizeLinear of a constant). The importer folds both."""
    rng = np.random.default_rng([SEED, 500])
    print(f"seed [{SEED}, 500]")
    w = (rng.standard_normal(10 * 16) * 0.4).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["w_flat", "w_shape"], ["w"], name="wshape"),
             helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)]
    fm = _float_model(nodes, (16,), "y", {"w_flat": w, "b": np.zeros(10)})
    fm.graph.initializer.append(numpy_helper.from_array(np.array([10, 16], np.int64), "w_shape"))
    model = _quantize(fm, tmp_path, rng, (16,), fmt=fmt)
    assert "Reshape" in {n.op_type for n in model.graph.node}
    graph = _layerwise(f"reshaped weights {fmt}", model, rng.standard_normal((64, 16)).astype(np.float32))
    assert [type(layer) for layer in graph.layers] == [ir.Dense]


def test_qdq_reshape_that_changes_the_quantisation():
    """DequantizeLinear -> Reshape -> QuantizeLinear with another scale (Inception-v1's classifier): a reshape
    and a one-input requantising concat, within 1 LSB of onnxruntime."""
    rng = np.random.default_rng([SEED, 600])
    print(f"seed [{SEED}, 600]")
    x = rng.integers(-128, 128, (64, 8, 2, 2)).astype(np.int8)
    init = {**qparams("x", 0.05, 3, np.int8), **qparams("y", 0.07, -10, np.int8), "shape": np.array([0, 32])}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
             helper.make_node("Reshape", ["xf", "shape"], ["r"], name="flat"),
             helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["y"])]
    model = make_model(nodes, {"x": (np.dtype(np.int8), (8, 2, 2))}, {"y": (np.dtype(np.int8), 2)}, init)
    graph = load_onnx(model)
    assert [type(layer) for layer in graph.layers] == [ir.Reshape, ir.Concat]
    ref = run_ort(model, {"x": x})[0]
    for mode in ("single", "double"):
        got = run_graph(graph, {"x": x}, rounding=mode)[graph.outputs[0]]
        a = compare_tensors({"y": got}, {"y": ref})
        print(f"reshape + requantise [{mode}]: {a.equal}/{a.elements} identical, max {a.max_diff}")
        assert a.max_diff <= MAX_LSB and (mode == "double" or a.fraction >= AGREEMENT_MIN)


# -- per-channel affines by constants, and float chains onnxruntime never quantizes -------------------------------

@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_mul_and_add_by_a_per_channel_constant_are_depthwise_convs(fmt, tmp_path):
    """DenseNet-121's decomposed BatchNormalization: Mul by a (C, 1, 1) constant, Add of one (QLinearMul /
    QLinearAdd with a quantized constant in QOperator form) are per-channel affines (depthwise 1x1 convs)."""
    rng = np.random.default_rng([SEED, 80])
    print(f"seed [{SEED}, 80]")
    c1, i1 = _conv("c1", "x", "a", rng, 3, 5)
    c2, i2 = _conv("c2", "r", "y", rng, 5, 2)
    inits = {**i1, **i2, "m": rng.uniform(0.5, 1.5, (5, 1, 1)), "b": rng.standard_normal((5, 1, 1)) * 0.2}
    nodes = [c1, helper.make_node("Mul", ["a", "m"], ["am"], name="mul"),
             helper.make_node("Add", ["am", "b"], ["ab"], name="add"), helper.make_node("Relu", ["ab"], ["r"]), c2]
    model = _quantize(_float_model(nodes, (3, 6, 6), "y", inits), tmp_path, rng, (3, 6, 6), fmt=fmt)
    ops = {n.op_type for n in model.graph.node}
    assert ({"QLinearMul", "QLinearAdd"} <= ops) if fmt == "qoperator" else ({"Mul", "Add"} <= ops)
    x = rng.standard_normal((N * 4, 3, 6, 6)).astype(np.float32)
    graph = _layerwise(f"mul-add {fmt}", model, x)
    dw = [layer for layer in graph.layers if isinstance(layer, ir.Conv2d) and layer.is_depthwise]
    assert len(dw) == 2 and not any(isinstance(layer, ir.Add) for layer in graph.layers)
    if fmt == "qdq":  # numerics "onnx": each a float_chain, exact
        from cimforge.golden.compare import layerwise
        exact = load_onnx(model, numerics="onnx")
        assert sum(isinstance(layer, ir.FloatChain) for layer in exact.layers) == 2
        ref = ort_tensors(model, exact, {"x": x})
        a = compare_tensors(layerwise(exact, ref, "single"), ref)
        assert a.max_diff == 0, a.format()


def _product_model(fmt: str, shape_a, shape_b, dtype, rng, gate_first: bool = False):
    """A product of two quantized tensors, QDQ ``Mul`` or com.microsoft ``QLinearMul`` on codes, with random
    scales and zero points; the gate (``shape_b``) first when ``gate_first``."""
    qmin, qmax = (-128, 127) if dtype == np.int8 else (0, 255)
    s = {k: np.float32(rng.uniform(0.005, 0.1)) for k in ("a", "b", "y")}
    z = {k: dtype(rng.integers(qmin, qmax + 1)) for k in ("a", "b", "y")}
    inits = {f"{k}_{f}": v for k in s for f, v in (("scale", s[k]), ("zp", z[k]))}
    ins = ["qa", "qb"][::-1] if gate_first else ["qa", "qb"]
    if fmt == "qdq":
        nodes = [helper.make_node("DequantizeLinear", ["qa", "a_scale", "a_zp"], ["da"]),
                 helper.make_node("DequantizeLinear", ["qb", "b_scale", "b_zp"], ["db"]),
                 helper.make_node("Mul", ["d" + i[1] for i in ins], ["p"], name="product"),
                 helper.make_node("QuantizeLinear", ["p", "y_scale", "y_zp"], ["y"])]
    else:
        q = {i: [i, f"{i[1]}_scale", f"{i[1]}_zp"] for i in ("qa", "qb")}
        nodes = [helper.make_node("QLinearMul", q[ins[0]] + q[ins[1]] + ["y_scale", "y_zp"], ["y"],
                                  name="product", domain="com.microsoft")]
    return make_model(nodes, {"qa": (dtype, shape_a), "qb": (dtype, shape_b)}, {"y": dtype}, inits)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8], ids=["int8", "uint8"])
@pytest.mark.parametrize("fmt", ["qdq", "qlinear"])
@pytest.mark.parametrize("shape_b,gate_first", [((4, 3, 5), False), ((4, 1, 1), False), ((4, 1, 1), True)],
                         ids=["same", "per_channel", "gate_first"])
def test_product_of_two_tensors_is_a_mul(shape_b, gate_first, fmt, dtype):
    """A product of two computed tensors (QDQ ``Mul``, ``QLinearMul``; a per-channel gate ``(C, 1, 1)``
    broadcast over the plane, in either operand order): one ``mul`` layer, TFLite's integer product, within 1 LSB
    of onnxruntime's float product and >= 99.9 % identical, over every code pair's corners (the most negative and
    largest codes of both operands) and random codes, with random quantisations (seeded)."""
    seed = [SEED, 90, len(shape_b), int(gate_first), fmt == "qdq", dtype == np.int8]
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    qmin, qmax = (-128, 127) if dtype == np.int8 else (0, 255)
    worst = 1.0
    for trial in range(8):
        model = _product_model(fmt, (4, 3, 5), shape_b, dtype, rng, gate_first)
        g = load_onnx(model)
        assert [layer.kind for layer in g.layers] == ["mul"]
        layer = g.layers[0]
        assert layer.broadcast == (shape_b != (4, 3, 5)) and layer.inputs[0].shape == (4, 3, 5)
        a = rng.integers(qmin, qmax + 1, (64, 4, 3, 5)).astype(dtype)
        b = rng.integers(qmin, qmax + 1, (64, *shape_b)).astype(dtype)
        a[0], b[0], a[1], b[1], a[2], b[2] = qmin, qmin, qmax, qmin, qmax, qmax  # the corners
        want = run_ort(model, {"qa": a, "qb": b})[0].astype(int)
        got = run_graph(g, {layer.inputs[0].name: a, layer.inputs[1].name: b})["y"].astype(int)
        d = np.abs(got - want)
        assert d.max() <= MAX_LSB, f"trial {trial}: max {d.max()} LSB"
        worst = min(worst, (d == 0).mean())
    print(f"worst trial {100 * worst:.3f} % identical")
    assert worst >= AGREEMENT_MIN


def test_products_beyond_a_per_channel_gate_are_refused():
    """One value per pixel ``(1, H, W)`` (a spatial gate) is not a per-channel broadcast: refused by node name;
    the square of one tensor is a function of its codes (an element-wise table, tests/test_golden_lut.py)."""
    from cimforge.golden.onnx_import import OnnxImportError
    rng = np.random.default_rng([SEED, 91])
    with pytest.raises(OnnxImportError, match=r"node 'product' \(Mul\): broadcasting product \(4, 3, 5\) \* "
                                              r"\(1, 3, 5\).*\(C, 1, 1\)"):
        load_onnx(_product_model("qdq", (4, 3, 5), (1, 3, 5), np.int8, rng))
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Mul", ["d", "d"], ["p"], name="square"),
             helper.make_node("QuantizeLinear", ["p", "s", "z"], ["y"])]
    model = make_model(nodes, {"x": (np.float32, (4,))}, {"y": np.int8}, {"s": np.float32(0.1), "z": np.int8(0)})
    assert [l.kind for l in load_onnx(model).layers] == ["lut"]


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_float_residual_chains_are_quantized_into_int8_intermediates(fmt, tmp_path):
    """ResNet-50's block end: BatchNormalization on both branches -> Sum -> Relu -> AveragePool (QOperator: the
    BatchNormalizations and the Sum stay float; QDQ: Sum -> Relu -> AveragePool does). The float results are
    quantized into ``<name>/quantized`` tensors covering their whole range, and the chain runs on existing
    kinds: within 2 LSB of onnxruntime's float chain at its end, every other tensor within the bound."""
    rng = np.random.default_rng([SEED, 81])
    print(f"seed [{SEED}, 81]")
    c1, i1 = _conv("c1", "x", "a", rng, 3, 4)
    c2, i2 = _conv("c2", "x", "b", rng, 3, 4)
    inits = {**i1, **i2}
    for k in ("1", "2"):
        inits.update({f"g{k}": rng.uniform(0.5, 1.5, 4), f"be{k}": rng.standard_normal(4) * 0.2,
                      f"m{k}": rng.standard_normal(4) * 0.2, f"v{k}": rng.uniform(0.5, 1.5, 4)})
    nodes = [c1, c2,
             helper.make_node("BatchNormalization", ["a", "g1", "be1", "m1", "v1"], ["na"], name="bn1"),
             helper.make_node("BatchNormalization", ["b", "g2", "be2", "m2", "v2"], ["nb"], name="bn2"),
             helper.make_node("Sum", ["na", "nb"], ["s"], name="sum"), helper.make_node("Relu", ["s"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["p"], name="pool", kernel_shape=[3, 3], strides=[3, 3]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    inits.update(fw=rng.standard_normal((3, 16)) * 0.3, fb=np.zeros(3))
    model = _quantize(_float_model(nodes, (3, 6, 6), "y", inits), tmp_path, rng, (3, 6, 6), fmt=fmt)
    graph = load_onnx(model)
    assert any(t.endswith("/quantized") for t in graph.tensors)
    assert sum(isinstance(layer, ir.Add) for layer in graph.layers) == 1
    x = rng.standard_normal((N * 4, 3, 6, 6)).astype(np.float32)
    from cimforge.golden.compare import layerwise
    ref = ort_tensors(model, graph, {"x": x})
    a = compare_tensors(layerwise(graph, ref, "single"), ref)
    print(a.format())
    assert a.max_diff <= 2
    chain = {layer.output.name for layer in graph.layers if isinstance(layer, (ir.Add, ir.AvgPool, ir.Reshape))}
    assert all(t.fraction >= AGREEMENT_MIN and t.max_diff <= MAX_LSB for t in a.tensors if t.name not in chain), \
        a.format()
    compile_graph(graph, get_preset("default"))  # existing kinds only: the fabric runs it
    # numerics "onnx": the chain is one float_chain layer, float32 as onnxruntime: every tensor within the bound
    exact = load_onnx(model, numerics="onnx")
    chains = [layer for layer in exact.layers if isinstance(layer, ir.FloatChain)]
    assert chains and not any(t.endswith("/quantized") for t in exact.tensors)
    a = compare_tensors(layerwise(exact, ref, "single"), ref)
    print(a.format())
    assert a.ok(AGREEMENT_MIN, MAX_LSB), a.format()
    with pytest.raises(CompileError, match=r"kind float_chain does not run on the fabric"):
        compile_graph(exact, get_preset("default"))


# -- float average pools (QDQ): onnxruntime's float32 computation, reproduced ------------------------------------

POOL_CASES = [  # (op, input (C, H, W), attributes, which MLAS kernel)
    ("AveragePool", (3, 8, 8), dict(kernel_shape=[8, 8], strides=[8, 8]), "generic"),
    ("AveragePool", (3, 9, 9), dict(kernel_shape=[3, 3], strides=[3, 3]), "generic"),
    ("AveragePool", (3, 8, 8), dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]), "vector"),
    ("AveragePool", (3, 7, 7), dict(kernel_shape=[7, 7], strides=[1, 1], pads=[0, 0, 1, 1]), "vector"),
    ("AveragePool", (2, 9, 9), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                    count_include_pad=1), "vector"),
    ("AveragePool", (3, 7, 7), dict(kernel_shape=[7, 7], strides=[1, 1]), "global"),
    ("GlobalAveragePool", (4, 6, 6), {}, "global"),
    ("GlobalAveragePool", (4, 5, 5), {}, "global"),
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_float_average_pools_agree_exactly_with_onnxruntime(case):
    """DequantizeLinear -> AveragePool -> QuantizeLinear with equal scales (so that window sums land exactly on
    quantisation ties, which onnxruntime rounds to even, or just off them by float32 rounding): the golden
    ``method="float"`` (``numerics="onnx"``) is identical to onnxruntime on every element; the fabric's
    ``"integer"`` form (the default ``numerics="fabric"``) is within 1 LSB."""
    op, shape, attrs, kernel = POOL_CASES[case]
    seed = [SEED, 90, case]
    rng = np.random.default_rng(seed)
    print(f"seed {seed}: {op} {shape} {attrs} ({kernel} kernel)")
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["d"]),
             helper.make_node(op, ["d"], ["p"], name="pool", **attrs),
             helper.make_node("QuantizeLinear", ["p", "s", "z"], ["y"])]
    model = make_model(nodes, {"x": (np.int8, shape)}, {"y": np.int8},
                       {"s": np.float32(rng.uniform(0.01, 0.1)), "z": np.int8(rng.integers(-20, 20))})
    x = rng.integers(-128, 128, (64, *shape)).astype(np.int8)
    ref = run_ort(model, {"x": x})[0]
    for numerics, method, exact in (("onnx", "float", True), ("fabric", "integer", False)):
        graph = load_onnx(model, numerics=numerics)
        assert graph.layers[0].method == method
        got = run_graph(graph, x)[graph.outputs[0]]
        a = compare_tensors({"y": got}, {"y": ref})
        print(f"  {method}: {a.equal}/{a.elements} identical, max {a.max_diff} LSB")
        assert a.max_diff <= (0 if exact else 1)


def test_numerics_option_is_checked():
    from cimforge.golden.onnx_import import OnnxImportError
    with pytest.raises(OnnxImportError, match="numerics 'exact': allowed fabric, onnx"):
        load_onnx(make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (np.int8, (2,))}, {"y": np.int8}),
                  numerics="exact")


# -- 4-bit weights (opset 21) and the precision a layer needs ------------------------------------------------------

@pytest.mark.parametrize("weight,per_channel,act", [("QInt4", True, "QInt8"), ("QInt4", False, "QInt8"),
                                                    ("QUInt4", True, "QInt8"), ("QInt4", True, "QInt4"),
                                                    ("QInt4", False, "QUInt4")])
def test_int4_weights_quantized_by_onnxruntime(weight, per_channel, act, tmp_path):
    """quantize_static(weight_type=QuantType.QInt4 / QUInt4) on an opset 21 model: the 4-bit weights import as
    small int8 codes, agree with onnxruntime, and the layers report ``weight_bits`` 4. With 4-bit activations
    (activation_type QInt4 / QUInt4) the codes are int8 / uint8 whose range the producers' clamps narrow to
    -8..7 / 0..15 (the graph input gets a Clamp), as QuantizeLinear saturates; inputs are scaled up so that
    saturation happens."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    seed = [SEED, 95, int(per_channel), len(weight), len(act)]
    rng = np.random.default_rng(seed)
    print(f"seed {seed}: {weight} per_channel={per_channel}")
    c1, i1 = _conv("c1", "x", "a", rng, 3, 6)
    c2, i2 = _conv("c2", "r", "y", rng, 6, 2, k=1, pads=0)
    nodes = [c1, helper.make_node("Relu", ["a"], ["r"]), c2]
    model = _float_model(nodes, (3, 6, 6), "y", {**i1, **i2}, opset=21)
    model.ir_version = 10

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)} for _ in range(16)])

        def get_next(self):
            return next(self.data, None)

    src, dst = tmp_path / "float.onnx", tmp_path / "int4.onnx"
    onnx.save(model, str(src))
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=getattr(QuantType, act),
                    weight_type=getattr(QuantType, weight), per_channel=per_channel)
    q = onnx.load(str(dst))
    four = {TensorProto.INT4, TensorProto.UINT4}
    assert sum(t.data_type in four for t in q.graph.initializer) >= 2, "quantize_static wrote no 4-bit weights"
    x = rng.standard_normal((N * 4, 3, 6, 6)).astype(np.float32) * (3 if act != "QInt8" else 1)
    graph = _layerwise(f"{weight} pc={per_channel} {act}", q, x)
    convs = [layer for layer in graph.layers if isinstance(layer, ir.Conv2d)]
    assert [layer.weight_bits for layer in convs] == [4, 4]
    if act != "QInt8":
        lo, hi = (-8, 7) if act == "QInt4" else (0, 15)
        assert all((layer.act_min, layer.act_max) == (lo, hi) or layer.act_min == layer.output.zero_point
                   for layer in convs)
        assert isinstance(graph.layers[0], ir.Clamp) and (graph.layers[0].act_min, graph.layers[0].act_max) == (lo, hi)
        end = run_graph(graph, to_codes(graph, x))
        ref = ort_tensors(q, graph, {"x": x})
        assert compare_tensors(end, ref).max_diff == 0


def test_weight_bits_is_the_smallest_signed_width():
    t_in = ir.TensorInfo("i", (4,), "int8", 0.1, 0)
    t_out = ir.TensorInfo("o", (2,), "int8", 0.1, 0)
    for w, bits in (([[0, -1, 0, 0], [-1, 0, 0, 0]], 1), ([[1, -2, 0, 0], [0, 0, 0, 0]], 2),
                    ([[7, -8, 0, 0], [0, 0, 0, 0]], 4), ([[8, 0, 0, 0], [0, 0, 0, 0]], 8),
                    ([[-9, 0, 0, 0], [0, 0, 0, 0]], 8), ([[0, 0, 0, 0], [0, 0, 0, 0]], 1)):
        assert ir.Dense(name="d", inputs=(t_in,), output=t_out, weight=np.array(w, np.int8)).weight_bits == bits, w
    # with a zero point the real weights w - zp decide: codes 3..5 around 4 are -1..1
    d = ir.Dense(name="z", inputs=(t_in,), output=t_out, weight=np.array([[3, 4, 5, 4]] * 2, np.int8),
                 weight_zero_point=4)
    assert d.weight_bits == 2
