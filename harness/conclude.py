"""Turns a run directory's raw records into its verdict: the pure analysis, wired to the saved files.

Everything here reads the run directory only, so `harness report RUN_DIR` reproduces the verdict
from the raw data alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from harness.analysis.autoscaling_figures import step_autoscaling
from harness.analysis.capacity import plan_capacity
from harness.analysis.diagnosis import RunSeries, diagnose
from harness.analysis.faults import fault_impacts
from harness.analysis.saturation import max_sustainable
from harness.analysis.stages import summarize_stages
from harness.analysis.timeline import interval_series
from harness.config import Scenario, parse_scenario, read_yaml
from harness.errors import ReportError
from harness.model import (
    ClientInterval,
    LoadgenOverhead,
    ReplicaCount,
    ReplicaSample,
    RunEvent,
    ServerSample,
    StageResult,
    Verdict,
    cut_windows,
)
from harness.objectives import stream_percentile
from harness.rundir import RunDirectory
from harness.verdict import build_verdict, judge, worst_overhead

BASE_PERCENTILES = (50.0, 95.0, 99.0)


def percentiles_for(scenario: Scenario) -> tuple[float, ...]:
    """Always p50/p95/p99, plus any percentile an objective names."""
    asked = {q for q in (o.percentile for o in scenario.objectives) if q is not None}
    return tuple(sorted(set(BASE_PERCENTILES) | asked))


def stream_percentiles_for(scenario: Scenario) -> dict[str, list[float]]:
    """The percentiles objectives name per streamed figure ({"ttft": [99.0]} for ttft_p99_ms)."""
    asked: dict[str, list[float]] = {}
    for objective in scenario.objectives:
        found = stream_percentile(objective.metric)
        if found is not None:
            asked.setdefault(found[0], []).append(found[1])
    return asked


def load_saved_scenario(run_dir: RunDirectory) -> Scenario:
    path = run_dir.file("scenario.yaml")
    if not path.is_file():
        raise ReportError(f"{path}: missing from the run directory")
    return parse_scenario(read_yaml(path), str(path))


def _mean_or_none(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _replica_usage_at(
    samples: Sequence[ReplicaSample], start_s: float, end_s: float
) -> tuple[float | None, float | None]:
    """Mean CPU cores and peak RSS of one replica over a window (averaged across replicas)."""
    inside = [s for s in samples if start_s <= s.t_s <= end_s and s.ready]
    cpu = [s.cpu_cores for s in inside if s.cpu_cores is not None]
    rss = [s.rss_bytes for s in inside if s.rss_bytes is not None]
    return _mean_or_none(cpu), (max(rss) if rss else None)


def unmeasured_note(server: Sequence[ServerSample], samples: Sequence[ReplicaSample], metrics_path: str) -> str | None:
    """What the verdict could not measure of the service (a service that is not BentoML has no /metrics; an
    external one gives no CPU or memory): it is judged on the client's figures, and says so."""
    missing = []
    if not any(sample.ok for sample in server):
        missing.append(f"server-side latency, in-flight requests and batch sizes (no answer from {metrics_path})")
    if not any(sample.cpu_cores is not None for sample in samples):
        missing.append("replica CPU and memory")
    return "judged on client-side figures; not measured: " + "; ".join(missing) if missing else None


def accepted_bad_input_notes(stages: Sequence[StageResult]) -> list[str]:
    """Per stage, the bad input the service answered 2xx: expected 4xx, it is no failed objective (only a 5xx or a
    dead replica is), but a service that takes spoiled input as valid should say so."""
    return [
        f"stage '{stage.name}': {stage.bad_input_accepted} of {stage.bad_inputs} bad-input requests were answered 2xx "
        "(expected 4xx): the service took them as valid input"
        for stage in stages
        if stage.bad_input_accepted
    ]


def conclude_run(run_dir: RunDirectory, scenario: Scenario | None = None, warnings: Sequence[str] = ()) -> Verdict:
    """Analyse the run directory, write verdict.json and every report, and return the verdict."""
    scenario = scenario or load_saved_scenario(run_dir)
    windows = run_dir.read_stages()
    intervals = run_dir.read_records(ClientInterval)
    counts = run_dir.read_records(ReplicaCount)
    events = run_dir.read_records(RunEvent)
    samples = run_dir.read_records(ReplicaSample)
    metadata = run_dir.read_metadata()
    all_warnings = list(dict.fromkeys([*metadata.warnings, *warnings]))
    if metadata.ended_at is None and intervals:
        # The harness died mid-run (SIGKILL, OOM): the stages as far as the load generator recorded them.
        last_record_s = max(interval.t_end_s for interval in intervals)
        windows = cut_windows(windows, last_record_s)
        all_warnings.append("the harness was killed before the run ended: partial data, stages cut at the last record")
    placement = metadata.cpu_placement
    if placement is not None and placement.shared:
        all_warnings.append(
            "load generator and replicas shared CPUs: " + (placement.reason or "not enough CPUs to separate them")
        )

    server = run_dir.read_records(ServerSample)
    note = unmeasured_note(server, samples, scenario.service.metrics_path) if intervals else None
    if note is not None:
        all_warnings.append(note)

    stages: list[StageResult] = summarize_stages(
        windows,
        intervals,
        counts,
        events,
        scenario.validity,
        percentiles=percentiles_for(scenario),
        loadgen_processes=scenario.load.processes,
        judged_percentiles=tuple(q for q in (o.percentile for o in scenario.objectives) if q is not None),
        stream_percentiles=stream_percentiles_for(scenario),
    )
    all_warnings.extend(accepted_bad_input_notes(stages))
    run_start_s = windows[0].start_s if windows else 0.0
    series = interval_series(intervals, run_start_s, bucket_s=scenario.metrics.interval_s)
    p95_objective_s = next(
        (o.max / 1000.0 for o in scenario.objectives if o.percentile == 95.0 and o.max is not None), None
    )
    autoscaling = (
        step_autoscaling(windows, series, counts, events, p95_objective_s, run_start_s)
        if scenario.autoscaling is not None and scenario.autoscaling.enabled
        else []
    )
    confidence = scenario.validity.confidence
    objective_results = judge(stages, scenario.objectives, autoscaling, confidence=confidence)
    saturation = max_sustainable(stages, objective_results, None if counts else scenario.target.replicas)

    capacity = None
    if scenario.capacity.target_peak_rps is not None:
        sustainable = next((s for s in stages if s.name == saturation.limiting_stage), None)
        best = max(
            (
                s
                for s in stages
                if saturation.max_sustainable_rps is not None
                and abs(s.achieved_rps - saturation.max_sustainable_rps) < 1e-9
            ),
            key=lambda s: s.achieved_rps,
            default=sustainable,
        )
        cpu, rss = _replica_usage_at(samples, best.start_s, best.end_s) if best else (None, None)
        p95 = best.latency.get("p95") if best else None
        capacity = plan_capacity(
            saturation.max_sustainable_rps_per_replica,
            scenario.capacity,
            scenario.resources,
            cpu,
            rss,
            p95.value_s if p95 else None,
            best.latency_mean_s if best else None,
        )
        if capacity is None:
            all_warnings.append(f"no capacity plan for {scenario.capacity.target_peak_rps:g} rps: {saturation.reason}")

    verdict = build_verdict(
        stages,
        scenario.objectives,
        autoscaling=autoscaling,
        saturation=saturation,
        capacity=capacity,
        warnings=all_warnings,
        confidence=confidence,
        run_id=metadata.run_id or run_dir.path.name,
        scenario_name=scenario.name,
        bottlenecks=diagnose(
            stages,
            objective_results,
            saturation,
            RunSeries(intervals, server, samples, counts, events),
            cpu_limit_cores=scenario.resources.limits.cpu_cores,
            loadgen_cpu_saturation=scenario.validity.loadgen_cpu_saturation,
        ),
        faults=fault_impacts(windows, intervals, events, objective_results),
        loadgen_overhead=worst_overhead(run_dir.read_records(LoadgenOverhead)),
    )
    run_dir.write_json("verdict.json", verdict)
    return verdict
