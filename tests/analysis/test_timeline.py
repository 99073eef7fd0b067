"""Tests for harness.analysis.timeline: merging processes' intervals into time buckets."""

from __future__ import annotations

import pytest
from _records import RUN_START_S, interval
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.timeline import achieved_rps, interval_series, latest_figures


def test_one_process_one_point_per_interval() -> None:
    intervals = [
        interval(0.0, [0.010] * 20, users=4, loadgen_cpu_cores=0.2),
        interval(1.0, [0.020] * 30, users=4, failures=5, loadgen_cpu_cores=0.3),
    ]
    series = interval_series(intervals, RUN_START_S)
    assert [p.elapsed_s for p in series] == [0.0, 1.0]
    first, second = series
    assert first.achieved_rps == pytest.approx(20.0)
    assert first.requests == 20 and first.failures == 0 and first.error_rps == 0.0
    assert first.p50_s == pytest.approx(0.010, rel=1e-3)
    assert first.users == 4
    assert first.offered_rps is None
    assert first.loadgen_cpu_cores == pytest.approx(0.2)
    assert second.achieved_rps == pytest.approx(35.0)
    assert second.error_rps == pytest.approx(5.0)
    assert second.errors == {"http_500": 5}
    assert second.p99_s == pytest.approx(0.020, rel=1e-3)
    assert second.duration_s == 1.0


def test_processes_are_summed() -> None:
    intervals = [
        interval(0.0, [0.01] * 10, process=1, users=2, offered_rps=50.0, loadgen_cpu_cores=0.4),
        interval(0.0, [0.03] * 30, process=2, users=3, offered_rps=50.0, loadgen_cpu_cores=0.5),
    ]
    (point,) = interval_series(intervals, RUN_START_S)
    assert point.achieved_rps == pytest.approx(40.0)
    assert point.users == 5
    assert point.offered_rps == pytest.approx(100.0)
    assert point.loadgen_cpu_cores == pytest.approx(0.9)
    # merged histogram: 10 fast + 30 slow samples
    assert point.p50_s == pytest.approx(0.03, rel=1e-3)
    assert point.p95_s == pytest.approx(0.03, rel=1e-3)


def test_jittered_intervals_keep_the_rate() -> None:
    # 0.95 s intervals: the first two midpoints (0.025, 0.975) both land in bucket 0. The rate must be
    # requests over the time the intervals cover (100 rps), not the bucket's count (190 rps).
    intervals = [interval(start_s, [0.01] * 95, length_s=0.95) for start_s in (-0.45, 0.5, 1.45, 2.4)]
    series = interval_series(intervals, RUN_START_S)
    assert [p.elapsed_s for p in series] == [0.0, 1.0, 2.0]
    assert series[0].requests == 190
    assert all(p.achieved_rps == pytest.approx(100.0) for p in series)


def test_stage_boundary_records_share_their_window() -> None:
    # One window, written once per stage: the process's time and CPU must be counted once.
    intervals = [
        interval(0.0, [0.01] * 10, stage="warmup", loadgen_cpu_cores=0.5),
        interval(0.0, [0.01] * 30, stage="steady", offered_rps=40.0, loadgen_cpu_cores=0.5),
    ]
    (point,) = interval_series(intervals, RUN_START_S)
    assert point.achieved_rps == pytest.approx(40.0)
    assert point.loadgen_cpu_cores == pytest.approx(0.5)
    assert point.offered_rps == pytest.approx(40.0)
    assert point.stage in {"warmup", "steady"}


def test_stage_is_the_one_covering_most_time() -> None:
    intervals = [
        interval(0.0, [0.01], length_s=0.3, stage="a"),
        interval(0.3, [0.01], length_s=0.7, stage="b"),
    ]
    (point,) = interval_series(intervals, RUN_START_S)
    assert point.stage == "b"


def test_gaps_are_left_out_not_zero() -> None:
    series = interval_series([interval(0.0, [0.01]), interval(5.0, [0.01])], RUN_START_S)
    assert [p.elapsed_s for p in series] == [0.0, 5.0]


def test_no_successes_means_no_percentiles() -> None:
    (point,) = interval_series([interval(0.0, [], failures=3)], RUN_START_S)
    assert point.p50_s is None and point.p95_s is None and point.p99_s is None
    assert point.error_rps == pytest.approx(3.0)


def test_larger_buckets() -> None:
    intervals = [interval(float(t), [0.01] * 10) for t in range(10)]
    series = interval_series(intervals, RUN_START_S, bucket_s=5.0)
    assert [p.elapsed_s for p in series] == [0.0, 5.0]
    assert all(p.requests == 50 for p in series)
    assert all(p.achieved_rps == pytest.approx(10.0) for p in series)


def test_bucket_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bucket_s"):
        interval_series([], RUN_START_S, bucket_s=0)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=30),  # second
            st.integers(min_value=0, max_value=3),  # process
            st.integers(min_value=0, max_value=20),  # successes
            st.integers(min_value=0, max_value=5),  # failures
            st.sampled_from(["a", "b"]),
        ),
        max_size=40,
        unique_by=lambda row: (row[0], row[1], row[4]),
    ),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
)
@settings(max_examples=100, deadline=None)
def test_series_conserves_counts_and_is_ordered(rows: list[tuple[int, int, int, int, str]], bucket_s: float) -> None:
    intervals = [
        interval(float(t), [0.005 * (1 + i % 7) for i in range(ok)], process=p, failures=bad, stage=s)
        for t, p, ok, bad, s in rows
    ]
    series = interval_series(intervals, RUN_START_S, bucket_s)
    assert sum(p.requests for p in series) == sum(i.requests for i in intervals)
    assert sum(p.failures for p in series) == sum(i.failures for i in intervals)
    elapsed = [p.elapsed_s for p in series]
    assert elapsed == sorted(set(elapsed))
    for point in series:
        assert point.elapsed_s / bucket_s == pytest.approx(round(point.elapsed_s / bucket_s))
        assert point.achieved_rps >= point.error_rps >= 0
        if point.p50_s is not None:
            assert point.p95_s is not None and point.p99_s is not None
            assert point.p50_s <= point.p95_s <= point.p99_s
        else:
            assert point.requests == point.failures


def test_achieved_rps_is_each_process_over_its_own_covered_time_summed() -> None:
    intervals = [
        # One 2 s window written once per stage (it spans a boundary): its time counts once.
        interval(0.0, [0.01] * 10, length_s=2.0, process=1, stage="ramp"),
        interval(0.0, [0.01] * 30, length_s=2.0, process=1, stage="steady"),
        interval(0.0, [0.01] * 10, length_s=0.5, process=2),
    ]
    assert achieved_rps(intervals, fallback_s=1.0) == pytest.approx(40 / 2.0 + 10 / 0.5)
    assert achieved_rps([interval(0.0, [0.01] * 4, length_s=0.0)], fallback_s=2.0) == pytest.approx(2.0)


def test_latest_figures_are_the_records_that_end_with_the_last_one() -> None:
    intervals = [
        interval(0.0, [0.5] * 10, process=1, offered_rps=10.0),
        # The newest interval: two processes, one record of process 1 per stage of a window spanning a boundary.
        interval(1.0, [0.01] * 4, process=1, stage="ramp", offered_rps=4.0),
        interval(1.0, [0.02] * 6, process=1, stage="steady", offered_rps=6.0),
        interval(1.0, [0.03] * 10, process=2, stage="steady", offered_rps=10.0),
    ]
    latest = latest_figures(intervals)
    assert latest.stage == "steady"
    assert latest.achieved_rps == pytest.approx(20.0)
    assert latest.offered_rps == pytest.approx(20.0)
    assert latest.p50_s == pytest.approx(0.02, rel=0.01) and latest.p99_s == pytest.approx(0.03, rel=0.01)
    closed = latest_figures([interval(0.0, failures=3)])
    assert (closed.offered_rps, closed.p50_s, closed.p95_s, closed.p99_s) == (None, None, None, None)
