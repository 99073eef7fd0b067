"""Tests for harness.objectives: the registry every objective metric is defined in."""

from __future__ import annotations

import pytest

from harness.config import Objective
from harness.model import StageResult, StepAutoscaling
from harness.objectives import (
    OBJECTIVE_METRICS,
    Measurement,
    Traffic,
    is_per_step,
    latency_percentile,
    objective_metric,
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
    return measure(name, result, 0.95)


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


def test_sweep_probes_are_decided_by_latency_and_errors_only() -> None:
    deciding = {m.syntax for m in OBJECTIVE_METRICS if m.decides_sweep_probes}
    assert deciding == {"latency_pNN_ms", "error_rate"}
    requests = objective_metric("error_rate").requests_to_pass
    assert requests is not None and requests(0.01, 0.95) > 300 and requests(None, 0.95) == 0


def test_only_answer_and_bad_input_metrics_need_something_of_the_traffic() -> None:
    nothing = Traffic(checks_answers=False, sends_bad_input=False)
    everything = Traffic(checks_answers=True, sends_bad_input=True)
    needy = {m.syntax for m in OBJECTIVE_METRICS if m.unmeasurable_with is not None and m.unmeasurable_with(nothing)}
    assert needy == {"mismatch_rate", "bad_input_5xx_rate"}
    assert all(m.unmeasurable_with is None or m.unmeasurable_with(everything) is None for m in OBJECTIVE_METRICS)
    mismatch = objective_metric("mismatch_rate").unmeasurable_with
    assert mismatch is not None and mismatch(Traffic(checks_answers=False, sends_bad_input=True)) is not None
    bad_input = objective_metric("bad_input_5xx_rate").unmeasurable_with
    assert bad_input is not None and bad_input(Traffic(checks_answers=True, sends_bad_input=False)) is not None
