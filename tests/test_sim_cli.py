"""``cimforge sim`` as a user runs it: any quantized ONNX model, input data from a file, random or a data set,
the per-layer report on the terminal and as report.json / report.md, the simulator's output in a log file.

Default cases run the whole command with the RTL replaced by the instruction-set model (the compiler's ISS, with
the cost model's retire stamps as the trace), so the data handling and the reports are checked in seconds. The
slow cases run the real RTL in Verilator (a few images each, one shared build of the default fabric): the
committed digits CNN and a model built and quantized inside the test, bit-exact, and the terminal output of a
run fits on one screen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cimforge.cli import main
from cimforge.golden.datasets import load_digits_split
from test_cli_compile import USER_SEED, USER_SHAPE, build_user_model

ROOT = Path(__file__).resolve().parent.parent
#: Lines an RTL run may print without --verbose (one screen).
SCREEN = 40


@pytest.fixture(scope="module")
def user_model(tmp_path_factory) -> Path:
    print(f"user model: seed {USER_SEED}")
    return build_user_model(tmp_path_factory.mktemp("user") / "user_cnn.onnx")


@pytest.fixture
def iss_fabric(monkeypatch):
    """Replace the RTL by the ISS: what ``run_fabric`` returns, from :func:`cimforge.compiler.iss.run_program`
    and :func:`cimforge.compiler.cost.program_timing`; records the batches it was given."""
    import cimforge.sim.cosim as cosim
    import cimforge.sim.fabric_runner as fabric_runner
    from cimforge.compiler.cost import program_timing
    from cimforge.compiler.iss import run_program
    from cimforge.sim.tools import captured

    calls = []

    def fake_run_fabric(cfg, prog, batches, **kw):
        runs = []
        with captured():  # what a simulator would print goes to the log
            print(f"fake simulator: {len(batches)} batch(es)")
        for batch in batches:
            calls.append(batch)
            _, model = run_program(prog, batch)
            stamps = program_timing(prog)
            runs.append(SimpleNamespace(words=list(model.amem), cycles=stamps[-1] + 1, run_wall=0.001,
                                        trace=[{"pc": pc, "cycle": c, "op": 0} for pc, c in enumerate(stamps)]))
        return SimpleNamespace(runs=runs)

    monkeypatch.setattr(cosim, "run_fabric", fake_run_fabric)
    monkeypatch.setattr(fabric_runner, "fabric_verilog", lambda cfg: (f"{cfg.name}_fabric", Path("fake.v")))
    return calls


def _report(d: Path) -> dict:
    return json.loads((d / "report.json").read_text())


def test_digits_model_default_data(iss_fabric, tmp_path, capsys):
    assert main(["sim", "--images", "3", "--start", "5", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rep = _report(tmp_path)
    split = load_digits_split()
    assert rep["model"] == "digits_cnn_qop" and rep["images"] == 3 and rep["bit_exact"]
    assert rep["accuracy"]["rtl"] == rep["accuracy"]["golden"] and rep["top1_agreement"] == 1.0
    assert "digits test images 5..7" in out and "all tensors bit-exact" in out
    from cimforge.golden.ops import quantize
    from cimforge.sim.cosim import load_digits_model
    q_in = load_digits_model("digits_cnn_qop").inputs[0]
    assert np.array_equal(np.concatenate([b[q_in.name] for b in iss_fabric]), quantize(split.x_test[5:8], q_in))
    md = (tmp_path / "report.md").read_text()
    assert "| `/0/Conv_quant` | conv2d |" in md and "accuracy RTL" in md
    assert [r["layer"] for r in rep["layers"]][:1] == ["/0/Conv_quant"]
    assert rep["log"] == str(tmp_path / "sim.log") and "fake simulator" in (tmp_path / "sim.log").read_text()
    assert "fake simulator" not in out, "the simulator's output goes to the log, not the terminal"
    assert str(tmp_path / "sim.log") in out and str(tmp_path / "report.md") in out


def test_user_model_input_float_and_codes_agree(iss_fabric, user_model, tmp_path, capsys):
    """Float data is quantized by the model's input scale; the same images as int8 codes give the same run."""
    from cimforge.golden.ops import quantize
    from cimforge.golden.onnx_import import load_onnx

    rng = np.random.default_rng(11)
    print("input seed 11")
    x = rng.uniform(0, 1, (3, *USER_SHAPE)).astype(np.float32)
    labels = np.array([1, 2, 3])
    np.savez(tmp_path / "float.npz", x=x, labels=labels)
    codes = quantize(x, load_onnx(user_model).inputs[0])
    np.save(tmp_path / "codes.npy", codes)
    assert main(["sim", "--model", str(user_model), "--input", str(tmp_path / "float.npz"),
                 "--report", str(tmp_path / "f")]) == 0
    assert main(["sim", "--model", str(user_model), "--input", str(tmp_path / "codes.npy"),
                 "--report", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    f, c = _report(tmp_path / "f"), _report(tmp_path / "c")
    assert f["bit_exact"] and c["bit_exact"] and f["images"] == c["images"] == 3
    assert f["accuracy"] is not None and c["accuracy"] is None and "no labels" in out
    assert [r["measured"] for r in f["layers"]] == [r["measured"] for r in c["layers"]]
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(iss_fabric[:1], iss_fabric[1:]) for k in a)


def test_user_model_random_default(iss_fabric, user_model, tmp_path, capsys):
    assert main(["sim", "--model", str(user_model), "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "8 images (random inputs (seed 0, the default without data) 0..7)" in out
    assert main(["sim", "--model", str(user_model), "--random", "5", "--seed", "3", "--images", "2", "--start", "3",
                 "--report", str(tmp_path)]) == 0
    assert _report(tmp_path)["images"] == 2 and "random inputs (seed 3) 3..4" in capsys.readouterr().out


def test_user_model_qoperator_free_batch(iss_fabric, tmp_path, capsys):
    """The same network in onnxruntime's QOperator form with a free batch dimension: compiled and run too."""
    model = build_user_model(tmp_path / "user_qop.onnx", batch=None, fmt="qop")
    assert main(["compile", str(model), "--out", str(tmp_path / "c")]) == 0
    assert main(["sim", "--model", str(model), "--random", "3", "--seed", "1", "--report", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    rep = _report(tmp_path / "r")
    assert rep["bit_exact"] and rep["images"] == 3 and [r["kind"] for r in rep["layers"]].count("conv2d") == 2


def test_several_models_report_each(iss_fabric, tmp_path, capsys):
    assert main(["sim", "--model", "all", "--images", "2", "--report", str(tmp_path)]) == 0
    capsys.readouterr()
    for name in ("digits_cnn_qop", "digits_resnet_qdq"):
        assert _report(tmp_path / name)["bit_exact"]


def test_slow_generation_says_so(iss_fabric, monkeypatch, tmp_path, capsys):
    import time

    import cimforge.sim.cli as sim_cli
    import cimforge.sim.fabric_runner as fabric_runner

    def slow(cfg):
        time.sleep(0.5)
        return f"{cfg.name}_fabric", Path("slow.v")
    monkeypatch.setattr(sim_cli, "GENERATION_NOTICE", 0.1)
    monkeypatch.setattr(fabric_runner, "fabric_verilog", slow)
    assert main(["sim", "--images", "1", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "generating the Verilog of 'default' (4 macros of 64x64; first time" in out and "generated slow.v in" in out
    monkeypatch.setattr(sim_cli, "GENERATION_NOTICE", 5.0)
    assert main(["sim", "--images", "1", "--report", str(tmp_path)]) == 0
    assert "generating" not in capsys.readouterr().out


def test_failed_run_shows_the_log_tail(monkeypatch, tmp_path, capsys):
    import cimforge.sim.cosim as cosim
    import cimforge.sim.fabric_runner as fabric_runner
    from cimforge.sim.tools import captured

    def failing(cfg, prog, batches, **kw):
        with captured():
            print("\n".join(f"simulator line {i}" for i in range(30)))
        raise AssertionError("1 of 1 cocotb tests failed in cimforge.sim.fabric_tb")
    monkeypatch.setattr(cosim, "run_fabric", failing)
    monkeypatch.setattr(fabric_runner, "fabric_verilog", lambda cfg: ("t", Path("fake.v")))
    assert main(["sim", "--images", "1", "--report", str(tmp_path)]) == 70
    err = capsys.readouterr().err
    assert f"last 20 lines of {tmp_path / 'sim.log'}" in err
    assert "simulator line 29" in err and "simulator line 9\n" not in err
    assert "a bug in cimforge" in err


def test_simulate_api_takes_a_path_and_arrays(iss_fabric, user_model):
    """The Python API: a model path and input arrays, no module function replaced by the caller."""
    from cimforge.presets import get_preset
    from cimforge.sim.cosim import simulate

    x = np.random.default_rng(2).uniform(0, 1, (2, *USER_SHAPE)).astype(np.float32)
    res = simulate(user_model, get_preset("default"), x, labels=[0, 1])
    assert res.exact and res.n_images == 2 and res.accuracy is not None and len(res.rows) == 2
    with pytest.raises(ValueError, match="labels"):
        simulate(user_model, get_preset("default"), x, labels=[0])


# -- real RTL (Verilator) --------------------------------------------------------------------------------------

def _cli(args: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "cimforge", *args], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ), timeout=3600)
    print(r.stdout)
    print(r.stderr, file=sys.stderr)
    return r


def _screen_lines(text: str) -> int:
    return len(text.splitlines())


@pytest.mark.slow
@pytest.mark.cocotb
def test_rtl_digits_run_fits_one_screen(tmp_path):
    r = _cli(["sim", "--images", "2", "--report", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert _screen_lines(r.stdout) + _screen_lines(r.stderr) <= SCREEN
    log = tmp_path / "sim.log"
    assert str(log) in r.stdout and log.stat().st_size > 0
    assert "cocotb" in log.read_text().lower() and "cocotb" not in r.stdout.lower()
    rep = _report(tmp_path)
    assert rep["bit_exact"] and rep["accuracy"]["rtl"] == rep["accuracy"]["golden"]
    assert abs(rep["cost_model_worst_error"]) <= 0.05


@pytest.mark.slow
@pytest.mark.cocotb
def test_rtl_user_model_from_codes(user_model, tmp_path):
    """A model built and quantized in the test, fed int8 codes with labels from an .npz, bit-exact on the RTL."""
    from cimforge.golden.onnx_import import load_onnx

    q_in = load_onnx(user_model).inputs[0]
    rng = np.random.default_rng(7)
    print("input seed 7")
    codes = rng.integers(q_in.qmin, q_in.qmax + 1, (3, *USER_SHAPE)).astype(np.int8)
    np.savez(tmp_path / "in.npz", x=codes, labels=np.array([0, 4, 9]))
    r = _cli(["sim", "--model", str(user_model), "--input", str(tmp_path / "in.npz"), "--report", str(tmp_path)])
    assert r.returncode in (0, 1), r.stderr  # 1 only if the RTL and golden accuracies differ
    rep = _report(tmp_path)
    assert rep["bit_exact"], rep["divergence"]
    assert rep["top1_agreement"] == 1.0 and r.returncode == 0
    assert _screen_lines(r.stdout) + _screen_lines(r.stderr) <= SCREEN
    assert (tmp_path / "report.md").read_text().count("| conv2d |") == 2


def test_user_model_with_softmax_runs_its_tail_on_the_host(iss_fabric, tmp_path, capsys):
    """A classifier ending in Softmax: the fabric runs everything before it, the host applies the golden softmax
    to the fabric's output, and every tensor (the softmax's included) equals the golden model."""
    from test_cli_compile import build_user_model

    model = build_user_model(tmp_path / "user_softmax.onnx", softmax=True)
    assert main(["sim", "--model", str(model), "--random", "3", "--seed", "4", "--report", str(tmp_path / "r")]) == 0
    rep = _report(tmp_path / "r")
    assert rep["bit_exact"] and rep["images"] == 3 and rep["top1_agreement"] == 1.0
