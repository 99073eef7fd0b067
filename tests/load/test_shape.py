"""The traffic shape and open-model arrival schedules are pure functions of time."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.config import ArrivalKind
from harness.load.arrivals import arrival_offsets
from harness.load.plan import StageSpec, total_duration_s
from harness.load.shape import (
    MIN_DRAIN_S,
    NO_USERS,
    WORKERS_START_WAIT_S,
    ArrivalSchedule,
    drain_over,
    plan_at,
    users_at,
    workers_may_start,
)

ROOT = Path(__file__).resolve().parents[2]

STAGES = [
    StageSpec("warm", 5, users=2, spawn_rate=1, arrival_rate_rps=None),
    StageSpec("step", 10, users=8, spawn_rate=None, arrival_rate_rps=None),
    StageSpec("open", 5, users=None, spawn_rate=None, arrival_rate_rps=40, arrival="constant"),
]


def test_plan_follows_stages_and_ends() -> None:
    first = plan_at(STAGES, 0)
    assert first is not None and first.name == "warm" and first.users == 2 and first.spawn_rate == 1
    step = plan_at(STAGES, 5.0)
    assert step is not None and step.name == "step" and step.spawn_rate == 8, "no spawn rate: all users at once"
    open_plan = plan_at(STAGES, 19.99)
    assert open_plan is not None and open_plan.open_model and open_plan.stage_start_s == 15
    assert plan_at(STAGES, 20.0) is None
    assert total_duration_s(STAGES) == 20


@given(st.floats(min_value=0, max_value=19.999))
def test_every_moment_maps_to_the_stage_containing_it(elapsed: float) -> None:
    plan = plan_at(STAGES, elapsed)
    assert plan is not None
    assert plan.stage_start_s <= elapsed < plan.stage_end_s


def test_constant_arrivals_are_evenly_spaced() -> None:
    offsets = list(arrival_offsets(10, 2.0, "constant", random.Random(1)))
    assert len(offsets) == 20
    assert all(abs((b - a) - 0.1) < 1e-9 for a, b in itertools.pairwise(offsets))


@given(st.floats(min_value=5, max_value=500), st.integers(min_value=0, max_value=10_000))
def test_poisson_arrivals_have_the_asked_rate(rate: float, seed: int) -> None:
    duration = 2000.0 / rate  # about 2000 arrivals expected
    offsets = list(arrival_offsets(rate, duration, "poisson", random.Random(seed)))
    assert all(0 <= t < duration for t in offsets)
    assert offsets == sorted(offsets)
    # Poisson count: mean 2000, sd ~45; 6 sd keeps this deterministic-enough for any seed.
    assert abs(len(offsets) - 2000) < 6 * 2000**0.5


def test_poisson_is_reproducible_with_a_seed() -> None:
    a = list(arrival_offsets(50, 3, "poisson", random.Random(7)))
    b = list(arrival_offsets(50, 3, "poisson", random.Random(7)))
    assert a == b


DRAIN_STAGES = [
    StageSpec(name="a", duration_s=10, users=2, spawn_rate=None, arrival_rate_rps=None),
    StageSpec(name="b", duration_s=5, users=None, spawn_rate=None, arrival_rate_rps=3),
]


def test_the_drain_ends_early_once_nothing_is_outstanding_and_never_before_the_stages_end() -> None:
    assert not drain_over(DRAIN_STAGES, 14.9, drain_s=5, in_flight=0)
    assert not drain_over(DRAIN_STAGES, 15.2, drain_s=5, in_flight=0), "the last sends get one tick to start"
    assert drain_over(DRAIN_STAGES, 15 + MIN_DRAIN_S, drain_s=5, in_flight=0)
    assert not drain_over(DRAIN_STAGES, 17, drain_s=5, in_flight=3)
    assert not drain_over(DRAIN_STAGES, 19.9, drain_s=5, in_flight=None), "a master cannot count: full drain"
    assert drain_over(DRAIN_STAGES, 20, drain_s=5, in_flight=3), "the drain is bounded"


@given(
    elapsed_s=st.floats(min_value=0, max_value=100, allow_nan=False),
    drain_s=st.floats(min_value=0, max_value=30, allow_nan=False),
    in_flight=st.one_of(st.none(), st.integers(min_value=0, max_value=50)),
)
def test_the_drain_is_over_exactly_within_its_bounds(elapsed_s: float, drain_s: float, in_flight: int | None) -> None:
    over = drain_over(DRAIN_STAGES, elapsed_s, drain_s, in_flight)
    end_s = total_duration_s(DRAIN_STAGES)
    if elapsed_s < end_s:
        assert not over
    elif elapsed_s >= end_s + drain_s:
        assert over
    elif in_flight:
        assert not over


@given(st.lists(st.floats(min_value=0.01, max_value=1000, allow_nan=False), min_size=1, max_size=8))
def test_the_stages_follow_one_another_each_for_exactly_its_planned_duration(durations_s: list[float]) -> None:
    stages = [StageSpec(f"s{index}", duration_s, users=1) for index, duration_s in enumerate(durations_s)]
    start_s = 0.0
    for index, duration_s in enumerate(durations_s):
        plan = plan_at(stages, start_s)
        assert plan is not None and plan.index == index and plan.name == f"s{index}"
        assert plan.stage_start_s == start_s and plan.stage_end_s == start_s + duration_s
        start_s += duration_s
    assert plan_at(stages, start_s) is None, "over exactly at the planned total"
    assert start_s == total_duration_s(stages)


def test_locust_runs_the_closed_stages_users_and_none_in_open_stages_or_the_drain() -> None:
    assert users_at(STAGES, 0.0, drain_s=5, in_flight=0) == (2, 1.0)
    assert users_at(STAGES, 5.0, drain_s=5, in_flight=0) == (8, 8.0), "no spawn rate: all at once"
    assert users_at(STAGES, 15.0, drain_s=5, in_flight=0) == NO_USERS, "open stages are the arrival generator's"
    assert users_at(STAGES, 20.5, drain_s=5, in_flight=0) == NO_USERS, "the drain's first tick"
    assert users_at(STAGES, 20.0 + MIN_DRAIN_S, drain_s=5, in_flight=0) is None
    assert users_at(STAGES, 22.0, drain_s=5, in_flight=None) == NO_USERS, "a master drains for the full time"
    assert users_at(STAGES, 25.0, drain_s=5, in_flight=4) is None


@given(
    elapsed_s=st.floats(min_value=0, max_value=40, allow_nan=False),
    drain_s=st.floats(min_value=0, max_value=10, allow_nan=False),
    in_flight=st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
)
def test_locust_is_told_to_stop_only_once_the_drain_is_over(
    elapsed_s: float, drain_s: float, in_flight: int | None
) -> None:
    users = users_at(STAGES, elapsed_s, drain_s, in_flight)
    plan = plan_at(STAGES, elapsed_s)
    assert (users is None) == (plan is None and drain_over(STAGES, elapsed_s, drain_s, in_flight))
    if plan is not None and not plan.open_model:
        assert users == (plan.users, plan.spawn_rate)
    elif users is not None:
        assert users == NO_USERS


def test_a_master_starts_its_workers_once_all_calibrated_or_the_wait_is_over() -> None:
    assert workers_may_start(set(), set(), 0.0)
    assert workers_may_start({"a", "b"}, {"a", "b", "gone"}, 0.0)
    assert not workers_may_start({"a", "b"}, {"a"}, WORKERS_START_WAIT_S - 0.1)
    assert workers_may_start({"a", "b"}, {"a"}, WORKERS_START_WAIT_S)


def test_each_open_stage_is_scheduled_once_from_when_it_is_first_seen_to_its_end() -> None:
    schedule = ArrivalSchedule(STAGES, process=0, processes=1, rng=random.Random(1))
    assert schedule.due(1000.0, 1001.0) is None, "a closed stage has no arrivals"
    due = schedule.due(1000.0, 1016.0)
    assert due is not None
    plan, times = due
    assert plan.name == "open"
    # 40/s constant from 1016 to the stage's end at 1020.
    assert list(times) == [1016.0 + i / 40 for i in range(160)]
    assert schedule.due(1000.0, 1017.0) is None, "already scheduled"
    assert schedule.due(1000.0, 1021.0) is None, "the test is over"


def test_processes_share_an_open_stage_and_a_seed_repeats_its_schedule() -> None:
    stages = [StageSpec("open", 10, arrival_rate_rps=20.0, arrival="poisson")]

    def times(process: int, seed: int) -> list[float]:
        due = ArrivalSchedule(stages, process, 2, random.Random(seed)).due(0.0, 0.0)
        assert due is not None
        return list(due[1])

    assert times(0, 3) == times(0, 3)
    assert times(0, 3) != times(0, 4)
    assert 40 < len(times(1, 5)) < 170, "about 10/s, this process's half of the stage's 20/s"


RANDOM_KINDS: list[ArrivalKind] = ["constant", "poisson", "gamma"]


@given(
    start_s=st.floats(min_value=1e9, max_value=2e9, allow_nan=False),
    seen_after_s=st.floats(min_value=15, max_value=19.999, allow_nan=False),
    seed=st.integers(min_value=0, max_value=1000),
    kind=st.sampled_from(RANDOM_KINDS),
)
def test_send_times_are_ascending_and_within_the_rest_of_the_stage(
    start_s: float, seen_after_s: float, seed: int, kind: ArrivalKind
) -> None:
    stages = [*STAGES[:2], StageSpec("open", 5, arrival_rate_rps=40, arrival=kind, burstiness=0.5)]
    now_s = start_s + seen_after_s
    due = ArrivalSchedule(stages, 0, 1, random.Random(seed)).due(start_s, now_s)
    if due is None:  # the float sum of start and offset fell past the stage's end
        assert plan_at(stages, now_s - start_s) is None
        return
    times = list(due[1])
    assert times == sorted(times)
    # Before the stage's end up to the rounding of adding offsets to a time since the epoch.
    assert all(now_s <= t <= start_s + 20.0 + 1e-6 for t in times)
