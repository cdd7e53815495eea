"""One design from configuration to report: generate the RTL, synthesise it, write the JSON and Markdown reports."""

from __future__ import annotations

from pathlib import Path

from ..config import CimConfig
from .report import build_report, write_report
from .synthesize import SynthResult, synthesize
from .yosys import DEFAULT_TIMEOUT

__all__ = ["generate_rtl", "synthesize_config", "report_config"]


#: What to synthesise: the macro (the PPA subject, calibrated to the ISSCC'22 macro) or the whole accelerator
#: (macros, fabric, controller and memories as flip-flops: much slower).
SCOPES = ("macro", "all")


def generate_rtl(cfg: CimConfig, rtl_dir: str | Path) -> tuple[list[Path], dict[str, str]]:
    """The Verilog files of ``cfg`` (all modules of the design), written by the project's generator, and the
    top modules ``params.json`` names (``{"macro": ..., "fabric": ...}``)."""
    import json

    from ..gen.emit import generate  # Amaranth is only needed here

    paths = generate(cfg, rtl_dir)
    params = json.loads(next(p for p in paths if p.name == "params.json").read_text())
    return [p for p in paths if p.suffix == ".v"], params["modules"]


def synthesize_config(cfg: CimConfig, out_dir: str | Path, *, flat_depth: bool = True,
                      timeout: float = DEFAULT_TIMEOUT, use_cache: bool = True,
                      cache_dir: str | Path | None = None, scope: str = "macro") -> SynthResult:
    """Generate ``cfg`` into ``out_dir/rtl/<name>`` and synthesise it (cached by the Verilog's hash): the macro's
    hierarchy (``scope="macro"``) or everything (``"all"``)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    sources, tops = generate_rtl(cfg, Path(out_dir) / "rtl" / cfg.name)
    top = tops["macro"] if scope == "macro" else tops.get("fabric")
    return synthesize(sources, top=top, flat_depth=flat_depth, timeout=timeout, use_cache=use_cache,
                      cache_dir=cache_dir)


def report_config(cfg: CimConfig, out_dir: str | Path, **kwargs) -> tuple[dict, list[Path]]:
    """Synthesise ``cfg`` and write ``out_dir/<name>.json`` and ``.md`` (with the digits CNN run); return
    (report, written paths)."""
    result = synthesize_config(cfg, out_dir, **kwargs)
    rep = build_report(cfg, result, network=True)
    return rep, write_report(rep, out_dir)
