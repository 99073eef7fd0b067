"""Tests for harness.analysis.autoscaling_figures: how autoscaling reacted to each load step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.autoscaling_figures import step_autoscaling
from harness.analysis.timeline import IntervalPoint
from harness.model import ReplicaCount, ReplicaStarted, RunEvent, ScaleDecision, StageWindow

T0 = 1_700_000_000.0


def window(
    name: str, start_s: float, duration_s: float, *, rps: float | None = None, users: int | None = None
) -> StageWindow:
    return StageWindow(name, T0 + start_s, T0 + start_s + duration_s, True, users, rps)


def point(elapsed_s: float, stage: str, p95_s: float | None, duration_s: float = 1.0) -> IntervalPoint:
    fields: dict[str, Any] = {
        "elapsed_s": elapsed_s,
        "duration_s": duration_s,
        "stage": stage,
        "users": 0,
        "offered_rps": 10.0,
        "achieved_rps": 10.0,
        "error_rps": 0.0,
        "requests": 10,
        "failures": 0,
        "dropped": 0,
        "p50_s": p95_s,
        "p95_s": p95_s,
        "p99_s": p95_s,
        "loadgen_cpu_cores": None,
    }
    return IntervalPoint(**fields)


def decision(at_s: float, before: int, after: int) -> RunEvent:
    return RunEvent(T0 + at_s, ScaleDecision(before, after))


def count(at_s: float, desired: int, ready: int) -> ReplicaCount:
    return ReplicaCount(T0 + at_s, desired, ready)


WINDOWS = [window("low", 0, 30, rps=10), window("high", 30, 60, rps=40)]
# p95 objective 0.1 s: violated for 10 s after the step, then back under for good.
SERIES = [point(float(t), "low", 0.05) for t in range(30)] + [
    point(float(t), "high", 0.3 if t < 40 else 0.05) for t in range(30, 90)
]
COUNTS = [count(float(t), 1, 1) for t in range(0, 35)] + [
    count(float(t), 3, 1 if t < 50 else 2 if t < 55 else 3) for t in range(35, 90)
]
EVENTS = [
    decision(20, 1, 1),  # before the step: not this step's decision
    decision(30.5, 2, 1),  # a scale-down does not count
    decision(35.0, 1, 3),
    decision(60.0, 3, 4),
    RunEvent(T0 + 34.0, ReplicaStarted("replica-3")),
]


def test_one_load_step_measured_from_its_start() -> None:
    (result,) = step_autoscaling(WINDOWS, SERIES, COUNTS, EVENTS, 0.1, T0)
    assert result.stage == "high"
    assert result.step_at_s == T0 + 30
    assert result.first_scale_up_decision_s == pytest.approx(5.0)
    assert result.new_replicas_ready_s == pytest.approx(25.0)
    assert result.p95_recovered_s == pytest.approx(10.0)
    assert result.violation_s == pytest.approx(10.0)
    assert (result.replicas_min, result.replicas_max, result.replicas_final) == (1, 3, 3)


def test_without_a_p95_objective_recovery_and_violation_are_unknown() -> None:
    (result,) = step_autoscaling(WINDOWS, SERIES, COUNTS, EVENTS, None, T0)
    assert result.p95_recovered_s is None and result.violation_s is None
    assert result.first_scale_up_decision_s == pytest.approx(5.0)


def test_things_that_never_happened_are_none_not_zero() -> None:
    flat_counts = [count(float(t), 1, 1) for t in range(90)]
    always_slow = [point(float(t), "high", 0.3) for t in range(30, 90)]
    (result,) = step_autoscaling(WINDOWS, always_slow, flat_counts, [], 0.1, T0)
    assert result.first_scale_up_decision_s is None
    assert result.new_replicas_ready_s is None
    assert result.p95_recovered_s is None
    assert result.violation_s == pytest.approx(60.0)
    assert (result.replicas_min, result.replicas_max, result.replicas_final) == (1, 1, 1)


def test_replicas_that_never_became_ready() -> None:
    stuck = [count(float(t), 1 if t < 35 else 3, 1) for t in range(90)]
    (result,) = step_autoscaling(WINDOWS, SERIES, stuck, EVENTS, 0.1, T0)
    assert result.first_scale_up_decision_s == pytest.approx(5.0)
    assert result.new_replicas_ready_s is None


def test_recovery_needs_three_adjacent_buckets_under_the_objective() -> None:
    pattern = [0.3, 0.05, 0.05, 0.3, 0.05, None, 0.05, 0.05, 0.05, 0.05]
    series = [point(30.0 + i, "high", p95) for i, p95 in enumerate(pattern)]
    (result,) = step_autoscaling(WINDOWS, series, COUNTS, EVENTS, 0.1, T0)
    assert result.p95_recovered_s == pytest.approx(6.0)  # the bucket without samples breaks the run
    assert result.violation_s == pytest.approx(2.0)
    gappy = [point(30.0, "high", 0.05), point(31.0, "high", 0.05), point(35.0, "high", 0.05), point(36.0, "high", 0.05)]
    (result,) = step_autoscaling(WINDOWS, gappy, COUNTS, EVENTS, 0.1, T0)
    assert result.p95_recovered_s is None  # a gap in the series is not "stayed under"


def test_only_increasing_load_within_one_model_is_a_step() -> None:
    windows = [
        window("warmup", 0, 10, users=2),
        window("open-low", 10, 10, rps=5),  # model switch: not a step
        window("open-high", 20, 10, rps=20),  # step
        window("open-down", 30, 10, rps=10),  # decrease: not a step
        window("open-same", 40, 10, rps=10),  # equal: not a step
        window("closed", 50, 10, users=4),  # model switch
        window("closed-more", 60, 10, users=8),  # step
    ]
    counts = [count(float(t), 1, 1) for t in range(0, 70, 5)]
    results = step_autoscaling(windows, [], counts, [], 0.1, T0)
    assert [r.stage for r in results] == ["open-high", "closed-more"]
    assert all(r.violation_s == 0.0 and r.p95_recovered_s is None for r in results)


def test_no_replica_counts_means_no_record() -> None:
    assert step_autoscaling(WINDOWS, SERIES, [], EVENTS, 0.1, T0) == []


def test_windows_out_of_order_are_sorted() -> None:
    (result,) = step_autoscaling(list(reversed(WINDOWS)), SERIES, COUNTS, EVENTS, 0.1, T0)
    assert result.stage == "high"


@given(
    st.lists(st.one_of(st.none(), st.floats(min_value=0.001, max_value=1.0)), min_size=1, max_size=60),
    st.floats(min_value=0.01, max_value=0.5),
    st.lists(st.tuples(st.integers(0, 59), st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=30),
)
@settings(max_examples=150, deadline=None)
def test_figures_are_within_the_stage(
    p95s: list[float | None], objective_s: float, raw_counts: list[tuple[int, int, int]]
) -> None:
    series = [point(30.0 + i, "high", p95) for i, p95 in enumerate(p95s)]
    counts = [count(30.0 + t, desired, ready) for t, desired, ready in raw_counts]
    (result,) = step_autoscaling(WINDOWS, series, counts, EVENTS, objective_s, T0)
    assert result.violation_s is not None
    assert 0.0 <= result.violation_s <= len(p95s)
    assert result.violation_s == pytest.approx(sum(1.0 for p in p95s if p is not None and p > objective_s))
    for value in (result.first_scale_up_decision_s, result.new_replicas_ready_s, result.p95_recovered_s):
        assert value is None or 0.0 <= value <= 60.0
    if result.p95_recovered_s is not None:
        start = int(result.p95_recovered_s)
        assert all(p is not None and p <= objective_s for p in p95s[start : start + 3])
    readies = [ready for _, _, ready in raw_counts]
    assert result.replicas_min <= result.replicas_final <= result.replicas_max
    assert result.replicas_max == max(readies) and result.replicas_min == min(readies)
