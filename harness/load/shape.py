"""The traffic shape as a pure function of elapsed time, which Locust's LoadTestShape merely calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


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
