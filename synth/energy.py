"""Throughput, energy and area model of the generated macro at 28 nm: per-event energies times activity counts.

Every number here is an **estimate**. The per-event energies come from public models (each entry names its
source); the activity counts follow the generated RTL's structure (:mod:`cimforge.gen.macro`) and the macro's
operation counts (:func:`cimforge.golden.macro.op_cycles`). One constant, the switching activity ``activity``, is
fitted so that the isscc22 preset reproduces the published ISSCC 2022 11.7 figure (27.38 TOPS/W); see
:mod:`.calibrate`. Every other preset and sweep point uses the same constants unchanged.

Events (what one count means)
-----------------------------
``cell``      one bit-cell compute access: the 1b x 1b product (NOR/AND) and the cell's share of the compute line
``fa``        one 1-bit full adder evaluated in a column adder tree or in the per-wb place-value combine
``shift_add`` one accumulator bit of the shift-add (a 1-bit full adder; the RTL's variable shift, log2(max_ab)
              2:1 muxes per bit, is not priced apart: a few % of the total, absorbed by the calibration)
``reg``       one flip-flop bit written (pipeline register, accumulator, activation plane register)
``buffer``    one bit read from an on-chip SRAM buffer (activations and weights fed to the macro; network runs only:
              the published macro-level figure excludes buffers, so the macro-level model does too)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..bits import count_bits
from ..config import MacroConfig
from ..golden.macro import op_cycles

__all__ = ["EventEnergy", "EVENTS", "TECH", "Constants", "CALIBRATED", "MacroOp", "cycle_counts", "op_counts",
           "op_energy_fj", "macro_figures", "area_mm2", "tree_adders", "ideal_tops", "PUBLISHED", "V_REF",
           "Technology"]

#: Supply voltage at which the ZigZag-IMC capacitances below are quoted.
V_REF = 0.9

# ZigZag-IMC 28 nm technology parameters (KULeuven-MICAS/zigzag, zigzag/hardware/architecture/imc_unit.py,
# TECH_PARAM_28NM and LogicUnit): NAND2 input capacitance 0.7 fF, XOR2 = 1.5 x NAND2, DFF = 3 x NAND2, at 0.9 V;
# NAND2 area 0.614 um^2, NAND2 delay 47.8 ps. Energy of a full swing = C * V^2.
_C_ND2_FF = 0.7
_E_ND2_FJ = _C_ND2_FF * V_REF ** 2  # 0.567 fJ


@dataclass(frozen=True)
class EventEnergy:
    """Energy of one event at 28 nm and :data:`V_REF`, before the activity factor.

    Parameters
    ----------
    key : str
    description : str
    fj : float
        Full-swing energy in femtojoules at 0.9 V.
    source : str
        Where the number comes from and how it was derived.
    """

    key: str
    description: str
    fj: float
    source: str


EVENTS: dict[str, EventEnergy] = {e.key: e for e in [
    EventEnergy("cell", "bit-cell compute access (1b x 1b product + compute-line share)", 1.0 * _E_ND2_FJ,
                "ZigZag-IMC 28 nm: 1b multiplier = 0.5 C_ND2 V^2 (a NOR, weight static) plus the cell's "
                "bitline share C_ND2/2; C_ND2 = 0.7 fF, V = 0.9 V"),
    EventEnergy("fa", "adder-tree / place-value 1-bit full adder", (3 * 0.7 + 2 * 0.7 * 1.5) * V_REF ** 2,
                "ZigZag-IMC 28 nm LogicUnit: 1b full adder = 3 NAND2 + 2 XOR2 = (3 x 0.7 + 2 x 1.05) fF x V^2"),
    EventEnergy("shift_add", "shift-add, per accumulator bit", (3 * 0.7 + 2 * 0.7 * 1.5) * V_REF ** 2,
                "ZigZag-IMC 28 nm: accumulator = one ripple-carry 1b full adder per output bit (shifter muxes not "
                "priced apart)"),
    EventEnergy("reg", "register update, per flip-flop bit", 3 * 0.7 * V_REF ** 2,
                "ZigZag-IMC 28 nm LogicUnit: 1b DFF = C_DFF V^2, C_DFF = 3 x 0.7 fF"),
    EventEnergy("buffer", "SRAM buffer access, per bit", 10_000 / 64 * (28 / 45),
                "Horowitz, ISSCC 2014 'Computing's energy problem': 8 KB SRAM 64-bit read = 10 pJ at 45 nm, "
                "0.9 V; scaled to 28 nm by capacitance (x 28/45)"),
]}


@dataclass(frozen=True)
class Technology:
    """Operating point and physical constants shared by every estimate."""

    node_nm: int = 28
    vdd: float = 0.8            # ISSCC 2022 11.7 operating point
    clock_ns: float = 3.0       # ISSCC 2022 11.7 clock period
    nd2_area_um2: float = 0.614  # ZigZag-IMC 28 nm NAND2 area (4 transistors)
    nd2_delay_ps: float = 47.8   # ZigZag-IMC 28 nm NAND2 delay
    sources: dict = field(default_factory=lambda: {
        "vdd": "ISSCC 2022 11.7 (Yan et al.): 0.8 V",
        "clock_ns": "ISSCC 2022 11.7: 3 ns clock; assumed for every preset so that figures compare",
        "nd2_area_um2": "ZigZag-IMC 28 nm: NAND2 = 0.614 um^2; area = transistors x 0.614/4 um^2 "
                        "(standard-cell density, 6.5 M transistors/mm^2)",
        "nd2_delay_ps": "ZigZag-IMC 28 nm: NAND2 delay 47.8 ps (depth x delay = critical path estimate)",
    })

    @property
    def voltage_scale(self) -> float:
        """Energies quoted at 0.9 V scale with V^2 to the operating point."""
        return (self.vdd / V_REF) ** 2

    @property
    def um2_per_transistor(self) -> float:
        return self.nd2_area_um2 / 4


TECH = Technology()

#: The published macro (ISSCC 2022 11.7, the reference design; its source below).
PUBLISHED = {
    "tops_per_w": 27.38, "tops_per_w_range": (19.21, 35.55), "mb_per_mm2": 1.041, "bits": 32768,
    "transistors_per_bit": 10, "node_nm": 28, "vdd": 0.8, "clock_ns": 3.0,
    "source": "ISSCC 2022 11.7 (Bonan Yan et al.), DOI 10.1109/ISSCC42614.2022.9731545: 27.38 TOPS/W average "
              "(19.21-35.55), 1.041 Mb/mm^2, 6T SRAM + 4T compute cell, 0.8 V, 3 ns",
}
#: The published macro's area: 32 Kb at 1.041 Mb/mm^2 (ZigZag-IMC models 0.03 mm^2).
PUBLISHED["area_mm2"] = PUBLISHED["bits"] / (PUBLISHED["mb_per_mm2"] * 1e6)


@dataclass(frozen=True)
class Constants:
    """The calibration constants (at most two; one is fitted).

    Parameters
    ----------
    activity : float
        Switching activity: the fraction of an event's full-swing energy C V^2 spent per evaluation, averaged
        over nodes and data. Fitted on isscc22 (see :mod:`.calibrate`); physically 0.1..0.5 for random data.
    """

    activity: float

    def describe(self) -> dict:
        return {"activity": {"value": self.activity, "fitted": True,
                             "meaning": "switching activity applied to every event's C V^2 energy",
                             "fitted_on": "isscc22 preset, 8b x 8b signed, to 27.38 TOPS/W (ISSCC 2022 11.7)"}}


#: The constants every figure uses. Written by hand from ``cimforge synth --calibrate`` (2 significant digits);
#: a test re-fits and checks that this value is the fit, rounded.
CALIBRATED = Constants(activity=0.18)


@dataclass(frozen=True)
class MacroOp:
    """One MAC operation's precision: ``ab``-bit activations times ``wb``-bit weights."""

    ab: int = 8
    wb: int = 8


def tree_adders(widths: list[int]) -> int:
    """1-bit full adders of the balanced adder tree the generator builds over terms of ``widths`` bits.

    Each node adds two terms and is as wide as the wider one (its carry out widens the sum), as in
    :func:`cimforge.gen.macro.sum_tree`.
    """
    terms = list(widths)
    fas = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            w = max(terms[i], terms[i + 1])
            fas += w
            nxt.append(w + 1)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return fas


def cycle_counts(m: MacroConfig, op: MacroOp) -> dict[str, float]:
    """Events in one compute cycle of one macro at precision ``op`` (the structure of the generated RTL).

    - ``cell``: every bit cell of the selected page evaluates its product: rows x cols.
    - ``fa``: a popcount tree per column over ``rows`` 1-bit products, plus the place-value combine that the
      tile evaluates for every precision up to ``max_wb`` (pairs of narrower sums, ``bits(rows) + wb'/2`` bits
      each), plus one ``pw``-bit adder per active lane for the two's-complement MSB and the sign-plane negation.
    - ``shift_add``: ``acc_width`` bits per active lane (``cols // wb`` lanes).
    - ``reg``: the pipeline register (``pw`` bits) and the accumulator (``acc_width``) of each active lane.
    """
    R, C = m.rows, m.cols
    s = count_bits(R)
    pw = s + m.max_wb + 1
    lanes = C // op.wb
    column_tree = tree_adders([1] * R)
    combine = 0
    w = 2
    while w <= m.max_wb:
        combine += (C // w) * (s + w // 2)
        w *= 2
    return {
        "cell": R * C,
        "fa": C * column_tree + combine + lanes * pw,
        "shift_add": lanes * m.acc_width,
        "reg": lanes * (pw + m.acc_width),
        "buffer": 0,
    }


def op_counts(m: MacroConfig, op: MacroOp, *, with_buffers: bool = False) -> dict[str, float]:
    """Events of one MAC operation (``ab`` compute cycles, back to back), plus loading its activations:
    ``rows x ab`` bits into the plane register, and from a buffer when ``with_buffers``."""
    cycles = op_cycles(op.ab)
    counts = {k: v * cycles for k, v in cycle_counts(m, op).items()}
    counts["reg"] += m.rows * op.ab
    if with_buffers:
        counts["buffer"] += m.rows * op.ab
    return counts


def op_energy_fj(counts: dict[str, float], constants: Constants = CALIBRATED, tech: Technology = TECH) -> float:
    """Energy in fJ of the events ``counts``."""
    unknown = set(counts) - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown energy events {sorted(unknown)}: allowed {', '.join(EVENTS)}")
    full = sum(n * EVENTS[k].fj for k, n in counts.items())
    return full * constants.activity * tech.voltage_scale


def area_mm2(transistors: float, tech: Technology = TECH) -> float:
    """Area of ``transistors`` at the stated standard-cell density."""
    return transistors * tech.um2_per_transistor * 1e-6


def macro_figures(m: MacroConfig, op: MacroOp = MacroOp(), *, transistors: float | None = None,
                  constants: Constants = CALIBRATED, tech: Technology = TECH) -> dict:
    """Peak throughput and efficiency of one macro running MAC operations back to back at ``op``.

    Returns a dict with macs_per_op, cycles_per_op, energy per op / MAC (fJ) with its breakdown by event,
    TOPS (2 ops per MAC, at ``tech.clock_ns``), TOPS/W and, given the transistor count, area (mm^2) and TOPS/mm^2.
    """
    if op.wb > m.max_wb or op.ab > m.max_ab:
        raise ValueError(f"precision ab={op.ab}, wb={op.wb}: allowed ab <= {m.max_ab}, wb <= {m.max_wb}")
    counts = op_counts(m, op)
    macs = m.rows * (m.cols // op.wb)
    cycles = op_cycles(op.ab)
    e_op = op_energy_fj(counts, constants, tech)
    breakdown = {k: op_energy_fj({k: n}, constants, tech) for k, n in counts.items() if n}
    tops = 2 * macs / (cycles * tech.clock_ns * 1e-9) / 1e12
    out = {
        "ab": op.ab, "wb": op.wb, "macs_per_op": macs, "cycles_per_op": cycles,
        "events_per_op": counts,
        "energy_per_op_fj": e_op, "energy_per_mac_fj": e_op / macs,
        "energy_breakdown_fj": breakdown,
        "tops": tops, "tops_per_w": 2 * macs / e_op * 1e3,  # ops per fJ = 1e15 ops/J = 1e3 TOPS/W
    }
    if transistors is not None:
        out["area_mm2"] = area_mm2(transistors, tech)
        out["tops_per_mm2"] = tops / out["area_mm2"]
    return out


def ideal_tops(m: MacroConfig, op: MacroOp, n_macros: int = 1, tech: Technology = TECH) -> float:
    """docs/architecture.md section 6 peak: rows x cols one-bit products per cycle, ab x wb of them per MAC."""
    return 2 * m.rows * m.cols * n_macros / (op.ab * op.wb) / (tech.clock_ns * 1e-9) / 1e12

