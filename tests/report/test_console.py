"""The terminal verdict table and comparison output (rich), rendered to text."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from harness.analysis.compare import compare, summarize_run
from harness.model import ClientInterval, LoadgenOverhead, Status, Verdict
from harness.report.console import comparison_rows, print_comparison, print_verdict, render_verdict_table
from harness.rundir import RunDirectory


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=250, color_system=None), out


def test_verdict_table_has_a_row_per_objective(recorded_run: RunDirectory) -> None:
    verdict = recorded_run.read_verdict()
    table = render_verdict_table(verdict)
    console, out = _console()

    console.print(table)

    assert table.row_count == len(verdict.objectives)
    assert [c.header for c in table.columns] == [
        "#",
        "Objective",
        "Stage",
        "Status",
        "Measured",
        "Threshold",
        "CI",
        "Reason",
    ]
    text = out.getvalue()
    assert "Verdict: FAIL" in text
    lines = [line for line in text.splitlines() if "latency_p95_ms <= 150" in line and " peak " in line]
    assert len(lines) == 1
    for cell in ("FAIL", "1334 ms", "≤ 150 ms", "[569.8 ms, 3125 ms]", "misses <= 150"):
        assert cell in lines[0]


def test_print_verdict_adds_status_figures_and_warnings(recorded_run: RunDirectory) -> None:
    console, out = _console()

    print_verdict(recorded_run.read_verdict(), console)

    text = out.getvalue()
    assert "status: FAIL (exit code 1)" in text
    assert "max sustainable: 150.2 rps (50.07 rps per replica); knee: 150.2 rps at p95 80 ms" in text
    assert "capacity plan: 8 replica(s) for 300 rps with 30% headroom, about 116.80 per month" in text
    assert "warning: metrics collector (replica-3)" in text


def test_print_verdict_at_80_columns_keeps_every_status_and_reason(recorded_run: RunDirectory) -> None:
    verdict = recorded_run.read_verdict()
    out = io.StringIO()

    print_verdict(verdict, Console(file=out, width=80, color_system=None))

    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    text = " ".join(line.strip() for line in lines)
    rows = [line for line in lines if line.startswith("│") and line[1:5].strip().isdigit()]
    assert len(rows) == len(verdict.objectives)
    for row, result in zip(rows, verdict.objectives, strict=True):
        assert f" {result.status.value} " in row, "the status is never cut"
    for number, result in enumerate(verdict.objectives, start=1):
        # the reasons follow the table, numbered like its rows, wrapped but whole
        assert f"{number}. {result.reason}" in " ".join(text.split()), result.reason
    assert "…" not in text


def test_print_verdict_without_objectives_prints_no_empty_table() -> None:
    console, out = _console()
    verdict = Verdict(status=Status.INCONCLUSIVE, exit_code=3, objectives=[], stages=[], warnings=["no objectives"])

    print_verdict(verdict, console)

    assert "Verdict:" not in out.getvalue()
    assert "status: INCONCLUSIVE (exit code 3)" in out.getvalue()


def test_comparison_of_a_run_with_itself_has_no_regression(recorded_run: RunDirectory) -> None:
    summary = summarize_run(recorded_run.read_stages(), recorded_run.read_records(ClientInterval))
    comparison = compare(summary, summary)
    console, out = _console()

    print_comparison(comparison, console)

    rows = comparison_rows(comparison)
    assert [(r.stage, r.metric) for r in rows[:5]] == [
        ("low", "throughput_rps"),
        ("low", "error_rate"),
        ("low", "latency_p50_s"),
        ("low", "latency_p95_s"),
        ("low", "latency_p99_s"),
    ]
    # Error rates of stages without failures have no relative change (0 / 0).
    assert all(r.relative_change == 0 for r in rows if r.relative_change is not None)
    text = out.getvalue()
    assert "Baseline vs candidate" in text and "+0.0%" in text
    assert "no significant regression" in text


def test_print_verdict_shows_the_load_generator_overhead_or_that_it_was_not_measured(
    recorded_run: RunDirectory,
) -> None:
    verdict = recorded_run.read_verdict()
    console, out = _console()
    print_verdict(verdict, console)
    assert "load generator overhead: not measured" in out.getvalue()
    overhead = LoadgenOverhead(process=0, requests=200, rate_rps=100.0, p50_ms=0.31, p95_ms=0.62, p99_ms=1.4)
    console, out = _console()
    print_verdict(replace(verdict, loadgen_overhead=overhead), console)
    assert "load generator overhead: p50 0.31 ms, p95 0.62 ms, p99 1.40 ms" in out.getvalue()
