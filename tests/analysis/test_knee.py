"""Tests for harness.analysis.knee: Kneedle on latency-versus-throughput curves."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from harness.analysis.knee import Knee, find_knee


def mm1_latency_s(service_rps: float, arrival_rps: float) -> float:
    """Mean time in system of an M/M/1 queue."""
    return 1.0 / (service_rps - arrival_rps)


def test_mm1_knee_is_where_the_queue_starts_to_build() -> None:
    mu = 100.0
    rates = [float(r) for r in range(10, 100, 5)]
    knee = find_knee(rates, [mm1_latency_s(mu, r) for r in rates])
    assert knee is not None
    # The curve is nearly flat up to ~60% utilisation and nearly vertical past 90%.
    assert 0.7 * mu <= knee.rps <= 0.9 * mu
    assert knee.latency_s == mm1_latency_s(mu, knee.rps)
    assert rates[knee.index] == knee.rps


@given(
    mu=st.floats(1.0, 1e5),
    points=st.integers(6, 60),
    top=st.floats(0.9, 0.98),
)
def test_mm1_knee_for_any_service_rate_and_grid(mu: float, points: int, top: float) -> None:
    rates = [mu * (0.1 + (top - 0.1) * i / (points - 1)) for i in range(points)]
    knee = find_knee(rates, [mm1_latency_s(mu, r) for r in rates])
    assert knee is not None
    assert 0.55 * mu <= knee.rps < top * mu


def test_the_knee_is_the_point_farthest_below_the_chord() -> None:
    throughput = [0.0, 1.0, 2.0, 3.0, 4.0]
    latency = [0.0, 0.1, 0.3, 2.0, 4.0]
    # Normalised: x = 0, .25, .5, .75, 1 and y = 0, .025, .075, .5, 1, so x - y = 0, .225, .425, .25, 0:
    # the peak is index 2, and the last point falls below the threshold 0.425 - mean(dx) = 0.175.
    assert find_knee(throughput, latency) == Knee(rps=2.0, latency_s=0.3, index=2)


def test_index_refers_to_the_callers_order() -> None:
    rates = [10.0, 90.0, 50.0, 70.0, 30.0, 80.0, 60.0, 40.0, 20.0]
    latency = [mm1_latency_s(100.0, r) for r in rates]
    knee = find_knee(rates, latency)
    assert knee is not None
    assert (rates[knee.index], latency[knee.index]) == (knee.rps, knee.latency_s)


def test_linear_curve_has_no_knee() -> None:
    assert find_knee([1.0, 2.0, 3.0, 4.0, 5.0], [0.01, 0.02, 0.03, 0.04, 0.05]) is None


@given(
    slope=st.floats(1e-6, 1e6),
    intercept=st.floats(0.0, 1e3),
    xs=st.lists(st.floats(0.0, 1e6), min_size=3, max_size=40, unique=True),
)
def test_any_straight_line_has_no_knee(slope: float, intercept: float, xs: list[float]) -> None:
    assume(max(xs) - min(xs) > 1e-3 * max(1.0, max(xs)))
    assert find_knee(xs, [intercept + slope * x for x in xs]) is None


def test_concave_and_flat_curves_have_no_knee() -> None:
    rates = [float(r) for r in range(1, 20)]
    assert find_knee(rates, [math.sqrt(r) for r in rates]) is None
    assert find_knee(rates, [0.05] * len(rates)) is None


def test_fewer_than_three_distinct_throughputs_have_no_knee() -> None:
    assert find_knee([], []) is None
    assert find_knee([1.0, 2.0], [0.1, 5.0]) is None
    assert find_knee([1.0, 1.0, 2.0, 2.0], [0.1, 0.2, 0.3, 9.0]) is None


def test_three_points_need_a_sharp_bend_at_the_papers_sensitivity() -> None:
    rates = [10.0, 50.0, 90.0]
    latency = [mm1_latency_s(100.0, r) for r in rates]
    # D at the middle point is 0.4; S = 1 asks for a drop of mean(dx) = 0.5 after it.
    assert find_knee(rates, latency) is None
    assert find_knee(rates, latency, sensitivity=0.5) == Knee(rps=50.0, latency_s=latency[1], index=1)


def test_rejects_mismatched_and_non_finite_input() -> None:
    with pytest.raises(ValueError, match="throughput_rps has 3 values but latency_s has 2"):
        find_knee([1.0, 2.0, 3.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="latency_s holds non-finite"):
        find_knee([1.0, 2.0, 3.0], [0.1, math.nan, 0.3])
    with pytest.raises(ValueError, match="sensitivity"):
        find_knee([1.0, 2.0, 3.0], [0.1, 0.2, 0.3], sensitivity=-1.0)


@given(
    points=st.lists(
        st.tuples(st.floats(0.0, 1e4, allow_subnormal=False), st.floats(1e-4, 10.0, allow_subnormal=False)),
        min_size=3,
        max_size=30,
    ),
    x_scale=st.floats(1e-3, 1e3),
    y_scale=st.floats(1e-3, 1e3),
)
def test_invariant_to_scaling_both_axes(points: list[tuple[float, float]], x_scale: float, y_scale: float) -> None:
    throughput = [p[0] for p in points]
    latency = [p[1] for p in points]
    knee = find_knee(throughput, latency)
    scaled = find_knee([x * x_scale for x in throughput], [y * y_scale for y in latency])
    assert (knee is None) == (scaled is None)
    if knee is not None and scaled is not None:
        assert scaled.index == knee.index
        assert scaled.rps == pytest.approx(knee.rps * x_scale)
        assert scaled.latency_s == pytest.approx(knee.latency_s * y_scale)
