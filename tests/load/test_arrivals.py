"""Arrival schedules: gamma with a burstiness factor, replayed traces, and their split over load generators."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.load.arrivals import (
    arrival_offsets,
    parse_trace,
    process_arrival_offsets,
    trace_gaps,
    trace_rate_rps,
)

seeds = st.integers(min_value=0, max_value=10_000)
rates = st.floats(min_value=1, max_value=500)


@given(rates, seeds, st.floats(min_value=0.1, max_value=10))
@settings(max_examples=40, deadline=None)
def test_gamma_arrivals_have_the_asked_rate_whatever_the_burstiness(rate: float, seed: int, burstiness: float) -> None:
    expected = 3000
    duration = expected / rate
    offsets = list(arrival_offsets(rate, duration, "gamma", random.Random(seed), burstiness=burstiness))
    assert offsets == sorted(offsets) and all(0 <= t < duration for t in offsets)
    # A renewal process's count over many gaps has variance n * cv^2 with cv^2 = 1 / burstiness.
    sd = (expected / burstiness) ** 0.5
    assert abs(len(offsets) - expected) < 6 * sd + 2


@given(seeds)
@settings(max_examples=20, deadline=None)
def test_lower_burstiness_spreads_the_gaps_more(seed: int) -> None:
    def gap_cv(burstiness: float) -> float:
        offsets = list(arrival_offsets(100, 40, "gamma", random.Random(seed), burstiness=burstiness))
        gaps = [b - a for a, b in itertools.pairwise(offsets)]
        return statistics.stdev(gaps) / statistics.fmean(gaps)

    # cv = 1 / sqrt(burstiness): 2.0 for 0.25, 1.0 for 1 (Poisson), 0.5 for 4.
    bursty, poisson, regular = gap_cv(0.25), gap_cv(1.0), gap_cv(4.0)
    assert 1.6 < bursty < 2.4 and 0.85 < poisson < 1.15 and 0.4 < regular < 0.6
    assert bursty > poisson > regular


def test_gamma_needs_a_positive_burstiness() -> None:
    with pytest.raises(ValueError, match="burstiness"):
        list(arrival_offsets(10, 1, "gamma", random.Random(1), burstiness=0.0))


traces = st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=2, max_size=60).map(sorted)


@given(traces, rates)
@settings(max_examples=80, deadline=None)
def test_a_trace_replays_its_gaps_scaled_to_the_rate(trace: list[float], rate: float) -> None:
    if trace[-1] == trace[0]:
        with pytest.raises(ValueError, match="duration"):
            trace_gaps(trace)
        return
    length = len(trace)
    # Three passes through the trace, each `length` mean gaps long, and half a mean gap of the fourth.
    duration = (3 * length + 0.5) / rate
    offsets = list(arrival_offsets(rate, duration, "trace", random.Random(0), trace_s=trace))
    assert offsets[0] == 0.0 and offsets == sorted(offsets) and all(t < duration for t in offsets)
    assert 3 * length + 1 <= len(offsets) <= 4 * length
    scale = trace_rate_rps(trace) / rate
    for recorded, replayed in zip(trace, offsets[:length], strict=True):
        assert replayed == pytest.approx((recorded - trace[0]) * scale, rel=1e-9, abs=1e-9)
    if len(offsets) > length:
        # The next pass begins one mean gap after the last arrival, then repeats the same gaps.
        assert offsets[length] == pytest.approx(length / rate, rel=1e-9)


def test_a_trace_at_its_own_rate_is_replayed_as_recorded() -> None:
    trace = [100.0, 100.5, 100.6, 102.0, 104.0]
    rate = trace_rate_rps(trace)
    assert rate == pytest.approx(1.0)
    assert list(arrival_offsets(rate, 4.5, "trace", random.Random(0), trace_s=trace)) == pytest.approx(
        [0.0, 0.5, 0.6, 2.0, 4.0]
    )


@given(st.sampled_from(["poisson", "gamma", "constant", "trace"]), st.integers(min_value=1, max_value=6), seeds)
@settings(max_examples=40, deadline=None)
def test_processes_together_send_the_stage_rate(kind: str, processes: int, seed: int) -> None:
    rate, duration = 60.0, 50.0
    trace = [0.0, 0.1, 0.15, 1.0, 1.2, 3.0, 3.1]
    shares = [
        list(
            process_arrival_offsets(
                rate,
                duration,
                kind,  # type: ignore[arg-type]
                random.Random(seed * 31 + process),
                process=process,
                processes=processes,
                trace_s=trace,
            )
        )
        for process in range(processes)
    ]
    total = sum(len(share) for share in shares)
    expected = rate * duration
    assert abs(total - expected) < 8 * expected**0.5
    if kind == "trace":
        # Together they are the one schedule: dealt out in turn, never duplicated.
        whole = list(arrival_offsets(rate, duration, "trace", random.Random(0), trace_s=trace))
        assert sorted(itertools.chain.from_iterable(shares)) == whole


def test_process_numbers_are_checked() -> None:
    with pytest.raises(ValueError, match="process=2"):
        list(process_arrival_offsets(1, 1, "poisson", random.Random(1), process=2, processes=2))


def test_trace_files_of_every_form() -> None:
    assert parse_trace("3\n1.5\n\n2\n") == (1.5, 2.0, 3.0)
    assert parse_trace('{"timestamp": 2, "tokens": 9}\n{"timestamp": 1}\n') == (1.0, 2.0)
    azure = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
    )
    first, second = parse_trace(azure)
    assert second - first == pytest.approx(4.314579, abs=1e-6)
    assert parse_trace("timestamp,x\n10,a\n12,b\n") == (10.0, 12.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("1\nsoon\n", "line 2: 'soon' is not a number"),
        ('{"timestamp": 1}\n{"t": 2}\n', "line 2: expected an object with a number `timestamp`"),
        ("when,x\n1,2\n", "needs a `timestamp` column"),
        ("timestamp\n1\nyesterday\n", "line 3: 'yesterday' is neither seconds nor an ISO date"),
        ("1\nnan\n", "not a finite number"),
    ],
)
def test_unreadable_traces_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_trace(text)


def test_a_trace_needs_two_distinct_times() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        trace_gaps([1.0])
    with pytest.raises(ValueError, match="ascending"):
        trace_gaps([2.0, 1.0])
