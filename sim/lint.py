"""``verilator --lint-only -Wall`` on generated Verilog, with a short list of documented waivers.

Amaranth emits Verilog through Yosys' ``write_verilog``; a few warning classes are properties of that emitter,
not of our design, and are waived here by rule, each with its reason. Everything else fails, and so does an
unused *input port* of the top module (an input that nothing reads is a real interface bug even though
UNUSEDSIGNAL is otherwise waived). :func:`lint` returns the counts per rule so a test can pin them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError, existing_file
from .tools import setup_verilator

__all__ = ["WAIVERS", "LintReport", "lint", "add_arguments", "run"]

#: rule -> why it is waived for Amaranth-generated Verilog
WAIVERS = {
    "DECLFILENAME": "one file holds every module of a design (tiles first, then the top), by design",
    "PROCASSINIT": "Amaranth gives every register its reset value in the declaration (power-on state)",
    "WIDTHEXPAND": "Amaranth's operators zero/sign-extend operands implicitly; widths are fixed by Amaranth's "
                   "arithmetic rules and the results are checked bit-exact in simulation",
    "WIDTHTRUNC": "as WIDTHEXPAND: assignment truncation is Amaranth's defined semantics",
    "CASEINCOMPLETE": "Yosys emits a default assignment before each case statement instead of a default arm",
    "UNUSEDSIGNAL": "Amaranth keeps a named wire for every Signal and every field of a data layout (debug "
                    "aliases) and Yosys keeps wide intermediates of which only low bits are used; unused *top-"
                    "level input ports* are still reported",
}

_WARN = re.compile(r"^%Warning-([A-Z0-9_]+): ([^:]+):(\d+):(\d+): (.*)$")


@dataclass
class LintReport:
    """Result of one lint run."""

    path: Path
    top: str
    counts: Counter = field(default_factory=Counter)   #: waived warnings per rule
    errors: list[str] = field(default_factory=list)    #: warnings that are not waived

    @property
    def clean(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        waived = ", ".join(f"{r}={n}" for r, n in sorted(self.counts.items())) or "none"
        return f"{self.path.name} ({self.top}): {len(self.errors)} unwaived, waived: {waived}"


def _top_inputs(text: str, top: str) -> set[str]:
    """Names of the input ports of module ``top`` (Yosys declares them as ``input ... name;``)."""
    start = text.find(f"module {top}(")
    if start < 0:
        raise ValueError(f"module {top} not found")
    end = text.find("endmodule", start)
    return set(re.findall(r"^\s*input\s+(?:wire\s+)?(?:\[[^\]]+\]\s*)?\\?([\w$.]+)\s*;", text[start:end], re.M))


def lint(path: str | Path, top: str, timeout_s: float = 600) -> LintReport:
    """Lint ``path`` with ``top`` as the top module.

    Raises
    ------
    RuntimeError
        Verilator could not parse the file (an error, not a warning), or timed out.
    """
    path = Path(path)
    exe = setup_verilator()
    try:
        proc = subprocess.run([exe, "--lint-only", "-Wall", "--top-module", top, str(path)],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"verilator --lint-only timed out after {timeout_s:.0f} s on {path}") from None
    report = LintReport(path, top)
    inputs = _top_inputs(path.read_text(), top)
    for line in proc.stderr.splitlines():
        if line.startswith("%Error") and "due to" not in line:
            raise RuntimeError(f"verilator could not lint {path}: {line}")
        m = _WARN.match(line)
        if not m:
            continue
        rule, msg = m.group(1), m.group(5)
        unused_input = rule == "UNUSEDSIGNAL" and re.search(r"Signal is not used: '([^']+)'", msg)
        if unused_input and unused_input.group(1) in inputs \
                and _is_top_decl(path, int(m.group(3)), top):
            report.errors.append(f"unused top-level input '{unused_input.group(1)}': {line}")
        elif rule in WAIVERS:
            report.counts[rule] += 1
        else:
            report.errors.append(line)
    return report


def _is_top_decl(path: Path, lineno: int, top: str) -> bool:
    """Whether ``lineno`` lies inside module ``top`` (Verilator reports declarations by line)."""
    current = None
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if line.startswith("module "):
                current = line.split()[1].split("(")[0]
            if i == lineno:
                return current == top
    return False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", action="append", metavar="NAME", help="lint a shipped preset's rtl/ (repeatable)")
    p.add_argument("--file", metavar="V", help="a Verilog file")
    p.add_argument("--top", metavar="MODULE", help="top module of --file")


def run(args: argparse.Namespace) -> int:
    from ..presets import PRESETS
    targets = []
    if args.file:
        if not args.top:
            raise UserError("--file needs --top MODULE")
        targets.append((existing_file("--file", args.file, (".v", ".sv")), args.top))
    for name in args.preset or ([] if args.file else list(PRESETS)):
        if name not in PRESETS:
            raise UserError(f"--preset {name!r}: allowed {', '.join(PRESETS)}")
        params = Path("rtl") / name / "params.json"
        if not params.exists():
            raise UserError(f"--preset {name}: {params} missing: run `make generate` first")
        import json
        tops = json.loads(params.read_text())["modules"]
        for top in tops.values():
            targets.append((Path("rtl") / name / f"{name}.v", top))
    bad = 0
    for path, top in targets:
        rep = lint(path, top)
        print(rep.summary())
        for e in rep.errors:
            print("  " + e)
        bad += not rep.clean
    return 1 if bad else 0
