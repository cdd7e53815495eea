"""The ``cimforge`` command line. Each subcommand lives beside the code it drives and is imported lazily,
so that ``cimforge golden`` does not pay for Amaranth and ``cimforge generate`` does not pay for onnxruntime.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.

Errors (:mod:`cimforge.errors`): a user error (bad option, file, configuration or model) prints one line,
``cimforge CMD: error: ...``, and exits with 2; ``--debug`` (before or after the command) adds the traceback.
Any other exception is a bug: its traceback is printed with a line saying so, exit code 70.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import traceback

from .errors import INTERNAL_EXIT, USER_EXIT, is_user_error

__all__ = ["COMMANDS", "main", "add_config_options", "config_from_options"]

#: name -> (module, one-line help)
COMMANDS = {
    "generate": ("cimforge.gen.cli", "write Verilog and params.json for a preset or a config file"),
    "lint": ("cimforge.sim.lint", "verilator --lint-only -Wall on generated Verilog"),
    "compile": ("cimforge.compiler.cli", "compile a quantized ONNX model: program, memory images, listing, "
                                         "predicted cycles"),
    "sim": ("cimforge.sim.cli", "run a quantized ONNX model on the generated fabric RTL, bit-exact against the "
                                "golden model (macro demo with --macro)"),
    "golden": ("cimforge.golden.cli", "run an int8 ONNX model on the golden model; accuracy and onnxruntime agreement"),
    "partition": ("cimforge.compiler.partition.cli", "HyPar/AccPar partitioning of a model across accelerators"),
    "synth": ("cimforge.synth.cli", "yosys synthesis and PPA reports"),
    "formal": ("cimforge.synth.formal_cli", "formal equivalence proofs of the macro and the requantisation unit (yosys sat)"),
    "graph": ("cimforge.graph.cli", "BFS, SSSP, CC or PageRank compiled for the fabric, checked against networkx"),
    "explore": ("cimforge.explore.cli", "design-space exploration over configurations and models on Dask: Pareto "
                                        "fronts of area, energy and latency"),
}


def add_config_options(p: argparse.ArgumentParser) -> None:
    """``--preset NAME`` or ``--config FILE`` (exclusive; default: the ``default`` preset)."""
    from .presets import PRESETS
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", metavar="NAME", default=None, help=f"one of: {', '.join(PRESETS)} (default: default)")
    src.add_argument("--config", metavar="FILE", help="a TOML configuration file")


def config_from_options(args: argparse.Namespace):
    """The :class:`~cimforge.config.CimConfig` that :func:`add_config_options`' options name.

    Raises
    ------
    UserError
        Unknown preset, or a configuration file that is not UTF-8 text (the loader's ConfigError names a bad
        field).
    """
    from pathlib import Path

    from .config import load_config
    from .errors import UserError
    from .presets import PRESETS, get_preset

    if getattr(args, "config", None):
        path = Path(args.config)
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"--config {str(path)!r}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                            f"{e.start}); allowed a UTF-8 TOML file") from None
        except OSError:
            pass  # the loader names the file and the reason
        return load_config(path)
    name = getattr(args, "preset", None) or "default"
    if name not in PRESETS:
        raise UserError(f"--preset {name!r}: allowed one of {', '.join(PRESETS)}")
    return get_preset(name)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of the convention (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(USER_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _report(command: str, exc: BaseException, debug: bool) -> int:
    prog = f"cimforge {command}" if command else "cimforge"
    if is_user_error(exc):
        if debug:
            traceback.print_exception(exc)
        text = " ".join(str(exc).split("\n")) or type(exc).__name__
        print(f"{prog}: error: {text}", file=sys.stderr)
        return USER_EXIT
    if isinstance(exc, MemoryError):  # a size the user asked for (a billion samples), not a bug: one line
        print(f"{prog}: error: out of memory (MemoryError{': ' + str(exc) if str(exc) else ''}): allowed fewer "
              f"samples or images (--samples, --random, --input, --images, --batch) or a smaller design",
              file=sys.stderr)
        return USER_EXIT
    traceback.print_exception(exc)
    print(f"{prog}: internal error (a bug in cimforge, please report it with the traceback above): "
          f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return INTERNAL_EXIT


def main(argv: list[str] | None = None) -> int:
    """Run ``cimforge`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _Parser(prog="cimforge")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")
    # after the command too; SUPPRESS keeps the subparser from resetting a --debug given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    command = next((a for a in argv if not a.startswith("-")), None)  # the first word: only --debug precedes it
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, parents=[common])
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (one line printed) or --help: a code, as from any other error
        return e.code if isinstance(e.code, int) else USER_EXIT
    with _sigterm_raises():
        try:
            return int(importlib.import_module(args._module).run(args) or 0)
        except _Terminated:
            print(f"cimforge {args.command}: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print(f"cimforge {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - the one place that turns exceptions into exit codes
            return _report(args.command, e, args.debug)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that clean-up (``finally``, temporary directories) runs."""


@contextlib.contextmanager
def _sigterm_raises():
    """While a command runs, SIGTERM raises :class:`_Terminated` instead of killing the process outright, so an
    output directory being replaced (:func:`cimforge.outputs.replace_dir`) is left as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
