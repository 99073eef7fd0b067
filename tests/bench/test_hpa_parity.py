"""The pure half of bench/hpa_parity.py: the desired-replica timeline and the side-by-side table."""

from __future__ import annotations

from bench.hpa_parity import BUCKET_S, AutoscalingRun, desired_timeline, parity_table
from harness.model import ReplicaCount


def test_desired_timeline_takes_the_count_in_force_at_each_instant() -> None:
    counts = [
        ReplicaCount(t_s=99.0, desired=1, ready=1),
        ReplicaCount(t_s=105.0, desired=2, ready=1),
        ReplicaCount(t_s=121.0, desired=4, ready=2),
        ReplicaCount(t_s=140.0, desired=3, ready=4),
    ]
    assert desired_timeline(counts, 100.0, 100.0 + 4 * BUCKET_S) == (1, 2, 2, 4, 3)
    # Before the first record the first record's count stands; no records, no timeline.
    assert desired_timeline(counts, 50.0, 50.0) == (1,)
    assert desired_timeline([], 0.0, 100.0) == ()


def test_parity_table_shows_both_runs_and_the_difference() -> None:
    local = AutoscalingRun("local", "FAIL", 6.0, 37.0, 40.0, 4, 4, (1, 2, 4))
    cluster = AutoscalingRun("cluster", "FAIL", 5.5, 24.8, 33.0, 4, 4, (2, 4, 4))
    table = parity_table(local, cluster)
    assert "| first scale-up decision after the step | 6.0 s | 5.5 s | -0.5 s |" in table
    assert "| seconds above the p95 objective | 40.0 s | 33.0 s | -7.0 s |" in table
    assert "1 2 4" in table and "2 4 4" in table
    missing = AutoscalingRun("cluster", "INCONCLUSIVE", None, None, None, None, None, ())
    assert "| new replicas ready after the step | 37.0 s | n/a | n/a |" in parity_table(local, missing)
