"""exact_shapley takes numbers only (issue 17, case 9: a utility returning "1" counted as 1.0)."""

from fractions import Fraction

import numpy as np
import pytest

from ddval.valuation.shapley import exact_shapley


@pytest.mark.parametrize("bad", ["1", b"1", True, None, [1.0], np.array([1.0])])
def test_non_numeric_worths_are_rejected_naming_the_coalition(bad):
    utility = {frozenset(): 0.0, frozenset({"a"}): bad}
    with pytest.raises(ValueError, match=r"worth of coalition \{a\} is not a number"):
        exact_shapley(utility, ["a"])
    with pytest.raises(ValueError, match=r"is not a number"):
        exact_shapley(lambda c: bad if c else 0.0, ["a"])


@pytest.mark.parametrize("good", [1, 1.0, np.float32(1.0), np.int64(1), Fraction(1, 1)])
def test_real_numbers_of_any_type_are_accepted(good):
    assert exact_shapley({frozenset(): 0.0, frozenset({"a"}): good}, ["a"]) == {"a": 1.0}
