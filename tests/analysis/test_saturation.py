"""Tests for harness.analysis.saturation: maximum sustainable throughput, limiting stage, knee, scaling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.analysis.saturation import max_sustainable, scaling_efficiency
from harness.model import ObjectiveResult, PercentileEstimate, Saturation, StageResult, Status


def stage(
    name: str,
    achieved_rps: float,
    p95_s: float | None = 0.05,
    *,
    offered_rps: float | None = None,
    judged: bool = True,
    replicas_max: int | None = None,
    invalid: list[str] | None = None,
) -> StageResult:
    latency = {"p95": PercentileEstimate(95.0, p95_s, p95_s, p95_s, 1000, 0.95)}
    return StageResult(
        name=name,
        judged=judged,
        start_s=0.0,
        end_s=60.0,
        duration_s=60.0,
        offered_users=None,
        offered_rps=offered_rps,
        achieved_rps=achieved_rps,
        requests=int(achieved_rps * 60),
        failures=0,
        error_rate=0.0,
        errors={},
        latency=latency,
        dropped=0,
        replicas_min=replicas_max,
        replicas_max=replicas_max,
        loadgen_cpu_max_cores=None,
        invalid_reasons=invalid or [],
    )


def outcome(stage_name: str | None, status: Status, metric: str = "latency_p95_ms") -> ObjectiveResult:
    return ObjectiveResult(
        objective=f"{metric} <= 100",
        metric=metric,
        stage=stage_name,
        status=status,
        threshold=100.0,
        bound="max",
        measured=None,
        ci_low=None,
        ci_high=None,
        reason="test",
    )


def ramp(statuses: list[Status], **kwargs: object) -> tuple[list[StageResult], list[ObjectiveResult]]:
    """Stages s0, s1, ... at 10, 20, ... rps with M/M/1-like p95 (service rate 100 rps), one objective each."""
    stages = [
        stage(f"s{i}", 10.0 * (i + 1), 1.0 / (100.0 - 9.5 * (i + 1)), **kwargs)  # type: ignore[arg-type]
        for i in range(len(statuses))
    ]
    return stages, [outcome(f"s{i}", status) for i, status in enumerate(statuses)]


P, W, F, INC = Status.PASS, Status.WARN, Status.FAIL, Status.INCONCLUSIVE


def test_ramp_highest_passing_stage_and_the_failure_above_it() -> None:
    stages, results = ramp([P, P, P, P, P, P, F, F, F, F], replicas_max=2)
    saturation = max_sustainable(stages, results, None)
    assert saturation.max_sustainable_rps == 60.0
    assert saturation.max_sustainable_rps_per_replica == 30.0
    assert saturation.limiting_stage == "s6"
    assert saturation.knee_rps is not None and 50.0 <= saturation.knee_rps <= 100.0
    assert saturation.knee_latency_s is not None
    assert saturation.scaling_efficiency is None
    assert "s5" in saturation.reason and "s6" in saturation.reason and "knee" in saturation.reason


def test_warn_does_not_prove_a_load_sustainable() -> None:
    stages, results = ramp([P, P, W, P, F])
    saturation = max_sustainable(stages, results, 1)
    # s3 passed above a WARN; the WARN stage is skipped, not treated as a failure.
    assert saturation.max_sustainable_rps == 40.0
    assert saturation.limiting_stage == "s4"
    stages, results = ramp([P, W])
    saturation = max_sustainable(stages, results, 1)
    assert saturation.max_sustainable_rps == 10.0
    assert saturation.limiting_stage is None
    assert "lower bound" in saturation.reason


def test_every_objective_on_a_stage_must_pass() -> None:
    stages, results = ramp([P, P, P])
    results.append(outcome("s2", Status.FAIL, metric="error_rate"))
    saturation = max_sustainable(stages, results, 1)
    assert saturation.max_sustainable_rps == 20.0
    assert saturation.limiting_stage == "s2"


def test_invalid_and_unjudged_stages_are_not_sustainable() -> None:
    stages = [
        stage("warmup", 90.0, judged=False),
        stage("a", 10.0),
        stage("b", 30.0, invalid=["load generator CPU-bound"]),
    ]
    results = [outcome("warmup", P), outcome("a", P), outcome("b", P)]
    saturation = max_sustainable(stages, results, 1)
    assert saturation.max_sustainable_rps == 10.0
    assert saturation.limiting_stage is None


def test_per_replica_uses_the_argument_without_recorded_replicas() -> None:
    stages, results = ramp([P, P, F])
    assert max_sustainable(stages, results, 4).max_sustainable_rps_per_replica == 5.0
    saturation = max_sustainable(stages, results, None)
    assert saturation.max_sustainable_rps == 20.0
    assert saturation.max_sustainable_rps_per_replica is None
    assert "per-replica throughput unknown" in saturation.reason


def test_limiting_stage_uses_the_planned_rate_of_an_overloaded_stage() -> None:
    # Overloaded, the open-model stage achieved less than the passing one, but was offered more.
    stages = [stage("low", 50.0, offered_rps=50.0), stage("over", 45.0, offered_rps=80.0)]
    saturation = max_sustainable(stages, [outcome("low", P), outcome("over", F)], 1)
    assert saturation.max_sustainable_rps == 50.0
    assert saturation.limiting_stage == "over"


def test_nothing_passed_gives_none_never_zero() -> None:
    stages, results = ramp([F, F, F])
    saturation = max_sustainable(stages, results, 1)
    assert saturation.max_sustainable_rps is None
    assert saturation.max_sustainable_rps_per_replica is None
    assert saturation.limiting_stage == "s0"
    assert "lowest load already failed" in saturation.reason


def test_no_objectives_prove_nothing() -> None:
    stages, _ = ramp([P] * 10)
    saturation = max_sustainable(stages, [], 1)
    assert saturation.max_sustainable_rps is None
    assert saturation.limiting_stage is None
    assert "no objectives were judged" in saturation.reason
    # The knee does not depend on objectives.
    assert saturation.knee_rps is not None


def test_inconclusive_everywhere_and_no_stages() -> None:
    stages, results = ramp([INC, INC])
    saturation = max_sustainable(stages, results, 1)
    assert saturation.max_sustainable_rps is None
    assert saturation.limiting_stage is None
    assert "WARN and INCONCLUSIVE" in saturation.reason
    empty = max_sustainable([], [], 1)
    assert empty == Saturation(None, None, None, None, None, None, empty.reason)
    assert "no judged stages" in empty.reason


def test_knee_needs_three_valid_stages_with_a_p95() -> None:
    stages = [stage("a", 10.0, 0.01), stage("b", 20.0, None), stage("c", 30.0, 0.5)]
    saturation = max_sustainable(stages, [outcome("a", P)], 1)
    assert saturation.knee_rps is None
    assert "fewer than 3" in saturation.reason


def test_scaling_efficiency_is_passed_through() -> None:
    stages, results = ramp([P, F])
    saturation = max_sustainable(stages, results, 1, scaling_efficiency=0.8)
    assert saturation.scaling_efficiency == 0.8
    assert "scaling efficiency 0.80" in saturation.reason


@given(
    statuses=st.lists(st.sampled_from([P, W, F, INC]), min_size=1, max_size=12),
    replicas=st.integers(1, 8),
)
def test_maximum_is_a_passing_stage_and_nothing_higher_passed(statuses: list[Status], replicas: int) -> None:
    stages, results = ramp(statuses)
    saturation = max_sustainable(stages, results, replicas)
    passing = [s.achieved_rps for s, status in zip(stages, statuses, strict=True) if status is P]
    assert saturation.max_sustainable_rps == (max(passing) if passing else None)
    if saturation.max_sustainable_rps is not None:
        assert saturation.max_sustainable_rps_per_replica == pytest.approx(saturation.max_sustainable_rps / replicas)
    if saturation.limiting_stage is not None:
        limiting = next(s for s in stages if s.name == saturation.limiting_stage)
        assert statuses[stages.index(limiting)] is F
        assert saturation.max_sustainable_rps is None or limiting.achieved_rps > saturation.max_sustainable_rps
    assert saturation.reason


def test_scaling_efficiency_examples() -> None:
    assert scaling_efficiency({1: 100.0, 2: 190.0, 4: 320.0}) == pytest.approx(0.8)
    assert scaling_efficiency({2: 190.0, 4: 320.0}) is None
    assert scaling_efficiency({1: 100.0}) is None
    assert scaling_efficiency({1: 0.0, 2: 10.0}) is None
    assert scaling_efficiency({}) is None
    with pytest.raises(ValueError, match="replica count 0"):
        scaling_efficiency({0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match="finite"):
        scaling_efficiency({1: float("nan"), 2: 2.0})


@given(single=st.floats(1e-3, 1e5), n=st.integers(2, 64), efficiency=st.floats(0.01, 1.5))
def test_scaling_efficiency_recovers_the_ratio(single: float, n: int, efficiency: float) -> None:
    assert scaling_efficiency({1: single, n: n * single * efficiency}) == pytest.approx(efficiency)


def test_autoscaling_objectives_do_not_decide_sustainability() -> None:
    stages, results = ramp([P, P, F])
    results.append(outcome("s1", Status.INCONCLUSIVE, metric="scale_up_within_s"))
    results.append(outcome("s0", Status.FAIL, metric="ready_within_s"))
    saturation = max_sustainable(stages, results, 1)
    assert saturation.max_sustainable_rps == 20.0
    assert saturation.limiting_stage == "s2"
