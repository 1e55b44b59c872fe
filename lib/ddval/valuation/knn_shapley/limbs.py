"""Exact accumulation of per-test-point values in two integer-valued limbs.

Every per-test-point value ``|s| <= 1`` is split into ``hi``, a multiple of 2**-31, and ``lo``, the rest
rounded once to a multiple of 2**-63 (an error of at most 2**-64). Float64 sums of such limbs are
exact for up to 2**21 test points, so the result does not depend on the order of the sums: chunk
size, thread count and test shards give the same values bit for bit.
"""

from __future__ import annotations

import numpy as np

#: Units of the two exact accumulation limbs: value = hi * 2**-HI_BITS + lo * 2**-LO_BITS.
HI_BITS = 31
LO_BITS = 63
#: Largest number of test points one sum may hold with exact limb arithmetic (|hi| <= 2**31 each).
MAX_TEST_POINTS = 2**21

#: Adding then subtracting 1.5 * 2**(52 - b) rounds |s| < 2**(51 - b) to a multiple of 2**-b, half to
#: even, exactly as rint(s * 2**b) * 2**-b (the constant is an even multiple of 2**-b).
_ROUND_HI = 1.5 * 2.0 ** (52 - HI_BITS)
_ROUND_LO = 1.5 * 2.0 ** (52 - LO_BITS)


def _limbs_np(s: np.ndarray, high: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split values |s| <= 1 into two limbs, in place: s ~ hi + lo with hi a multiple of 2**-31
    (exact split) and lo = the rest rounded once to a multiple of 2**-63 (|lo| <= 2**-32).

    Returns (hi, lo); ``lo`` overwrites ``s``. Sums of such limbs are exact in float64 while
    |sum hi| < 2**22 and |sum lo| < 2**-10, i.e. for up to 2**21 test points.
    """
    hi = np.add(s, _ROUND_HI, out=high)
    hi -= _ROUND_HI
    s -= hi  # exact (Sterbenz): |rest| <= 2**-32
    s += _ROUND_LO
    s -= _ROUND_LO
    return hi, s
