"""pass@k: the product form against exact binomials and against counting subsets."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from scratchllm.finetuning import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n", [1, 2, 5, 10, 30])
def test_equals_one_minus_binomial_ratio(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
            assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


@pytest.mark.parametrize(("n", "c"), [(6, 0), (6, 1), (6, 3), (7, 2), (8, 7)])
def test_equals_the_share_of_k_subsets_holding_a_correct_sample(n, c):
    samples = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(samples, k))
        share = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(share, abs=1e-12)


def test_large_n_needs_no_huge_binomials_and_is_not_the_biased_formula():
    # n = 1000 samples, 10 correct, k = 100
    got = pass_at_k(1000, 10, 100)
    exact = 1 - Fraction(math.comb(990, 100), math.comb(1000, 100))
    assert got == pytest.approx(float(exact), rel=1e-10)
    biased = 1 - (1 - 10 / 1000) ** 100  # with replacement: lower
    assert got > biased + 0.01


def test_mean_over_problems():
    assert mean_pass_at_k([(4, 0), (4, 4), (4, 2)], k=1) == pytest.approx((0 + 1 + 0.5) / 3)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"k \(5\) must be between 1 and the number of samples"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="correct count"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="at least one problem"):
        mean_pass_at_k([], 1)
