"""Issue 15 on ``cimforge partition``: 0 is never a silent default, numbers are finite and positive, an imposed
input shape must agree with the model, the inference fabric must be one the compiler accepts, huge arrays are
refused before allocation, and a cyclic data flow is an error, not an infinite loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.cli import main
from cimforge.compiler.partition import PartitionError
from cimforge.compiler.partition.dataflow import Node, check_acyclic, trace_edges
from cimforge.errors import USER_EXIT
from cimforge.golden.datasets import MODELS_DIR

MODEL = str(MODELS_DIR / "digits_cnn_qop.onnx")


def _error(capsys, argv, *named):
    rc = main(argv)
    err = capsys.readouterr().err
    print(argv, rc, err)
    assert rc == USER_EXIT, err
    assert err.startswith("cimforge partition: error: ") and len(err.strip().splitlines()) == 1, err
    for n in named:
        assert n in err, (n, err)


@pytest.mark.parametrize("extra, named", [
    (["-n", "0"], ["--accelerators", ">= 1"]),
    (["-b", "0"], ["--batch", ">= 1"]),
    (["--mode", "inference", "-n", "0"], ["--accelerators", ">= 1"]),
    (["-n", str(1 << 40)], ["--accelerators", "power of two, 1..1024"]),
    (["-n", "2048"], ["power of two, 1..1024"]),
    (["-b", str(1 << 40)], ["--batch", "1..1048576"]),
    (["--bytes-per-element", "-1"], ["--bytes-per-element", "(0, 64]"]),
    (["--bytes-per-element", "nan"], ["--bytes-per-element", "finite"]),
    (["--bytes-per-element", "inf"], ["--bytes-per-element", "finite"]),
    (["--bytes-per-element", "0"], ["--bytes-per-element"]),
    (["--input-shape", "image=1x2x8x8"], ["axis 1 is 2", "fixes it at 1"]),
    (["--input-shape", "image=1x1x9x9"], ["axis 2 is 9"]),
    (["--input-shape", "image=1x1x8"], ["rank 3", "rank 4"]),
    (["--input-shape", "image=0x1x8x8"], ["--input-shape", "each D in 1.."]),
    (["--input-shape", "=1x1"], ["--input-shape"]),
    (["--report", "/proc/x/r.md"], ["--report", "cannot write"]),
])
def test_partition_options(capsys, extra, named):
    _error(capsys, ["partition", MODEL, "--no-report" if "--report" not in extra else "--search=greedy", *extra],
           *named)


def test_inference_config_the_compiler_rejects(capsys, tmp_path):
    """``--mode inference`` with max_ab = 1 was planned; the compiler rejects it: now it is refused up front."""
    (tmp_path / "ab1.toml").write_text("[macro]\nmax_ab = 1\n")
    _error(capsys, ["partition", MODEL, "--mode", "inference", "--config", str(tmp_path / "ab1.toml"),
                    "--no-report"], "max_ab", "8")
    (tmp_path / "bad.toml").write_bytes(b"name = \"\xff\"\n")
    _error(capsys, ["partition", MODEL, "--mode", "inference", "--config", str(tmp_path / "bad.toml"),
                    "--no-report"], "UTF-8")


def _symbolic_input_model(path, cin_weights: int):
    """A float conv model whose input shape is fully symbolic, so only the weights can contradict an imposed
    shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, cin_weights, 3, 3), np.float32), "W")
    g = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], "sym",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", "H", "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_imposed_shape_contradicting_the_weights(capsys, tmp_path):
    path = tmp_path / "sym.onnx"
    _symbolic_input_model(path, 3)
    _error(capsys, ["partition", str(path), "--no-report", "--input-shape", "x=1x5x16x16"],
           "layer 'conv'", "5 input channels", "take 3")
    assert main(["partition", str(path), "--no-report", "-n", "2", "--input-shape", "x=1x3x16x16"]) == 0


def test_cyclic_graph_is_an_error_not_a_hang(capsys, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "W")
    w1 = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "W1")
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c"], pads=[1] * 4, name="conv"),
             helper.make_node("Add", ["c", "r"], ["a"], name="add"),
             helper.make_node("Conv", ["a", "W"], ["c2"], pads=[1] * 4, name="conv2"),
             helper.make_node("Relu", ["c2"], ["r"], name="relu")]
    g = helper.make_graph(nodes, "cyc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4, 8, 8])], [w, w1])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "cyc.onnx")
    _error(capsys, ["partition", str(tmp_path / "cyc.onnx"), "--no-report"], "'add'", "later node 'relu'",
           "topological order (no cycle)")


def test_every_walk_of_the_data_flow_detects_cycles():
    """The node walks themselves (trace_edges) refuse a cycle instead of looping: two unary nodes feeding each
    other would spin walk_back forever."""
    nodes = [Node("w0", "weighted", ["x"], ["a"]), Node("u1", "unary", ["a", "c"], ["b"]),
             Node("u2", "unary", ["b"], ["c"]), Node("w3", "weighted", ["c"], ["y"])]
    with pytest.raises(PartitionError, match=r"cycle through 3 node\(s\) \(u1, u2, w3\)"):
        trace_edges(nodes, {"w0": 0, "u1": 1, "u2": 2, "w3": 3})
    check_acyclic(nodes[:1] + [Node("u1", "unary", ["a"], ["b"])])  # a chain is fine


@pytest.mark.parametrize("mutate, named", [
    ("no_initializer", ["is neither a graph input, an initializer nor a node's output", "QLinearConv node"]),
    ("opset5", ["does not exist in opset 5"]),
])
def test_clear_cause_instead_of_give_the_input_shape(capsys, tmp_path, mutate, named):
    """Issue 15: a missing initializer or an old opset were reported as "give the input shape"."""
    import onnx

    m = onnx.load(MODEL)
    if mutate == "no_initializer":
        w = next(n for n in m.graph.node if n.op_type == "QLinearConv").input[3]
        m.graph.initializer.remove(next(i for i in m.graph.initializer if i.name == w))
    else:
        m.opset_import[0].version = 5
    onnx.save(m, tmp_path / "m.onnx")
    rc = main(["partition", str(tmp_path / "m.onnx"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == USER_EXIT and all(n in err for n in named) and "give the input shape" not in err, err
