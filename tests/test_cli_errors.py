"""The error convention of every command (cimforge/errors.py): a user error is one line on stderr,
``cimforge CMD: error: ...`` naming the option, field or node and what is allowed, exit code 2, no traceback
(``--debug`` shows it); an internal error says it is a bug, shows the traceback, exit code 70.

Run as a user runs the tool: ``main([...])`` with stderr captured, and a real subprocess where the environment
matters (PATH without Icarus) or the whole process is the point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cimforge.cli import main
from cimforge.errors import INTERNAL_EXIT, USER_EXIT, UserError, is_user_error
from cimforge.golden.datasets import MODELS_DIR

ROOT = Path(__file__).resolve().parent.parent


def _user_error(capsys, argv: list[str], *named: str) -> str:
    """Run ``argv``; assert the convention and that the line names each of ``named``; return the line."""
    rc = main(argv)
    err = capsys.readouterr().err
    print(f"{' '.join(argv)} -> {rc}: {err!r}")
    assert rc == USER_EXIT, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cimforge {argv[0]}: error: "), lines[0]
    for name in named:
        assert name in lines[0], f"{name!r} missing from {lines[0]!r}"
    return lines[0]


def test_sim_unknown_model_file(capsys):
    _user_error(capsys, ["sim", "--model", "no_such_model.onnx"], "--model", "no_such_model.onnx", "no such file")
    _user_error(capsys, ["sim", "--model", "nosuch"], "--model", "digits_cnn_qop")


def test_generate_unknown_preset(capsys, tmp_path):
    _user_error(capsys, ["generate", "--preset", "no_such_preset", "--out", str(tmp_path / "x" / "out")],
                "preset", "no_such_preset", "tiny, default, isscc22")


def test_golden_not_a_model(capsys, tmp_path):
    _user_error(capsys, ["golden", "/dev/null"], "MODEL", "/dev/null", "not a regular file")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _user_error(capsys, ["golden", str(empty)], "empty")
    _user_error(capsys, ["golden", str(MODELS_DIR / "digits_cnn_qop.onnx"), "--samples", "0"], "--samples", ">= 1")


@pytest.mark.parametrize("argv,named", [
    (["sim", "--images", "0"], ["--images", ">= 1"]),
    (["sim", "--images", "x"], ["--images", "'x'"]),
    (["sim", "--start", "-5"], ["--start", ">= 0"]),
    (["sim", "--batch", "0"], ["--batch", ">= 1"]),
    (["sim", "--start", "450"], ["--start 450", "450 images", "0..449"]),
    (["sim", "--start", "400", "--images", "100"], ["--start 400 --images 100", "<= 450"]),
    (["sim", "--random", "4", "--start", "4"], ["--start 4", "0..3"]),
    (["sim", "--preset", "nosuch"], ["--preset", "nosuch", "tiny"]),
    (["sim", "--seed", "3"], ["--seed 3", "--random", "digits data set"]),
    (["sim", "--macro", "--config", "x.toml"], ["--config", "--preset"]),
    (["sim", "--sim", "modelsim"], ["--sim", "verilator", "icarus"]),
    (["sim", "--macro", "--ops", "0"], ["--ops", ">= 1"]),
    # an option the run would ignore (the network run started its build, or the macro demo ran instead)
    (["sim", "--ops", "5"], ["--ops 5", "--macro only"]),
    (["sim", "--macro", "--model", "x.onnx"], ["--model with --macro", "--preset, --seed, --ops"]),
    (["sim", "--macro", "--random", "2"], ["--random with --macro"]),
    (["sim", "--macro", "--start", "0"], ["--start with --macro"]),
    (["sim", "--macro", "--sim", "verilator"], ["--sim with --macro"]),
    (["compile", "digits_cnn_qop", "--out", ""], ["--out", "empty path"]),
    (["lint", "--preset", "nosuch"], ["--preset", "nosuch", "tiny, default, isscc22"]),
    (["lint", "--file", "x.v"], ["--file", "--top"]),
])
def test_sim_options(capsys, argv, named):
    _user_error(capsys, argv, *named)


def test_sim_compile_error_is_one_line(capsys):
    """A model the fabric cannot hold: the compiler's CompileError, before any RTL is generated."""
    _user_error(capsys, ["sim", "--preset", "tiny", "--images", "1"], "layer '/0/Conv_quant'", "8 rows")


def test_sim_bad_input_files(capsys, tmp_path):
    model = str(MODELS_DIR / "digits_cnn_qop.onnx")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 1, 9, 9), np.float32))
    _user_error(capsys, ["sim", "--model", model, "--input", str(wrong)], "--input", "(3, 1, 9, 9)", "(N, 1, 8, 8)")
    codes = tmp_path / "codes.npy"
    np.save(codes, np.full((2, 1, 8, 8), 200, np.int32))
    _user_error(capsys, ["sim", "--model", model, "--input", str(codes)], "--input", "int8 codes", "[-128, 127]")
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((1, 1, 8, 8)), b=np.zeros((1, 1, 8, 8)))
    _user_error(capsys, ["sim", "--model", model, "--input", str(two)], "--input", "['a', 'b']", "labels")
    _user_error(capsys, ["sim", "--model", model, "--input", str(tmp_path / "none.npy")], "--input", "no such file")
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=np.zeros((2, 1, 8, 8), np.float32), labels=np.zeros(3, np.int64))
    _user_error(capsys, ["golden", model, "--input", str(labels)], "--input", "labels", "(2,)")
    # a label the 10-class output can never give, and an .npz that holds labels only
    np.savez(labels, x=np.zeros((2, 1, 8, 8), np.float32), labels=np.array([3, 10]))
    _user_error(capsys, ["golden", model, "--input", str(labels)], "--input", "label 10 of sample 1", "0..9")
    np.savez(labels, x=np.zeros((2, 1, 8, 8), np.float32), y=np.array([-1, 0]))
    _user_error(capsys, ["sim", "--model", model, "--input", str(labels)], "--input", "label -1 of sample 0")
    np.savez(labels, y=np.array([0, 1]))
    _user_error(capsys, ["golden", model, "--input", str(labels)], "--input", "labels ('y') and no data")


def test_config_not_utf8(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[macro]\n")
    _user_error(capsys, ["sim", "--config", str(bad)], "--config", "UTF-8")
    _user_error(capsys, ["compile", "digits_cnn_qop", "--config", str(bad), "--out", str(tmp_path / "o")],
                "--config", "UTF-8")


def test_debug_shows_the_traceback(capsys):
    for argv in (["--debug", "sim", "--model", "nosuch"], ["sim", "--model", "nosuch", "--debug"]):
        assert main(argv) == USER_EXIT
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("cimforge sim: error: --model")


def test_internal_error_says_bug(capsys, monkeypatch):
    import cimforge.compiler.cli as compile_cli

    def broken(args):
        raise KeyError("oops")
    monkeypatch.setattr(compile_cli, "run", broken)
    assert main(["compile", "digits_cnn_qop", "--out", "unused"]) == INTERNAL_EXIT
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "a bug in cimforge" in err.strip().splitlines()[-1]


def test_user_error_types_are_mapped_without_importing():
    from cimforge.compiler.partition import PartitionError
    from cimforge.compiler.tiling import CompileError
    from cimforge.config import ConfigError
    from cimforge.golden.ir import IRError
    from cimforge.golden.onnx_import import OnnxImportError

    assert is_user_error(ConfigError("macro.rows", 3, "a power of two"))
    assert is_user_error(IRError("layer 'x': invalid kernel"))
    assert is_user_error(CompileError("layer 'x' does not fit"))
    assert is_user_error(OnnxImportError("unsupported operator")) and is_user_error(PartitionError("cycle"))
    assert is_user_error(UserError("--x: allowed y"))
    assert not is_user_error(KeyError("x")) and not is_user_error(ValueError("x"))
    with pytest.raises(ValueError, match="one line"):
        UserError("two\nlines")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cimforge", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def test_sim_icarus_missing_from_path(tmp_path):
    """``--sim icarus`` with a PATH that holds no iverilog: one line, before any work (a real process)."""
    env = {**os.environ, "PATH": str(tmp_path)}
    r = _cli(["sim", "--sim", "icarus", "--images", "1", "--report", str(tmp_path / "r")], env)
    print(r.stdout, r.stderr)
    assert r.returncode == USER_EXIT and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("cimforge sim: error: --sim icarus") and "iverilog" in line and "verilator" in line
    assert r.stdout == ""


def test_argparse_errors_are_one_line():
    r = _cli(["sim", "--images"], dict(os.environ))
    assert r.returncode == USER_EXIT
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("cimforge sim: error: argument --images") and "--help" in line
