"""The few distribution functions the statistics use, from `scipy.special`: the functions scipy.stats's
distributions evaluate themselves, imported in about a fifth of scipy.stats's time (0.19 s against 0.70 s
here), which every `harness run`, `report` and sweep probe pays once when it concludes.

Each matches scipy.stats to floating-point accuracy (tests/analysis/test_distributions.py compares them); imported
where used, so that start-up stays fast."""

from __future__ import annotations

import math


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(B <= k) for B ~ Binomial(n, p) (scipy.stats.binom.cdf)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    from scipy.special import bdtr

    return float(bdtr(k, n, p))


def binomial_quantile_guess(level: float, n: int, p: float) -> int:
    """About the smallest k with P(B <= k) >= level, from the normal approximation: a start for a search that
    settles the exact rank with `binomial_cdf` (a few steps at most)."""
    from statistics import NormalDist

    mean, spread = n * p, math.sqrt(n * p * (1 - p))
    return min(max(round(mean + NormalDist().inv_cdf(level) * spread), 0), n)


def normal_quantile(level: float) -> float:
    """scipy.stats.norm.ppf(level), as scipy computes it."""
    from scipy.special import ndtri

    return float(ndtri(level))


def gamma_upper_quantile(level: float, shape: float) -> float:
    """scipy.stats.gamma.isf(level, shape): the x with P(X > x) = level for X ~ Gamma(shape, 1), as scipy
    computes it."""
    from scipy.special import gammainccinv

    return float(gammainccinv(shape, level))


def chi2_quantile(level: float, degrees: float) -> float:
    """scipy.stats.chi2.ppf(level, degrees), as scipy computes it."""
    from scipy.special import gammaincinv

    return 2.0 * float(gammaincinv(degrees / 2.0, level))


def student_t_quantile(level: float, degrees: float) -> float:
    """scipy.stats.t.ppf(level, degrees), as scipy computes it."""
    from scipy.special import stdtrit

    return float(stdtrit(degrees, level))


def poisson_quantile(level: float, mean: float) -> int:
    """scipy.stats.poisson.ppf(level, mean) for 0 < level < 1 and mean > 0: the smallest k with P(X <= k) >= level,
    as scipy computes it."""
    from scipy.special import pdtr, pdtrik

    above = math.ceil(float(pdtrik(level, mean)))
    below = max(above - 1, 0)
    return below if float(pdtr(below, mean)) >= level else above
