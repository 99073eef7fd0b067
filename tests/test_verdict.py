"""Tests for harness.verdict: the straddle rule per metric, intervals, stage selection, overall status."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import Objective
from harness.model import (
    LoadgenOverhead,
    ObjectiveResult,
    PercentileEstimate,
    StageResult,
    Status,
    StepAutoscaling,
    Verdict,
    from_json_dict,
    to_json_dict,
)
from harness.verdict import (
    NO_OBJECTIVES_WARNING,
    build_verdict,
    exit_code_for,
    judge,
    overall_status,
    overhead_at,
    overhead_warnings,
    worst_overhead,
)


def estimate(q: float, value_ms: float | None, low_ms: float | None, high_ms: float | None) -> PercentileEstimate:
    def s(ms: float | None) -> float | None:
        return None if ms is None else ms / 1000

    return PercentileEstimate(
        q=q, value_s=s(value_ms), ci_low_s=s(low_ms), ci_high_s=s(high_ms), samples=5000, confidence=0.95
    )


def stage(name: str = "steady", **changes: Any) -> StageResult:
    fields: dict[str, Any] = {
        "name": name,
        "judged": True,
        "start_s": 0.0,
        "end_s": 60.0,
        "duration_s": 60.0,
        "offered_users": 10,
        "offered_rps": None,
        "achieved_rps": 100.0,
        "requests": 6000,
        "failures": 6,
        "error_rate": 0.001,
        "errors": {"http_500": 6},
        "latency": {"p95": estimate(95, 100.0, 90.0, 110.0), "p99": estimate(99, 150.0, 140.0, 170.0)},
        "dropped": 0,
        "replicas_min": 1,
        "replicas_max": 1,
        "loadgen_cpu_max_cores": 0.2,
        "invalid_reasons": [],
    }
    fields.update(changes)
    return StageResult(**fields)


def objective(metric: str, **bound: Any) -> Objective:
    return Objective(metric=metric, **bound)


def only(results: list[ObjectiveResult]) -> ObjectiveResult:
    assert len(results) == 1, results
    return results[0]


# --------------------------------------------------------------------------- latency: the straddle rule


@pytest.mark.parametrize(
    ("threshold_ms", "expected"),
    [(200, Status.PASS), (110, Status.PASS), (105, Status.WARN), (90, Status.WARN), (89.9, Status.FAIL)],
)
def test_latency_straddle_rule(threshold_ms: float, expected: Status) -> None:
    result = only(judge([stage()], [objective("latency_p95_ms", max=threshold_ms)]))
    assert result.status is expected
    assert result.measured == pytest.approx(100.0)
    assert result.ci_low == pytest.approx(90.0) and result.ci_high == pytest.approx(110.0)
    assert result.threshold == threshold_ms and result.bound == "max"
    assert result.stage == "steady" and result.metric == "latency_p95_ms"
    assert result.objective == f"latency_p95_ms <= {threshold_ms:g}"


def test_latency_reason_texts() -> None:
    passed = only(judge([stage()], [objective("latency_p95_ms", max=200)]))
    assert "p95 (ms) = 100" in passed.reason and "<= 200" in passed.reason
    warned = only(judge([stage()], [objective("latency_p95_ms", max=105)]))
    assert "straddles 105" in warned.reason


def test_latency_missing_upper_bound_cannot_pass() -> None:
    thin = stage(latency={"p99": estimate(99, 150.0, 140.0, None)})
    assert only(judge([thin], [objective("latency_p99_ms", max=500)])).status is Status.WARN
    assert only(judge([thin], [objective("latency_p99_ms", max=100)])).status is Status.FAIL


def test_latency_without_value_or_key_is_inconclusive() -> None:
    empty = stage(latency={"p95": estimate(95, None, None, None)})
    result = only(judge([empty], [objective("latency_p95_ms", max=100)]))
    assert result.status is Status.INCONCLUSIVE and "no successful requests" in result.reason
    result = only(judge([stage()], [objective("latency_p90_ms", max=100)]))
    assert result.status is Status.INCONCLUSIVE and "p90 was not computed" in result.reason


def test_invalid_stage_is_inconclusive_with_its_reasons() -> None:
    bad = stage(invalid_reasons=["load generator CPU-bound", "replica r1 crashed 3.0 s into the stage"])
    bounds: list[tuple[str, dict[str, float]]] = [
        ("latency_p95_ms", {"max": 500}),
        ("error_rate", {"max": 0.5}),
        ("throughput_rps", {"min": 1}),
    ]
    for metric, bound in bounds:
        result = only(judge([bad], [objective(metric, **bound)]))
        assert result.status is Status.INCONCLUSIVE
        assert result.reason == "stage invalid: load generator CPU-bound; replica r1 crashed 3.0 s into the stage"
        assert result.measured is not None  # still shown


@given(
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=1000),
    st.booleans(),
)
@settings(max_examples=300)
def test_straddle_rule_property(a: float, b: float, c: float, threshold: float, upper: bool) -> None:
    low, value, high = sorted([a, b, c])
    bound = {"max": threshold} if upper else {"min": threshold}
    one = stage(latency={"p95": estimate(95, value, low, high)})
    result = only(judge([one], [objective("latency_p95_ms", **bound)]))
    ci_low, ci_high = result.ci_low, result.ci_high
    assert ci_low is not None and ci_high is not None
    good = ci_high <= threshold if upper else ci_low >= threshold
    bad = ci_low > threshold if upper else ci_high < threshold
    expected = Status.PASS if good else Status.FAIL if bad else Status.WARN
    assert result.status is expected
    assert not (good and bad)


# --------------------------------------------------------------------------- error rate and throughput


def test_error_rate_uses_wilson() -> None:
    many = stage(requests=100_000, failures=100, error_rate=0.001)
    assert only(judge([many], [objective("error_rate", max=0.01)])).status is Status.PASS
    assert only(judge([many], [objective("error_rate", max=0.0005)])).status is Status.FAIL
    few = stage(requests=100, failures=0, error_rate=0.0)
    result = only(judge([few], [objective("error_rate", max=0.01)]))
    assert result.status is Status.WARN  # 0 of 100 cannot show < 1% at 95%
    assert result.ci_low == 0.0 and result.ci_high is not None and result.ci_high > 0.01


def test_error_rate_without_requests_is_inconclusive() -> None:
    empty = stage(requests=0, failures=0, error_rate=None, invalid_reasons=[])
    result = only(judge([empty], [objective("error_rate", max=0.01)]))
    assert result.status is Status.INCONCLUSIVE and result.measured is None


def test_throughput_uses_the_poisson_interval() -> None:
    # 6000 requests over 60 s: 100 rps, 95% CI about [97.5, 102.6]
    steady = stage()
    result = only(judge([steady], [objective("throughput_rps", min=95)]))
    assert result.status is Status.PASS and result.measured == pytest.approx(100.0)
    assert result.ci_low is not None and 97 < result.ci_low < 100 and result.bound == "min"
    assert only(judge([steady], [objective("throughput_rps", min=101)])).status is Status.WARN
    assert only(judge([steady], [objective("throughput_rps", min=110)])).status is Status.FAIL


@given(st.integers(min_value=0, max_value=50_000), st.floats(min_value=1, max_value=600), st.floats(0.1, 500))
def test_throughput_ci_brackets_the_rate(requests: int, duration_s: float, threshold: float) -> None:
    one = stage(requests=requests, failures=0, duration_s=duration_s, achieved_rps=requests / duration_s)
    result = only(judge([one], [objective("throughput_rps", min=threshold)]))
    assert result.ci_low is not None and result.ci_high is not None and result.measured is not None
    assert result.ci_low <= result.measured <= result.ci_high
    if result.status is Status.PASS:
        assert result.measured >= threshold


# --------------------------------------------------------------------------- which stages


def test_objectives_apply_to_judged_stages_or_the_named_ones() -> None:
    stages = [stage("warmup", judged=False), stage("low"), stage("high")]
    results = judge(stages, [objective("latency_p95_ms", max=200)])
    assert [r.stage for r in results] == ["low", "high"]
    results = judge(stages, [objective("latency_p95_ms", max=200, stages=["high"])])
    assert [r.stage for r in results] == ["high"]


def test_named_stage_missing_from_the_run_is_inconclusive() -> None:
    result = only(judge([stage("low")], [objective("latency_p95_ms", max=200, stages=["peak"])]))
    assert result.status is Status.INCONCLUSIVE and result.stage == "peak" and "did not run" in result.reason


def test_no_judged_stage_is_inconclusive() -> None:
    result = only(judge([stage("warmup", judged=False)], [objective("error_rate", max=0.1)]))
    assert result.status is Status.INCONCLUSIVE and result.stage is None


# --------------------------------------------------------------------------- autoscaling objectives


def step(stage_name: str = "high", **changes: Any) -> StepAutoscaling:
    fields: dict[str, Any] = {
        "stage": stage_name,
        "step_at_s": 100.0,
        "first_scale_up_decision_s": 12.0,
        "new_replicas_ready_s": 40.0,
        "p95_recovered_s": 45.0,
        "violation_s": 30.0,
        "replicas_min": 1,
        "replicas_max": 3,
        "replicas_final": 3,
    }
    fields.update(changes)
    return StepAutoscaling(**fields)


@pytest.mark.parametrize(
    ("metric", "limit", "expected"),
    [
        ("scale_up_within_s", 15, Status.PASS),
        ("scale_up_within_s", 10, Status.FAIL),
        ("ready_within_s", 60, Status.PASS),
        ("ready_within_s", 30, Status.FAIL),
        ("max_violation_s", 30, Status.PASS),
        ("max_violation_s", 20, Status.FAIL),
    ],
)
def test_autoscaling_objectives(metric: str, limit: float, expected: Status) -> None:
    result = only(judge([stage("high")], [objective(metric, max=limit)], [step()]))
    assert result.status is expected and result.stage == "high"
    assert result.ci_low is None and result.ci_high is None


def test_autoscaling_objective_without_records_is_inconclusive() -> None:
    result = only(judge([stage("high")], [objective("scale_up_within_s", max=30)]))
    assert result.status is Status.INCONCLUSIVE and "no autoscaling records" in result.reason


def test_autoscaling_never_happened() -> None:
    never = step(first_scale_up_decision_s=None, new_replicas_ready_s=None, violation_s=None)
    long_stage, short_stage = stage("high", duration_s=60.0), stage("high", duration_s=20.0)
    result = only(judge([long_stage], [objective("scale_up_within_s", max=30)], [never]))
    assert result.status is Status.FAIL and result.measured is None
    result = only(judge([short_stage], [objective("scale_up_within_s", max=30)], [never]))
    assert result.status is Status.INCONCLUSIVE
    result = only(judge([long_stage], [objective("ready_within_s", max=30)], [never]))
    assert result.status is Status.INCONCLUSIVE and "no scale-up was decided" in result.reason
    result = only(judge([long_stage], [objective("max_violation_s", max=30)], [never]))
    assert result.status is Status.INCONCLUSIVE and "no p95 latency objective" in result.reason
    decided = step(new_replicas_ready_s=None)
    result = only(judge([long_stage], [objective("ready_within_s", max=30)], [decided]))
    assert result.status is Status.FAIL


def test_autoscaling_on_invalid_stage_is_inconclusive() -> None:
    bad = stage("high", invalid_reasons=["replica r crashed 1.0 s into the stage"])
    result = only(judge([bad], [objective("scale_up_within_s", max=30)], [step()]))
    assert result.status is Status.INCONCLUSIVE and "crashed" in result.reason


def test_autoscaling_objective_stage_filter() -> None:
    steps = [step("mid"), step("high", first_scale_up_decision_s=50.0)]
    stages = [stage("mid"), stage("high")]
    results = judge(stages, [objective("scale_up_within_s", max=30)], steps)
    assert [(r.stage, r.status) for r in results] == [("mid", Status.PASS), ("high", Status.FAIL)]
    result = only(judge(stages, [objective("scale_up_within_s", max=30, stages=["mid"])], steps))
    assert result.stage == "mid"


# --------------------------------------------------------------------------- overall status


def result_with(status: Status) -> ObjectiveResult:
    return ObjectiveResult("o", "error_rate", "s", status, 0.1, "max", 0.0, 0.0, 0.0, "")


@given(st.lists(st.sampled_from(list(Status)), max_size=8))
def test_overall_status_is_the_worst(statuses: list[Status]) -> None:
    status = overall_status([result_with(s) for s in statuses])
    if not statuses:
        assert status is Status.INCONCLUSIVE
    elif Status.FAIL in statuses:
        assert status is Status.FAIL
    elif Status.INCONCLUSIVE in statuses:
        assert status is Status.INCONCLUSIVE
    elif Status.WARN in statuses:
        assert status is Status.WARN
    else:
        assert status is Status.PASS


def test_exit_codes() -> None:
    assert [exit_code_for(s) for s in (Status.PASS, Status.WARN, Status.FAIL, Status.INCONCLUSIVE)] == [0, 0, 1, 3]


def test_build_verdict() -> None:
    stages = [stage("low"), stage("high", latency={"p95": estimate(95, 400.0, 380.0, 420.0)})]
    verdict = build_verdict(stages, [objective("latency_p95_ms", max=200)], warnings=["shared CPUs"])
    assert verdict.status is Status.FAIL and verdict.exit_code == 1
    assert [r.status for r in verdict.objectives] == [Status.PASS, Status.FAIL]
    assert verdict.stages == stages and verdict.warnings == ["shared CPUs"]


def test_build_verdict_without_objectives() -> None:
    verdict = build_verdict([stage()], [])
    assert verdict.status is Status.INCONCLUSIVE and verdict.exit_code == 3
    assert verdict.objectives == [] and verdict.warnings == [NO_OBJECTIVES_WARNING]


def test_confidence_widens_intervals() -> None:
    narrow = only(judge([stage()], [objective("throughput_rps", min=1)], confidence=0.8))
    wide = only(judge([stage()], [objective("throughput_rps", min=1)], confidence=0.99))
    assert narrow.ci_low is not None and wide.ci_low is not None and wide.ci_low < narrow.ci_low
    assert not math.isnan(wide.ci_low)


def test_a_percentile_sample_shortfall_only_affects_that_percentiles_objectives() -> None:
    from harness.analysis.latency import LatencyHistogram
    from harness.analysis.stages import summarize_stages
    from harness.config import Objective, ValidityConfig
    from harness.model import ClientInterval, StageWindow, Status

    histogram = LatencyHistogram()
    for _ in range(50):
        histogram.record_s(0.01)
    intervals = [
        ClientInterval(float(t), float(t + 1), 0, "s", 4, None, 0, 50, 0, {}, histogram.encode()) for t in range(10)
    ]
    (stage,) = summarize_stages(
        [StageWindow("s", 0.0, 10.0, True, 4, None)], intervals, [], [], ValidityConfig(), judged_percentiles=(95, 99)
    )
    results = judge(
        [stage],
        [
            Objective(metric="latency_p99_ms", max=100),
            Objective(metric="latency_p95_ms", max=100),
            Objective(metric="error_rate", max=0.05),
        ],
    )
    by_metric = {r.metric: r for r in results}
    assert by_metric["latency_p99_ms"].status == Status.INCONCLUSIVE
    assert "too few samples for p99" in by_metric["latency_p99_ms"].reason
    assert by_metric["latency_p95_ms"].status == Status.PASS
    assert by_metric["error_rate"].status == Status.PASS


# --------------------------------------------------------------------------- answer checks


def test_mismatch_rate_is_judged_on_checked_answers_only() -> None:
    # 40 of 2000 checked answers wrong (2%): FAIL at 1%, PASS at 5%; failures and unchecked answers do not count.
    broken = stage(checked=2000, mismatches=40, mismatch_rate=0.02)
    failed = only(judge([broken], [objective("mismatch_rate", max=0.01)]))
    assert failed.status is Status.FAIL and failed.measured == pytest.approx(0.02)
    assert "mismatch rate (40/2000)" in failed.reason
    assert only(judge([broken], [objective("mismatch_rate", max=0.05)])).status is Status.PASS


def test_nothing_checked_is_inconclusive_not_zero() -> None:
    result = only(judge([stage()], [objective("mismatch_rate", max=0.01)]))
    assert result.status is Status.INCONCLUSIVE and result.measured is None
    assert "no answer was checked" in result.reason


def test_bad_input_5xx_rate_counts_5xx_among_bad_inputs() -> None:
    clean = stage(bad_inputs=3000, bad_input_5xx=0, bad_input_5xx_rate=0.0)
    assert only(judge([clean], [objective("bad_input_5xx_rate", max=0.01)])).status is Status.PASS
    one_in_ten = stage(bad_inputs=300, bad_input_5xx=30, bad_input_5xx_rate=0.1)
    assert only(judge([one_in_ten], [objective("bad_input_5xx_rate", max=0.01)])).status is Status.FAIL
    none_sent = only(judge([stage()], [objective("bad_input_5xx_rate", max=0.01)]))
    assert none_sent.status is Status.INCONCLUSIVE and "no bad input was sent" in none_sent.reason


@settings(max_examples=100, deadline=None)
@given(checked=st.integers(1, 5000), data=st.data())
def test_the_mismatch_rate_interval_holds_the_observed_rate(checked: int, data: st.DataObject) -> None:
    mismatches = data.draw(st.integers(0, checked))
    result = only(
        judge(
            [stage(checked=checked, mismatches=mismatches, mismatch_rate=mismatches / checked)],
            [objective("mismatch_rate", max=0.5)],
        )
    )
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low <= mismatches / checked <= result.ci_high


def test_a_replica_dying_under_bad_input_fails_bad_input_5xx_rate_even_in_an_invalid_stage() -> None:
    died = stage(
        bad_inputs=200,
        bad_input_5xx=0,
        bad_input_5xx_rate=0.0,
        crashed_replicas=["replica-2"],
        invalid_reasons=["replica replica-2 crashed 3.0 s into the stage"],
    )
    result = only(judge([died], [objective("bad_input_5xx_rate", max=0.01)]))
    assert result.status is Status.FAIL and "replica replica-2 died while bad input was sent" in result.reason
    # Other objectives of that stage stay INCONCLUSIVE: a crash makes their figures unreliable.
    assert only(judge([died], [objective("error_rate", max=0.01)])).status is Status.INCONCLUSIVE


# --------------------------------------------------------------------------- the load generator's overhead


def overhead(p50_ms: float = 0.3, p95_ms: float = 0.6, p99_ms: float = 1.2, process: int = 0) -> LoadgenOverhead:
    return LoadgenOverhead(process=process, requests=200, rate_rps=100.0, p50_ms=p50_ms, p95_ms=p95_ms, p99_ms=p99_ms)


def test_the_overhead_is_read_at_the_calibration_percentile_at_or_above_the_objective() -> None:
    measured = overhead()
    assert overhead_at(measured, 50.0) == (50.0, 0.3)
    assert overhead_at(measured, 10.0) == (50.0, 0.3)
    assert overhead_at(measured, 90.0) == (95.0, 0.6)
    assert overhead_at(measured, 95.0) == (95.0, 0.6)
    assert overhead_at(measured, 99.0) == (99.0, 1.2)
    assert overhead_at(measured, 99.9) == (99.0, 1.2)


def test_an_overhead_above_five_percent_of_a_latency_bound_is_a_warning() -> None:
    # p95 overhead 0.6 ms: 6% of a 10 ms bound warns, 4% of a 15 ms bound does not.
    warnings = overhead_warnings(overhead(), [objective("latency_p95_ms", max=10), objective("latency_p95_ms", max=15)])
    assert len(warnings) == 1
    assert "latency_p95_ms <= 10" in warnings[0] and "0.60 ms" in warnings[0] and "6%" in warnings[0]


def test_the_overhead_rule_leaves_other_objectives_and_unmeasured_overheads_alone() -> None:
    objectives = [
        objective("error_rate", max=0.001),
        objective("throughput_rps", min=1),
        objective("latency_p99_ms", max=1),
    ]
    assert len(overhead_warnings(overhead(), objectives)) == 1
    assert overhead_warnings(None, objectives) == []


def test_the_worst_process_overhead_goes_into_the_verdict_with_its_warning() -> None:
    assert worst_overhead([]) is None
    worst = overhead(p99_ms=3.0, process=2)
    assert worst_overhead([overhead(process=1), worst]) == worst
    verdict = build_verdict([stage()], [objective("latency_p99_ms", max=50)], loadgen_overhead=worst)
    assert verdict.loadgen_overhead == worst
    assert any("6% of its 50 ms bound" in warning for warning in verdict.warnings)
    assert build_verdict([stage()], [objective("latency_p99_ms", max=500)]).loadgen_overhead is None


def test_a_verdict_written_before_the_overhead_was_measured_still_loads() -> None:
    data = to_json_dict(build_verdict([stage()], [objective("latency_p99_ms", max=500)]))
    del data["loadgen_overhead"]
    assert from_json_dict(Verdict, data).loadgen_overhead is None


# --------------------------------------------------------------------------- streamed requests


def test_streamed_objectives_are_judged_by_the_straddle_rule() -> None:
    from tests.test_objectives import streamed_stage

    streamed = streamed_stage()
    assert only(judge([streamed], [objective("ttft_p95_ms", max=250)])).status is Status.PASS
    assert only(judge([streamed], [objective("ttft_p95_ms", max=150)])).status is Status.FAIL
    assert only(judge([streamed], [objective("ttft_p95_ms", max=210)])).status is Status.WARN
    assert only(judge([streamed], [objective("output_tokens_per_s", min=900)])).status is Status.PASS
    good = Objective(metric="goodput_rps", min=5, per_request={"ttft_ms": 500})
    result = only(judge([streamed], [good]))
    assert result.status is Status.PASS and result.unit == "rps" and "500 of 600" in result.reason
    assert result.objective == "goodput_rps >= 5 (ttft_ms<=500)"
    too_much = Objective(metric="goodput_rps", min=10, per_request={"ttft_ms": 500})
    assert only(judge([streamed], [too_much])).status is Status.FAIL
    # Without streams, and with too few samples, the verdict says why it cannot judge.
    nothing = only(judge([stage()], [objective("itl_p99_ms", max=50)]))
    assert nothing.status is Status.INCONCLUSIVE and "no streamed request" in nothing.reason


def test_an_objective_on_a_named_request_is_judged_on_its_figures_alone() -> None:
    predict = stage(latency={"p95": estimate(95, 300.0, 280.0, 320.0)}, achieved_rps=30.0)
    health = stage(latency={"p95": estimate(95, 2.0, 1.8, 2.2)})
    steady = stage(by_request={"predict": predict, "health": health})
    on_predict = objective("latency_p95_ms", max=200, request="predict")
    result = only(
        judge(
            [steady],
            [
                on_predict,
            ],
        )
    )
    assert (result.status, result.measured, result.request) == (Status.FAIL, 300.0, "predict")
    assert result.objective == "latency_p95_ms <= 200 for predict"
    assert only(judge([steady], [objective("latency_p95_ms", max=200)])).status is Status.PASS, "the stage's own"
    missing = only(judge([stage()], [on_predict]))
    assert missing.status is Status.INCONCLUSIVE and "request 'predict' has no figures" in missing.reason
    doubtful = stage(by_request={"predict": replace(predict, invalid_reasons=["load generator CPU-bound"])})
    assert only(judge([doubtful], [on_predict])).status is Status.INCONCLUSIVE
