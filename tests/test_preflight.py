"""What a run checks before it builds or deploys anything, for the in-cluster load generator: the scenario's own
requests and locustfile are accepted, and files too large to send to the cluster are named in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.config import load_scenario
from harness.errors import ConfigError
from harness.load import pod_files
from harness.preflight import preflight

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "loadtests" / "default.yaml"
IN_CLUSTER = {
    "target.kind": "kubernetes",
    "target.kubernetes.image": "s:1",
    "target.kubernetes.loadgen": "in-cluster",
}


def with_requests(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"pixels": [0.0]}\n{"pixels": [1.0]}\n')
    request = {
        "name": "classify",
        "path": "/classify",
        "headers": {"Authorization": "Bearer ${PREFLIGHT_TOKEN}"},
        "body_template": {"images": ["{{pixels}}"]},
        "dataset": str(rows),
        "check": {"same_as_alone": True},
    }
    return {**IN_CLUSTER, "requests": [request], "payload.malformed_fraction": 0.1, **overrides}


def test_requests_and_a_locustfile_are_accepted_for_in_cluster_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFLIGHT_TOKEN", "t")
    preflight(load_scenario(DEFAULT, with_requests(tmp_path)))
    locustfile = tmp_path / "users.py"
    locustfile.write_text(
        "from locust import HttpUser, task\n\nclass U(HttpUser):\n    @task\n    def t(self):\n        pass\n"
    )
    preflight(
        load_scenario(
            DEFAULT,
            {
                **IN_CLUSTER,
                "load.locustfile": str(locustfile),
                "stages": [{"name": "users", "duration_s": 5, "users": 1}],
            },
        )
    )


def test_a_header_variable_that_is_not_set_is_named_before_anything_is_deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFLIGHT_TOKEN", raising=False)
    with pytest.raises(
        ConfigError, match=r"requests\[0\]\.headers\.Authorization: environment variable PREFLIGHT_TOKEN"
    ):
        preflight(load_scenario(DEFAULT, with_requests(tmp_path)))


def test_files_too_large_for_the_cluster_are_named_before_anything_is_deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFLIGHT_TOKEN", "t")
    monkeypatch.setattr(pod_files, "MAX_FILES_BYTES", 16)
    with pytest.raises(ConfigError, match=r"files come to 0.0 MiB \(0-rows.jsonl 0.0 MiB\); the harness sends at most"):
        preflight(load_scenario(DEFAULT, with_requests(tmp_path)))
    scenario = load_scenario(DEFAULT, with_requests(tmp_path, **{"target.kubernetes.loadgen": "host"}))
    preflight(scenario)  # nothing is sent to the cluster when Locust runs on this machine
