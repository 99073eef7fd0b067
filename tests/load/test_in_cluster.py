"""The pure half of the in-cluster load driver: charts/loadgen's values, Job states and the master's printed
results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.config import Scenario, load_scenario
from harness.errors import ConfigError
from harness.load.in_cluster import job_finished, loadgen_values, marked_results
from harness.load.plan import LoadPlan, build_load_plan
from harness.load.shape import WORKERS_START_WAIT_S

ROOT = Path(__file__).resolve().parents[2]


def scenario(**changes: Any) -> Scenario:
    return load_scenario(ROOT / "loadtests" / "default.yaml").model_copy(update=changes)


def plan_of(scenario: Scenario) -> LoadPlan:
    return build_load_plan(scenario, endpoints_file=Path("/run/endpoints.json"), intervals_dir=Path("/run/intervals"))


def test_loadgen_values_plan_the_scenario_for_the_workers() -> None:
    base = scenario()
    values = loadgen_values(
        plan_of(base), "lg:2", "run-1", service_url="http://svc.ns.svc.cluster.local:3000", workers=4
    )
    assert values["workers"] == 4 and values["users"] == 0
    assert LoadPlan.from_json(values["harnessPlan"]).processes == 4
    # The stages, the drain after the last one (min(request timeout, 5 s)), the master's longest wait for its
    # workers' calibration, and a 5 s margin.
    assert values["runTimeSeconds"] == int(base.duration_s) + 5 + WORKERS_START_WAIT_S + 5
    assert values["target"] == {"host": "http://svc.ns.svc.cluster.local:3000"}
    assert values["payloadJsonl"] == ""


def test_loadgen_values_refuse_a_payload_too_large_for_a_configmap(tmp_path: Path) -> None:
    bodies = tmp_path / "big.jsonl"
    bodies.write_text(('{"x": "' + "a" * 1000 + '"}\n') * 1000)
    base = scenario()
    base = base.model_copy(update={"payload": base.payload.model_copy(update={"source": "jsonl", "file": bodies})})
    with pytest.raises(ConfigError, match="too large for the loadgen chart's ConfigMap"):
        loadgen_values(plan_of(base), "lg:2", "run-1", service_url="http://svc:3000")


def test_job_finished_reads_the_job_conditions() -> None:
    assert job_finished(None) is None
    assert job_finished({"status": {"active": 1}}) is None
    assert job_finished({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) is True
    assert job_finished({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) is False
    assert job_finished({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}) is None


def test_marked_results_split_the_master_log_by_file() -> None:
    log = "\n".join(
        [
            "some locust output",
            "=== harness-loadgen-result locust.json ===",
            "[",
            '{"name": "/classify"}',
            "]=== harness-loadgen-end ===",
            "=== harness-loadgen-result locust_failures.csv ===",
            "Method,Name,Error",
            "=== harness-loadgen-end ===",
            "trailing",
        ]
    )
    results = marked_results(log)
    assert results == {"locust.json": '[\n{"name": "/classify"}\n]', "locust_failures.csv": "Method,Name,Error"}
