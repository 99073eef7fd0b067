"""The targets' shared scaling rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.targets.base import scale_plan


def test_scale_down_removes_the_newest_first() -> None:
    alive = [("a", 1.0), ("b", 3.0), ("c", 2.0)]
    assert scale_plan(alive, 1) == (0, ["b", "c"])
    assert scale_plan(alive, 5) == (2, [])
    assert scale_plan(alive, 3) == (0, [])


@given(st.lists(st.floats(0, 1e6), max_size=20), st.integers(0, 30))
def test_the_plan_reaches_the_desired_count(starts: list[float], desired: int) -> None:
    alive = [(f"r{i}", t) for i, t in enumerate(starts)]
    to_start, to_remove = scale_plan(alive, desired)
    assert len(alive) + to_start - len(to_remove) == desired
    assert to_start == 0 or not to_remove
    kept = [t for (i, t) in alive if i not in to_remove]
    removed = [t for (i, t) in alive if i in to_remove]
    assert not kept or not removed or max(kept) <= min(removed)


def test_wait_until_ready_returns_raises_failures_and_times_out() -> None:
    import pytest

    from harness.errors import DeployError
    from harness.targets.base import wait_until_ready

    states = iter([[False, False], [True, False], [True, True]])
    wait_until_ready(
        lambda: next(states),
        count=2,
        timeout_s=60,
        poll_s=0.001,
        ready=lambda r: r,
        failure=lambda r: None,
        timed_out=lambda waiting: DeployError("late"),
    )
    with pytest.raises(DeployError, match="crashed"):
        wait_until_ready(
            lambda: ["a"],
            count=1,
            timeout_s=60,
            poll_s=0.001,
            ready=lambda r: False,
            failure=lambda r: DeployError(f"{r} crashed"),
            timed_out=lambda waiting: DeployError("late"),
        )
    with pytest.raises(DeployError, match="late: 1"):
        wait_until_ready(
            lambda: ["a"],
            count=2,
            timeout_s=0.01,
            poll_s=0.001,
            ready=lambda r: True,
            failure=lambda r: None,
            timed_out=lambda waiting: DeployError(f"late: {len(waiting) + 1}"),
        )
