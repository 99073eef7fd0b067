"""harness.analysis.distributions against scipy.stats, whose distributions evaluate the same scipy.special functions:
the quantiles equal scipy's, the binomial CDF agrees to floating-point accuracy, and the binomial start is a start
(never off by more than a few ranks)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom, chi2, gamma, norm, poisson, t

from harness.analysis.distributions import (
    binomial_cdf,
    binomial_quantile_guess,
    chi2_quantile,
    gamma_upper_quantile,
    normal_quantile,
    poisson_quantile,
    student_t_quantile,
)

levels = st.floats(min_value=1e-6, max_value=1 - 1e-6)
probabilities = st.floats(min_value=1e-4, max_value=1 - 1e-4)


@given(st.integers(min_value=-2, max_value=2000), st.integers(min_value=1, max_value=2000), probabilities)
def test_the_binomial_cdf_is_scipys(k: int, n: int, p: float) -> None:
    assert binomial_cdf(k, n, p) == pytest.approx(float(binom.cdf(k, n, p)), rel=1e-9, abs=1e-300)


@given(levels, st.integers(min_value=1, max_value=100_000), probabilities)
def test_the_binomial_start_is_within_a_few_ranks_of_scipys_quantile(level: float, n: int, p: float) -> None:
    exact = int(binom.ppf(level, n, p))
    assert 0 <= binomial_quantile_guess(level, n, p) <= n
    assert abs(binomial_quantile_guess(level, n, p) - exact) <= 3 + 0.05 * exact**0.5


@given(levels, st.integers(min_value=1, max_value=2_000_002))
def test_the_chi2_quantile_is_scipys(level: float, degrees: int) -> None:
    assert chi2_quantile(level, degrees) == pytest.approx(float(chi2.ppf(level, degrees)), rel=1e-12)


@given(levels, st.integers(min_value=1, max_value=10_000))
def test_the_student_t_quantile_is_scipys(level: float, degrees: int) -> None:
    assert student_t_quantile(level, degrees) == pytest.approx(float(t.ppf(level, degrees)), rel=1e-12, abs=1e-12)


@given(levels, st.floats(min_value=1e-3, max_value=1e6))
def test_the_poisson_quantile_is_scipys(level: float, mean: float) -> None:
    assert poisson_quantile(level, mean) == int(poisson.ppf(level, mean))


@given(levels)
def test_the_normal_quantile_is_scipys(level: float) -> None:
    assert normal_quantile(level) == float(norm.ppf(level))


@given(levels, st.floats(min_value=0.5, max_value=1e6))
def test_the_gamma_upper_quantile_is_scipys(level: float, shape: float) -> None:
    assert gamma_upper_quantile(level, shape) == pytest.approx(float(gamma.isf(level, shape)), rel=1e-12)
