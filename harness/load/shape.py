"""The load plan: the scenario's stages as the load generator runs them, the traffic shape as a pure
function of elapsed time, which Locust's LoadTestShape merely calls, the stages' windows on the wall clock,
and the open-model stages too short for their percentile objectives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from harness.analysis.latency import min_samples_for_percentile
from harness.model import StageWindow, cut_windows

if TYPE_CHECKING:
    from pathlib import Path

    from harness.config import Scenario

# Upper bound on the drain after the last stage (also bounded by the request timeout).
DRAIN_S = 5.0
# The longest a distributed Locust master holds its stage clock for its workers' calibration (each worker
# measures its own overhead first, for at most a few seconds); a worker still calibrating then starts late.
WORKERS_START_WAIT_S = 30.0


@dataclass(frozen=True)
class StageSpec:
    """The parts of a scenario stage the load generator needs (plain data, JSON-serialisable)."""

    name: str
    duration_s: float
    users: int | None
    spawn_rate: float | None
    arrival_rate_rps: float | None
    arrival: Literal["constant", "poisson"] = "poisson"


@dataclass(frozen=True)
class StagePlan:
    """What the load generator should be doing at one moment."""

    index: int
    name: str
    stage_start_s: float
    stage_end_s: float
    # Closed model: concurrent users and their spawn rate; open model: arrival rate.
    users: int | None
    spawn_rate: float
    arrival_rate_rps: float | None
    arrival: Literal["constant", "poisson"]

    @property
    def open_model(self) -> bool:
        return self.arrival_rate_rps is not None


def plan_at(stages: Sequence[StageSpec], elapsed_s: float) -> StagePlan | None:
    """The stage in force `elapsed_s` seconds after the test started, or None once all stages are over."""
    start_s = 0.0
    for index, stage in enumerate(stages):
        end_s = start_s + stage.duration_s
        if elapsed_s < end_s:
            # Without a spawn rate, all users start at once (spawn rate = users per second).
            users = stage.users
            spawn_rate = stage.spawn_rate if stage.spawn_rate is not None else float(max(users or 1, 1))
            return StagePlan(
                index=index,
                name=stage.name,
                stage_start_s=start_s,
                stage_end_s=end_s,
                users=users,
                spawn_rate=spawn_rate,
                arrival_rate_rps=stage.arrival_rate_rps,
                arrival=stage.arrival,
            )
        start_s = end_s
    return None


def total_duration_s(stages: Sequence[StageSpec]) -> float:
    """Planned length of the whole test."""
    return sum(stage.duration_s for stage in stages)


# Shape ticks come once a second; a drain shorter than one tick would not let the last scheduled sends start.
MIN_DRAIN_S = 1.0


def drain_over(stages: Sequence[StageSpec], elapsed_s: float, drain_s: float, in_flight: int | None) -> bool:
    """Whether the drain after the last stage is over: at `drain_s` at the latest, and as soon as no
    request is outstanding when the caller can count them (`in_flight` is None where it cannot, as on a
    distributed master, whose workers hold the requests)."""
    over_s = elapsed_s - total_duration_s(stages)
    if over_s < 0:
        return False
    if over_s >= drain_s:
        return True
    return in_flight == 0 and over_s >= min(MIN_DRAIN_S, drain_s)


def stage_specs(scenario: Scenario) -> list[StageSpec]:
    """The load generator's view of the scenario's stages."""
    return [
        StageSpec(
            name=stage.name,
            duration_s=stage.duration_s,
            users=stage.users,
            spawn_rate=stage.spawn_rate,
            arrival_rate_rps=stage.arrival_rate_rps,
            arrival=stage.arrival,
        )
        for stage in scenario.stages
    ]


def drain_s(scenario: Scenario) -> float:
    """After the last stage: time for outstanding requests to finish and be recorded."""
    return min(scenario.load.request_timeout_s, DRAIN_S)


def planned_duration_s(scenario: Scenario) -> float:
    """How long a load generator runs the scenario: every stage, then the drain."""
    return total_duration_s(stage_specs(scenario)) + drain_s(scenario)


def load_plan(scenario: Scenario, endpoints_file: Path, intervals_dir: Path) -> dict[str, Any]:
    """The harness locustfile's plan (HARNESS_LOAD_PLAN): stages, payload, where endpoints and records live.

    The same plan runs on this machine (harness.load.runner) and in a cluster (charts/loadgen), where the
    paths are the pod's."""
    return {
        "stages": [asdict(spec) for spec in stage_specs(scenario)],
        "processes": scenario.load.processes,
        "process": 0,
        "endpoint_path": scenario.service.endpoint,
        "endpoints_file": str(endpoints_file),
        "intervals_dir": str(intervals_dir),
        "interval_s": scenario.metrics.interval_s,
        "request_timeout_s": scenario.load.request_timeout_s,
        "drain_s": drain_s(scenario),
        "max_in_flight": scenario.load.max_in_flight,
        "seed": scenario.load.seed,
        "payload": {
            "source": scenario.payload.source,
            "file": str(scenario.payload.file) if scenario.payload.file else None,
            "batch_rows": scenario.payload.batch_rows,
            "malformed_fraction": scenario.payload.malformed_fraction,
        },
        "user_locustfile": None if scenario.load.locustfile is None else str(scenario.load.locustfile),
        # Header values stay `${NAME}` here: the load process reads them from its environment.
        "requests": None
        if scenario.requests is None
        else [request.model_dump(mode="json") for request in scenario.requests],
    }


def stage_windows(scenario: Scenario, test_start_s: float, ended_s: float | None = None) -> list[StageWindow]:
    """Stage windows on the wall clock from the load generator's test start; cut short at `ended_s`."""
    windows = []
    start_s = test_start_s
    for stage in scenario.stages:
        windows.append(
            StageWindow(
                name=stage.name,
                start_s=start_s,
                end_s=start_s + stage.duration_s,
                judged=stage.judged,
                users=stage.users,
                arrival_rate_rps=stage.arrival_rate_rps,
            )
        )
        start_s += stage.duration_s
    return windows if ended_s is None else cut_windows(windows, ended_s)


def short_stage_warnings(scenario: Scenario) -> list[str]:
    """Open-model stages too short for a percentile objective judged on them: their request count is known in
    advance, so the INCONCLUSIVE they would end in is foreseeable."""
    warnings = []
    judged = {stage.name: stage for stage in scenario.stages if stage.judged}
    for objective in scenario.objectives:
        q = objective.percentile
        if q is None:
            continue
        needed = min_samples_for_percentile(q, scenario.validity.min_tail_samples)
        for name in objective.stages or list(judged):
            stage = judged.get(name)
            if stage is None or stage.arrival_rate_rps is None:
                continue
            expected = stage.arrival_rate_rps * stage.duration_s
            if expected < needed:
                warnings.append(
                    f"stage '{name}' sends about {expected:.0f} requests ({stage.arrival_rate_rps:g} rps for "
                    f"{stage.duration_s:g} s), too few for objective {objective.metric}, which needs at least "
                    f"{needed} (validity.min_tail_samples={scenario.validity.min_tail_samples}): it will be "
                    "INCONCLUSIVE; lengthen the stage or raise its rate"
                )
    return warnings
