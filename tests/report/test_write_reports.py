"""write_reports: what `harness report RUN_DIR` writes, purely from the saved run directory."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import ReportError
from harness.report import REPORT_FILES, write_reports
from harness.rundir import RunDirectory


def test_writes_the_three_reports(recorded_run: RunDirectory) -> None:
    paths = write_reports(recorded_run)

    assert [p.name for p in paths] == list(REPORT_FILES) == ["report.html", "report.md", "junit.xml"]
    assert all(p.parent == recorded_run.path and p.stat().st_size > 0 for p in paths)
    assert not list(recorded_run.path.glob("*.tmp"))
    html, markdown, junit = (p.read_text(encoding="utf-8") for p in paths)
    assert "Load test report: digits-recorded" in html
    assert markdown.startswith("## ❌ FAIL")
    assert ET.fromstring(junit).get("name") == "harness.digits-recorded"


def test_rerendering_is_a_pure_function_of_the_directory(recorded_run: RunDirectory, tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_reports(recorded_run)]
    moved = RunDirectory(tmp_path / "elsewhere")
    shutil.copytree(recorded_run.path, moved.path)
    for name in REPORT_FILES:
        moved.file(name).unlink()

    again = [p.read_bytes() for p in write_reports(moved)]

    assert again == first


def test_a_corrupt_verdict_writes_nothing(recorded_run: RunDirectory) -> None:
    data = json.loads(recorded_run.file("verdict.json").read_text())
    data["objectives"][0]["status"] = "GREEN"
    recorded_run.file("verdict.json").write_text(json.dumps(data))

    with pytest.raises(ReportError, match=r"verdict.json: does not match .* at \$\.objectives\[0\]\.status"):
        write_reports(recorded_run)

    assert not any(recorded_run.file(name).exists() for name in REPORT_FILES)


def test_a_torn_record_line_is_named(recorded_run: RunDirectory) -> None:
    path = recorded_run.file("replica_counts.jsonl")
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:20]
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(ReportError, match=r"replica_counts.jsonl:4: not a valid ReplicaCount record"):
        write_reports(recorded_run)


def test_a_verdict_written_before_schema_version_2_still_renders(recorded_run: RunDirectory) -> None:
    data = json.loads(recorded_run.file("verdict.json").read_text())
    assert data["schema_version"] == 3 and data["run_id"] and data["scenario_name"]
    for key in ("schema_version", "run_id", "scenario_name", "bottlenecks"):
        data.pop(key)
    for result in data["objectives"]:
        result.pop("unit")
        result.pop("request")
    for stage in data["stages"]:
        stage.pop("by_request")
    recorded_run.file("verdict.json").write_text(json.dumps(data))

    paths = write_reports(recorded_run)

    assert [p.name for p in paths] == ["report.html", "report.md", "junit.xml"]
    verdict = recorded_run.read_verdict()
    assert verdict.schema_version == 1 and verdict.run_id is None and {r.unit for r in verdict.objectives} == {""}
