"""report.html from the recorded run, from run directories with parts missing, and the comparison page."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from harness import extras
from harness.analysis.compare import compare, summarize_run
from harness.errors import ReportError
from harness.model import ClientInterval, from_json_dict, to_json_dict
from harness.report import ComparisonRow, render_comparison_html
from harness.report._rundata import load_run
from harness.report.console import comparison_rows
from harness.report.html import render_html
from harness.rundir import RECORD_FILES, RunDirectory

PLOT_IDS = ("plot-latency", "plot-throughput", "plot-knee", "plot-cpu", "plot-errors", "plot-server")


def _plot_divs(page: str) -> set[str]:
    return set(re.findall(r'<div id="(plot-[a-z0-9-]+)" class="plotly-graph-div"', page))


def _section(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}">')
    return page[start : page.index("</section>", start)]


def _edit_json(run_dir: RunDirectory, name: str, **changes: object) -> None:
    path = run_dir.file(name)
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _edit_scenario(run_dir: RunDirectory, **changes: object) -> None:
    path = run_dir.file("scenario.yaml")
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data))


def test_recorded_run_page_has_the_verdict_first_then_every_plot(recorded_run: RunDirectory) -> None:
    page = render_html(load_run(recorded_run))
    verdict = recorded_run.read_verdict()

    assert page.startswith("<!DOCTYPE html>")
    # plotly.js is inlined exactly once and nothing is loaded from elsewhere.
    assert page.count("* plotly.js v") == 1
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)

    assert page.index('id="verdict-table"') < page.index('id="plot-latency"')
    table = page[page.index('id="verdict-table"') : page.index("</table>", page.index('id="verdict-table"'))]
    assert table.count("<tr class=") == len(verdict.objectives) == 15
    for result in verdict.objectives:
        assert html.escape(result.reason) in table
    assert '<span class="badge FAIL">FAIL</span>' in page
    assert "exit code 1" in page

    assert _plot_divs(page) == set(PLOT_IDS)
    assert "Not measured" not in page


def test_recorded_run_tables_show_the_derived_figures(recorded_run: RunDirectory) -> None:
    page = render_html(load_run(recorded_run))
    capacity = _section(page, "capacity")
    assert '<td>Replicas needed</td><td class="num">8</td>' in capacity
    assert "116.80" in capacity
    saturation = _section(page, "saturation")
    assert "150.2 rps" in saturation and "p95 80 ms, Kneedle" in saturation
    autoscaling = _section(page, "autoscaling")
    assert "2 → 3" in autoscaling and "maxReplicas" in autoscaling
    stages = _section(page, "stages")
    assert "http_503: 729" in stages and "timeout: 596" in stages
    metadata = _section(page, "metadata")
    assert "9b2920a7d41c5e1f0a7c3b9e2d8f6a4c1b0e5d37" in metadata
    assert "bentoml" in metadata and "1.4.22" in metadata
    assert "scenario.yaml (as run)" in metadata
    warnings = _section(page, "warnings")
    assert "scrape failed: connection refused" in warnings


def test_plots_carry_the_recorded_series(recorded_run: RunDirectory) -> None:
    page = render_html(load_run(recorded_run))
    # The scale decision is annotated on the replicas panel, and the knee is drawn.
    assert '"text":"2\\u21923"' in page
    assert '"name":"scale up decision"' in page
    assert '"name":"latency knee"' in page
    assert '"name":"timeout"' in page and '"name":"http_503"' in page
    assert '"name":"replica-3 CPU (cores)"' in page
    assert "p95 objective 150 ms" in page


def _without_plotly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make plotly unimportable, as in an install without the plots extra (its loaded modules too)."""
    for name in ["plotly", *(name for name in sys.modules if name.startswith("plotly."))]:
        monkeypatch.setitem(sys.modules, name, None)


PLOTS_EXTRA = f"drawing the plots needs the plots extra: pip install -e '{extras.CLONE}[plots]'"


def test_without_the_plots_extra_the_page_has_every_table_and_names_the_extra(
    recorded_run: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_plotly(monkeypatch)
    page = render_html(load_run(recorded_run))

    assert html.unescape(_section(page, "plots")).endswith(f"{PLOTS_EXTRA}</div>")
    assert '<a href="#plots">Plots</a>' in page
    assert not _plot_divs(page) and "plotly.js" not in page and "<script" not in page
    for table in ("verdict-table", "capacity-table", "saturation-table", "stages-table", "versions-table"):
        assert f'id="{table}"' in page


def test_without_the_plots_extra_the_comparison_page_names_it(
    recorded_run: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_plotly(monkeypatch)
    page = render_comparison_html(recorded_run, recorded_run, [])
    assert PLOTS_EXTRA in html.unescape(_section(page, "plots"))
    assert not _plot_divs(page) and "<script" not in page
    assert 'id="verdict-table-0"' in page and 'id="stages-table-1"' in page


def test_missing_replica_server_and_autoscaling_parts_say_not_measured(recorded_run: RunDirectory) -> None:
    for name in ("replica_counts.jsonl", "replica_samples.jsonl", "server_samples.jsonl", "events.jsonl"):
        recorded_run.file(name).unlink()
    recorded_run.file("metadata.json").unlink()
    _edit_scenario(recorded_run, autoscaling=None, capacity=None)
    _edit_json(recorded_run, "verdict.json", capacity=None, saturation=None, autoscaling=[])

    page = render_html(load_run(recorded_run))

    assert _plot_divs(page) == {"plot-latency", "plot-throughput", "plot-knee", "plot-errors"}
    assert "Not measured:</strong> no replica samples" in _section(page, "section-plot-cpu")
    assert "Not measured:</strong> no /metrics scrapes" in _section(page, "section-plot-server")
    assert "Replicas: not measured (no replica counts" in _section(page, "section-plot-latency")
    assert "autoscaling was not enabled" in _section(page, "autoscaling")
    assert "sets no capacity.target_peak_rps" in _section(page, "capacity")
    assert "saturation was not analysed" in _section(page, "saturation")
    assert "metadata.json is missing" in _section(page, "metadata")
    # The latency figure has no replicas panel at all, rather than a flat line at zero.
    assert '"name":"ready replicas"' not in page


def test_failed_scrapes_only_say_why_the_server_plot_is_missing(recorded_run: RunDirectory) -> None:
    path = recorded_run.file("server_samples.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    failed = [{**line, "ok": False, "error": "connection refused"} for line in lines][:5]
    path.write_text("".join(json.dumps(line) + "\n" for line in failed))

    section = _section(render_html(load_run(recorded_run)), "section-plot-server")

    assert "every /metrics scrape failed (5 failures; first: connection refused)" in section


def test_no_client_intervals_leaves_only_the_stage_level_plot(recorded_run: RunDirectory) -> None:
    recorded_run.file("client_intervals.jsonl").unlink()

    page = render_html(load_run(recorded_run))

    assert _plot_divs(page) == {"plot-knee", "plot-cpu", "plot-server"}
    for plot_id in ("plot-latency", "plot-throughput", "plot-errors"):
        assert "no client results" in _section(page, f"section-{plot_id}")


def test_a_run_without_failures_says_so_instead_of_an_empty_error_plot(recorded_run: RunDirectory) -> None:
    intervals = recorded_run.read_records(ClientInterval)
    clean = [dataclasses.replace(i, requests=i.requests - i.failures, failures=0, errors={}) for i in intervals]
    recorded_run.file(RECORD_FILES[ClientInterval]).write_text(
        "".join(json.dumps(to_json_dict(i)) + "\n" for i in clean)
    )

    page = render_html(load_run(recorded_run))

    assert "plot-errors" not in _plot_divs(page)
    total = sum(i.requests for i in clean)
    assert f"No failed requests: 0 of {total} requests failed." in _section(page, "section-plot-errors")


def test_text_from_the_run_is_escaped(recorded_run: RunDirectory) -> None:
    _edit_json(recorded_run, "verdict.json", warnings=["<script>alert('x')</script> & more"])

    page = render_html(load_run(recorded_run))

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page


def test_a_verdict_that_breaks_the_schema_is_refused_with_its_path(recorded_run: RunDirectory) -> None:
    data = json.loads(recorded_run.file("verdict.json").read_text())
    data["stages"][1]["requests"] = "many"
    recorded_run.file("verdict.json").write_text(json.dumps(data))

    with pytest.raises(ReportError, match=r"\$\.stages\[1\]\.requests"):
        render_html(load_run(recorded_run))


def test_missing_verdict_is_a_report_error(tmp_path: Path) -> None:
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(ReportError, match=r"verdict\.json: missing"):
        render_html(load_run(RunDirectory(empty)))


# --------------------------------------------------------------------------- comparison page


def test_comparison_page_shows_rows_and_both_runs(recorded_run: RunDirectory, tmp_path: Path) -> None:
    other = RunDirectory(tmp_path / "candidate")
    shutil.copytree(recorded_run.path, other.path)
    _edit_json(other, "metadata.json", run_id="candidate-run")
    rows = [
        ComparisonRow("throughput_rps", 150.2, 149.8, -0.0027, False, False, stage="step", reason="p = 0.8"),
        ComparisonRow("latency_p95_s", 0.080, 0.120, 0.5, True, True, stage="step", reason="CIs do not overlap"),
        ComparisonRow("latency_p99_s", 0.12, None, None, False, False, stage="peak"),
    ]

    page = render_comparison_html(recorded_run, other, rows)

    table = page[page.index('id="comparison-table"') : page.index("</table>", page.index('id="comparison-table"'))]
    assert table.count("<tr") == 4
    assert '<tr class="regression">' in table and "REGRESSION" in table
    assert "+50.0%" in table and "80 ms" in table and "120 ms" in table
    assert "1 significant regression(s) among 3 compared metric(s)" in page
    assert "20251009T083320Z-digits-recorded" in page and "candidate-run" in page
    assert _plot_divs(page) == {"plot-compare-p95-s", "plot-compare-achieved-rps"}
    assert 'id="verdict-table-0"' in page and 'id="verdict-table-1"' in page
    assert page.count("* plotly.js v") == 1


def test_comparison_page_from_a_real_comparison(recorded_run: RunDirectory) -> None:
    summary = summarize_run(recorded_run.read_stages(), recorded_run.read_records(ClientInterval))
    comparison = compare(summary, summary)
    rows = comparison_rows(comparison)

    page = render_comparison_html(recorded_run, recorded_run, rows)

    assert len(rows) == 4 * 5  # 4 stages x (throughput, error rate, p50, p95, p99)
    assert not any(row.regression for row in rows)
    assert "0 significant regression(s) among 20 compared metric(s)" in page


def test_comparison_without_rows_says_nothing_was_compared(recorded_run: RunDirectory) -> None:
    page = render_comparison_html(recorded_run, recorded_run, [])
    assert "the runs share no compared metric" in page


def test_verdict_round_trip_of_the_fixture_is_lossless(recorded_run: RunDirectory) -> None:
    data = json.loads(recorded_run.file("verdict.json").read_text())
    from harness.model import Verdict

    assert to_json_dict(from_json_dict(Verdict, data)) == data


def test_closed_model_buckets_plot_users_beside_the_offered_rate(recorded_run: RunDirectory) -> None:
    intervals = recorded_run.read_records(ClientInterval)
    closed = [dataclasses.replace(i, offered_rps=None, users=8) if i.stage == "low" else i for i in intervals]
    recorded_run.file(RECORD_FILES[ClientInterval]).write_text(
        "".join(json.dumps(to_json_dict(i)) + "\n" for i in closed)
    )

    page = render_html(load_run(recorded_run))

    assert '"name":"users (closed model)"' in page and '"name":"offered load (rps)"' in page
    assert '"text":"offered rps \\u002f users"' in page


def test_stages_not_judged_are_apart_from_the_curve(recorded_run: RunDirectory) -> None:
    data = json.loads(recorded_run.file("verdict.json").read_text())
    data["stages"][0]["judged"] = False
    recorded_run.file("verdict.json").write_text(json.dumps(data))

    page = render_html(load_run(recorded_run))

    assert '"name":"p95, not judged or invalid (ms)"' in page
    assert "low (not judged)" in _section(page, "stages")


def test_without_stages_json_the_timeline_starts_at_the_first_interval(recorded_run: RunDirectory) -> None:
    recorded_run.file("stages.json").unlink()

    page = render_html(load_run(recorded_run))

    assert _plot_divs(page) == set(PLOT_IDS)
    # No stage names are drawn over the plots when the stage windows are unknown.
    assert '"text":"step"' not in page
