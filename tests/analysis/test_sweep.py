"""Tests for harness.analysis.sweep: the bracket-and-bisect search for the maximum sustainable rate."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import poisson

from harness.analysis.sweep import next_rate, probe_duration_s, result
from harness.model import Probe

Oracle = Callable[[float, int], bool | None]


def run_search(
    oracle: Oracle, *, initial_rps: float, max_rps: float, tolerance: float = 0.05, limit: int = 200
) -> list[Probe]:
    """Drive the state machine like `harness sweep` does; `oracle(rate, attempt)` judges each probe."""
    probes: list[Probe] = []
    while (rate := next_rate(probes, initial_rps=initial_rps, max_rps=max_rps, tolerance=tolerance)) is not None:
        attempt = sum(1 for p in probes if p.rate_rps == rate)
        probes.append(Probe(rate, oracle(rate, attempt)))
        assert len(probes) <= limit, "the search did not terminate"
    return probes


def probe_bound(initial_rps: float, max_rps: float, tolerance: float) -> int:
    """Doubling steps up to max_rps, plus bisection steps from a 2x bracket down to the tolerance."""
    doubling = math.ceil(math.log2(max_rps / initial_rps)) + 1
    bisection = math.ceil(math.log2(math.log(2.0) / math.log1p(tolerance))) + 1
    return doubling + bisection


def test_first_probe_is_the_initial_rate_then_doubling() -> None:
    assert next_rate([], initial_rps=10.0, max_rps=1000.0) == 10.0
    assert next_rate([Probe(10.0, True)], initial_rps=10.0, max_rps=1000.0) == 20.0
    assert next_rate([Probe(10.0, True), Probe(20.0, True)], initial_rps=10.0, max_rps=1000.0) == 40.0
    # Capped at max_rps, then finished once max_rps passed.
    assert next_rate([Probe(10.0, True), Probe(20.0, True)], initial_rps=10.0, max_rps=30.0) == 30.0
    assert next_rate([Probe(20.0, True), Probe(30.0, True)], initial_rps=20.0, max_rps=30.0) is None


def test_bisects_geometrically_until_the_bracket_is_tight() -> None:
    probes = [Probe(10.0, True), Probe(20.0, True), Probe(40.0, False)]
    assert next_rate(probes, initial_rps=10.0, max_rps=1000.0) == pytest.approx(math.sqrt(800.0))
    tight = [Probe(100.0, True), Probe(105.0, False)]
    assert next_rate(tight, initial_rps=100.0, max_rps=1000.0) is None
    assert next_rate(tight, initial_rps=100.0, max_rps=1000.0, tolerance=0.01) == pytest.approx(math.sqrt(10500.0))


def test_first_probe_failing_searches_downwards_to_a_floor() -> None:
    assert next_rate([Probe(10.0, False)], initial_rps=10.0, max_rps=100.0) == 5.0
    probes = run_search(lambda rate, _: rate <= 3.0, initial_rps=10.0, max_rps=100.0)
    outcome = result(probes)
    assert outcome.bracket_low is not None and outcome.bracket_high is not None
    assert outcome.bracket_low <= 3.0 < outcome.bracket_high
    assert (outcome.bracket_high - outcome.bracket_low) / outcome.bracket_low <= 0.05
    never = run_search(lambda rate, _: False, initial_rps=10.0, max_rps=100.0)
    assert [p.rate_rps for p in never] == [10.0, 5.0, 2.5, 1.25, 0.625, 0.3125]
    nothing = result(never)
    assert nothing.max_sustainable_rps is None
    assert nothing.bracket_high == 0.3125
    assert "no probe passed" in nothing.reason
    assert next_rate([Probe(10.0, False)], initial_rps=10.0, max_rps=100.0, min_rps=8.0) is None


def test_inconclusive_is_retried_once_then_counts_as_failed() -> None:
    assert next_rate([Probe(10.0, True), Probe(20.0, None)], initial_rps=10.0, max_rps=100.0) == 20.0
    retried = [Probe(10.0, True), Probe(20.0, None), Probe(20.0, True)]
    assert next_rate(retried, initial_rps=10.0, max_rps=100.0) == 40.0
    twice = [Probe(10.0, True), Probe(20.0, None), Probe(20.0, None)]
    assert next_rate(twice, initial_rps=10.0, max_rps=100.0) == pytest.approx(math.sqrt(200.0))
    assert result(twice).bracket_high == 20.0
    # An inconclusive probe the caller did not retry counts as failed too.
    moved_on = [Probe(10.0, None), Probe(5.0, True)]
    assert result(moved_on).bracket_high == 10.0
    pending = result([Probe(10.0, True), Probe(20.0, None)])
    assert pending.bracket_high is None
    assert "not yet retried" in pending.reason


def test_result_reports_every_probe_and_the_bracket() -> None:
    probes = run_search(lambda rate, _: rate <= 123.0, initial_rps=10.0, max_rps=2000.0)
    outcome = result(probes)
    assert outcome.probes == tuple(probes)
    assert outcome.max_sustainable_rps == outcome.bracket_low
    assert outcome.bracket_low is not None and outcome.bracket_high is not None
    assert outcome.bracket_low <= 123.0 < outcome.bracket_high
    assert f"{len(probes)} probe(s)" in outcome.reason
    reached = result([Probe(50.0, True), Probe(100.0, True)], max_rps=100.0)
    assert reached.max_sustainable_rps == 100.0 and reached.bracket_high is None
    assert "max_rps was reached" in reached.reason


def test_noisy_passes_above_a_failure_are_ignored() -> None:
    outcome = result([Probe(10.0, True), Probe(20.0, False), Probe(30.0, True)])
    assert (outcome.bracket_low, outcome.bracket_high) == (10.0, 20.0)
    assert "ignored" in outcome.reason


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="initial_rps"):
        next_rate([], initial_rps=0.0, max_rps=10.0)
    with pytest.raises(ValueError, match="max_rps"):
        next_rate([], initial_rps=10.0, max_rps=5.0)
    with pytest.raises(ValueError, match="tolerance"):
        next_rate([], initial_rps=10.0, max_rps=50.0, tolerance=0.0)
    with pytest.raises(ValueError, match="rate_rps"):
        next_rate([Probe(-1.0, True)], initial_rps=10.0, max_rps=50.0)


@given(
    initial_rps=st.floats(0.5, 100.0),
    span=st.floats(1.0, 1e4),
    fraction=st.floats(0.0, 1.2),
    tolerance=st.sampled_from([0.01, 0.05, 0.1, 0.25]),
)
def test_oracle_search_ends_within_tolerance_in_logarithmic_probes(
    initial_rps: float, span: float, fraction: float, tolerance: float
) -> None:
    max_rps = initial_rps * span
    # True maxima from the initial rate up to beyond max_rps.
    true_max = initial_rps + fraction * (max_rps - initial_rps)
    probes = run_search(lambda rate, _: rate <= true_max, initial_rps=initial_rps, max_rps=max_rps, tolerance=tolerance)
    assert len(probes) <= probe_bound(initial_rps, max_rps, tolerance)
    outcome = result(probes, max_rps=max_rps)
    low = outcome.max_sustainable_rps
    assert low is not None and low <= true_max
    if true_max >= max_rps:
        assert low == max_rps and outcome.bracket_high is None
    else:
        assert outcome.bracket_high is not None and outcome.bracket_high > true_max
        assert (outcome.bracket_high - low) / low <= tolerance
        assert (true_max - low) / low <= tolerance


@given(initial_rps=st.floats(1.0, 50.0), span=st.floats(2.0, 1e3), fraction=st.floats(0.0, 0.99))
def test_first_attempts_inconclusive_cost_one_retry_each(initial_rps: float, span: float, fraction: float) -> None:
    max_rps = initial_rps * span
    true_max = initial_rps + fraction * (max_rps - initial_rps)

    def flaky(rate: float, attempt: int) -> bool | None:
        return None if attempt == 0 else rate <= true_max

    probes = run_search(flaky, initial_rps=initial_rps, max_rps=max_rps)
    clean = run_search(lambda rate, _: rate <= true_max, initial_rps=initial_rps, max_rps=max_rps)
    assert len(probes) == 2 * len(clean)
    assert result(probes).bracket_low == result(clean).bracket_low


def test_probe_duration_collects_the_tail_samples() -> None:
    # p99 with k = 10 needs 1000 samples; at 100 rps that is 10 s on average, more to be sure.
    duration_s = probe_duration_s(100.0)
    assert 10.0 < duration_s < 12.0
    assert poisson.cdf(999, 100.0 * duration_s) == pytest.approx(0.001, rel=1e-6)
    assert probe_duration_s(1000.0) == 10.0
    assert probe_duration_s(10.0, percentile=95) == pytest.approx(probe_duration_s(10.0, percentile=95.0))
    assert probe_duration_s(10.0, percentile=95) < probe_duration_s(10.0, percentile=99)
    with pytest.raises(ValueError, match="rate_rps"):
        probe_duration_s(0.0)


@given(
    rate_rps=st.floats(0.1, 1e5),
    percentile=st.sampled_from([50.0, 90.0, 95.0, 99.0, 99.9]),
    k=st.integers(1, 50),
    min_duration_s=st.floats(0.0, 600.0),
)
def test_probe_duration_meets_the_sample_minimum(
    rate_rps: float, percentile: float, k: int, min_duration_s: float
) -> None:
    duration_s = probe_duration_s(rate_rps, percentile, k, min_duration_s)
    needed = math.ceil(k / (1 - Fraction(str(percentile)) / 100))
    assert duration_s >= min_duration_s
    assert rate_rps * duration_s >= needed
    assert poisson.cdf(needed - 1, rate_rps * duration_s) <= 0.001 * (1 + 1e-6)


@given(initial_rps=st.floats(1.0, 1000.0), below=st.floats(1.0001, 30.0))
def test_oracle_search_below_the_initial_rate(initial_rps: float, below: float) -> None:
    true_max = initial_rps / below
    probes = run_search(lambda rate, _: rate <= true_max, initial_rps=initial_rps, max_rps=10 * initial_rps)
    assert len(probes) <= probe_bound(true_max, initial_rps, 0.05)
    outcome = result(probes)
    assert outcome.bracket_low is not None and outcome.bracket_high is not None
    assert outcome.bracket_low <= true_max < outcome.bracket_high
    assert (outcome.bracket_high - outcome.bracket_low) / outcome.bracket_low <= 0.05
