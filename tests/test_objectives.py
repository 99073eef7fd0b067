"""Tests for harness.objectives: the registry every objective metric is defined in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.config import Objective
from harness.model import PercentileEstimate, RequestLimits, StageResult, StepAutoscaling
from harness.objectives import (
    OBJECTIVE_METRICS,
    Measurement,
    Traffic,
    is_per_step,
    latency_percentile,
    metric_percentile,
    objective_metric,
    stream_percentile,
)
from harness.report._common import fmt_metric_value
from tests.test_verdict import stage


@pytest.mark.parametrize(
    ("name", "syntax", "unit", "per_step"),
    [
        ("latency_p95_ms", "latency_pNN_ms", "ms", False),
        ("latency_p99.9_ms", "latency_pNN_ms", "ms", False),
        ("error_rate", "error_rate", "", False),
        ("throughput_rps", "throughput_rps", "rps", False),
        ("ttft_p95_ms", "ttft_pNN_ms", "ms", False),
        ("itl_p99.9_ms", "itl_pNN_ms", "ms", False),
        ("tpot_p50_ms", "tpot_pNN_ms", "ms", False),
        ("output_tokens_per_s", "output_tokens_per_s", "tokens/s", False),
        ("goodput_rps", "goodput_rps", "rps", False),
        ("goodput_fraction", "goodput_fraction", "", False),
        ("scale_up_within_s", "scale_up_within_s", "s", True),
        ("ready_within_s", "ready_within_s", "s", True),
        ("max_violation_s", "max_violation_s", "s", True),
    ],
)
def test_every_metric_name_finds_its_entry(name: str, syntax: str, unit: str, per_step: bool) -> None:
    metric = objective_metric(name)
    assert (metric.syntax, metric.unit, is_per_step(name)) == (syntax, unit, per_step)


def test_each_entry_is_measured_one_way() -> None:
    for metric in OBJECTIVE_METRICS:
        assert (metric.stage is None) != (metric.step is None), metric.syntax


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "latency_p95",
            "expected latency_pNN_ms such as latency_p95_ms, error_rate, mismatch_rate, bad_input_5xx_rate",
        ),
        ("p95_ms", "or ready_within_s"),
        ("latency_p0_ms", "between 0 and 100"),
        ("ttft_p0_ms", "between 0 and 100"),
        ("ttft_ms", "ttft_pNN_ms"),
    ],
)
def test_an_unknown_or_out_of_range_name_is_refused_naming_the_valid_ones(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        objective_metric(name)


def test_latency_percentile() -> None:
    assert latency_percentile("latency_p99.9_ms") == 99.9
    assert latency_percentile("error_rate") is None
    assert Objective(metric="latency_p50_ms", max=10).percentile == 50.0


def test_values_are_shown_in_the_metrics_unit() -> None:
    assert fmt_metric_value("latency_p95_ms", 123.4) == "123.4 ms"
    assert fmt_metric_value("error_rate", 0.0123) == "1.23%"
    assert fmt_metric_value("throughput_rps", 50) == "50 rps"
    assert fmt_metric_value("ready_within_s", 12.5) == "12.5 s"
    assert fmt_metric_value("error_rate", None) == "n/a"


def _measure_stage(name: str, result: StageResult) -> Measurement:
    measure = objective_metric(name).stage
    assert measure is not None
    return measure(name, result, 0.95, None)


def test_stage_metrics_measure_a_value_in_their_unit_with_an_interval_around_it() -> None:
    latency = _measure_stage("latency_p95_ms", stage())
    assert (latency.value, latency.ci_low, latency.ci_high) == pytest.approx((100.0, 90.0, 110.0))
    errors = _measure_stage("error_rate", stage())
    assert errors.value == 0.001 and errors.ci_low is not None and errors.ci_low < 0.001 < (errors.ci_high or 0)
    throughput = _measure_stage("throughput_rps", stage())
    assert throughput.ci_low is not None and throughput.ci_low < 100.0 < (throughput.ci_high or 0)


def test_a_stage_metric_that_cannot_be_measured_says_why() -> None:
    assert _measure_stage("latency_p90_ms", stage()).missing == "p90 was not computed for this stage"
    assert "no requests completed" in _measure_stage("error_rate", stage(error_rate=None)).missing


def test_step_metrics_read_the_load_step() -> None:
    step = StepAutoscaling("step", 100.0, 6.0, None, None, None, 1, 3, 3)
    scale_up = objective_metric("scale_up_within_s").step
    assert scale_up is not None and scale_up.value(step) == 6.0
    ready = objective_metric("ready_within_s").step
    assert ready is not None and ready.value(step) is None
    # A scale-up was decided, so the missing readiness is judged by how long the stage waited ...
    assert ready.unmeasurable(step) is None
    # ... and without one nothing had to become ready.
    assert ready.unmeasurable(StepAutoscaling("step", 100.0, None, None, None, None, 1, 1, 1)) is not None


def test_sweep_probes_are_decided_by_latency_errors_and_the_share_of_good_requests() -> None:
    deciding = {m.syntax for m in OBJECTIVE_METRICS if m.decides_sweep_probes}
    streamed = {"ttft_pNN_ms", "itl_pNN_ms", "tpot_pNN_ms", "goodput_fraction"}
    assert deciding == {"latency_pNN_ms", "error_rate"} | streamed
    requests = objective_metric("error_rate").requests_to_pass
    assert requests is not None and requests(0.01, None, 0.95) > 300 and requests(None, None, 0.95) == 0
    good = objective_metric("goodput_fraction").requests_to_pass
    # Mirror images: a share of good requests >= 0.99 needs as many as an error rate <= 0.01.
    assert good is not None and good(None, 0.99, 0.95) == requests(0.01, None, 0.95) and good(None, None, 0.95) == 0


def test_only_answer_and_bad_input_metrics_need_something_of_the_traffic() -> None:
    nothing = Traffic(checks_answers=False, sends_bad_input=False)
    everything = Traffic(checks_answers=True, sends_bad_input=True, streams=True)
    needy = {m.syntax for m in OBJECTIVE_METRICS if m.unmeasurable_with is not None and m.unmeasurable_with(nothing)}
    streamed = {"ttft_pNN_ms", "itl_pNN_ms", "tpot_pNN_ms", "output_tokens_per_s", "goodput_rps", "goodput_fraction"}
    assert needy == {"mismatch_rate", "bad_input_5xx_rate"} | streamed
    assert all(m.unmeasurable_with is None or m.unmeasurable_with(everything) is None for m in OBJECTIVE_METRICS)
    mismatch = objective_metric("mismatch_rate").unmeasurable_with
    assert mismatch is not None and mismatch(Traffic(checks_answers=False, sends_bad_input=True)) is not None
    bad_input = objective_metric("bad_input_5xx_rate").unmeasurable_with
    assert bad_input is not None and bad_input(Traffic(checks_answers=True, sends_bad_input=False)) is not None


# --------------------------------------------------------------------------- streamed requests


def streamed_stage(**changes: object) -> StageResult:
    """A 60 s stage of 600 streamed requests, 100 tokens each, 500 of them good for ttft_ms<=500."""
    estimate = PercentileEstimate(q=95.0, value_s=0.2, ci_low_s=0.18, ci_high_s=0.22, samples=600, confidence=0.95)
    fields: dict[str, object] = {
        "streamed": 600,
        "ttft": {"p95": estimate},
        "itl": {"p95": replace(estimate, value_s=0.02, ci_low_s=0.019, ci_high_s=0.021, samples=59_400)},
        "tpot": {},
        "output_tokens": 60_000,
        "output_tokens_squares": 600 * 100**2,
        "good_requests": {"ttft_ms<=500": 500},
    }
    return replace(stage(), **{**fields, **changes})  # type: ignore[arg-type]


def _measure(name: str, result: StageResult, limits: RequestLimits | None = None) -> Measurement:
    measure = objective_metric(name).stage
    assert measure is not None
    return measure(name, result, 0.95, limits)


def test_streamed_percentiles_are_read_per_figure_in_ms() -> None:
    assert stream_percentile("ttft_p99.5_ms") == ("ttft", 99.5) and stream_percentile("latency_p95_ms") is None
    assert metric_percentile("itl_p90_ms") == 90.0 and metric_percentile("latency_p95_ms") == 95.0
    ttft = _measure("ttft_p95_ms", streamed_stage())
    assert (ttft.value, ttft.ci_low, ttft.ci_high) == pytest.approx((200.0, 180.0, 220.0))
    assert ttft.what == "ttft p95 (ms)"
    assert _measure("itl_p95_ms", streamed_stage()).value == pytest.approx(20.0)
    assert "not computed" in _measure("tpot_p95_ms", streamed_stage()).missing
    assert "no streamed request" in _measure("ttft_p95_ms", stage()).missing
    short = streamed_stage(sample_shortfalls={"ttft p95": "too few samples for ttft p95"})
    assert _measure("ttft_p95_ms", short).missing == "too few samples for ttft p95"


def test_output_tokens_per_s_is_a_compound_poisson_rate() -> None:
    rate = _measure("output_tokens_per_s", streamed_stage())
    assert rate.value == pytest.approx(1000.0)
    # Equal lengths: the request count's normal interval (600 +- 1.96 sqrt(600)) times 100 tokens, per second.
    half_width = 1.959964 * (600**0.5) * 100 / 60
    assert (rate.ci_low, rate.ci_high) == pytest.approx((1000.0 - half_width, 1000.0 + half_width), rel=1e-4)
    assert "no streamed request" in _measure("output_tokens_per_s", stage()).missing


def test_goodput_counts_the_requests_meeting_the_objectives_own_limits() -> None:
    limits = RequestLimits(ttft_ms=500)
    goodput = _measure("goodput_rps", streamed_stage(), limits)
    assert goodput.value == pytest.approx(500 / 60)
    assert goodput.ci_low is not None and goodput.ci_low < 500 / 60 < (goodput.ci_high or 0)
    assert "500 of 600" in goodput.what
    other = _measure("goodput_rps", streamed_stage(), RequestLimits(ttft_ms=500, tpot_ms=50))
    assert other.value is None and "ttft_ms<=500,tpot_ms<=50 were not counted" in other.missing


def test_goodput_fraction_is_the_share_of_all_requests_that_met_the_limits() -> None:
    limits = RequestLimits(ttft_ms=500)
    # 600 requests ended (stage() counts its requests), 500 of them good: failures count as not good.
    share = _measure("goodput_fraction", streamed_stage(requests=600), limits)
    assert share.value == pytest.approx(500 / 600)
    assert share.ci_low is not None and share.ci_high is not None and share.ci_low < 500 / 600 < share.ci_high
    assert "500/600" in share.what
    assert fmt_metric_value("goodput_fraction", 0.9) == "90%"
    uncounted = _measure("goodput_fraction", streamed_stage(), RequestLimits(tpot_ms=9))
    assert uncounted.value is None and "were not counted" in uncounted.missing


def test_goodput_objectives_need_limits_and_only_they_take_them() -> None:
    objective = Objective(metric="goodput_rps", min=5, per_request={"ttft_ms": 500, "tpot_ms": 50})
    assert objective.request_limits == RequestLimits(ttft_ms=500, tpot_ms=50)
    assert objective.name == "goodput_rps >= 5 (ttft_ms<=500,tpot_ms<=50)"
    with pytest.raises(ValueError, match="needs per_request limits"):
        Objective(metric="goodput_rps", min=5)
    with pytest.raises(ValueError, match="takes no per_request"):
        Objective(metric="ttft_p95_ms", max=500, per_request={"ttft_ms": 500})
    with pytest.raises(ValueError, match="at least one of"):
        Objective(metric="goodput_rps", min=5, per_request={})
    with pytest.raises(ValueError, match="greater than 0"):
        Objective(metric="goodput_rps", min=5, per_request={"tpot_ms": 0})
