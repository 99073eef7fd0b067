"""The traffic shape as a pure function of elapsed time, which Locust's LoadTestShape merely calls: the stage in
force, the users Locust should run, when the drain is over, when a distributed master starts its workers; the open
model's send times of each stage; and the stages' windows on the wall clock."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.config import ArrivalKind
from harness.load.arrivals import process_arrival_offsets
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


# Locust's answer for "no closed-model users now": stop any that run, at once.
NO_USERS = (0, 10_000.0)


def users_at(
    stages: Sequence[StageSpec], elapsed_s: float, drain_s: float, in_flight: int | None
) -> tuple[int, float] | None:
    """What Locust's shape should ask for `elapsed_s` after the test started: (closed-model users, spawn rate), or
    None once the test is over. Open-model stages and the drain run no users (the arrival generator sends); the
    drain lasts as `drain_over` says, so that the last stage's outstanding requests may still finish and be recorded
    (a service that fell behind shows its queueing instead of losing it)."""
    plan = plan_at(stages, elapsed_s)
    if plan is None:
        return None if drain_over(stages, elapsed_s, drain_s, in_flight) else NO_USERS
    if plan.open_model:
        # No closed-model users in an open stage; stop the previous stage's users at once.
        return NO_USERS
    return (plan.users or 0, plan.spawn_rate)


def workers_may_start(connected: set[str], calibrated: set[str], waited_s: float) -> bool:
    """Whether a distributed master may start its stage clock and its workers: once every connected worker has
    calibrated, or after WORKERS_START_WAIT_S whatever they say (a worker still calibrating then starts late)."""
    return not (connected - calibrated) or waited_s >= WORKERS_START_WAIT_S


class ArrivalSchedule:
    """When one load process's open-model arrivals are due: each open stage's send times, generated once, from when
    the process first sees the stage until its end, at the process's share of the stage's rate.

    `rng` draws the schedule alone, so that it depends on the seed and the process only, not on how answers'
    timing interleaves other random choices."""

    def __init__(self, stages: Sequence[StageSpec], process: int, processes: int, rng: random.Random) -> None:
        self.stages = stages
        self.process = process
        self.processes = processes
        self.rng = rng
        self.started: set[int] = set()

    def due(self, test_start_s: float, now_s: float) -> tuple[StagePlan, Iterator[float]] | None:
        """The open stage in force at `now_s` whose arrivals are not yet scheduled, and their intended send times
        (seconds since the epoch, ascending, before the stage's end); None otherwise."""
        plan = plan_at(self.stages, now_s - test_start_s)
        if plan is None or plan.arrival_rate_rps is None or plan.index in self.started:
            return None
        self.started.add(plan.index)
        offsets = process_arrival_offsets(
            plan.arrival_rate_rps,
            test_start_s + plan.stage_end_s - now_s,
            plan.arrival,
            self.rng,
            process=self.process,
            processes=self.processes,
            burstiness=plan.burstiness,
            trace_s=plan.trace_s,
        )
        return plan, (now_s + offset_s for offset_s in offsets)


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
