"""Tests for harness.analysis.compare: significance and effect size of run-to-run differences."""

from __future__ import annotations

import numpy as np
import pytest
from _records import RUN_START_S, interval
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.compare import (
    Comparison,
    MetricComparison,
    RunSummary,
    StageSummary,
    compare,
    summarize_run,
)
from harness.analysis.latency import LatencyHistogram
from harness.model import StageWindow


def stage_summary(
    seed: int, samples: int, latency_scale: float = 1.0, rps: float = 100.0, intervals: int = 60
) -> StageSummary:
    """Log-normal latencies (median 50 ms) and Poisson interval counts, from a seeded generator."""
    rng = np.random.default_rng(seed)
    histogram = LatencyHistogram()
    for value in rng.lognormal(np.log(0.05), 0.5, samples) * latency_scale:
        histogram.record_s(float(value))
    rates = tuple(float(r) for r in rng.poisson(rps, intervals))
    return StageSummary(requests=int(sum(rates)), duration_s=float(intervals), interval_rps=rates, latency=histogram)


def run(seed: int, samples: int = 5000, latency_scale: float = 1.0, rps: float = 100.0) -> RunSummary:
    return RunSummary({"steady": stage_summary(seed, samples, latency_scale, rps)})


def metric(comparison: Comparison, name: str, stage: str = "steady") -> MetricComparison:
    return next(m for m in comparison.metrics if m.metric == name and m.stage == stage)


def test_lists_every_metric_of_every_common_stage() -> None:
    comparison = compare(run(1), run(2))
    assert [(m.stage, m.metric) for m in comparison.metrics] == [
        ("steady", "throughput_rps"),
        ("steady", "error_rate"),
        ("steady", "latency_p50_s"),
        ("steady", "latency_p95_s"),
        ("steady", "latency_p99_s"),
    ]
    assert (comparison.alpha, comparison.min_effect, comparison.notes) == (0.01, 0.05, ())
    # No failures in either run: the error rates are 0 and have no relative change or difference interval.
    for m in (m for m in comparison.metrics if m.metric != "error_rate"):
        assert m.baseline is not None and m.candidate is not None and m.relative_change is not None
        assert m.difference_low is not None and m.difference_high is not None
        assert m.difference_low <= m.candidate - m.baseline <= m.difference_high
        assert m.reason
    assert metric(comparison, "throughput_rps").p_value is not None


def test_identical_runs_do_not_regress() -> None:
    comparison = compare(run(1), run(1))
    assert not comparison.regressed
    assert not any(m.significant for m in comparison.metrics)
    assert all(m.relative_change == 0.0 for m in comparison.metrics if m.metric != "error_rate")


def test_thirty_percent_latency_shift_with_enough_samples_regresses() -> None:
    comparison = compare(run(1), run(2, latency_scale=1.3))
    assert comparison.regressed
    for name in ("latency_p50_s", "latency_p95_s", "latency_p99_s"):
        m = metric(comparison, name)
        assert m.significant and m.regression, m.reason
        assert m.relative_change == pytest.approx(0.3, abs=0.1)
        assert m.difference_low is not None and m.difference_low > 0
    assert not metric(comparison, "throughput_rps").regression


def test_thirty_percent_latency_shift_with_twenty_samples_is_not_significant() -> None:
    comparison = compare(run(1, samples=20), run(2, samples=20, latency_scale=1.3))
    assert not comparison.regressed
    for name in ("latency_p50_s", "latency_p95_s", "latency_p99_s"):
        assert not metric(comparison, name).significant
    # 20 samples give the p99 no upper confidence bound at all.
    assert metric(comparison, "latency_p99_s").difference_high is None


def test_faster_candidate_is_significant_but_not_a_regression() -> None:
    comparison = compare(run(1), run(2, latency_scale=0.7))
    p50 = metric(comparison, "latency_p50_s")
    assert p50.significant and not p50.regression
    assert not comparison.regressed


def test_small_significant_change_is_below_min_effect() -> None:
    comparison = compare(run(1, samples=200_000), run(2, samples=200_000, latency_scale=1.03))
    p50 = metric(comparison, "latency_p50_s")
    assert p50.significant and not p50.regression
    assert compare(run(1, samples=200_000), run(2, samples=200_000, latency_scale=1.03), min_effect=0.01).regressed


def test_throughput_drop_regresses() -> None:
    comparison = compare(run(1, rps=100.0), run(2, rps=80.0))
    throughput = metric(comparison, "throughput_rps")
    assert throughput.significant and throughput.regression
    assert throughput.p_value is not None and throughput.p_value < 1e-6
    assert throughput.relative_change == pytest.approx(-0.2, abs=0.05)
    assert throughput.difference_high is not None and throughput.difference_high < 0
    assert comparison.regressed


def test_throughput_needs_two_intervals_and_handles_zero_spread() -> None:
    histogram = LatencyHistogram()
    histogram.record_s(0.05, 1000)
    one = RunSummary({"s": StageSummary(100, 1.0, (100.0,), histogram)})
    assert "at least 2 intervals" in metric(compare(one, one), "throughput_rps", "s").reason
    flat = RunSummary({"s": StageSummary(200, 2.0, (100.0, 100.0), histogram)})
    lower = RunSummary({"s": StageSummary(100, 2.0, (50.0, 50.0), histogram)})
    assert metric(compare(flat, flat), "throughput_rps", "s").p_value == 1.0
    drop = metric(compare(flat, lower), "throughput_rps", "s")
    assert drop.p_value == 0.0 and drop.regression


def test_stages_in_one_run_only_are_noted() -> None:
    baseline = RunSummary({"a": stage_summary(1, 500), "b": stage_summary(2, 500)})
    candidate = RunSummary({"b": stage_summary(3, 500), "c": stage_summary(4, 500)})
    comparison = compare(baseline, candidate)
    assert {m.stage for m in comparison.metrics} == {"b"}
    assert comparison.notes == (
        "stage 'a' is only in the baseline; not compared",
        "stage 'c' is only in the candidate; not compared",
    )
    disjoint = compare(RunSummary({"a": stage_summary(1, 500)}), RunSummary({}))
    assert disjoint.metrics == () and not disjoint.regressed
    assert "share no judged stage" in disjoint.notes[-1]


def test_bonferroni_tightens_each_test_with_more_stages() -> None:
    one = compare(run(1), run(2, latency_scale=1.3))
    many_baseline = RunSummary({f"s{i}": stage_summary(1, 5000) for i in range(10)})
    many_candidate = RunSummary({f"s{i}": stage_summary(2, 5000, 1.3) for i in range(10)})
    many = compare(many_baseline, many_candidate)
    single = metric(one, "latency_p50_s")
    tenth = metric(many, "latency_p50_s", "s0")
    assert single.difference_low is not None and tenth.difference_low is not None
    assert tenth.difference_low < single.difference_low


def test_rejects_bad_levels() -> None:
    with pytest.raises(ValueError, match="alpha"):
        compare(run(1), run(1), alpha=0.0)
    with pytest.raises(ValueError, match="min_effect"):
        compare(run(1), run(1), min_effect=-0.1)


def test_false_positive_rate_over_many_seeds_is_low() -> None:
    regressions = sum(compare(run(2 * seed, 2000), run(2 * seed + 1, 2000)).regressed for seed in range(200))
    # The family-wise level is alpha = 1%; the interval test is conservative, so expect about none.
    assert regressions <= 2


@settings(derandomize=True, max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), samples=st.sampled_from([20, 200, 2000]))
def test_same_distribution_never_regresses(seed: int, samples: int) -> None:
    assert not compare(run(seed, samples), run(seed + 1, samples)).regressed


def test_summarize_run_from_records() -> None:
    windows = [
        StageWindow("warmup", RUN_START_S, RUN_START_S + 5, judged=False, users=5, arrival_rate_rps=None),
        StageWindow("steady", RUN_START_S + 5, RUN_START_S + 15, judged=True, users=None, arrival_rate_rps=20.0),
    ]
    records = [interval(float(t), [0.01] * 5, stage="warmup") for t in range(5)]
    records += [interval(float(t), [0.02] * (20 + t), stage="steady") for t in range(5, 15)]
    summary = summarize_run(windows, records)
    assert list(summary.stages) == ["steady"]
    steady = summary.stages["steady"]
    assert steady.requests == sum(20 + t for t in range(5, 15))
    assert steady.duration_s == 10.0
    # First and last buckets are dropped as possibly partial.
    assert steady.interval_rps == tuple(float(20 + t) for t in range(6, 14))
    assert steady.latency.count == steady.requests
    assert steady.achieved_rps == pytest.approx(steady.requests / 10.0)


def test_error_rate_regression_needs_a_significant_rise() -> None:
    from harness.analysis.compare import RunSummary, StageSummary, compare

    histogram = LatencyHistogram()
    for _ in range(200):
        histogram.record_s(0.01)

    def run(requests: int, failures: int) -> RunSummary:
        return RunSummary(
            stages={"s": StageSummary(requests, 10.0, tuple([requests / 10.0] * 10), histogram, failures=failures)}
        )

    def error_metric(base: RunSummary, cand: RunSummary) -> object:
        return next(m for m in compare(base, cand).metrics if m.metric == "error_rate")

    clean = run(10_000, 0)
    assert not error_metric(clean, run(10_000, 2)).regression, "2 failures in 10k is noise"
    worse = error_metric(clean, run(10_000, 150))
    assert worse.significant and worse.regression
    assert not error_metric(run(10_000, 150), clean).regression, "fewer failures is not a regression"
    assert not error_metric(run(20, 0), run(20, 2)).significant, "20 requests cannot show it"
