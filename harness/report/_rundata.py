"""Everything a report shows, read once from a finished run directory; missing parts become notes, not zeros.

verdict.json is required (and validated against docs/verdict.schema.json); every other file may be
absent (an external target has no replica records, an interrupted run may lack stages.json), and each
absence is recorded in `missing` with the reason a renderer prints instead of an empty plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.analysis.timeline import IntervalPoint, interval_series
from harness.errors import ReportError
from harness.model import (
    ClientInterval,
    ReplicaCount,
    ReplicaSample,
    RunEvent,
    RunMetadata,
    ScaleDecision,
    ServerSample,
    StageWindow,
    Verdict,
    from_json_dict,
)
from harness.report.schema import validate_verdict
from harness.rundir import RECORD_FILES, RunDirectory, SavedScenario


@dataclass(frozen=True)
class RunData:
    """A run directory's contents as the renderers need them."""

    run_dir: RunDirectory
    verdict: Verdict
    windows: list[StageWindow]
    intervals: list[ClientInterval]
    series: list[IntervalPoint]
    counts: list[ReplicaCount]
    samples: list[ReplicaSample]
    server: list[ServerSample]
    events: list[RunEvent]
    # None when metadata.json is missing.
    metadata: RunMetadata | None
    # The scenario as saved; None when scenario.yaml is missing.
    scenario: SavedScenario | None
    run_start_s: float | None
    bucket_s: float
    # Part of the run directory -> why it is absent; renderers say "not measured" with this reason.
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def scenario_name(self) -> str:
        names = [self.scenario.name if self.scenario else None, self.metadata.scenario if self.metadata else None]
        return next((name for name in names if isinstance(name, str) and name), self.run_dir.path.name)

    @property
    def run_id(self) -> str:
        run_id = self.metadata.run_id if self.metadata else None
        return run_id if isinstance(run_id, str) and run_id else self.run_dir.path.name

    @property
    def autoscaling_enabled(self) -> bool | None:
        """Whether the scenario enabled autoscaling; None when the scenario is unknown."""
        return None if self.scenario is None else self.scenario.autoscaling_enabled

    def scale_decisions(self) -> list[tuple[float, ScaleDecision]]:
        """Every change of the desired replica count, with its time, in time order."""
        return [(e.t_s, e.detail) for e in self.events if isinstance(e.detail, ScaleDecision)]

    def elapsed_s(self, t_s: float) -> float:
        """Seconds since the run's start (the first stage's start)."""
        return t_s - (self.run_start_s or 0.0)


def read_verdict(run_dir: RunDirectory) -> Verdict:
    """verdict.json, validated against the published schema, as a Verdict."""
    data = run_dir.read_json("verdict.json")
    validate_verdict(data, source=str(run_dir.file("verdict.json")))
    try:
        return from_json_dict(Verdict, data)
    except (ValueError, TypeError) as error:
        raise ReportError(f"{run_dir.file('verdict.json')}: not a valid verdict ({error})") from error


def _records(run_dir: RunDirectory, cls: type[Any], missing: dict[str, str], why_absent: str) -> list[Any]:
    name = RECORD_FILES[cls]
    if not run_dir.file(name).exists():
        missing[name] = why_absent
        return []
    records = run_dir.read_records(cls)
    if not records:
        missing[name] = f"{name} holds no records"
    return records


def load_run(run_dir: RunDirectory) -> RunData:
    """Read a finished run directory for the renderers (verdict.json required, everything else optional)."""
    if not run_dir.path.is_dir():
        raise ReportError(f"{run_dir.path}: not a run directory")
    verdict = read_verdict(run_dir)
    missing: dict[str, str] = {}

    metadata = run_dir.read_metadata() if run_dir.file("metadata.json").exists() else None
    if metadata is None:
        missing["metadata.json"] = "metadata.json is missing from the run directory"

    scenario = run_dir.read_saved_scenario()
    if scenario is None:
        missing["scenario.yaml"] = "scenario.yaml is missing from the run directory"

    windows: list[StageWindow] = []
    if run_dir.file("stages.json").exists():
        windows = run_dir.read_stages()
    else:
        missing["stages.json"] = "stages.json is missing (the load generator never started its test)"

    intervals = _records(run_dir, ClientInterval, missing, "no client results: the load generator recorded nothing")
    counts = _records(
        run_dir, ReplicaCount, missing, "no replica counts: the target does not report its replicas (external target?)"
    )
    samples = _records(
        run_dir, ReplicaSample, missing, "no replica samples: the target does not report replica CPU and memory"
    )
    server = _records(run_dir, ServerSample, missing, "no /metrics scrapes: the service's metrics were not collected")
    events = _records(run_dir, RunEvent, missing, "no events were recorded")

    if windows:
        run_start_s: float | None = min(w.start_s for w in windows)
    elif intervals:
        run_start_s = min(i.t_start_s for i in intervals)
    else:
        run_start_s = None
    bucket_s = (scenario.metrics_interval_s if scenario else None) or 1.0
    series = interval_series(intervals, run_start_s, bucket_s=bucket_s) if intervals and run_start_s is not None else []

    return RunData(
        run_dir=run_dir,
        verdict=verdict,
        windows=sorted(windows, key=lambda w: w.start_s),
        intervals=intervals,
        series=series,
        counts=sorted(counts, key=lambda c: c.t_s),
        samples=sorted(samples, key=lambda s: s.t_s),
        server=sorted(server, key=lambda s: s.t_s),
        events=sorted(events, key=lambda e: e.t_s),
        metadata=metadata,
        scenario=scenario,
        run_start_s=run_start_s,
        bucket_s=bucket_s,
        missing=missing,
    )
