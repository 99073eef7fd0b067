"""The bad-input mix for real: a share of spoiled requests against the digits example, which must answer every
one of them 4xx (0 5xx), while error_rate and latency still judge the valid traffic only; both for the default
payload to service.endpoint and for the scenario's own `requests:`. And a test service whose replica dies on bad
input, which must fail bad_input_5xx_rate naming the replica."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.load.payloads import build_bodies

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ROOT / "tests" / "fixtures" / "checked_service"
HARNESS = [sys.executable, "-m", "harness.cli"]

pytestmark = pytest.mark.integration


def digits_scenario(tmp_path: Path) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "loadtests" / "default.yaml").read_text())
    data["service"]["path"] = str(ROOT / "examples" / "digits")
    data["target"]["replicas"] = 1
    data["stages"] = [
        {"name": "warmup", "duration_s": 3, "users": 2, "spawn_rate": 2, "judged": False},
        # An open stage: its 300 sends, and with the seeded mix which of them are spoiled, are the same on a busy
        # machine as on a quiet one (8 users for 20 s sent 374 to 6000, and kept a core busy on a shared machine).
        {"name": "mixed", "duration_s": 10, "arrival_rate_rps": 30, "arrival": "constant"},
    ]
    data["payload"]["malformed_fraction"] = 0.5
    # bad_input_5xx_rate <= 0.05: with no 5xx its 95% upper bound is below that from about 75 bad inputs on (the
    # stage sends about 150; at 0.01 it would need about 380).
    # error_rate <= 0.1: the valid requests may include the few 503s a busy machine gets from BentoML's batching
    # queue (up to 3% below), whose upper bound at 100 requests is 8.5% (at 0.05 one 503 in 100 would be WARN);
    # spoiled requests counted as errors would still make it about 0.5, a FAIL.
    data["objectives"] = [{"metric": "bad_input_5xx_rate", "max": 0.05}, {"metric": "error_rate", "max": 0.1}]
    data["output"] = {"dir": str(tmp_path / "reports")}
    return dict(data)


def run_and_check_every_bad_input_got_4xx(tmp_path: Path, data: dict[str, Any], request_name: str) -> dict[str, Any]:
    """Run the scenario; check every kind of bad input got a 4xx and the valid traffic was judged; the mixed stage."""
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
    # More than 100: with no 5xx, the 95% upper bound of bad_input_5xx_rate is then below its 0.05 bound.
    assert mixed["bad_inputs"] > 100 and mixed["bad_input_5xx"] == 0 and mixed["bad_input_accepted"] == 0
    # Spoiled requests stay out of error_rate: every one is a 4xx, yet failures are a few valid requests at most
    # (a busy machine can get a 503 from BentoML's batching queue).
    assert mixed["failures"] <= 0.03 * mixed["requests"], mixed["errors"]
    assert mixed["requests"] > 100, "valid traffic went on beside the spoiled requests"
    share = mixed["bad_inputs"] / (mixed["bad_inputs"] + mixed["requests"])
    assert 0.45 < share < 0.55
    statuses = {o["metric"]: o["status"] for o in verdict["objectives"]}
    assert statuses == {"bad_input_5xx_rate": "PASS", "error_rate": "PASS"}
    # Every kind was sent, and answered 4xx (Locust counts an unexpected status as a failure).
    locust = {stat["name"]: stat for stat in json.loads((run_dir / "locust.json").read_text())}
    kinds = {name for name in locust if name.startswith(f"{request_name} [malformed ")}
    assert len(kinds) == 7, sorted(locust)
    assert all(locust[name]["num_failures"] == 0 for name in kinds), {n: locust[n]["num_failures"] for n in kinds}
    return dict(mixed)


def test_the_digits_example_answers_every_kind_of_bad_input_with_4xx(tmp_path: Path) -> None:
    run_and_check_every_bad_input_got_4xx(tmp_path, digits_scenario(tmp_path), "/classify")


def test_bad_input_spoils_the_scenarios_own_requests_too(tmp_path: Path) -> None:
    """`requests:` instead of the default payload: the mix spoils each request's own bodies, sent to its path with
    its headers, and the valid ones are still checked."""
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_bytes(b"".join(body + b"\n" for body in build_bodies("digits", file=None, batch_rows=2, seed=3)[:20]))
    data = digits_scenario(tmp_path)
    data["payload"] = {"malformed_fraction": 0.5}
    data["requests"] = [
        {
            "name": "classify-two",
            "path": "/classify",
            "headers": {"X-Client": "bad-input-test"},
            "body_file": str(bodies),
            "check": {"status": [200], "fields": [{"field": "labels.1", "among": list(range(10))}]},
        }
    ]
    mixed = run_and_check_every_bad_input_got_4xx(tmp_path, data, "classify-two")
    assert mixed["checked"] > 100 and mixed["mismatches"] == 0  # valid answers checked, spoiled ones not


def test_a_replica_that_dies_on_bad_input_fails_bad_input_5xx_rate_naming_it(tmp_path: Path) -> None:
    """tests/fixtures/checked_service with CHECKED_ON_NOT_JSON=die: its replica dies at the first body that is not
    JSON, and stays dead (no restart within the stage). The verdict names the crash, not only a rate."""
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"rows": [[1.0, 2.0]]}\n{"rows": [[3.0, 4.5]]}\n')
    env = {"CHECKED_API_KEY": "dies-key", "CHECKED_ON_NOT_JSON": "die"}
    data = {
        "name": "dies-on-bad-input",
        "service": {"path": str(CHECKED), "service": "service:CheckedClassifier", "env": env},
        "target": {"replicas": 1, "restart_backoff_s": 300},
        # Long enough that the crash is seen (about 2 s after it) inside the stage, where it counts.
        "stages": [{"name": "mixed", "duration_s": 10, "users": 4, "spawn_rate": 4}],
        "payload": {"malformed_fraction": 0.5},
        "requests": [
            {"name": "predict", "path": "/predict", "headers": {"X-Api-Key": "dies-key"}, "body_file": str(bodies)}
        ],
        "objectives": [{"metric": "bad_input_5xx_rate", "max": 0.05}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [*HARNESS, "run", str(scenario)], env=dict(os.environ), capture_output=True, text=True, timeout=400, check=False
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = (tmp_path / "reports").iterdir()
    (judged,) = json.loads((run_dir / "verdict.json").read_text())["objectives"]
    print(judged["reason"])
    assert judged["status"] == "FAIL" and "replica replica-1 died while bad input was sent" in judged["reason"]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    (crashed,) = [event["detail"] for event in events if event["kind"] == "replica_crashed"]
    assert crashed["replica"] == "replica-1" and crashed["exit_code"] == -9, crashed
