"""How autoscaling reacted to each load step: decision lag, readiness lag, p95 recovery and violation time.

A load step is a stage whose planned load is higher than the previous stage's, compared within one
load model (users against users, arrival rate against arrival rate); a switch between closed and open
model is not a step. All times are seconds since the step's stage started, and None when the thing
never happened within the stage (never a 0.0 standing in for "missing").
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from harness.analysis.timeline import IntervalPoint
from harness.model import ReplicaCount, RunEvent, ScaleDecision, StageWindow, StepAutoscaling

RECOVERY_BUCKETS = 3


def _is_step(previous: StageWindow, window: StageWindow) -> bool:
    if previous.arrival_rate_rps is not None and window.arrival_rate_rps is not None:
        return window.arrival_rate_rps > previous.arrival_rate_rps
    if previous.users is not None and window.users is not None:
        return window.users > previous.users
    return False


def _first_scale_up_s(window: StageWindow, events: Sequence[RunEvent]) -> float | None:
    for event in sorted(events, key=lambda e: e.t_s):
        decision = event.detail
        if not isinstance(decision, ScaleDecision) or not window.start_s <= event.t_s <= window.end_s:
            continue
        if decision.to_replicas > decision.from_replicas:
            return event.t_s - window.start_s
    return None


def _ready_s(window: StageWindow, inside: Sequence[ReplicaCount], at_step: ReplicaCount) -> float | None:
    """Time until ready replicas reached the highest desired count of the step, when that needed new ones."""
    target = max(c.desired for c in inside)
    if target <= at_step.ready:
        return None
    for count in inside:
        if count.ready >= target:
            return max(0.0, count.t_s - window.start_s)
    return None


def _bucket_spacing_s(points: Sequence[IntervalPoint]) -> float:
    return min((p.duration_s for p in points), default=1.0)


def _recovered_s(
    window: StageWindow, points: Sequence[IntervalPoint], objective_s: float, run_start_s: float
) -> float | None:
    """Start of the first run of RECOVERY_BUCKETS adjacent buckets whose p95 is under the objective."""
    spacing_s = _bucket_spacing_s(points)
    run: list[IntervalPoint] = []
    for point in points:
        under = point.p95_s is not None and point.p95_s <= objective_s
        adjacent = bool(run) and point.elapsed_s - run[-1].elapsed_s <= 1.5 * spacing_s
        if not under:
            run = []
            continue
        run = [*run, point] if adjacent else [point]
        if len(run) >= RECOVERY_BUCKETS:
            return max(0.0, run_start_s + run[0].elapsed_s - window.start_s)
    return None


def step_autoscaling(
    windows: Sequence[StageWindow],
    series: Sequence[IntervalPoint],
    counts: Sequence[ReplicaCount],
    events: Sequence[RunEvent],
    p95_objective_s: float | None,
    run_start_s: float,
) -> list[StepAutoscaling]:
    """One StepAutoscaling per load step; steps with no replica count known at or after the step are skipped.

    - first_scale_up_decision_s: first "scale_decision" event with detail to > from inside the stage.
    - new_replicas_ready_s: first ReplicaCount in the stage whose ready count reached the stage's highest
      desired count; None when that count was already ready at the step (no new replicas needed).
    - p95_recovered_s: start of the first RECOVERY_BUCKETS adjacent series buckets of the stage with p95
      at or under the objective (a bucket without successful requests breaks the run).
    - violation_s: bucket seconds in the stage with p95 above the objective; None without an objective.
    - replicas_min/max/final: ready replicas in the stage, counting the state at the step.
    """
    ordered = sorted(windows, key=lambda w: w.start_s)
    ordered_counts = sorted(counts, key=lambda c: c.t_s)
    results: list[StepAutoscaling] = []
    for previous, window in pairwise(ordered):
        if not _is_step(previous, window):
            continue
        before = [c for c in ordered_counts if c.t_s <= window.start_s]
        inside = [c for c in ordered_counts if window.start_s < c.t_s <= window.end_s]
        if not before and not inside:
            continue
        at_step = before[-1] if before else inside[0]
        # Every sample at the step's moment counts (several can share one timestamp).
        observed = [c for c in before if c.t_s == at_step.t_s] + inside if before else inside
        points = sorted((p for p in series if p.stage == window.name), key=lambda p: p.elapsed_s)
        if p95_objective_s is None:
            recovered_s, violation_s = None, None
        else:
            recovered_s = _recovered_s(window, points, p95_objective_s, run_start_s)
            violation_s = sum(p.duration_s for p in points if p.p95_s is not None and p.p95_s > p95_objective_s)
        results.append(
            StepAutoscaling(
                stage=window.name,
                step_at_s=window.start_s,
                first_scale_up_decision_s=_first_scale_up_s(window, events),
                new_replicas_ready_s=_ready_s(window, observed, at_step),
                p95_recovered_s=recovered_s,
                violation_s=violation_s,
                replicas_min=min(c.ready for c in observed),
                replicas_max=max(c.ready for c in observed),
                replicas_final=observed[-1].ready,
            )
        )
    return results
