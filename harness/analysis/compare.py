"""Baseline-versus-candidate comparison of two runs, for nightly regression checks (`harness compare`).

A metric *regresses* only when its change is statistically significant AND larger than `min_effect`
relative to the baseline, in the bad direction (throughput down, latency up). Significance is
family-wise: with m metrics compared (per common judged stage: throughput, error rate, p50, p95, p99), each test
runs at level alpha / m (Bonferroni), so the chance of any false alarm on identical services is at
most alpha. Nothing is random, so the result is deterministic.

Throughput: Welch's t-test on the per-interval achieved rps. Achieved throughput is a mean rate
(requests / duration is the time-weighted mean of the interval rates), and Welch compares means without
assuming equal variances; per-interval rates are sums of many requests, so the CLT makes the t-test
sound once each run has a few dozen intervals. Mann-Whitney U would test stochastic ordering, not the
mean, and interval counts tie often. The intervals of one run are not independent (slow drift,
autoscaling), which makes the test somewhat liberal; min_effect guards against flagging small drifts.
In an open-model stage below saturation achieved rps equals the offered rate in both runs, so only
latency can regress there.

Error rate: Fisher's exact test on the 2x2 table of failed/succeeded requests, one-sided (the
candidate fails more often): exact at any count, including the zero-failure baselines that are common.

Latency percentiles: distribution-free order-statistic confidence intervals of each run's quantile
(harness.analysis.latency.estimate_percentile), each at confidence 1 - alpha / (2m); the difference is
significant when the two intervals do not overlap. If the quantiles are equal, non-overlap needs at
least one interval to miss it, which happens with probability at most 2 x alpha / (2m) = alpha / m:
a valid, if conservative, level-alpha/m test that makes no assumption about the latency distribution
(latency is skewed and multi-modal, so normal-theory or a shift model would not be), works on merged
histograms without raw samples, and needs no resampling (so no seed). The reported interval for the
difference, [candidate low - baseline high, candidate high - baseline low], has coverage at least
1 - alpha / m. With few samples a tail percentile's interval has no upper bound and nothing is
significant, which is the honest answer.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.analysis.latency import LatencyHistogram, estimate_percentile
from harness.analysis.timeline import interval_series
from harness.model import ClientInterval, StageWindow

COMPARED_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)


@dataclass(frozen=True)
class StageSummary:
    """What a comparison needs from one stage of one run. `latency` must not be mutated once summarised."""

    requests: int
    duration_s: float
    # Achieved rps of each metrics interval inside the stage, in time order.
    interval_rps: tuple[float, ...]
    latency: LatencyHistogram
    failures: int = 0

    @property
    def achieved_rps(self) -> float | None:
        return self.requests / self.duration_s if self.duration_s > 0 else None


@dataclass(frozen=True)
class RunSummary:
    """One run reduced to what a comparison needs, per judged stage name."""

    stages: Mapping[str, StageSummary]


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one stage, baseline against candidate."""

    stage: str
    # throughput_rps, error_rate, latency_p50_s, latency_p95_s, latency_p99_s
    metric: str
    baseline: float | None
    candidate: float | None
    # (candidate - baseline) / baseline; None when either is missing or the baseline is 0.
    relative_change: float | None
    # Welch's t-test p-value (throughput); None for latency, which is judged by its interval.
    p_value: float | None
    # Confidence interval of candidate - baseline, in the metric's unit; a None bound is unbounded.
    difference_low: float | None
    difference_high: float | None
    significant: bool
    regression: bool
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Every compared metric, and whether any of them regressed."""

    metrics: tuple[MetricComparison, ...]
    regressed: bool
    alpha: float
    min_effect: float
    # Stages present in only one run, and other things the comparison could not cover.
    notes: tuple[str, ...]


def _relative(baseline: float | None, candidate: float | None) -> float | None:
    if baseline is None or candidate is None or baseline == 0:
        return None
    return (candidate - baseline) / baseline


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _welch(base_rps: Sequence[float], cand_rps: Sequence[float], level: float) -> tuple[float, float, float]:
    """Welch's t-test of candidate against baseline interval rates: (p-value, difference CI low, high)."""
    if statistics.variance(base_rps) == 0 and statistics.variance(cand_rps) == 0:
        # No spread at all: the t statistic is undefined, and any difference is certain.
        difference = statistics.fmean(cand_rps) - statistics.fmean(base_rps)
        return (1.0 if difference == 0 else 0.0), difference, difference
    from scipy.stats import ttest_ind  # imported where used: scipy alone takes about a second to import

    test = ttest_ind(cand_rps, base_rps, equal_var=False)
    interval = test.confidence_interval(confidence_level=1.0 - level)
    return float(test.pvalue), float(interval.low), float(interval.high)


def _throughput(
    stage: str, base: StageSummary, cand: StageSummary, level: float, min_effect: float
) -> MetricComparison:
    baseline, candidate = base.achieved_rps, cand.achieved_rps
    change = _relative(baseline, candidate)
    p_value: float | None = None
    low = high = None
    if len(base.interval_rps) < 2 or len(cand.interval_rps) < 2:
        reason = "not tested: Welch's t-test needs at least 2 intervals in each run"
    else:
        p_value, low, high = _welch(base.interval_rps, cand.interval_rps, level)
        reason = (
            f"Welch's t-test on {len(base.interval_rps)} vs {len(cand.interval_rps)} interval rates: "
            f"p = {p_value:.3g} (level {level:.3g}), change {_fmt(None if change is None else change * 100)}%"
        )
    significant = p_value is not None and p_value < level
    return MetricComparison(
        stage=stage,
        metric="throughput_rps",
        baseline=baseline,
        candidate=candidate,
        relative_change=change,
        p_value=p_value,
        difference_low=low,
        difference_high=high,
        significant=significant,
        regression=significant and change is not None and change < -min_effect,
        reason=reason,
    )


def _latency(
    stage: str, q: float, base: StageSummary, cand: StageSummary, level: float, min_effect: float
) -> MetricComparison:
    # Each quantile's interval at 1 - level/2, so that non-overlap is a level-`level` test.
    confidence = 1.0 - level / 2.0
    b = estimate_percentile(base.latency, q, confidence)
    c = estimate_percentile(cand.latency, q, confidence)
    change = _relative(b.value_s, c.value_s)
    higher = b.ci_high_s is not None and c.ci_low_s is not None and c.ci_low_s > b.ci_high_s
    lower = b.ci_low_s is not None and c.ci_high_s is not None and c.ci_high_s < b.ci_low_s
    significant = higher or lower
    regression = higher and change is not None and change > min_effect
    low = None if c.ci_low_s is None or b.ci_high_s is None else c.ci_low_s - b.ci_high_s
    high = None if c.ci_high_s is None or b.ci_low_s is None else c.ci_high_s - b.ci_low_s
    reason = (
        f"{confidence:.4%} order-statistic CIs: baseline [{_fmt(b.ci_low_s)}, {_fmt(b.ci_high_s)}] s "
        f"(n={b.samples}), candidate [{_fmt(c.ci_low_s)}, {_fmt(c.ci_high_s)}] s (n={c.samples}) "
        + ("do not overlap" if significant else "overlap or are unbounded")
    )
    return MetricComparison(
        stage=stage,
        metric=f"latency_p{q:g}_s",
        baseline=b.value_s,
        candidate=c.value_s,
        relative_change=change,
        p_value=None,
        difference_low=low,
        difference_high=high,
        significant=significant,
        regression=regression,
        reason=reason,
    )


def _error_rate(
    stage: str, base: StageSummary, cand: StageSummary, level: float, min_effect: float
) -> MetricComparison:
    """Fisher's exact test (one-sided: the candidate fails more often), exact for any counts."""
    baseline = base.failures / base.requests if base.requests else None
    candidate = cand.failures / cand.requests if cand.requests else None
    change = _relative(baseline, candidate)
    if baseline is None or candidate is None:
        reason = "not tested: a run completed no request in this stage"
        p_value = None
    else:
        table = [[cand.failures, cand.requests - cand.failures], [base.failures, base.requests - base.failures]]
        from scipy.stats import fisher_exact

        p_value = float(fisher_exact(table, alternative="greater").pvalue)
        reason = (
            f"Fisher's exact test, {cand.failures}/{cand.requests} vs {base.failures}/{base.requests} failed: "
            f"p = {p_value:.3g} (level {level:.3g})"
        )
    significant = p_value is not None and p_value < level
    # From a zero baseline any failure rate is an infinite relative change: count it as larger than min_effect.
    worse = baseline is not None and candidate is not None and candidate > baseline
    large = change is None or change > min_effect
    return MetricComparison(
        stage=stage,
        metric="error_rate",
        baseline=baseline,
        candidate=candidate,
        relative_change=change,
        p_value=p_value,
        difference_low=None,
        difference_high=None,
        significant=significant,
        regression=significant and worse and large,
        reason=reason,
    )


def compare(baseline: RunSummary, candidate: RunSummary, alpha: float = 0.01, min_effect: float = 0.05) -> Comparison:
    """Compare every metric of the stages both runs share (see the module docstring for the tests)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must be within (0, 1)")
    if not (math.isfinite(min_effect) and min_effect >= 0):
        raise ValueError(f"min_effect={min_effect} must be a finite number >= 0")
    common = [name for name in baseline.stages if name in candidate.stages]
    notes = [f"stage '{n}' is only in the baseline; not compared" for n in baseline.stages if n not in candidate.stages]
    notes += [
        f"stage '{n}' is only in the candidate; not compared" for n in candidate.stages if n not in baseline.stages
    ]
    if not common:
        notes.append("the runs share no judged stage, so nothing was compared")
    tests = len(common) * (2 + len(COMPARED_PERCENTILES))
    level = alpha / tests if tests else alpha
    metrics: list[MetricComparison] = []
    for name in common:
        base, cand = baseline.stages[name], candidate.stages[name]
        metrics.append(_throughput(name, base, cand, level, min_effect))
        metrics.append(_error_rate(name, base, cand, level, min_effect))
        metrics.extend(_latency(name, q, base, cand, level, min_effect) for q in COMPARED_PERCENTILES)
    return Comparison(
        metrics=tuple(metrics),
        regressed=any(m.regression for m in metrics),
        alpha=alpha,
        min_effect=min_effect,
        notes=tuple(notes),
    )


def summarize_run(
    windows: Sequence[StageWindow], intervals: Sequence[ClientInterval], bucket_s: float = 1.0
) -> RunSummary:
    """Reduce a run's stage windows and client intervals to a RunSummary of its judged stages.

    Interval rates come from `interval_series` per stage; a stage's first and last bucket are dropped
    when it has more than two, because intervals straddling a stage boundary make them partial.
    """
    by_stage: dict[str, list[ClientInterval]] = defaultdict(list)
    for interval in intervals:
        by_stage[interval.stage].append(interval)
    stages: dict[str, StageSummary] = {}
    for window in windows:
        if not window.judged:
            continue
        own = by_stage.get(window.name, [])
        rates = [point.achieved_rps for point in interval_series(own, window.start_s, bucket_s)]
        if len(rates) > 2:
            rates = rates[1:-1]
        stages[window.name] = StageSummary(
            requests=sum(i.requests for i in own),
            failures=sum(i.failures for i in own),
            duration_s=window.end_s - window.start_s,
            interval_rps=tuple(rates),
            latency=LatencyHistogram.merged(LatencyHistogram.decode(i.latency_hdr) for i in own),
        )
    return RunSummary(stages=stages)
