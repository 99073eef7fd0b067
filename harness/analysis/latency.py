"""Latency histograms (HdrHistogram, integer microseconds) and percentiles with distribution-free CIs.

Percentile semantics used everywhere in the harness: the q-th percentile of n samples is the order
statistic X_(r) with rank r = ceil(q/100 * n) (at least 1), the "inverted CDF" definition
(numpy.percentile(..., method="inverted_cdf")). HdrHistogram's own `get_value_at_percentile` rounds the
rank half-up instead; we compute ranks ourselves so that the point value and the confidence-interval
ranks come from one definition. Like HdrHistogram, a value is reported as the *highest* value equivalent
to its bucket (at 3 significant digits a bucket spans at most 1/1024 of its value), except the CI's lower
bound, which is the bucket's *lowest* equivalent value so the interval stays conservative.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from harness.analysis.distributions import binomial_cdf, binomial_quantile_guess, student_t_quantile
from harness.errors import MetricsError
from harness.model import PercentileEstimate

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy is imported where the arrays are made (`_counts`, `_equivalent_values_us`): recording and encoding
# (the load generator's work) and loading a scenario do not need it, and it takes a third of a second to import.

LOWEST_US = 1
HIGHEST_US = 3600 * 1_000_000
SIGNIFICANT_DIGITS = 3
_US_PER_S = 1_000_000.0


@cache
def _equivalent_values_us() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Lowest and highest value (us) equivalent to each counts index of the standard histogram layout."""
    import numpy as np

    layout = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    lowest = np.array([layout.get_value_from_index(i) for i in range(layout.counts_len)], dtype=np.int64)
    highest = np.array([layout.get_highest_equivalent_value(int(v)) for v in lowest], dtype=np.int64)
    return lowest, highest


def _exact(q: float) -> Fraction:
    # Fraction(str(99.9)) is exactly 999/10, while Fraction(99.9) carries binary rounding error that
    # would move ceil() by one rank.
    return Fraction(str(q))


def percentile_rank(q: float, n: int) -> int:
    """The 1-based rank r = ceil(q/100 * n), clamped to 1..n, of the q-th percentile among n samples."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} must be within 0..100")
    if n < 1:
        raise ValueError(f"percentile rank needs at least one sample, got n={n}")
    return min(n, max(1, math.ceil(_exact(q) * n / 100)))


class LatencyHistogram:
    """Counts of latencies in integer microseconds, 1 us .. 3600 s, 3 significant digits; mergeable."""

    def __init__(self) -> None:
        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    # ------------------------------------------------------------------ recording and merging

    def record_s(self, latency_s: float, count: int = 1) -> None:
        """Record `count` requests that took `latency_s` seconds (clamped to the histogram's 1 us .. 3600 s)."""
        if not math.isfinite(latency_s) or latency_s < 0:
            raise ValueError(f"latency_s={latency_s!r} must be a finite number >= 0")
        if count < 0:
            raise ValueError(f"count={count} must be >= 0")
        if count == 0:
            return
        value_us = min(HIGHEST_US, max(LOWEST_US, round(latency_s * _US_PER_S)))
        self._hist.record_value(value_us, count)

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's counts to this one (in place)."""
        self._hist.add(other._hist)

    @classmethod
    def merged(cls, histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
        """A new histogram holding the counts of all the given ones."""
        result = cls()
        for histogram in histograms:
            result.merge(histogram)
        return result

    # ------------------------------------------------------------------ wire form

    def encode(self) -> str:
        """HdrHistogram's compressed, base64 V2 encoding (interoperable with other HdrHistogram ports)."""
        encoded: bytes = self._hist.encode()
        return encoded.decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        """Rebuild a histogram from `encode()` output (any HdrHistogram layout is re-binned into ours)."""
        try:
            decoded = HdrHistogram.decode(text)
        except Exception as error:  # hdrh raises TypeError, zlib.error and its own cookie/length errors
            raise MetricsError(
                f"latency_hdr: not a base64 compressed HdrHistogram ({type(error).__name__}: {error})"
            ) from error
        result = cls()
        result._hist.add(decoded)
        return result

    # ------------------------------------------------------------------ statistics

    def _counts(self) -> npt.NDArray[np.uint64]:
        import numpy as np

        counts: npt.NDArray[np.uint64] = np.ctypeslib.as_array(self._hist.counts)
        return counts

    @property
    def count(self) -> int:
        """Number of recorded samples."""
        return int(self._hist.get_total_count())

    def _index_at_rank(self, cumulative: npt.NDArray[np.uint64], rank: int) -> int:
        return int(cumulative.searchsorted(rank, side="left"))

    def value_at_rank_s(self, rank: int) -> float:
        """The r-th smallest sample (1-based), as its bucket's highest equivalent value, in seconds."""
        if not 1 <= rank <= self.count:
            raise ValueError(f"rank={rank} must be within 1..{self.count}")
        index = self._index_at_rank(self._counts().cumsum(), rank)
        return float(_equivalent_values_us()[1][index]) / _US_PER_S

    def value_at_percentile_s(self, q: float) -> float | None:
        """The q-th percentile (0..100) in seconds, rank ceil(q/100 * n); None when empty."""
        n = self.count
        return None if n == 0 else self.value_at_rank_s(percentile_rank(q, n))

    def mean_s(self) -> float | None:
        """Mean latency (bucket midpoints) in seconds; None when empty."""
        n = self.count
        if n == 0:
            return None
        lowest, highest = _equivalent_values_us()
        midpoints = (lowest + highest).astype(float) / 2.0
        return float(self._counts().astype(float).dot(midpoints)) / n / _US_PER_S

    def min_lowest_s(self) -> float:
        """The smallest sample's bucket's lowest equivalent value in seconds (a conservative floor); 0 when empty."""
        counts = self._counts()
        nonzero = counts.nonzero()[0]
        return 0.0 if not len(nonzero) else float(_equivalent_values_us()[0][nonzero[0]]) / _US_PER_S

    def iter_buckets(self) -> Iterator[tuple[float, int]]:
        """(value_s, count) for every non-empty bucket in increasing order; value_s is the bucket's highest
        equivalent value, the same value the percentiles report."""
        counts = self._counts()
        highest = _equivalent_values_us()[1]
        for index in counts.nonzero()[0]:
            yield float(highest[index]) / _US_PER_S, int(counts[index])

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count})"


# --------------------------------------------------------------------------- percentile CIs


def order_statistic_ranks(n: int, q: float, confidence: float = 0.95) -> tuple[int | None, int | None]:
    """1-based ranks (j, k) with P(X_(j) <= x_q <= X_(k)) >= confidence for any continuous distribution.

    Equal-tailed and distribution-free: the number B of samples below the true quantile x_q is
    Binomial(n, q/100); X_(j) <= x_q iff B >= j and X_(k) >= x_q iff B <= k - 1, so coverage is
    F(k-1) - F(j-1). We take the largest j with F(j-1) <= alpha/2 and the smallest k with
    F(k-1) >= 1 - alpha/2. A bound is None when no rank within 1..n achieves its tail (too few samples).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be within (0, 1)")
    if n < 1 or q <= 0 or q >= 100:
        return None, None
    p = float(_exact(q) / 100)
    tail = (1.0 - confidence) / 2.0
    # From about the right rank, the loops walk to the exact one, settling floating-point ties either way.
    j = binomial_quantile_guess(tail, n, p) + 1
    while j >= 1 and binomial_cdf(j - 1, n, p) > tail:
        j -= 1
    while j < n and binomial_cdf(j, n, p) <= tail:
        j += 1
    k = binomial_quantile_guess(1.0 - tail, n, p) + 1
    while k >= 2 and binomial_cdf(k - 2, n, p) >= 1.0 - tail:
        k -= 1
    while k <= n and binomial_cdf(k - 1, n, p) < 1.0 - tail:
        k += 1
    return (j if j >= 1 else None), (k if k <= n else None)


def estimate_percentile(hist: LatencyHistogram, q: float, confidence: float = 0.95) -> PercentileEstimate:
    """The q-th percentile of a histogram with its order-statistic (binomial) confidence interval.

    value_s is X_(r), r = ceil(q/100 * n); ci_low_s/ci_high_s are X_(j)/X_(k) from
    `order_statistic_ranks` (None where that bound does not exist). j <= r <= k always, so
    ci_low_s <= value_s <= ci_high_s whenever the bounds exist.
    """
    n = hist.count
    if n == 0:
        return PercentileEstimate(q=q, value_s=None, ci_low_s=None, ci_high_s=None, samples=0, confidence=confidence)
    lowest, highest = _equivalent_values_us()
    cumulative = hist._counts().cumsum()
    rank = percentile_rank(q, n)
    value_s = float(highest[hist._index_at_rank(cumulative, rank)]) / _US_PER_S
    j, k = order_statistic_ranks(n, q, confidence)
    ci_low_s = None if j is None else float(lowest[hist._index_at_rank(cumulative, j)]) / _US_PER_S
    ci_high_s = None if k is None else float(highest[hist._index_at_rank(cumulative, k)]) / _US_PER_S
    return PercentileEstimate(
        q=q, value_s=value_s, ci_low_s=ci_low_s, ci_high_s=ci_high_s, samples=n, confidence=confidence
    )


def min_samples_for_percentile(q: float, min_tail_samples: int) -> int:
    """Fewest samples for a trustworthy pNN: at least `min_tail_samples` (k) of them above it.

    Rule: n >= ceil(k / (1 - q/100)); p95 with k=10 needs 200 samples, p99 needs 1000, p99.9 needs
    10000. This is a floor against reading a percentile off a handful of tail samples, not a precision
    guarantee. MLPerf LoadGen is stricter: it sizes runs so the percentile's one-sided binomial bound is
    within a small margin of the target percentile (for p99 at 99% confidence that comes to 270,336
    queries, rounded up to a multiple of 8192), so its minimum query counts are far larger.
    """
    if not 0 <= q < 100:
        raise ValueError(f"percentile q={q} must be within 0..100 (exclusive of 100)")
    if min_tail_samples < 1:
        raise ValueError(f"min_tail_samples={min_tail_samples} must be >= 1")
    return math.ceil(Fraction(min_tail_samples) / (1 - _exact(q) / 100))


# Sectioning needs at least this many batches for its t-interval to mean anything. No more than that
# either: on simulated M/D/1 stages at utilisation 0.8 (python -m bench.ci_coverage), 10 sections of a
# 30 s stage covered the true p95 in 84% of trials, 5 longer ones in 91% (p99: 81% and 85%), since
# short sections underrate how long a queue's bursts last; intervals are about a third wider.
# Sectioning alone covers p99 at utilisation 0.8 in 85% (30 s) and 87% (120 s) of trials, not for
# want of a correlation correction: adjacent sections' log p99 correlate at about 0.05, while 15% of
# 30 s windows hold no latency above the true p99, and the spread of a section's log p99 shrinks like
# n^-0.14, not n^-0.5, between 6 s and 30 s (too few independent bursts per section for the CLT).
# The exponential tail model (`tail_model_interval`, united with sectioning) brings that to 92%/93%
# (p95 92%/93%, every other row 0.91 or more) at x1.14/x1.06 sectioning's median width (x7.0/x7.3
# the order-statistic interval's); on 600 other windows (seed 777, unbinned values) 0.89/0.95
# against sectioning's 0.81/0.89, and on 400 windows each of two other paths (seeds 2024 and 31337,
# this code) 0.91/0.95 and 0.895/0.96 against 0.82/0.90 and 0.79/0.92 (p95 at 30 s 0.92 and 0.887).
# Jitter (bounded) stages are untouched: their tail's shape reads
# about -1, so the model is not used, and their widths stay x1.25/x1.26/x1.16 (p50/p95/p99) the
# order-statistic interval's.
# Measured and rejected there (p99 coverage 30 s / 120 s, median width x sectioning's): AR(1)
# inflation of the section variance as in ASAP3 (Steiger et al. 2005) 0.86/0.87 x1.15/x1.06;
# Newey-West at lag 1 0.85/0.87 x1.09/x1.04; overlapping batch quantiles (Meketon & Schmeiser 1984)
# 0.85/0.85 x0.93/x0.91; sectioning with jackknife 0.81/0.88; 4 sections 0.87/0.88 x1.20/x1.17;
# subsampling with an estimated rate (Bertail, Politis & Romano 1999) 0.68/0.77, that rate in the
# sectioning interval 0.88/0.89 x1.27/x1.42; Woodruff's (1952) inversion of a batch-means interval
# for F(x_q) 0.88/0.93 with no upper bound in 96%/78% of windows; more sections, 10 (0.81/0.81
# x0.83/x0.73) or 20 (0.74/0.74 x0.68/x0.61, p95 down to 0.77), the longer stage's in 12 s sections
# included; as many sections as runs of seconds above the estimate, 5..20 (0.85/0.82, p95 0.83 at
# 120 s); Johnson's (1978) skewness-corrected t on the log section values 0.86/0.91 x1.15/x1.15;
# sectioning of log(value - smallest latency) 0.86/0.88; the tail model over the p90 0.87/0.89 and
# p95 0.85/0.88, or over the p80 in 10 sections 0.89/0.92; a generalised Pareto
# tail of free shape (moments, Hosking & Wallis 1987) over the p70..p90 0.86/0.89 x1.07/x1.03, since
# a calm window reads a lighter tail than the queue's.
# Nor does leaving the upper bound open when a stage holds fewer than 4 independent tail events above
# the estimate (exp(-4) < 2.5%; events = per-second maxima above it, declustered; the second table of
# bench.ci_coverage): the windows sectioning misses hold *more* clusters above their low estimate
# than windows overall (median 5.5 against 3.2 at 30 s), since a calm window spreads its top 1% over
# many small bursts. Poisson-counted clusters reached 0.86/0.87 with 58%/4% of p99 intervals unbounded;
# runs of adjacent seconds 0.91/0.87 with 74%/9% unbounded, and every p50 and jitter p95 unbounded. An
# exponential peaks-over-threshold bound (excesses over the p95, cluster count as its sample size)
# never reached above sectioning's upper bound there (0.82 -> 0.82 in 60 trials at 30 s).
MIN_SECTIONS = 5
MAX_SECTIONS = 5


def sections_for(q: float, n: int) -> int:
    """How many contiguous sections a stage's n samples support for the q-th percentile: each section
    needs about 1 / (1 - q/100) samples (one above the percentile, on average); 0 when fewer than
    MIN_SECTIONS would have that."""
    per_section = math.ceil(1 / (1 - q / 100))
    sections = min(MAX_SECTIONS, n // per_section)
    return sections if sections >= MIN_SECTIONS else 0


def sectioning_interval(
    point_s: float, section_values_s: Sequence[float], confidence: float
) -> tuple[float, float] | None:
    """A confidence interval for a quantile of *dependent* samples (queueing latencies are correlated
    in time), by sectioning (Asmussen & Glynn, Stochastic Simulation, ch. IV.5) on a log scale: split
    the run into k contiguous sections, estimate the quantile in each, and use the spread of their
    logarithms around the whole-run estimate's: point * exp(+-t(k-1) * S / sqrt(k)),
    S^2 = sum((log section - log point)^2) / (k - 1).

    Section estimates of a tail quantile are right-skewed (a section holding one burst reads several
    times the others); a symmetric interval around them reaches below zero, while on a log scale the
    interval stays positive and stretches upwards, where the uncertainty is. None with fewer than two
    sections or a value that is not positive.
    """
    k = len(section_values_s)
    if k < 2 or point_s <= 0 or min(section_values_s) <= 0:
        return None
    log_point = math.log(point_s)
    spread = math.sqrt(sum((math.log(value) - log_point) ** 2 for value in section_values_s) / (k - 1))
    half_width = student_t_quantile((1 + confidence) / 2, k - 1) * spread / math.sqrt(k)
    return point_s * math.exp(-half_width), point_s * math.exp(half_width)


# The tail model extrapolates from the samples above this percentile: at 30 s and 80 rps 720 of them
# where the p99 has 24 in about 2 bursts (thresholds p60..p75 measured within 0.015).
TAIL_THRESHOLD_Q = 70.0
# Below this shape the tail over the threshold is bounded (a uniform one reads -1, an exponential 0;
# M/D/1 stages at 30 s read -0.4 at the lowest of 600 windows), and the exponential model is not used.
BOUNDED_TAIL_SHAPE = -0.5


def _excesses(hist: LatencyHistogram, threshold_q: float) -> tuple[float, float, float, float] | None:
    """(threshold u, share of samples above u, mean and variance of their excesses over u), values as
    the percentiles report them; None with fewer than two samples above u or no spread among them."""
    import numpy as np

    n = hist.count
    if n == 0:
        return None
    u = hist.value_at_percentile_s(threshold_q)
    assert u is not None
    counts = hist._counts()
    index = counts.nonzero()[0]
    values = _equivalent_values_us()[1][index].astype(float) / _US_PER_S
    weights = counts[index].astype(float)
    above = values > u
    above_n = float(weights[above].sum())
    if above_n < 2:
        return None
    excess = values[above] - u
    mean = float(np.dot(weights[above], excess)) / above_n
    variance = float(np.dot(weights[above], (excess - mean) ** 2)) / (above_n - 1)
    if mean <= 0 or variance <= 0:
        return None
    return u, above_n / n, mean, variance


def tail_shape(hist: LatencyHistogram, threshold_q: float = TAIL_THRESHOLD_Q) -> float | None:
    """The generalised Pareto shape of the excesses over the threshold_q-th percentile, by moments
    (Hosking & Wallis 1987): (1 - mean^2 / variance) / 2; 0 for an exponential tail, -1 for a uniform
    one; None where `_excesses` is."""
    found = _excesses(hist, threshold_q)
    return None if found is None else _shape(found)


def _shape(excesses: tuple[float, float, float, float]) -> float:
    _, _, mean, variance = excesses
    return 0.5 * (1.0 - mean * mean / variance)


def exponential_tail_percentile(
    hist: LatencyHistogram, q: float, threshold_q: float = TAIL_THRESHOLD_Q
) -> float | None:
    """The q-th percentile extrapolated from an exponential tail over the threshold_q-th percentile u:
    u + ln(p_u / (1 - q/100)) * m, p_u the share of samples above u and m their mean excess (the
    exponential's maximum-likelihood scale). Waiting times of a GI/G/1 queue with light-tailed service
    have exponential tails (Cramér-Lundberg; Asmussen, Applied Probability and Queues, ch. XIII.5), and
    the samples above a low threshold come in many more bursts than those above the q-th percentile
    itself. None where `_excesses` is, for q <= threshold_q, or when the result is not positive."""
    if q <= threshold_q:
        return None
    found = _excesses(hist, threshold_q)
    return None if found is None else _extrapolated(found, q)


def _extrapolated(excesses: tuple[float, float, float, float], q: float) -> float | None:
    u, share, mean, _ = excesses
    value = u + math.log(share / (1 - q / 100)) * mean
    return value if value > 0 else None


def tail_model_interval(
    whole: LatencyHistogram, sections: Sequence[LatencyHistogram], q: float, confidence: float
) -> tuple[float, float] | None:
    """A confidence interval for the q-th percentile from an exponential tail: the log-scale sectioning
    interval (`sectioning_interval`) of `exponential_tail_percentile` over the whole stage and its
    sections, so the threshold's and the scale's uncertainty, and their correlation in time, come from
    the spread between sections.

    A stage's p99 rests on a couple of queue bursts: 15% of 30 s windows at utilisation 0.8 hold no
    latency above the true p99, and no interval drawn from the p99's own neighbourhood reaches it
    there; the tail over the p70 shows how far the bursts reach. None for a bounded tail (shape below
    BOUNDED_TAIL_SHAPE: unguarded, the model over the p80 made a uniform jitter's p99 interval 16 times
    as wide), for q <= TAIL_THRESHOLD_Q, with fewer than MIN_SECTIONS sections the model fits, or where
    `sectioning_interval` is None.
    """
    # The whole stage's excesses decide both whether the tail is bounded and the point estimate.
    excesses = _excesses(whole, TAIL_THRESHOLD_Q)
    if excesses is None or _shape(excesses) < BOUNDED_TAIL_SHAPE or q <= TAIL_THRESHOLD_Q:
        return None
    point = _extrapolated(excesses, q)
    found = [exponential_tail_percentile(section, q) for section in sections if section.count]
    values = [value for value in found if value is not None]
    if point is None or len(values) < MIN_SECTIONS:
        return None
    return sectioning_interval(point, values, confidence)


def estimate_percentile_dependent(
    whole: LatencyHistogram, sections: Sequence[LatencyHistogram], q: float, confidence: float = 0.95
) -> PercentileEstimate:
    """`estimate_percentile`, with its interval widened to cover the sectioning interval and the tail
    model's interval as well.

    The order-statistic interval assumes independent samples and is too narrow for correlated ones
    (near saturation its nominal 95% covered the true p99 in a third of trials or less); the
    sectioning interval reflects the correlation but needs several sections, and misses where a
    stage's few bursts all stayed below the percentile; the tail model (`tail_model_interval`)
    extrapolates from the many more bursts above a low threshold. The union is never narrower than
    any of them, so it stays valid in all these regimes. Its lower bound is never below the smallest
    observed latency (its bucket's lowest value): with n samples the true q-th percentile lies below
    all of them with probability (1 - q/100)^n only. Measured coverage and widths:
    `python -m bench.ci_coverage`.
    """
    iid = estimate_percentile(whole, q, confidence)
    values = [section.value_at_percentile_s(q) for section in sections if section.count]
    usable = [value for value in values if value is not None]
    if iid.value_s is None or len(usable) < MIN_SECTIONS:
        return iid
    found = [sectioning_interval(iid.value_s, usable, confidence), tail_model_interval(whole, sections, q, confidence)]
    intervals = [interval for interval in found if interval is not None]
    if not intervals:
        return iid
    smallest_s = whole.min_lowest_s()
    low = None if iid.ci_low_s is None else max(smallest_s, min(iid.ci_low_s, *(i[0] for i in intervals)))
    high = None if iid.ci_high_s is None else max(iid.ci_high_s, *(i[1] for i in intervals))
    return PercentileEstimate(
        q=q, value_s=iid.value_s, ci_low_s=low, ci_high_s=high, samples=iid.samples, confidence=confidence
    )
