"""Shapes and edges from ONNX files and from the golden layer IR."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from cimforge.compiler.partition import PartitionError, UnknownOpWarning, dataflow, load_model, load_onnx
from cimforge.compiler.partition.zoo import ONNX_LIGHT, digits_cnn, light_dir
from cimforge.golden.datasets import MODELS_DIR

# (weighted layers, shortcut edges) of each shipped topology
EXPECTED = {"alexnet": (8, 0), "vgg19": (19, 0), "resnet50": (54, 15), "squeezenet": (26, 0),
            "inception_v1": (58, 0), "inception_v2": (70, 0), "densenet121": (121, 0), "shufflenet": (50, 15),
            "zfnet512": (8, 0)}


@pytest.mark.parametrize("name", sorted(ONNX_LIGHT))
def test_shipped_topologies_load_with_batch_one(name):
    path = light_dir() / ONNX_LIGHT[name]
    assert path.exists()
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    real = [i for i in m.graph.input if i.name not in inits]
    assert len(real) == 1
    assert [d.dim_value for d in real[0].type.tensor_type.shape.dim] == [1, 3, 224, 224]
    net = dataflow(load_model(name))
    assert (len(net.weighted), sum(e.kind == "block" for e in net.edges)) == EXPECTED[name]
    assert net.input_shape == (3, 224, 224)
    assert not net.carried


def test_layer_shapes_of_real_topologies():
    alex = dataflow(load_model("alexnet")).weighted
    assert (alex[0].in_channels, alex[0].out_channels, alex[0].kernel, alex[0].stride, alex[0].output_shape[1:]) == \
        (3, 96, (11, 11), (4, 4), (54, 54))
    assert alex[1].groups == 2 and alex[1].weight_count == 256 * 48 * 25
    assert (alex[5].kind, alex[5].in_channels, alex[5].out_channels, alex[5].source_shape[1:]) == \
        ("dense", 9216, 4096, (6, 6))
    vgg = dataflow(load_model("vgg19"))
    assert sum(l.macs for l in vgg.weighted) == pytest.approx(19.6e9, rel=0.01)
    # Inception concatenates four branches: the next block's layers get edges from all four, by channel share.
    inc = dataflow(load_model("inception_v1"))
    shares = [e.share for e in inc.edges if e.dst == 9]
    assert len(shares) == 4 and sum(shares) == pytest.approx(1.0)


def test_digits_models_from_onnx_and_from_the_ir_agree():
    pytest.importorskip("cimforge.golden.onnx_import")
    from cimforge.golden.onnx_import import load_onnx as golden_load

    for stem in ("digits_cnn_float", "digits_cnn_qop", "digits_resnet_qdq", "digits_resnet_qop"):
        path = MODELS_DIR / f"{stem}.onnx"
        if not path.exists():
            pytest.skip(f"{path} not made yet")
        a = dataflow(load_onnx(path))
        shapes = [(l.kind, l.in_channels, l.out_channels, l.input_shape[1:], l.output_shape[1:], l.kernel)
                  for l in a.weighted]
        edges = [(e.src, e.dst, e.kind) for e in a.edges]
        if "qdq" in stem or "qop" in stem:
            b = dataflow(golden_load(str(path)))
            assert [(l.kind, l.in_channels, l.out_channels, l.input_shape[1:], l.output_shape[1:], l.kernel)
                    for l in b.weighted] == shapes
            assert [(e.src, e.dst, e.kind) for e in b.edges] == edges
            assert all(l.source is not None for l in b.weighted)
    cnn = dataflow(load_onnx(MODELS_DIR / "digits_cnn_float.onnx"))
    builtin = dataflow(digits_cnn())
    assert [(l.in_channels, l.out_channels, l.input_shape[1:], l.output_shape[1:]) for l in cnn.weighted] == \
        [(l.in_channels, l.out_channels, l.input_shape[1:], l.output_shape[1:]) for l in builtin.weighted]
    res = dataflow(load_onnx(MODELS_DIR / "digits_resnet_qop.onnx"))
    assert [(e.src, e.dst) for e in res.edges if e.kind == "block"] == [(1, 3)]


def _conv(name, x, y, cin, cout):
    w = helper.make_tensor(f"{name}_w", TensorProto.FLOAT, [cout, cin, 3, 3], [0.0] * (cout * cin * 9))
    node = helper.make_node("Conv", [x, f"{name}_w"], [y], name=name, pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    return node, w


def _model(tmp_path, nodes, inits, in_dims, name="m.onnx", opsets=(("", 13),)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def test_unknown_ops_are_carried_with_a_warning(tmp_path):
    c1, w1 = _conv("c1", "x", "a", 3, 8)
    odd = helper.make_node("FancyActivation", ["a"], ["b"], name="fancy", domain="my.ops")
    c2, w2 = _conv("c2", "b", "z", 8, 4)
    p = _model(tmp_path, [c1, odd, c2], [w1, w2], ["N", 3, 16, 16], opsets=(("", 13), ("my.ops", 1)))
    with pytest.warns(UnknownOpWarning, match=r"FancyActivation \(node fancy\)"):
        net = dataflow(load_onnx(p))
    assert [l.kind for l in net.layers] == ["conv2d", "other", "conv2d"]
    assert net.layers[1].name == "fancy" and net.layers[1].weight_count == 0
    assert [(e.src, e.dst) for e in net.edges] == [(0, 2)]  # the data is followed through the unknown op
    assert net.weighted[1].input_shape[1:] == (16, 16)


def test_uninferable_shapes_give_a_clear_error(tmp_path):
    c1, w1 = _conv("c1", "x", "z", 3, 8)
    p = _model(tmp_path, [c1], [w1], ["N", 3, "H", "W"], name="dyn.onnx")
    with pytest.raises(PartitionError, match=r"cannot infer the shape of tensor 'x' \(input of Conv node 'c1'\).*--input-shape"):
        load_onnx(p)
    net = load_onnx(p, {"x": (1, 3, 32, 32)})
    assert net.weighted_layers[0].output_shape[1:] == (32, 32)
    with pytest.raises(PartitionError, match="no graph input 'y'"):
        load_onnx(p, {"y": (1, 3, 32, 32)})


def test_unreadable_files_and_unknown_names(tmp_path):
    with pytest.raises(PartitionError, match="cannot read"):
        load_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(PartitionError, match="not a readable ONNX file"):
        load_onnx(bad)
    with pytest.raises(PartitionError, match="known names: alexnet"):
        load_model("no_such_model")


def test_shape_view_of_the_ir_keeps_the_ir_layers():
    from cimforge.golden.ir import ShapeGraph
    from cimforge.golden.onnx_import import load_onnx as golden_load

    graph = golden_load(str(MODELS_DIR / "digits_resnet_qop.onnx"))
    view = ShapeGraph.of(graph)
    assert [l.kind for l in view.layers] == [l.kind for l in graph.layers]
    assert all(v.source is l and v.input_shapes == l.input_shapes for v, l in zip(view.layers, graph.layers))
    assert [v.gemm for v in view.weighted_layers] == [l.gemm for l in graph.weighted_layers]
    assert view.macs == graph.macs and view.input_shape == graph.inputs[0].shape
    # the partitioner takes the Graph itself: the same layers and edges as through the view
    edges = [(e.src, e.dst, e.kind) for e in dataflow(graph).edges]
    assert edges == [(e.src, e.dst, e.kind) for e in dataflow(view).edges]


def test_shape_view_errors_name_the_layer_and_field():
    from cimforge.golden.ir import IRError, LayerShape, ShapeGraph

    def conv(**kw):
        args = dict(name="c", kind="conv2d", inputs=("x",), outputs=("y",), input_shapes=((6, 8, 8),),
                    output_shape=(4, 8, 8), kernel=(3, 3))
        return LayerShape(**{**args, **kw})

    with pytest.raises(IRError, match=r"conv2d layer 'c': invalid groups = 4: allowed a positive integer dividing 6"):
        conv(groups=4)
    with pytest.raises(IRError, match=r"invalid kind = 'softmax2': allowed one of conv2d, dense, .*, other"):
        conv(kind="softmax2")
    with pytest.raises(IRError, match=r"conv2d layer 'c': invalid input shape = None"):
        conv(input_shapes=(None,))
    with pytest.raises(IRError, match=r"conv2d layer 'c': invalid kernel = \(3,\): allowed 2 entries"):
        conv(kernel=(3,))
    # a zero-cost layer may not know its shapes; a weighted one must
    assert LayerShape("u", "other", ("x",), ("z",), (("N", 3),), None).input_shapes == (None,)
    with pytest.raises(IRError, match=r"input of layer 'c'.*'x'.*topologically ordered"):
        ShapeGraph("g", {"w": (6, 8, 8)}, (conv(),))
    with pytest.raises(PartitionError, match="expected a cimforge.golden.ir.Graph or ShapeGraph, got str"):
        dataflow("alexnet")
    with pytest.raises(PartitionError, match="no weighted"):
        relu = LayerShape("r", "clamp", ("x",), ("y",), ((6, 8, 8),), (6, 8, 8))
        dataflow(ShapeGraph("g", {"x": (6, 8, 8)}, (relu,)))


def test_every_ir_kind_has_a_role_in_the_data_flow():
    # a new IR layer kind must say how data flows through it (else the partitioner carries it with a warning)
    from cimforge.compiler.partition.dataflow import ROLES
    from cimforge.golden.ir import LAYER_KINDS, SHAPE_ONLY_KINDS

    assert set(LAYER_KINDS) | set(SHAPE_ONLY_KINDS) <= set(ROLES)
