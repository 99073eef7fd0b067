"""report.md: the short pull-request summary of a run."""

from __future__ import annotations

import json
import re
from html import escape

import pytest
import yaml

from harness.report._rundata import load_run
from harness.report.markdown import render_markdown
from harness.rundir import RunDirectory


def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(f"### {heading}\n\n", 1)[1].split("\n\n", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")][1:]


def test_recorded_run_summary(recorded_run: RunDirectory) -> None:
    text = render_markdown(load_run(recorded_run))
    verdict = recorded_run.read_verdict()

    assert text.startswith("## ❌ FAIL: `digits-recorded`\n")
    assert "Run `20251009T083320Z-digits-recorded`, exit code 1" in text
    assert "load generator overhead: not measured." in text
    objectives = _table_rows(text, "Objectives")
    assert len(objectives) == len(verdict.objectives)
    assert objectives[3].startswith(
        "| latency_p95_ms &lt;= 150 | peak | ❌ FAIL | 1334 ms | ≤ 150 ms | [569.8 ms, 3125 ms] |"
    )
    assert "| error_rate &lt;= 0.01 | peak | ❌ FAIL | 10.8% | ≤ 1% |" in text
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

    rows = _table_rows(render_markdown(load_run(recorded_run)), "Objectives")

    assert rows[0].endswith("| a \\| b c |")
    # Seven cells: eight unescaped pipes on every row.
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 8 for row in rows)


def test_missing_capacity_and_saturation_are_explained(recorded_run: RunDirectory) -> None:
    path = recorded_run.file("verdict.json")
    data = json.loads(path.read_text())
    data.update(capacity=None, saturation=None, autoscaling=[], warnings=[])
    path.write_text(json.dumps(data))

    text = render_markdown(load_run(recorded_run))

    assert "### Capacity plan\n\n_Not computed: the scenario sets no capacity.target_peak_rps._" in text
    assert "### Saturation\n\n_Not analysed._" in text
    assert "### Autoscaling" not in text and "### Warnings" not in text


def unescaped_pipes(row: str) -> int:
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", row))


def test_names_and_reasons_cannot_inject_html_or_markdown(recorded_run: RunDirectory) -> None:
    hostile = "<script>alert(1)</script> | **bold** [link](javascript:x) `code` _em_ ~~s~~ \\"
    scenario_path = recorded_run.file("scenario.yaml")
    scenario = yaml.safe_load(scenario_path.read_text())
    scenario["name"] = "`<b>x</b>`"
    scenario_path.write_text(yaml.safe_dump(scenario))
    metadata_path = recorded_run.file("metadata.json")
    metadata = json.loads(metadata_path.read_text())
    metadata["run_id"] = "<img src=x onerror=alert(1)>"
    metadata_path.write_text(json.dumps(metadata))
    verdict_path = recorded_run.file("verdict.json")
    verdict = json.loads(verdict_path.read_text())
    verdict["objectives"][0].update(objective=hostile, stage="<b>peak</b>", reason=hostile)
    verdict["stages"][0].update(name=hostile, invalid_reasons=["# heading", "1. item"], sample_shortfalls={})
    verdict["warnings"] = ["# not a heading\n- not an item", "<iframe src=x>", "1) not a list"]
    verdict_path.write_text(json.dumps(verdict))

    text = render_markdown(load_run(recorded_run))

    # Outside code spans (where HTML is literal) no tag or markup survives.
    body = text.split("### Objectives", 1)[1]
    for raw in ("<script", "<b>", "<iframe", "**bold**", "[link](", "~~s~~"):
        assert raw not in body, raw
    assert text.startswith("## ❌ FAIL: `` `<b>x</b>` ``\n"), "a code span shows the name literally"
    assert "Run `<img src=x onerror=alert(1)>`, exit code 1" in text
    escaped = (
        "&lt;script&gt;alert(1)&lt;/script&gt; \\| \\*\\*bold\\*\\* \\[link\\](javascript:x) \\`code\\` \\_em\\_ "
        "\\~\\~s\\~\\~ \\\\"
    )
    objective = _table_rows(text, "Objectives")[0]
    assert objective.startswith(f"| {escaped} | &lt;b&gt;peak&lt;/b&gt; | ")
    assert objective.endswith(f"| {escaped} |")
    assert all(unescaped_pipes(row) == 8 for row in _table_rows(text, "Objectives"))
    stage = _table_rows(text, "Stages")[0]
    assert stage.startswith(f"| {escaped} | ") and stage.endswith("| \\# heading; 1\\. item |")
    assert all(unescaped_pipes(row) == 11 for row in _table_rows(text, "Stages"))
    warnings = text.split("### Warnings\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert warnings == ["- \\# not a heading - not an item", "- &lt;iframe src=x&gt;", "- 1\\) not a list"]

    # A CommonMark renderer (with GFM tables) shows every text exactly as it was written.
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(text)
    assert html.count(f"<td>{escape(hostile, quote=False)}</td>") == 3
    assert "<td>&lt;b&gt;peak&lt;/b&gt;</td>" in html
    assert "<li># not a heading - not an item</li>\n<li>&lt;iframe src=x&gt;</li>\n<li>1) not a list</li>" in html


@pytest.mark.parametrize(
    ("name", "shown"),
    [("digits", "`digits`"), ("a`b", "``a`b``"), ("`a", "`` `a ``"), ("a | b", "`a | b`")],
)
def test_the_scenario_name_is_a_literal_code_span(recorded_run: RunDirectory, name: str, shown: str) -> None:
    path = recorded_run.file("scenario.yaml")
    scenario = yaml.safe_load(path.read_text())
    scenario["name"] = name
    path.write_text(yaml.safe_dump(scenario))
    assert render_markdown(load_run(recorded_run)).startswith(f"## ❌ FAIL: {shown}\n")
