"""load.locustfile for real: a user's own FastHttpUser and HttpUser classes drive the digits example under the
scenario's stages; their requests, and the failures their own checks declare, are recorded and judged."""

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

USERS = """
from locust import FastHttpUser, HttpUser, between, task

ROW = {"images": [[float(i % 17) for i in range(64)]]}


class Classifier(FastHttpUser):
    weight = 3
    wait_time = between(0.0, 0.01)

    @task
    def classify(self):
        with self.client.post("/classify", json=ROW, catch_response=True) as response:
            if response.status_code == 200 and len(response.json()["labels"]) != 1:
                response.failure("one label expected")


class Picky(HttpUser):
    weight = 1
    wait_time = between(0.02, 0.05)

    @task
    def never_satisfied(self):
        with self.client.get("/livez", name="picky", catch_response=True) as response:
            response.failure("this user rejects every answer")
"""


def test_the_users_own_locust_users_run_under_the_stages_and_verdict(tmp_path: Path) -> None:
    (tmp_path / "my_users.py").write_text(USERS)
    data = {
        "name": "own-users",
        "service": {"path": str(ROOT / "examples" / "digits"), "service": "service:DigitsClassifier"},
        "stages": [
            {"name": "warmup", "duration_s": 3, "users": 2, "spawn_rate": 2, "judged": False},
            {"name": "steady", "duration_s": 10, "users": 8, "spawn_rate": 8},
        ],
        "load": {"locustfile": "my_users.py"},  # relative to the scenario file
        "objectives": [{"metric": "error_rate", "max": 0.01}, {"metric": "latency_p95_ms", "max": 2000}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [*HARNESS, "run", str(scenario)], env=dict(os.environ), capture_output=True, text=True, timeout=400, check=False
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]  # Picky's failures fail error_rate
    (run_dir,) = (tmp_path / "reports").iterdir()
    verdict = json.loads((run_dir / "verdict.json").read_text())
    statuses = {o["metric"]: o["status"] for o in verdict["objectives"]}
    assert statuses == {"error_rate": "FAIL", "latency_p95_ms": "PASS"}
    locust = {stat["name"]: stat for stat in json.loads((run_dir / "locust.json").read_text())}
    assert set(locust) == {"/classify", "picky"}
    assert (
        locust["/classify"]["num_failures"] == 0 and locust["picky"]["num_failures"] == locust["picky"]["num_requests"]
    )
    stages = {stage["name"]: stage for stage in verdict["stages"]}
    recorded = sum(stage["requests"] for stage in stages.values())
    sent = sum(stat["num_requests"] for stat in locust.values())
    assert recorded <= sent and recorded >= 0.95 * sent  # the drain's last answers may land after the stages
    steady = stages["steady"]
    assert set(steady["errors"]) == {"error_CatchResponseError"}
    share = steady["failures"] / steady["requests"]
    print(f"steady: {steady['requests']} requests, {steady['failures']} failures (picky share {share:.2f})")
    assert 0.02 < share < 0.6
