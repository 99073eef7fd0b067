"""report.md: the short pull-request summary of a run."""

from __future__ import annotations

import json
import re

from harness.report.markdown import render_markdown
from harness.rundir import RunDirectory


def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(f"### {heading}\n\n", 1)[1].split("\n\n", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")][1:]


def test_recorded_run_summary(recorded_run: RunDirectory) -> None:
    text = render_markdown(recorded_run)
    verdict = recorded_run.read_verdict()

    assert text.startswith("## ❌ FAIL: `digits-recorded`\n")
    assert "Run `20251009T083320Z-digits-recorded`, exit code 1" in text
    objectives = _table_rows(text, "Objectives")
    assert len(objectives) == len(verdict.objectives)
    assert objectives[3].startswith(
        "| latency_p95_ms <= 150 | peak | ❌ FAIL | 1334 ms | ≤ 150 ms | [915.4 ms, 1753 ms] |"
    )
    assert "| error_rate <= 0.01 | peak | ❌ FAIL | 10.8% | ≤ 1% |" in text
    stages = _table_rows(text, "Stages")
    assert [row.split(" | ")[0] for row in stages] == ["| low", "| base", "| step", "| peak"]
    assert "| 2–3 |" in stages[2]
    assert "| 300 rps | 30% | 50.07 rps | 8 | 0.5 cores | 512 MiB | 3 | 116.80 |" in text
    assert "| 150.2 rps | 50.07 rps | peak | 150.2 rps | 80 ms |" in text
    assert "| step | 6 s | 18 s |" in text
    assert "- metrics collector (replica-3): scrape failed" in text
    files = text.rsplit("Files: ", 1)[1]
    for name in ("`report.html`", "`junit.xml`", "`verdict.json`", "`client_intervals.jsonl`", "`metadata.json`"):
        assert name in files
    assert "`report.md`" not in files
    # Short enough for a PR comment.
    assert len(text) < 10_000


def test_pipes_and_newlines_in_text_do_not_break_tables(recorded_run: RunDirectory) -> None:
    path = recorded_run.file("verdict.json")
    data = json.loads(path.read_text())
    data["objectives"][0]["reason"] = "a | b\nc"
    path.write_text(json.dumps(data))

    rows = _table_rows(render_markdown(recorded_run), "Objectives")

    assert rows[0].endswith("| a \\| b c |")
    # Seven cells: eight unescaped pipes on every row.
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 8 for row in rows)


def test_missing_capacity_and_saturation_are_explained(recorded_run: RunDirectory) -> None:
    path = recorded_run.file("verdict.json")
    data = json.loads(path.read_text())
    data.update(capacity=None, saturation=None, autoscaling=[], warnings=[])
    path.write_text(json.dumps(data))

    text = render_markdown(recorded_run)

    assert "### Capacity plan\n\n_Not computed: the scenario sets no capacity.target_peak_rps._" in text
    assert "### Saturation\n\n_Not analysed._" in text
    assert "### Autoscaling" not in text and "### Warnings" not in text
