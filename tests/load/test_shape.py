"""The traffic shape and open-model arrival schedules are pure functions of time."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.load.arrivals import arrival_offsets
from harness.load.plan import StageSpec, total_duration_s
from harness.load.shape import MIN_DRAIN_S, drain_over, plan_at

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
