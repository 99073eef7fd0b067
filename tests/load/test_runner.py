"""The Locust subprocess runner: a load generator that dies before its test starts is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import parse_scenario
from harness.errors import DeployError, LoadError
from harness.load import runner
from harness.load.endpoints import write_endpoints
from harness.load.plan import build_load_plan
from harness.model import ClientInterval, LoadgenOverhead


@pytest.mark.integration
def test_a_locust_that_crashes_at_startup_is_a_load_error_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "locustfile.py"
    broken.write_text("raise RuntimeError('payload store unreachable')\n")
    monkeypatch.setattr(runner, "LOCUSTFILE", broken)
    scenario = parse_scenario(
        {
            "name": "t",
            "service": {"path": str(tmp_path), "service": "s:S"},
            "stages": [{"name": "a", "duration_s": 5, "users": 1}],
        }
    )
    records: list[ClientInterval] = []
    endpoints = tmp_path / "endpoints.json"
    write_endpoints(endpoints, ["http://127.0.0.1:9"])
    plan = build_load_plan(scenario, endpoints_file=endpoints, intervals_dir=tmp_path / "intervals")
    process = runner.LocustProcess(
        plan,
        tmp_path,
        records.append,
        json_file=tmp_path / "locust.json",
        log_file=tmp_path / "locust.log",
    )
    process.start()
    with pytest.raises(LoadError, match="payload store unreachable"):
        process.wait(poll_s=0.1)
    assert records == []
    assert process.process is not None and process.process.poll() is not None, "Locust's process has ended"


def test_the_interval_tail_keeps_each_process_calibration_apart_from_its_records(tmp_path: Path) -> None:
    records: list[ClientInterval] = []
    tail = runner.IntervalTail(tmp_path, records.append)
    overhead = {"process": 0, "requests": 200, "rate_rps": 100.0, "p50_ms": 0.3, "p95_ms": 0.6, "p99_ms": 1.2}
    (tmp_path / "intervals-1.jsonl").write_text(
        json.dumps({"test_start_s": 100.0, "process": 0}) + "\n" + json.dumps({"loadgen_overhead": overhead}) + "\n"
    )
    assert tail.poll() == 0
    assert tail.test_start_s == 100.0
    assert tail.overheads == [LoadgenOverhead(**overhead)]
    assert records == []


def test_the_endpoints_file_follows_the_ready_replicas_and_starts_with_one(tmp_path: Path) -> None:
    ready: list[str] = []
    path = tmp_path / "endpoints.json"
    publisher = runner.EndpointPublisher(lambda: ready, path)
    with pytest.raises(DeployError, match="no ready replica"):
        publisher.publish()
    ready[:] = ["http://b:2", "http://a:1"]
    publisher.publish()
    assert json.loads(path.read_text()) == ["http://a:1", "http://b:2"]
    ready.clear()  # every replica unready mid-run: the load generator is told so, the run goes on
    publisher.publish()
    assert json.loads(path.read_text()) == []
