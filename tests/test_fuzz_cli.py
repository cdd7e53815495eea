"""Property-based tests (hypothesis) of every command's arguments (issue 15 item 5): random argv for each
subcommand, run in-process through :func:`cimforge.cli.main` with a timeout guard, in a scratch working
directory. A run must end with exit 0, 1 (a check that failed) or 2 (a user error: one line, no traceback);
exit 70 (an internal error), a traceback, any escaping exception or a run past the guard fails.

Long work is never started: the expensive step of each command (elaboration, the cosimulation, compilation,
the golden run, the partitioner's search, Verilator lint, yosys) is replaced by a stub that raises a
:class:`~cimforge.errors.UserError` ``"<step> reached"`` once validation has passed, so the property covers
every option check up to it. Derandomized (a fixed seed, printed), 1,000 examples per target; slow (CI runs it).
"""

from __future__ import annotations

import contextlib
import io
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimforge.cli import COMMANDS, main
from cimforge.errors import UserError
from cimforge.golden.datasets import MODELS_DIR

SEED = 15
SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
GUARD_S = 20

#: (module, attribute) of each command's expensive step.
EXPENSIVE = [
    ("cimforge.gen.emit", "design_verilog"), ("cimforge.sim.cli", "_run_model"),
    ("cimforge.sim.macro_demo", "main"), ("cimforge.compiler.compile", "compile_graph"),
    ("cimforge.golden.runner", "run_graph"), ("cimforge.compiler.partition.training", "plan_training"),
    ("cimforge.compiler.partition.inference", "compare_inference"), ("cimforge.sim.lint", "lint"),
    ("cimforge.synth.flow", "report_config"), ("cimforge.synth.cli", "_calibrate"),
    ("cimforge.synth.sweep", "run_sweep"),
    ("cimforge.synth.formal_cli", "prove_macro"), ("cimforge.synth.formal_cli", "prove_requant"),
    ("cimforge.synth.formal_cli", "run_sat"),
    ("cimforge.explore.search", "explore"), ("cimforge.explore.runner", "dask_client"),
]

OPTIONS = {
    "generate": ["--preset", "--config", "--out"],
    "lint": ["--preset", "--file", "--top"],
    "compile": ["--preset", "--config", "--out", "--batch", "--per-image-passes", "--format"],
    "sim": ["--macro", "--model", "--dataset", "--input", "--random", "--images", "--start", "--seed", "--sim",
            "--batch", "--per-image-passes", "--report", "--verbose", "--ops", "--preset", "--config"],
    "golden": ["--dataset", "--input", "--samples", "--float-model", "--limit", "--seed", "--rounding",
               "--numerics", "--per-tensor", "--check"],
    "partition": ["--mode", "-n", "-b", "--strategy", "--search", "--throughputs", "--bytes-per-element",
                  "--preset", "--config", "--scale-to-fabric", "--input-shape", "--report", "--no-report"],
    "synth": ["--preset", "--config", "--out", "--timeout", "--scope", "--no-flat", "--no-cache",
              "--check-baselines", "--sweep", "--calibrate"],
    "formal": ["--slow", "--only", "--rows", "--pages", "--cols", "--max-wb", "--max-ab", "--timeout"],
    "explore": ["--space", "--model", "--out", "--scheduler", "--serial", "--workers", "--search", "--trials",
                "--rtl-fraction", "--rtl-images", "--cache", "--no-progress"],
}
NUMBERS = ["0", "1", "2", "3", "4", "-1", "-5", "16", "449", "450", "1000000", str(1 << 40), "1e3", "nan", "inf",
           "-0", "0x10", "", " 3", "x", "2.5"]
WORDS = ["tiny", "default", "isscc22", "nosuch", "digits", "digits_cnn_qop", "digits_resnet_qdq", "alexnet",
         "training", "inference", "greedy", "joint", "dp", "mp", "accpar", "search", "verilator", "icarus", "macro",
         "all", "small", "hex", "bin", "single", "double", "8x1,8x2", "4x0", "image=1x1x8x8", "image=1x2x8x8",
         "x=1", "tiny_fabric", "--", "-", "--debug", "--help", "désign", "requant"]


def _files(tmp):
    """Paths a user might pass: the committed models, missing, empty, a directory, not UTF-8, configs."""
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "junk.onnx").write_bytes(b"\x08\x07junk")
    (tmp / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    (tmp / "float_wb.toml").write_text("[macro]\nmax_wb = 8.0\n")
    (tmp / "ab1.toml").write_text("[macro]\nmax_ab = 1\n")
    (tmp / "ok.toml").write_text('name = "mine"\n[macro]\nrows = 8\ncols = 16\npages = 2\n')
    (tmp / "huge.toml").write_text("[macro]\nrows = 1024\ncols = 1024\npages = 64\n[fabric]\nn_macros = 64\n")
    (tmp / "bad.toml").write_text("[macro\n")
    (tmp / "in.npy").write_bytes(b"\x93NUMPY junk")
    (tmp / "d.v").write_text("module m; endmodule\n")
    (tmp / "file").write_text("x")
    return [str(MODELS_DIR / "digits_cnn_qop.onnx"), str(MODELS_DIR / "digits_resnet_qdq.onnx"),
            "missing.onnx", "empty.onnx", "junk.onnx", "latin1.toml", "float_wb.toml", "ab1.toml", "ok.toml",
            "huge.toml", "bad.toml", "in.npy", "d.v", "file", "file/sub", "/proc/x", "/dev/null", ".", "out",
            "n" * 300]


def _argv(files):
    @st.composite
    def draw(draw_):
        cmd = draw_(st.sampled_from(sorted(OPTIONS)))
        value = st.sampled_from(NUMBERS + WORDS + files)
        tokens = draw_(st.lists(st.one_of(st.sampled_from(OPTIONS[cmd]), value, value), max_size=7))
        positional = [draw_(st.sampled_from(WORDS[4:8] + files[:6]))] if cmd in ("compile", "golden", "partition") \
            and draw_(st.booleans()) else []
        return [cmd, *positional, *tokens]
    return draw()


class _Guard(BaseException):
    """The run took longer than GUARD_S (a hang, or long work no stub stopped)."""


def test_fuzzed_commands_are_the_registered_ones():
    """Every registered command is fuzzed, except ``graph`` (GraphR, issue 13: its owner's stubs are not known here
    yet; listed so that a new command is not forgotten silently)."""
    assert set(COMMANDS) - set(OPTIONS) <= {"graph"} and set(OPTIONS) <= set(COMMANDS)


@pytest.mark.slow
def test_every_command_with_random_arguments(tmp_path):
    files = _files(tmp_path)
    seen = {"reached": 0, "codes": {}}

    def stub(name):
        def reached(*args, **kwargs):
            seen["reached"] += 1
            raise UserError(f"{name} reached (stubbed by the fuzz test)")
        return reached

    def on_alarm(signum, frame):
        raise _Guard()

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        import importlib
        for module, attr in EXPENSIVE:
            mp.setattr(importlib.import_module(module), attr, stub(attr))
        old = signal.signal(signal.SIGALRM, on_alarm)

        @SETTINGS
        @given(argv=_argv(files))
        def check(argv):
            out, err = io.StringIO(), io.StringIO()
            signal.alarm(GUARD_S)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    rc = main(argv)
            except _Guard:
                pytest.fail(f"{argv}: still running after {GUARD_S} s")
            except SystemExit as e:  # only --help may exit, and main() turns that into a code
                pytest.fail(f"{argv}: SystemExit({e.code}) escaped main()")
            finally:
                signal.alarm(0)
            text = err.getvalue()
            seen["codes"][rc] = seen["codes"].get(rc, 0) + 1
            assert rc in (0, 1, 2), f"{argv} -> exit {rc}:\n{text[-2000:]}"
            assert "internal error" not in text, f"{argv}:\n{text[-2000:]}"
            if "--debug" not in argv:  # --debug is the way to ask for the traceback of a user error
                assert "Traceback" not in text, f"{argv}:\n{text[-2000:]}"
            if rc == 2 and "--debug" not in argv and "--help" not in argv:
                lines = [l for l in text.splitlines() if l.startswith("cimforge")]
                assert lines and ": error: " in lines[-1], f"{argv}: {text!r}"

        try:
            print(f"hypothesis: derandomized, seed {SEED}, {SETTINGS.max_examples} examples")
            check()
        finally:
            signal.signal(signal.SIGALRM, old)
    print(f"exit codes {seen['codes']}, expensive steps reached {seen['reached']} times")
    assert seen["reached"] > 0 and 2 in seen["codes"]
