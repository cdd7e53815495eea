"""Bit-width arithmetic, in one place for the configuration, the generators, the ISA and the cost models.

Three questions come up again and again when sizing fields and counters; each has one function here:

- :func:`ceil_log2`: ``ceil(log2(n))`` (0 for ``n <= 1``), e.g. the adder-tree growth over ``n`` terms;
- :func:`index_bits`: bits of an unsigned field holding ``0 .. n-1`` (an address into ``n`` words), at least 1;
- :func:`count_bits`: bits of an unsigned counter holding ``0 .. n``, at least 1;

and :func:`exact_log2` for a value that must be a power of two (a weight precision, a lane count).
"""

from __future__ import annotations

__all__ = ["ceil_log2", "index_bits", "count_bits", "exact_log2"]


def ceil_log2(n: int) -> int:
    """``ceil(log2(n))`` for ``n >= 1``; 0 for ``n <= 1``."""
    return (n - 1).bit_length() if n > 1 else 0


def index_bits(n: int) -> int:
    """Bits of an unsigned field holding ``0 .. n-1`` (at least 1)."""
    return max(1, ceil_log2(n))


def count_bits(n: int) -> int:
    """Bits of an unsigned counter holding ``0 .. n`` (at least 1)."""
    return max(1, n.bit_length())


def exact_log2(n: int) -> int:
    """``log2(n)`` of a power of two.

    Raises
    ------
    ValueError
        ``n`` is not a positive power of two.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
        raise ValueError(f"{n!r} is not a power of two: allowed 1, 2, 4, 8, ...")
    return n.bit_length() - 1
