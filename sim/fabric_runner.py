"""Run compiled programs on the generated fabric RTL (Verilator or Icarus, through cocotb) and read back what
the host sees: every tensor of every image, the trace of retired instructions, the performance counters.

:func:`fabric_verilog` generates the fabric's Verilog once per configuration and generator version (cached under
``build/rtl/``); :func:`run_fabric` writes a job file for :mod:`cimforge.sim.fabric_tb`, runs it with
:func:`cimforge.sim.tools.run_cocotb` (builds cached by content) and returns a :class:`FabricRun`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import CimConfig, config_to_dict
from ..gen.extmem import EXT_BACKDOOR, STORE_NAME
from ..gen.isa import CSR, MAGIC, host_map, status_layout, trace_layout, unpack_word
from .tools import model_cxx_opt, run_cocotb

__all__ = ["fabric_verilog", "system_verilog", "run_fabric", "run_programs", "FabricRun", "RunResult", "SimTimeout",
           "FabricError", "RTL_CACHE"]

RTL_CACHE = Path(os.environ.get("CIMFORGE_BUILD_DIR", Path.cwd() / "build" / "sim")).parent / "rtl"
_GEN_DIR = Path(__file__).resolve().parent.parent / "gen"
_GOLDEN_MACRO = Path(__file__).resolve().parent.parent / "golden" / "macro.py"


def _generator_hash(cfg: CimConfig) -> str:
    h = hashlib.sha256(json.dumps(config_to_dict(cfg), sort_keys=True).encode())
    for p in sorted(_GEN_DIR.glob("*.py")) + [_GOLDEN_MACRO]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


#: Signals of the top the benches touch: the memories they load and read through the simulator (backdoor) and
#: the ports. Nothing else is made public, which keeps Verilator's model small and fast (cocotb's runner would
#: otherwise export every net: a 90 MB C++ model of the default fabric, 9-minute builds, 1 300 cycles/s).
PUBLIC = ("amem", "imem", "wmem", "pmem", "dmem", "trace", "clk", "rst", "wb__*", "done", "busy", "error")
_MEMORIES = ("amem", "imem", "wmem", "pmem", "dmem", "trace")
#: Extra Verilator options: keep the module hierarchy (the macro and its column tiles are compiled once).
VERILATOR_ARGS = ("-fno-inline",)
#: C++ optimisation of the Verilator model: -O3 runs the default fabric 3x faster than Verilator's -Os for the
#: same build time (46 000 vs 15 000 cycles/s, ~90 s).
CXX_OPT = "-O3"


def fabric_verilog(cfg: CimConfig, out_dir: Path | None = None) -> tuple[str, Path]:
    """(fabric top module name, path of the Verilog file) of ``cfg``: what ``cimforge generate`` writes,
    generated once per configuration and generator version under :data:`RTL_CACHE`."""
    from ..gen.emit import generate
    d = Path(out_dir) if out_dir else RTL_CACHE / f"{cfg.name}-{_generator_hash(cfg)}"
    path = d / f"{cfg.name}.v"
    top = f"{cfg.name}_fabric"
    if not path.exists():
        d.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=d.parent) as tmp:
            generate(cfg, tmp)
            d.mkdir(parents=True, exist_ok=True)
            for f in Path(tmp).iterdir():
                os.replace(f, d / f.name)
    return top, path


def system_verilog(cfg: CimConfig, ext_init: list[int]) -> tuple[str, Path]:
    """(top module name, Verilog path) of :class:`cimforge.gen.extmem.CimSystem`: the fabric with the external
    memory model on its AXI4 port, holding ``ext_init`` from the start (all-zero memory contents elided:
    :func:`cimforge.gen.meminit.elide_zero_init`); generated once per configuration, contents and generator."""
    from amaranth.back import verilog
    from ..gen.extmem import CimSystem
    from ..gen.library import VerilogLibrary
    from ..gen.meminit import elide_zero_init
    key = hashlib.sha256((_generator_hash(cfg) + ",".join(map(hex, ext_init))).encode()).hexdigest()[:16]
    top = f"{cfg.name}_system"
    path = RTL_CACHE / f"{top}-{key}" / f"{top}.v"
    if not path.exists():
        lib = VerilogLibrary(prefix=f"{cfg.name}_")
        with elide_zero_init():
            text = verilog.convert(CimSystem(cfg, library=lib, ext_init=ext_init), name=top, emit_src=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(lib.verilog() + text)
        os.replace(tmp, path)
    return top, path


@dataclass
class RunResult:
    """One start-to-END run of the fabric."""

    words: dict[int, int]
    trace: list[dict]                 #: retired instructions, :func:`cimforge.gen.isa.trace_layout` fields
    cycles: int
    load_cycles: int
    macros: list[list[int]]
    status: int                       #: the STATUS register (:attr:`flags` decodes it)
    pc: int
    opcode: int
    timed_out: bool
    run_wall: float
    write_wall: float
    read_wall: float

    @property
    def flags(self) -> dict[str, int]:
        """The STATUS register's bits by name (:func:`cimforge.gen.isa.status_layout`)."""
        return unpack_word(status_layout(), self.status)


@dataclass
class FabricRun:
    """All runs of one job, and the wall time spent loading."""

    runs: list[RunResult] = field(default_factory=list)
    load_wall: float = 0.0
    sim: str = ""

    @property
    def cycles(self) -> int:
        return sum(r.cycles for r in self.runs)

    @property
    def run_wall(self) -> float:
        return sum(r.run_wall for r in self.runs)


def _hex(words) -> list[str]:
    return [hex(int(w)) for w in words]


class FabricError(RuntimeError):
    """The controller stopped with an error (unknown opcode); the message names the instruction."""


class SimTimeout(FabricError):
    """The fabric did not reach ``END`` in time; the message names the instruction it was executing."""


def run_fabric(cfg: CimConfig, program, batches: list[dict[str, np.ndarray]], *, sim: str = "verilator",
               mode: str = "backdoor", timeout_cycles: int | None = None, wmem: list[int] | None = None,
               code: list[int] | None = None, extra_args: tuple = ()) -> FabricRun:
    """Run ``program`` once per input batch on the RTL and read every tensor of the batch back.

    Parameters
    ----------
    batches : list of dict
        Graph inputs ``{name: (N, *shape)}`` per run, ``N <= program.batch``.
    mode : {"backdoor", "bus"}
        How memories are loaded and read (the run itself is always started and watched through the bus).
    timeout_cycles : int, optional
        Cycles to wait for ``END`` per run (default: 4x the cost model's prediction plus 10000).
    wmem, code : list of int, optional
        Replace the program's weight memory image or code (fault injection, hang tests).

    Raises
    ------
    SimTimeout, FabricError
        A run did not finish, or stopped at an unknown opcode; the message names the instruction.
    """
    items = [(program, batch) for batch in batches]
    return run_programs(cfg, items, sim=sim, mode=mode, timeout_cycles=timeout_cycles, wmem=wmem, code=code,
                        extra_args=extra_args)


def run_programs(cfg: CimConfig, items: list, *, sim: str = "verilator", mode: str = "backdoor",
                 timeout_cycles: int | None = None, wmem: list[int] | None = None, code: list[int] | None = None,
                 extra_args: tuple = (), design: tuple[str, Path] | None = None,
                 extra_reads: tuple = ()) -> FabricRun:
    """Run several ``(program, inputs)`` items in one simulator launch (a program is loaded when it differs
    from the previous item's); see :func:`run_fabric`. ``design`` replaces the fabric by another top with the
    same host members, as (top module, Verilog path), e.g. :func:`system_verilog` (its
    memories are one level down, loaded by backdoor or over the bus); ``extra_reads`` are more ``(base, count)``
    activation ranges to read back. A program whose tensors live in the external memory
    (``Program.external``) runs on that system (:func:`system_verilog` without initial contents): its inputs
    and external weights are written into the external memory model and its tensors read back from it by
    backdoor."""
    from ..compiler.cost import program_timing
    if mode not in ("backdoor", "bus"):
        raise ValueError(f"mode must be 'backdoor' or 'bus', not {mode!r}")
    if timeout_cycles is not None and (isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int)
                                       or timeout_cycles < 1):
        raise ValueError(f"timeout_cycles = {timeout_cycles!r}: allowed an integer >= 1, or None for the default")
    if sim == "icarus" and any(getattr(p, "external", False) for p, _ in items):
        # measured: the tiny preset's system stops at the first DSYNC on Icarus, with the per-word backdoor as
        # with the files (docs/memory.md section 5); the cause is not found. Verilator runs them bit-exact
        from ..errors import UserError
        raise UserError("sim='icarus': a program whose tensors live in the external memory (the model does not "
                        "fit on chip) runs on Verilator only; allowed sim='verilator'")
    if any(getattr(p, "external", False) for p, _ in items) and design is None:
        design = system_verilog(cfg, [])  # tensors in the external memory: the system with its model
    system = design is not None
    top, vpath = design or fabric_verilog(cfg)
    hbits, regions = host_map(cfg)
    with tempfile.TemporaryDirectory(prefix="cimforge-job-") as tmp:
        res_path = Path(tmp) / "results.json"
        runs = []
        last = last_ext = None
        for program, batch in items:
            words = program.input_words(batch)
            n = next(iter(batch.values())).shape[0]
            ranges = sorted({(p.base, p.words) for (i, _), p in program.tensors.items() if i < n})
            limit = 4 * (program_timing(program)[-1] + 1) + 10000 if timeout_cycles is None else timeout_cycles
            if getattr(program, "external", False):  # tensors (and weights) in the external memory, by file
                if program is not last_ext:
                    init_file, last_ext = _hex_file(Path(tmp), program.ext_init), program
                loads = [f for f in (init_file, _hex_file(Path(tmp), words)) if f]
                run = {"writes": [], "reads": _merge(list(extra_reads)), "timeout": limit, "ext_loads": loads,
                       "ext_reads": _merge(ranges)}
            else:
                run = {"writes": _runs_of(words), "reads": _merge(ranges + list(extra_reads)), "timeout": limit}
            if program is not last:
                run["load"] = {"imem": _hex(code if code is not None else program.code),
                               "wmem": _hex(wmem if wmem is not None else program.wmem),
                               "pmem": _hex(program.pmem), "dmem": _hex(program.dmem)}
                last = program
            runs.append(run)
        job = {
            "mode": mode, "system": system, "hbits": hbits, "magic": MAGIC, "csr": CSR, "n_macros": cfg.fabric.n_macros,
            "trace_depth": cfg.controller.trace_depth,
            "regions": {r.name: {"index": r.index, "slices": r.slices, "width": r.width} for r in regions.values()},
            "runs": runs, "results": str(res_path), "ext_backdoor": EXT_BACKDOOR,
            "ext_in": str(Path(tmp) / "ext-in.hex"), "ext_out": str(Path(tmp) / "ext-out.hex"),
        }
        plusargs = [f"+{EXT_BACKDOOR['in']}={job['ext_in']}", f"+{EXT_BACKDOOR['out']}={job['ext_out']}"]
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        if sim == "verilator":
            public = PUBLIC if design is None else tuple(n for n in PUBLIC if n not in _MEMORIES) + ("dma_error",)
            sub = () if design is None else (str(_system_public(cfg, top, vpath)),)
            run_cocotb(sim, [vpath], top, "cimforge.sim.fabric_tb", env={"CIMFORGE_FABRIC_JOB": str(job_path)},
                       build_args=list(VERILATOR_ARGS + extra_args + sub), public=public,
                       cxx_opt=model_cxx_opt(CXX_OPT), plusargs=plusargs)
        else:
            run_cocotb(sim, [vpath], top, "cimforge.sim.fabric_tb", env={"CIMFORGE_FABRIC_JOB": str(job_path)},
                       plusargs=plusargs)
        raw = json.loads(res_path.read_text())
        for r in raw["runs"]:  # the external memory's dumps, read while the job's folder exists
            r["ext_words"] = {}
            for base, count, path in r.get("ext_dumps", []):
                r["ext_words"].update(_read_hex_dump(Path(path), base, count))
    out = FabricRun(load_wall=raw["load_wall"], sim=sim)
    for (program, _), r, job_run in zip(items, raw["runs"], runs):
        words: dict[int, int] = r["ext_words"]
        for base, ws in r["reads"]:
            for i, w in enumerate(ws):
                words[base + i] = int(w, 16)
        trace = [_trace_entry(int(w)) for w in r["trace"]]
        rr = RunResult(words, trace, r["CYCLES"], r["LOAD_CYCLES"], r["macros"], r["STATUS"], r["PC"], r["OPCODE"],
                       r["timed_out"], r["run_wall"], r["write_wall"], r["read_wall"])
        out.runs.append(rr)
        if rr.timed_out:
            raise SimTimeout(f"{sim}: the fabric did not reach END within {job_run['timeout']} cycles; it was "
                             f"executing {program.describe(rr.pc)} (opcode register {rr.opcode})")
        if rr.flags["error"]:
            raise FabricError(f"{sim}: the controller stopped with an error at {program.describe(rr.pc)} "
                              f"(opcode register {rr.opcode}: not an instruction)")
    return out


def _system_public(cfg: CimConfig, top: str, vpath: Path) -> Path:
    """A Verilator configuration making the system's memories public for backdoor access (the fabric's, one
    level down, module ``<top>.fabric``), and the external memory model's file backdoor registers
    (:data:`cimforge.gen.extmem.EXT_BACKDOOR`, in the library cell ``<cfg.name>_ext_store``)."""
    lines = ["`verilator_config"] + [f'public_flat_rw -module "{top}.fabric" -var "{m}"' for m in _MEMORIES]
    store = f"{cfg.name}_{STORE_NAME}"
    lines += [f'public_flat_rw -module "{store}" -var "{EXT_BACKDOOR[r]}"' for r in ("load", "dump", "lo", "hi")]
    path = vpath.with_suffix(".memories.vlt")
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def _hex_file(folder: Path, words: dict[int, int]) -> str | None:
    """Write ``words`` (address -> word) as a ``$readmemh`` file into ``folder``, an ``@address`` line before
    each contiguous run; return its path (None for no words: nothing to load)."""
    if not words:
        return None
    lines, nxt = [], None
    for a in sorted(words):
        if a != nxt:
            lines.append(f"@{a:x}")
        lines.append(f"{words[a]:x}")
        nxt = a + 1
    fd, path = tempfile.mkstemp(suffix=".hex", dir=folder)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _read_hex_dump(path: Path, base: int, count: int) -> dict[int, int]:
    """Words ``base ..`` of a ``$writememh`` dump (address comments skipped).

    Raises
    ------
    FabricError
        The dump holds fewer words than asked, or an undefined word (``x``: Icarus's memory before any write).
    """
    words = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith(("//", "@"))]
    if len(words) != count:
        raise FabricError(f"external memory dump of words {base:#x}..{base + count - 1:#x}: {len(words)} words "
                          f"read from {path}, expected {count}")
    try:
        return {base + i: int(w, 16) for i, w in enumerate(words)}
    except ValueError:
        bad = next(i for i, w in enumerate(words) if not all(c in "0123456789abcdefABCDEF" for c in w))
        raise FabricError(f"external memory word {base + bad:#x} is undefined ({words[bad]!r}) after the run: "
                          f"the program reads back a word nothing wrote") from None


def _trace_entry(word: int) -> dict[str, int]:
    """A trace word's ``cycle``, ``pc`` and ``op``."""
    entry = unpack_word(trace_layout(), word)
    del entry["_pad"]
    return entry


def _runs_of(words: dict[int, int]) -> list:
    """Contiguous runs ``[base, [hex words]]`` of an address -> word map."""
    out = []
    for a in sorted(words):
        if out and out[-1][0] + len(out[-1][1]) == a:
            out[-1][1].append(hex(words[a]))
        else:
            out.append([a, [hex(words[a])]])
    return out


def _merge(ranges) -> list[list[int]]:
    out: list[list[int]] = []
    for base, count in ranges:
        if out and base <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], base + count - out[-1][0])
        else:
            out.append([base, count])
    return out
