"""The bad-input mix for real: a share of spoiled requests against the digits example, which must answer every
one of them 4xx (0 5xx), while error_rate and latency still judge the valid traffic only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli"]

pytestmark = pytest.mark.integration


def test_the_digits_example_answers_every_kind_of_bad_input_with_4xx(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "loadtests" / "default.yaml").read_text())
    data["service"]["path"] = str(ROOT / "examples" / "digits")
    data["target"]["replicas"] = 1
    data["stages"] = [
        {"name": "warmup", "duration_s": 3, "users": 2, "spawn_rate": 2, "judged": False},
        {"name": "mixed", "duration_s": 20, "users": 8, "spawn_rate": 8},
    ]
    data["payload"]["malformed_fraction"] = 0.5
    # Bounds of 0.05: with no failure a rate's 95% upper bound is below that from about 75 requests on, so PASS
    # does not hinge on how fast a busy machine serves (at 0.01 it would need about 380; one CI run had 374).
    data["objectives"] = [{"metric": "bad_input_5xx_rate", "max": 0.05}, {"metric": "error_rate", "max": 0.05}]
    data["output"] = {"dir": str(tmp_path / "reports")}
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [*HARNESS, "run", str(scenario)],
        cwd=tmp_path,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = (tmp_path / "reports").iterdir()
    verdict = json.loads((run_dir / "verdict.json").read_text())
    mixed = next(stage for stage in verdict["stages"] if stage["name"] == "mixed")
    print(f"bad inputs {mixed['bad_inputs']}, 5xx {mixed['bad_input_5xx']}; valid requests {mixed['requests']}")
    assert mixed["bad_inputs"] > 200 and mixed["bad_input_5xx"] == 0
    assert mixed["failures"] == 0  # spoiled requests stay out of error_rate
    assert mixed["requests"] > 200, "valid traffic went on beside the spoiled requests"
    share = mixed["bad_inputs"] / (mixed["bad_inputs"] + mixed["requests"])
    assert 0.45 < share < 0.55
    statuses = {o["metric"]: o["status"] for o in verdict["objectives"]}
    assert statuses == {"bad_input_5xx_rate": "PASS", "error_rate": "PASS"}
    # Every kind was sent, and answered 4xx (Locust counts an unexpected status as a failure).
    locust = {stat["name"]: stat for stat in json.loads((run_dir / "locust.json").read_text())}
    kinds = {name for name in locust if "[malformed " in name}
    assert len(kinds) == 7, sorted(locust)
    assert all(locust[name]["num_failures"] == 0 for name in kinds), {n: locust[n]["num_failures"] for n in kinds}
