"""Packed words of the CIM macro, defined once for the RTL, the compiler's encoder and the benches.

The RTL uses the layouts as port shapes; Python builds an operation's fields with :func:`macro_op_fields`
(which checks them against the macro) and packs them with the ISA's one packer,
:func:`cimforge.gen.isa.pack_word`, which reads field offsets from the very same layouts, so a change here
changes every user at once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

from ..bits import exact_log2
from ..config import WEIGHT_BITS, MacroConfig

__all__ = ["MacroMode", "BitOp", "macro_op_layout", "macro_result_layout", "macro_op_fields", "wb_log2"]


class MacroMode(enum.Enum, shape=unsigned(1)):
    """What an operation computes."""

    MAC = 0      #: y[j] = sum_r x[r] * w(page, r, j), activations bit-serial
    BITWISE = 1  #: op(word, W[page][row]) with a popcount per column tile and in total


class BitOp(enum.Enum, shape=unsigned(3)):
    """Bitwise operations of the reconfigurable in-array logic (the ISSCC'22 macro's AND/OR/XOR, plus NOR/XNOR)."""

    AND = 0
    OR = 1
    XOR = 2
    NOR = 3
    XNOR = 4


def wb_log2(wb: int) -> int:
    """Encoding of a weight precision in the ``wb_log2`` field (1, 2, 4, 8 -> 0..3)."""
    if wb not in WEIGHT_BITS:
        raise ValueError(f"wb must be one of {list(WEIGHT_BITS)}, not {wb!r}")
    return exact_log2(wb)


@lru_cache(maxsize=None)
def macro_op_layout(cfg: MacroConfig) -> data.StructLayout:
    """The payload of the macro's ``op`` stream: one operation.

    Fields
    ------
    mode : MacroMode
    page : which page (weight wordline set) the operation reads
    row : the row a BITWISE operation reads (ignored by MAC)
    wb_log2 : weight precision, log2(wb) for wb in {1,2,4,8}; must not exceed cfg.max_wb
    ab_m1 : activation precision minus one (ab in 1..cfg.max_ab)
    w_signed, x_signed : two's complement weights / activations
    skip : skip activation bit planes that are zero in every row (fewer cycles, counted)
    bop : BitOp of a BITWISE operation
    x : rows activations of cfg.max_ab bits each; the low ab bits are used
    word : cols-bit operand of a BITWISE operation
    """
    return data.StructLayout({
        "mode": MacroMode,
        "page": unsigned(cfg.page_width),
        "row": unsigned(cfg.row_width),
        "wb_log2": unsigned(2),
        "ab_m1": unsigned(3),
        "w_signed": unsigned(1),
        "x_signed": unsigned(1),
        "skip": unsigned(1),
        "bop": BitOp,
        "x": data.ArrayLayout(unsigned(cfg.max_ab), cfg.rows),
        "word": unsigned(cfg.cols),
    })


def macro_op_fields(cfg: MacroConfig, *, mode: MacroMode = MacroMode.MAC, page: int = 0, row: int = 0,
                    wb: int = 8, ab: int = 8, w_signed: bool = True, x_signed: bool = True, skip: bool = False,
                    bop: BitOp = BitOp.AND, x: Sequence[int] = (), word: int = 0) -> dict[str, Any]:
    """The fields of one macro operation (the ``op`` stream payload), checked against ``cfg``; pack them with
    ``pack_word(macro_op_layout(cfg), fields)``.

    ``x`` holds the activations as values of ``ab`` bits (signed when ``x_signed``); they are stored as
    ``max_ab``-bit two's complement codes, of which the macro reads the low ``ab`` bits.

    Raises
    ------
    ValueError
        A field out of range for this macro, or an activation that does not fit ``ab`` bits; the message
        names it and the allowed values.
    """
    if not 0 <= page < cfg.pages:
        raise ValueError(f"page = {page}: allowed 0..{cfg.pages - 1}")
    if not 0 <= row < cfg.rows:
        raise ValueError(f"row = {row}: allowed 0..{cfg.rows - 1}")
    if wb not in WEIGHT_BITS or wb > cfg.max_wb:
        raise ValueError(f"wb = {wb}: allowed {[b for b in WEIGHT_BITS if b <= cfg.max_wb]}")
    if not 1 <= ab <= cfg.max_ab:
        raise ValueError(f"ab = {ab}: allowed 1..{cfg.max_ab}")
    if len(x) > cfg.rows:
        raise ValueError(f"{len(x)} activations: allowed at most rows = {cfg.rows}")
    lo, hi = (-(1 << (ab - 1)), (1 << (ab - 1)) - 1) if x_signed else (0, (1 << ab) - 1)
    codes = [int(v) for v in x]
    bad = [i for i, v in enumerate(codes) if not lo <= v <= hi]
    if bad:
        raise ValueError(f"x[{bad[0]}] = {codes[bad[0]]}: allowed {lo}..{hi} ({'signed' if x_signed else 'unsigned'}"
                         f" ab = {ab} bits)")
    mask = (1 << cfg.max_ab) - 1
    return {"mode": mode, "page": page, "row": row, "wb_log2": wb_log2(wb), "ab_m1": ab - 1,
            "w_signed": int(w_signed), "x_signed": int(x_signed), "skip": int(skip), "bop": bop,
            "x": [v & mask for v in codes], "word": word}


def macro_result_layout(cfg: MacroConfig) -> data.ArrayLayout:
    """The ``res_y`` port: ``cols`` lanes of ``acc_width`` bits; lane j holds y[j] for j < cols // wb."""
    return data.ArrayLayout(unsigned(cfg.acc_width), cfg.cols)
