"""The verdict and run comparisons in the terminal (rich tables), printed at the end of `harness run`/`compare`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from harness.analysis.faults import fault_line
from harness.model import Status, Verdict
from harness.report._common import (
    STATUS_MEANING,
    ComparisonRow,
    fmt_bottleneck,
    fmt_ci,
    fmt_comparison_value,
    fmt_metric_value,
    fmt_ms,
    fmt_overhead,
    fmt_rps,
    fmt_stage,
    fmt_stage_errors,
    fmt_threshold,
)

STATUS_STYLE: dict[Status, str] = {
    Status.PASS: "bold green",
    Status.WARN: "bold yellow",
    Status.FAIL: "bold red",
    Status.INCONCLUSIVE: "bold magenta",
}


def _status(status: Status) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def render_verdict_table(verdict: Verdict, with_reasons: bool = True) -> Table:
    """One row per objective result: #, objective, stage, status, measured, threshold, CI and (with_reasons)
    reason. Status never wraps or shrinks; the other columns wrap when the console is narrow."""
    table = Table(title=f"Verdict: {verdict.status.value}", title_style=STATUS_STYLE[verdict.status], expand=False)
    statuses = [r.status.value for r in verdict.objectives] or ["Status"]
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("Objective", overflow="fold")
    table.add_column("Stage", overflow="fold")
    table.add_column("Status", no_wrap=True, min_width=max(len(s) for s in statuses))
    table.add_column("Measured", justify="right", overflow="fold")
    table.add_column("Threshold", justify="right", overflow="fold")
    table.add_column("CI", justify="right", overflow="fold")
    if with_reasons:
        table.add_column("Reason", overflow="fold")
    for number, r in enumerate(verdict.objectives, start=1):
        cells: list[str | Text] = [
            str(number),
            r.objective,
            fmt_stage(r),
            _status(r.status),
            fmt_metric_value(r.metric, r.measured),
            fmt_threshold(r),
            fmt_ci(r),
        ]
        table.add_row(*cells, *([r.reason] if with_reasons else []))
    return table


def print_verdict(verdict: Verdict, console: Console) -> None:
    """The verdict table, then the status line, saturation, capacity plan and warnings.

    When the table with its Reason column would not fit the console, the reasons follow the table as
    numbered, wrapped lines instead, so that no status or reason is cut (80 columns is enough).
    """
    if verdict.objectives:
        table = render_verdict_table(verdict)
        natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
        if natural > console.width:
            console.print(render_verdict_table(verdict, with_reasons=False))
            for number, r in enumerate(verdict.objectives, start=1):
                console.print(Text(f"{number:>2}. ", style="bold") + Text(r.reason), highlight=False)
        else:
            console.print(table)
    for stage in verdict.stages:
        if (errors := fmt_stage_errors(stage)) is not None:
            console.print(Text("errors: ", style="bold red") + Text(errors), highlight=False)
    for bottleneck in verdict.bottlenecks:
        console.print(Text("likely bottleneck: ", style="bold") + Text(fmt_bottleneck(bottleneck)), highlight=False)
    status = Text.assemble(
        ("status: ", "bold"),
        _status(verdict.status),
        f" (exit code {verdict.exit_code}): {STATUS_MEANING[verdict.status]}",
    )
    console.print(status)
    saturation = verdict.saturation
    if saturation is not None:
        console.print(
            f"max sustainable: {fmt_rps(saturation.max_sustainable_rps)} "
            f"({fmt_rps(saturation.max_sustainable_rps_per_replica)} per replica); "
            f"knee: {fmt_rps(saturation.knee_rps)} at p95 {fmt_ms(saturation.knee_latency_s)}",
            highlight=False,
        )
    plan = verdict.capacity
    if plan is not None:
        cost = "" if plan.monthly_cost is None else f", about {plan.monthly_cost:.2f} per month"
        console.print(
            f"capacity plan: {plan.replicas_needed} replica(s) for {fmt_rps(plan.target_peak_rps)} "
            f"with {plan.headroom:.0%} headroom{cost}",
            highlight=False,
        )
    for fault in verdict.faults:
        console.print(Text("fault: ", style="bold") + Text(fault_line(fault)))
    console.print(fmt_overhead(verdict.loadgen_overhead), highlight=False)
    for warning in verdict.warnings:
        console.print(Text("warning: ", style="yellow") + Text(warning))


# --------------------------------------------------------------------------- comparisons


class _MetricComparisonLike(Protocol):
    """What a compared metric must offer (harness.analysis.compare.MetricComparison fits)."""

    @property
    def stage(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def baseline(self) -> float | None: ...
    @property
    def candidate(self) -> float | None: ...
    @property
    def relative_change(self) -> float | None: ...
    @property
    def significant(self) -> bool: ...
    @property
    def regression(self) -> bool: ...
    @property
    def reason(self) -> str: ...


class _ComparisonLike(Protocol):
    """What a comparison must offer (harness.analysis.compare.Comparison fits)."""

    @property
    def metrics(self) -> Iterable[_MetricComparisonLike]: ...
    @property
    def regressed(self) -> bool: ...
    @property
    def notes(self) -> Sequence[str]: ...


def comparison_rows(comparison: _ComparisonLike) -> list[ComparisonRow]:
    """The renderers' rows for every compared metric of a comparison."""
    return [
        ComparisonRow(
            metric=m.metric,
            baseline=m.baseline,
            candidate=m.candidate,
            relative_change=m.relative_change,
            significant=m.significant,
            regression=m.regression,
            stage=m.stage,
            reason=m.reason,
        )
        for m in comparison.metrics
    ]


def render_comparison_table(rows: Sequence[ComparisonRow]) -> Table:
    """One row per compared metric; regressions in red."""
    table = Table(title="Baseline vs candidate")
    for name, justify in (
        ("Stage", "left"),
        ("Metric", "left"),
        ("Baseline", "right"),
        ("Candidate", "right"),
        ("Change", "right"),
        ("Significant", "left"),
        ("Regression", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        change = "n/a" if row.relative_change is None else f"{row.relative_change * 100:+.1f}%"
        table.add_row(
            row.stage or "",
            row.metric,
            fmt_comparison_value(row.metric, row.baseline),
            fmt_comparison_value(row.metric, row.candidate),
            change,
            "yes" if row.significant else "no",
            Text("REGRESSION", style="bold red") if row.regression else Text("no"),
        )
    return table


def print_comparison(comparison: _ComparisonLike, console: Console) -> None:
    """The comparison table, its notes, and one line saying whether anything regressed."""
    rows = comparison_rows(comparison)
    if rows:
        console.print(render_comparison_table(rows))
    for note in comparison.notes:
        console.print(f"note: {note}", highlight=False)
    regressions = sum(1 for row in rows if row.regression)
    if comparison.regressed:
        console.print(Text(f"{regressions} significant regression(s)", style="bold red"))
    else:
        console.print(Text("no significant regression", style="bold green"))
