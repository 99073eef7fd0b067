"""Tests for harness.autoscaling: the Kubernetes documentation's worked examples, cases carried over from
kubernetes/kubernetes replica_calculator_test.go, and property tests of the scaling invariants."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from harness.autoscaling import (
    LIMIT_MAX_REPLICAS,
    LIMIT_MIN_REPLICAS,
    LIMIT_SCALE_DOWN_DISABLED,
    LIMIT_SCALE_DOWN_POLICY,
    LIMIT_SCALE_DOWN_STABILIZATION,
    LIMIT_SCALE_UP_DISABLED,
    LIMIT_SCALE_UP_POLICY,
    LIMIT_SCALE_UP_STABILIZATION,
    AutoscalerState,
    CpuSample,
    PodObservation,
    Recommendation,
    ScalingDecision,
    decide,
)
from harness.config import AutoscalingConfig
from harness.errors import ConfigError

INFLIGHT = "bentoml_service_request_in_progress"
NOW_S = 10_000.0


def pods_metric(average_value: str, name: str = INFLIGHT) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": average_value}},
    }


def cpu_metric(utilization: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}},
    }


def config(metrics: list[dict[str, Any]], **fields: Any) -> AutoscalingConfig:
    return AutoscalingConfig.model_validate({"minReplicas": 1, "maxReplicas": 100, "metrics": metrics, **fields})


def pod(
    index: int,
    *,
    value: float | None = None,
    cpu_cores: float | None = None,
    ready: bool = True,
    started_at_s: float | None = NOW_S - 5000,
    ready_transition_s: float | None = NOW_S - 4990,
    phase: Any = "Running",
    deleting: bool = False,
    cpu_window_s: float = 30.0,
) -> PodObservation:
    return PodObservation(
        name=f"pod-{index}",
        ready=ready,
        ready_transition_s=ready_transition_s,
        started_at_s=started_at_s,
        cpu=None if cpu_cores is None else CpuSample(cpu_cores, NOW_S, cpu_window_s),
        pod_metrics={INFLIGHT: value},
        phase=phase,
        deleting=deleting,
    )


def metric_pods(*values: float | None) -> list[PodObservation]:
    return [pod(i, value=v) for i, v in enumerate(values)]


def cpu_pods(*cores: float | None) -> list[PodObservation]:
    return [pod(i, cpu_cores=c) for i, c in enumerate(cores)]


# Kubernetes' defaults but without the scale-down stabilization window, to look at one sync in isolation.
NO_WINDOW = {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}


def once(
    cfg: AutoscalingConfig, pods: list[PodObservation], *, request: float | None = 1.0, **kw: Any
) -> ScalingDecision:
    return decide(
        cfg,
        now_s=kw.pop("now_s", NOW_S),
        current_replicas=kw.pop("current", len(pods)),
        pods=pods,
        cpu_request_cores=request,
        state=kw.pop("state", AutoscalerState()),
    )


# --------------------------------------------------------------------------- algorithm details (docs)


def test_docs_current_200m_target_100m_doubles_replicas() -> None:
    decision = once(config([pods_metric("100m")]), metric_pods(0.2, 0.2, 0.2))
    assert decision.desired_replicas == 6
    (proposal,) = decision.proposals
    assert (proposal.current_value, proposal.target_value, proposal.replicas) == (0.2, 0.1, 6)


def test_docs_current_50m_target_100m_halves_replicas() -> None:
    decision = once(config([pods_metric("100m")], **NO_WINDOW), metric_pods(0.05, 0.05, 0.05, 0.05))
    assert decision.proposals[0].replicas == 2
    assert decision.desired_replicas == 2


def test_blog_example_90_percent_cpu_against_75_scales_50_to_60() -> None:
    decision = once(config([cpu_metric(75)]), cpu_pods(*[0.9] * 50), request=1.0)
    assert decision.proposals[0].current_value == 90
    assert decision.desired_replicas == 60


@pytest.mark.parametrize(("value", "expected"), [(0.105, 10), (0.110, 10), (0.111, 12), (0.090, 10), (0.089, 9)])
def test_ratio_within_global_tolerance_skips_scaling(value: float, expected: int) -> None:
    decision = once(config([pods_metric("100m")], **NO_WINDOW), metric_pods(*[value] * 10))
    assert decision.desired_replicas == expected


def test_first_sync_does_not_scale_down_because_current_count_is_a_recommendation() -> None:
    # recordInitialRecommendation: the current size enters the scale-down window on the first sync.
    decision = once(config([pods_metric("100m")]), metric_pods(0.05, 0.05, 0.05, 0.05))
    assert decision.proposals[0].replicas == 2
    assert decision.desired_replicas == 4
    assert decision.limited_by == LIMIT_SCALE_DOWN_STABILIZATION


# --------------------------------------------------------------------------- replica_calculator_test.go cases


@pytest.mark.parametrize(
    ("name", "pods", "target", "replicas", "utilization"),
    [
        ("scale up", cpu_pods(0.6, 1.0, 1.4), 30, 5, 50),
        (
            "unready pod scales less",
            [pod(0, cpu_cores=0.6, ready=False, started_at_s=0, ready_transition_s=0), *cpu_pods(None, 1.0, 1.4)[1:]],
            30,
            4,
            60,
        ),
        (
            "hot-CPU pod scales less",
            [
                pod(0, cpu_cores=0.6, started_at_s=NOW_S - 60, ready_transition_s=NOW_S - 10),
                *cpu_pods(None, 1.0, 1.4)[1:],
            ],
            30,
            4,
            60,
        ),
        (
            "unready pods ignored: no scale",
            [
                pod(0, cpu_cores=0.8),
                pod(1, cpu_cores=1.0, ready=False, started_at_s=0, ready_transition_s=0),
                pod(2, cpu_cores=1.4, ready=False, started_at_s=0, ready_transition_s=0),
            ],
            30,
            3,
            40,
        ),
        (
            "failed and deleted pods ignored",
            [*cpu_pods(1.0, 1.4), pod(2, phase="Failed", ready=False), pod(3, cpu_cores=1.9, deleting=True)],
            30,
            4,
            60,
        ),
        ("scale down", cpu_pods(0.2, 0.6, 1.0, 0.5, 0.5), 50, 3, 28),
        (
            "scale down: unscheduled pods excluded",
            [pod(0, cpu_cores=0.2), *(pod(i, phase="Pending", ready=False) for i in range(1, 5))],
            50,
            1,
            10,
        ),
        ("missing metrics count as 100% of request on a scale-down", cpu_pods(0.8, 0.19, None, None), 100, 3, 24),
        ("missing metrics count as 0% on a scale-up, which would reverse it", cpu_pods(3.8, None), 100, 2, 190),
        (
            "missing and unready count as 0% on a scale-up",
            [pod(0, cpu_cores=0.2, ready=False, started_at_s=0, ready_transition_s=0), pod(1, cpu_cores=4.0), pod(2)],
            50,
            4,
            200,
        ),
    ],
)
def test_kubernetes_cpu_replica_calculations(
    name: str, pods: list[PodObservation], target: int, replicas: int, utilization: int
) -> None:
    # Two 1-core containers per pod in the Go tests: a 2-core request per pod here.
    current = sum(1 for p in pods if p.phase != "Failed" and not p.deleting)
    decision = once(config([cpu_metric(target)], **NO_WINDOW), pods, request=2.0, current=current)
    (proposal,) = decision.proposals
    assert (proposal.replicas, proposal.current_value) == (replicas, utilization), name


def test_missing_metrics_on_scale_down_use_the_target_when_it_is_above_100_percent() -> None:
    # TestReplicaCalcMissingMetricsScaleDownTargetOver100, with equal requests: pod-3 is assumed at 300%, not 100%.
    unready = pod(0, cpu_cores=0.2, ready=False, started_at_s=0, ready_transition_s=0)
    pods = [unready, pod(1, cpu_cores=0.1), pod(2, cpu_cores=0.1), pod(3)]
    decision = once(config([cpu_metric(300)], **NO_WINDOW), pods)
    assert decision.proposals[0].current_value == 10
    assert decision.proposals[0].replicas == 2


@pytest.mark.parametrize(
    ("values", "target", "expected"),
    [
        ((20.0, 10.0, 30.0), "15", 4),  # TestReplicaCalcScaleUpCM
        ((12.0,) * 5, "20", 3),  # TestReplicaCalcScaleDownCM
        ((20.0, 21.0, 21.0), "20", 3),  # TestReplicaCalcToleranceCM
        ((20.0, 19.0, 21.0, None, None), "20", 5),  # TestPlainMetricReplicaCalcMissingMetricsNoChangeEq
    ],
)
def test_kubernetes_pods_metric_calculations(values: tuple[float | None, ...], target: str, expected: int) -> None:
    decision = once(config([pods_metric(target)], **NO_WINDOW), metric_pods(*values))
    assert decision.proposals[0].replicas == expected


def test_missing_metrics_count_as_zero_on_a_scale_up() -> None:
    # One pod at 10.5x the target, nine without metrics: at 0% the average is 1.05x, within tolerance.
    decision = once(config([pods_metric("100m")]), metric_pods(1.05, *[None] * 9))
    assert decision.proposals[0].replicas == 10
    assert "within tolerance once missing/unready pods" in decision.proposals[0].reason


def test_a_scale_up_signal_never_scales_down_when_pods_are_missing() -> None:
    # Ten replicas wanted but three pods exist, one without metrics: 2x the target must not shrink to 6.
    decision = once(config([pods_metric("100m")], **NO_WINDOW), metric_pods(0.3, 0.3, None), current=10)
    assert decision.proposals[0].replicas == 10
    assert decision.proposals[0].reason == "counting missing/unready pods reverses the direction"


def test_readiness_is_ignored_for_pods_metrics() -> None:
    # TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale: a Running but unready pod still counts for a Pods metric.
    pods = [pod(0, value=50.0), pod(1, value=10.0), pod(2, value=30.0, ready=False, started_at_s=NOW_S - 5)]
    assert once(config([pods_metric("15")]), pods).proposals[0].replicas == 6


def test_pending_pods_count_as_zero_on_a_pods_metric_scale_up() -> None:
    pods = [pod(0, value=0.4), pod(1, value=0.4), pod(2, phase="Pending", ready=False)]
    # Ratio 4 on the running pods; with the Pending pod at 0: 266m / 100m = 2.66 over 3 pods -> 8.
    assert once(config([pods_metric("100m")]), pods).proposals[0].replicas == 8


# --------------------------------------------------------------------------- CPU readiness windows


def test_pod_that_went_unready_right_after_start_and_never_became_ready_is_set_aside() -> None:
    cfg = config([cpu_metric(50)], initialReadinessDelaySeconds=30, cpuInitializationPeriodSeconds=300)
    never_ready = pod(1, cpu_cores=2.0, ready=False, started_at_s=NOW_S - 1000, ready_transition_s=NOW_S - 990)
    decision = once(cfg, [pod(0, cpu_cores=0.5), never_ready], request=1.0)
    # Only pod-0 (50%) counts: within tolerance, no change.
    assert decision.proposals[0].current_value == 50
    assert decision.desired_replicas == 2


def test_pod_unready_long_after_start_still_counts_for_cpu() -> None:
    cfg = config([cpu_metric(50)], initialReadinessDelaySeconds=30, cpuInitializationPeriodSeconds=300)
    went_unready = pod(1, cpu_cores=2.0, ready=False, started_at_s=NOW_S - 1000, ready_transition_s=NOW_S - 500)
    decision = once(cfg, [pod(0, cpu_cores=0.5), went_unready], request=1.0)
    assert decision.proposals[0].current_value == 125


@pytest.mark.parametrize(("ready_for_s", "counted"), [(50.0, True), (30.0, True), (10.0, False)])
def test_cpu_sample_must_postdate_readiness_during_the_initialization_period(ready_for_s: float, counted: bool) -> None:
    cfg = config([cpu_metric(50)], cpuInitializationPeriodSeconds=300)
    fresh = pod(1, cpu_cores=2.0, started_at_s=NOW_S - 60, ready_transition_s=NOW_S - ready_for_s, cpu_window_s=30)
    decision = once(cfg, [pod(0, cpu_cores=0.5), fresh], request=1.0)
    assert decision.proposals[0].current_value == (125 if counted else 50)


# --------------------------------------------------------------------------- invalid metrics


def test_missing_cpu_request_is_reported_and_never_scales() -> None:
    decision = once(config([cpu_metric(50)]), cpu_pods(1.0, 1.0), request=None)
    (proposal,) = decision.proposals
    assert proposal.replicas is None and proposal.current_value is None
    assert "missing request for cpu" in proposal.reason
    assert decision.desired_replicas == 2
    assert "invalid metrics" in decision.reason


def test_invalid_metric_allows_scale_up_from_the_others() -> None:
    cfg = config([cpu_metric(50), pods_metric("100m")], **NO_WINDOW)
    assert once(cfg, metric_pods(0.3, 0.3), request=None).desired_replicas == 6


def test_invalid_metric_blocks_scale_down() -> None:
    cfg = config([cpu_metric(50), pods_metric("100m")], **NO_WINDOW)
    decision = once(cfg, metric_pods(0.01, 0.01, 0.01), request=None)
    assert decision.proposals[1].replicas == 1
    assert decision.desired_replicas == 3


def test_no_metrics_at_all_is_invalid() -> None:
    decision = once(config([pods_metric("100m")]), metric_pods(None, None))
    assert decision.proposals[0].replicas is None
    assert decision.desired_replicas == 2


def test_multiple_metrics_take_the_largest_proposal() -> None:
    cfg = config([cpu_metric(50), pods_metric("100m")], **NO_WINDOW)
    pods = [pod(i, cpu_cores=1.5, value=0.2) for i in range(2)]  # cpu 150% of 50 -> 6; in-flight 2x -> 4
    decision = once(cfg, pods, request=1.0)
    assert [p.replicas for p in decision.proposals] == [6, 4]
    assert decision.desired_replicas == 6
    assert decision.reason == "cpu above target"


# --------------------------------------------------------------------------- bounds and disabled target


def test_zero_current_replicas_means_autoscaling_is_disabled() -> None:
    decision = once(config([pods_metric("100m")]), metric_pods(5.0), current=0)
    assert decision.desired_replicas == 0
    assert decision.proposals == ()


def test_current_above_max_goes_to_max_and_below_min_goes_to_min() -> None:
    cfg = config([pods_metric("100m")], minReplicas=2, maxReplicas=5)
    above = once(cfg, metric_pods(*[0.1] * 8))
    below = once(cfg, metric_pods(0.1))
    assert (above.desired_replicas, above.limited_by) == (5, LIMIT_MAX_REPLICAS)
    assert (below.desired_replicas, below.limited_by) == (2, LIMIT_MIN_REPLICAS)


def test_desired_is_clamped_to_max_replicas() -> None:
    cfg = config([pods_metric("100m")], maxReplicas=5)
    decision = once(cfg, metric_pods(1.0, 1.0, 1.0))
    assert (decision.desired_replicas, decision.limited_by) == (5, LIMIT_MAX_REPLICAS)


def test_disabled_in_scenario_changes_nothing() -> None:
    decision = once(config([pods_metric("100m")], enabled=False), metric_pods(1.0))
    assert decision.desired_replicas == 1


# --------------------------------------------------------------------------- behavior: policies


def run(
    cfg: AutoscalingConfig, start: int, times_s: list[float], value_for: Any, *, state: AutoscalerState | None = None
) -> list[ScalingDecision]:
    """Sync at each time, resizing to the decision; value_for(replicas) is every pod's metric value."""
    decisions: list[ScalingDecision] = []
    current, st_ = start, state or AutoscalerState()
    for now_s in times_s:
        decision = decide(
            cfg,
            now_s=now_s,
            current_replicas=current,
            pods=metric_pods(*[value_for(current)] * current),
            cpu_request_cores=None,
            state=st_,
        )
        decisions.append(decision)
        current, st_ = decision.desired_replicas, decision.state
    return decisions


def test_docs_scale_down_pods_4_or_percent_10_per_minute_from_80() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 10, "periodSeconds": 60},
            ],
        }
    }
    cfg = config([pods_metric("100m")], minReplicas=10, behavior=behavior)
    decisions = run(cfg, 80, [15.0 * i for i in range(60)], lambda _n: 0.0)
    sizes = [d.desired_replicas for d in decisions]
    # 8 removed first (10% of 80), nothing more within the minute, then 10% of 72 = 7.2 rounded up to 8.
    assert sizes[:5] == [72, 72, 72, 72, 64]
    assert decisions[1].limited_by == LIMIT_SCALE_DOWN_POLICY
    per_minute = [sizes[i] for i in range(0, 60, 4)]
    assert per_minute[:8] == [72, 64, 57, 51, 45, 40, 36, 32]  # 10% (rounded up) above 40 replicas, then 4 pods
    assert per_minute[-1] == 10


def test_docs_select_policy_min_removes_at_most_5_pods_per_minute() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Min",
            "policies": [
                {"type": "Percent", "value": 10, "periodSeconds": 60},
                {"type": "Pods", "value": 5, "periodSeconds": 60},
            ],
        }
    }
    cfg = config([pods_metric("100m")], maxReplicas=500, behavior=behavior)
    decisions = run(cfg, 400, [0.0, 30.0, 60.0], lambda _n: 0.01)
    assert [d.desired_replicas for d in decisions] == [395, 395, 390]


@pytest.mark.parametrize(("select_policy", "expected"), [("Max", 20), ("Min", 14)])
def test_scale_up_select_policy_picks_the_largest_or_smallest_allowed_change(select_policy: str, expected: int) -> None:
    behavior = {"scaleUp": {"selectPolicy": select_policy}}  # default policies: 4 pods or 100% per 15 s
    decision = once(config([pods_metric("100m")], behavior=behavior), metric_pods(*[1.0] * 10))
    assert (decision.desired_replicas, decision.limited_by) == (expected, LIMIT_SCALE_UP_POLICY)


@pytest.mark.parametrize("direction", ["scaleUp", "scaleDown"])
def test_select_policy_disabled_blocks_that_direction(direction: str) -> None:
    behavior: dict[str, Any] = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    behavior[direction] = {**behavior.get(direction, {}), "selectPolicy": "Disabled"}
    cfg = config([pods_metric("100m")], behavior=behavior)
    up = once(cfg, metric_pods(0.5, 0.5))
    down = once(cfg, metric_pods(0.01, 0.01, 0.01, 0.01))
    if direction == "scaleUp":
        assert (up.desired_replicas, up.limited_by) == (2, LIMIT_SCALE_UP_DISABLED)
        assert down.desired_replicas == 1
    else:
        assert up.desired_replicas == 6
        assert (down.desired_replicas, down.limited_by) == (4, LIMIT_SCALE_DOWN_DISABLED)


def test_default_scale_up_policies_allow_4_pods_or_100_percent_per_15s() -> None:
    cfg = config([pods_metric("100m")], **NO_WINDOW)  # behavior present: scaleUp takes the documented defaults
    decisions = run(cfg, 1, [0.0, 15.0, 30.0, 45.0], lambda _n: 10.0)
    assert [d.desired_replicas for d in decisions] == [5, 10, 20, 40]
    assert all(d.limited_by == LIMIT_SCALE_UP_POLICY for d in decisions)


def test_default_scale_up_policies_count_earlier_scale_ups_within_the_period() -> None:
    cfg = config([pods_metric("100m")], **NO_WINDOW)
    decisions = run(cfg, 1, [0.0, 5.0, 10.0, 15.1], lambda _n: 10.0)
    # Within 15 s of the first step the period started at 1 replica: nothing more until it ends.
    assert [d.desired_replicas for d in decisions] == [5, 5, 5, 10]


def test_without_behavior_the_controller_uses_its_legacy_limits() -> None:
    # normalizeDesiredReplicas: at most max(2 x current, 4) per sync, and no per-period event history.
    cfg = config([pods_metric("100m")])
    decisions = run(cfg, 1, [0.0, 5.0, 10.0], lambda _n: 10.0)
    assert [d.desired_replicas for d in decisions] == [4, 8, 16]
    assert decisions[-1].state.scale_up_events == ()


def test_scale_up_pods_policy_limits_across_periods() -> None:
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}
    cfg = config([pods_metric("100m")], behavior=behavior)
    decisions = run(cfg, 2, [0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 120.0], lambda _n: 1.0)
    assert [d.desired_replicas for d in decisions] == [4, 4, 4, 4, 6, 6, 8]


def test_scale_down_then_up_within_a_period_uses_the_period_start() -> None:
    behavior = {
        "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
        "scaleDown": {"stabilizationWindowSeconds": 0},
    }
    cfg = config([pods_metric("100m")], behavior=behavior)
    first = run(cfg, 6, [0.0], lambda _n: 0.05)[0]
    assert first.desired_replicas == 3
    # 3 removed at t=0 count back: the period started at 6, so up to 8 are allowed at t=10.
    second = run(cfg, 3, [10.0], lambda _n: 1.0, state=first.state)[0]
    assert second.desired_replicas == 8


# --------------------------------------------------------------------------- behavior: stabilization and tolerance


def test_docs_scale_down_stabilization_uses_the_highest_recommendation_in_the_window() -> None:
    cfg = config([pods_metric("100m")], behavior={"scaleDown": {"stabilizationWindowSeconds": 300}})
    values = {0.0: 0.1, 60.0: 0.08, 120.0: 0.05, 330.0: 0.05, 400.0: 0.05}
    state = AutoscalerState()
    sizes = []
    for now_s, value in values.items():
        d = decide(
            cfg, now_s=now_s, current_replicas=10, pods=metric_pods(*[value] * 10), cpu_request_cores=None, state=state
        )
        state = d.state
        sizes.append(d.desired_replicas)
    # Recommendations 10@0, 8@60, 5@120: held at 10 until t=0 leaves the window, then 8 until t=60 leaves it.
    assert sizes == [10, 10, 10, 8, 5]


def test_scale_up_stabilization_uses_the_lowest_recommendation_in_the_window() -> None:
    cfg = config([pods_metric("100m")], behavior={"scaleUp": {"stabilizationWindowSeconds": 60}})
    decisions = run(cfg, 2, [0.0, 30.0, 61.0], lambda _n: 0.3)
    assert [d.desired_replicas for d in decisions] == [2, 2, 6]
    assert decisions[0].limited_by == LIMIT_SCALE_UP_STABILIZATION


def test_recommendations_in_state_are_used() -> None:
    cfg = config([pods_metric("100m")], behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    state = AutoscalerState(recommendations=(Recommendation(NOW_S - 30, 7), Recommendation(NOW_S - 90, 9)))
    assert once(cfg, metric_pods(*[0.01] * 8), state=state).desired_replicas == 7


def test_per_direction_tolerance_overrides_the_global_one() -> None:
    behavior = {"scaleUp": {"tolerance": "0.05"}, "scaleDown": {"stabilizationWindowSeconds": 0}}
    cfg = config([pods_metric("100m")], behavior=behavior)
    assert once(cfg, metric_pods(*[0.107] * 10)).desired_replicas == 11  # 7% > 5% scale-up tolerance
    assert once(cfg, metric_pods(*[0.093] * 10)).desired_replicas == 10  # 7% < 10% global scale-down tolerance
    down = config([pods_metric("100m")], behavior={"scaleDown": {"tolerance": 0.02, "stabilizationWindowSeconds": 0}})
    assert once(down, metric_pods(*[0.093] * 10)).proposals[0].replicas == 10  # outside 2%, but ceil(9.3) = 10
    assert once(down, metric_pods(*[0.085] * 10)).desired_replicas == 9


def test_cpu_per_direction_tolerance_cases_from_kubernetes() -> None:
    # TestReplicaCalcConfigurableTolerance: 65% against 100% is within a 36% scale-down tolerance, not a 34% one.
    for tolerance, expected in ((0.36, 3), (0.34, 2)):
        behavior = {"scaleDown": {"tolerance": tolerance, "stabilizationWindowSeconds": 0}}
        decision = once(config([cpu_metric(100)], behavior=behavior), cpu_pods(1.3, 1.3, 1.3), request=2.0)
        assert decision.desired_replicas == expected


def test_empty_policy_list_is_rejected_by_the_schema() -> None:
    # Kubernetes rejects an empty policy list, so the scenario schema does too.
    with pytest.raises(ValidationError, match=r"policies"):
        config([pods_metric("100m")], behavior={"scaleUp": {"policies": []}})


# --------------------------------------------------------------------------- properties

policies = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["Pods", "Percent"]),
            "value": st.integers(1, 200),
            "periodSeconds": st.integers(1, 120),
        }
    ),
    min_size=1,
    max_size=3,
)
rules = st.fixed_dictionaries(
    {},
    optional={
        "stabilizationWindowSeconds": st.integers(0, 300),
        "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
        "policies": policies,
        "tolerance": st.sampled_from(["0", "0.05", "0.1", "0.3"]),
    },
)
behaviors = st.one_of(st.none(), st.fixed_dictionaries({}, optional={"scaleUp": rules, "scaleDown": rules}))
steps = st.lists(st.tuples(st.floats(0.5, 90.0), st.integers(0, 3000)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(
    bounds=st.tuples(st.integers(1, 10), st.integers(0, 20)),
    start=st.integers(1, 40),
    behavior=behaviors,
    steps=steps,
)
def test_property_desired_replicas_stay_within_min_and_max(
    bounds: tuple[int, int], start: int, behavior: dict[str, Any] | None, steps: list[tuple[float, int]]
) -> None:
    lo, span = bounds
    extra = {} if behavior is None else {"behavior": behavior}
    cfg = config([pods_metric("100m")], minReplicas=lo, maxReplicas=lo + span, **extra)
    now_s, current, state = 0.0, start, AutoscalerState()
    for gap_s, milli in steps:
        now_s += gap_s
        d = decide(
            cfg,
            now_s=now_s,
            current_replicas=current,
            pods=metric_pods(*[milli / 1000] * current),
            cpu_request_cores=None,
            state=state,
        )
        assert lo <= d.desired_replicas <= lo + span
        current, state = d.desired_replicas, d.state


@settings(max_examples=150, deadline=None)
@given(
    target_milli=st.integers(10, 5000),
    tolerance=st.sampled_from([0.0, 0.05, 0.1, 0.25]),
    offsets=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=30),
    behavior=behaviors,
)
def test_property_no_change_when_every_pod_is_within_tolerance(
    target_milli: int, tolerance: float, offsets: list[float], behavior: dict[str, Any] | None
) -> None:
    # Per-pod values strictly inside the band (target*(1-tol), target*(1+tol)), in whole milli-units.
    low, high = math.floor(target_milli * (1 - tolerance)) + 1, math.ceil(target_milli * (1 + tolerance)) - 1
    if tolerance == 0:
        low = high = target_milli
    values = [min(high, max(low, round(target_milli * (1 + tolerance * o)))) / 1000 for o in offsets]
    extra: dict[str, Any] = {}
    if behavior is not None:  # only the global tolerance applies here
        extra["behavior"] = {
            direction: {k: v for k, v in direction_rules.items() if k != "tolerance"}
            for direction, direction_rules in behavior.items()
        }
    cfg = config([pods_metric(f"{target_milli}m")], maxReplicas=50, tolerance=tolerance, **extra)
    decision = once(cfg, metric_pods(*values))
    assert decision.proposals[0].replicas == len(values)
    assert decision.desired_replicas == len(values)


@settings(max_examples=150, deadline=None)
@given(
    window_s=st.integers(0, 300),
    pods_policy=st.one_of(st.none(), st.tuples(st.integers(1, 10), st.integers(1, 120))),
    start=st.integers(1, 30),
    steps=steps,
)
# Found by hypothesis: the scale-up at t=1 is overwritten by the one at t=17 and no longer counts at t=18.
@example(window_s=0, pods_policy=(1, 18), start=1, steps=[(1.0, 201), (1.0, 0), (15.0, 111), (1.0, 0)])
def test_property_scale_down_takes_the_highest_recommendation_in_the_window_or_the_policy_limit(
    window_s: int, pods_policy: tuple[int, int] | None, start: int, steps: list[tuple[float, int]]
) -> None:
    scale_down: dict[str, Any] = {"stabilizationWindowSeconds": window_s}
    if pods_policy is not None:
        scale_down["policies"] = [{"type": "Pods", "value": pods_policy[0], "periodSeconds": pods_policy[1]}]
    cfg = config([pods_metric("100m")], minReplicas=1, maxReplicas=40, behavior={"scaleDown": scale_down})
    history: list[tuple[float, int]] = []  # (time, unstabilised recommendation), as the docs describe
    # The controller's scale events per direction, (time, pods changed). Like the controller, storing an event
    # overwrites the last one older than the direction's longest policy period instead of growing the list
    # (scale-up: the default policies' 15 s; scale-down: the Pods policy's period, else the default 15 s).
    added: list[tuple[float, int]] = []
    removed: list[tuple[float, int]] = []
    longest_period_s = {id(added): 15.0, id(removed): float(pods_policy[1]) if pods_policy else 15.0}

    def store(events: list[tuple[float, int]], time_s: float, change: int) -> None:
        outdated = [i for i, (t, _) in enumerate(events) if t < time_s - longest_period_s[id(events)]]
        if outdated:
            events[outdated[-1]] = (time_s, change)
        else:
            events.append((time_s, change))

    now_s, current, state = 0.0, start, AutoscalerState()
    for index, (gap_s, milli) in enumerate(steps):
        now_s += gap_s
        if index == 0:  # the controller starts its history with the size it found
            history.append((now_s, current))
        d = decide(
            cfg,
            now_s=now_s,
            current_replicas=current,
            pods=metric_pods(*[milli / 1000] * current),
            cpu_request_cores=None,
            state=state,
        )
        (proposal,) = d.proposals
        assert proposal.replicas is not None
        recommendation = proposal.replicas
        if recommendation < current:
            highest = max([recommendation, *(r for t, r in history if t > now_s - window_s)])
            expected = max(min(highest, current), cfg.min_replicas)
            if pods_policy is not None:
                value, period_s = pods_policy
                net_removed = sum(n for t, n in removed if t > now_s - period_s) - sum(
                    n for t, n in added if t > now_s - period_s
                )
                expected = max(expected, min(current, current + net_removed - value))
            assert d.desired_replicas == expected
        history.append((now_s, recommendation))
        if d.desired_replicas > current:
            store(added, now_s, d.desired_replicas - current)
        elif d.desired_replicas < current:
            store(removed, now_s, current - d.desired_replicas)
        current, state = d.desired_replicas, d.state


@settings(max_examples=150, deadline=None)
@given(
    policy=st.tuples(st.sampled_from(["Pods", "Percent"]), st.integers(1, 150), st.integers(1, 120)),
    start=st.integers(1, 20),
    steps=steps,
)
def test_property_scale_up_never_exceeds_the_policy_for_the_period(
    policy: tuple[str, int, int], start: int, steps: list[tuple[float, int]]
) -> None:
    kind, value, period_s = policy
    behavior = {
        "scaleUp": {"policies": [{"type": kind, "value": value, "periodSeconds": period_s}]},
        "scaleDown": {"selectPolicy": "Disabled"},
    }
    cfg = config([pods_metric("100m")], maxReplicas=200, behavior=behavior)
    sizes: list[tuple[float, int, int]] = []  # (time, replicas before, replicas after)
    now_s, current, state = 0.0, start, AutoscalerState()
    for gap_s, milli in steps:
        now_s += gap_s
        d = decide(
            cfg,
            now_s=now_s,
            current_replicas=current,
            pods=metric_pods(*[milli / 1000] * current),
            cpu_request_cores=None,
            state=state,
        )
        sizes.append((now_s, current, d.desired_replicas))
        # Everything added in the period ending now, against the size when the period started.
        in_period = [(before, after) for t, before, after in sizes if t > now_s - period_s]
        period_start = in_period[0][0]
        added = d.desired_replicas - period_start
        limit = value if kind == "Pods" else math.ceil(period_start * (1 + value / 100)) - period_start
        assert added <= limit
        current, state = d.desired_replicas, d.state


@pytest.mark.parametrize(
    ("metric", "named"),
    [
        (
            {
                "type": "Resource",
                "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 50}},
            },
            "Resource 'memory'",
        ),
        (
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": 3}}},
            "External",
        ),
    ],
)
def test_the_local_autoscaler_refuses_what_it_cannot_observe(metric: dict[str, Any], named: str) -> None:
    """A cluster's HPA reads these (the Kubernetes target checks its metrics APIs instead); the local one cannot."""
    from harness.local_autoscaler import check_supported

    with pytest.raises(
        ConfigError, match=f"autoscaling.metrics: {named} metrics are not observed by the local autoscaler"
    ):
        check_supported(AutoscalingConfig.model_validate({"metrics": [metric]}))
