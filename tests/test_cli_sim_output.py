"""Where simulator output goes (sim/tools.py): inside ``simulator_log``, what the Verilator build, cocotb and the
simulator print (child processes included) goes to the log file, not the terminal; a first (uncached) build
announces itself with an estimate of its duration, measured builds refine the estimate, and a failed build
names the log. cocotb's runner is replaced by a fake whose "build" and "run" are child processes printing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cimforge.sim.tools as tools


class FakeRunner:
    """What ``run_cocotb`` needs of a cocotb runner; ``fail_build`` makes the build fail like a compiler."""

    fail_build = False

    def _execute(self, cmds, cwd):
        for cmd in cmds:
            if subprocess.run(cmd).returncode:
                raise RuntimeError("Command failed with return code: 1")

    def build(self, build_dir, **kw):
        build_dir.mkdir(parents=True, exist_ok=True)
        # like Verilator: the model binary (Vtop) is the build's product, which the build stamp records
        code = ("import sys; print('verilator noise'); print('warning noise', file=sys.stderr); "
                "open(sys.argv[1], 'wb').write(b'model')")
        self._execute([[sys.executable, "-c", code.replace("; open", "; sys.exit(1); open") if self.fail_build
                        else code, str(build_dir / "Vtop")]], None)

    def test(self, results_xml, **kw):
        subprocess.run([sys.executable, "-c", "print('cocotb banner ' * 3)"], check=True)
        with open(results_xml, "w") as fh:
            fh.write('<testsuites><testsuite name="t" tests="1" failures="0" errors="0"/></testsuites>')


@pytest.fixture
def fake_cocotb(monkeypatch, tmp_path):
    import cocotb_tools.runner

    runner = FakeRunner()
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda sim: runner)
    monkeypatch.setattr(tools, "BUILD_ROOT", tmp_path / "sim")
    src = tmp_path / "top.v"
    src.write_text("module top; endmodule\n" * 5000)  # 0.11 MB
    return runner, src


def test_output_goes_to_the_log_and_a_first_build_announces_itself(fake_cocotb, tmp_path, capfd):
    runner, src = fake_cocotb
    log = tmp_path / "run" / "sim.log"
    said = []
    with tools.simulator_log(log, announce=said.append):
        tools.run_cocotb("verilator", [src], "top", "tb")
    out, err = capfd.readouterr()
    text = log.read_text()
    assert "verilator noise" in text and "warning noise" in text and "cocotb banner" in text
    assert "noise" not in out + err and "cocotb" not in out + err
    assert len(said) == 2 and said[0].startswith("building the verilator model of top (first build")
    assert "about " in said[0] and said[1].startswith("built the verilator model of top in")
    with tools.simulator_log(log, announce=said.append):  # cached now: silent
        tools.run_cocotb("verilator", [src], "top", "tb")
    assert len(said) == 2
    assert log.read_text().count("cocotb banner cocotb banner cocotb banner \n") == 2, "appended, not replaced"


def test_estimate_scales_with_the_last_measured_build(fake_cocotb, tmp_path):
    _, src = fake_cocotb
    guess = tools.build_estimate("verilator", [src])
    assert guess > 0
    (tmp_path / "sim").mkdir(parents=True, exist_ok=True)
    tools._record_build_time("verilator", [src], 100.0)
    big = tmp_path / "big.v"
    big.write_text(src.read_text() * 3)
    assert tools.build_estimate("verilator", [src]) == pytest.approx(100.0)
    assert tools.build_estimate("verilator", [big]) == pytest.approx(300.0)
    (tmp_path / "sim" / "build-times.json").write_text("{trunc")  # corrupt: back to the guess
    assert tools.build_estimate("verilator", [src]) == pytest.approx(guess)


def test_failed_build_names_the_log(fake_cocotb, tmp_path, capfd):
    runner, src = fake_cocotb
    runner.fail_build = True
    log = tmp_path / "sim.log"
    with tools.simulator_log(log, announce=lambda text: None):
        with pytest.raises(tools.SimulatorFailed, match="build of top failed") as info:
            tools.run_cocotb("verilator", [src], "top", "tb")
    assert info.value.log == log and str(log) in str(info.value)
    assert "verilator noise" in tools.log_tail(log)[0] or "verilator noise" in log.read_text()
    assert "noise" not in "".join(capfd.readouterr())


def test_without_a_log_output_stays_on_the_terminal(fake_cocotb, capfd):
    _, src = fake_cocotb
    tools.run_cocotb("verilator", [src], "top", "tb")
    out, _ = capfd.readouterr()
    assert "verilator noise" in out and "cocotb banner" in out and "building the verilator model" in out


def test_a_build_that_writes_no_model_is_not_taken_as_a_measurement(fake_cocotb, tmp_path, monkeypatch):
    """make finds a build directory whose stamp was lost up to date and relinks nothing: that "build" of a
    second or less must not become the estimate of the next real build (it said "about 2 s" for a
    14-minute build)."""
    runner, src = fake_cocotb
    monkeypatch.setitem(tools._MIN_MEASURED, "verilator", 0.0)  # the fake build takes milliseconds
    with tools.simulator_log(tmp_path / "sim.log", announce=lambda text: None):
        tools.run_cocotb("verilator", [src], "top", "tb")
    first = tools._read_build_times()["verilator"]
    for stamp in (tmp_path / "sim").rglob(".built"):
        stamp.unlink()  # the stamp lost, the model kept
    monkeypatch.setattr(runner, "_execute", lambda cmds, cwd: None)  # make: nothing to do
    monkeypatch.setattr(tools.time, "time", lambda real=tools.time.time: real() + 3600)  # an hour later
    with tools.simulator_log(tmp_path / "sim.log", announce=lambda text: None):
        tools.run_cocotb("verilator", [src], "top", "tb")
    assert tools._read_build_times()["verilator"] == first


def test_model_optimisation_from_the_environment(monkeypatch):
    """CIMFORGE_CXX_OPT picks the C++ optimisation of the fabric models (the test session sets -O1); anything but
    one of the allowed levels is a one-line error naming the variable and the allowed values."""
    from cimforge.errors import UserError
    monkeypatch.delenv(tools.CXX_OPT_ENV, raising=False)
    assert tools.model_cxx_opt("-O3") == "-O3"
    monkeypatch.setenv(tools.CXX_OPT_ENV, "-O1")
    assert tools.model_cxx_opt("-O3") == "-O1"
    monkeypatch.setenv(tools.CXX_OPT_ENV, "-O9")
    with pytest.raises(UserError, match=r"CIMFORGE_CXX_OPT='-O9': allowed -O0, -O1, -O2, -O3, -Os"):
        tools.model_cxx_opt("-O3")


def test_a_build_of_seconds_is_not_taken_as_a_measurement(fake_cocotb, tmp_path):
    """A Verilator "build" under five seconds (make relinking a directory a killed or concurrent build nearly
    finished) is not recorded: the estimate of the next real build stays the rough guess."""
    _, src = fake_cocotb
    guess = tools.build_estimate("verilator", [src])
    with tools.simulator_log(tmp_path / "sim.log", announce=lambda text: None):
        tools.run_cocotb("verilator", [src], "top", "tb")
    assert "verilator" not in tools._read_build_times()
    assert tools.build_estimate("verilator", [src]) == pytest.approx(guess)
