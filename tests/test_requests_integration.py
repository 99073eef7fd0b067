"""Requests as users define them, for real: a weighted two-request scenario with a secret header and answer
checks against tests/fixtures/checked_service, and the same service broken only when it batches, which
mismatch_rate must FAIL, and answering 500 to bodies that are not JSON, which bad_input_5xx_rate must FAIL."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "tests" / "fixtures" / "checked_service"
HARNESS = [sys.executable, "-m", "harness.cli"]
SECRET = "k3y-0f-the-test-8d1e5"

pytestmark = pytest.mark.integration


LABEL_CHECK = {"fields": [{"field": "0", "expected_column": "label"}]}
# No expected label: each answer under load is compared with the same body's answer alone.
ALONE_CHECK = {"same_as_alone": {"field": "0", "bodies": 60}}


def scenario(
    tmp_path: Path, users: int = 8, check: dict[str, Any] = LABEL_CHECK, malformed_fraction: float = 0.0
) -> Path:
    rng = random.Random(0)
    rows = [[round(rng.uniform(0, 5), 1) for _ in range(4)] for _ in range(60)]
    dataset = tmp_path / "rows.jsonl"
    labelled = "expected_column" in json.dumps(check)
    dataset.write_text(
        "".join(
            json.dumps({"features": row, **({"label": int(sum(row)) % 3} if labelled else {})}) + "\n" for row in rows
        )
    )
    data: dict[str, Any] = {
        "name": "checked",
        "service": {"path": str(SERVICE), "service": "service:CheckedClassifier"},
        "stages": [
            {"name": "warmup", "duration_s": 3, "users": 2, "spawn_rate": 2, "judged": False},
            {"name": "steady", "duration_s": 10, "users": users, "spawn_rate": users},
        ],
        "requests": [
            {
                "name": "predict",
                "weight": 3,
                "path": "/predict",
                "headers": {"X-Api-Key": "${CHECKED_TOKEN}"},
                "body_template": {"rows": ["{{features}}"]},
                "dataset": str(dataset),
                "check": check,
            },
            {"name": "live", "method": "GET", "path": "/livez"},
        ],
        "objectives": [{"metric": "error_rate", "max": 0.01}, {"metric": "mismatch_rate", "max": 0.01}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    if malformed_fraction:
        data["payload"] = {"malformed_fraction": malformed_fraction}
        data["objectives"].append({"metric": "bad_input_5xx_rate", "max": 0.01})
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, "run", str(path)],
        cwd=path.parent,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def run_dir(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "reports").iterdir()
    return found


def steady(tmp_path: Path) -> dict[str, Any]:
    stages = json.loads((run_dir(tmp_path) / "verdict.json").read_text())["stages"]
    return dict(next(stage for stage in stages if stage["name"] == "steady"))


def test_weighted_requests_with_a_secret_header_and_checked_answers(tmp_path: Path) -> None:
    result = run(scenario(tmp_path), {"CHECKED_API_KEY": SECRET, "CHECKED_TOKEN": SECRET})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = steady(tmp_path)
    # Every predict carried the key (the service answers 401 without it), and the service sheds no load (its
    # max_latency_ms is far above what 8 users can queue): nothing fails.
    assert figures["errors"] == {}, figures["errors"]
    assert figures["checked"] > 200 and figures["mismatches"] == 0
    locust = json.loads((run_dir(tmp_path) / "locust.json").read_text())
    counts = {stat["name"]: stat["num_requests"] for stat in locust}
    assert 2.2 < counts["predict"] / counts["live"] < 4.0, counts  # weights 3:1
    leaks = [
        str(path)
        for path in run_dir(tmp_path).rglob("*")
        if path.is_file() and SECRET in path.read_text(errors="replace")
    ]
    assert not leaks, f"the header's value was written to {leaks}"
    assert SECRET not in result.stdout + result.stderr


def test_a_service_wrong_when_batched_and_500_on_bad_input_fails_both_objectives_by_name(tmp_path: Path) -> None:
    env = {
        "CHECKED_API_KEY": SECRET,
        "CHECKED_TOKEN": SECRET,
        "CHECKED_BROKEN_WHEN_BATCHED": "1",
        "CHECKED_ON_NOT_JSON": "500",
    }
    result = run(scenario(tmp_path, users=16, malformed_fraction=0.2), env)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    verdict = json.loads((run_dir(tmp_path) / "verdict.json").read_text())
    failed = {o["metric"]: o["reason"] for o in verdict["objectives"] if o["status"] == "FAIL"}
    assert sorted(failed) == ["bad_input_5xx_rate", "mismatch_rate"], failed
    assert failed["bad_input_5xx_rate"].startswith("bad-input 5xx rate ("), failed
    assert "mismatch_rate" in result.stdout and "bad_input_5xx_rate" in result.stdout
    figures = steady(tmp_path)
    print(f"bad inputs {figures['bad_inputs']}, 5xx {figures['bad_input_5xx']}; {figures['mismatches']} mismatches")
    assert figures["bad_input_5xx"] > 0
    # Right statuses for the valid requests: only the answers' labels give the batching bug away; the spoiled
    # requests stay out of failures whatever they got (their 500s above are not among the failures).
    assert figures["errors"] == {}, figures["errors"]
    # The 500s are the bodies that are not JSON: every one of them got one, counted as a failed bad input.
    locust = {stat["name"]: stat for stat in json.loads((run_dir(tmp_path) / "locust.json").read_text())}
    not_json = locust["predict [malformed not_json]"]
    assert not_json["num_requests"] > 0 and not_json["num_failures"] == not_json["num_requests"], not_json
    # BentoML reads a JSON body sent as text/plain: that bad input is answered 2xx, and the verdict says so.
    assert figures["bad_input_accepted"] > 0
    accepted = f"stage 'steady': {figures['bad_input_accepted']} of {figures['bad_inputs']} bad-input requests were"
    assert any(warning.startswith(accepted) for warning in verdict["warnings"]), verdict["warnings"]


@pytest.mark.parametrize("broken", [False, True], ids=["correct", "wrong-when-batched"])
def test_answers_under_load_are_compared_with_the_same_body_answered_alone(tmp_path: Path, broken: bool) -> None:
    """No label in the data: the bug shows only as answers that differ from the same body's answer alone."""
    env = {"CHECKED_API_KEY": SECRET, "CHECKED_TOKEN": SECRET, "CHECKED_BROKEN_WHEN_BATCHED": "1" if broken else "0"}
    result = run(scenario(tmp_path, users=16, check=ALONE_CHECK), env)
    assert result.returncode == (1 if broken else 0), result.stdout[-2000:] + result.stderr[-2000:]
    assert "answers alone: 'predict' sends 60 of 60 sampled bodies" in result.stdout + result.stderr
    verdict = json.loads((run_dir(tmp_path) / "verdict.json").read_text())
    statuses = {o["metric"]: o["status"] for o in verdict["objectives"]}
    figures = steady(tmp_path)
    print(f"broken={broken}: {figures['mismatches']} of {figures['checked']} answers differed from alone")
    assert figures["failures"] == 0 and figures["checked"] > 200
    if broken:
        assert statuses == {"error_rate": "PASS", "mismatch_rate": "FAIL"}, statuses
        assert figures["mismatches"] > 0.1 * figures["checked"]
    else:
        assert statuses == {"error_rate": "PASS", "mismatch_rate": "PASS"}, statuses
        assert figures["mismatches"] == 0


def test_an_unset_header_variable_exits_2_naming_the_field(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "CHECKED_TOKEN"}
    result = subprocess.run(
        [*HARNESS, "run", str(scenario(tmp_path))], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    assert "requests[0].headers.X-Api-Key: environment variable CHECKED_TOKEN is not set" in result.stderr
