"""Property-based tests (hypothesis) of the ONNX importer (issue 15 item 5): the committed digits models with
random mutations of node types, attributes, inputs and outputs, initializers (shape, type, data), opsets, graph
inputs and outputs. The importer must return a graph or raise one of the project's named errors
(:func:`cimforge.errors.is_user_error`: OnnxImportError, IRError, NumericsError); anything else fails.

Derandomized (a fixed seed, printed), 1,000 examples, no deadline; slow (CI runs it, ``make test-fast`` does not).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from cimforge.errors import is_user_error
from cimforge.golden.datasets import MODELS_DIR
from cimforge.golden.onnx_import import load_onnx

SEED = 15
SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
MODELS = {name: (MODELS_DIR / f"{name}.onnx").read_bytes()
          for name in ("digits_cnn_qop", "digits_cnn_qdq", "digits_resnet_qop", "digits_resnet_qdq")}
OPS = ["Conv", "QLinearConv", "QLinearMatMul", "QGemm", "Gemm", "MatMul", "Add", "QLinearAdd", "Relu", "Clip",
       "MaxPool", "AveragePool", "QLinearAveragePool", "GlobalAveragePool", "QLinearGlobalAveragePool", "Flatten",
       "Reshape", "Concat", "QLinearConcat", "QuantizeLinear", "DequantizeLinear", "Softmax", "LRN", "Transpose",
       "Identity", "NoSuchOp", ""]
_INT = st.sampled_from([0, 1, 2, 3, -1, -2, 7, 8, 255, 256, 1 << 31, -(1 << 31), 1 << 40])
_DTYPES = [TensorProto.FLOAT, TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64,
           TensorProto.FLOAT16, TensorProto.BOOL, TensorProto.STRING, 0, 99]


def setup_module():
    print(f"hypothesis: derandomized, seed {SEED}, {SETTINGS.max_examples} examples")


def _mutate(m: onnx.ModelProto, draw) -> str:
    g = m.graph
    kind = draw(st.sampled_from(["op", "attr", "attr_del", "input", "input_del", "output", "init_dims",
                                 "init_type", "init_data", "init_del", "opset", "graph_out", "graph_in",
                                 "elem", "node_del", "swap", "in_shape"]))
    nodes = list(g.node)
    if kind in ("op", "attr", "attr_del", "input", "input_del", "output", "node_del", "swap") and nodes:
        k = draw(st.integers(0, len(nodes) - 1))
        n = g.node[k]
        if kind == "op":
            n.op_type = draw(st.sampled_from(OPS))
        elif kind == "attr" and n.attribute:
            a = n.attribute[draw(st.integers(0, len(n.attribute) - 1))]
            if a.type == onnx.AttributeProto.INT:
                a.i = draw(_INT)
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = draw(st.floats(allow_nan=True, width=32))
            elif a.type == onnx.AttributeProto.INTS:
                del a.ints[:]
                a.ints.extend(draw(st.lists(_INT, max_size=5)))
            else:
                n.attribute.append(helper.make_attribute("bogus", draw(_INT)))
        elif kind == "attr":
            n.attribute.append(helper.make_attribute(draw(st.sampled_from(["axis", "group", "kernel_shape",
                                                                            "strides", "pads"])), draw(_INT)))
        elif kind == "attr_del" and n.attribute:
            del n.attribute[draw(st.integers(0, len(n.attribute) - 1))]
        elif kind == "input" and n.input:
            n.input[draw(st.integers(0, len(n.input) - 1))] = draw(st.sampled_from(
                ["", "nosuch"] + [i.name for i in g.input] + [o for x in nodes for o in x.output]))
        elif kind == "input_del" and n.input:
            del n.input[draw(st.integers(0, len(n.input) - 1))]
        elif kind == "output" and n.output:
            n.output[0] = draw(st.sampled_from(["", "renamed"] + [i.name for i in g.input]))
        elif kind == "node_del":
            del g.node[k]
        elif kind == "swap" and len(nodes) > 1:
            j = draw(st.integers(0, len(nodes) - 1))
            a, b = onnx.NodeProto(), onnx.NodeProto()
            a.CopyFrom(g.node[k])
            b.CopyFrom(g.node[j])
            g.node[k].CopyFrom(b)
            g.node[j].CopyFrom(a)
    elif kind.startswith("init") and g.initializer:
        t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        if kind == "init_dims":
            del t.dims[:]
            t.dims.extend(draw(st.lists(st.integers(0, 9), max_size=4)))
        elif kind == "init_type":
            t.data_type = draw(st.sampled_from(_DTYPES))
        elif kind == "init_data":
            if t.raw_data:
                raw = bytearray(t.raw_data)
                choice = draw(st.sampled_from(["cut", "extremes", "random"]))
                if choice == "cut":
                    t.raw_data = bytes(raw[:draw(st.integers(0, max(0, len(raw) - 1)))])
                else:
                    fill = draw(st.sampled_from([0x80, 0x7F, 0xFF, 0x00])) if choice == "extremes" else None
                    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
                    t.raw_data = bytes([fill] * len(raw)) if fill is not None else \
                        rng.integers(0, 256, len(raw), dtype=np.uint8).tobytes()
            else:
                del t.float_data[:]
                t.float_data.extend(draw(st.lists(st.floats(allow_nan=True, width=32), max_size=3)))
        else:
            del g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
    elif kind == "opset":
        m.opset_import[0].version = draw(st.integers(1, 30))
    elif kind == "graph_out" and g.output:
        del g.output[:]
    elif kind == "graph_in" and g.input:
        del g.input[0]
    elif kind == "elem" and g.output:
        g.output[0].type.tensor_type.elem_type = draw(st.sampled_from(_DTYPES))
    elif kind == "in_shape" and g.input:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            dims[draw(st.integers(0, len(dims) - 1))].dim_value = draw(st.integers(0, 20))
    return kind


@pytest.mark.slow
@SETTINGS
@given(data=st.data())
def test_importer_on_mutated_models(data):
    name = data.draw(st.sampled_from(sorted(MODELS)))
    m = onnx.ModelProto.FromString(MODELS[name])
    kinds = [_mutate(m, data.draw) for _ in range(data.draw(st.integers(1, 3)))]
    try:
        load_onnx(m)
    except Exception as e:  # noqa: BLE001 - the property: only the project's named errors
        assert is_user_error(e), f"{name} after {kinds}: {type(e).__name__}: {e}"


def test_importer_regressions():
    """Issue 15 examples: no graph output, an unknown element type and an old opset are named errors."""
    for mutate in (lambda g, m: g.output.__delitem__(slice(None)),
                   lambda g, m: setattr(g.output[0].type.tensor_type, "elem_type", 99),
                   lambda g, m: setattr(m.opset_import[0], "version", 5)):
        m = onnx.ModelProto.FromString(MODELS["digits_cnn_qop"])
        mutate(m.graph, m)
        try:
            load_onnx(m)
        except Exception as e:  # noqa: BLE001
            assert is_user_error(e), f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("mutate", ["no_output", "opset5", "elem99", "ir99"])
def test_golden_command_on_models_onnxruntime_rejects(tmp_path, capsys, mutate):
    """Issue 15: ``golden`` on models the importer accepts and onnxruntime then rejects (odd opsets, no graph
    output, unknown element types) raised tracebacks; now each is one line, exit 2."""
    from cimforge.cli import main

    m = onnx.ModelProto.FromString(MODELS["digits_cnn_qop"])
    if mutate == "no_output":
        del m.graph.output[:]
    elif mutate == "opset5":
        m.opset_import[0].version = 5
    elif mutate == "elem99":
        m.graph.output[0].type.tensor_type.elem_type = 99
    else:
        m.ir_version = 99
    path = tmp_path / f"{mutate}.onnx"
    onnx.save(m, path)
    assert main(["golden", str(path), "--samples", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cimforge golden: error: ") and "Traceback" not in err, err
