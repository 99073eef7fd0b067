"""Per-stage results: throughput, errors, latency percentiles with CIs, replicas, and validity checks.

A stage is *invalid* (its objectives become INCONCLUSIVE) when its measurement cannot be trusted.
Rule (a) concerns one percentile only and goes to `StageResult.sample_shortfalls` (only objectives
on that percentile become INCONCLUSIVE); the others each add a reason to `invalid_reasons`:

(a) Too few samples: for every judged percentile q, the successful requests n must satisfy
    n >= ceil(min_tail_samples / (1 - q/100)) (`min_samples_for_percentile`).
(b) The load generator, not the service, was the bottleneck:
    (b1) any interval's `loadgen_cpu_cores` (one process's CPU), less what one clock tick of CPU time makes
         of it (`loadgen_cores_at_least`), >= `loadgen_cpu_saturation`;
    (b2) fewer load-generator processes reported results for the stage than were started, so the
         stage's totals are missing a process's share;
    (b3) open model only: the arrivals actually sent (scheduled - dropped) fell short of
         arrival_rate_rps x duration by more than `achieved_rate_shortfall` *and* by more than
         Poisson noise (below the 0.1% quantile of Poisson(expected)), and the shortfall is the
         generator's doing: either it did not even schedule its arrivals (scheduled itself short by
         the same test), or it dropped arrivals while lagging, i.e. some arrival was sent later than
         intended by more than 10% of the stage's mean latency. Dropped arrivals with an on-time
         generator mean the service held `max_in_flight` requests: that is saturation of the service,
         a valid (bad) measurement, not an invalid one.
(b4) open model only, per percentile (in `sample_shortfalls`, like rule (a)): the generator stalled
     (an interval's send lag above both SEND_LAG_FLOOR_S and the stage's median latency), and the
     arrivals those stalls could have delayed (lag x rate per stalled interval, an upper bound)
     exceed half the samples above the percentile, so the stall could have moved it. A 80 ms stall
     at 400 rps touches at most 32 arrivals: enough to move a p99 of 3200 samples, not a p95.
(b5) A load-generator process's records of the stage begin after its start or end before its end by more
     than COVERAGE_SLACK_INTERVALS of its recording intervals: that process's load did not run for the whole
     stage (a worker that started late, a test stopped early), so the stage's totals and rates are short.
(b6) Closed model only: in the second half of the stage (after any ramp), the load-generator processes
     together ran fewer users than the stage's `users` (each process's median over those intervals; the
     records carry each process's running users): its closed-model load was lighter than planned, so its
     throughput and latencies belong to fewer users than its name says.
(c) A replica crashed during the stage (a "replica_crashed" RunEvent inside the stage's window), unless
    the scenario's own fault killed it.
(d) No requests completed in the stage.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from harness.analysis.distributions import poisson_quantile
from harness.analysis.failures import merge_samples
from harness.analysis.latency import (
    LatencyHistogram,
    estimate_percentile_dependent,
    min_samples_for_percentile,
    sections_for,
)
from harness.config import ValidityConfig
from harness.model import (
    STREAM_FIGURES,
    ClientInterval,
    PercentileEstimate,
    ReplicaCount,
    ReplicaCrashed,
    RunEvent,
    StageResult,
    StageWindow,
    percentile_key,
    request_view,
    stream_shortfall_key,
)

BASE_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
# A generator whose sends run late by more than this fraction of the service's mean latency is
# adding a visible part of the latency it reports.
SEND_LAG_LATENCY_FRACTION = 0.10
# (b4) A send lag above both this and the stage's median latency is a generator stall: the lag is
# inside the latencies measured from the intended send time.
SEND_LAG_FLOOR_S = 0.025
# (b5) Records are written once per interval, and a stage's last interval may have none of its own (no
# answer in it), so a process's records may stop up to about one interval before the stage's end.
COVERAGE_SLACK_INTERVALS = 1.5
# Arrival counts below this quantile of Poisson(expected) are not explained by random arrivals.
POISSON_NOISE_QUANTILE = 0.001


def _arrivals_short(actual: int, expected: float, shortfall: float) -> bool:
    return actual < (1.0 - shortfall) * expected and actual < poisson_quantile(POISSON_NOISE_QUANTILE, expected)


# Linux counts a process's CPU time in clock ticks of 1/USER_HZ = 10 ms (/proc/<pid>/stat, what psutil reads), so
# an interval's CPU is known to within one tick: a 6 ms interval charged one tick read 1.69 cores, and one CI run's
# stage was INCONCLUSIVE for it. A 1 s interval reads at most 0.01 cores high.
CPU_TIME_TICK_S = 0.01


def loadgen_cores_at_least(interval: ClientInterval) -> float | None:
    """The cores the interval's load-generator process surely used: what it read, less one clock tick of CPU time
    spread over the interval; None when not measured."""
    wall_s = interval.t_end_s - interval.t_start_s
    if interval.loadgen_cpu_cores is None or wall_s <= 0:
        return None
    return round(max(0.0, interval.loadgen_cpu_cores - CPU_TIME_TICK_S / wall_s), 4)


def _loadgen_reasons(
    window: StageWindow,
    own: Sequence[ClientInterval],
    histogram: LatencyHistogram,
    validity: ValidityConfig,
    loadgen_processes: int,
) -> list[str]:
    reasons: list[str] = []
    saturated = [
        (i, cores)
        for i in own
        if (cores := loadgen_cores_at_least(i)) is not None and cores >= validity.loadgen_cpu_saturation
    ]
    if saturated:
        worst, _ = max(saturated, key=lambda pair: pair[1])
        reasons.append(
            f"load generator CPU-bound: process {worst.process} used {worst.loadgen_cpu_cores:.2f} cores "
            f"(limit {validity.loadgen_cpu_saturation:g} per process) in {len(saturated)} interval(s)"
        )
    reporting = {i.process for i in own}
    if own and len(reporting) < loadgen_processes:
        reasons.append(
            f"only {len(reporting)} of {loadgen_processes} load-generator processes reported results for this stage"
        )
    reasons.extend(_coverage_reasons(window, own))
    reasons.extend(_users_reasons(window, own))
    duration_s = window.end_s - window.start_s
    if window.arrival_rate_rps is None or duration_s <= 0:
        return reasons
    # Open-model latency is measured from the intended send time, so generator lag is inside it.
    lag_s = max((i.send_lag_max_s for i in own), default=0.0)
    expected = window.arrival_rate_rps * duration_s
    scheduled = sum(i.scheduled for i in own)
    dropped = sum(i.dropped for i in own)
    sent = scheduled - dropped
    if not _arrivals_short(sent, expected, validity.achieved_rate_shortfall):
        return reasons
    if _arrivals_short(scheduled, expected, validity.achieved_rate_shortfall):
        reasons.append(
            f"load generator fell behind: scheduled {scheduled} of {expected:.0f} arrivals "
            f"({window.arrival_rate_rps:g} rps x {duration_s:.1f} s)"
        )
        return reasons
    mean_s = histogram.mean_s()
    if mean_s is not None and lag_s > SEND_LAG_LATENCY_FRACTION * mean_s:
        reasons.append(
            f"load generator fell behind: sent {sent} of {expected:.0f} arrivals ({dropped} dropped) "
            f"while its sends ran up to {lag_s * 1000:.1f} ms late "
            f"(more than {SEND_LAG_LATENCY_FRACTION:.0%} of the {mean_s * 1000:.1f} ms mean latency)"
        )
    return reasons


def _coverage_reasons(window: StageWindow, own: Sequence[ClientInterval]) -> list[str]:
    """(b5): one reason per process whose records leave the start or the end of the stage uncovered."""
    by_process: dict[int, list[ClientInterval]] = defaultdict(list)
    for interval in own:
        by_process[interval.process].append(interval)
    reasons = []
    for process, intervals in sorted(by_process.items()):
        slack_s = COVERAGE_SLACK_INTERVALS * max(i.t_end_s - i.t_start_s for i in intervals)
        first_s, last_s = min(i.t_start_s for i in intervals), max(i.t_end_s for i in intervals)
        if first_s - window.start_s > slack_s or window.end_s - last_s > slack_s:
            reasons.append(
                f"load generator process {process} ran from {first_s - window.start_s:.1f} s to "
                f"{last_s - window.start_s:.1f} s of the stage's {window.end_s - window.start_s:.1f} s"
            )
    return reasons


def _users_reasons(window: StageWindow, own: Sequence[ClientInterval]) -> list[str]:
    """(b6): the users the processes ran in the second half of a closed-model stage, against the plan."""
    if not window.users or window.arrival_rate_rps is not None:
        return []
    middle_s = (window.start_s + window.end_s) / 2.0
    by_process: dict[int, list[int]] = defaultdict(list)
    for interval in own:
        if interval.t_start_s >= middle_s and interval.t_end_s <= window.end_s:
            by_process[interval.process].append(interval.users)
    if not by_process:
        return []
    ran = sum(statistics.median_low(users) for users in by_process.values())
    if ran >= window.users:
        return []
    return [f"load generator ran {ran} of the stage's {window.users} users in its second half"]


def _stall_shortfalls(
    window: StageWindow, own: Sequence[ClientInterval], histogram: LatencyHistogram, judged: Sequence[float]
) -> dict[float, str]:
    """Rule (b4): judged percentiles that generator stalls could have moved, with the reason."""
    if window.arrival_rate_rps is None or not histogram.count:
        return {}
    p50_s = histogram.value_at_percentile_s(50) or 0.0
    stalled = [i for i in own if i.send_lag_max_s > max(SEND_LAG_FLOOR_S, p50_s)]
    if not stalled:
        return {}
    touched = sum(min(float(i.scheduled), i.send_lag_max_s * (i.offered_rps or 0.0)) for i in stalled)
    worst_s = max(i.send_lag_max_s for i in stalled)
    found: dict[float, str] = {}
    for q in judged:
        tail = histogram.count * (1 - q / 100)
        if touched > tail / 2:
            found[q] = (
                f"load generator stalled (sends up to {worst_s * 1000:.1f} ms late, above the {p50_s * 1000:.1f} ms "
                f"median): up to {touched:.0f} arrivals delayed, against {tail:.0f} samples above "
                f"{percentile_key(q)}, so the stall could have moved it"
            )
    return found


def contiguous_sections(decoded: Sequence[tuple[float, LatencyHistogram]], k: int) -> list[LatencyHistogram]:
    """The stage's intervals (all processes) in time order, merged into k contiguous sections of about
    equal sample counts; empty for k < 2."""
    if k < 2:
        return []
    ordered = sorted(decoded, key=lambda item: item[0])
    total = sum(h.count for _, h in ordered)
    sections: list[LatencyHistogram] = [LatencyHistogram() for _ in range(k)]
    seen = 0
    for _, histogram in ordered:
        # Place each interval by the middle of its samples in the stage's cumulative count.
        index = min(k - 1, int((seen + histogram.count / 2) * k / max(total, 1)))
        sections[index].merge(histogram)
        seen += histogram.count
    return [section for section in sections if section.count]


def _stream_figure(
    own: Sequence[ClientInterval],
    figure: str,
    computed: Sequence[float],
    judged: Sequence[float],
    validity: ValidityConfig,
) -> tuple[dict[str, PercentileEstimate], dict[str, str]]:
    """One streamed figure's percentiles over the stage (empty when nothing streamed), and its percentiles with
    too few samples, by shortfall key (rule (a), as for latency)."""
    decoded = [
        (i.t_start_s, LatencyHistogram.decode(getattr(i, f"{figure}_hdr"))) for i in own if getattr(i, f"{figure}_hdr")
    ]
    histogram = LatencyHistogram.merged(h for _, h in decoded)
    if not histogram.count:
        return {}, {}
    estimates = {
        percentile_key(q): estimate_percentile_dependent(
            histogram, contiguous_sections(decoded, sections_for(q, histogram.count)), q, validity.confidence
        )
        for q in computed
    }
    shortfalls = {}
    for q in judged:
        needed = min_samples_for_percentile(q, validity.min_tail_samples)
        if histogram.count < needed:
            shortfalls[stream_shortfall_key(figure, q)] = (
                f"too few samples for {figure} {percentile_key(q)}: {histogram.count}, need at least {needed} "
                f"(min_tail_samples={validity.min_tail_samples})"
            )
    return estimates, shortfalls


def _outcomes(
    window: StageWindow,
    own: Sequence[ClientInterval],
    validity: ValidityConfig,
    computed: Sequence[float],
    judged: Sequence[float],
    stream_judged: Mapping[str, Sequence[float]],
) -> dict[str, Any]:
    """The StageResult fields of the requests recorded in `own` (all of a stage's, or one named request's):
    counts, errors, latency and streamed figures, their sample shortfalls (rules (a) and (b4))."""
    duration_s = window.end_s - window.start_s
    requests = sum(i.requests for i in own)
    failures = sum(i.failures for i in own)
    checked = sum(i.checked for i in own)
    mismatches = sum(i.mismatches for i in own)
    bad_inputs = sum(i.bad_inputs for i in own)
    bad_input_5xx = sum(i.bad_input_5xx for i in own)
    errors: dict[str, int] = defaultdict(int)
    good_requests: dict[str, int] = defaultdict(int)
    for interval in own:
        for kind, count in interval.errors.items():
            errors[kind] += count
        for key, count in interval.good_requests.items():
            good_requests[key] += count
    decoded = [(i.t_start_s, LatencyHistogram.decode(i.latency_hdr)) for i in own if i.latency_hdr]
    histogram = LatencyHistogram.merged(h for _, h in decoded)
    latency: dict[str, PercentileEstimate] = {
        percentile_key(q): estimate_percentile_dependent(
            histogram, contiguous_sections(decoded, sections_for(q, histogram.count)), q, validity.confidence
        )
        for q in computed
    }
    shortfalls: dict[str, str] = {}
    for q in judged:
        needed = min_samples_for_percentile(q, validity.min_tail_samples)
        if histogram.count < needed:
            shortfalls[percentile_key(q)] = (
                f"too few samples for {percentile_key(q)}: {histogram.count} successful requests, "
                f"need at least {needed} (min_tail_samples={validity.min_tail_samples})"
            )
    for q, reason in _stall_shortfalls(window, own, histogram, judged).items():
        shortfalls.setdefault(percentile_key(q), reason)
    streamed: dict[str, dict[str, PercentileEstimate]] = {}
    for figure in STREAM_FIGURES:
        asked = stream_judged.get(figure, ())
        streamed[figure], stream_shortfalls = _stream_figure(
            own, figure, sorted(set(computed) | set(asked)), asked, validity
        )
        shortfalls.update(stream_shortfalls)
    return {
        "achieved_rps": requests / duration_s if duration_s > 0 else 0.0,
        "requests": requests,
        "failures": failures,
        "error_rate": failures / requests if requests else None,
        "errors": dict(sorted(errors.items())),
        "error_samples": merge_samples([i.error_samples for i in own]),
        "latency": latency,
        "sample_shortfalls": shortfalls,
        "latency_mean_s": histogram.mean_s() if histogram.count else None,
        "checked": checked,
        "mismatches": mismatches,
        "mismatch_rate": mismatches / checked if checked else None,
        "bad_inputs": bad_inputs,
        "bad_input_5xx": bad_input_5xx,
        "bad_input_5xx_rate": bad_input_5xx / bad_inputs if bad_inputs else None,
        "bad_input_accepted": sum(i.bad_input_accepted for i in own),
        "streamed": sum(i.streamed for i in own),
        "ttft": streamed["ttft"],
        "itl": streamed["itl"],
        "tpot": streamed["tpot"],
        "input_tokens": sum(i.input_tokens for i in own),
        "output_tokens": sum(i.output_tokens for i in own),
        "output_tokens_squares": sum(i.output_tokens_squares for i in own),
        "good_requests": dict(sorted(good_requests.items())),
    }


def _summarize(
    window: StageWindow,
    own: Sequence[ClientInterval],
    counts: Sequence[ReplicaCount],
    events: Sequence[RunEvent],
    validity: ValidityConfig,
    computed: Sequence[float],
    judged: Sequence[float],
    loadgen_processes: int,
    stream_judged: Mapping[str, Sequence[float]],
) -> StageResult:
    duration_s = window.end_s - window.start_s
    outcomes = _outcomes(window, own, validity, computed, judged, stream_judged)
    decoded = [LatencyHistogram.decode(i.latency_hdr) for i in own if i.latency_hdr]
    histogram = LatencyHistogram.merged(decoded)
    ready = [c.ready for c in counts if window.start_s <= c.t_s <= window.end_s]
    cpu = [cores for i in own if (cores := loadgen_cores_at_least(i)) is not None]

    reasons: list[str] = []
    if duration_s <= 0:
        reasons.append(f"stage window has no duration ({window.start_s:.3f} .. {window.end_s:.3f})")
    if outcomes["requests"] == 0:
        reasons.append("no requests completed in this stage")
    reasons.extend(_loadgen_reasons(window, own, histogram, validity, loadgen_processes))
    crashed: list[str] = []
    for event in events:
        crash = event.detail
        # A crash the scenario's fault caused is the experiment (stages[].faults), not a doubt on the stage.
        if isinstance(crash, ReplicaCrashed) and not crash.injected and window.start_s <= event.t_s <= window.end_s:
            crashed.append(crash.replica)
            reasons.append(f"replica {crash.replica} crashed {event.t_s - window.start_s:.1f} s into the stage")

    stage = StageResult(
        name=window.name,
        judged=window.judged,
        start_s=window.start_s,
        end_s=window.end_s,
        duration_s=duration_s,
        offered_users=window.users,
        offered_rps=window.arrival_rate_rps,
        dropped=sum(i.dropped for i in own),
        replicas_min=min(ready) if ready else None,
        replicas_max=max(ready) if ready else None,
        loadgen_cpu_max_cores=max(cpu) if cpu else None,
        invalid_reasons=reasons,
        crashed_replicas=crashed,
        **outcomes,
    )
    names = sorted({name for interval in own for name in interval.by_request})
    by_request = {
        name: _request_result(
            stage,
            window,
            [request_view(i, name) for i in own if name in i.by_request],
            validity,
            computed,
            judged,
            stream_judged,
        )
        for name in names
    }
    return replace(stage, by_request=by_request)


def _request_result(
    stage: StageResult,
    window: StageWindow,
    own: Sequence[ClientInterval],
    validity: ValidityConfig,
    computed: Sequence[float],
    judged: Sequence[float],
    stream_judged: Mapping[str, Sequence[float]],
) -> StageResult:
    """One named request's figures in a stage: its own outcomes; the stage's load, replicas and validity (what made
    the stage untrustworthy makes each of its requests so). It offered no rate of its own and dropped nothing: an
    arrival is dropped before a request is chosen for it."""
    outcomes = _outcomes(window, own, validity, computed, judged, stream_judged)
    return replace(stage, offered_rps=None, offered_users=None, dropped=0, by_request={}, **outcomes)


def summarize_stages(
    windows: Sequence[StageWindow],
    intervals: Sequence[ClientInterval],
    counts: Sequence[ReplicaCount],
    events: Sequence[RunEvent],
    validity: ValidityConfig,
    percentiles: Sequence[float] = BASE_PERCENTILES,
    loadgen_processes: int = 1,
    judged_percentiles: Sequence[float] | None = None,
    stream_percentiles: Mapping[str, Sequence[float]] | None = None,
) -> list[StageResult]:
    """One StageResult per stage window, in the windows' order (see the module docstring for validity).

    Latency is computed for p50/p95/p99 plus `percentiles`; the sample-size rule (a) applies to
    `judged_percentiles` (default: every computed percentile). Pass the percentiles your objectives
    name, so that a short stage is not made invalid by a p99 nobody asked about. Streamed requests' figures
    (STREAM_FIGURES) get p50/p95/p99 too, plus the percentiles `stream_percentiles` names per figure, to which
    alone the sample-size rule applies (their objectives: ttft_p99_ms ...).
    """
    computed = sorted(set(BASE_PERCENTILES) | set(percentiles) | set(judged_percentiles or ()))
    judged = computed if judged_percentiles is None else sorted(set(judged_percentiles))
    by_stage: dict[str, list[ClientInterval]] = defaultdict(list)
    for interval in intervals:
        by_stage[interval.stage].append(interval)
    return [
        _summarize(
            window,
            by_stage.get(window.name, []),
            counts,
            events,
            validity,
            computed,
            judged,
            loadgen_processes,
            stream_percentiles or {},
        )
        for window in windows
    ]
