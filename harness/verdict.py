"""Objectives -> PASS/WARN/FAIL/INCONCLUSIVE: judge each objective on each stage from confidence intervals.

An objective is decided by where its measurement's confidence interval lies relative to the threshold:
PASS when the whole interval is on the good side, FAIL when the whole interval is on the bad side,
WARN when it straddles the threshold (the data cannot tell), INCONCLUSIVE when the stage is invalid or
the value could not be measured. A missing interval bound counts as unbounded on that side.

    latency_pNN_ms   the stage's pNN and its order-statistic CI (harness.analysis.latency), in ms
    error_rate       failures / requests with a Wilson score interval
    throughput_rps   requests / duration with an exact (Garwood) Poisson interval on the count
    scale_up_within_s, ready_within_s, max_violation_s
                     per load step, from StepAutoscaling (no CI: one observation per step)

The run's status is the worst result: FAIL if any FAIL, else INCONCLUSIVE if any, else WARN if any,
else PASS; with no objectives it is INCONCLUSIVE. Process exit codes: PASS 0, WARN 0, FAIL 1,
INCONCLUSIVE 3 (harness.exit_codes; 2 is for harness errors, raised as HarnessError and mapped by the CLI).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import chi2, norm

from harness.analysis.stages import percentile_key
from harness.config import Objective
from harness.exit_codes import ExitCode
from harness.model import (
    CapacityPlan,
    ObjectiveResult,
    Saturation,
    StageResult,
    Status,
    StepAutoscaling,
    Verdict,
)

EXIT_CODES: dict[Status, ExitCode] = {
    Status.PASS: ExitCode.OK,
    Status.WARN: ExitCode.OK,
    Status.FAIL: ExitCode.FAIL,
    Status.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
}
AUTOSCALING_METRICS = ("scale_up_within_s", "ready_within_s", "max_violation_s")
NO_OBJECTIVES_WARNING = "no objectives were given, so nothing was judged (add objectives: to the scenario)"


# --------------------------------------------------------------------------- intervals


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} must be within 0..trials={trials}")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At p = 0 or 1 the exact bound is the endpoint; floating-point noise must not move it off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def requests_to_pass_error_rate(max_error_rate: float, confidence: float = 0.95) -> int:
    """Fewest requests for an `error_rate <= max` objective to PASS even with zero failures: the Wilson
    upper bound at 0 failures is z^2 / (n + z^2), below max when n > z^2 (1 - max) / max."""
    if not 0 < max_error_rate < 1:
        raise ValueError(f"max_error_rate={max_error_rate} must be within (0, 1)")
    z = float(norm.ppf(0.5 + confidence / 2))
    return math.floor(z * z * (1 - max_error_rate) / max_error_rate) + 1


def garwood_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) confidence interval for a Poisson mean given an observed count."""
    if count < 0:
        raise ValueError(f"count={count} must be >= 0")
    alpha = 1 - confidence
    low = 0.0 if count == 0 else float(chi2.ppf(alpha / 2, 2 * count)) / 2
    high = float(chi2.ppf(1 - alpha / 2, 2 * count + 2)) / 2
    return low, high


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
    )


def _measure(
    objective: Objective, stage: StageResult, confidence: float
) -> tuple[float | None, float | None, float | None, str, str]:
    """(measured, ci_low, ci_high, what, why-not-measured) for a per-stage objective."""
    q = objective.percentile
    if q is not None:
        key = percentile_key(q)
        estimate = stage.latency.get(key)
        if estimate is None:
            return None, None, None, key, f"{key} was not computed for this stage"
        if estimate.value_s is None:
            return None, None, None, key, f"no successful requests to compute {key} from"

        def ms(value_s: float | None) -> float | None:
            return None if value_s is None else value_s * 1000.0

        return ms(estimate.value_s), ms(estimate.ci_low_s), ms(estimate.ci_high_s), f"{key} (ms)", ""
    if objective.metric == "error_rate":
        if stage.error_rate is None:
            return None, None, None, "error rate", "no requests completed, so there is no error rate"
        low, high = wilson_interval(stage.failures, stage.requests, confidence)
        return stage.error_rate, low, high, f"error rate ({stage.failures}/{stage.requests})", ""
    if objective.metric == "throughput_rps":
        if stage.duration_s <= 0:
            return None, None, None, "throughput (rps)", "the stage has no duration"
        low, high = garwood_interval(stage.requests, confidence)
        return stage.achieved_rps, low / stage.duration_s, high / stage.duration_s, "throughput (rps)", ""
    raise ValueError(f"objective metric '{objective.metric}' is not a per-stage metric")


def _judge_stage(objective: Objective, stage: StageResult, confidence: float) -> ObjectiveResult:
    measured, ci_low, ci_high, what, missing = _measure(objective, stage, confidence)
    if stage.invalid_reasons:
        reason = "stage invalid: " + "; ".join(stage.invalid_reasons)
        return _result(objective, stage.name, Status.INCONCLUSIVE, measured, ci_low, ci_high, reason)
    shortfall = stage.sample_shortfalls.get(percentile_key(objective.percentile)) if objective.percentile else None
    if shortfall is not None:
        return _result(objective, stage.name, Status.INCONCLUSIVE, measured, ci_low, ci_high, shortfall)
    if measured is None:
        return _result(objective, stage.name, Status.INCONCLUSIVE, None, None, None, missing)
    bound = _Bound.of(objective)
    status = bound.decide(ci_low, ci_high)
    reason = _explain(status, what, measured, _ci_text(ci_low, ci_high, confidence), bound)
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
    measured = {
        "scale_up_within_s": step.first_scale_up_decision_s,
        "ready_within_s": step.new_replicas_ready_s,
        "max_violation_s": step.violation_s,
    }[objective.metric]
    if stage is not None and stage.invalid_reasons:
        reason = "stage invalid: " + "; ".join(stage.invalid_reasons)
        return _result(objective, step.stage, Status.INCONCLUSIVE, measured, None, None, reason)
    if measured is None:
        if objective.metric == "max_violation_s":
            why = "no p95 latency objective to measure violations against"
            return _result(objective, step.stage, Status.INCONCLUSIVE, None, None, None, why)
        if objective.metric == "ready_within_s" and step.first_scale_up_decision_s is None:
            why = "no scale-up was decided in this step, so no new replicas had to become ready"
            return _result(objective, step.stage, Status.INCONCLUSIVE, None, None, None, why)
        event = "scale-up decision" if objective.metric == "scale_up_within_s" else "new replicas ready"
        if stage is not None and bound.upper and stage.duration_s >= bound.threshold:
            why = f"no {event} during the whole {stage.duration_s:.0f} s stage (limit {bound.threshold:g} s)"
            return _result(objective, step.stage, Status.FAIL, None, None, None, why)
        why = f"no {event} before the stage ended, and the stage was shorter than {bound.threshold:g} s"
        return _result(objective, step.stage, Status.INCONCLUSIVE, None, None, None, why)
    status = (
        Status.PASS if (measured <= bound.threshold if bound.upper else measured >= bound.threshold) else Status.FAIL
    )
    what = {
        "scale_up_within_s": "first scale-up decision",
        "ready_within_s": "new replicas ready",
        "max_violation_s": "p95 above objective",
    }[objective.metric]
    verb = bound.sign if status is Status.PASS else f"misses {bound.sign}"
    reason = f"{what} after {measured:.1f} s {verb} {bound.threshold:g} s"
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
        if objective.metric in AUTOSCALING_METRICS:
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
) -> Verdict:
    """The run's Verdict: objective results, overall status and exit code, plus the derived figures."""
    results = judge(stages, objectives, autoscaling, confidence)
    status = overall_status(results)
    all_warnings = list(warnings)
    if not objectives:
        all_warnings.append(NO_OBJECTIVES_WARNING)
    return Verdict(
        status=status,
        exit_code=exit_code_for(status),
        objectives=results,
        stages=list(stages),
        saturation=saturation,
        capacity=capacity,
        autoscaling=list(autoscaling),
        warnings=all_warnings,
    )
