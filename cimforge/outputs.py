"""Output files and caches that are complete or absent, never half written (issue 15, "atomic outputs").

* :func:`check_output_dir`: an output directory checked *before* any expensive work, without writing into it:
  not a file, every name short enough, a parent the process can write into.
* :func:`replace_dir`: a directory's files written into a temporary sibling and swapped in with one atomic
  exchange (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames with SIGINT/SIGTERM held), so the
  directory is either as it was or complete, whatever happens between files.
* :func:`write_atomic`: one file through a temporary sibling and ``os.replace``.
* :func:`read_json_cache`: a cache entry read back, or ``None`` (and the entry removed) when it is missing or
  corrupt, so that a truncated entry is rebuilt instead of breaking every later run.

Temporary names start with ``.cimforge-`` in the destination's parent; a process killed with SIGKILL may leave
one behind, which nothing reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = ["check_output_dir", "replace_dir", "write_atomic", "read_json_cache", "cache_dir", "TMP_PREFIX"]

#: Prefix of every temporary file and directory these helpers create (short: names stay under NAME_MAX).
TMP_PREFIX = ".cimforge-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _limit(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def check_output_dir(option: str, path: str | os.PathLike) -> Path:
    """``path`` as an output directory that the process can create or replace, checked without writing into it.

    Parameters
    ----------
    option : str
        The option that named it (``--out``), for the message.
    path : str or path-like
        The directory.

    Raises
    ------
    UserError
        ``path`` is empty, names a file, has a component longer than the file system allows, or lies where the
        process cannot create files (a read-only file system, no permission, not a directory).
    """
    text = os.fspath(path)
    if not text or "\0" in text:
        raise UserError(f"{option} {text!r}: allowed a directory path (not empty, no NUL byte)")
    p = Path(text).expanduser().absolute()
    name_max = _limit(Path("/"), "PC_NAME_MAX", 255)  # before any stat: a too-long name makes it raise
    long = next((part for part in p.parts if len(os.fsencode(part)) > name_max), None)
    if long is not None:
        raise UserError(f"{option}: the name {long[:24]!r}... is {len(os.fsencode(long))} bytes long "
                        f"(allowed at most {name_max} per path component)")
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {text!r}: exists and is not a directory (allowed a directory)")
    ancestor = p.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{option} {text!r}: {str(ancestor)!r} is not a directory (allowed a directory path)")
    path_max = _limit(ancestor, "PC_PATH_MAX", 4096)
    if len(os.fsencode(str(p))) + 64 > path_max:  # room for the files inside and the temporary sibling
        raise UserError(f"{option}: the path is {len(os.fsencode(str(p)))} bytes long (allowed at most "
                        f"{path_max - 64})")
    try:  # the swap writes into the parent: prove it can, without touching the directory itself
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=TMP_PREFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{option} {text!r}: cannot write into {str(ancestor)!r} ({e.strerror}); allowed a "
                        "writable location") from None
    return p


def _write_file(path: Path, data: str | bytes, mode: int) -> None:
    with open(path, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, mode)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``: readers see the old file or the
    whole new one. The file gets the usual ``0666 & ~umask`` mode (``mkstemp`` alone would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)
    os.close(fd)
    try:
        _write_file(Path(tmp), data, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):  # already renamed: nothing to clean up
            os.unlink(tmp)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False when unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(a))


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM are delivered after the block (only the main thread can change the mask usefully)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def replace_dir(out: str | os.PathLike, files: dict[str, str | bytes]) -> None:
    """Make ``out`` hold ``files`` (name -> content) in one atomic step; other entries already in ``out`` are
    kept (copied into the new directory).

    Everything is written into a temporary sibling first; the swap is one ``renameat2(RENAME_EXCHANGE)`` (or two
    renames with SIGINT and SIGTERM held), then the old directory is removed. Any exception, Ctrl-C or SIGTERM
    (see :mod:`cimforge.cli`) before the swap leaves ``out`` as it was and removes the temporary directory.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=TMP_PREFIX))
    try:
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700
        if out.is_dir():
            for entry in out.iterdir():
                if entry.name in files:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, tmp / entry.name, symlinks=True)
                else:
                    shutil.copy2(entry, tmp / entry.name, follow_symlinks=False)
        for name, data in files.items():
            _write_file(tmp / name, data, 0o666 & ~mask)
        with _signals_held():
            if not out.exists():
                os.rename(tmp, out)
            elif not _exchange(tmp, out):
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=TMP_PREFIX))
                os.rename(out, old / "old")
                os.rename(tmp, out)
                tmp = old
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after the exchange: the old directory


def read_json_cache(path: str | os.PathLike) -> Any | None:
    """The JSON document at ``path``, or ``None`` when it is missing or corrupt (truncated, not JSON, not UTF-8);
    a corrupt entry is removed so that the caller rebuilds and rewrites it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def cache_dir(env: str, name: str) -> Path:
    """Where a cache called ``name`` lives: ``$env`` if set, else ``build/<name>/cache`` in the project tree
    (an editable install), else ``~/.cache/cimforge/<name>``."""
    if os.environ.get(env):
        return Path(os.environ[env])
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists():
        return root / "build" / name / "cache"
    return Path.home() / ".cache" / "cimforge" / name
