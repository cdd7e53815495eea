"""``cimforge formal``: the formal equivalence proofs of docs/formal.md, one line per proof.

Examples::

    cimforge formal                       # the default suite: macro geometries, MAC lemma, requantisation
    cimforge formal --slow                # and the slow geometries
    cimforge formal --rows 3 --pages 2 --cols 4 --max-wb 2 --max-ab 2     # one macro geometry

Exit status 0 when every proof holds, 1 when one finds a counterexample (its VCD is named), 2 on a user error.
"""

from __future__ import annotations

import argparse

from ..config import MacroConfig
from ..errors import UserError, int_at_least, positive_float
from .formal import MACRO_SLOW_SUITE, MACRO_SUITE, MacFormMiter, prove_macro, prove_requant, run_sat
from .yosys import DEFAULT_TIMEOUT

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slow", action="store_true", help="also the slow macro geometries (minutes)")
    p.add_argument("--only", choices=("macro", "requant"), help="run only the macro or the requantisation proofs")
    for name in ("rows", "pages", "cols", "max-wb", "max-ab"):
        p.add_argument(f"--{name}", type=int_at_least(1), metavar="N",
                       help="prove this one macro geometry instead of the suite (all five options together)")
    p.add_argument("--timeout", type=positive_float(7 * 24 * 3600), default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds one Yosys run may take (default {DEFAULT_TIMEOUT:g})")


def _geometries(args) -> list[MacroConfig]:
    given = [args.rows, args.pages, args.cols, args.max_wb, args.max_ab]
    if any(v is not None for v in given):
        if any(v is None for v in given):
            raise UserError("a macro geometry needs all of --rows, --pages, --cols, --max-wb, --max-ab")
        return [MacroConfig(rows=args.rows, pages=args.pages, cols=args.cols, max_wb=args.max_wb,
                            max_ab=args.max_ab)]
    return list(MACRO_SUITE) + (list(MACRO_SLOW_SUITE) if args.slow else [])


def run(args) -> int:
    results = []
    if args.only in (None, "macro"):
        for cfg in _geometries(args):
            tag = f"r{cfg.rows}p{cfg.pages}c{cfg.cols}w{cfg.max_wb}a{cfg.max_ab}"
            results.append(run_sat(MacFormMiter(cfg), f"forms_{tag}", 0, timeout=args.timeout))
            print(results[-1], flush=True)
            results.append(prove_macro(cfg, timeout=args.timeout))
            print(results[-1], flush=True)
    if args.only in (None, "requant"):
        for rounding in ("double", "single"):
            results.append(prove_requant(rounding, timeout=args.timeout))
            print(results[-1], flush=True)
    failed = [r for r in results if not r.proven]
    print(f"{len(results) - len(failed)} of {len(results)} proofs hold")
    return 1 if failed else 0
