"""Objectives -> PASS/WARN/FAIL/INCONCLUSIVE: judge each objective on each stage from confidence intervals.

An objective is decided by where its measurement's confidence interval lies relative to the threshold:
PASS when the whole interval is on the good side, FAIL when the whole interval is on the bad side,
WARN when it straddles the threshold (the data cannot tell), INCONCLUSIVE when the stage is invalid or
the value could not be measured. A missing interval bound counts as unbounded on that side. How each
metric is measured (and with which interval) is its entry in harness.objectives; autoscaling metrics
are judged per load step, from StepAutoscaling, with no CI (one observation per step).

The run's status is the worst result: FAIL if any FAIL, else INCONCLUSIVE if any, else WARN if any,
else PASS; with no objectives it is INCONCLUSIVE. Process exit codes: PASS 0, WARN 0, FAIL 1,
INCONCLUSIVE 3 (harness.exit_codes; 2 is for harness errors, raised as HarnessError and mapped by the CLI).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.config import Objective
from harness.exit_codes import ExitCode
from harness.model import (
    VERDICT_SCHEMA_VERSION,
    Bottleneck,
    CapacityPlan,
    FaultImpact,
    LoadgenOverhead,
    ObjectiveResult,
    Saturation,
    StageResult,
    Status,
    StepAutoscaling,
    Verdict,
    percentile_key,
)
from harness.objectives import is_per_step, objective_metric

EXIT_CODES: dict[Status, ExitCode] = {
    Status.PASS: ExitCode.OK,
    Status.WARN: ExitCode.OK,
    Status.FAIL: ExitCode.FAIL,
    Status.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
}
NO_OBJECTIVES_WARNING = "no objectives were given, so nothing was judged (add objectives: to the scenario)"
# The load generator's own overhead is worth a warning above this share of a latency objective's bound.
OVERHEAD_SHARE_WARNING = 0.05


# --------------------------------------------------------------------------- the straddle rule


@dataclass(frozen=True)
class _Bound:
    threshold: float
    upper: bool  # True: measured must be <= threshold ("max"); False: >= threshold ("min")

    @classmethod
    def of(cls, objective: Objective) -> _Bound:
        if objective.max is not None:
            return cls(objective.max, True)
        assert objective.min is not None  # the schema requires exactly one
        return cls(objective.min, False)

    @property
    def name(self) -> str:
        return "max" if self.upper else "min"

    @property
    def sign(self) -> str:
        return "<=" if self.upper else ">="

    def decide(self, ci_low: float | None, ci_high: float | None) -> Status:
        low = -math.inf if ci_low is None else ci_low
        high = math.inf if ci_high is None else ci_high
        good_side, bad_side = (
            (high <= self.threshold, low > self.threshold)
            if self.upper
            else (
                low >= self.threshold,
                high < self.threshold,
            )
        )
        if good_side:
            return Status.PASS
        if bad_side:
            return Status.FAIL
        return Status.WARN


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _ci_text(ci_low: float | None, ci_high: float | None, confidence: float) -> str:
    return f"{confidence:.0%} CI [{_fmt(ci_low)}, {_fmt(ci_high)}]"


def _explain(status: Status, what: str, measured: float, ci: str, bound: _Bound) -> str:
    if status is Status.PASS:
        return f"{what} = {_fmt(measured)} ({ci}) {bound.sign} {bound.threshold:g}"
    if status is Status.FAIL:
        return f"{what} = {_fmt(measured)} ({ci}) misses {bound.sign} {bound.threshold:g}"
    return f"{what} = {_fmt(measured)} but its {ci} straddles {bound.threshold:g}; more samples would decide"


# --------------------------------------------------------------------------- per-stage objectives


def _result(
    objective: Objective,
    stage: str | None,
    status: Status,
    measured: float | None,
    ci_low: float | None,
    ci_high: float | None,
    reason: str,
) -> ObjectiveResult:
    bound = _Bound.of(objective)
    return ObjectiveResult(
        objective=objective.name,
        metric=objective.metric,
        stage=stage,
        status=status,
        threshold=bound.threshold,
        bound=bound.name,
        measured=measured,
        ci_low=ci_low,
        ci_high=ci_high,
        reason=reason,
        unit=objective_metric(objective.metric).unit or "fraction",
        request=objective.request,
    )


def _judge_stage(objective: Objective, stage: StageResult, confidence: float) -> ObjectiveResult:
    if objective.request is not None:
        own = stage.by_request.get(objective.request)
        if own is None:
            why = f"request '{objective.request}' has no figures of its own in this stage (none was sent)"
            return _result(objective, stage.name, Status.INCONCLUSIVE, None, None, None, why)
        stage = own
    measure = objective_metric(objective.metric).stage
    if measure is None:
        raise ValueError(f"objective metric '{objective.metric}' is not a per-stage metric")
    measurement = measure(objective.metric, stage, confidence, objective.request_limits)
    measured, ci_low, ci_high = measurement.value, measurement.ci_low, measurement.ci_high
    decisive = objective_metric(objective.metric).fails_stage
    failure = None if decisive is None else decisive(stage)
    if failure is not None:
        return _result(objective, stage.name, Status.FAIL, measured, ci_low, ci_high, failure)
    if stage.invalid_reasons:
        reason = "stage invalid: " + "; ".join(stage.invalid_reasons)
        return _result(objective, stage.name, Status.INCONCLUSIVE, measured, ci_low, ci_high, reason)
    shortfall = stage.sample_shortfalls.get(percentile_key(objective.percentile)) if objective.percentile else None
    if shortfall is not None:
        return _result(objective, stage.name, Status.INCONCLUSIVE, measured, ci_low, ci_high, shortfall)
    if measured is None:
        return _result(objective, stage.name, Status.INCONCLUSIVE, None, None, None, measurement.missing)
    bound = _Bound.of(objective)
    status = bound.decide(ci_low, ci_high)
    reason = _explain(status, measurement.what, measured, _ci_text(ci_low, ci_high, confidence), bound)
    return _result(objective, stage.name, status, measured, ci_low, ci_high, reason)


def _stages_for(objective: Objective, stages: Sequence[StageResult]) -> tuple[list[StageResult], list[str]]:
    """The judged stages the objective applies to, and named stages that are missing from the run."""
    if objective.stages is None:
        return [s for s in stages if s.judged], []
    by_name = {s.name: s for s in stages}
    present = [by_name[name] for name in objective.stages if name in by_name and by_name[name].judged]
    missing = [name for name in objective.stages if name not in by_name]
    return present, missing


# --------------------------------------------------------------------------- autoscaling objectives


def _judge_step(objective: Objective, step: StepAutoscaling, stage: StageResult | None) -> ObjectiveResult:
    bound = _Bound.of(objective)
    measure = objective_metric(objective.metric).step
    if measure is None:
        raise ValueError(f"objective metric '{objective.metric}' is not a load-step metric")
    measured = measure.value(step)
    if stage is not None and stage.invalid_reasons:
        reason = "stage invalid: " + "; ".join(stage.invalid_reasons)
        return _result(objective, step.stage, Status.INCONCLUSIVE, measured, None, None, reason)
    if measured is None:
        unmeasurable = measure.unmeasurable(step)
        if unmeasurable is not None:
            return _result(objective, step.stage, Status.INCONCLUSIVE, None, None, None, unmeasurable)
        if stage is not None and bound.upper and stage.duration_s >= bound.threshold:
            why = f"no {measure.event} during the whole {stage.duration_s:.0f} s stage (limit {bound.threshold:g} s)"
            return _result(objective, step.stage, Status.FAIL, None, None, None, why)
        why = f"no {measure.event} before the stage ended, and the stage was shorter than {bound.threshold:g} s"
        return _result(objective, step.stage, Status.INCONCLUSIVE, None, None, None, why)
    status = (
        Status.PASS if (measured <= bound.threshold if bound.upper else measured >= bound.threshold) else Status.FAIL
    )
    verb = bound.sign if status is Status.PASS else f"misses {bound.sign}"
    reason = f"{measure.what} after {measured:.1f} s {verb} {bound.threshold:g} s"
    return _result(objective, step.stage, status, measured, None, None, reason)


def _judge_autoscaling(
    objective: Objective, autoscaling: Sequence[StepAutoscaling], stages: Sequence[StageResult]
) -> list[ObjectiveResult]:
    by_name = {s.name: s for s in stages}
    if objective.stages is None:
        steps = [a for a in autoscaling if a.stage not in by_name or by_name[a.stage].judged]
    else:
        steps = [a for a in autoscaling if a.stage in objective.stages]
    if not steps:
        why = (
            "no autoscaling records: the run had no load step with autoscaling enabled"
            if not autoscaling
            else "no load step among the stages this objective applies to"
        )
        return [_result(objective, None, Status.INCONCLUSIVE, None, None, None, why)]
    return [_judge_step(objective, step, by_name.get(step.stage)) for step in steps]


# --------------------------------------------------------------------------- the load generator's overhead


def worst_overhead(records: Sequence[LoadgenOverhead]) -> LoadgenOverhead | None:
    """The load-generator process whose calibration added the most latency (by p99); None when none measured."""
    return max(records, key=lambda record: (record.p99_ms, record.p50_ms), default=None)


def overhead_at(overhead: LoadgenOverhead, percentile: float) -> tuple[float, float]:
    """The calibration percentile at or above `percentile` (50, 95, else 99) and the overhead there (ms): a
    bound on what the load generator adds to that percentile of the measured latency."""
    by_percentile = {50.0: overhead.p50_ms, 95.0: overhead.p95_ms, 99.0: overhead.p99_ms}
    at = next((q for q in by_percentile if percentile <= q), 99.0)
    return at, by_percentile[at]


def overhead_warnings(overhead: LoadgenOverhead | None, objectives: Sequence[Objective]) -> list[str]:
    """A warning for each latency objective whose upper bound the load generator's own overhead takes a
    noticeable share of (more than OVERHEAD_SHARE_WARNING): its measured latencies include that overhead."""
    if overhead is None:
        return []
    warnings = []
    for objective in objectives:
        if objective.percentile is None or objective.max is None or objective.max <= 0:
            continue
        at, overhead_ms = overhead_at(overhead, objective.percentile)
        share = overhead_ms / objective.max
        if share > OVERHEAD_SHARE_WARNING:
            warnings.append(
                f"objective '{objective.name}': the load generator's own overhead (p{at:g} {overhead_ms:.2f} ms, "
                f"measured against a null endpoint) is {share:.0%} of its {objective.max:g} ms bound; every "
                "measured latency includes it"
            )
    return warnings


# --------------------------------------------------------------------------- public API


def judge(
    stages: Sequence[StageResult],
    objectives: Sequence[Objective],
    autoscaling: Sequence[StepAutoscaling] = (),
    confidence: float = 0.95,
) -> list[ObjectiveResult]:
    """Judge every objective on every judged stage (or load step) it applies to."""
    results: list[ObjectiveResult] = []
    for objective in objectives:
        if is_per_step(objective.metric):
            results.extend(_judge_autoscaling(objective, autoscaling, stages))
            continue
        applicable, missing = _stages_for(objective, stages)
        results.extend(_judge_stage(objective, stage, confidence) for stage in applicable)
        for name in missing:
            results.append(
                _result(objective, name, Status.INCONCLUSIVE, None, None, None, f"stage '{name}' did not run")
            )
        if not applicable and not missing:
            why = "no judged stage to apply it to" if objective.stages is None else "none of its stages is judged"
            results.append(_result(objective, None, Status.INCONCLUSIVE, None, None, None, why))
    return results


def overall_status(results: Sequence[ObjectiveResult]) -> Status:
    """FAIL if any FAIL, else INCONCLUSIVE if any, else WARN if any, else PASS; no results is INCONCLUSIVE."""
    statuses = {r.status for r in results}
    for status in (Status.FAIL, Status.INCONCLUSIVE, Status.WARN):
        if status in statuses:
            return status
    return Status.PASS if statuses else Status.INCONCLUSIVE


def exit_code_for(status: Status) -> int:
    """The process exit code for a run's status: PASS 0, WARN 0, FAIL 1, INCONCLUSIVE 3."""
    return int(EXIT_CODES[status])


def build_verdict(
    stages: Sequence[StageResult],
    objectives: Sequence[Objective],
    autoscaling: Sequence[StepAutoscaling] = (),
    saturation: Saturation | None = None,
    capacity: CapacityPlan | None = None,
    warnings: Sequence[str] = (),
    confidence: float = 0.95,
    run_id: str | None = None,
    scenario_name: str | None = None,
    bottlenecks: Sequence[Bottleneck] = (),
    faults: Sequence[FaultImpact] = (),
    loadgen_overhead: LoadgenOverhead | None = None,
) -> Verdict:
    """The run's Verdict: objective results, overall status and exit code, plus the derived figures."""
    results = judge(stages, objectives, autoscaling, confidence)
    status = overall_status(results)
    all_warnings = list(warnings)
    if not objectives:
        all_warnings.append(NO_OBJECTIVES_WARNING)
    all_warnings += overhead_warnings(loadgen_overhead, objectives)
    return Verdict(
        status=status,
        exit_code=exit_code_for(status),
        objectives=results,
        stages=list(stages),
        saturation=saturation,
        capacity=capacity,
        autoscaling=list(autoscaling),
        warnings=all_warnings,
        schema_version=VERDICT_SCHEMA_VERSION,
        run_id=run_id,
        scenario_name=scenario_name,
        bottlenecks=list(bottlenecks),
        faults=list(faults),
        loadgen_overhead=loadgen_overhead,
    )
