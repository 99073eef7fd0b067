"""Formatting shared by every renderer: objective values in their units (from harness.objectives), CI text,
status order, comparison rows.

One place decides how a number is shown, so the HTML page, the Markdown summary, the JUnit file and the
terminal table never disagree about a value or its unit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.analysis.failures import describe_errors
from harness.model import Bottleneck, LoadgenOverhead, ObjectiveResult, PercentileEstimate, StageResult, Status
from harness.objectives import objective_metric

STATUS_ORDER: tuple[Status, ...] = (Status.FAIL, Status.INCONCLUSIVE, Status.WARN, Status.PASS)
STATUS_EMOJI: dict[Status, str] = {
    Status.PASS: "✅",
    Status.WARN: "⚠️",
    Status.FAIL: "❌",
    Status.INCONCLUSIVE: "❔",
}
STATUS_MEANING: dict[Status, str] = {
    Status.PASS: "every objective held, with its whole confidence interval on the good side",
    Status.WARN: "no objective failed, but some confidence interval straddles its threshold",
    Status.FAIL: "at least one objective was missed with its whole confidence interval on the bad side",
    Status.INCONCLUSIVE: "the run could not prove PASS or FAIL for some objective (see the reasons)",
}
NOT_MEASURED = "not measured"


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A number with `digits` significant digits; "n/a" for None and the name of a non-finite value."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}g}"


def fmt_metric_value(metric: str, value: float | None) -> str:
    """A measured value or threshold of an objective metric, with its unit (rates as percent)."""
    if value is None:
        return "n/a"
    kind = objective_metric(metric)
    if kind.shown_as_percent:
        return fmt_percent(value)
    return f"{fmt_number(value)} {kind.unit}".rstrip()


def fmt_threshold(result: ObjectiveResult) -> str:
    sign = "≤" if result.bound == "max" else "≥"
    return f"{sign} {fmt_metric_value(result.metric, result.threshold)}"


def fmt_ci(result: ObjectiveResult) -> str:
    """The confidence interval of a result; a missing bound is unbounded on that side, "—" when neither exists."""
    if result.ci_low is None and result.ci_high is None:
        return "—"
    low = "-∞" if result.ci_low is None else fmt_metric_value(result.metric, result.ci_low)
    high = "∞" if result.ci_high is None else fmt_metric_value(result.metric, result.ci_high)
    return f"[{low}, {high}]"


def fmt_stage_errors(stage: StageResult) -> str | None:
    """One line naming a stage's failed requests by kind, with counts and what they got back; None without any:
    "users-8: 203 of 203 requests failed: http_400 x203 (answered: '...')"."""
    if not stage.failures:
        return None
    return f"{stage.name}: {describe_errors(stage.errors, stage.error_samples, stage.requests)}"


def fmt_bottleneck(bottleneck: Bottleneck) -> str:
    """One line: "peak (FAIL): load shedding: 729 of 12303 requests refused (...)"."""
    cause = bottleneck.cause.replace("_", " ")
    return f"{bottleneck.stage} ({bottleneck.examined_for}): {cause}: {bottleneck.evidence}"


def fmt_overhead(overhead: LoadgenOverhead | None) -> str:
    """The load generator's own overhead as one line of every report."""
    if overhead is None:
        return "load generator overhead: not measured"
    return (
        f"load generator overhead: p50 {overhead.p50_ms:.2f} ms, p95 {overhead.p95_ms:.2f} ms, "
        f"p99 {overhead.p99_ms:.2f} ms (calibration: {overhead.requests} requests at {overhead.rate_rps:g} rps "
        "to a null endpoint before the load; included in every measured latency)"
    )


def fmt_stage(result: ObjectiveResult) -> str:
    return result.stage if result.stage is not None else "(run)"


def fmt_ms(value_s: float | None) -> str:
    return "n/a" if value_s is None else f"{fmt_number(value_s * 1000.0)} ms"


def fmt_estimate_ms(estimate: PercentileEstimate | None) -> str:
    """A percentile in ms with its CI, e.g. "42.9 ms [41.2, 45.5]"; "n/a" when not computed."""
    if estimate is None or estimate.value_s is None:
        return "n/a"
    low = "-∞" if estimate.ci_low_s is None else fmt_number(estimate.ci_low_s * 1000.0)
    high = "∞" if estimate.ci_high_s is None else fmt_number(estimate.ci_high_s * 1000.0)
    return f"{fmt_number(estimate.value_s * 1000.0)} ms [{low}, {high}]"


def fmt_replicas(low: int | None, high: int | None) -> str:
    """A replica range, "2–3", or one number when it did not change; "n/a" when not measured."""
    if low is None or high is None:
        return "n/a"
    return str(low) if low == high else f"{low}–{high}"


def fmt_rps(value: float | None) -> str:
    return "n/a" if value is None else f"{fmt_number(value)} rps"


def fmt_seconds(value_s: float | None) -> str:
    return "n/a" if value_s is None else f"{fmt_number(value_s, 3)} s"


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{fmt_number(value / size, 4)} {unit}"
    return f"{value:.0f} B"


def fmt_percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fmt_number(fraction * 100, 3)}%"


def fmt_comparison_value(metric: str, value: float | None) -> str:
    """A compared metric's value: throughput in rps, latencies (metric names ending _s) in ms."""
    if value is None:
        return "n/a"
    if metric.endswith("_rps"):
        return fmt_rps(value)
    if metric.endswith("_s"):
        return fmt_ms(value)
    return fmt_number(value)


ALL_REQUESTS = "(all)"


def request_figures(stages: Sequence[StageResult]) -> list[tuple[str, str, StageResult]]:
    """(stage, request, figures) of every named request in every stage, in the stages' order."""
    return [(stage.name, name, own) for stage in stages for name, own in sorted(stage.by_request.items())]


def streamed_figures(stages: Sequence[StageResult]) -> list[tuple[str, str, StageResult]]:
    """(stage, request, figures) of every stage that streamed, all its requests together (`ALL_REQUESTS`), then
    each named request that streamed."""
    rows = []
    for stage in stages:
        if not stage.streamed:
            continue
        rows.append((stage.name, ALL_REQUESTS, stage))
        rows += [(stage.name, name, own) for name, own in sorted(stage.by_request.items()) if own.streamed]
    return rows


def fmt_token_rate(stage: StageResult) -> str:
    """A stage's (or request's) output tokens per second of the stage."""
    return "n/a" if stage.duration_s <= 0 else f"{fmt_number(stage.output_tokens / stage.duration_s)} tokens/s"


def status_counts(results: list[ObjectiveResult]) -> dict[Status, int]:
    """How many objective results have each status, in severity order (zero counts omitted)."""
    counts = {status: sum(1 for r in results if r.status is status) for status in STATUS_ORDER}
    return {status: count for status, count in counts.items() if count}


@dataclass(frozen=True)
class ComparisonRow:
    """One compared metric of two runs, as the comparison renderers show it."""

    metric: str
    baseline: float | None
    candidate: float | None
    # (candidate - baseline) / baseline; None when not computable.
    relative_change: float | None
    significant: bool
    regression: bool
    stage: str | None = None
    reason: str = ""
