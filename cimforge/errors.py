"""The one home of the command line's error convention: what counts as a *user* error, and the argument types
that check options at the boundary.

A user error (a wrong option, a missing file, a model the fabric cannot run) ends a ``cimforge`` command with
one line on stderr, ``cimforge CMD: error: ...``, naming the option, field or node and what is allowed, and exit
code 2 (:data:`USER_EXIT`); ``--debug`` adds the traceback. Anything else is a bug in cimforge: the command
prints the traceback and says so, exit code :data:`INTERNAL_EXIT` (see :mod:`cimforge.cli`).

The user errors are :class:`UserError` (raised by the commands themselves) and the validation errors of the
library modules, listed in :data:`USER_ERROR_TYPES` by module and class name: those modules keep their own
error classes (``ConfigError``, ``IRError``, ``CompileError``, ...) and need not know about this convention.
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
from pathlib import Path

__all__ = ["UserError", "USER_ERROR_TYPES", "USER_EXIT", "INTERNAL_EXIT", "is_user_error", "int_at_least",
           "positive_float", "existing_file", "output_dir"]

#: Exit code of a user error (argparse's own for bad options).
USER_EXIT = 2
#: Exit code of an internal error (a bug): sysexits' EX_SOFTWARE.
INTERNAL_EXIT = 70

#: Library errors that are the user's (bad configuration, model, option), as ``(module, class name)``. A module
#: that was never imported cannot have raised its error, so nothing is imported to test against them.
USER_ERROR_TYPES: tuple[tuple[str, str], ...] = (
    ("cimforge.config", "ConfigError"),
    ("cimforge.golden.ir", "IRError"),
    ("cimforge.golden.onnx_import", "OnnxImportError"),
    ("cimforge.golden.requant", "NumericsError"),
    ("cimforge.compiler.tiling", "CompileError"),
    ("cimforge.compiler.partition", "PartitionError"),  # exported by the package wherever it is defined
)


class UserError(Exception):
    """A mistake in what the user asked for; the message names the option, field or node and what is allowed.

    Parameters
    ----------
    message : str
        One line, e.g. ``"--images 0: allowed an integer >= 1"``.
    """

    def __init__(self, message: str):
        if "\n" in message:
            raise ValueError(f"a user error is one line, got {message!r}")
        super().__init__(message)


#: errno values of an OSError that are the environment's, not a bug: no space, a read-only file system, no
#: permission, too long a name (the message names the file).
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG})


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc`` is a :class:`UserError`, one of :data:`USER_ERROR_TYPES`, or an OSError of
    :data:`USER_ERRNOS` (a full disk while writing outputs is not a bug)."""
    if isinstance(exc, UserError):
        return True
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        return True
    for module, name in USER_ERROR_TYPES:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def path_arg(text: str) -> Path:
    """An argparse ``type``: a file or directory path, not empty (``Path("")`` is the current directory: an
    empty ``--out ""`` wrote there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: allowed a file or directory name")
    return Path(text)


path_arg.__name__ = "path"


def int_at_least(lo: int):
    """An argparse ``type``: an integer ``>= lo`` (so 0 is never a silent "default")."""
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer: allowed an integer >= {lo}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value}: allowed an integer >= {lo}")
        return value
    parse.__name__ = f"integer >= {lo}"
    return parse


def positive_float(hi: float):
    """An argparse ``type``: a finite number in ``(0, hi]`` (``nan``, ``inf``, 0 and negatives refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: allowed a number in (0, {hi:g}]") from None
        if not math.isfinite(value) or not 0 < value <= hi:
            raise argparse.ArgumentTypeError(f"{text}: allowed a finite number in (0, {hi:g}]")
        return value
    parse.__name__ = f"number in (0, {hi:g}]"
    return parse


def existing_file(option: str, path, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a readable, non-empty regular file with one of
    ``suffixes`` (any when empty), else a :class:`UserError` naming ``option``."""
    p = Path(path)
    allowed = f"a {' or '.join(suffixes)} file" if suffixes else "a file"
    if not p.exists():
        raise UserError(f"{option} {str(p)!r}: no such file (allowed {allowed})")
    if not p.is_file():
        raise UserError(f"{option} {str(p)!r}: not a regular file (allowed {allowed})")
    if suffixes and p.suffix.lower() not in suffixes:
        raise UserError(f"{option} {str(p)!r}: allowed {allowed}")
    if p.stat().st_size == 0:
        raise UserError(f"{option} {str(p)!r}: the file is empty (allowed {allowed})")
    return p


def output_dir(option: str, path) -> Path:
    """``path`` as an output directory that exists or can be made (checked before any expensive work),
    else a :class:`UserError` naming ``option``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {str(p)!r}: exists and is not a directory (allowed a directory)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {str(p)!r}: cannot create the directory ({e.strerror})") from None
    probe = p / ".cimforge-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{option} {str(p)!r}: cannot write there ({e.strerror})") from None
    return p
