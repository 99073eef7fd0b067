"""The traffic shape as a pure function of elapsed time, which Locust's LoadTestShape merely calls, and the stages'
windows on the wall clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.config import ArrivalKind
from harness.load.plan import StageSpec, total_duration_s
from harness.model import StageWindow, cut_windows

if TYPE_CHECKING:
    from harness.config import Scenario

# The longest a distributed Locust master holds its stage clock for its workers' calibration (each worker
# measures its own overhead first, for at most a few seconds); a worker still calibrating then starts late.
WORKERS_START_WAIT_S = 30.0


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
    arrival: ArrivalKind
    burstiness: float = 1.0
    trace_s: tuple[float, ...] = ()

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
                burstiness=stage.burstiness,
                trace_s=stage.trace_s,
            )
        start_s = end_s
    return None


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
