"""Issue 23's first failure, reproduced: a service shaped like BentoML's iris quickstart, sent a bare JSON list (as
BentoML's own example locustfile posts), answers every request 400. The verdict FAILs, and the terminal, report.md,
verdict.json and the diagnosis say why: the errors by kind with their count and what the service answered (its
validation message), not "unexplained"."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli"]
ANSWER = (
    '{"error":"1 validation error for Input","detail":[{"type":"model_type","loc":[],"msg":"Input should be an object"'
)

pytestmark = pytest.mark.integration


def test_a_service_answering_400_to_a_bare_list_is_explained_everywhere(tmp_path: Path) -> None:
    scenario = {
        "name": "iris-bare-list",
        "service": {"path": str(ROOT / "tests" / "fixtures" / "iris_like"), "service": "service:IrisClassifier"},
        "target": {"kind": "local", "replicas": 1},
        "stages": [{"name": "users-2", "duration_s": 6, "users": 2}],
        "requests": [{"name": "classify", "path": "/classify", "body_template": [[5.9, 3.0, 5.1, 1.8]]}],
        "objectives": [{"metric": "error_rate", "max": 0.01}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    path = tmp_path / "iris.yaml"
    path.write_text(yaml.safe_dump(scenario))
    result = subprocess.run(
        [*HARNESS, "run", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == ExitCode.FAIL, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = (tmp_path / "reports").iterdir()
    verdict = json.loads((run_dir / "verdict.json").read_text())
    (stage,) = verdict["stages"]
    requests = stage["requests"]
    assert requests > 20 and stage["failures"] == requests and stage["errors"] == {"http_400": requests}
    (sample,) = stage["error_samples"]["http_400"]
    assert sample.startswith(ANSWER), sample
    described = f"{requests} of {requests} requests failed: http_400 x{requests} (answered: '{sample}')"
    # The terminal (a pipe: 160 columns, so the line may wrap), report.md and the diagnosis say the same.
    terminal = " ".join(result.stdout.split())
    assert f"errors: users-2: {described}" in terminal, result.stdout[-3000:]
    # Markdown markup in the answer is backslash-escaped in report.md.
    assert f"- users-2: {described}" in re.sub(r"\\(.)", r"\1", (run_dir / "report.md").read_text())
    # The failing answers explain the FAIL; whether the replica also counts as CPU-bound (2 users sending as fast
    # as it answers) depends on what else the machine runs, so only this cause is asserted.
    (bottleneck,) = [b for b in verdict["bottlenecks"] if b["cause"] == "failing_requests"]
    assert bottleneck["evidence"] == f"{described} (100%)"
    assert "unexplained" not in result.stdout
