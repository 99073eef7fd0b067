"""Requests with files, for real. The digits example's image upload (loadtests/digits-images.yaml, shortened) with
half the sends broken as clients break uploads: every kind answered 4xx, none 5xx, while the valid uploads are
checked against their labels. And tests/fixtures/files_service, which answers the size and SHA-256 of what it got:
raw binary bodies (one of 4 MiB), multipart uploads and forms, weighted, with a secret header, under users and
open-model stages, every answer checked against the data set or the same body's answer alone."""

from __future__ import annotations

import hashlib
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
FILES_SERVICE = ROOT / "tests" / "fixtures" / "files_service"
HARNESS = [sys.executable, "-m", "harness.cli"]
SECRET = "files-k3y-7c1d"
# The kinds of broken upload the bad-input mix sends to a multipart request with a file part.
UPLOAD_KINDS = {"truncated", "wrong_file_type", "text_for_file", "empty_part", "missing_part", "huge", "no_boundary"}

pytestmark = pytest.mark.integration


def run(scenario: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, "run", str(scenario)],
        cwd=scenario.parent,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def results(tmp_path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """The run's stages and Locust's statistics, by name, and its verdict."""
    (run_dir,) = (tmp_path / "reports").iterdir()
    verdict = json.loads((run_dir / "verdict.json").read_text())
    stages = {stage["name"]: stage for stage in verdict["stages"]}
    locust = {stat["name"]: stat for stat in json.loads((run_dir / "locust.json").read_text())}
    return stages, locust, verdict


def test_the_digits_image_upload_answers_every_kind_of_broken_upload_with_4xx(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "loadtests" / "digits-images.yaml").read_text())
    data["service"]["path"] = str(ROOT / "examples" / "digits")
    data["requests"][0]["dataset"] = str(ROOT / "examples" / "digits" / "images" / "labels.jsonl")
    data["target"]["replicas"] = 1
    data["stages"] = [
        {"name": "warmup", "duration_s": 3, "users": 2, "spawn_rate": 2, "judged": False},
        # An open stage: its 300 sends, and with the seeded mix which of them are broken, are the same on a busy
        # machine as on a quiet one (a closed stage of 8 users for 20 s kept a core busy on a shared machine).
        {"name": "mixed", "duration_s": 10, "arrival_rate_rps": 30, "arrival": "constant"},
    ]
    data["payload"]["malformed_fraction"] = 0.5
    # As in tests/test_bad_input_integration.py: bounds a busy machine meets, which a 5xx or a spoiled request
    # counted as an error would still miss by far.
    data["objectives"] = [{"metric": "bad_input_5xx_rate", "max": 0.05}, {"metric": "error_rate", "max": 0.1}]
    data["output"] = {"dir": str(tmp_path / "reports")}
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data))
    result = run(scenario)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    stages, locust, verdict = results(tmp_path)
    stage = stages["mixed"]
    print(
        f"{stage['bad_inputs']} broken uploads, {stage['bad_input_5xx']} 5xx, {stage['bad_input_accepted']} 2xx; "
        f"{stage['requests']} valid, {stage['failures']} failed, {stage['mismatches']} of {stage['checked']} wrong"
    )
    assert stage["bad_input_5xx"] == 0 and stage["bad_input_accepted"] == 0
    # The model's own error on these images is 4 in 100; load must not make it much worse.
    assert stage["checked"] == stage["requests"] and stage["mismatches"] <= 0.1 * stage["checked"]
    assert stage["failures"] <= 0.03 * stage["requests"], stage["errors"]
    assert stages["mixed"]["bad_inputs"] > 100 and stages["mixed"]["requests"] > 100
    statuses = {(o["metric"], o["stage"]): o["status"] for o in verdict["objectives"]}
    assert set(statuses.values()) == {"PASS"}, statuses
    # Every kind was sent and answered 4xx (Locust counts any other status as a failure).
    sent = {name.removeprefix("classify-image [malformed ").removesuffix("]"): stat for name, stat in locust.items()}
    assert set(sent) == {"classify-image", *UPLOAD_KINDS}, sorted(locust)
    assert all(sent[kind]["num_failures"] == 0 for kind in UPLOAD_KINDS), {k: sent[k]["num_failures"] for k in sent}


def write_blobs(folder: Path) -> dict[str, bytes]:
    """Files of 1 KiB, 100 KiB and 4 MiB of seeded random bytes."""
    rng = random.Random(26)
    folder.mkdir()
    blobs = {f"{size >> 10}k.bin": rng.randbytes(size) for size in (1 << 10, 100 << 10, 4 << 20)}
    for name, content in blobs.items():
        (folder / name).write_bytes(content)
    return blobs


def test_raw_multipart_and_form_bodies_arrive_intact_under_users_and_open_stages(tmp_path: Path) -> None:
    blobs = write_blobs(tmp_path / "blobs")
    uploads = tmp_path / "blobs.jsonl"
    uploads.write_text(
        "".join(
            json.dumps({"file": f"blobs/{name}", "sha256": hashlib.sha256(content).hexdigest(), "note": name}) + "\n"
            for name, content in blobs.items()
        )
    )
    texts = tmp_path / "texts.jsonl"
    rows = [
        {"text": text, "times": times, "expected": text * times} for text in ("a b", "é&=", "x") for times in (1, 3)
    ]
    texts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    key = {"X-Api-Key": "${FILES_TOKEN}"}
    data = {
        "name": "files",
        "service": {"path": str(FILES_SERVICE), "service": "service:FilesEcho"},
        "target": {"replicas": 1},
        "stages": [
            {"name": "warmup", "duration_s": 3, "users": 2, "spawn_rate": 2, "judged": False},
            {"name": "users", "duration_s": 10, "users": 4, "spawn_rate": 4},
            {"name": "open", "duration_s": 10, "arrival_rate_rps": 20},
        ],
        "requests": [
            {
                "name": "raw",
                "path": "/raw/",
                "headers": dict(key),
                "files": "blobs",
                "body_binary": {"file": "{{file}}", "content_type": "application/octet-stream"},
                "check": {"status": [200], "same_as_alone": {"field": "sha256", "bodies": 3}},
            },
            {
                "name": "upload",
                "weight": 2,
                "path": "/upload",
                "headers": dict(key),
                "dataset": "blobs.jsonl",
                "multipart": {"file": {"file": "{{file}}"}, "note": "{{note}}"},
                "check": {
                    "status": [200],
                    "fields": [
                        {"field": "sha256", "expected_column": "sha256"},
                        {"field": "note", "expected_column": "note"},
                    ],
                },
            },
            {
                "name": "form",
                "path": "/form",
                "headers": dict(key),
                "dataset": "texts.jsonl",
                "form": {"text": "{{text}}", "times": "{{times}}"},
                "check": {"status": [200], "fields": [{"field": "text", "expected_column": "expected"}]},
            },
        ],
        "objectives": [{"metric": "error_rate", "max": 0.05}, {"metric": "mismatch_rate", "max": 0.05}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data))
    result = run(scenario, {"FILES_API_KEY": SECRET, "FILES_TOKEN": SECRET})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "answers alone: 'raw' sends 3 of 3 sampled bodies" in result.stdout + result.stderr
    stages, locust, verdict = results(tmp_path)
    for name in ("users", "open"):
        stage = stages[name]
        print(f"{name}: {stage['requests']} requests, {stage['failures']} failed, {stage['mismatches']} mismatches")
        # Every request carried the key (401 without), and every answer matched its body's size and digest.
        assert stage["failures"] == 0 and stage["checked"] == stage["requests"] > 50 and stage["mismatches"] == 0
    counts = {name: locust[name]["num_requests"] for name in ("raw", "upload", "form")}
    print(f"requests by kind: {counts}")
    assert 1.4 < counts["upload"] / counts["raw"] < 2.8 and 1.4 < counts["upload"] / counts["form"] < 2.8, counts
    assert {o["status"] for o in verdict["objectives"]} == {"PASS"}
