"""Bottleneck diagnosis: for each stage that failed, warned or sat at the latency knee, the likely causes
with their evidence from the run's recorded time series.

A cause is reported only when its series shows it; a series that was not recorded is named as missing,
never read as zero. Causes, in the order they are reported (the ones that explain the most first):

    failing_requests  most of the stage's requests failed: the errors by kind, with what the service answered (a
                      stage whose requests mostly fail is that, whatever else its series show)
    loadgen_bound     the load generator, not the service, limited the stage: its CPU at saturation, or
                      its sends running late (the latency then includes the generator's own delay)
    cpu_bound         a replica's CPU at its limit (resources.limits.cpu, or the CPUs it is pinned to;
                      without either, about one full core: one Python process's ceiling)
    load_shedding     the service refused work: HTTP 503/429 answers
    cold_start        a replica started or became ready during the stage, or ready replicas stayed
                      below desired for part of it
    periodic_stalls   the per-second p99 spikes to several times its median at a regular period
    batching_wait     adaptive batching formed batches of about one request while the server's own
                      handling took most of the latency: requests wait for batches that do not fill
    network           most of the client's latency is spent outside the server's own handling (its
                      /metrics duration) while the service is neither shedding load nor CPU-bound and
                      the generator is on time: the network, a tunnel or port-forward between them
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from harness.analysis.failures import describe_errors
from harness.analysis.timeline import interval_series
from harness.model import (
    Bottleneck,
    ClientInterval,
    ObjectiveResult,
    ReplicaCount,
    ReplicaReady,
    ReplicaSample,
    ReplicaStarted,
    RunEvent,
    Saturation,
    ServerSample,
    StageResult,
    Status,
)

# A stage where at least this share of the requests failed is diagnosed as failing, first.
MOST_FAILED_SHARE = 0.5
# A replica whose median CPU is at least this fraction of its limit is CPU-bound.
CPU_BOUND_FRACTION = 0.85
# Refusals (503/429) above this share of a stage's requests are load shedding.
SHEDDING_SHARE = 0.005
SHEDDING_ERRORS = ("503", "429")
# Batches smaller than this on average do not fill: the batching window only adds wait.
SMALL_BATCH = 2.0
# The server's own handling must take at least this share of the client's mean latency to blame batching,
# and at most (1 - this) of it to blame what lies between generator and server.
SERVER_SHARE = 0.5
NETWORK_FLOOR_S = 0.005
# A per-second p99 above this multiple of the stage's median per-second p99 is a spike.
SPIKE_FACTOR = 3.0
MIN_SPIKES = 3
# Gaps between spikes within this fraction of their median make them periodic.
PERIOD_TOLERANCE = 0.3
SEND_LAG_FLOOR_S = 0.025


@dataclass(frozen=True)
class RunSeries:
    """What the diagnosis reads: the run's recorded series (any may be empty when not recorded)."""

    intervals: Sequence[ClientInterval]
    server_samples: Sequence[ServerSample]
    replica_samples: Sequence[ReplicaSample]
    replica_counts: Sequence[ReplicaCount]
    events: Sequence[RunEvent]


def stages_to_examine(
    stages: Sequence[StageResult], results: Sequence[ObjectiveResult], saturation: Saturation | None
) -> dict[str, str]:
    """Stage name -> why it is examined ("FAIL", "WARN", "knee"), in the stages' order."""
    worst: dict[str, str] = {}
    for result in results:
        if result.stage is None:
            continue
        if result.status is Status.FAIL:
            worst[result.stage] = "FAIL"
        elif result.status is Status.WARN and worst.get(result.stage) != "FAIL":
            worst[result.stage] = "WARN"
    knee_rps = saturation.knee_rps if saturation is not None else None
    chosen: dict[str, str] = {}
    for stage in stages:
        if stage.name in worst:
            chosen[stage.name] = worst[stage.name]
        elif knee_rps is not None and stage.judged and abs(stage.achieved_rps - knee_rps) <= 1e-9 * max(1.0, knee_rps):
            chosen[stage.name] = "knee"
    return chosen


def _failing_requests(stage: StageResult) -> str | None:
    if not stage.requests or stage.failures / stage.requests < MOST_FAILED_SHARE:
        return None
    return f"{describe_errors(stage.errors, stage.error_samples, stage.requests)} ({stage.error_rate:.0%})"


def _loadgen_bound(stage: StageResult, own: Sequence[ClientInterval], loadgen_cpu_saturation: float) -> str | None:
    if stage.loadgen_cpu_max_cores is not None and stage.loadgen_cpu_max_cores >= loadgen_cpu_saturation:
        return (
            f"a load-generator process used {stage.loadgen_cpu_max_cores:.2f} cores "
            f"(saturation at {loadgen_cpu_saturation:g})"
        )
    p50 = stage.latency.get("p50")
    floor_s = max(SEND_LAG_FLOOR_S, p50.value_s if p50 is not None and p50.value_s is not None else 0.0)
    lag_s = max((i.send_lag_max_s for i in own), default=0.0)
    if lag_s > floor_s:
        return f"sends ran up to {lag_s * 1000:.0f} ms late (above the {floor_s * 1000:.0f} ms median latency)"
    return None


def _cpu_limit_cores(samples: Sequence[ReplicaSample], limit_cores: float | None) -> tuple[float, str]:
    if limit_cores is not None:
        return limit_cores, f"its {limit_cores:g}-core limit"
    pinned = next((s.cpus for s in samples if s.cpus), None)
    if pinned:
        return float(len(pinned)), f"the {len(pinned)} CPU(s) it is pinned to"
    return 1.0, "one full core (a single Python process's ceiling; no CPU limit set)"


def _cpu_bound(samples: Sequence[ReplicaSample], limit_cores: float | None) -> str | None:
    by_replica: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        if sample.ready and sample.cpu_cores is not None:
            by_replica[sample.replica].append(sample.cpu_cores)
    if not by_replica:
        return None
    replica, values = max(by_replica.items(), key=lambda item: statistics.median(item[1]))
    median = statistics.median(values)
    limit, what = _cpu_limit_cores(samples, limit_cores)
    if median < CPU_BOUND_FRACTION * limit:
        return None
    return f"replica {replica} used a median {median:.2f} cores of {what} ({len(values)} samples)"


def _load_shedding(stage: StageResult) -> str | None:
    refused = {kind: count for kind, count in stage.errors.items() if any(code in kind for code in SHEDDING_ERRORS)}
    total = sum(refused.values())
    if not stage.requests or total / stage.requests < SHEDDING_SHARE:
        return None
    kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(refused.items()))
    return f"{total} of {stage.requests} requests refused ({total / stage.requests:.1%}: {kinds})"


def _cold_start(stage: StageResult, counts: Sequence[ReplicaCount], events: Sequence[RunEvent]) -> str | None:
    found: list[str] = []
    for event in events:
        detail = event.detail
        if isinstance(detail, ReplicaStarted | ReplicaReady) and stage.start_s <= event.t_s <= stage.end_s:
            verb = "started" if isinstance(detail, ReplicaStarted) else "became ready"
            found.append(f"{detail.replica} {verb} {event.t_s - stage.start_s:.1f} s into the stage")
    short_s = 0.0
    ordered = sorted(counts, key=lambda c: c.t_s)
    for index, current in enumerate(ordered):
        end_s = stage.end_s if index + 1 == len(ordered) else min(ordered[index + 1].t_s, stage.end_s)
        start_s = max(current.t_s, stage.start_s)
        if end_s > start_s and current.ready < current.desired:
            short_s += end_s - start_s
    if short_s > 0:
        found.append(f"ready replicas were below desired for {short_s:.0f} s of the stage's {stage.duration_s:.0f} s")
    return "; ".join(found) or None


def _periodic_stalls(stage: StageResult, own: Sequence[ClientInterval]) -> str | None:
    points = [p for p in interval_series(own, stage.start_s, bucket_s=1.0) if p.p99_s is not None]
    if len(points) < 2 * MIN_SPIKES:
        return None
    p99s = [p.p99_s for p in points if p.p99_s is not None]
    median_s = statistics.median(p99s)
    threshold_s = SPIKE_FACTOR * median_s
    spikes: list[float] = []
    previous_spiked = False
    for point in points:
        spiked = point.p99_s is not None and point.p99_s > threshold_s
        if spiked and not previous_spiked:
            spikes.append(point.elapsed_s)
        previous_spiked = spiked
    if len(spikes) < MIN_SPIKES:
        return None
    gaps = [b - a for a, b in itertools.pairwise(spikes)]
    period_s = statistics.median(gaps)
    if period_s < 2.0 or any(abs(gap - period_s) > PERIOD_TOLERANCE * period_s for gap in gaps):
        return None
    return (
        f"the per-second p99 spiked above {threshold_s * 1000:.0f} ms ({SPIKE_FACTOR:g}x its "
        f"{median_s * 1000:.0f} ms median) {len(spikes)} times, every {period_s:.1f} s "
        f"(gaps {min(gaps):.1f}-{max(gaps):.1f} s), up to {max(p99s) * 1000:.0f} ms"
    )


def _server_means(samples: Sequence[ServerSample], start_s: float, end_s: float) -> tuple[float | None, float | None]:
    """(server-side mean duration s, mean batch size) over the window, from each replica's counter deltas."""
    by_replica: dict[str, list[ServerSample]] = defaultdict(list)
    for sample in samples:
        if sample.ok and start_s <= sample.t_s <= end_s:
            by_replica[sample.replica].append(sample)
    duration_s = count = batch_sum = batch_count = 0.0
    for series in by_replica.values():
        first, last = min(series, key=lambda s: s.t_s), max(series, key=lambda s: s.t_s)

        def delta(name: str, first: ServerSample = first, last: ServerSample = last) -> float:
            a, b = getattr(first, name), getattr(last, name)
            # A counter that went down was reset by a restart: its delta is unknown, not negative.
            return 0.0 if a is None or b is None or b < a else float(b - a)

        duration_s += delta("duration_sum_s")
        count += delta("duration_count")
        batch_sum += delta("batch_size_sum")
        batch_count += delta("batch_size_count")
    return (duration_s / count if count else None), (batch_sum / batch_count if batch_count else None)


def _server_side(stage: StageResult, samples: Sequence[ServerSample]) -> tuple[str | None, str | None]:
    """(batching_wait evidence, network evidence) from the server's own durations against the client's."""
    client_s = stage.latency_mean_s
    server_s, batch = _server_means(samples, stage.start_s, stage.end_s)
    if client_s is None or server_s is None:
        return None, None
    batching = None
    if batch is not None and batch < SMALL_BATCH and server_s >= SERVER_SHARE * client_s:
        batching = (
            f"adaptive batches held {batch:.2f} requests on average while the server's own handling took "
            f"{server_s * 1000:.1f} ms of the {client_s * 1000:.1f} ms mean latency"
        )
    outside_s = client_s - server_s
    network = None
    if outside_s >= max(NETWORK_FLOOR_S, (1 - SERVER_SHARE) * client_s):
        network = (
            f"{outside_s * 1000:.1f} ms of the {client_s * 1000:.1f} ms mean latency was spent outside the "
            f"server's own handling ({server_s * 1000:.1f} ms by its /metrics)"
        )
    return batching, network


def diagnose(
    stages: Sequence[StageResult],
    results: Sequence[ObjectiveResult],
    saturation: Saturation | None,
    series: RunSeries,
    *,
    cpu_limit_cores: float | None = None,
    loadgen_cpu_saturation: float = 0.9,
) -> list[Bottleneck]:
    """The likely causes, with evidence, for every stage that failed, warned or sat at the knee (see the
    module docstring); a stage with no cause in its series gets one "unexplained" entry naming what was
    checked and which series were missing."""
    found: list[Bottleneck] = []
    examined = stages_to_examine(stages, results, saturation)
    for stage in stages:
        why = examined.get(stage.name)
        if why is None:
            continue
        own = [i for i in series.intervals if i.stage == stage.name]
        inside = [s for s in series.replica_samples if stage.start_s <= s.t_s <= stage.end_s]
        batching, network = _server_side(stage, series.server_samples)
        loadgen = _loadgen_bound(stage, own, loadgen_cpu_saturation)
        cpu = _cpu_bound(inside, cpu_limit_cores)
        shedding = _load_shedding(stage)
        causes = {
            "failing_requests": _failing_requests(stage),
            "loadgen_bound": loadgen,
            "cpu_bound": cpu,
            "load_shedding": shedding,
            "cold_start": _cold_start(stage, series.replica_counts, series.events),
            "periodic_stalls": _periodic_stalls(stage, own),
            "batching_wait": batching,
            # A late generator also delays requests outside the server, and a saturated service queues them
            # in front of its timer: neither is the network.
            "network": None if loadgen or shedding or cpu else network,
        }
        matched = [Bottleneck(stage.name, why, cause, evidence) for cause, evidence in causes.items() if evidence]
        if not matched:
            missing = [
                name
                for name, records in (
                    ("replica CPU samples", inside),
                    ("server /metrics samples", series.server_samples),
                    ("client intervals", own),
                )
                if not records
            ]
            evidence = "no cause found in the recorded series" + (
                f" (not recorded: {', '.join(missing)})" if missing else ""
            )
            matched = [Bottleneck(stage.name, why, "unexplained", evidence)]
        found.extend(matched)
    return found
