"""Requantisation (cimforge.golden.requant) against a scalar transcription of the gemmlowp / TFLite C++."""

import math

import numpy as np
import pytest

from cimforge.golden.requant import (INT32_MAX, INT32_MIN, NumericsError, multiply_by_quantized_multiplier,
                                     quantize_multiplier, quantize_multipliers, requantize, rounding_divide_by_pot,
                                     saturating_rounding_doubling_high_mul)

SEED = 20261124


# --- scalar references, written from the C++ with Python ints (C truncating division made explicit) ---------

def ref_srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    return int(v / 2**31) if abs(v) < 2**52 else (abs(v) >> 31) * (1 if v >= 0 else -1)


def ref_rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def ref_mbqm(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    shifted = min(max(x * (1 << left), INT32_MIN), INT32_MAX)
    return ref_rdbpot(ref_srdhm(shifted, m), right)


def ref_mbqm_single(x: int, m: int, shift: int) -> int:
    total = 31 - shift
    return min(max((x * m + (1 << (total - 1))) >> total, INT32_MIN), INT32_MAX)


def test_srdhm_truncation_reference_is_exact():
    # the reference must truncate towards zero for negative products, which int(v / 2**31) does when exact
    assert ref_srdhm(-3, 1 << 30) == int(-1.5 + (1 - 2**30) / 2**31)  # -3 * 2**30 / 2**31 = -1.5 -> rounds to -1
    assert ref_srdhm(-3, 1 << 30) == -1
    assert ref_srdhm(3, 1 << 30) == 2  # +1.5 -> ties upwards


# --- QuantizeMultiplier ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("real, expect", [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.25, (1 << 30, -1)),
    (0.75, (3 << 29, 0)),
    (2.0**-31, (1 << 30, -30)),
    (2.0**-32, (1 << 30, -31)),
    (2.0**-33, (0, 0)),          # below the smallest representable shift: zero
    (2.0**30, (INT32_MAX, 30)),  # frexp exponent 31 > 30: saturates
    (2.0**29, (1 << 30, 30)),
])
def test_quantize_multiplier_exact_values(real, expect):
    assert quantize_multiplier(real) == expect


def test_quantize_multiplier_rounds_mantissa_up_to_next_power():
    # a mantissa that rounds to 2**31 becomes 2**30 with the exponent one higher
    real = math.ldexp(1 - 2.0**-33, -3)
    assert quantize_multiplier(real) == (1 << 30, -2)


def test_quantize_multiplier_near_2_31():
    real = math.ldexp((2**31 - 1) / 2**31, 0)  # largest mantissa below 1
    m, s = quantize_multiplier(real)
    assert (m, s) == (2**31 - 1, 0)
    assert 2**30 <= m < 2**31


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf")])
def test_quantize_multiplier_rejects(bad):
    with pytest.raises(ValueError, match="finite and >= 0"):
        quantize_multiplier(bad)


def test_quantize_multipliers_accuracy():
    rng = np.random.default_rng(SEED)
    print("seed", SEED)
    reals = np.exp(rng.uniform(np.log(1e-9), np.log(100.0), 1000))
    m, s = quantize_multipliers(reals)
    assert m.shape == reals.shape and ((m >= 2**30) & (m < 2**31)).all()
    approx = m * np.exp2(s.astype(float) - 31)
    assert np.all(np.abs(approx / reals - 1) <= 2.0**-31)


# --- SaturatingRoundingDoublingHighMul and RoundingDivideByPOT ------------------------------------------------------

def test_srdhm_overflow_case_saturates():
    assert saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX
    assert saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MAX) == ref_srdhm(INT32_MIN, INT32_MAX)
    assert saturating_rounding_doubling_high_mul(INT32_MAX, INT32_MAX) == INT32_MAX - 1


@pytest.mark.parametrize("x, e, expect", [
    (5, 1, 3), (-5, 1, -3),        # ties away from zero
    (3, 1, 2), (-3, 1, -2),
    (6, 2, 2), (-6, 2, -2),        # 1.5 -> 2, -1.5 -> -2
    (5, 2, 1), (-5, 2, -1),        # 1.25 -> 1
    (7, 2, 2), (-7, 2, -2),        # 1.75 -> 2
    (INT32_MAX, 31, 1), (INT32_MIN, 31, -1), (-(2**30), 31, -1), (2**30, 31, 1), (2**30 - 1, 31, 0),
    (123, 0, 123), (-123, 0, -123),
])
def test_rounding_divide_by_pot_ties_and_extremes(x, e, expect):
    assert rounding_divide_by_pot(x, e) == expect == ref_rdbpot(x, e)


def test_rounding_divide_by_pot_rejects_exponent():
    with pytest.raises(ValueError, match="0..31"):
        rounding_divide_by_pot(1, 32)


def test_operands_must_be_int32():
    with pytest.raises(NumericsError, match="int32"):
        multiply_by_quantized_multiplier(2**31, 1 << 30, 0)


def _random_operands(rng, n):
    # mix uniform int32, small values, and the extremes
    x = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True), rng.integers(-300000, 300000, n),
                        [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]])
    m = np.concatenate([rng.integers(1 << 30, 1 << 31, len(x) - 4), [1 << 30, 2**31 - 1, 2**31 - 2, 0]])
    s = rng.integers(-31, 31, len(x))
    s[:8] = [-31, 30, 0, -1, 1, 29, -30, 0]
    return x, m, s


@pytest.mark.parametrize("rounding, ref", [("double", ref_mbqm), ("single", ref_mbqm_single)])
def test_mbqm_random_against_scalar_reference(rounding, ref):
    rng = np.random.default_rng(SEED)
    print("seed", SEED, "rounding", rounding)
    x, m, s = _random_operands(rng, 3000)
    got = multiply_by_quantized_multiplier(x, m, s, rounding)
    want = np.array([ref(int(a), int(b), int(c)) for a, b, c in zip(x, m, s)])
    np.testing.assert_array_equal(got, want)
    assert got.min() >= INT32_MIN and got.max() <= INT32_MAX


def test_mbqm_left_shift_saturates():
    # x * 2**shift overflows int32: the double form saturates before the multiply, the single form after
    assert multiply_by_quantized_multiplier(2**30, 2**31 - 1, 2, "double") == ref_mbqm(2**30, 2**31 - 1, 2)
    assert multiply_by_quantized_multiplier(2**30, 2**31 - 1, 2, "double") == INT32_MAX - 1
    assert multiply_by_quantized_multiplier(-(2**30), 2**31 - 1, 2, "double") == -INT32_MAX  # from INT32_MIN
    assert multiply_by_quantized_multiplier(2**30, 2**31 - 1, 2, "single") == INT32_MAX
    assert multiply_by_quantized_multiplier(-(2**30), 2**31 - 1, 2, "single") == INT32_MIN


def test_mbqm_rejects_bad_mode_and_shift():
    with pytest.raises(ValueError, match="rounding"):
        multiply_by_quantized_multiplier(1, 1 << 30, 0, "nearest")
    with pytest.raises(ValueError, match="shift"):
        multiply_by_quantized_multiplier(1, 1 << 30, 31)


def test_mbqm_rounding_of_exact_ties():
    # x / 16 with x = 16k + 8 is exactly k + 0.5: double rounding goes away from zero, single rounding up
    m, s = quantize_multiplier(1 / 16)
    assert (m, s) == (1 << 30, -3)
    x = np.arange(-64, 65, 16) + 8
    exact = x / 16
    double = multiply_by_quantized_multiplier(x, m, s, "double")
    single = multiply_by_quantized_multiplier(x, m, s, "single")
    np.testing.assert_array_equal(double, np.sign(exact) * np.ceil(np.abs(exact)))
    np.testing.assert_array_equal(single, np.ceil(exact))
    assert double[x == -8][0] == -1 and single[x == -8][0] == 0  # -0.5


def test_double_rounding_can_round_a_non_tie_the_wrong_way():
    # 7 / 16 = 0.4375: SaturatingRoundingDoublingHighMul rounds 3.5 up to 4, then RoundingDivideByPOT(4, 3)
    # sees an exact tie 0.5 and goes to 1: the gemmlowp scheme's known double rounding (1 LSB, near ties)
    m, s = quantize_multiplier(1 / 16)
    assert multiply_by_quantized_multiplier(7, m, s, "double") == 1
    assert multiply_by_quantized_multiplier(7, m, s, "single") == 0


def test_double_rounding_differs_from_exact_near_ties_only():
    # the documented 1 LSB effect: double rounding disagrees with one exact rounding only within 2**-(right+1)
    rng = np.random.default_rng(SEED)
    real = 0.0052
    m, s = quantize_multiplier(real)
    x = rng.integers(-25000, 25000, 200000)
    exact = x * (m * 2.0 ** (s - 31))
    d = multiply_by_quantized_multiplier(x, m, s, "double")
    single = multiply_by_quantized_multiplier(x, m, s, "single")
    near = np.floor(exact + 0.5)
    assert np.abs(d - near).max() <= 1 and np.abs(single - near).max() == 0
    frac = np.abs(exact - np.floor(exact) - 0.5)
    bad = d != near
    assert (frac[bad] <= 2.0 ** -(-s + 1) + 1e-12).all()
    print(f"right shift {-s}: double rounding differs from exact in {100 * bad.mean():.3f}% of values")


# --- requantize: clamp at both ends, zero point, negatives ---------------------------------------------------------

def test_requantize_saturates_at_both_ends_and_applies_zero_point():
    m, s = quantize_multiplier(0.01)
    acc = np.array([-10**9, -12800, -1000, -1, 0, 1, 1000, 12700, 10**9])
    y = requantize(acc, m, s, zero_point=-5, act_min=-128, act_max=127)
    want = np.clip([ref_mbqm(int(a), m, s) - 5 for a in acc], -128, 127)
    np.testing.assert_array_equal(y, want)
    assert y[0] == -128 and y[-1] == 127 and y[4] == -5
    y = requantize(acc, m, s, zero_point=10, act_min=10, act_max=200)  # uint8 with a fused ReLU
    assert y.min() == 10 and y.max() == 200


def test_requantize_per_channel_broadcast():
    reals = np.array([0.001, 0.01, 0.1])
    m, s = quantize_multipliers(reals)
    acc = np.arange(-600, 600, 7).reshape(1, -1, 1) * np.ones((2, 1, 3), int)
    acc = np.moveaxis(acc, 2, 1)  # (2, 3 channels, n)
    y = requantize(acc, m.reshape(1, 3, 1), s.reshape(1, 3, 1), 0, -128, 127, rounding="double")  # vs ref_mbqm
    for c in range(3):
        np.testing.assert_array_equal(y[:, c], [[ref_mbqm(int(a), int(m[c]), int(s[c])) for a in row]
                                                for row in acc[:, c]])


def test_quantize_multipliers_vectorised_equals_the_scalar_function():
    """The array form (frexp on whole arrays) gives exactly the scalar QuantizeMultiplier's (M, shift), over
    random reals of every magnitude and the edge cases (0, underflow below 2**-32, saturation, mantissa round-up)."""
    seed = 7
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    reals = np.concatenate([rng.uniform(0, 1, 5000), 10.0 ** rng.uniform(-12, 12, 5000),
                            [0.0, 2**-32, 2**-33, 2**31, 1e30, 0.5, 1.0, 1 - 2**-40, 2**-31]])
    m, s = quantize_multipliers(reals)
    assert [(int(a), int(b)) for a, b in zip(m, s)] == [quantize_multiplier(r) for r in reals]
    with pytest.raises(ValueError, match="finite and >= 0"):
        quantize_multipliers([1.0, -0.5])
