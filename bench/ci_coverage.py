"""Coverage and width of the harness's percentile confidence intervals (`make bench-ci`).

Simulates stages like those `bench/accuracy.py` runs against `bench/synthetic_server.py` (jitter mode:
uniform latency, open model; queue mode: M/D/1 sojourn times at the bench's utilisations), as the
harness sees them: Poisson arrivals, one latency histogram per second, merged into contiguous
sections. Each trial is a window of a long stationary path; the truth is that path's quantile. For
each percentile it prints, side by side from the same trials, how often the harness's interval
(log-scale sectioning and the exponential tail model united with the order-statistic interval)
covers the truth, against sectioning without the tail model (the interval before issue 12), the
independent-sample (order-statistic) interval alone and the previous interval (symmetric sectioning
in up to 10 sections, floored at 0), with median widths, and how often a lower bound fell below the
smallest observed latency. Two diagnostics explain a shortfall: how often a window's largest latency
was below the true percentile, and how correlated adjacent sections' estimates are.

A second table measures an alternative that was evaluated and not adopted (issue 12): drop the upper
bound (unbounded: the data cannot bound the percentile) when the stage holds fewer than
MIN_TAIL_CLUSTERS independent tail events above the point estimate, counted by declustering the
per-second histograms whose largest latency exceeds it, in two ways: runs of adjacent such seconds
(runs declustering, Coles 2001 ch. 5.3) and the Poisson count of clusters implied by the share of
such seconds (the blocks estimator of the extremal index, Smith & Weissman 1994, with one-second
blocks). It prints their coverage (an unbounded interval covers iff its lower bound does), the share of
trials left unbounded and the median width over the bounded ones. Writes
reports/bench-ci-coverage.json; exits 1 when the harness's coverage is under the goal.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import t

from bench.accuracy import (
    JITTER_BASE_MS,
    JITTER_MS,
    LINDLEY_ARRIVALS,
    OPEN_RATE_RPS,
    OPEN_S,
    QUANTILES,
    QUEUE_RHOS,
    QUEUE_STAGE_S,
    RESULTS_FILE,
    SERVICE_MS,
    TRUTH_SEED,
    md1_path_ms,
)
from harness.analysis.latency import (
    LatencyHistogram,
    estimate_percentile,
    estimate_percentile_dependent,
    sectioning_interval,
    sections_for,
)
from harness.analysis.stages import contiguous_sections

RESULTS = RESULTS_FILE.with_name("bench-ci-coverage.json")
CONFIDENCE = 0.95
COVERAGE_GOAL = 0.90
TRIALS = 200
# Independent tail events a stage needs before its data can bound a percentile from above: with m
# independent clusters above the true percentile expected, the window holds none with probability
# exp(-m), and an upper bound drawn from observed latencies then misses; exp(-m) <= (1 - confidence) / 2
# needs m >= ln(2 / 0.05) = 3.7 at 95% (the expected exceedances at the smallest n for which the
# order-statistic interval has an upper bound at all, n = ln(0.025) / ln(q/100)).
MIN_TAIL_CLUSTERS = math.ceil(math.log(2 / (1 - CONFIDENCE)))
DECLUSTERINGS = ("runs", "poisson")
PATH_ARRIVALS = LINDLEY_ARRIVALS
INTERVAL_S = 1.0


@dataclass(frozen=True)
class Scenario:
    """A stage to simulate: a long stationary path of (arrival ms, latency ms) and the stage length."""

    label: str
    arrival_ms: npt.NDArray[np.float64]
    latency_ms: npt.NDArray[np.float64]
    stage_s: float


@dataclass(frozen=True)
class Row:
    scenario: str
    quantile: str
    samples_median: int
    truth_ms: float
    coverage_harness: float
    coverage_iid: float
    coverage_previous: float
    coverage_sectioning: float
    width_harness_ms: float
    width_iid_ms: float
    width_previous_ms: float
    width_sectioning_ms: float
    previous_low_below_smallest: float
    harness_low_below_smallest: float
    max_below_truth: float
    adjacent_section_correlation: float | None
    clusters_median: dict[str, float]
    clusters_median_missed: dict[str, float | None]
    coverage_declustered: dict[str, float]
    unbounded_declustered: dict[str, float]
    width_declustered_ms: dict[str, float]

    @property
    def meets_goal(self) -> bool:
        return self.coverage_harness >= COVERAGE_GOAL


def scenarios(seed: int = TRUTH_SEED) -> list[Scenario]:
    """The bench's jitter stage and queue stages (plus a four times longer queue stage at the higher rho)."""
    rng = np.random.default_rng(seed)
    jitter_arrivals = np.cumsum(rng.exponential(1000.0 / OPEN_RATE_RPS, PATH_ARRIVALS))
    jitter = JITTER_BASE_MS + JITTER_MS * rng.random(PATH_ARRIVALS)
    found = [
        Scenario(
            f"jitter {JITTER_BASE_MS:g}+U(0,{JITTER_MS:g}) {OPEN_RATE_RPS:g} rps {OPEN_S:g} s",
            jitter_arrivals,
            jitter,
            OPEN_S,
        )
    ]
    for rho in QUEUE_RHOS:
        arrival_ms, sojourn_ms = md1_path_ms(rho, SERVICE_MS, PATH_ARRIVALS, seed)
        found.append(Scenario(f"M/D/1 rho={rho:g} {QUEUE_STAGE_S:g} s", arrival_ms, sojourn_ms, QUEUE_STAGE_S))
    rho = max(QUEUE_RHOS)
    arrival_ms, sojourn_ms = md1_path_ms(rho, SERVICE_MS, PATH_ARRIVALS, seed + 1)
    found.append(Scenario(f"M/D/1 rho={rho:g} {4 * QUEUE_STAGE_S:g} s", arrival_ms, sojourn_ms, 4 * QUEUE_STAGE_S))
    return found


def _histogram(latency_ms: npt.NDArray[np.float64]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    values_us, counts = np.unique(np.round(latency_ms * 1000.0).astype(np.int64), return_counts=True)
    for value_us, count in zip(values_us, counts, strict=True):
        histogram.record_s(float(value_us) / 1e6, int(count))
    return histogram


def _previous_sections(q: float, n: int) -> int:
    """The section count before log-scale sectioning: up to 10 sections of at least 1 / (1 - q/100) samples."""
    sections = min(10, n // math.ceil(1 / (1 - q / 100)))
    return sections if sections >= 5 else 0


def _previous_interval(
    whole: LatencyHistogram, sections: Sequence[LatencyHistogram], q: float
) -> tuple[float | None, float | None]:
    """The interval before log-scale sectioning: symmetric t-interval around the point, floored at 0."""
    iid = estimate_percentile(whole, q, CONFIDENCE)
    values = [v for v in (s.value_at_percentile_s(q) for s in sections) if v is not None]
    if iid.value_s is None or len(values) < 5:
        return iid.ci_low_s, iid.ci_high_s
    k = len(values)
    spread = math.sqrt(sum((v - iid.value_s) ** 2 for v in values) / (k - 1))
    half_width = float(t.ppf((1 + CONFIDENCE) / 2, k - 1)) * spread / math.sqrt(k)
    low = None if iid.ci_low_s is None else min(iid.ci_low_s, max(0.0, iid.value_s - half_width))
    high = None if iid.ci_high_s is None else max(iid.ci_high_s, iid.value_s + half_width)
    return low, high


def _sectioning_only(
    whole: LatencyHistogram, sections: Sequence[LatencyHistogram], q: float
) -> tuple[float | None, float | None]:
    """The harness's interval without the tail model: log-scale sectioning united with the order-statistic
    interval, floored at the smallest latency."""
    iid = estimate_percentile(whole, q, CONFIDENCE)
    values = [v for v in (s.value_at_percentile_s(q) for s in sections) if v is not None]
    if iid.value_s is None or len(values) < 5:
        return iid.ci_low_s, iid.ci_high_s
    interval = sectioning_interval(iid.value_s, values, CONFIDENCE)
    if interval is None:
        return iid.ci_low_s, iid.ci_high_s
    low = None if iid.ci_low_s is None else max(whole.min_lowest_s(), min(iid.ci_low_s, interval[0]))
    high = None if iid.ci_high_s is None else max(iid.ci_high_s, interval[1])
    return low, high


def _covers(interval: tuple[float | None, float | None], truth_s: float) -> bool:
    low, high = interval
    return (low is None or low <= truth_s) and (high is None or truth_s <= high)


def _width_ms(interval: tuple[float | None, float | None]) -> float:
    low, high = interval
    return math.inf if low is None or high is None else (high - low) * 1000.0


def _correlation(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Pearson correlation of pooled (x, y) pairs; None with fewer than three or no spread."""
    if len(pairs) < 3:
        return None
    x, y = np.array(pairs).T
    return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else None


def _seconds_above(decoded: Sequence[tuple[float, LatencyHistogram]], threshold_s: float) -> list[tuple[float, int]]:
    """(second, samples above threshold_s) for each second of the stage, in time order."""
    return sorted(
        (second, sum(count for value_s, count in histogram.iter_buckets() if value_s > threshold_s))
        for second, histogram in decoded
    )


def tail_clusters(seconds: Sequence[tuple[float, int]], how: str) -> float:
    """Independent tail events among per-second exceedance counts (in time order): "runs" counts runs of
    adjacent seconds with an exceedance; "poisson" counts -T ln(1 - Z/T) clusters (T seconds, Z of them
    with an exceedance: the clusters of a Poisson process that leaves Z of T seconds hit), at most the
    exceedances themselves."""
    hits = [(second, count > 0) for second, count in seconds]
    if how == "runs":
        return float(
            sum(
                hit and not (i and hits[i - 1][1] and second - hits[i - 1][0] <= INTERVAL_S)
                for i, (second, hit) in enumerate(hits)
            )
        )
    exceedances = sum(count for _, count in seconds)
    hit_seconds = sum(hit for _, hit in hits)
    if hit_seconds == len(hits):
        return float(exceedances)
    return min(float(exceedances), -len(hits) * math.log(1 - hit_seconds / len(hits)))


def _median_finite(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.inf


def measure(scenario: Scenario, trials: int = TRIALS, seed: int = TRUTH_SEED) -> list[Row]:
    """Coverage and widths of the three intervals over `trials` random windows of the scenario's path."""
    rng = np.random.default_rng(seed)
    truths_s = {q: float(np.percentile(scenario.latency_ms, q)) / 1000.0 for q in QUANTILES}
    stage_ms = scenario.stage_s * 1000.0
    last_start_ms = float(scenario.arrival_ms[-1]) - stage_ms
    names = ("harness", "sectioning", "iid", "previous")
    hits: dict[float, dict[str, int]] = {q: dict.fromkeys(names, 0) for q in QUANTILES}
    widths: dict[float, dict[str, list[float]]] = {q: {name: [] for name in names} for q in QUANTILES}
    below: dict[float, dict[str, int]] = {q: {"harness": 0, "previous": 0} for q in QUANTILES}
    samples: list[int] = []
    max_below = dict.fromkeys(QUANTILES, 0)
    adjacent: dict[float, list[tuple[float, float]]] = {q: [] for q in QUANTILES}
    clusters: dict[float, dict[str, list[float]]] = {q: {how: [] for how in DECLUSTERINGS} for q in QUANTILES}
    missed: dict[float, dict[str, list[float]]] = {q: {how: [] for how in DECLUSTERINGS} for q in QUANTILES}
    declustered: dict[float, dict[str, list[tuple[float | None, float | None]]]] = {
        q: {how: [] for how in DECLUSTERINGS} for q in QUANTILES
    }
    for _ in range(trials):
        # Skip the path's first 10 s so every window starts in steady state.
        start_ms = rng.uniform(10_000.0, last_start_ms)
        first, end = np.searchsorted(scenario.arrival_ms, [start_ms, start_ms + stage_ms])
        arrival_ms, latency_ms = scenario.arrival_ms[first:end], scenario.latency_ms[first:end]
        second = ((arrival_ms - start_ms) // (INTERVAL_S * 1000.0)).astype(np.int64)
        edges = np.flatnonzero(np.diff(second)) + 1
        decoded = [
            (float(part_second[0]), _histogram(part))
            for part, part_second in zip(np.split(latency_ms, edges), np.split(second, edges), strict=True)
        ]
        whole = LatencyHistogram.merged(h for _, h in decoded)
        smallest_s = whole.min_lowest_s()
        samples.append(whole.count)
        for q in QUANTILES:
            sections = contiguous_sections(decoded, sections_for(q, whole.count))
            max_below[q] += float(latency_ms.max()) / 1000.0 < truths_s[q]
            logs = [math.log(v) for v in (s.value_at_percentile_s(q) for s in sections) if v]
            adjacent[q] += itertools.pairwise(logs)
            harness = estimate_percentile_dependent(whole, sections, q, CONFIDENCE)
            iid = estimate_percentile(whole, q, CONFIDENCE)
            intervals = {
                "harness": (harness.ci_low_s, harness.ci_high_s),
                "sectioning": _sectioning_only(whole, sections, q),
                "iid": (iid.ci_low_s, iid.ci_high_s),
                "previous": _previous_interval(
                    whole, contiguous_sections(decoded, _previous_sections(q, whole.count)), q
                ),
            }
            seconds = _seconds_above(decoded, harness.value_s) if harness.value_s is not None else []
            for how in DECLUSTERINGS:
                found = tail_clusters(seconds, how)
                clusters[q][how].append(found)
                if not _covers((harness.ci_low_s, harness.ci_high_s), truths_s[q]):
                    missed[q][how].append(found)
                high = None if found < MIN_TAIL_CLUSTERS else harness.ci_high_s
                declustered[q][how].append((harness.ci_low_s, high))
            for name, interval in intervals.items():
                hits[q][name] += _covers(interval, truths_s[q])
                widths[q][name].append(_width_ms(interval))
            for name in ("harness", "previous"):
                low = intervals[name][0]
                below[q][name] += low is not None and low < smallest_s
    return [
        Row(
            scenario=scenario.label,
            quantile=f"p{q:g}",
            samples_median=int(np.median(samples)),
            truth_ms=truths_s[q] * 1000.0,
            coverage_harness=hits[q]["harness"] / trials,
            coverage_iid=hits[q]["iid"] / trials,
            coverage_previous=hits[q]["previous"] / trials,
            coverage_sectioning=hits[q]["sectioning"] / trials,
            width_harness_ms=float(np.median(widths[q]["harness"])),
            width_iid_ms=float(np.median(widths[q]["iid"])),
            width_previous_ms=float(np.median(widths[q]["previous"])),
            width_sectioning_ms=float(np.median(widths[q]["sectioning"])),
            previous_low_below_smallest=below[q]["previous"] / trials,
            harness_low_below_smallest=below[q]["harness"] / trials,
            max_below_truth=max_below[q] / trials,
            adjacent_section_correlation=_correlation(adjacent[q]),
            clusters_median={how: float(np.median(clusters[q][how])) for how in DECLUSTERINGS},
            clusters_median_missed={
                how: float(np.median(missed[q][how])) if missed[q][how] else None for how in DECLUSTERINGS
            },
            coverage_declustered={
                how: sum(_covers(i, truths_s[q]) for i in declustered[q][how]) / trials for how in DECLUSTERINGS
            },
            unbounded_declustered={
                how: sum(i[1] is None for i in declustered[q][how]) / trials for how in DECLUSTERINGS
            },
            width_declustered_ms={
                how: _median_finite([_width_ms(i) for i in declustered[q][how]]) for how in DECLUSTERINGS
            },
        )
        for q in QUANTILES
    ]


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a fixed-width table: coverage and median width (ms) of the three intervals."""
    header = (
        f"{'stage':<36} {'q':>4} {'n':>6} {'truth':>7}  {'coverage harness/sect/iid/prev':>30}  "
        f"{'width ms harness/sect/iid/prev':>33} {'x iid':>6} {'x sect':>6}  {'prev<min':>8}  {'max<true':>8}  "
        f"{'r1 sect':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = row.width_harness_ms / row.width_iid_ms if row.width_iid_ms else math.inf
        ratio_sectioning = row.width_harness_ms / row.width_sectioning_ms if row.width_sectioning_ms else math.inf
        mark = "" if row.meets_goal else "  < goal"
        lines.append(
            f"{row.scenario:<36} {row.quantile:>4} {row.samples_median:>6} {row.truth_ms:>7.2f}  "
            f"{row.coverage_harness:>9.2f}/{row.coverage_sectioning:.2f}/{row.coverage_iid:.2f}/"
            f"{row.coverage_previous:.2f}      "
            f"{row.width_harness_ms:>9.2f}/{row.width_sectioning_ms:.2f}/{row.width_iid_ms:.2f}/"
            f"{row.width_previous_ms:.2f}"
            f"{'':>3}{ratio:>6.2f} {ratio_sectioning:>6.2f}  {row.previous_low_below_smallest:>8.0%}  "
            f"{row.max_below_truth:>8.0%}  "
            f"{'-' if row.adjacent_section_correlation is None else f'{row.adjacent_section_correlation:.2f}':>7}{mark}"
        )
    return "\n".join(lines)


def format_declustered(rows: Sequence[Row]) -> str:
    """The not-adopted alternative: the harness's interval, unbounded above with too few tail clusters."""
    columns = "  ".join(f"{how + ' cov/unb/width ms':>26} {'clust all/miss':>14}" for how in DECLUSTERINGS)
    header = f"{'stage':<36} {'q':>4}  {'harness':>7}  {columns}"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "  ".join(
            f"{row.coverage_declustered[how]:>12.2f}/{row.unbounded_declustered[how]:>4.0%}/"
            f"{row.width_declustered_ms[how]:>7.2f} {row.clusters_median[how]:>7.1f}/"
            f"{'-' if row.clusters_median_missed[how] is None else f'{row.clusters_median_missed[how]:.1f}':<6}"
            for how in DECLUSTERINGS
        )
        lines.append(f"{row.scenario:<36} {row.quantile:>4}  {row.coverage_harness:>7.2f}  {cells}")
    return "\n".join(lines)


def main() -> int:
    started_s = time.monotonic()
    rows: list[Row] = []
    for scenario in scenarios():
        print(f"{scenario.label}: {TRIALS} windows", flush=True)
        rows += measure(scenario)
    print()
    print(format_table(rows))
    print(
        f"\ncoverage at nominal {CONFIDENCE:.0%} (goal {COVERAGE_GOAL:.0%}); width = median width over trials; "
        "x iid = harness width / independent-sample width; x sect = harness width / width without the tail model; "
        "prev<min = share of trials whose previous interval's "
        "lower bound fell below the smallest observed latency (the harness's: "
        f"{max(r.harness_low_below_smallest for r in rows):.0%} at most); max<true = share of trials whose largest "
        "latency was below the true percentile (an upper bound can only cover those by reaching beyond every "
        "observed latency); r1 sect = correlation of adjacent sections' log percentiles, pooled over trials; "
        f"{time.monotonic() - started_s:.0f} s"
    )
    print(f"\nnot adopted: upper bound dropped with fewer than {MIN_TAIL_CLUSTERS} tail clusters above the estimate\n")
    print(format_declustered(rows))
    print(
        "\ncov = coverage (unbounded intervals cover when their lower bound does); unb = share of trials left "
        "unbounded; width = median over the bounded trials; clust all/miss = median tail clusters above the point "
        "estimate over all trials / over the trials the harness's interval missed (more clusters where it missed: "
        "a calm window spreads its top latencies over many small bursts, so too few clusters flags the wrong windows)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": [asdict(row) for row in rows]}, indent=2) + "\n")
    print(f"written {RESULTS.name}")
    return 0 if all(row.meets_goal for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
