"""Maximum sustainable throughput of a ramp, sweep or stepped run, its latency knee, and scaling efficiency.

A stage *sustains* its load when it is judged, valid (no invalid_reasons) and every objective judged
on it is PASS. WARN does not count: a WARN means the objective's confidence interval straddles the
threshold, so the data cannot show the objective held, and a capacity figure must be one the data
proves. A stage with no objectives judged on it proves nothing either, so a run without objectives has
no maximum sustainable throughput. Autoscaling objectives (scale_up_within_s, ready_within_s,
max_violation_s) are left out: they judge how fast the autoscaler reacted to a step, not whether the
service held the load, and one that is INCONCLUSIVE because no scale-up was needed must not hide it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from harness.analysis.knee import find_knee
from harness.model import ObjectiveResult, Saturation, StageResult, Status
from harness.objectives import is_per_step

KNEE_PERCENTILE_KEY = "p95"


def _load_rps(stage: StageResult) -> float:
    """The load a stage put on the service: the planned arrival rate (open model), else what it achieved."""
    return stage.offered_rps if stage.offered_rps is not None else stage.achieved_rps


def _knee(valid: Sequence[StageResult]) -> tuple[float | None, float | None, str]:
    points = [
        (s.achieved_rps, estimate.value_s)
        for s in valid
        if (estimate := s.latency.get(KNEE_PERCENTILE_KEY)) is not None and estimate.value_s is not None
    ]
    knee = find_knee([p[0] for p in points], [p[1] for p in points])
    if knee is None:
        why = (
            f"fewer than 3 valid judged stages with a {KNEE_PERCENTILE_KEY}"
            if len({p[0] for p in points}) < 3
            else f"{KNEE_PERCENTILE_KEY} latency does not bend upwards over the {len(points)} valid judged stages"
        )
        return None, None, f"no latency knee: {why}"
    return (
        knee.rps,
        knee.latency_s,
        (f"latency knee at {knee.rps:.4g} rps ({KNEE_PERCENTILE_KEY} {knee.latency_s * 1000:.4g} ms, Kneedle)"),
    )


def max_sustainable(
    stages: Sequence[StageResult],
    objective_results: Sequence[ObjectiveResult],
    replicas: int | None,
    *,
    scaling_efficiency: float | None = None,
) -> Saturation:
    """The highest achieved_rps among stages that sustain their load (see the module docstring), per replica.

    Every load objective judged on a stage must be PASS; autoscaling objectives are not considered.

    Per-replica throughput divides by the stage's replicas_max (the most replicas that served it, so
    the figure is conservative) or, when replica counts were not recorded, by `replicas`.
    limiting_stage is the first stage in run order whose load (planned arrival rate, else achieved rate)
    is above the maximum and on which an objective FAILed. The knee comes from (achieved_rps, p95) of
    the valid judged stages. Figures that cannot be determined are None, and `reason` says why.
    """
    by_stage: dict[str, list[ObjectiveResult]] = {}
    for result in objective_results:
        if result.stage is not None and not is_per_step(result.metric):
            by_stage.setdefault(result.stage, []).append(result)

    judged = [s for s in stages if s.judged]
    valid = [s for s in judged if not s.invalid_reasons]
    sustained = [s for s in valid if by_stage.get(s.name) and all(r.status is Status.PASS for r in by_stage[s.name])]
    failed = [s for s in judged if any(r.status is Status.FAIL for r in by_stage.get(s.name, []))]
    knee_rps, knee_latency_s, knee_text = _knee(valid)
    notes: list[str] = []

    best = max(sustained, key=lambda s: s.achieved_rps, default=None)
    if best is None:
        max_rps = per_replica = None
        if not judged:
            notes.append("no judged stages, so no maximum sustainable throughput")
        elif not any(by_stage.get(s.name) for s in judged):
            notes.append("no objectives were judged on any stage, so no load is proven sustainable")
        else:
            notes.append(
                f"none of the {len(valid)} valid judged stage(s) passed every objective "
                "(WARN and INCONCLUSIVE do not prove a load sustainable)"
            )
        limiting = failed[0] if failed else None
        if limiting is not None:
            notes.append(f"the lowest load already failed: stage '{limiting.name}' at {_load_rps(limiting):.4g} rps")
    else:
        max_rps = best.achieved_rps
        divisor, source = (
            (best.replicas_max, "the most replicas that served it")
            if best.replicas_max is not None
            else (replicas, "the configured replicas")
        )
        notes.append(
            f"stage '{best.name}' sustained {max_rps:.4g} rps with every objective PASS "
            "(the highest of the valid judged stages that did)"
        )
        if divisor is not None and divisor >= 1:
            per_replica = max_rps / divisor
            notes.append(f"{per_replica:.4g} rps per replica over {divisor} replica(s), {source}")
        else:
            per_replica = None
            notes.append("per-replica throughput unknown: no replica count was recorded or given")
        limiting = next((s for s in failed if _load_rps(s) > max_rps), None)
        if limiting is not None:
            notes.append(f"the next higher load failed: stage '{limiting.name}' at {_load_rps(limiting):.4g} rps")
        else:
            notes.append("no higher load failed, so the true maximum may be higher (a lower bound)")

    notes.append(knee_text)
    if scaling_efficiency is not None:
        notes.append(f"scaling efficiency {scaling_efficiency:.2f}")
    return Saturation(
        max_sustainable_rps=max_rps,
        max_sustainable_rps_per_replica=per_replica,
        limiting_stage=limiting.name if limiting is not None else None,
        knee_rps=knee_rps,
        knee_latency_s=knee_latency_s,
        scaling_efficiency=scaling_efficiency,
        reason="; ".join(notes),
    )


def scaling_efficiency(throughput_by_replicas: Mapping[int, float]) -> float | None:
    """Throughput at the largest N replicas / (N x throughput at 1 replica); 1.0 is perfectly linear.

    None without a 1-replica measurement (or with a 1-replica throughput of 0), and None when 1 is the
    only replica count measured, since the ratio would be 1.0 by definition rather than measured.
    """
    for count, rps in throughput_by_replicas.items():
        if count < 1:
            raise ValueError(f"replica count {count} must be >= 1")
        if not math.isfinite(rps) or rps < 0:
            raise ValueError(f"throughput {rps!r} at {count} replica(s) must be a finite number >= 0")
    single = throughput_by_replicas.get(1)
    largest = max(throughput_by_replicas, default=1)
    if single is None or single <= 0 or largest == 1:
        return None
    return throughput_by_replicas[largest] / (largest * single)
