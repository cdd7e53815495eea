"""ONNX import: clear errors for what cannot be represented, and the QDQ / QOperator paths the real models do
not cover (activation fusion, literal clamps on codes, auto_pad, Reshape)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cimforge.golden.compare import compare_tensors
from cimforge.golden.datasets import MODELS_DIR
from cimforge.golden.ir import Clamp, Conv2d, MaxPool, Reshape
from cimforge.golden.onnx_build import make_model, qparams, run_ort
from cimforge.golden.onnx_import import OnnxImportError, load_onnx
from cimforge.golden.runner import run_float, run_graph

SEED = 77


# --- helpers: a small QDQ conv model with an optional activation ----------------------------------------------------

def _qdq_conv(act: str | None, *, weight_float=False, after_pool=False, input_shape=("N", 2, 6, 6),
              extra_nodes=(), auto_pad=None):
    rng = np.random.default_rng(SEED)
    w = rng.integers(-127, 128, size=(4, 2, 3, 3)).astype(np.int8)
    init = {**qparams("x", 0.02, 0, np.int8), **qparams("y", 0.05, -10, np.int8),
            "w_q": w, "w_scale": np.full(4, 0.01, np.float32), "w_zp": np.zeros(4, np.int8),
            "b_q": rng.integers(-500, 500, 4).astype(np.int32), "b_scale": np.full(4, 0.02 * 0.01, np.float32),
            "b_zp": np.zeros(4, np.int32), "w_f": w.astype(np.float32) * 0.01, "lo": np.float32(0.0),
            "hi": np.float32(1.5)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wd"], name="dq_w", axis=0),
             helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["bd"], name="dq_b", axis=0)]
    conv_attrs = {"kernel_shape": [3, 3]}
    conv_attrs.update({"auto_pad": auto_pad} if auto_pad else {"pads": [1, 1, 1, 1]})
    nodes.append(helper.make_node("Conv", ["xd", "w_f" if weight_float else "wd", "bd"], ["c"], name="conv",
                                  **conv_attrs))
    last = "c"
    if after_pool:
        nodes.append(helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
        last = "p"
    if act == "relu":
        nodes.append(helper.make_node("Relu", [last], ["a"], name="relu"))
        last = "a"
    elif act == "clip":
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["a"], name="clip"))
        last = "a"
    nodes += list(extra_nodes)
    nodes += [helper.make_node("QuantizeLinear", [last, "y_scale", "y_zp"], ["yq"], name="q_out"),
              helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="dq_out")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "qdq", [x], [y],
                              [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _agree(model, graph, x):
    ref = run_ort(model, {"x": x})
    got = run_float(graph, x, rounding="single")[graph.outputs[0]]
    r = np.rint(ref[0] / 0.05).astype(np.int64) + (-10)  # back to codes of yq
    a = compare_tensors({"y": got}, {"y": r.reshape(got.shape)})
    print(f"{graph.name}: {a.equal}/{a.elements} identical, max {a.max_diff} LSB")
    return a


@pytest.mark.parametrize("act, bounds", [(None, (-128, 127)), ("relu", (-10, 127)), ("clip", (-10, 20))])
def test_qdq_activation_fuses_into_conv_clamp(act, bounds):
    model = _qdq_conv(act)
    graph = load_onnx(model, name=f"qdq_{act}")
    assert [type(layer) for layer in graph.layers] == [Conv2d]
    conv = graph.layers[0]
    assert (conv.act_min, conv.act_max) == bounds  # clip(0, 1.5) -> codes rint(x / 0.05) - 10 in [-10, 20]
    assert conv.per_channel is False and conv.padding == (1, 1, 1, 1)
    x = np.random.default_rng(SEED).uniform(-2.5, 2.5, (3, 2, 6, 6)).astype(np.float32)
    a = _agree(model, graph, x)
    assert a.max_diff <= 1 and a.fraction >= 0.999


def test_qdq_relu_after_maxpool_becomes_a_clamp_layer():
    model = _qdq_conv("relu", after_pool=True)
    # the conv's own output must be quantized before the pool: insert the Q/DQ pair ORT would write
    g = model.graph
    conv = next(n for n in g.node if n.name == "conv")
    conv.output[0] = "c_f"
    g.node.insert(list(g.node).index(conv) + 1, helper.make_node("QuantizeLinear", ["c_f", "y_scale", "y_zp"],
                                                                  ["cq"], name="q_c"))
    g.node.insert(list(g.node).index(conv) + 2, helper.make_node("DequantizeLinear", ["cq", "y_scale", "y_zp"],
                                                                  ["c"], name="dq_c"))
    graph = load_onnx(model, name="pool_relu")
    assert [type(layer) for layer in graph.layers] == [Conv2d, MaxPool, Clamp]
    assert graph.layers[-1].act_min == -10
    x = np.random.default_rng(SEED).uniform(-2.5, 2.5, (3, 2, 6, 6)).astype(np.float32)
    assert _agree(model, graph, x).max_diff <= 1


def test_qdq_auto_pad_same():
    model = _qdq_conv(None, auto_pad="SAME_UPPER")
    graph = load_onnx(model)
    assert graph.layers[0].padding == (1, 1, 1, 1) and graph.layers[0].output.shape == (4, 6, 6)


def test_qlinearconv_then_relu_on_codes_is_fused_literally():
    # ONNX Relu on int8 codes is max(code, 0): a literal clamp, fused into the conv's act_min
    rng = np.random.default_rng(SEED)
    init = {**qparams("x", 0.02, 3, np.int8), "w": rng.integers(-127, 128, (3, 1, 3, 3)).astype(np.int8),
            **qparams("w", 0.01, 0, np.int8), **qparams("y", 0.03, -20, np.int8)}
    nodes = [helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp"],
                              ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    model = make_model(nodes, {"x": (np.dtype(np.int8), (1, 5, 5))}, {"y": np.dtype(np.int8)}, init)
    graph = load_onnx(model)
    assert len(graph.layers) == 1 and graph.layers[0].act_min == 0 and graph.outputs == ("y",)
    x = rng.integers(-128, 128, (4, 1, 5, 5)).astype(np.int8)
    got = run_graph(graph, {"x": x}, rounding="single")["y"]
    assert np.abs(got.astype(int) - run_ort(model, {"x": x})[0]).max() <= 1


def test_reshape_keeps_batch():
    rng = np.random.default_rng(SEED)
    init = {**qparams("x", 0.02, 0, np.int8), "shape": np.array([0, -1], np.int64)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xd"], name="dq"),
             helper.make_node("Reshape", ["xd", "shape"], ["r"], name="reshape"),
             helper.make_node("QuantizeLinear", ["r", "x_scale", "x_zp"], ["y"], name="q")]
    model = make_model(nodes, {"x": (np.dtype(np.int8), (2, 3, 4))}, {"y": (np.dtype(np.int8), 2)}, init)
    graph = load_onnx(model)
    assert isinstance(graph.layers[0], Reshape) and graph.layers[0].output.shape == (24,)
    x = rng.integers(-128, 128, (2, 2, 3, 4)).astype(np.int8)
    np.testing.assert_array_equal(run_graph(graph, {"x": x})["y"], run_ort(model, {"x": x})[0])
    bad = make_model(nodes, {"x": (np.dtype(np.int8), (2, 3, 4))}, {"y": (np.dtype(np.int8), 1)},
                     {**init, "shape": np.array([-1], np.int64)})
    with pytest.raises(OnnxImportError, match=r"node 'reshape' \(Reshape\): .*batch"):
        load_onnx(bad)


# --- errors -----------------------------------------------------------------------------------------------------------

def test_error_unsupported_op_names_node_and_op():
    # (Softmax was the example until it became supported; Hardmax has no IR kind)
    hardmax = helper.make_node("Hardmax", ["c"], ["s"], name="the_hardmax", axis=1)
    model = _qdq_conv(None, extra_nodes=[hardmax])
    model.graph.node[-2].input[0] = "s"  # q_out now quantizes the hardmax output
    with pytest.raises(OnnxImportError, match=r"node 'the_hardmax' \(Hardmax\): operator Hardmax .* not supported"):
        load_onnx(model)


def test_error_float_only_model():
    with pytest.raises(OnnxImportError, match="float-only model"):
        load_onnx(MODELS_DIR / "digits_cnn_float.onnx")


def test_error_float_weights_in_otherwise_quantized_model():
    with pytest.raises(OnnxImportError, match=r"node 'conv' \(Conv\): weight 'w_f' is a float initializer"):
        load_onnx(_qdq_conv(None, weight_float=True))


@pytest.mark.parametrize("shape, match", [
    (("N", "C", 6, 6), r"'x': dimension 1 is dynamic or missing \('C'\)"),
    (("N", 2, None, 6), r"'x': dimension 2 is dynamic or missing \(unknown\)"),
    ((6, 6), None),  # rank 2 (N, 6): the conv then refuses a non-(C, H, W) input
])
def test_error_dynamic_shapes(shape, match):
    model = _qdq_conv(None, input_shape=shape)
    with pytest.raises(OnnxImportError, match=match or r"node 'conv' \(Conv\): only 2-D convolutions"):
        load_onnx(model)


def test_error_missing_input_shape():
    model = _qdq_conv(None)
    model.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(OnnxImportError, match=r"'x': graph input has no shape"):
        load_onnx(model)


def test_error_corrupted_truncated_missing_and_empty_files(tmp_path):
    data = (MODELS_DIR / "digits_cnn_qop.onnx").read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\xff\xff\xff not a model" * 20)
    (tmp_path / "empty.onnx").write_bytes(b"")
    for f in ("trunc.onnx", "garbage.onnx"):
        with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
            load_onnx(tmp_path / f)
    with pytest.raises(OnnxImportError, match="no nodes"):
        load_onnx(tmp_path / "empty.onnx")
    with pytest.raises(OnnxImportError, match="does not exist"):
        load_onnx(tmp_path / "absent.onnx")
    with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
        load_onnx(data[:100])


def test_error_missing_external_data(tmp_path):
    """A model saved with its weights in an external .data file, copied without it: a one-line import error
    naming the model and the data file (it was onnx's ValidationError, an internal error)."""
    import onnx

    proto = onnx.load(str(MODELS_DIR / "digits_cnn_qop.onnx"))
    onnx.save_model(proto, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    assert load_onnx(tmp_path / "m.onnx").layers
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(OnnxImportError, match=r"not a readable ONNX model.*m\.onnx\.data") as e:
        load_onnx(tmp_path / "m.onnx")
    assert "m.onnx" in str(e.value) and "\n" not in str(e.value)


def test_error_dangling_input():
    model = _qdq_conv(None)
    model.graph.node[4].input[0] = "nowhere"
    with pytest.raises(OnnxImportError, match=r"node 'conv' \(Conv\): input 'nowhere' is produced by no earlier node"):
        load_onnx(model)


def test_error_unsupported_attributes():
    init = qparams("x", 0.02, 0, np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xd"], name="dq"),
             helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2],
                              storage_order=1)]
    model = make_model(nodes, {"x": (np.dtype(np.int8), (1, 5, 5))}, {"y": np.dtype(np.int8)}, init)
    with pytest.raises(OnnxImportError, match=r"node 'pool' \(MaxPool\): storage_order=1 is not supported"):
        load_onnx(model)


def test_error_float_tensor_between_layers():
    with pytest.raises(OnnxImportError, match=r"node 'pool' \(MaxPool\): input 'c' is the float output of node "
                                              r"'conv' \(Conv\) with no QuantizeLinear"):
        load_onnx(_qdq_conv(None, after_pool=True))


def test_error_per_axis_activation_quantization():
    model = _qdq_conv(None)
    init = {i.name: i for i in model.graph.initializer}
    init["x_scale"].CopyFrom(onnx.numpy_helper.from_array(np.full(2, 0.02, np.float32), "x_scale"))
    init["x_zp"].CopyFrom(onnx.numpy_helper.from_array(np.zeros(2, np.int8), "x_zp"))
    with pytest.raises(OnnxImportError, match=r"node 'q_in' \(QuantizeLinear\): output scale must be per-tensor"):
        load_onnx(model)


def test_errors_are_value_errors_with_fields():
    try:
        load_onnx(MODELS_DIR / "digits_cnn_float.onnx")
    except ValueError as e:
        assert isinstance(e, OnnxImportError) and e.reason.startswith("float-only")
