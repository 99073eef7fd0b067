"""Tests for harness.analysis.latency: histogram accuracy, merging, encoding, percentile CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from harness.analysis.latency import (
    HIGHEST_US,
    LatencyHistogram,
    _equivalent_values_us,
    estimate_percentile,
    min_samples_for_percentile,
    order_statistic_ranks,
    percentile_rank,
)
from harness.errors import MetricsError

latencies_s = st.floats(min_value=1e-6, max_value=100.0, allow_nan=False, allow_infinity=False)
samples_s = st.lists(latencies_s, min_size=1, max_size=300)
percentiles = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
inner_percentiles = st.sampled_from([1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9])


def histogram_of(values: list[float]) -> LatencyHistogram:
    hist = LatencyHistogram()
    for value in values:
        hist.record_s(value)
    return hist


def within_hdr_precision(measured_s: float, exact_s: float) -> bool:
    # 3 significant digits: a bucket spans at most 1/1024 of its value, plus 1 us rounding.
    return abs(measured_s - exact_s) <= exact_s / 1024 + 1e-6


# --------------------------------------------------------------------------- histogram


def test_layout_buckets_are_contiguous_and_increasing() -> None:
    lowest, highest = _equivalent_values_us()
    assert np.all(highest >= lowest)
    assert np.all(highest[:-1] + 1 == lowest[1:])
    assert highest[-1] >= HIGHEST_US


def test_empty_histogram_has_no_values() -> None:
    hist = LatencyHistogram()
    assert hist.count == 0
    assert hist.value_at_percentile_s(99) is None
    assert hist.mean_s() is None
    assert hist.value_at_percentile_s(100) is None
    assert list(hist.iter_buckets()) == []


def test_small_values_are_exact_to_the_microsecond() -> None:
    hist = histogram_of([0.000_250, 0.000_100, 0.000_999])
    assert hist.value_at_percentile_s(0) == pytest.approx(0.000_100)
    assert hist.value_at_percentile_s(50) == pytest.approx(0.000_250)
    assert hist.value_at_percentile_s(100) == pytest.approx(0.000_999)


def test_record_count_and_clamping() -> None:
    hist = LatencyHistogram()
    hist.record_s(0.010, count=7)
    hist.record_s(0.0, count=1)  # below 1 us: recorded as 1 us
    hist.record_s(10_000.0)  # above an hour: recorded at the top of the range
    assert hist.count == 9
    assert hist.value_at_percentile_s(0) == pytest.approx(1e-6)
    top = hist.value_at_percentile_s(100)
    assert top is not None and top >= 3600.0
    hist.record_s(1.0, count=0)
    assert hist.count == 9


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf])
def test_record_rejects_impossible_latencies(bad: float) -> None:
    with pytest.raises(ValueError, match="latency_s"):
        LatencyHistogram().record_s(bad)


def test_record_rejects_negative_count() -> None:
    with pytest.raises(ValueError, match="count"):
        LatencyHistogram().record_s(0.1, count=-1)


def test_decode_rejects_garbage_with_metrics_error() -> None:
    with pytest.raises(MetricsError, match="latency_hdr"):
        LatencyHistogram.decode("not a histogram")


def test_value_at_rank_bounds() -> None:
    hist = histogram_of([0.1, 0.2])
    with pytest.raises(ValueError, match="rank"):
        hist.value_at_rank_s(3)
    assert hist.value_at_rank_s(2) == pytest.approx(0.2, rel=1e-3)


@given(samples_s, percentiles)
@settings(max_examples=200, deadline=None)
def test_percentile_matches_numpy_inverted_cdf_within_hdr_precision(values: list[float], q: float) -> None:
    hist = histogram_of(values)
    measured = hist.value_at_percentile_s(q)
    exact = float(np.percentile(np.array(values), q, method="inverted_cdf"))
    assert measured is not None
    assert within_hdr_precision(measured, exact)


@given(samples_s)
@settings(max_examples=100, deadline=None)
def test_mean_max_and_buckets_agree_with_samples(values: list[float]) -> None:
    hist = histogram_of(values)
    mean, top = hist.mean_s(), hist.value_at_percentile_s(100)
    assert mean is not None and top is not None
    assert within_hdr_precision(mean, float(np.mean(values)))
    assert within_hdr_precision(top, max(values))
    buckets = list(hist.iter_buckets())
    assert sum(count for _, count in buckets) == len(values)
    assert [value for value, _ in buckets] == sorted(value for value, _ in buckets)


@given(samples_s)
@settings(max_examples=100, deadline=None)
def test_encode_decode_round_trip(values: list[float]) -> None:
    hist = histogram_of(values)
    text = hist.encode()
    assert isinstance(text, str)
    decoded = LatencyHistogram.decode(text)
    assert decoded.count == hist.count
    assert list(decoded.iter_buckets()) == list(hist.iter_buckets())


def test_encode_decode_empty() -> None:
    assert LatencyHistogram.decode(LatencyHistogram().encode()).count == 0


@given(samples_s, samples_s, samples_s)
@settings(max_examples=60, deadline=None)
def test_merge_is_associative_and_commutative(a: list[float], b: list[float], c: list[float]) -> None:
    ha, hb, hc = histogram_of(a), histogram_of(b), histogram_of(c)
    left = LatencyHistogram.merged([LatencyHistogram.merged([ha, hb]), hc])
    right = LatencyHistogram.merged([ha, LatencyHistogram.merged([hb, hc])])
    swapped = LatencyHistogram.merged([hc, hb, ha])
    everything = histogram_of(a + b + c)
    expected = list(everything.iter_buckets())
    assert list(left.iter_buckets()) == expected
    assert list(right.iter_buckets()) == expected
    assert list(swapped.iter_buckets()) == expected
    assert left.count == len(a) + len(b) + len(c)


def test_decode_rebins_a_foreign_layout() -> None:
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

    foreign = HdrHistogram(1, 60 * 1_000_000, 2)
    foreign.record_value(12_345, 4)
    foreign.record_value(250, 1)
    decoded = LatencyHistogram.decode(foreign.encode().decode("ascii"))
    assert decoded.count == 5
    assert decoded.value_at_percentile_s(100) == pytest.approx(0.012345, rel=1e-2)
    assert decoded.value_at_percentile_s(0) == pytest.approx(0.000250, rel=1e-2)


def test_merge_of_decoded_histograms() -> None:
    one, two = histogram_of([0.01] * 5), histogram_of([2.0] * 3)
    merged = LatencyHistogram.merged(LatencyHistogram.decode(h.encode()) for h in (one, two))
    assert merged.count == 8
    assert merged.value_at_percentile_s(50) == pytest.approx(0.01, rel=1e-3)
    assert merged.value_at_percentile_s(90) == pytest.approx(2.0, rel=1e-3)


# --------------------------------------------------------------------------- ranks and sample-size rule


def test_percentile_rank_is_exact_for_decimal_percentiles() -> None:
    assert percentile_rank(95, 200) == 190
    assert percentile_rank(99.9, 1000) == 999
    assert percentile_rank(0, 10) == 1
    assert percentile_rank(100, 10) == 10
    with pytest.raises(ValueError):
        percentile_rank(101, 10)
    with pytest.raises(ValueError):
        percentile_rank(50, 0)


def test_min_samples_rule_examples() -> None:
    assert min_samples_for_percentile(95, 10) == 200
    assert min_samples_for_percentile(99, 10) == 1000
    assert min_samples_for_percentile(99.9, 10) == 10_000
    assert min_samples_for_percentile(50, 10) == 20
    assert min_samples_for_percentile(0, 3) == 3
    with pytest.raises(ValueError):
        min_samples_for_percentile(100, 10)
    with pytest.raises(ValueError):
        min_samples_for_percentile(99, 0)


@given(st.floats(min_value=0, max_value=99.99, allow_nan=False), st.integers(min_value=1, max_value=1000))
def test_min_samples_leaves_k_samples_above_the_percentile(q: float, k: int) -> None:
    n = min_samples_for_percentile(q, k)
    assert n * (1 - q / 100) >= k * (1 - 1e-9)
    if n > 1:
        assert (n - 1) * (1 - q / 100) < k * (1 + 1e-9)


@given(st.integers(min_value=1, max_value=5000), inner_percentiles, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
@settings(max_examples=300, deadline=None)
def test_order_statistic_ranks_have_the_promised_coverage(n: int, q: float, confidence: float) -> None:
    j, k = order_statistic_ranks(n, q, confidence)
    p = q / 100
    tail = (1 - confidence) / 2
    if j is not None:
        assert 1 <= j <= percentile_rank(q, n)
        assert binom.cdf(j - 1, n, p) <= tail + 1e-12
        # largest such j: one more would break the tail bound
        assert j == n or binom.cdf(j, n, p) > tail
    else:
        assert binom.cdf(0, n, p) > tail
    if k is not None:
        assert percentile_rank(q, n) <= k <= n
        assert binom.cdf(k - 1, n, p) >= 1 - tail - 1e-12
        assert k == 1 or binom.cdf(k - 2, n, p) < 1 - tail
    else:
        assert binom.cdf(n - 1, n, p) < 1 - tail
    if j is not None and k is not None:
        assert binom.cdf(k - 1, n, p) - binom.cdf(j - 1, n, p) >= confidence - 1e-12


def test_order_statistic_ranks_degenerate_cases() -> None:
    assert order_statistic_ranks(0, 50) == (None, None)
    assert order_statistic_ranks(100, 0) == (None, None)
    assert order_statistic_ranks(100, 100) == (None, None)
    assert order_statistic_ranks(10, 50) == (2, 9)
    # p99 of 100 samples: the upper bound would need the 101st sample
    assert order_statistic_ranks(100, 99)[1] is None
    with pytest.raises(ValueError):
        order_statistic_ranks(100, 50, confidence=1.0)


# --------------------------------------------------------------------------- estimate_percentile


def test_estimate_of_empty_histogram() -> None:
    estimate = estimate_percentile(LatencyHistogram(), 95)
    assert estimate.value_s is None and estimate.ci_low_s is None and estimate.ci_high_s is None
    assert estimate.samples == 0 and estimate.q == 95 and estimate.confidence == 0.95


def test_estimate_too_small_for_an_interval_still_has_a_value() -> None:
    estimate = estimate_percentile(histogram_of([0.1, 0.2, 0.3]), 99)
    assert estimate.value_s == pytest.approx(0.3, rel=1e-3)
    assert estimate.ci_high_s is None
    assert estimate.samples == 3


@given(samples_s, percentiles, st.sampled_from([0.9, 0.95, 0.99]))
@settings(max_examples=200, deadline=None)
def test_ci_always_brackets_the_point_value(values: list[float], q: float, confidence: float) -> None:
    estimate = estimate_percentile(histogram_of(values), q, confidence)
    assert estimate.value_s is not None
    assert estimate.value_s == histogram_of(values).value_at_percentile_s(q)
    if estimate.ci_low_s is not None:
        assert estimate.ci_low_s <= estimate.value_s
    if estimate.ci_high_s is not None:
        assert estimate.value_s <= estimate.ci_high_s


@pytest.mark.parametrize(("q", "n"), [(50, 200), (95, 400), (99, 1500)])
def test_ci_covers_the_true_quantile_in_about_95_percent_of_trials(q: float, n: int) -> None:
    # Lognormal latency with median 50 ms: the true quantile is known in closed form.
    mu, sigma = math.log(0.05), 0.6
    from scipy.stats import norm

    true_quantile_s = math.exp(mu + sigma * float(norm.ppf(q / 100)))
    rng = np.random.default_rng(1234)
    trials, covered = 400, 0
    for _ in range(trials):
        hist = LatencyHistogram()
        for value in rng.lognormal(mu, sigma, n):
            hist.record_s(float(value))
        estimate = estimate_percentile(hist, q, 0.95)
        assert estimate.ci_low_s is not None and estimate.ci_high_s is not None
        covered += estimate.ci_low_s <= true_quantile_s <= estimate.ci_high_s
    assert covered / trials >= 0.93
    # and the interval is not trivially wide: it should not cover far more than asked
    assert covered / trials <= 0.995


def _md1_sojourn_s(n: int, rho: float, service_s: float, rng: np.random.Generator) -> np.ndarray:
    """Sojourn times of n consecutive customers of an M/D/1 queue (Lindley recursion): strongly
    correlated in time, like latencies near saturation."""
    gaps = rng.exponential(service_s / rho, n)
    waits = np.empty(n)
    wait = 0.0
    for i in range(n):
        waits[i] = wait
        wait = max(0.0, wait + service_s - gaps[i])
    return waits + service_s


def test_sectioning_restores_coverage_for_correlated_latencies() -> None:
    from harness.analysis.latency import estimate_percentile_dependent, sections_for

    rng = np.random.default_rng(7)
    truth = float(np.percentile(_md1_sojourn_s(400_000, 0.8, 0.01, rng), 95))
    iid_hits = dependent_hits = 0
    trials = 120
    for _ in range(trials):
        samples = _md1_sojourn_s(3000, 0.8, 0.01, rng)
        whole = LatencyHistogram()
        for value in samples:
            whole.record_s(float(value))
        k = sections_for(95, len(samples))
        sections = []
        for chunk in np.array_split(samples, k):
            section = LatencyHistogram()
            for value in chunk:
                section.record_s(float(value))
            sections.append(section)
        iid = estimate_percentile(whole, 95)
        dependent = estimate_percentile_dependent(whole, sections, 95)
        assert dependent.ci_low_s is not None and dependent.ci_high_s is not None
        assert iid.ci_low_s is not None and iid.ci_high_s is not None
        assert dependent.ci_low_s <= iid.ci_low_s and dependent.ci_high_s >= iid.ci_high_s
        iid_hits += iid.ci_low_s <= truth <= iid.ci_high_s
        dependent_hits += dependent.ci_low_s <= truth <= dependent.ci_high_s
    # Independent-sample intervals badly undercover a queue's tail; sectioning brings coverage near nominal.
    print(f"coverage iid={iid_hits / trials:.2f} sectioning={dependent_hits / trials:.2f}")
    assert iid_hits / trials < 0.75
    assert dependent_hits / trials >= 0.8


def test_sectioning_interval_is_log_symmetric_and_needs_two_positive_sections() -> None:
    from harness.analysis.latency import sectioning_interval

    assert sectioning_interval(1.0, [1.0], 0.95) is None
    assert sectioning_interval(1.0, [0.0, 1.0, 1.0, 1.0, 1.0], 0.95) is None
    low, high = sectioning_interval(1.0, [0.9, 1.1, 1.0, 0.95, 1.05], 0.95) or (0.0, 0.0)
    assert 0 < low < 1.0 < high
    # symmetric on a log scale: the point is the geometric mean of the bounds
    assert math.sqrt(low * high) == pytest.approx(1.0)
    # one section with a burst ten times the others stretches the interval upwards, and never to zero
    low, high = sectioning_interval(0.03, [0.03] * 9 + [0.3], 0.95) or (0.0, 0.0)
    assert 0 < low < 0.03 < high and high - 0.03 > 0.03 - low


@given(
    st.lists(st.floats(min_value=1e-4, max_value=10.0), min_size=50, max_size=400),
    st.sampled_from([50.0, 95.0, 99.0]),
    st.integers(min_value=5, max_value=10),
    st.floats(min_value=1.0, max_value=1000.0),
)
@settings(max_examples=60, deadline=None)
def test_dependent_interval_lower_bound_never_below_smallest_sample(
    values: list[float], q: float, k: int, burst: float
) -> None:
    from harness.analysis.latency import estimate_percentile_dependent

    # a burst multiplies one section's latencies: the skewed case whose symmetric interval reached 0
    chunks = np.array_split(np.array(values), k)
    chunks[-1] = chunks[-1] * burst
    whole, sections = LatencyHistogram(), []
    for chunk in chunks:
        section = LatencyHistogram()
        for value in chunk:
            section.record_s(float(value))
        whole.merge(section)
        sections.append(section)
    estimate = estimate_percentile_dependent(whole, sections, q)
    smallest_s = whole.min_lowest_s()
    assert estimate.value_s is not None
    if estimate.ci_low_s is not None:
        assert 0 < smallest_s <= estimate.ci_low_s <= estimate.value_s
    if estimate.ci_high_s is not None:
        assert estimate.value_s <= estimate.ci_high_s


def _sectioned(chunks: list[np.ndarray]) -> tuple[LatencyHistogram, list[LatencyHistogram]]:
    whole, sections = LatencyHistogram(), []
    for chunk in chunks:
        section = histogram_of([float(value) for value in chunk])
        whole.merge(section)
        sections.append(section)
    return whole, sections


def test_exponential_tail_percentile_extrapolates_an_exponential_tail_and_not_below_the_threshold() -> None:
    from harness.analysis.latency import exponential_tail_percentile, tail_shape

    rng = np.random.default_rng(3)
    exponential = histogram_of(list(0.01 + rng.exponential(0.01, 20_000)))
    # true p99 of 10 ms + Exp(mean 10 ms): 10 ms + 10 ms * ln(100)
    truth = 0.01 + 0.01 * math.log(100)
    value = exponential_tail_percentile(exponential, 99)
    assert value is not None and value == pytest.approx(truth, rel=0.05)
    shape = tail_shape(exponential)
    assert shape is not None and abs(shape) < 0.1
    uniform = histogram_of(list(0.02 + 0.02 * rng.random(20_000)))
    shape = tail_shape(uniform)
    assert shape is not None and shape == pytest.approx(-1.0, abs=0.1)
    # the model extrapolates above its threshold only, and needs two distinct excesses
    assert exponential_tail_percentile(exponential, 70) is None
    assert exponential_tail_percentile(exponential, 50) is None
    assert exponential_tail_percentile(histogram_of([0.01] * 100), 99) is None
    assert tail_shape(LatencyHistogram()) is None


def test_tail_model_interval_is_left_out_for_bounded_tails_low_percentiles_and_few_sections() -> None:
    from harness.analysis.latency import MIN_SECTIONS, tail_model_interval

    rng = np.random.default_rng(5)
    whole, sections = _sectioned(np.array_split(0.01 + rng.exponential(0.01, 5000), 5))
    interval = tail_model_interval(whole, sections, 99, 0.95)
    assert interval is not None and interval[0] < 0.01 + 0.01 * math.log(100) < interval[1]
    assert tail_model_interval(whole, sections, 50, 0.95) is None
    assert tail_model_interval(whole, sections[: MIN_SECTIONS - 1], 99, 0.95) is None
    uniform, uniform_sections = _sectioned(np.array_split(0.02 + 0.02 * rng.random(5000), 5))
    assert tail_model_interval(uniform, uniform_sections, 99, 0.95) is None


def test_dependent_interval_reaches_beyond_a_calm_stage_through_the_tail_model() -> None:
    from harness.analysis.latency import estimate_percentile_dependent, sectioning_interval, tail_model_interval

    # an exponential stage whose top 1% was cut off (a window without the queue's rare bursts): the
    # sectioning interval is drawn from the clipped p99, the tail over the p70 still reaches beyond it
    rng = np.random.default_rng(11)
    values = 0.01 + rng.exponential(0.01, 5000)
    values = np.minimum(values, np.percentile(values, 98))
    whole, sections = _sectioned(np.array_split(values, 5))
    estimate = estimate_percentile_dependent(whole, sections, 99)
    tail = tail_model_interval(whole, sections, 99, 0.95)
    assert estimate.value_s is not None and estimate.ci_high_s is not None and tail is not None
    section_values = [v for v in (s.value_at_percentile_s(99) for s in sections) if v is not None]
    sectioning = sectioning_interval(estimate.value_s, section_values, 0.95)
    assert sectioning is not None and sectioning[1] < tail[1] == estimate.ci_high_s
    assert estimate.ci_high_s > max(values)


@given(
    st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=50, max_size=400),
    st.sampled_from([50.0, 95.0, 99.0]),
    st.integers(min_value=5, max_value=10),
    st.floats(min_value=1.0, max_value=100.0),
    st.floats(min_value=1e-4, max_value=1.0),
)
@settings(max_examples=60, deadline=None)
def test_dependent_interval_holds_the_point_and_every_interval_it_unites(
    uniforms: list[float], q: float, k: int, burst: float, scale: float
) -> None:
    from harness.analysis.latency import estimate_percentile_dependent, tail_model_interval

    # exponential latencies (so the tail model applies), one section's multiplied by a burst
    chunks = np.array_split(-np.log(np.array(uniforms)) * scale + 1e-4, k)
    chunks[-1] = chunks[-1] * burst
    whole, sections = _sectioned(chunks)
    estimate = estimate_percentile_dependent(whole, sections, q)
    iid = estimate_percentile(whole, q)
    tail = tail_model_interval(whole, sections, q, 0.95)
    assert estimate.value_s == iid.value_s and estimate.value_s is not None
    if estimate.ci_low_s is not None:
        assert iid.ci_low_s is not None
        assert whole.min_lowest_s() <= estimate.ci_low_s <= min(iid.ci_low_s, estimate.value_s)
        if tail is not None:
            assert estimate.ci_low_s <= max(whole.min_lowest_s(), tail[0])
    if estimate.ci_high_s is not None:
        assert iid.ci_high_s is not None
        assert estimate.ci_high_s >= max(iid.ci_high_s, estimate.value_s)
        if tail is not None:
            assert estimate.ci_high_s >= tail[1]
