"""Tests for harness.analysis.tokens: which streamed requests count towards goodput, and a stage's token rate and
goodput with their intervals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.tokens import goodput_rate, meets_limits, output_token_rate
from harness.model import RequestLimits


def test_a_request_counts_only_if_it_met_every_limit() -> None:
    limits = RequestLimits(ttft_ms=500, tpot_ms=50)
    assert meets_limits(limits, ttft_s=0.4, tpot_s=0.04, e2e_s=9.0)
    assert not meets_limits(limits, ttft_s=0.6, tpot_s=0.04, e2e_s=9.0)
    assert not meets_limits(limits, ttft_s=0.4, tpot_s=0.06, e2e_s=9.0)
    assert meets_limits(limits, ttft_s=0.5, tpot_s=0.05, e2e_s=9.0)  # at the limit is within it
    # No first token meets no TTFT limit; a single token has no TPOT to miss.
    assert not meets_limits(limits, ttft_s=None, tpot_s=None, e2e_s=1.0)
    assert meets_limits(limits, ttft_s=0.1, tpot_s=None, e2e_s=1.0)
    assert not meets_limits(RequestLimits(latency_ms=1000), ttft_s=0.1, tpot_s=0.01, e2e_s=1.5)
    assert RequestLimits(ttft_ms=500, latency_ms=2000).key == "ttft_ms<=500,latency_ms<=2000"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2000), max_size=200),
    st.floats(min_value=0.1, max_value=600.0),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_the_token_rate_interval_holds_the_rate_and_widens_with_confidence(
    lengths: list[int], duration_s: float, confidence: float
) -> None:
    total, squares = sum(lengths), sum(length * length for length in lengths)
    rate = output_token_rate(total, squares, duration_s, confidence)
    assert rate is not None
    value, low, high = rate
    assert value == pytest.approx(total / duration_s)
    assert 0.0 <= low <= value <= high
    wider = output_token_rate(total, squares, duration_s, min(0.999, confidence + 0.005))
    assert wider is not None and wider[1] <= low and wider[2] >= high


def test_the_token_rate_interval_covers_a_simulated_compound_poisson_stage() -> None:
    # 60 s at 10 rps, each request 1..200 tokens: the 95% interval covers the true rate in about 95% of stages.
    rng = np.random.default_rng(7)
    true_rate = 10 * 100.5
    covered = 0
    trials = 2000
    for _ in range(trials):
        lengths = rng.integers(1, 201, rng.poisson(600))
        found = output_token_rate(int(lengths.sum()), int((lengths**2).sum()), 60.0, 0.95)
        assert found is not None
        covered += found[1] <= true_rate <= found[2]
    assert 0.93 <= covered / trials <= 0.97


def test_rates_need_a_duration_and_consistent_sums() -> None:
    assert output_token_rate(10, 100, 0.0, 0.95) is None
    assert goodput_rate(3, 0.0, 0.95) is None
    with pytest.raises(ValueError, match="sum of squares"):
        output_token_rate(10, 5, 1.0, 0.95)
    value, low, high = goodput_rate(30, 10.0, 0.95) or (0.0, 0.0, 0.0)
    assert value == 3.0 and low < 3.0 < high
    assert goodput_rate(0, 10.0, 0.95) == (0.0, 0.0, pytest.approx(0.3689, rel=1e-3))
