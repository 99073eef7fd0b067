"""Tests for harness.analysis.intervals: Wilson and Garwood intervals, and the requests an error-rate bound needs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import poisson

from harness.analysis.intervals import garwood_interval, requests_to_pass_error_rate, wilson_interval


@given(st.integers(min_value=1, max_value=100_000), st.data(), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_interval_contains_the_observed_proportion(trials: int, data: st.DataObject, confidence: float) -> None:
    successes = data.draw(st.integers(min_value=0, max_value=trials))
    low, high = wilson_interval(successes, trials, confidence)
    assert 0.0 <= low <= successes / trials <= high <= 1.0
    assert (low == 0.0) == (successes == 0)
    assert (high == 1.0) == (successes == trials)


def test_wilson_interval_known_value_and_narrowing() -> None:
    # Reference: 10 of 100 at 95% gives about [0.0552, 0.1744].
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-3) and high == pytest.approx(0.1744, abs=1e-3)
    wide, narrow = wilson_interval(1, 10), wilson_interval(100, 1000)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


@given(st.integers(min_value=0, max_value=1_000_000), st.sampled_from([0.9, 0.95, 0.99]))
def test_garwood_interval_contains_the_count_and_has_exact_tails(count: int, confidence: float) -> None:
    low, high = garwood_interval(count, confidence)
    assert 0.0 <= low <= count <= high
    tail = (1 - confidence) / 2
    # Garwood: P(X >= count | low) = tail and P(X <= count | high) = tail.
    if count > 0:
        assert poisson.sf(count - 1, low) == pytest.approx(tail, rel=1e-4)
    assert poisson.cdf(count, high) == pytest.approx(tail, rel=1e-4)


def test_garwood_zero_count() -> None:
    low, high = garwood_interval(0)
    assert low == 0.0 and high == pytest.approx(3.689, abs=1e-3)


@given(st.floats(min_value=1e-4, max_value=0.5), st.sampled_from([0.9, 0.95, 0.99]))
def test_requests_to_pass_error_rate_is_the_smallest_zero_failure_pass(max_rate: float, confidence: float) -> None:
    n = requests_to_pass_error_rate(max_rate, confidence)
    assert wilson_interval(0, n, confidence)[1] <= max_rate
    assert n == 1 or wilson_interval(0, n - 1, confidence)[1] > max_rate - 1e-12
