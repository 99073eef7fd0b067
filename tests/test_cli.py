"""The CLI verbs that work on saved run directories: report, compare, validate (real subprocesses)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from harness.analysis.latency import LatencyHistogram

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "fixtures" / "run_recorded"
HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def copy_run(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(RECORDED, target)
    return target


def slow_down(run_dir: Path, factor: float) -> None:
    """Rewrite every interval's latency histogram with every latency multiplied by `factor`."""
    path = run_dir / "client_intervals.jsonl"
    lines = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        original = LatencyHistogram.decode(record["latency_hdr"])
        slower = LatencyHistogram()
        for value_s, count in original.iter_buckets():
            slower.record_s(value_s * factor, count)
        record["latency_hdr"] = slower.encode()
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")


def test_report_recomputes_the_verdict_and_renders_everything(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path, "run")
    saved = json.loads((run_dir / "verdict.json").read_text())
    (run_dir / "verdict.json").unlink()
    result = harness("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    for name in ("verdict.json", "report.html", "report.md", "junit.xml"):
        assert (run_dir / name).exists()
        assert str(run_dir / name) in result.stdout
    assert json.loads((run_dir / "verdict.json").read_text()) == saved, "the verdict is a function of the raw data"


def test_report_on_a_missing_directory_exits_2(tmp_path: Path) -> None:
    result = harness("report", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "not a run directory" in result.stderr


def test_compare_finds_no_regression_against_itself_and_one_against_a_slower_copy(tmp_path: Path) -> None:
    baseline = copy_run(tmp_path, "baseline")
    same = copy_run(tmp_path, "same")
    slower = copy_run(tmp_path, "slower")
    slow_down(slower, 1.5)

    unchanged = harness("compare", str(baseline), str(same))
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    html = tmp_path / "compare.html"
    regressed = harness("compare", str(baseline), str(slower), "--html", str(html))
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    assert "latency_p95" in regressed.stdout
    assert html.exists() and "<html" in html.read_text().lower()


def test_validate_accepts_every_checked_in_scenario() -> None:
    for scenario in sorted((ROOT / "loadtests").glob("*.yaml")):
        result = harness("validate", str(scenario))
        assert result.returncode == 0, result.stderr
        assert "valid" in result.stdout


def test_a_bad_override_names_the_key(tmp_path: Path) -> None:
    result = harness("validate", str(ROOT / "loadtests" / "default.yaml"), "--set", "target.replicas=-1")
    assert result.returncode == 2
    assert "target.replicas" in result.stderr and "Traceback" not in result.stderr
    result = harness("validate", str(ROOT / "loadtests" / "default.yaml"), "--set", "novalue")
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr
