"""Formal equivalence of the generated RTL against word-level references, proven with Yosys ``sat``.

Two miters, each an Amaranth component whose every input is free (Yosys ``sat`` gives each input a fresh
variable in every time step) and whose obligations are Amaranth ``Assert`` / ``Assume`` statements (they reach
RTLIL as ``$check`` cells; ``chformal -lower`` turns them into the ``$assert`` / ``$assume`` cells ``sat``
proves and assumes):

- :class:`MacroMiter`: the bit-serial :class:`~cimforge.gen.macro.CimMacro` beside a word-level model of the
  contract of docs/macro.md, built from the same :class:`~cimforge.config.MacroConfig`: a shadow copy of the
  weights written through the same write port, ``y[j] = sum_r x[r] * w(page, r, j)`` with the operation's wb,
  ab and signedness (:func:`mac_reference`; the proof uses its bit-plane grouping, which :class:`MacFormMiter`
  proves equal to the product form), BITWISE ``op(word, W[page][row])`` with its popcounts, the read-back
  word, and the cycle of every ``op.ready``, ``busy`` and ``res_valid`` (docs/macro.md, Timing).
- :class:`RequantMiter`: the pipelined :class:`~cimforge.gen.requant.Mbqm` beside a combinational
  ``multiply_by_quantized_multiplier`` of :mod:`cimforge.golden.requant` (either rounding form) applied to the
  inputs of :data:`~cimforge.gen.requant.MBQM_LATENCY` cycles earlier.

:func:`prove_macro` and :func:`prove_requant` convert a miter, run Yosys (log and script under
``build/formal/<name>/``) and return a :class:`ProofResult`: proven, or a counterexample (Yosys's VCD and the
failing step). What each proof covers, its bound and why the bound suffices: docs/formal.md.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from amaranth.back import rtlil
from amaranth.hdl import Array, Assert, Assume, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ..bits import count_bits
from ..config import WEIGHT_BITS, MacroConfig
from ..gen.layouts import BitOp, MacroMode, macro_op_layout, wb_log2
from ..gen.macro import CimMacro
from ..gen.requant import MBQM_LATENCY, Mbqm
from ..golden.macro import LATENCY
from ..golden.requant import INT32_MAX, INT32_MIN, ROUNDING_MODES
from .yosys import DEFAULT_TIMEOUT, YosysError, run_steps

__all__ = ["MacroModes", "MacroMiter", "MacFormMiter", "mac_reference", "macro_bound", "prove_macro",
           "RequantMiter", "mbqm_operands", "mbqm_finish", "mbqm_reference", "prove_requant",
           "ProofResult", "run_sat", "MACRO_SUITE", "MACRO_SLOW_SUITE", "FORMAL_DIR", "CELLS", "MBQM_OPERANDS",
           "MBQM_PRODUCT"]

#: Yosys name of a column tile's bit cells in the flattened miter (after ``memory``, word k is ``<name>[k]``).
CELLS = "dut.tile{tile}.storage.cells"

#: Where the proofs write their RTLIL, Yosys script, log and counterexample VCD (one folder per proof).
FORMAL_DIR = Path("build/formal")


# ------------------------------------------------------------------------------------------------------------
# the macro
# ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MacroModes:
    """Which operations a macro proof ranges over; a field left ``None`` is free (every legal value at once).

    Parameters
    ----------
    mode : MacroMode, optional
    wb : int, optional
        Weight bits (1, 2, 4 or 8, at most ``max_wb``).
    ab : int, optional
        Activation bits (1..``max_ab``).
    w_signed, x_signed, skip : bool, optional
    bop : BitOp, optional
    """

    mode: MacroMode | None = None
    wb: int | None = None
    ab: int | None = None
    w_signed: bool | None = None
    x_signed: bool | None = None
    skip: bool | None = None
    bop: BitOp | None = None

    def check(self, cfg: MacroConfig) -> None:
        """Raise ValueError if a fixed field is not legal for ``cfg``, naming it and the allowed values."""
        if self.wb is not None and (self.wb not in WEIGHT_BITS or self.wb > cfg.max_wb):
            raise ValueError(f"wb = {self.wb!r}: allowed {[b for b in WEIGHT_BITS if b <= cfg.max_wb]} or None")
        if self.ab is not None and (isinstance(self.ab, bool) or not isinstance(self.ab, int)
                                    or not 1 <= self.ab <= cfg.max_ab):
            raise ValueError(f"ab = {self.ab!r}: allowed 1..{cfg.max_ab} or None")

    def label(self) -> str:
        """A short file-name-safe description, e.g. ``mac_w4_a3_ss`` (``x`` marks a free field)."""
        def flag(v, t):
            return "x" if v is None else (t if v else "u")
        mode = "any" if self.mode is None else self.mode.name.lower()
        parts = [mode]
        if self.mode != MacroMode.BITWISE:
            parts += [f"w{self.wb or 'x'}", f"a{self.ab or 'x'}",
                      flag(self.w_signed, "s") + flag(self.x_signed, "s") + flag(self.skip, "k")]
        if self.mode != MacroMode.MAC:
            parts.append("op" + ("x" if self.bop is None else self.bop.name.lower()))
        return "_".join(parts)


def _miter_signature(cfg: MacroConfig) -> dict:
    """The free inputs of :class:`MacroMiter`: the macro's input ports."""
    return {
        "op_valid": In(1), "op_payload": In(macro_op_layout(cfg)),
        "mem_we": In(1), "mem_re": In(1), "mem_page": In(cfg.page_width), "mem_row": In(cfg.row_width),
        "mem_wdata": In(cfg.cols),
    }


#: Prefix of the signal that holds one obligation (``ok_res_y``): high unless the check is enabled and fails.
OK_PREFIX = "ok_"


def _obligation(m: Module, name: str, enable, holds) -> None:
    """``Assert(holds)`` whenever ``enable``, through a named signal so that a counterexample names the check."""
    ok = Signal(name=OK_PREFIX + name)
    m.d.comb += [ok.eq(~Value.cast(enable) | holds), Assert(ok, name)]


def _popcount(bits) -> object:
    """Number of ones of ``bits`` as one word-level sum (the reference does not build the macro's trees)."""
    return sum((bits[i] for i in range(len(bits))), Const(0, 1))


class MacroMiter(wiring.Component):
    """A :class:`CimMacro` (or ``dut(cfg)``) and its word-level reference, driven by the same free inputs.

    Assumptions (the contract's preconditions, docs/macro.md): an accepted operation's fields are legal for
    ``cfg`` (page, row, wb, ab, bop in range; the high bits of each activation above ``ab`` are left free, as
    the contract says they are ignored); no write to the page of an operation in its compute cycles; no read-back
    in a BITWISE compute cycle; read-back addresses in range; ``modes`` fixes the fields it names. Writes
    outside the geometry are allowed (they must store nothing).

    Assertions, every cycle: ``op.ready``, ``busy`` and ``res_valid`` equal the reference's (an operation
    accepted at edge k with n compute cycles has ``res_valid`` high after edge ``k + n + LATENCY``); when
    ``res_valid``, ``res_y`` (MAC) or ``res_bits``, ``res_pop``, ``res_total`` (BITWISE) equal the reference;
    the cycle after a read-back, ``mem_rdata`` equals the shadow word.

    Parameters
    ----------
    cfg : MacroConfig
    modes : MacroModes, optional
        Fields fixed for this proof (default: all free).
    dut : callable, optional
        ``dut(cfg)`` builds the design under test, a component with the macro's signature (default
        :class:`CimMacro`); tests pass a deliberately broken one.
    form : {"planes", "word"}
        Which form of :func:`mac_reference` the MAC results are compared with.
    cells : str
        Yosys name of tile ``{tile}``'s bit cells in the flattened miter (default :data:`CELLS`; deeper when
        ``dut`` wraps a macro): :meth:`equal_init` equates them with the shadow copy in the first step.
    """

    def __init__(self, cfg: MacroConfig, modes: MacroModes | None = None,
                 dut: Callable[[MacroConfig], wiring.Component] | None = None, form: str = "planes",
                 cells: str = CELLS):
        self.cfg = cfg
        self.form = form
        self.cells = cells
        self.modes = modes or MacroModes()
        self.modes.check(cfg)
        self.dut_factory = dut or CimMacro
        super().__init__(_miter_signature(cfg))

    def free_init(self) -> list[str]:
        """Wires whose initial value the proof leaves free: the macro's cells and the shadow copy."""
        return [self.cells.format(tile="*") + "*", "shadow_p*_r*"]

    def equal_init(self) -> list[tuple[str, str]]:
        """(shadow slice, macro cell) pairs equal in the first step: tile i's word (page, row) is
        ``cells[page * rows + row]`` of ``tile{i}.storage`` (gen/macro.py TileStorage)."""
        cfg, w = self.cfg, self.cfg.tile_cols
        return [(f"shadow_p{pg}_r{r}[{(i + 1) * w - 1}:{i * w}]", f"{self.cells.format(tile=i)}[{pg * cfg.rows + r}]")
                for pg in range(cfg.pages) for r in range(cfg.rows) for i in range(cfg.n_tiles)]

    # the operation as the macro sees it: the free payload with the fixed fields replaced by constants ---------
    def _payload(self, m: Module):
        cfg, md = self.cfg, self.modes
        p = Signal(macro_op_layout(self.cfg), name="payload")
        m.d.comb += p.eq(self.op_payload)
        fixed = {"mode": md.mode, "bop": md.bop,
                 "wb_log2": None if md.wb is None else wb_log2(md.wb),
                 "ab_m1": None if md.ab is None else md.ab - 1,
                 "w_signed": md.w_signed, "x_signed": md.x_signed, "skip": md.skip}
        for name, value in fixed.items():
            if value is not None:
                m.d.comb += getattr(p, name).eq(value)  # a later comb assignment wins: the field is a constant
        # legal operations only (the contract's range checks, done by gen.layouts.macro_op_fields in software)
        max_wb_l2 = wb_log2(cfg.max_wb)
        max_bop = max(b.value for b in BitOp)
        m.d.comb += Assume(~self.op_valid | ((p.page < cfg.pages) & (p.row < cfg.rows) & (p.wb_log2 <= max_wb_l2)
                                              & (p.ab_m1 < cfg.max_ab) & (p.bop.as_value() <= max_bop)))
        return p

    @staticmethod
    def _ab_mask(ab_m1, width: int):
        """Low ``ab_m1 + 1`` bits set, ``width`` bits wide."""
        return ((Const(1, width + 1) << (ab_m1 + 1)) - 1)[:width]

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.dut = dut = self.dut_factory(cfg)
        p = self._payload(m)
        m.d.comb += [
            dut.op.valid.eq(self.op_valid), dut.op.payload.eq(p),
            dut.mem_we.eq(self.mem_we), dut.mem_re.eq(self.mem_re), dut.mem_page.eq(self.mem_page),
            dut.mem_row.eq(self.mem_row), dut.mem_wdata.eq(self.mem_wdata),
        ]
        shadow = self._shadow(m)

        # --- reference timing: a counter of the compute cycles left ------------------------------------------
        r_busy = Signal()
        r_left = Signal(range(cfg.max_ab + 1))
        ready = Signal()
        last = Signal()
        m.d.comb += [last.eq(r_busy & (r_left == 1)), ready.eq(~r_busy | last)]
        accept = Signal()
        m.d.comb += accept.eq(self.op_valid & ready)
        n_cycles = self._cycles(m, p)
        r_op = Signal(macro_op_layout(cfg), name="r_op")
        with m.If(accept):
            m.d.sync += [r_busy.eq(1), r_left.eq(n_cycles), r_op.eq(p)]
        with m.Elif(r_busy):
            m.d.sync += r_left.eq(r_left - 1)
            with m.If(last):
                m.d.sync += r_busy.eq(0)

        # no write to the page an operation reads in its compute cycles; no read-back in a BITWISE compute cycle
        m.d.comb += [
            Assume(~(self.mem_we & r_busy & (self.mem_page == r_op.page))),
            Assume(~(self.mem_re & r_busy & (r_op.mode == MacroMode.BITWISE))),
            Assume(~self.mem_re | ((self.mem_page < cfg.pages) & (self.mem_row < cfg.rows))),
        ]

        # --- reference results, computed in the last compute cycle, delivered LATENCY + 1 edges later -----------
        y = self._mac(m, r_op, shadow)
        bits, pops, total = self._bitwise(m, r_op, shadow)
        pipe_valid = last
        pipe = Cat(y.as_value(), bits, pops.as_value(), total, r_op.mode)
        for stage in range(LATENCY + 1):
            v = Signal(name=f"ref_valid{stage}")
            q = Signal(len(pipe), name=f"ref_result{stage}")
            m.d.sync += [v.eq(pipe_valid), q.eq(pipe)]
            pipe_valid, pipe = v, q
        ref_y = Signal.like(y, name="ref_y")
        ref_bits = Signal.like(bits, name="ref_bits")
        ref_pops = Signal.like(pops, name="ref_pops")
        ref_total = Signal.like(total, name="ref_total")
        ref_mode = Signal(MacroMode, name="ref_mode")
        m.d.comb += Cat(ref_y.as_value(), ref_bits, ref_pops.as_value(), ref_total, ref_mode).eq(pipe)

        # --- obligations ---------------------------------------------------------------------------------------
        mac_now = pipe_valid & (ref_mode == MacroMode.MAC)
        bitwise_now = pipe_valid & (ref_mode == MacroMode.BITWISE)
        _obligation(m, "ready", 1, dut.op.ready == ready)
        _obligation(m, "busy", 1, dut.busy == r_busy)
        _obligation(m, "res_valid", 1, dut.res_valid == pipe_valid)
        _obligation(m, "res_y", mac_now, dut.res_y.as_value() == ref_y.as_value())
        _obligation(m, "res_bits", bitwise_now, dut.res_bits == ref_bits)
        _obligation(m, "res_pop", bitwise_now, dut.res_pop.as_value() == ref_pops.as_value())
        _obligation(m, "res_total", bitwise_now, dut.res_total == ref_total)
        # read-back: the word at the address of the previous cycle's mem_re, before that cycle's write
        r_re = Signal()
        r_word = Signal(cfg.cols)
        m.d.sync += [r_re.eq(self.mem_re), r_word.eq(self._word(shadow, self.mem_page, self.mem_row))]
        _obligation(m, "mem_rdata", r_re, dut.mem_rdata == r_word)
        return m

    def _shadow(self, m: Module) -> list:
        """``pages x rows`` words written like the macro's cells (a write outside the geometry stores nothing)."""
        cfg = self.cfg
        words = [[Signal(cfg.cols, name=f"shadow_p{pg}_r{r}") for r in range(cfg.rows)] for pg in range(cfg.pages)]
        for pg in range(cfg.pages):
            for r in range(cfg.rows):
                with m.If(self.mem_we & (self.mem_page == pg) & (self.mem_row == r)):
                    m.d.sync += words[pg][r].eq(self.mem_wdata)
        return words

    def _word(self, shadow: list, page, row):
        cfg = self.cfg
        return Array(Array(shadow[pg]) for pg in range(cfg.pages))[page][row]

    def _cycles(self, m: Module, p) -> Signal:
        """Compute cycles of the operation ``p``: 1 for BITWISE, else ab, or with skip the non-zero planes (>= 1)."""
        cfg = self.cfg
        mask = self._ab_mask(p.ab_m1, cfg.max_ab)
        nonzero = Signal(cfg.max_ab, name="ref_nonzero")
        m.d.comb += nonzero.eq(Cat(Cat(p.x[r][t] for r in range(cfg.rows)).any() for t in range(cfg.max_ab)) & mask)
        n = Signal(range(cfg.max_ab + 1), name="ref_cycles")
        with m.If(p.mode == MacroMode.BITWISE):
            m.d.comb += n.eq(1)
        with m.Elif(p.skip):
            m.d.comb += n.eq(Mux(nonzero.any(), _popcount(nonzero), 1))
        with m.Else():
            m.d.comb += n.eq(p.ab_m1 + 1)
        return n

    def _mac(self, m: Module, op, shadow: list):
        """The reference MAC of the operation ``op`` on its page of ``shadow`` (see :func:`mac_reference`)."""
        cfg = self.cfg
        rows = [Array(shadow[pg][r] for pg in range(cfg.pages))[op.page] for r in range(cfg.rows)]
        return mac_reference(m, cfg, self.modes, [op.x[r] for r in range(cfg.rows)], rows, op.ab_m1,
                             op.x_signed, op.w_signed, op.wb_log2, form=self.form)

    def _bitwise(self, m: Module, op, shadow: list):
        """``op(word, W[page][row])``, its popcount per column tile and in total."""
        cfg = self.cfg
        a, b = op.word, self._word(shadow, op.page, op.row)
        bits = Signal(cfg.cols, name="ref_bitwise")
        with m.Switch(op.bop):
            for bop, f in ((BitOp.AND, a & b), (BitOp.OR, a | b), (BitOp.XOR, a ^ b), (BitOp.NOR, ~(a | b)),
                           (BitOp.XNOR, ~(a ^ b))):
                with m.Case(bop):
                    m.d.comb += bits.eq(f)
        tile_bits = count_bits(cfg.tile_cols)
        pops = Signal(data.ArrayLayout(tile_bits, cfg.n_tiles), name="ref_pops")
        for i in range(cfg.n_tiles):
            m.d.comb += pops[i].eq(_popcount(bits[i * cfg.tile_cols:(i + 1) * cfg.tile_cols]))
        total = Signal(count_bits(cfg.cols), name="ref_total")
        m.d.comb += total.eq(_popcount(bits))
        return bits, pops, total


def _x_values(m: Module, cfg: MacroConfig, xs: list, ab_m1, x_signed) -> list:
    """Each activation's low ``ab`` bits as an integer (two's complement when ``x_signed``)."""
    out = []
    for r, x in enumerate(xs):
        low = x & MacroMiter._ab_mask(ab_m1, cfg.max_ab)
        sign = x_signed & x.bit_select(ab_m1, 1)
        xv = Signal(signed(cfg.max_ab + 2), name=f"ref_x{r}")
        m.d.comb += xv.eq(low - (sign << (ab_m1 + 1)))
        out.append(xv)
    return out


def _w_value(m: Module, word, wb: int, j: int, w_signed, name: str) -> Signal:
    """Weight ``j`` of a row word at precision ``wb`` (bits ``[j*wb, (j+1)*wb)``, two's complement if signed)."""
    f = word[j * wb:(j + 1) * wb]
    wv = Signal(signed(wb + 1), name=name)
    m.d.comb += wv.eq(f - ((w_signed & f[wb - 1]) << wb))
    return wv


def mac_reference(m: Module, cfg: MacroConfig, modes: "MacroModes", xs: list, rows: list, ab_m1, x_signed, w_signed,
                  wbl2, form: str = "word") -> Signal:
    """Reference MAC results, lane j = ``sum_r x[r] * w(r, j)`` mod ``2**acc_width`` (lanes past ``cols // wb``
    zero), combinational.

    ``form="word"``: one word-level product ``x[r] * w(r, j)`` per row and weight (the contract as written).
    ``form="planes"``: the same sum grouped by activation bit plane, ``sum_t s_t 2**t sum_r x[r]_t w(r, j)``
    with ``s_t = -1`` for the sign plane of signed activations: the identity the bit-serial macro relies on,
    with word-level weights and no macro structure (no column counts, no per-wb combine, no accumulator).
    :class:`MacFormMiter` proves the two forms equal; the sequential macro proof then uses the plane form,
    which the SAT solver handles far faster (docs/formal.md).
    """
    if form not in ("word", "planes"):
        raise ValueError(f"form must be 'word' or 'planes', not {form!r}")
    y = Signal(data.ArrayLayout(unsigned(cfg.acc_width), cfg.cols), name=f"ref_mac_{form}")
    if form == "word":
        xv = _x_values(m, cfg, xs, ab_m1, x_signed)
    else:
        bits = [x & MacroMiter._ab_mask(ab_m1, cfg.max_ab) for x in xs]
    wbs = [b for b in WEIGHT_BITS if b <= cfg.max_wb and (modes.wb is None or b == modes.wb)]
    with m.Switch(wbl2):
        for wb in wbs:
            with m.Case(wb_log2(wb)):
                for j in range(cfg.cols // wb):
                    ws = [_w_value(m, rows[r], wb, j, w_signed, f"ref_{form}_w{wb}_r{r}_j{j}")
                          for r in range(len(rows))]
                    if form == "word":
                        terms = [xv[r] * ws[r] for r in range(len(rows))]
                    else:
                        terms = []
                        for t in range(cfg.max_ab):
                            plane = Signal(signed(cfg.acc_width + 1), name=f"ref_plane{t}_w{wb}_j{j}")
                            m.d.comb += plane.eq(sum((Mux(bits[r][t], ws[r], 0) for r in range(len(rows))),
                                                     Const(0, signed(2))))
                            neg = x_signed & (ab_m1 == t)
                            terms.append(Mux(neg, -plane, plane) << t)
                    m.d.comb += y[j].eq(sum(terms[1:], terms[0]))
    return y


class MacFormMiter(wiring.Component):
    """The two forms of :func:`mac_reference` on the same free operands (combinational): the lemma that lets the
    sequential macro proof use the plane form. Assumption: the operation's wb and ab are legal for ``cfg``
    (``modes`` may fix them and the signedness). Assertion: every lane equal.

    Parameters
    ----------
    cfg : MacroConfig
    modes : MacroModes, optional
    """

    def __init__(self, cfg: MacroConfig, modes: "MacroModes | None" = None):
        self.cfg = cfg
        self.modes = modes or MacroModes()
        self.modes.check(cfg)
        super().__init__({"x": In(data.ArrayLayout(cfg.max_ab, cfg.rows)),
                          "words": In(data.ArrayLayout(cfg.cols, cfg.rows)),
                          "ab_m1": In(3), "wb_log2": In(2), "x_signed": In(1), "w_signed": In(1)})

    def elaborate(self, platform):
        m = Module()
        cfg, md = self.cfg, self.modes
        ab_m1, wbl2, xs, ws = Signal(3), Signal(2), Signal(), Signal()
        m.d.comb += [ab_m1.eq(self.ab_m1 if md.ab is None else md.ab - 1),
                     wbl2.eq(self.wb_log2 if md.wb is None else wb_log2(md.wb)),
                     xs.eq(self.x_signed if md.x_signed is None else md.x_signed),
                     ws.eq(self.w_signed if md.w_signed is None else md.w_signed)]
        m.d.comb += Assume((ab_m1 < cfg.max_ab) & (wbl2 <= wb_log2(cfg.max_wb)))
        x = [self.x[r] for r in range(cfg.rows)]
        rows = [self.words[r] for r in range(cfg.rows)]
        word = mac_reference(m, cfg, md, x, rows, ab_m1, xs, ws, wbl2, form="word")
        planes = mac_reference(m, cfg, md, x, rows, ab_m1, xs, ws, wbl2, form="planes")
        _obligation(m, "forms", 1, word.as_value() == planes.as_value())
        return m


#: Macro geometries of the default proof suite (each proof well under a minute on a 2-core machine) and of the
#: slow one; every mode is free in one proof per geometry (tests/test_formal_macro.py, ``cimforge formal``).
MACRO_SUITE = (
    MacroConfig(rows=2, pages=1, cols=2, max_wb=2, max_ab=2),
    MacroConfig(rows=2, pages=2, cols=4, max_wb=2, max_ab=2),
    MacroConfig(rows=4, pages=1, cols=2, max_wb=2, max_ab=2),
    MacroConfig(rows=2, pages=2, cols=2, max_wb=2, max_ab=3),
)
MACRO_SLOW_SUITE = (
    MacroConfig(rows=3, pages=2, cols=4, max_wb=2, max_ab=2),
    MacroConfig(rows=2, pages=1, cols=8, max_wb=4, max_ab=2),
)


def macro_bound(cfg: MacroConfig) -> int:
    """Time steps of a macro proof: two operations of the longest kind back to back, the second's result seen
    (the weights start arbitrary, so no step is spent writing them; docs/formal.md)."""
    return 2 * cfg.max_ab + LATENCY + 2


# ------------------------------------------------------------------------------------------------------------
# requantisation
# ------------------------------------------------------------------------------------------------------------

def _clip32(m: Module, v, name: str) -> Signal:
    out = Signal(signed(32), name=name)
    m.d.comb += out.eq(Mux(v > INT32_MAX, INT32_MAX, Mux(v < INT32_MIN, INT32_MIN, v)))
    return out


def mbqm_operands(m: Module, x, shift, rounding: str, name: str = "ref") -> Signal:
    """The multiplicand of ``multiply_by_quantized_multiplier``: ``clip(x << max(shift, 0))`` for ``"double"``
    (the golden model's saturating left shift), ``x`` itself for ``"single"``."""
    if rounding == "single":
        return x
    left = Signal(5, name=f"{name}_left")
    m.d.comb += left.eq(Mux(shift > 0, shift, 0))
    return _clip32(m, x << left, f"{name}_shifted")


def mbqm_finish(m: Module, prod, a, mult, shift, rounding: str, name: str = "ref") -> Signal:
    """The rest of ``multiply_by_quantized_multiplier`` given the 64-bit product ``prod = a * mult`` of
    :func:`mbqm_operands`' ``a`` and the multiplier (combinational), after the golden model's expressions."""
    if rounding == "single":
        total = Signal(7, name=f"{name}_total")     # 31 - shift: 1..62
        half_at = Signal(7, name=f"{name}_half_at")
        m.d.comb += [total.eq(31 - shift), half_at.eq(30 - shift)]
        nudged = Signal(signed(66), name=f"{name}_nudged")
        m.d.comb += nudged.eq(prod + (Const(1, 64) << half_at))
        return _clip32(m, nudged >> total, f"{name}_y")
    # SaturatingRoundingDoublingHighMul: nudge, C division truncating towards zero, the one overflow
    v = Signal(signed(66), name=f"{name}_v")
    m.d.comb += v.eq(prod + Mux(prod >= 0, 1 << 30, 1 - (1 << 30)))
    high = Signal(signed(34), name=f"{name}_high")
    m.d.comb += high.eq(Mux(v >= 0, v >> 31, -((-v) >> 31)))
    srdhm = Signal(signed(32), name=f"{name}_srdhm")
    m.d.comb += srdhm.eq(Mux((a == INT32_MIN) & (mult == INT32_MIN), INT32_MAX, high))
    # RoundingDivideByPOT by right = max(-shift, 0): ties away from zero
    right = Signal(6, name=f"{name}_right")
    m.d.comb += right.eq(Mux(shift < 0, -shift, 0))
    mask = Signal(32, name=f"{name}_mask")
    m.d.comb += mask.eq((Const(1, 33) << right) - 1)
    remainder = Signal(32, name=f"{name}_rem")
    m.d.comb += remainder.eq(srdhm.as_unsigned() & mask)
    threshold = Signal(33, name=f"{name}_thr")
    m.d.comb += threshold.eq((mask >> 1) + (srdhm < 0))
    y = Signal(signed(32), name=f"{name}_y")
    m.d.comb += y.eq((srdhm >> right) + (remainder > threshold))
    return y


def mbqm_reference(m: Module, x, mult, shift, rounding: str, name: str = "ref") -> Signal:
    """Word-level ``multiply_by_quantized_multiplier(x, mult, shift, rounding)`` of :mod:`cimforge.golden.requant`
    (combinational): :func:`mbqm_finish` of the product of :func:`mbqm_operands`."""
    a = mbqm_operands(m, x, shift, rounding, name)
    prod = Signal(signed(64), name=f"{name}_prod")
    m.d.comb += prod.eq(a * mult)
    return mbqm_finish(m, prod, a, mult, shift, rounding, name)


#: Yosys names of lane 0's multiplier operand and product registers inside an Mbqm (gen/requant.py ``x1_{k}``,
#: ``m1_{k}``, ``prod{k}``; the same in both rounding forms).
MBQM_OPERANDS = ("x1_0", "m1_0")
MBQM_PRODUCT = "prod0"


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, not {rounding!r}")


class RequantMiter(wiring.Component):
    """One lane of :class:`Mbqm` against the word-level reference on the inputs of ``MBQM_LATENCY`` cycles earlier.

    The reference is evaluated in steps, each value delayed as the pipeline delays it (a pure delay, so the
    output is still ``multiply_by_quantized_multiplier`` of the input ``MBQM_LATENCY`` cycles earlier): its
    operands one cycle after the input (``ref_a1``, ``ref_b1``: the DUT's ``x1``, ``m1``), its product
    ``ref_prod2`` two cycles after (the DUT's ``prod``), its result ``MBQM_LATENCY`` after.
    :func:`prove_requant` cuts the DUT's product register and drives it from ``ref_prod2`` while proving the DUT's
    operand registers equal to ``ref_a1``, ``ref_b1``: the two 32 x 32 products (one yosys ``$mul`` each, same
    shapes) are then equal by those operands, and the SAT solver never compares two multipliers.

    Assumption: ``shift`` in -31..30 (the golden model's range). Assertions: ``o_valid`` equals ``i_valid``
    delayed by ``MBQM_LATENCY``; when ``o_valid``, ``y`` equals the delayed reference.

    Parameters
    ----------
    rounding : {"double", "single"}
    dut : callable, optional
        ``dut(rounding)`` builds the design under test (default ``Mbqm(1, rounding=rounding)``).
    """

    def __init__(self, rounding: str = "double", *, dut: Callable[[str], wiring.Component] | None = None):
        _check_rounding(rounding)
        self.rounding = rounding
        self.dut_factory = dut or (lambda r: Mbqm(1, rounding=r))
        super().__init__({"i_valid": In(1), "x": In(signed(32)), "mult": In(signed(32)), "shift": In(signed(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut_factory(self.rounding)
        m.d.comb += [dut.i_valid.eq(self.i_valid), dut.x[0].eq(self.x), dut.mult[0].eq(self.mult),
                     dut.shift[0].eq(self.shift)]
        m.d.comb += Assume((self.shift >= -31) & (self.shift <= 30))
        a = mbqm_operands(m, self.x, self.shift, self.rounding)
        a1, b1 = Signal(signed(32), name="ref_a1"), Signal(signed(32), name="ref_b1")
        a2, b2 = Signal(signed(32), name="ref_a2"), Signal(signed(32), name="ref_b2")
        s1, s2 = Signal(signed(8), name="ref_s1"), Signal(signed(8), name="ref_s2")
        prod2 = Signal(signed(64), name="ref_prod2")
        m.d.sync += [a1.eq(a), b1.eq(self.mult), s1.eq(self.shift),
                     a2.eq(a1), b2.eq(b1), s2.eq(s1), prod2.eq(a1 * b1)]
        q = mbqm_finish(m, prod2, a2, b2, s2, self.rounding)
        for stage in range(2, MBQM_LATENCY):
            nq = Signal(signed(32), name=f"ref_y{stage + 1}")
            m.d.sync += nq.eq(q)
            q = nq
        v = self.i_valid
        for stage in range(MBQM_LATENCY):
            nv = Signal(name=f"ref_valid{stage + 1}")
            m.d.sync += nv.eq(v)
            v = nv
        _obligation(m, "o_valid", 1, dut.o_valid == v)
        _obligation(m, "y", v, dut.y[0] == q)
        return m


# ------------------------------------------------------------------------------------------------------------
# running the proofs
# ------------------------------------------------------------------------------------------------------------

@dataclass
class ProofResult:
    """The outcome of one proof.

    Attributes
    ----------
    name : str
    proven : bool
        Yosys found no counterexample within ``steps`` (``sat -prove-asserts`` succeeded).
    steps : int
        The bound (time steps from the initial state).
    seconds : float
        Wall time of the Yosys run (conversion not included).
    yosys_seconds : float, optional
        The time Yosys reports for its script (without the start-up of the WebAssembly runtime; under WASI
        Yosys's "user" time is not CPU time, so both are wall times).
    unbounded : bool
        Proven by temporal induction (holds in every step, not only the first ``steps``; ``steps`` is then the
        induction length).
    workdir : pathlib.Path
        RTLIL (``miter.il``), script (``proof.ys``), log (``proof.log``) and, on failure, ``cex.vcd``.
    failures : list of (int, str)
        The counterexample's failing checks: (time step, obligation name, e.g. ``res_y``), in step order.
    """

    name: str
    proven: bool
    steps: int
    seconds: float
    workdir: Path
    failures: list = field(default_factory=list)
    yosys_seconds: float | None = None
    unbounded: bool = False

    @property
    def failing_step(self) -> int | None:
        """First time step at which an obligation fails (None when proven)."""
        return self.failures[0][0] if self.failures else None

    def __str__(self) -> str:
        if self.proven:
            what = "proven for every step (k-induction)" if self.unbounded else "proven"
        else:
            first = ", ".join(f"{c} at step {t}" for t, c in self.failures[:3]) or "an assertion"
            what = f"COUNTEREXAMPLE: {first} ({self.workdir / 'cex.vcd'})"
        yt = "" if self.yosys_seconds is None else f" (Yosys {self.yosys_seconds:.1f} s)"
        return f"{self.name}: {what}; bound {self.steps} steps, {self.seconds:.1f} s{yt}"


def run_sat(component: wiring.Component, name: str, steps: int, *, workdir: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT, free_init: Sequence[str] = (),
            equal_init: Sequence[tuple[str, str]] = (), cut: Sequence[str] = (),
            equal: Sequence[tuple[str, str]] = (), prove_equal: Sequence[tuple[str, str]] = (),
            induction: bool = False) -> ProofResult:
    """Convert ``component`` (its properties as ``$check`` cells) and prove its assertions for ``steps`` steps.

    The Yosys flow: ``proc``, ``flatten``, ``memory`` (memories to flip-flops: ``sat`` has no memory model),
    ``chformal -lower`` (``$check`` to ``$assert`` / ``$assume``), ``async2sync`` and ``dffunmap`` (plain
    ``$dff`` cells), ``opt``, then ``sat -tempinduct-baseonly -maxsteps steps -set-assumes -prove-asserts`` (the
    base case of a temporal induction: steps 1..``steps`` in turn) from the initial values (every register's
    ``init``, i.e. its reset value; the reset input held low), or with ``induction`` the full temporal induction
    up to length ``steps``. A combinational component (no ``rst`` port) gets one ``sat -prove-asserts``.

    ``free_init`` (Yosys selection patterns of wires) drops those registers' initial values, and
    ``equal_init`` (pairs of signals) makes them equal in the first step instead: how the macro proof starts
    from arbitrary but equal weights in the macro's cells and the shadow copy. ``cut`` (wires) become free
    (``cutpoint``), ``equal`` pairs are made equal in every step, and ``prove_equal`` pairs are proven equal in
    every step besides the assertions: how the requantisation proof replaces a product by the reference's.

    Raises
    ------
    YosysError
        Yosys failed, timed out, or printed neither a proof nor a counterexample.
    """
    workdir = Path(workdir) if workdir is not None else FORMAL_DIR / name
    workdir.mkdir(parents=True, exist_ok=True)
    text = rtlil.convert(component, name="miter")
    (workdir / "miter.il").write_text(text)
    (workdir / "cex.vcd").unlink(missing_ok=True)
    checks = sorted(set(re.findall(r"^\s*wire width 1 \\(" + OK_PREFIX + r"\w+)$", text, re.M)))
    show = [arg for c in [*checks, *(w for pair in prove_equal for w in pair)] for arg in ("-show", c)]
    if re.search(r"^\s*wire width 1 input \d+\s+\\rst$", text, re.M):
        # sequential: base case of a temporal induction, which proves step 1, 2, ... in turn, each with the
        # earlier steps' assertions known to hold (much faster than one `sat -seq` problem over all steps)
        mode = "-tempinduct" if induction else "-tempinduct-baseonly"
        sat = ["sat", mode, "-maxsteps", str(steps), "-set", "rst", "0"]
        for lhs, rhs in equal_init:
            sat += ["-set-at", "1", lhs, rhs]
        for lhs, rhs in equal:
            sat += ["-set", lhs, rhs]
        for lhs, rhs in prove_equal:
            sat += ["-prove", lhs, rhs]
    else:
        steps = 0  # combinational: one SAT problem over the free inputs
        sat = ["sat"]
    sat += ["-set-assumes", "-prove-asserts", "-show-inputs", *show, "-dump_vcd", "cex.vcd"]
    keep = [f"setattr -set keep 1 w:{w}" for pair in (*equal, *prove_equal) for w in pair]  # named after opt
    script = [
        ("read", ["read_rtlil miter.il", "hierarchy -top miter"]),
        ("prepare", ["proc", "flatten", *keep, "memory", "chformal -lower", "async2sync", "dffunmap", "opt -fast",
                     "opt_clean"] + [f"setattr -unset init w:{w}" for w in free_init]
                    + [f"cutpoint w:{w}" for w in cut] + (["opt_clean"] if cut else []) + ["stat"]),
        ("prove", [" ".join(sat)]),
    ]
    start = time.monotonic()
    log = run_steps(script, workdir, timeout=timeout, name="proof")
    seconds = time.monotonic() - start
    yt = re.findall(r"End of script\..*? time: ([0-9.]+)s", log)
    yosys_seconds = float(yt[-1]) if yt else None
    if "Induction step proven: SUCCESS!" in log:
        length = int(re.findall(r"Trying induction with length (\d+)", log)[-1])
        return ProofResult(name, True, length, seconds, workdir, yosys_seconds=yosys_seconds, unbounded=True)
    if re.search(r"no model found: SUCCESS!|proved base case for \d+ steps: SUCCESS!", log):
        return ProofResult(name, True, steps, seconds, workdir, yosys_seconds=yosys_seconds)
    if "Reached maximum number of time steps -> proof failed" in log:
        # the base case held for every length tried but the induction step never did: neither proof nor bug
        raise YosysError("prove", f"the induction did not close within {steps} steps (no counterexample from "
                                  "the initial state either)", workdir / "proof.log")
    if not re.search(r"model found( for base case)?: FAIL!", log):
        raise YosysError("prove", "sat printed neither a proof nor a counterexample", workdir / "proof.log")
    return ProofResult(name, False, steps, seconds, workdir, _failures(log, prove_equal), yosys_seconds)


def _failures(log: str, prove_equal: Sequence[tuple[str, str]]) -> list:
    """(step, obligation) pairs that fail in the model Yosys printed: ``ok_*`` signals at 0, and ``prove_equal``
    pairs whose two sides differ (named after the left side's last component, e.g. ``x1_0``)."""
    values = {}
    for t, sig, bits in re.findall(r"^\s*(\d+)\s+\\(\S+)\s+\S+\s+\S+\s+([01x]+)\s*$", log, re.M):
        values[int(t), sig] = bits
    out = {(t, sig[len(OK_PREFIX):]) for (t, sig), bits in values.items() if sig.startswith(OK_PREFIX) and bits == "0"}
    for lhs, rhs in prove_equal:
        for (t, sig), bits in values.items():
            if sig == lhs and (t, rhs) in values and values[t, rhs] != bits:
                out.add((t, lhs.rsplit(".", 1)[-1]))
    return sorted(out)


def prove_macro(cfg: MacroConfig, modes: MacroModes | None = None, *, steps: int | None = None,
                dut: Callable[[MacroConfig], wiring.Component] | None = None, name: str | None = None,
                form: str = "planes", cells: str = CELLS, timeout: float = DEFAULT_TIMEOUT) -> ProofResult:
    """Prove :class:`MacroMiter` for ``steps`` (default :func:`macro_bound`) time steps, from arbitrary (equal)
    weights in the macro's cells and the shadow copy and every other register at its reset value.

    Returns
    -------
    ProofResult
    """
    modes = modes or MacroModes()
    modes.check(cfg)  # before the miter exists (a miter that raises in its constructor warns as unused)
    steps = macro_bound(cfg) if steps is None else steps
    name = name or (f"macro_r{cfg.rows}_p{cfg.pages}_c{cfg.cols}_w{cfg.max_wb}_a{cfg.max_ab}_{modes.label()}")
    miter = MacroMiter(cfg, modes, dut, form=form, cells=cells)
    return run_sat(miter, name, steps, timeout=timeout, free_init=miter.free_init(), equal_init=miter.equal_init())


def prove_requant(rounding: str = "double", *, dut: Callable[[str], wiring.Component] | None = None,
                  path: str = "dut", name: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> ProofResult:
    """Prove :class:`RequantMiter` for every step by temporal induction (it closes at length ``MBQM_LATENCY``:
    the pipeline has no feedback, so its output is a function of the inputs ``MBQM_LATENCY`` steps before),
    full 32-bit operands and every shift.
    The DUT's product register is cut and driven by the reference's product; its operand registers are proven
    equal to the reference's (docs/formal.md). ``path``: the Mbqm lane's hierarchy in the flattened miter
    (``dut``, or deeper when ``dut`` wraps one).
    """
    _check_rounding(rounding)
    name = name or f"requant_{rounding}"
    miter = RequantMiter(rounding, dut=dut)
    ops = [f"{path}.{r}" for r in MBQM_OPERANDS]
    product = f"{path}.{MBQM_PRODUCT}"
    return run_sat(miter, name, MBQM_LATENCY + 1, timeout=timeout, cut=[product], equal=[(product, "ref_prod2")],
                   prove_equal=[(ops[0], "ref_a1"), (ops[1], "ref_b1")], induction=True)
