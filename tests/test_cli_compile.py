"""``cimforge compile``: program, memory images, listing and predicted cycles of a model, as a user runs it.

Also the home of :func:`build_user_model` (imported by the other CLI tests): a small float CNN made with
onnx.helper and quantized by onnxruntime's ``quantize_static`` on seeded random calibration data, the way a
user brings their own model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cimforge.cli import main
from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import program_timing
from cimforge.golden.datasets import MODELS_DIR
from cimforge.golden.onnx_import import load_onnx
from cimforge.presets import get_preset

#: Seed of the user model's weights and calibration data (printed by the tests that use it).
USER_SEED = 5
#: Its input: one 12x12 channel, batch fixed to 1 as in the onnx model zoo.
USER_SHAPE = (1, 12, 12)


def build_user_model(path: Path, seed: int = USER_SEED, batch: int | None = 1, fmt: str = "qdq",
                     softmax: bool = False) -> Path:
    """Conv 3x3 (1->8) + ReLU, MaxPool, Conv 3x3 (8->16) + ReLU, MaxPool, Flatten, Gemm (->10), float32 weights
    drawn with ``seed``, quantized statically (int8 activations and weights) on 16 seeded random images;
    written to ``path`` (the float model beside it as ``<stem>_float.onnx``). ``batch=None``: a free batch;
    ``softmax``: a classifier's final Softmax after the Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(seed)

    def weight(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [weight("w1", (8, 1, 3, 3), 0.3), weight("b1", (8,), 0.1), weight("w2", (16, 8, 3, 3), 0.15),
             weight("b2", (16,), 0.1), weight("w3", (10, 16 * 3 * 3), 0.1), weight("b3", (10,), 0.1)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["g" if softmax else "y"], transB=1)]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["g"], ["y"], axis=1))
    n = batch if batch else "N"
    graph = helper.make_graph(nodes, "user_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, *USER_SHAPE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    float_path = path.with_name(f"{path.stem}_float.onnx")
    onnx.save(model, float_path)
    calib = [{"x": rng.uniform(0, 1, (batch or 1, *USER_SHAPE)).astype(np.float32)} for _ in range(16)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(path), Reader(),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return path


@pytest.fixture(scope="module")
def user_model(tmp_path_factory) -> Path:
    print(f"user model: seed {USER_SEED}")
    return build_user_model(tmp_path_factory.mktemp("user") / "user_cnn.onnx")


def _hex_words(path: Path) -> list[int]:
    return [int(line, 16) for line in path.read_text().split()]


def test_compile_digits_model_writes_everything(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(MODELS_DIR / "digits_cnn_qop.onnx"), "--preset", "default", "--out", str(out),
                 "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert "/0/Conv_quant" in text and "predicted:" in text and str(out) in text
    prog = compile_graph(load_onnx(MODELS_DIR / "digits_cnn_qop.onnx"), get_preset("default"), batch=2)
    assert _hex_words(out / "program.hex") == [int(w) for w in prog.code]
    for mem in ("wmem", "pmem", "dmem"):
        assert _hex_words(out / f"{mem}.hex") == [int(w) for w in getattr(prog, mem)]
    # the listing: one line per instruction, with its predicted retire cycle, layer and the compiler's text
    stamps = program_timing(prog)
    lines = [ln for ln in (out / "listing.txt").read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == len(prog.code)
    for line, info in zip(lines, prog.instrs):
        pc, retire, op = line.split()[:3]
        assert (int(pc), int(retire), op) == (info.pc, stamps[info.pc], info.op)
        assert line.endswith(info.text) and (info.layer is None or info.layer in line)
    cycles = json.loads((out / "cycles.json").read_text())
    assert cycles["run_cycles"] == stamps[-1] + 1 and cycles["batch"] == 2
    assert [layer["layer"] for layer in cycles["layers"]] == [layer.name for layer in prog.graph.layers
                                                              if layer.kind != "reshape"]
    assert all(len(layer["predicted"]) == 2 and layer["predicted"][0] > 0 for layer in cycles["layers"])
    manifest = json.loads((out / "program.json").read_text())
    assert manifest["memories"]["program"]["words"] == len(prog.code)
    place = manifest["activation_places"]["image_quantized"][1]
    assert place["base"] == prog.tensors[(1, "image_quantized")].base


def test_compile_user_model_npy(user_model, tmp_path, capsys):
    out = tmp_path / "npy"
    assert main(["compile", str(user_model), "--out", str(out), "--format", "npy"]) == 0
    capsys.readouterr()
    prog = compile_graph(load_onnx(user_model), get_preset("default"))
    wmem = np.load(out / "wmem.npy")
    assert wmem.dtype == np.uint64 and [int(w) for w in wmem] == [int(w) for w in prog.wmem]
    code = np.load(out / "program.npy")  # instruction words are wider than 64 bits: bytes, little-endian
    assert code.dtype == np.uint8 and [int.from_bytes(bytes(row), "little") for row in code] == \
        [int(w) for w in prog.code]
    kinds = [layer["kind"] for layer in json.loads((out / "cycles.json").read_text())["layers"]]
    assert kinds.count("conv2d") == 2 and kinds.count("dense") == 1


def test_compile_into_a_previous_output_keeps_only_its_own_files(user_model, tmp_path, capsys):
    """A compile into the directory of an earlier one: that one's files this one does not write (an external
    program's ext_init.hex, the other format's images) are removed, a user's own files are kept."""
    out = tmp_path / "out"
    assert main(["compile", str(user_model), "--out", str(out), "--memory", "external"]) == 0
    assert (out / "ext_init.hex").exists()
    (out / "notes.txt").write_text("mine")
    assert main(["compile", str(user_model), "--out", str(out), "--format", "npy"]) == 0
    capsys.readouterr()
    names = {p.name for p in out.iterdir()}
    assert "ext_init.hex" not in names and not any(n.endswith(".hex") for n in names), names
    assert {"program.npy", "wmem.npy", "listing.txt", "cycles.json", "program.json", "notes.txt"} <= names


def test_compile_errors(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["compile", "digits_cnn_qop", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cimforge compile: error: --out") and "not a directory" in err and "\n" not in err
    assert main(["compile", "digits_cnn_qop", "--preset", "tiny", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert "layer '/0/Conv_quant'" in err and "\n" not in err


def test_compile_leaves_a_trailing_softmax_to_the_host(tmp_path, capsys):
    model = build_user_model(tmp_path / "user_softmax.onnx", softmax=True)
    assert main(["compile", str(model), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "on the host side of a run: softmax" in out and (tmp_path / "out" / "listing.txt").exists()
