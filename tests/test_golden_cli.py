"""``cimforge golden``: accuracy and agreement report, error exit codes."""

from cimforge.cli import main
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
    assert rc == 0 and "random inputs: 8 samples, seed 0" in out and "double rounding" in out
    assert "/0/Conv_output_0_quantized" in out


def test_golden_cli_errors(capsys, tmp_path):
    assert main(["golden", str(MODELS_DIR / "digits_cnn_float.onnx")]) == 2
    assert "float-only model" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["golden", str(bad)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
