"""Tests for harness.analysis.capacity: replicas, requests, concurrency and cost for a target peak."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from harness.analysis.capacity import plan_capacity
from harness.config import CapacityConfig, ResourceAmounts, Resources
from harness.model import CapacityPlan

MIB = 2**20


def plan(
    per_replica_rps: float | None = 10.0,
    target: float | None = 100.0,
    headroom: float = 0.3,
    price: float | None = None,
    resources: Resources | None = None,
    cpu: float | None = None,
    rss: float | None = None,
    p95_s: float | None = None,
    mean_s: float | None = None,
) -> CapacityPlan | None:
    return plan_capacity(
        per_replica_rps,
        CapacityConfig(target_peak_rps=target, headroom=headroom, price_per_core_hour=price),
        resources or Resources(),
        cpu,
        rss,
        p95_s,
        mean_s,
    )


def planned(**kwargs: float | None) -> CapacityPlan:
    capacity = plan(**kwargs)  # type: ignore[arg-type]
    assert capacity is not None
    return capacity


def test_replicas_cover_target_with_headroom() -> None:
    capacity = plan(per_replica_rps=10.0, target=100.0, headroom=0.3)
    assert capacity is not None
    # 100 x 1.3 / 10 is 13.000000000000002 in floating point; that must not become 14.
    assert capacity.replicas_needed == 13
    assert capacity.target_peak_rps == 100.0 and capacity.headroom == 0.3 and capacity.per_replica_rps == 10.0
    assert planned(per_replica_rps=10.0, target=101.0, headroom=0.3).replicas_needed == 14
    assert planned(per_replica_rps=500.0, target=1.0, headroom=0.0).replicas_needed == 1


def test_none_without_target_or_without_measured_throughput() -> None:
    assert plan(target=None) is None
    assert plan(per_replica_rps=None) is None
    with pytest.raises(ValueError, match="per_replica_rps"):
        plan(per_replica_rps=0.0)
    with pytest.raises(ValueError, match="observed_rss_bytes_per_replica"):
        plan(rss=-1.0)


def test_requests_from_observation_rounded_up() -> None:
    capacity = plan(headroom=0.3, cpu=0.42, rss=300 * MIB)
    assert capacity is not None
    # 0.42 x 1.3 = 0.546 cores -> 550m; 300 MiB x 1.3 = 390 MiB -> 400 MiB (a multiple of 16).
    assert capacity.cpu_request_cores == 0.55
    assert capacity.memory_request_bytes == 400 * MIB
    assert "550m" in capacity.reason and "400 MiB" in capacity.reason
    tiny = plan(cpu=0.0, rss=1.0)
    assert tiny is not None
    assert tiny.cpu_request_cores == 0.05 and tiny.memory_request_bytes == 16 * MIB


def test_configured_requests_win_over_observation() -> None:
    resources = Resources(requests=ResourceAmounts(cpu="500m", memory="1Gi"))
    capacity = plan(resources=resources, cpu=3.0, rss=4 * 2**30)
    assert capacity is not None
    assert capacity.cpu_request_cores == 0.5
    assert capacity.memory_request_bytes == 2**30
    assert "as configured" in capacity.reason


def test_unobserved_requests_are_none_and_explained() -> None:
    capacity = plan(price=0.04)
    assert capacity is not None
    assert capacity.cpu_request_cores is None and capacity.memory_request_bytes is None
    assert capacity.monthly_cost is None
    assert "replica CPU was not observed" in capacity.reason
    assert "no monthly cost" in capacity.reason


def test_concurrency_from_littles_law() -> None:
    # 40 rps x 50 ms = 2 in flight; x 1.3 = 2.6 -> 3.
    capacity = plan(per_replica_rps=40.0, mean_s=0.05, p95_s=0.2)
    assert capacity is not None and capacity.concurrency_per_replica == 3
    assert "Little's law" in capacity.reason and "mean" in capacity.reason
    # Without the mean the p95 stands in, erring high.
    fallback = plan(per_replica_rps=40.0, p95_s=0.2)
    assert fallback is not None and fallback.concurrency_per_replica == math.ceil(40 * 0.2 * 1.3)
    assert "p95" in fallback.reason
    assert planned(per_replica_rps=1.0, mean_s=0.001).concurrency_per_replica == 1
    assert planned().concurrency_per_replica is None


def test_monthly_cost() -> None:
    capacity = plan(per_replica_rps=10.0, target=100.0, headroom=0.3, price=0.05, cpu=0.5)
    assert capacity is not None
    # 13 replicas x 0.65 cores (0.5 x 1.3) x 0.05 per core-hour x 730 h.
    assert capacity.cpu_request_cores == 0.65
    assert capacity.monthly_cost == pytest.approx(13 * 0.65 * 0.05 * 730)


positive_rps = st.floats(0.01, 1e5)
headrooms = st.floats(0.0, 9.9)


@given(per_replica=positive_rps, target=positive_rps, more=st.floats(0.0, 1e5), headroom=headrooms)
def test_replicas_monotone_in_target_and_never_zero(
    per_replica: float, target: float, more: float, headroom: float
) -> None:
    low = plan(per_replica_rps=per_replica, target=target, headroom=headroom)
    high = plan(per_replica_rps=per_replica, target=target + more, headroom=headroom)
    assert low is not None and high is not None
    assert 1 <= low.replicas_needed <= high.replicas_needed


@given(per_replica=positive_rps, target=positive_rps, headroom=headrooms, more=st.floats(0.0, 5.0))
def test_replicas_monotone_in_headroom(per_replica: float, target: float, headroom: float, more: float) -> None:
    low = plan(per_replica_rps=per_replica, target=target, headroom=headroom)
    high = plan(per_replica_rps=per_replica, target=target, headroom=min(9.99, headroom + more))
    assert low is not None and high is not None
    assert 1 <= low.replicas_needed <= high.replicas_needed


@given(per_replica=positive_rps, target=positive_rps, headroom=headrooms)
def test_replicas_carry_the_target_with_headroom(per_replica: float, target: float, headroom: float) -> None:
    capacity = plan(per_replica_rps=per_replica, target=target, headroom=headroom)
    assert capacity is not None
    needed = target * (1 + headroom)
    # Enough replicas (up to rounding slack), and one fewer would not be enough.
    assert capacity.replicas_needed * per_replica >= needed * (1 - 2e-9)  # the rounding slack, with float error
    assert capacity.replicas_needed == 1 or (capacity.replicas_needed - 1) * per_replica < needed


@given(cpu=st.floats(0.0, 64.0), rss=st.floats(0.0, 2.0**40), headroom=headrooms)
@example(cpu=0.05, rss=0.0, headroom=1e-9)  # within the rounding slack of a 50m step: rounds down to it
def test_observed_requests_cover_the_observation_in_whole_steps(cpu: float, rss: float, headroom: float) -> None:
    capacity = plan(cpu=cpu, rss=rss, headroom=headroom)
    assert capacity is not None and capacity.cpu_request_cores is not None
    assert capacity.memory_request_bytes is not None
    millicores = capacity.cpu_request_cores * 1000
    assert millicores == pytest.approx(round(millicores)) and round(millicores) % 50 == 0
    assert capacity.cpu_request_cores >= cpu * (1 + headroom) * (1 - 2e-9)  # the rounding slack, with float error
    assert capacity.cpu_request_cores - 0.05 < max(cpu * (1 + headroom), 0.05 - 1e-12)
    assert capacity.memory_request_bytes % (16 * MIB) == 0
    assert capacity.memory_request_bytes >= rss * 1.3 * (1 - 1e-9)
    assert capacity.memory_request_bytes > 0
