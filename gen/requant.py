"""Integer requantisation in hardware: TFLite's ``MultiplyByQuantizedMultiplier``, bit-exact with
:func:`cimforge.golden.requant.multiply_by_quantized_multiplier`, pipelined over :data:`MBQM_LATENCY` cycles, in
either rounding form of the golden model (the design's ``fabric.rounding``): ``"double"`` (saturating left
shift, gemmlowp ``SaturatingRoundingDoublingHighMul``, ``RoundingDivideByPOT``: docs/architecture.md section 5) or
``"single"`` (TFLite's single-rounding form: one 64-bit product, one rounding shift, saturation).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import DEFAULT_ROUNDING, ROUNDINGS

__all__ = ["Mbqm", "MBQM_LATENCY", "clamp_code"]

#: Cycles from ``i_valid`` to ``o_valid`` of :class:`Mbqm`.
MBQM_LATENCY = 4

INT32_MIN = -(2 ** 31)
INT32_MAX = 2 ** 31 - 1


class Mbqm(wiring.Component):
    """``lanes`` parallel ``MultiplyByQuantizedMultiplier(x, mult, shift)`` on int32 values.

    Parameters
    ----------
    lanes : int
    shift_width : int
        Width of the signed ``shift`` inputs (TFLite sign: positive is a left shift; |shift| <= 31).
    rounding : {"double", "single"}
        Which rounding form of :mod:`cimforge.golden.requant` to build.

    Members
    -------
    i_valid : In(1)
    x, mult : In(ArrayLayout(signed(32), lanes))
    shift : In(ArrayLayout(signed(shift_width), lanes))
    o_valid : Out(1)
        ``i_valid`` delayed by :data:`MBQM_LATENCY` cycles.
    busy : Out(1)
        A value is in the pipeline.
    y : Out(ArrayLayout(signed(32), lanes))
    """

    def __init__(self, lanes: int, shift_width: int = 8, rounding: str = DEFAULT_ROUNDING):
        if lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, not {rounding!r}")
        self.lanes = lanes
        self.rounding = rounding
        super().__init__({
            "i_valid": In(1),
            "x": In(data.ArrayLayout(signed(32), lanes)),
            "mult": In(data.ArrayLayout(signed(32), lanes)),
            "shift": In(data.ArrayLayout(signed(shift_width), lanes)),
            "o_valid": Out(1), "busy": Out(1),
            "y": Out(data.ArrayLayout(signed(32), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        v = [Signal(name=f"v{i}") for i in range(1, MBQM_LATENCY + 1)]
        m.d.sync += [v[0].eq(self.i_valid)] + [v[i].eq(v[i - 1]) for i in range(1, MBQM_LATENCY)]
        m.d.comb += [self.o_valid.eq(v[-1]), self.busy.eq(Cat(*v).any())]
        for k in range(self.lanes):
            x, mult, shift = self.x[k], self.mult[k], self.shift[k]
            if self.rounding == "single":
                self._single(m, k, x, mult, shift)
                continue
            # stage 1: saturating left shift
            left = Signal(5, name=f"left{k}")
            right = Signal(5, name=f"right{k}")
            m.d.comb += [left.eq(Mux(shift > 0, shift, 0)), right.eq(Mux(shift < 0, -shift, 0))]
            wide = Signal(signed(64), name=f"wide{k}")
            m.d.comb += wide.eq(x << left)
            x1 = Signal(signed(32), name=f"x1_{k}", reset_less=True)
            m1 = Signal(signed(32), name=f"m1_{k}", reset_less=True)
            r1 = Signal(5, name=f"r1_{k}", reset_less=True)
            m.d.sync += [
                x1.eq(Mux(wide > INT32_MAX, INT32_MAX, Mux(wide < INT32_MIN, INT32_MIN, wide[:32]))),
                m1.eq(mult), r1.eq(right),
            ]
            # stage 2: the 32x32 product
            prod = Signal(signed(64), name=f"prod{k}", reset_less=True)
            ovf = Signal(name=f"ovf{k}", reset_less=True)
            r2 = Signal(5, name=f"r2_{k}", reset_less=True)
            m.d.sync += [prod.eq(x1 * m1), ovf.eq((x1 == INT32_MIN) & (m1 == INT32_MIN)), r2.eq(r1)]
            # stage 3: rounding doubling high half, division truncating towards zero
            nudged = Signal(signed(65), name=f"nudged{k}")
            m.d.comb += nudged.eq(prod + Mux(prod >= 0, 1 << 30, 1 - (1 << 30)))
            biased = Signal(signed(65), name=f"biased{k}")
            m.d.comb += biased.eq(nudged + Mux(nudged < 0, (1 << 31) - 1, 0))
            high = Signal(signed(32), name=f"high{k}", reset_less=True)
            r3 = Signal(5, name=f"r3_{k}", reset_less=True)
            m.d.sync += [high.eq(Mux(ovf, INT32_MAX, (biased >> 31)[:32])), r3.eq(r2)]
            # stage 4: rounding divide by a power of two, ties away from zero
            mask = Signal(32, name=f"mask{k}")
            m.d.comb += mask.eq((Const(1, 33) << r3) - 1)
            rem = Signal(32, name=f"rem{k}")
            m.d.comb += rem.eq(high.as_unsigned() & mask)
            thr = Signal(33, name=f"thr{k}")
            m.d.comb += thr.eq((mask >> 1) + (high < 0))
            y = Signal(signed(32), name=f"y{k}", reset_less=True)
            m.d.sync += y.eq((high >> r3) + (rem > thr))
            m.d.comb += self.y[k].eq(y)
        return m

    def _single(self, m: Module, k: int, x, mult, shift) -> None:
        """TFLite single rounding: ``(x * M + 2**(total - 1)) >> total`` with ``total = 31 - shift``, saturated."""
        # stage 1: operands and the total shift (1..62)
        x1 = Signal(signed(32), name=f"x1_{k}", reset_less=True)
        m1 = Signal(signed(32), name=f"m1_{k}", reset_less=True)
        t1 = Signal(6, name=f"t1_{k}", reset_less=True)   # total shift
        h1 = Signal(6, name=f"h1_{k}", reset_less=True)   # total shift - 1: the rounding bit's position
        m.d.sync += [x1.eq(x), m1.eq(mult), t1.eq(31 - shift), h1.eq(30 - shift)]
        # stage 2: the 32x32 product
        prod = Signal(signed(64), name=f"prod{k}", reset_less=True)
        t2 = Signal(6, name=f"t2_{k}", reset_less=True)
        h2 = Signal(6, name=f"h2_{k}", reset_less=True)
        m.d.sync += [prod.eq(x1 * m1), t2.eq(t1), h2.eq(h1)]
        # stage 3: add half of the last place (exact: |x * M| < 2**62)
        half = Signal(64, name=f"half{k}")
        m.d.comb += half.eq(Const(1, 64) << h2)
        nudged = Signal(signed(65), name=f"nudged{k}", reset_less=True)
        t3 = Signal(6, name=f"t3_{k}", reset_less=True)
        m.d.sync += [nudged.eq(prod + half), t3.eq(t2)]
        # stage 4: arithmetic shift, saturate to int32
        shifted = Signal(signed(65), name=f"shifted{k}")
        m.d.comb += shifted.eq(nudged >> t3)
        y = Signal(signed(32), name=f"y{k}", reset_less=True)
        m.d.sync += y.eq(Mux(shifted > INT32_MAX, INT32_MAX, Mux(shifted < INT32_MIN, INT32_MIN, shifted[:32])))
        m.d.comb += self.y[k].eq(y)


def clamp_code(m: Module, value, zp, lo, hi, name: str) -> Signal:
    """``clamp(value + zp, lo, hi)`` as a signed 10-bit code (int8 and uint8 both fit); combinational."""
    s = Signal(signed(34), name=f"{name}_sum")
    m.d.comb += s.eq(value + zp)
    out = Signal(signed(10), name=name)
    m.d.comb += out.eq(Mux(s < lo, lo, Mux(s > hi, hi, s[:10])))
    return out
