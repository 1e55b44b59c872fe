"""Integer arithmetic of the recursion and exact accumulation in two integer limbs.

The recursion runs on integers: each weight w_i = min(K, i) / (i K) = 1 / max(K, i) (1-based i) is
rounded once to the nearest multiple of 2**-62 (:func:`weight_units`), and the reverse cumulative sum
of the terms (m_i - m_{i+1}) w_i is exact in int64 (|s| <= 2**62: the terms alternate in sign and
their weights do not grow). So every per-test-point value is an exact function of the order and of
the rounded weights, within N * 2**-63 of the true value, and not of the order of any floating-point
operations. In particular two players that are symmetric for a test point get the same bits: their
values differ by a sum of terms between their positions which is zero exactly only when the terms
cancel in pairs of equal weight (an alternating sum of non-increasing weights), and equal weights
round to equal integers.

Every value (units 2**-62) is split exactly into ``hi`` (units 2**-31) and ``lo`` (units 2**-62,
|lo| <= 2**30); sums of up to 2**21 test points stay below 2**53, so they are exact in int64 and in
float64 alike: chunk size, thread count and test shards give the same values bit for bit.
"""

from __future__ import annotations

import numpy as np

#: Units of the two exact accumulation limbs of a sum: value = hi * 2**-HI_BITS + lo * 2**-LO_BITS.
HI_BITS = 31
LO_BITS = 63
#: Largest number of test points one sum may hold with exact limb arithmetic (|hi| <= 2**31 each).
MAX_TEST_POINTS = 2**21
#: Unit of the recursion's integers: weights and values are multiples of 2**-UNIT_BITS.
UNIT_BITS = 62

_HALF_HI = np.int64(1 << (UNIT_BITS - HI_BITS - 1))  # half a unit of the high limb, in recursion units
_LOW_MASK = np.int64((1 << (UNIT_BITS - HI_BITS)) - 1)
#: A low limb in recursion units times LO_SCALE is in the units of a sum's ``lo`` (2**-LO_BITS).
LO_SCALE = 1 << (LO_BITS - UNIT_BITS)


def weight_units(n: int, k: int) -> np.ndarray:
    """The recursion weights w_i = 1 / max(K, i), i = 1..n, in units of 2**-62, rounded to nearest
    (ties up), computed exactly in integers (int64, shape (n,))."""
    d = np.maximum(np.int64(k), np.arange(1, n + 1, dtype=np.int64))
    return (np.int64(1 << UNIT_BITS) + d // 2) // d


def split_units(s: np.ndarray, hi_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split int64 values ``s`` (units 2**-62, |s| <= 2**62) exactly into s = hi * 2**31 + lo.

    ``hi`` (units 2**-31, |hi| <= 2**31) goes to ``hi_out``; ``lo`` (units 2**-62, -2**30 <= lo < 2**30)
    overwrites ``s``. Returns (hi, lo).
    """
    s += _HALF_HI
    hi = np.right_shift(s, UNIT_BITS - HI_BITS, out=hi_out)  # floor: arithmetic shift
    np.bitwise_and(s, _LOW_MASK, out=s)
    s -= _HALF_HI
    return hi, s
