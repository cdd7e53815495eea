"""The ``cimforge`` command line. Each subcommand lives beside the code it drives and is imported lazily,
so that ``cimforge golden`` does not pay for Amaranth and ``cimforge generate`` does not pay for onnxruntime.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError

#: name -> (module, one-line help)
COMMANDS = {
    "generate": ("cimforge.gen.cli", "write Verilog and params.json for a preset or a config file"),
    "lint": ("cimforge.sim.lint", "verilator --lint-only -Wall on generated Verilog"),
    "sim": ("cimforge.sim.cli", "cosimulate the demo (macro demo with --macro)"),
    "golden": ("cimforge.golden.cli", "run an int8 ONNX model on the golden model; accuracy and onnxruntime agreement"),
    "partition": ("cimforge.compiler.partition.cli", "HyPar/AccPar partitioning of a model across accelerators"),
    "synth": ("cimforge.synth.cli", "yosys synthesis and PPA reports"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="cimforge")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        p.set_defaults(_module=module)
        if argv and argv[0] == name:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except ConfigError as e:
        print(f"cimforge {args.command}: error: {e}", file=sys.stderr)
        return 2
