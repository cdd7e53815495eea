"""Integer requantisation: the TFLite / gemmlowp fixed-point scheme (docs/architecture.md section 5).

A real multiplier ``r > 0`` (for a convolution ``s_in * s_w / s_out``) is represented as a 32-bit fixed-point
multiplier ``M`` in ``[2**30, 2**31)`` and a power-of-two exponent ``shift`` (TFLite's sign convention: a
positive ``shift`` is a left shift), so that ``r ~= M * 2**(shift - 31)``. An int32 accumulator is then scaled
by ``MultiplyByQuantizedMultiplier``::

    left  = max(shift, 0);  right = max(-shift, 0)
    y = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2**left, M), right)

and the output is ``clamp(zp_out + y, act_min, act_max)``. Both steps round to nearest; ties round away from
zero in ``RoundingDivideByPOT`` and upwards (towards +inf) in ``SaturatingRoundingDoublingHighMul``.

Every function here is vectorised over numpy arrays (``M``, ``shift`` broadcast against the values, so a
per-channel multiplier is an array shaped to broadcast along the channel axis) and bit-exact with the C++
reference of gemmlowp/TFLite, with one documented choice: ``acc * 2**left`` saturates to int32 where the C++
reference would overflow (undefined behaviour there; never reached by real scales, whose ``shift`` is <= 0 for
convolutions; the RTL must saturate the same way).

Rounding modes
--------------
``"double"`` (docs/architecture.md section 5) is the scheme above: two roundings, the first at
``2**-31`` of the multiplier's range, the second by the right shift. Because the first rounding moves the value
by up to ``2**-(right+1)`` output LSB before the second, a fraction of about ``2**-(right+1)`` of all outputs
land on the other side of a half-way point than an exact (float) rounding would put them: 1 LSB differences
from onnxruntime (which rounds ``acc * float_scale`` once, half to even) in ~0.2 % of the outputs of a layer
with a right shift of 7, and ~12 % for a right shift of 2 (a 4x4 global average pool).

``"single"`` is TFLite's ``TFLITE_SINGLE_ROUNDING`` variant of the same function, with the same ``(M, shift)``:
``(x * M + 2**(30 - shift)) >> (31 - shift)``: one rounding, half up (towards +inf). It agrees with a float
rounding except within ``~2**-31`` relative of a tie, and needs less hardware (one product, one rounding shift).
It is the default (:data:`DEFAULT_ROUNDING`): it meets the agreement bound against onnxruntime (every tensor
>= 99.9% identical, <= 1 LSB) where the double form does not.
See docs/golden.md for the measurements.

Ties to even
------------
Both forms round an exact tie (``x * M * 2**(shift - 31)`` an odd multiple of 1/2) away from the even
neighbour half the time, where onnxruntime's ``QuantizeLinear`` rounds it to even. The exact ties are common
only where the real multiplier is a short binary fraction: an average pool whose input and output share a scale
(``acc / 4``, ``acc / 64``). ``even=True`` (:func:`multiply_by_quantized_multiplier`; the POOL engine's
``round_even`` field) moves every exact tie to its even neighbour, in either form; nothing else changes.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import DEFAULT_ROUNDING, ROUNDINGS

__all__ = [
    "INT32_MIN", "INT32_MAX", "NumericsError",
    "quantize_multiplier", "quantize_multipliers",
    "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier", "exact_ties", "requantize", "ROUNDING_MODES", "DEFAULT_ROUNDING",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: ``"double"``: gemmlowp SaturatingRoundingDoublingHighMul then RoundingDivideByPOT (docs/architecture.md
#: section 5); ``"single"``: TFLite's TFLITE_SINGLE_ROUNDING form. See the module docstring. Both names are the
#: configuration's (one definition): the default is the form a design builds unless ``fabric.rounding`` says
#: otherwise.
ROUNDING_MODES = ROUNDINGS


class NumericsError(ValueError):
    """An integer operation would leave its documented range (for example an accumulator beyond int32)."""


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: a non-negative real multiplier as ``(M, shift)``.

    Parameters
    ----------
    real : float
        The real multiplier, finite and >= 0.

    Returns
    -------
    (int, int)
        ``M`` in ``[2**30, 2**31)`` (or 0 for ``real == 0`` and for reals below ``2**-32``) and ``shift`` in
        ``[-31, 30]`` with ``real ~= M * 2**(shift - 31)``. ``M`` is rounded half away from zero
        (``std::round``); a mantissa that rounds up to ``2**31`` becomes ``2**30`` with ``shift + 1``. Reals
        too large for ``shift <= 30`` saturate to ``(2**31 - 1, 30)``, as in current TFLite.

    Raises
    ------
    ValueError
        If ``real`` is negative, NaN or infinite.
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"real multiplier must be finite and >= 0, not {real!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q * 2**shift, q in [0.5, 1)
    q_fixed = math.floor(q * 2.0**31 + 0.5)  # std::round for positive values: half away from zero
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return INT32_MAX, 30
    return int(q_fixed), int(shift)


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` element-wise; returns int64 arrays ``(M, shift)`` shaped like ``reals``."""
    reals = np.asarray(reals, dtype=np.float64)
    if reals.size and (not np.all(np.isfinite(reals)) or np.any(reals < 0)):
        bad = reals[~np.isfinite(reals) | (reals < 0)].ravel()[0]
        raise ValueError(f"real multiplier must be finite and >= 0, not {float(bad)!r}")
    # the scalar function's steps on whole arrays (a BatchNormalization's magnitude search quantizes thousands)
    q, shift = np.frexp(reals)
    q_fixed = np.floor(q * 2.0**31 + 0.5)  # exact in float64: q * 2**31 < 2**31
    up = q_fixed == 2.0**31
    q_fixed = np.where(up, q_fixed / 2, q_fixed)
    shift = shift + up
    zero = (reals == 0.0) | (shift < -31)
    big = shift > 30
    m = np.where(zero, 0, np.where(big, INT32_MAX, q_fixed)).astype(np.int64)
    s = np.where(zero, 0, np.where(big, 30, shift)).astype(np.int64)
    return m, s


def _check_int32(x: np.ndarray, what: str) -> None:
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise NumericsError(f"{what} leaves the int32 range: [{int(x.min())}, {int(x.max())}]")


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**31)`` on int32 values.

    The product is rounded to nearest with ties towards +inf (nudge ``2**30``, or ``1 - 2**30`` for a
    negative product, then division truncating towards zero); the single overflowing case
    ``a == b == -2**31`` saturates to ``2**31 - 1``.

    Parameters
    ----------
    a, b : array_like of int
        int32 values (checked), broadcast against each other.

    Returns
    -------
    numpy.ndarray of int64
        Values in the int32 range.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    _check_int32(a, "SaturatingRoundingDoublingHighMul operand a")
    _check_int32(b, "SaturatingRoundingDoublingHighMul operand b")
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b  # |ab| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    v = ab + nudge
    # C division truncates towards zero; numpy's >> floors, so divide the magnitude.
    high = np.where(v >= 0, v >> 31, -((-v) >> 31))
    return np.where(overflow, np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded to nearest, ties away from zero.

    Parameters
    ----------
    x : array_like of int
        int32 values (checked).
    exponent : array_like of int
        Shift amounts in ``0..31``, broadcast against ``x``.

    Returns
    -------
    numpy.ndarray of int64
    """
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    _check_int32(x, "RoundingDivideByPOT operand")
    if e.size and (e.min() < 0 or e.max() > 31):
        raise ValueError(f"RoundingDivideByPOT exponent must be in 0..31, got [{int(e.min())}, {int(e.max())}]")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def exact_ties(x, multiplier, shift) -> np.ndarray:
    """Where ``x * M * 2**(shift - 31)`` is exactly halfway between two integers (boolean, broadcast).

    ``x * M`` is exact in int64 (both are int32), and the value is a tie when its last ``31 - shift`` bits are
    ``1`` followed by zeros, i.e. when the trailing zeros of ``x`` and of ``M`` add up to ``30 - shift`` (the
    form the POOL engine evaluates: one mask compare per lane, :class:`cimforge.gen.vector.PoolEngine`)."""
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    total = 31 - np.asarray(shift, dtype=np.int64)  # 1..62
    return np.mod(x * multiplier, np.int64(1) << total) == (np.int64(1) << (total - 1))


def _to_even(x, y, multiplier, shift, rounding: str) -> np.ndarray:
    """``y`` (the form's result) with every exact tie moved to the even one of its two neighbours. Both forms
    round a tie up except the double form with a right shift on a negative value (RoundingDivideByPOT: away
    from zero, down); so an odd ``y`` at a tie steps down by one, or up in that case."""
    down = (np.asarray(x) < 0) & (np.asarray(shift) < 0) if rounding == "double" else np.zeros((), bool)
    odd = exact_ties(x, multiplier, shift) & (y % 2 == 1)
    return np.where(odd, np.where(down, y + 1, y - 1), y)


def multiply_by_quantized_multiplier(x, multiplier, shift, rounding: str | None = None,
                                     even: bool = False) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier``: ``x * M * 2**(shift - 31)`` rounded to nearest.

    Parameters
    ----------
    x : array_like of int
        int32 accumulators (checked).
    multiplier, shift : array_like of int
        From :func:`quantize_multiplier`, broadcast against ``x`` (per-channel arrays must be shaped to
        broadcast along the channel axis).
    rounding : {"double", "single"}, optional
        Default :data:`DEFAULT_ROUNDING`; see the module docstring.
    even : bool, optional
        Exact ties go to the even neighbour (:func:`exact_ties`; the module docstring's "Ties to even").

    Returns
    -------
    numpy.ndarray of int64
        The scaled values (int32 range).

    Notes
    -----
    ``"double"``: ``x * 2**left`` saturates to int32 (the C++ reference overflows there). ``"single"``: the
    result saturates to int32 (the C++ reference asserts it fits).
    """
    rounding = DEFAULT_ROUNDING if rounding is None else rounding
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, not {rounding!r}")
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    _check_int32(x, "requantisation input")
    if shift.size and (shift.min() < -31 or shift.max() > 30):
        raise ValueError(f"shift must be in -31..30, got [{int(shift.min())}, {int(shift.max())}]")
    if rounding == "single":
        _check_int32(multiplier, "quantized multiplier")
        total = 31 - shift  # 1..62; |x * M| < 2**62 and the nudge < 2**61: exact in int64
        y = np.clip((x * multiplier + (np.int64(1) << (total - 1))) >> total, INT32_MIN, INT32_MAX)
    else:
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        shifted = np.clip(x << left, INT32_MIN, INT32_MAX)
        y = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)
    return _to_even(x, y, multiplier, shift, rounding) if even else y


def requantize(acc, multiplier, shift, zero_point: int, act_min: int, act_max: int,
               rounding: str | None = None, even: bool = False) -> np.ndarray:
    """``clamp(zero_point + MultiplyByQuantizedMultiplier(acc, M, shift), act_min, act_max)``.

    Parameters
    ----------
    acc : array_like of int
        int32 accumulators.
    multiplier, shift : array_like of int
        Broadcast against ``acc``.
    zero_point : int
        Output zero point.
    act_min, act_max : int
        Output clamp bounds (the dtype's range, narrowed by a fused ReLU/ReLU6/Clip).
    rounding : {"double", "single"}, optional
        See :func:`multiply_by_quantized_multiplier`.
    even : bool, optional
        Exact ties to even (before the zero point is added, as ``QuantizeLinear`` rounds).

    Returns
    -------
    numpy.ndarray of int64
        Values in ``[act_min, act_max]``; the caller casts to the output dtype.
    """
    y = multiply_by_quantized_multiplier(acc, multiplier, shift, rounding, even) + int(zero_point)
    return np.clip(y, int(act_min), int(act_max))
