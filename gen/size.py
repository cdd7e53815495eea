"""A stated bound on the size of a design a command generates (issue 15, "resources").

Every configuration field has a range (:mod:`cimforge.config`), but the ranges multiply: 64 macros of
1024 x 1024 bits with 64 pages and 65536-word memories are each allowed and together take far longer and far
more memory to elaborate than anyone waits for. :func:`generation_estimate` predicts the CPU seconds of one
generation (Amaranth elaboration and Verilog conversion) from the sizes that drive it, fitted to measurements on
the project's 2-core machine (docs/reliability.md has the table), and :func:`memory_estimate` its peak resident
memory; :func:`check_generation_size` refuses, before any elaboration, a design whose estimates exceed
:data:`GENERATION_LIMIT_S` or :data:`MEMORY_LIMIT_MB`, naming the figures and the fields that drive them.
"""

from __future__ import annotations

from ..config import CimConfig
from ..errors import UserError

__all__ = ["GENERATION_LIMIT_S", "MEMORY_LIMIT_MB", "generation_estimate", "memory_estimate", "design_terms",
           "check_generation_size"]

#: The time bound: a generation estimated to take longer than this (CPU seconds on one core of the reference
#: machine) is refused. The shipped presets take 3-8 s.
GENERATION_LIMIT_S = 120.0

#: Fitted cost per unit of each term of :func:`design_terms` (CPU seconds) and the fixed part, from generations
#: of the default preset varied one size at a time (docs/reliability.md): 64 -> 256 rows and columns +21 s,
#: 4 -> 16 macros +10 s (the ``imagenet`` preset: 18 s), 4 K -> 64 K activation and weight words -1 s (noise:
#: all-zero contents are elided, gen/meminit.py, so a memory costs its declaration, not its bits), 8 -> 64
#: pages +0 s.
_FIXED_S = 3.1
_COST_S = {
    "macro_logic": 3.2e-4,   # per row x column of the macro (adder trees, serialisers; converted once)
    "macros": 0.8,           # per macro instance (its gather unit, ports and fabric wiring)
    "memory_bits": 5e-8,     # per bit of the fabric's memories (contents elided: little left)
}


def design_terms(cfg: CimConfig) -> dict[str, int]:
    """The sizes that drive generation time: the macro's rows x columns (converted once and instantiated
    ``n_macros`` times), the macro instances, and the bits of the fabric's memories (activations, weights,
    parameters, descriptors, program, trace). The macro's pages cost nothing measurable (8 -> 64 pages: +0 s)."""
    m, f, c = cfg.macro, cfg.fabric, cfg.controller
    lanes = m.cols // m.max_wb
    return {
        "macro_logic": m.rows * m.cols,
        "macros": f.n_macros,
        "memory_bits": f.act_depth * lanes * 8 + f.weight_depth * m.cols + f.param_depth * lanes * 72
                       + f.desc_depth * 64 + c.program_depth * 64 + c.trace_depth * 52,
    }


#: The memory bound: a generation estimated to need more resident memory than this (MB) is refused.
MEMORY_LIMIT_MB = 2048.0
#: Fitted resident memory (MB) per unit of each term and the interpreter's own: macros and the macro's size
#: dominate (``imagenet``: 224 MB; 256 x 256 macros with 65 536 activation words: 287 MB); the memories' bits
#: cost little since their all-zero contents are elided (before: 618 MB for 65 536 activation words).
_BASE_MB = 100.0
_MB = {"macro_logic": 2.0e-3, "macros": 5.8, "memory_bits": 2.0e-6}


def memory_estimate(cfg: CimConfig) -> float:
    """Predicted peak resident memory (MB) of generating ``cfg``."""
    return _BASE_MB + sum(_MB[k] * v for k, v in design_terms(cfg).items())


def generation_estimate(cfg: CimConfig) -> float:
    """Predicted CPU seconds of generating ``cfg`` (elaboration and Verilog conversion) on one core."""
    return _FIXED_S + sum(_COST_S[k] * v for k, v in design_terms(cfg).items())


def check_generation_size(cfg: CimConfig, command: str = "generate") -> None:
    """Raise :class:`~cimforge.errors.UserError` before elaboration when ``cfg`` is estimated to take longer than
    :data:`GENERATION_LIMIT_S` to generate; the message names the estimate, the bound and the largest terms."""
    est, mem = generation_estimate(cfg), memory_estimate(cfg)
    if est <= GENERATION_LIMIT_S and mem <= MEMORY_LIMIT_MB:
        return
    terms = design_terms(cfg)
    share = sorted(((_COST_S[k] * v, k, v) for k, v in terms.items()), reverse=True)[:2]
    what = ", ".join(f"{k} = {v:,} ({s:.0f} s)" for s, k, v in share)
    raise UserError(f"design '{cfg.name}' is too large for `cimforge {command}`: estimated {est:.0f} s and "
                    f"{mem:.0f} MB of elaboration (largest terms: {what}); allowed at most {GENERATION_LIMIT_S:.0f} s "
                    f"and {MEMORY_LIMIT_MB:.0f} MB: reduce macro.rows x macro.cols, fabric.n_macros or the memory "
                    "depths")
