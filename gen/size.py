"""A stated bound on the size of a design a command generates (issue 15, "resources").

Every configuration field has a range (:mod:`cimforge.config`), but the ranges multiply: 64 macros of
1024 x 1024 bits with 64 pages and 65536-word memories are each allowed and together take far longer and far
more memory to elaborate than anyone waits for. :func:`generation_estimate` predicts the CPU seconds of one
generation (Amaranth elaboration and Verilog conversion) from the sizes that drive it, fitted to measurements on
the project's 2-core machine (docs/reliability.md has the table); :func:`check_generation_size` refuses, before
any elaboration, a design whose estimate exceeds :data:`GENERATION_LIMIT_S`, naming the figure and the fields
that drive it.
"""

from __future__ import annotations

from ..config import CimConfig
from ..errors import UserError

__all__ = ["GENERATION_LIMIT_S", "generation_estimate", "design_terms", "check_generation_size"]

#: The bound: a generation estimated to take longer than this (CPU seconds on one core of the reference
#: machine) is refused. The shipped presets take 10-30 s.
GENERATION_LIMIT_S = 600.0

#: Fitted cost per unit of each term of :func:`design_terms` (CPU seconds), and the fixed part.
_FIXED_S = 8.0
_COST_S = {
    "macro_cells": 2.0e-4,   # per bit cell of the macro (rows x cols x pages), elaborated once
    "macro_logic": 2.5e-3,   # per row x column of the macro's adder trees and serialisers
    "macros": 0.9,           # per macro instance (its gather unit, ports and fabric wiring)
    "memory_words": 1.2e-4,  # per word of the fabric's memories
}


def design_terms(cfg: CimConfig) -> dict[str, int]:
    """The sizes that drive generation time: bit cells and logic of the macro (converted once and instantiated
    ``n_macros`` times), the macro instances, and the words of the fabric's memories."""
    m, f, c = cfg.macro, cfg.fabric, cfg.controller
    return {
        "macro_cells": m.rows * m.cols * m.pages,
        "macro_logic": m.rows * m.cols,
        "macros": f.n_macros,
        "memory_words": f.act_depth + f.weight_depth + f.param_depth + f.desc_depth + c.program_depth
                        + c.trace_depth,
    }


def generation_estimate(cfg: CimConfig) -> float:
    """Predicted CPU seconds of generating ``cfg`` (elaboration and Verilog conversion) on one core."""
    return _FIXED_S + sum(_COST_S[k] * v for k, v in design_terms(cfg).items())


def check_generation_size(cfg: CimConfig, command: str = "generate") -> None:
    """Raise :class:`~cimforge.errors.UserError` before elaboration when ``cfg`` is estimated to take longer than
    :data:`GENERATION_LIMIT_S` to generate; the message names the estimate, the bound and the largest terms."""
    est = generation_estimate(cfg)
    if est <= GENERATION_LIMIT_S:
        return
    terms = design_terms(cfg)
    share = sorted(((_COST_S[k] * v, k, v) for k, v in terms.items()), reverse=True)[:2]
    what = ", ".join(f"{k} = {v:,} ({s:.0f} s)" for s, k, v in share)
    raise UserError(f"design '{cfg.name}' is too large for `cimforge {command}`: estimated {est:.0f} s of "
                    f"elaboration (largest terms: {what}); allowed at most {GENERATION_LIMIT_S:.0f} s: reduce "
                    "macro.rows x macro.cols x macro.pages, fabric.n_macros or the memory depths")
