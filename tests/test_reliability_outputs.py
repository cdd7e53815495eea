"""Issue 15, "atomic outputs" and "output locations checked before elaboration": ``generate`` leaves its output
directory as it was or complete; caches (synthesis results, Verilator builds, small JSON files) are written
atomically and rebuilt when found corrupt; bad ``--out`` locations are one-line user errors found before any
elaboration; a design too large to generate in the stated bound is refused by name.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import cimforge.outputs as outputs
from cimforge.cli import main
from cimforge.config import CimConfig, config_from_dict
from cimforge.errors import USER_EXIT, UserError, is_user_error
from cimforge.outputs import check_output_dir, read_json_cache, replace_dir, write_atomic


def _tmp_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(outputs.TMP_PREFIX)]


def test_replace_dir_complete_and_keeps_other_files(tmp_path):
    out = tmp_path / "rtl"
    replace_dir(out, {"d.v": "module a;", "params.json": "{}"})
    (out / "notes.txt").write_text("mine")
    replace_dir(out, {"d.v": "module b;", "params.json": "{\"v\": 2}"})
    assert (out / "d.v").read_text() == "module b;" and json.loads((out / "params.json").read_text()) == {"v": 2}
    assert (out / "notes.txt").read_text() == "mine"
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "d.v").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert _tmp_leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_replace_dir_failure_between_files_leaves_the_old_directory(tmp_path, monkeypatch, exc):
    """The old failure: a new .v beside a stale params.json (and FileNotFoundError from the clean-up on Ctrl-C)."""
    out = tmp_path / "rtl"
    replace_dir(out, {"d.v": "old v", "params.json": "old params"})
    real = outputs._write_file
    calls = []

    def second_fails(path, data, mode):
        calls.append(path.name)
        if len(calls) == 2:
            raise exc
        real(path, data, mode)

    monkeypatch.setattr(outputs, "_write_file", second_fails)
    with pytest.raises(type(exc)):
        replace_dir(out, {"d.v": "new v", "params.json": "new params"})
    assert (out / "d.v").read_text() == "old v" and (out / "params.json").read_text() == "old params"
    assert _tmp_leftovers(tmp_path) == []


def test_replace_dir_without_exchange_support(tmp_path, monkeypatch):
    """The two-rename fallback (file systems without RENAME_EXCHANGE) gives the same result."""
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    out = tmp_path / "rtl"
    replace_dir(out, {"a": "1"})
    replace_dir(out, {"a": "2"})
    assert (out / "a").read_text() == "2" and _tmp_leftovers(tmp_path) == []


@pytest.mark.parametrize("make, named", [
    (lambda t: (t / "f").write_text("x") and str(t / "f"), "not a directory"),
    (lambda t: (t / "f").write_text("x") and str(t / "f" / "sub"), "is not a directory"),
    (lambda t: "/proc/cimforge-out", "cannot write into"),
    (lambda t: str(t / ("n" * 300)), "300 bytes long"),
    (lambda t: "", "allowed a directory path"),
])
def test_bad_output_locations(tmp_path, make, named):
    with pytest.raises(UserError, match=named):
        check_output_dir("--out", make(tmp_path))


def test_generate_checks_out_before_elaboration(tmp_path, monkeypatch, capsys):
    """``generate --out`` naming a file, a read-only place or a too-long name: one line, no elaboration."""
    import cimforge.gen.emit as emit

    def no_elaboration(cfg):
        raise AssertionError("elaborated before checking --out")

    monkeypatch.setattr(emit, "design_verilog", no_elaboration)
    (tmp_path / "file").write_text("x")
    for out, named in [(tmp_path / "file", "not a directory"), ("/proc/x", "cannot write into"),
                       (tmp_path / ("a" * 300), "bytes long")]:
        assert main(["generate", "--preset", "tiny", "--out", str(out)]) == USER_EXIT
        err = capsys.readouterr().err
        assert err.startswith("cimforge generate: error: --out") and named in err and "Traceback" not in err


def test_generate_output_is_all_or_nothing(tmp_path, monkeypatch):
    """A failure after elaboration (writing params.json) leaves the previous generation intact."""
    import cimforge.gen.emit as emit

    monkeypatch.setattr(emit, "design_verilog", lambda cfg: ({"macro": "m", "fabric": "f"}, "module f;\n"))
    monkeypatch.setattr("cimforge.gen.fabric.fabric_params", lambda cfg: {"stub": True})
    out = tmp_path / "rtl"
    cfg = CimConfig(name="t")
    paths = emit.generate(cfg, out)
    assert sorted(p.name for p in paths) == ["params.json", "t.v"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(emit, "params", lambda cfg, tops: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        emit.generate(cfg, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sigterm_during_a_command_cleans_up(tmp_path, monkeypatch, capsys):
    """SIGTERM raises inside the command (like Ctrl-C), so replace_dir's clean-up runs; exit 143."""
    import cimforge.gen.emit as emit

    def killed(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(emit, "design_verilog", killed)
    assert main(["generate", "--preset", "tiny", "--out", str(tmp_path / "o")]) == 128 + signal.SIGTERM
    assert "terminated" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and _tmp_leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_full_disk_is_a_user_error():
    assert is_user_error(OSError(28, "No space left on device"))
    assert is_user_error(OSError(30, "Read-only file system"))
    assert not is_user_error(OSError(9, "Bad file descriptor"))


def test_write_atomic_and_corrupt_json_cache(tmp_path):
    f = tmp_path / "c" / "result.json"
    write_atomic(f, json.dumps({"a": 1}))
    assert read_json_cache(f) == {"a": 1}
    f.write_text('{"a": 1')  # truncated
    assert read_json_cache(f) is None and not f.exists(), "a corrupt entry is removed so that it is rebuilt"
    f.write_bytes(b"\xff\xfe")
    assert read_json_cache(f) is None
    assert read_json_cache(tmp_path / "none.json") is None


def test_synthesis_cache_rebuilt_when_result_json_is_truncated(tmp_path, monkeypatch):
    """The old failure: a truncated result.json broke every later run with JSONDecodeError, never repaired."""
    import cimforge.synth.synthesize as syn

    runs = []
    fake = syn.SynthResult(top="t", modules={}, flat_depth=None, yosys="test")
    monkeypatch.setattr(syn, "run_steps", lambda steps, workdir, timeout, name: runs.append(workdir))
    monkeypatch.setattr(syn, "_parse", lambda workdir, top, flat_depth: fake)
    monkeypatch.setattr(syn, "_tool_identity", lambda: "yosys test")
    src = tmp_path / "d.v"
    src.write_text("module t; endmodule\n")
    first = syn.synthesize([src], top="t", cache_dir=tmp_path / "cache")
    (result,) = list((tmp_path / "cache").glob("*/result.json"))
    assert syn.synthesize([src], top="t", cache_dir=tmp_path / "cache") == first and len(runs) == 1
    result.write_text(result.read_text()[:10])
    again = syn.synthesize([src], top="t", cache_dir=tmp_path / "cache")
    assert len(runs) == 2 and again.top == "t" and json.loads(result.read_text())["top"] == "t"
    result.write_text('{"top": "t"}')  # valid JSON, not a result
    syn.synthesize([src], top="t", cache_dir=tmp_path / "cache")
    assert len(runs) == 3


def test_verilator_build_stamp(tmp_path):
    """A build counts only with its stamp and the model it records; a truncated model or stamp means rebuild."""
    from cimforge.sim.tools import _build_current, _stamp_build

    stamp = tmp_path / ".built"
    assert not _build_current(stamp, "verilator")
    (tmp_path / "Vtop").write_bytes(b"\x7fELF" + b"0" * 100)
    _stamp_build(stamp, "verilator")
    assert _build_current(stamp, "verilator")
    (tmp_path / "Vtop").write_bytes(b"\x7fELF")  # truncated by a killed link
    assert not _build_current(stamp, "verilator") and not stamp.exists()
    stamp.write_text('{"product": "Vt')
    assert not _build_current(stamp, "verilator")
    stamp.write_text("")  # an older cimforge's empty stamp, model present
    assert _build_current(stamp, "verilator")


def test_design_size_bound(capsys, tmp_path):
    """Config limits admit designs taking far longer than anyone waits: refused by every generating command,
    before elaboration, with the estimate and the bound; the shipped presets are well inside it."""
    from cimforge.gen.size import GENERATION_LIMIT_S, check_generation_size, generation_estimate
    from cimforge.presets import PRESETS, get_preset

    for name in PRESETS:
        assert generation_estimate(get_preset(name)) < GENERATION_LIMIT_S / 5
    huge = {"macro": {"rows": 1024, "cols": 1024, "pages": 64}, "fabric": {"n_macros": 64}}
    with pytest.raises(UserError, match="too large"):
        check_generation_size(config_from_dict(huge))
    from cimforge.gen.size import MEMORY_LIMIT_MB, memory_estimate
    deep = config_from_dict({"macro": {"rows": 256, "cols": 256}, "fabric": {"act_depth": 65536}})
    assert generation_estimate(deep) < GENERATION_LIMIT_S < 10 * generation_estimate(deep)
    assert memory_estimate(deep) < MEMORY_LIMIT_MB  # deep memories are cheap: their zero contents are elided
    check_generation_size(deep)
    wide = config_from_dict({"macro": {"rows": 1024, "cols": 1024}, "fabric": {"n_macros": 1}})
    assert memory_estimate(wide) > MEMORY_LIMIT_MB  # a megabit macro: gigabytes of elaboration
    with pytest.raises(UserError, match="MB of elaboration"):
        check_generation_size(wide)
    path = tmp_path / "huge.toml"
    import tomli_w
    path.write_text(tomli_w.dumps(huge))
    for argv in (["generate", "--config", str(path), "--out", str(tmp_path / "o")],
                 ["sim", "--config", str(path)], ["synth", "--config", str(path), "--out", str(tmp_path / "s")]):
        assert main(argv) == USER_EXIT
        err = capsys.readouterr().err
        assert err.startswith(f"cimforge {argv[0]}: error: design 'default' is too large"), err
        assert f"at most {GENERATION_LIMIT_S:.0f} s" in err and "MB" in err
    assert not (tmp_path / "o").exists()


def test_long_generation_shows_progress(tmp_path, monkeypatch, capsys):
    """A generation that runs past PROGRESS_AFTER says what it elaborates, its estimate, then how long so far."""
    import time

    import cimforge.gen.cli as gen_cli
    import cimforge.gen.emit as emit

    def slow(cfg):
        time.sleep(0.6)
        return {"macro": "m", "fabric": "f"}, "module f;\n"

    monkeypatch.setattr(emit, "design_verilog", slow)
    monkeypatch.setattr("cimforge.gen.fabric.fabric_params", lambda cfg: {})
    monkeypatch.setattr(gen_cli, "PROGRESS_AFTER", 0.05)
    real = gen_cli._progress
    monkeypatch.setattr(gen_cli, "_progress", lambda cfg, t0, done: real(cfg, t0, done, every=0.2))
    assert main(["generate", "--preset", "tiny", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "elaborating 'tiny' (2 macros of 8x16x2; estimated" in err and "still elaborating" in err, err
