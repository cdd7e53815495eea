"""The integer form of ONNX ``LRN`` (local response normalisation across channels), shared by the golden model,
the ISS and the fabric's ``LRN`` engine (docs/lrn.md).

``y = x / (bias + alpha / size * sum x[j]**2) ** beta`` over the channel window ``j = c - lo .. c + hi``
(``lo = floor((size-1)/2)``, ``hi = ceil((size-1)/2)``, clipped to the channels). On codes, with
``d = q - zp_in`` and ``S_c = sum d_j**2`` (an exact integer)::

    y_code = clamp(zp_out + round(d_c * g(S_c)))
    g(S)   = (s_in / s_out) * (bias + alpha / size * s_in**2 * S) ** -beta

``g`` is a per-layer table of fixed-point values ``G[k] = round(g(k * 2**t) * 2**frac)``, ``k = 0 ..
S_max >> t``, each stored with its step ``D[k] = G[k+1] - G[k]``, and is read with integer linear
interpolation::

    k, f = S >> t, S & (2**t - 1)
    g_S  = G[k] + ((D[k] * f + 2**(t-1)) >> t)          (no rounding term when t = 0)
    y    = (d * g_S + 2**(frac-1)) >> frac              (arithmetic shifts: floor; ties up)

The table is computed once, in float64, when the layer is built (:func:`lrn_table`), and stored in the layer as
integers, so that every implementation computes the same integers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LrnTable", "lrn_table", "lrn_window", "lrn_square_max", "lrn_integer", "LRN_TABLE_MAX", "LRN_ERROR_TARGET", "TABLE_BITS"]

#: The most table entries a layer may have.
LRN_TABLE_MAX = 4096
#: The interpolation error aimed for, in output LSB (the largest over every code and window sum).
LRN_ERROR_TARGET = 2.0 ** -12
#: Table values are unsigned below ``2**TABLE_BITS`` (their steps signed, of the same width plus one).
TABLE_BITS = 31


class LrnTable(NamedTuple):
    """A layer's table: segment width ``2**shift``, fixed-point fraction bits ``frac``, values ``g`` and steps
    ``dg`` (``dg[k] = g(k+1) - g[k]``, the next point's value minus this one's)."""

    shift: int
    frac: int
    g: tuple[int, ...]
    dg: tuple[int, ...]


def lrn_window(size: int) -> tuple[int, int]:
    """``(lo, hi)``: channels below and above the centre in ONNX's window of ``size`` channels."""
    return (size - 1) // 2, size // 2


def lrn_square_max(channels: int, size: int, d_max: int) -> int:
    """The largest window sum of squares ``S`` of ``channels`` channels whose ``|q - zp|`` is at most
    ``d_max``: ``min(size, channels) * d_max**2``."""
    return min(size, channels) * d_max * d_max


def _g(s: np.ndarray, ratio: float, bias: float, coeff: float, beta: float) -> np.ndarray:
    return ratio * (bias + coeff * s) ** -beta


def lrn_table(channels: int, d_max: int, s_in: float, s_out: float, size: int, alpha: float, beta: float,
              bias: float) -> LrnTable:
    """The table of a layer (float64, deterministic): the widest segments ``2**shift`` whose interpolation
    error, times the largest ``|d|`` a window sum ``S`` allows (``min(sqrt(S), d_max)``), stays within
    :data:`LRN_ERROR_TARGET` output LSB at every segment's middle, with at most :data:`LRN_TABLE_MAX` entries
    (the narrowest that fit when none meets the target); ``frac`` the most fraction bits that keep every value
    below ``2**TABLE_BITS``.

    Raises
    ------
    ValueError
        ``bias + alpha / size * s_in**2 * S`` is not positive over the window sums (``g`` undefined).
    """
    s_in, s_out = float(np.float32(s_in)), float(np.float32(s_out))
    ratio, coeff = s_in / s_out, float(alpha) / size * s_in * s_in
    s_max = lrn_square_max(channels, size, d_max)
    if bias <= 0 or bias + coeff * s_max <= 0:
        raise ValueError(f"bias {bias} + alpha/size * s_in^2 * S must be positive for S in 0..{s_max}")
    shift = 0
    while (s_max >> shift) + 1 > LRN_TABLE_MAX:
        shift += 1
    best = shift
    for t in range(shift, max(s_max.bit_length(), shift) + 1):
        # the error of a linear interpolation is largest near each segment's middle
        k = np.arange((s_max >> t) + 1, dtype=np.float64)
        mid = k * 2.0 ** t + 2.0 ** t / 2
        lin = (_g(k * 2.0 ** t, ratio, bias, coeff, beta) + _g((k + 1) * 2.0 ** t, ratio, bias, coeff, beta)) / 2
        err = np.abs(lin - _g(mid, ratio, bias, coeff, beta)) * np.minimum(np.sqrt(mid), d_max)
        if t > 0 and float(err.max()) > LRN_ERROR_TARGET:
            break
        best = t
    n = (s_max >> best) + 1
    pts = _g(np.arange(n + 1, dtype=np.float64) * 2.0 ** best, ratio, bias, coeff, beta)
    top = float(pts.max())
    frac = 62 if top <= 0 else int(np.floor(np.log2((2 ** TABLE_BITS - 1) / top)))
    frac = max(0, min(frac, 62))
    vals = [int(v) for v in np.rint(np.ldexp(pts, frac))]
    if max(vals) >= 2 ** TABLE_BITS:
        raise ValueError(f"g(0) = {top:.4g} (s_in / s_out / bias**beta) exceeds the table's range 2**{TABLE_BITS}")
    g = tuple(vals[:n])
    return LrnTable(best, frac, g, tuple(vals[k + 1] - vals[k] for k in range(n)))


def lrn_integer(d: np.ndarray, table: LrnTable, size: int, zp_out: int, qmin: int, qmax: int) -> np.ndarray:
    """The integer LRN of ``d = q - zp_in`` (int64, channels on axis 1): the codes (int64), see the module."""
    d = np.asarray(d, np.int64)
    c = d.shape[1]
    lo, hi = lrn_window(size)
    sq = d * d
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    idx = np.arange(c)
    s = np.take(csum, np.minimum(idx + hi + 1, c), axis=1) - np.take(csum, np.maximum(idx - lo, 0), axis=1)
    g, dg = np.asarray(table.g, np.int64), np.asarray(table.dg, np.int64)
    k, f = s >> table.shift, s & ((1 << table.shift) - 1)
    half_t = (1 << table.shift) >> 1
    gs = g[k] + ((dg[k] * f + half_t) >> table.shift)
    half_f = (1 << table.frac) >> 1
    y = zp_out + ((d * gs + half_f) >> table.frac)
    return np.clip(y, qmin, qmax)
