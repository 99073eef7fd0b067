"""The run's client-side time series: every load-generator process merged into fixed time buckets.

Feeds the HTML report's timeline and the autoscaling figures. A bucket holds the intervals whose
midpoint falls inside it (an interval's latency histogram cannot be split in time). Rates are computed
per process over the time its intervals cover and then summed, so a process whose interval boundaries
jitter across bucket edges does not produce alternating doubled and empty buckets.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.analysis.latency import LatencyHistogram
from harness.model import ClientInterval


@dataclass(frozen=True)
class IntervalPoint:
    """One time bucket of client results, all load-generator processes together."""

    # Bucket start, seconds since the run's start.
    elapsed_s: float
    duration_s: float
    # The stage covering most of the bucket's interval time.
    stage: str
    users: int
    # Open model: arrivals per second due; None when every interval was closed-model.
    offered_rps: float | None
    achieved_rps: float
    error_rps: float
    requests: int
    failures: int
    dropped: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    # Summed over processes; None when no process reported its CPU.
    loadgen_cpu_cores: float | None
    errors: dict[str, int] = field(default_factory=dict)


def _bucket_of(interval: ClientInterval, run_start_s: float, bucket_s: float) -> int:
    midpoint_s = (interval.t_start_s + interval.t_end_s) / 2.0
    return math.floor((midpoint_s - run_start_s) / bucket_s)


def _sum_of_process_means(values: dict[int, list[tuple[float, float]]]) -> float | None:
    """Sum over processes of each process's time-weighted mean of (length_s, value) pairs."""
    total: float | None = None
    for pairs in values.values():
        weight_s = sum(w for w, _ in pairs)
        mean = sum(w * v for w, v in pairs) / weight_s if weight_s > 0 else sum(v for _, v in pairs) / len(pairs)
        total = mean if total is None else total + mean
    return total


def _covered_s(own: Sequence[ClientInterval]) -> float:
    """Seconds one process's intervals cover: an interval that spans a stage boundary is written once per
    stage with the same window, and counts once."""
    return sum(max(0.0, end_s - start_s) for start_s, end_s in {(i.t_start_s, i.t_end_s) for i in own})


def _rate_per_s(
    intervals: Sequence[ClientInterval], count: Callable[[ClientInterval], int], fallback_s: float
) -> float:
    """Each load-generator process's count over the time its intervals cover, summed over processes; a process
    whose intervals cover no time (zero-length intervals cannot give a rate) is taken over `fallback_s`."""
    by_process: dict[int, list[ClientInterval]] = defaultdict(list)
    for interval in intervals:
        by_process[interval.process].append(interval)
    return sum(sum(count(i) for i in own) / (_covered_s(own) or fallback_s) for own in by_process.values())


def achieved_rps(intervals: Sequence[ClientInterval], fallback_s: float) -> float:
    """Requests per second of client intervals, the rule of the timeline's buckets and of the live view."""
    return _rate_per_s(intervals, lambda i: i.requests, fallback_s)


@dataclass(frozen=True)
class LatestFigures:
    """The newest interval of a running load, as the live view and the harness's exporter show it."""

    stage: str
    achieved_rps: float
    # Summed over the processes that planned arrivals (open model); None in closed-model stages.
    offered_rps: float | None
    # Latency percentiles of its successful requests; None without any.
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None


def latest_figures(intervals: Sequence[ClientInterval]) -> LatestFigures:
    """Figures of the newest interval: the records (one per process and stage) at the end of `intervals`, which
    arrive in time order, that end with the last one."""
    latest_end_s = intervals[-1].t_end_s
    recent = list(itertools.takewhile(lambda i: i.t_end_s >= latest_end_s - 1e-6, reversed(intervals)))
    recent.reverse()
    histogram = LatencyHistogram.merged(LatencyHistogram.decode(i.latency_hdr) for i in recent)
    offered = [i.offered_rps for i in recent if i.offered_rps is not None]
    p50, p95, p99 = (histogram.value_at_percentile_s(q) if histogram.count else None for q in (50.0, 95.0, 99.0))
    return LatestFigures(
        stage=recent[-1].stage,
        achieved_rps=achieved_rps(recent, fallback_s=1e-3),
        offered_rps=sum(offered) if offered else None,
        p50_s=p50,
        p95_s=p95,
        p99_s=p99,
    )


def _point(elapsed_s: float, bucket_s: float, members: list[ClientInterval]) -> IntervalPoint:
    by_process: dict[int, list[ClientInterval]] = defaultdict(list)
    for interval in members:
        by_process[interval.process].append(interval)

    users = 0
    offered: dict[int, list[tuple[float, float]]] = defaultdict(list)
    cpu: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for process, own in by_process.items():
        own.sort(key=lambda i: i.t_start_s)
        users += own[-1].users
        windows: dict[tuple[float, float], ClientInterval] = {}
        for i in own:
            length_s = max(0.0, i.t_end_s - i.t_start_s)
            if i.offered_rps is not None:
                offered[process].append((length_s, i.offered_rps))
            windows.setdefault((i.t_start_s, i.t_end_s), i)
        # The process's CPU is measured per window, and repeated in each stage's record of it.
        for i in windows.values():
            if i.loadgen_cpu_cores is not None:
                cpu[process].append((max(0.0, i.t_end_s - i.t_start_s), i.loadgen_cpu_cores))

    stage_time: dict[str, float] = defaultdict(float)
    errors: dict[str, int] = defaultdict(int)
    for interval in members:
        stage_time[interval.stage] += max(0.0, interval.t_end_s - interval.t_start_s)
        for kind, count in interval.errors.items():
            errors[kind] += count
    # Ties (including all-zero lengths) go to the stage that appears first in time order.
    stage = max(sorted(members, key=lambda i: i.t_start_s), key=lambda i: stage_time[i.stage]).stage

    histogram = LatencyHistogram.merged(LatencyHistogram.decode(i.latency_hdr) for i in members)
    return IntervalPoint(
        elapsed_s=elapsed_s,
        duration_s=bucket_s,
        stage=stage,
        users=users,
        offered_rps=_sum_of_process_means(offered),
        achieved_rps=achieved_rps(members, bucket_s),
        error_rps=_rate_per_s(members, lambda i: i.failures, bucket_s),
        requests=sum(i.requests for i in members),
        failures=sum(i.failures for i in members),
        dropped=sum(i.dropped for i in members),
        p50_s=histogram.value_at_percentile_s(50),
        p95_s=histogram.value_at_percentile_s(95),
        p99_s=histogram.value_at_percentile_s(99),
        loadgen_cpu_cores=_sum_of_process_means(cpu),
        errors=dict(sorted(errors.items())),
    )


def interval_series(
    intervals: Sequence[ClientInterval], run_start_s: float, bucket_s: float = 1.0
) -> list[IntervalPoint]:
    """Merge every process's intervals into `bucket_s` buckets since `run_start_s`, in time order.

    Buckets that no interval falls into are left out rather than reported as zero traffic.
    """
    if not bucket_s > 0:
        raise ValueError(f"bucket_s={bucket_s} must be > 0")
    buckets: dict[int, list[ClientInterval]] = defaultdict(list)
    for interval in intervals:
        buckets[_bucket_of(interval, run_start_s, bucket_s)].append(interval)
    return [_point(index * bucket_s, bucket_s, buckets[index]) for index in sorted(buckets)]
