"""``cimforge golden``: accuracy and agreement report, error exit codes."""

import numpy as np
import pytest

from cimforge.cli import main
from cimforge.config import DEFAULT_ROUNDING
from cimforge.golden.datasets import MODELS_DIR


def test_golden_cli_on_digits(capsys):
    rc = main(["golden", str(MODELS_DIR / "digits_resnet_qdq.onnx"), "--dataset", "digits", "--limit", "100",
               "--rounding", "single", "--check"])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    assert "top-1 accuracy on digits (100 held-out images)" in out
    assert "float (digits_resnet_float.onnx)" in out
    assert "layer by layer" in out and "end to end" in out and "acceptance" in out and ": met" in out


def test_golden_cli_random_inputs_and_default_rounding(capsys):
    rc = main(["golden", str(MODELS_DIR / "digits_cnn_qop.onnx"), "--samples", "8", "--per-tensor"])
    out = capsys.readouterr().out
    assert rc == 0 and "random inputs: 8 samples, seed 0" in out and f"{DEFAULT_ROUNDING} rounding" in out
    assert "/0/Conv_output_0_quantized" in out


def test_golden_cli_errors(capsys, tmp_path):
    assert main(["golden", str(MODELS_DIR / "digits_cnn_float.onnx")]) == 2
    assert "float-only model" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["golden", str(bad)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    # a given --float-model is checked before the run, with labels or without (it was a traceback, or ignored)
    model = str(MODELS_DIR / "digits_cnn_qop.onnx")
    for fm, why in ((bad, "not a readable ONNX model"), (tmp_path / "none.onnx", "no such file")):
        for extra in ([], ["--dataset", "digits", "--limit", "4"]):
            assert main(["golden", model, "--float-model", str(fm), *extra]) == 2
            captured = capsys.readouterr()
            assert captured.err.count("\n") == 1 and "--float-model" in captured.err and why in captured.err
            assert "top-1" not in captured.out
    # one that takes another input than the quantized model's float input: named with what is allowed
    import onnx
    other = onnx.load(str(MODELS_DIR / "digits_cnn_float.onnx"))
    other.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 9
    onnx.save(other, tmp_path / "other.onnx")
    assert main(["golden", model, "--float-model", str(tmp_path / "other.onnx")]) == 2
    err = capsys.readouterr().err
    print(err)
    assert err.count("\n") == 1 and "--float-model" in err and "1, 9, 8)" in err and "allowed" in err, err


def test_out_of_memory_is_one_line(capsys):
    """A size the user asked for that the machine cannot hold (``--samples 100000000000``) is one line naming
    the options that size a run, exit 2, no traceback."""
    from cimforge.cli import _report

    assert _report("golden", MemoryError("Unable to allocate 140. TiB"), False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory" in err and "--samples" in err and "Traceback" not in err


def test_golden_fixed_batch_model_at_default_settings(tmp_path, capsys):
    """A model whose input fixes batch 1 (as every onnx-zoo model): the default 64 random samples run on
    onnxruntime image by image."""
    from test_cli_compile import USER_SEED, build_user_model

    print(f"user model: seed {USER_SEED}")
    model = build_user_model(tmp_path / "user_cnn.onnx", batch=1)
    rc = main(["golden", str(model), "--per-tensor"])
    out = capsys.readouterr().out
    assert rc == 0 and "random inputs: 64 samples, seed 0" in out and "acceptance" in out and "end to end" in out
    elements = 64 * 8 * 12 * 12  # the first conv's output over 64 samples: every sample was run
    assert f"/{elements} " in out


def test_golden_cli_input_file_float_and_codes(tmp_path, capsys):
    """--input: float data (real values) and the same images as int8 codes give the same agreement; labels in
    the .npz give the accuracy."""
    from cimforge.golden.datasets import load_digits_split
    from cimforge.golden.ops import quantize
    from cimforge.golden.onnx_import import load_onnx

    model = MODELS_DIR / "digits_cnn_qop.onnx"
    split = load_digits_split()
    x, y = split.x_test[:40], split.y_test[:40]
    np.savez(tmp_path / "float.npz", image=x, labels=y)
    np.save(tmp_path / "codes.npy", quantize(x, load_onnx(model).inputs[0]))
    assert main(["golden", str(model), "--input", str(tmp_path / "float.npz"), "--per-tensor"]) == 0
    f = capsys.readouterr().out
    assert "top-1 accuracy on float.npz (40 samples)" in f and "float (digits_cnn_float.onnx)" in f
    assert main(["golden", "digits_cnn_qop", "--input", str(tmp_path / "codes.npy"), "--per-tensor"]) == 0
    c = capsys.readouterr().out
    assert "top-1 accuracy" not in c
    agreement = [line for line in f.splitlines() if "identical" in line]
    assert agreement and agreement == [line for line in c.splitlines() if "identical" in line]


def test_golden_model_onnxruntime_refuses(tmp_path, capsys):
    """The importer accepts the model, onnxruntime does not (a future IR version): one line naming onnxruntime."""
    import onnx

    proto = onnx.load(str(MODELS_DIR / "digits_cnn_qop.onnx"))
    proto.ir_version = 99
    onnx.save(proto, tmp_path / "ir99.onnx")
    assert main(["golden", str(tmp_path / "ir99.onnx"), "--samples", "2"]) == 2
    err = capsys.readouterr().err.strip()
    print(err)
    assert err.startswith("cimforge golden: error: onnxruntime cannot load the model: Unsupported model IR version: 99")
    assert "\n" not in err and "Traceback" not in err


def test_golden_cli_numerics_option(capsys):
    """--numerics fabric judges what the fabric runs (the form cimforge sim simulates); onnx is the default."""
    rc = main(["golden", str(MODELS_DIR / "digits_resnet_qdq.onnx"), "--samples", "4", "--numerics", "fabric"])
    assert rc == 0 and "acceptance" in capsys.readouterr().out
    assert main(["golden", str(MODELS_DIR / "digits_resnet_qdq.onnx"), "--numerics", "exact"]) == 2
    assert "--numerics" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name,fmt,per_channel", [("resnet50", "qop", False), ("shufflenet", "qdq", True)])
def test_golden_cli_on_imagenet_models(name, fmt, per_channel, capsys):
    """A fixed-batch ImageNet-set model (batch 1, as the onnx package's) as a user runs it, with its float
    chains (ResNet-50's residual streams in QOperator form, ShuffleNet's Sum -> Relu -> AveragePool in QDQ
    form): the acceptance bound is met (--check exits 1 otherwise)."""
    from cimforge.golden import model_sets as ms

    path = ms.build(name, fmt, per_channel, 0)
    print(f"{path.name}: seed 0")
    rc = main(["golden", str(path), "--samples", "2", "--check"])
    out = capsys.readouterr().out
    print(out[-800:])
    assert rc == 0 and "random inputs: 2 samples, seed 0" in out and ": met" in out


@pytest.mark.parametrize("pin", ["resize_sizes", "reshape_shape"])
def test_golden_model_whose_nodes_pin_the_batch(pin, tmp_path, capsys):
    """A model with a free batch (``N``) whose nodes pin it to 1 (a ``Resize`` with constant ``sizes``
    ``[1, C, H, W]``, a ``Reshape`` to ``[1, -1]``, as exporters write for batch-1 models): onnxruntime runs
    it image by image (a batch run mixed the images: an internal error 'golden shape (4, 8, 9, 9) != reference
    shape (1, 8, 9, 9)'); the bound is met over every sample."""
    from test_user_models import SEED, _Net, _quantize

    print(f"weights and calibration seed {SEED}")
    n = _Net(SEED)
    x = n.op("Relu", [n.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    if pin == "resize_sizes":
        x = n.op("Resize", [x, n.c(np.zeros(0, np.float32)), "", n.c(np.array([1, 8, 9, 9], np.int64))],
                 mode="nearest")
        x = n.op("Flatten", [n.op("Relu", [n.conv(x, 8, 4, 3)])])
        shape = 4 * 7 * 7
    else:
        x = n.op("Reshape", [n.op("Relu", [n.conv(x, 8, 4, 3)]), n.c(np.array([1, -1], np.int64))])
        shape = 4 * 4 * 4
    model = _quantize(n.model((3, 6, 6), [n.gemm(x, shape, 5)]), (3, 6, 6), tmp_path / f"{pin}.onnx", "qdq", True,
                      "int8", "int8")
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    try:  # the batch is pinned: 4 images give one output, or onnxruntime refuses them (the Gemm after [1, -1])
        assert sess.run(None, {"x": np.zeros((4, 3, 6, 6), np.float32)})[0].shape[0] == 1
    except ort.capi.onnxruntime_pybind11_state.InvalidArgument:
        assert pin == "reshape_shape"
    rc = main(["golden", str(model), "--samples", "4", "--check"])
    out = capsys.readouterr().out
    print(out[-1500:])
    assert rc == 0 and "random inputs: 4 samples" in out and "layer by layer): met" in out
