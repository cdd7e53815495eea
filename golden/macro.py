"""Golden model of one CIM macro: the semantics of docs/architecture.md section 3, vectorised numpy, no cycles.

The RTL (:mod:`cimforge.gen.macro`) and every bench are judged against this model. Storage is a bit array
``W[page, row, col]``; a MAC operation reads one page and returns, for each of the ``cols // wb`` weights of a row,
the exact dot product with the activations. Cycle counts are given by :func:`op_cycles`, which the RTL matches and
the compiler's cost model uses.
"""

from __future__ import annotations

import numpy as np

from ..config import WEIGHT_BITS, MacroConfig

__all__ = ["MacroModel", "op_cycles", "nonzero_planes", "bits_to_weights", "weights_to_bits", "int_range",
           "BITWISE_FUNCS", "LATENCY"]

#: Clock edges from the end of an operation's last compute cycle to its result (res_valid).
#: An operation accepted at rising edge k with n compute cycles has res_valid high after edge k + n + LATENCY.
LATENCY = 1


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive range of a ``bits``-wide integer."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _check_range(name: str, a: np.ndarray, bits: int, signed: bool) -> None:
    lo, hi = int_range(bits, signed)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} out of range for {bits}-bit {'signed' if signed else 'unsigned'} "
                         f"({lo}..{hi}): min {a.min()}, max {a.max()}")


def nonzero_planes(x: np.ndarray, ab: int) -> np.ndarray:
    """Which of the ``ab`` activation bit planes hold a one in some row (bool array, LSB plane first)."""
    u = np.asarray(x, dtype=np.int64) & ((1 << ab) - 1)
    return np.array([bool(np.any((u >> t) & 1)) for t in range(ab)])


def op_cycles(ab: int, x: np.ndarray | None = None, skip: bool = False) -> int:
    """Compute cycles of one MAC operation: ``ab``, or with ``skip`` the number of non-zero bit planes (>= 1).

    A BITWISE operation takes one compute cycle. The result follows :data:`LATENCY` edges later.
    """
    if not skip:
        return ab
    if x is None:
        raise ValueError("op_cycles with skip needs the activations x")
    return max(1, int(nonzero_planes(x, ab).sum()))


def weights_to_bits(w: np.ndarray, wb: int) -> np.ndarray:
    """Lay out ``(..., n)`` integer weights as ``(..., n * wb)`` bits: weight j in bits [j*wb, (j+1)*wb), LSB first."""
    u = np.asarray(w, dtype=np.int64) & ((1 << wb) - 1)
    bits = (u[..., :, None] >> np.arange(wb)) & 1
    return bits.reshape(*u.shape[:-1], u.shape[-1] * wb).astype(np.uint8)


def bits_to_weights(bits: np.ndarray, wb: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`weights_to_bits`: ``(..., n * wb)`` bits to ``(..., n)`` integers."""
    b = np.asarray(bits, dtype=np.int64)
    b = b.reshape(*b.shape[:-1], b.shape[-1] // wb, wb)
    place = (1 << np.arange(wb, dtype=np.int64))
    if signed:
        place[-1] = -place[-1]
    return (b * place).sum(axis=-1)


BITWISE_FUNCS = {
    "AND": lambda a, b: a & b,
    "OR": lambda a, b: a | b,
    "XOR": lambda a, b: a ^ b,
    "NOR": lambda a, b: 1 - (a | b),
    "XNOR": lambda a, b: 1 - (a ^ b),
}


class MacroModel:
    """Bit-accurate model of one macro's storage and operations.

    Parameters
    ----------
    cfg : MacroConfig
        The geometry and precision limits.

    Attributes
    ----------
    bits : numpy.ndarray
        ``(pages, rows, cols)`` uint8 array of stored bits.
    """

    def __init__(self, cfg: MacroConfig):
        self.cfg = cfg
        self.bits = np.zeros((cfg.pages, cfg.rows, cfg.cols), dtype=np.uint8)

    # memory mode ----------------------------------------------------------------------------------------
    def write(self, page: int, row: int, word: int) -> None:
        """Write a ``cols``-bit word (an integer, bit c = column c) at (page, row)."""
        self._check_addr(page, row)
        self.bits[page, row] = (int(word) >> np.arange(self.cfg.cols, dtype=object)) & 1

    def read(self, page: int, row: int) -> int:
        """Read back the word at (page, row) as an integer."""
        self._check_addr(page, row)
        return sum(int(b) << c for c, b in enumerate(self.bits[page, row]))

    def load_weights(self, page: int, w: np.ndarray, wb: int) -> None:
        """Store a ``(rows, cols // wb)`` weight matrix into ``page`` (row r, weight j at columns j*wb..)."""
        w = np.asarray(w)
        if w.shape != (self.cfg.rows, self.cfg.cols // wb):
            raise ValueError(f"weights shape {w.shape}, expected (rows, cols // wb) = "
                             f"{(self.cfg.rows, self.cfg.cols // wb)}")
        self.bits[page] = weights_to_bits(w, wb)

    def weights(self, page: int, wb: int, signed: bool) -> np.ndarray:
        """The ``(rows, cols // wb)`` weights of ``page`` at precision ``wb``."""
        return bits_to_weights(self.bits[page], wb, signed)

    # operations -----------------------------------------------------------------------------------------
    def mac(self, x: np.ndarray, page: int, wb: int, ab: int, w_signed: bool = True,
            x_signed: bool = True) -> np.ndarray:
        """``y[j] = sum_r x[r] * w(page, r, j)`` for j < cols // wb, exact, as int64.

        Raises
        ------
        ValueError
            Precision not supported by the macro, page out of range, or x out of range for ab bits.
        """
        cfg = self.cfg
        if wb not in WEIGHT_BITS or wb > cfg.max_wb:
            raise ValueError(f"wb = {wb}: allowed {[b for b in WEIGHT_BITS if b <= cfg.max_wb]}")
        if not 1 <= ab <= cfg.max_ab:
            raise ValueError(f"ab = {ab}: allowed 1..{cfg.max_ab}")
        self._check_addr(page, 0)
        x = np.asarray(x, dtype=np.int64)
        if x.shape != (cfg.rows,):
            raise ValueError(f"x shape {x.shape}, expected (rows,) = ({cfg.rows},)")
        _check_range("x", x, ab, x_signed)
        return x @ self.weights(page, wb, w_signed)

    def bitwise(self, page: int, row: int, word: int, op: str) -> tuple[int, np.ndarray, int]:
        """``op(word, W[page][row])`` with its popcount per column tile (``max_wb`` columns) and in total.

        Returns
        -------
        (result word, per-tile popcounts, total popcount)
        """
        if op not in BITWISE_FUNCS:
            raise ValueError(f"bitwise op {op!r}: allowed {', '.join(BITWISE_FUNCS)}")
        self._check_addr(page, row)
        a = ((int(word) >> np.arange(self.cfg.cols, dtype=object)) & 1).astype(np.int64)
        r = BITWISE_FUNCS[op](a, self.bits[page, row].astype(np.int64))
        pops = r.reshape(self.cfg.n_tiles, self.cfg.tile_cols).sum(axis=1)
        return sum(int(b) << c for c, b in enumerate(r)), pops, int(r.sum())

    def _check_addr(self, page: int, row: int) -> None:
        if not 0 <= page < self.cfg.pages:
            raise ValueError(f"page = {page}: allowed 0..{self.cfg.pages - 1}")
        if not 0 <= row < self.cfg.rows:
            raise ValueError(f"row = {row}: allowed 0..{self.cfg.rows - 1}")
