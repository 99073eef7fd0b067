"""The pure half of the in-cluster load driver: charts/loadgen's values, Job states and the master's printed
results."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from urllib3.exceptions import ProtocolError

from harness.config import LoadgenPodsConfig, RequestConfig, Scenario, load_scenario
from harness.errors import ConfigError, LoadError
from harness.load import pod_files as pod_files_module
from harness.load.in_cluster import (
    START_GRACE_S,
    InClusterLoad,
    env_names,
    env_secret,
    job_finished,
    loadgen_values,
    marked_results,
    start_problem,
)
from harness.load.plan import LoadPlan, build_load_plan
from harness.load.shape import WORKERS_START_WAIT_S
from harness.model import Event, LoadgenLogResumed, RunWarning
from tests.load.test_pod_files import joined

ROOT = Path(__file__).resolve().parents[2]


def scenario(**changes: Any) -> Scenario:
    return load_scenario(ROOT / "loadtests" / "default.yaml").model_copy(update=changes)


def plan_of(scenario: Scenario) -> LoadPlan:
    return build_load_plan(scenario, endpoints_file=Path("/run/endpoints.json"), intervals_dir=Path("/run/intervals"))


def pod_files(values: dict[str, Any]) -> dict[str, bytes]:
    """The files charts/loadgen's pods join from the values' ConfigMaps."""
    return joined(values["harnessFiles"])


def test_loadgen_values_plan_the_scenario_for_the_workers() -> None:
    base = scenario()
    values = loadgen_values(
        plan_of(base), "lg:2", "run-1", service_url="http://svc.ns.svc.cluster.local:3000", workers=4
    )
    assert values["workers"] == 4 and values["users"] == 0
    files = pod_files(values)
    assert LoadPlan.from_json(files["load_plan.json"]).processes == 4
    assert json.loads(files["endpoints.json"]) == ["http://svc.ns.svc.cluster.local:3000"]
    # The stages, the drain after the last one (min(request timeout, 5 s)), the master's longest wait for its
    # workers' calibration, and a 5 s margin.
    assert values["runTimeSeconds"] == int(base.duration_s) + 5 + WORKERS_START_WAIT_S + 5
    assert values["target"] == {"host": "http://svc.ns.svc.cluster.local:3000"}
    assert values["envSecret"] == "" and values["imagePullSecrets"] == [] and values["serviceAccountName"] == ""
    # Not BestEffort by default: both pods have requests and limits.
    defaults = LoadgenPodsConfig()
    assert values["resources"] == {
        "worker": {
            "requests": {"cpu": defaults.resources.requests.cpu, "memory": defaults.resources.requests.memory},
            "limits": {"cpu": defaults.resources.limits.cpu, "memory": defaults.resources.limits.memory},
        },
        "master": {
            "requests": {
                "cpu": defaults.master_resources.requests.cpu,
                "memory": defaults.master_resources.requests.memory,
            },
            "limits": {"cpu": defaults.master_resources.limits.cpu, "memory": defaults.master_resources.limits.memory},
        },
    }


def test_loadgen_values_place_the_pods_as_the_scenario_says() -> None:
    pods = LoadgenPodsConfig.model_validate(
        {
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "node_selector": {"pool": "loadgen"},
            "tolerations": [{"key": "dedicated", "value": "loadgen", "effect": "NoSchedule"}],
            "service_account_name": "loadgen-sa",
        }
    )
    values = loadgen_values(
        plan_of(scenario()),
        "registry.example/lg@sha256:" + "a" * 64,
        "run-1",
        service_url="http://svc:3000",
        pods=pods,
        pull_secrets=["team-registry", "run-registry", "team-registry"],
        env_secret_name="model-service-loadgen-env",
    )
    assert values["resources"]["worker"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert values["nodeSelector"] == {"pool": "loadgen"}
    assert values["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "loadgen", "effect": "NoSchedule"}
    ]
    # target.kubernetes.image_pull_secrets, as the model's pods take them, each once.
    assert values["imagePullSecrets"] == [{"name": "team-registry"}, {"name": "run-registry"}]
    assert values["serviceAccountName"] == "loadgen-sa"
    assert values["envSecret"] == "model-service-loadgen-env"
    assert values["image"]["digest"] == "sha256:" + "a" * 64


def test_header_variables_reach_the_pods_as_a_secret_of_exactly_those_names(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 1}\n')
    with_headers = scenario().model_copy(
        update={
            "requests": [
                RequestConfig(
                    name="a",
                    path="/a",
                    headers={"Authorization": "Bearer ${API_TOKEN}", "X-Team": "${TEAM}-${REGION}"},
                    body_template={"x": "{{x}}"},
                    dataset=rows,
                ),
                RequestConfig(name="b", method="GET", path="/b", headers={"X-Team": "${TEAM}"}),
            ]
        }
    )
    plan = plan_of(with_headers)
    names = env_names(plan)
    assert names == ["API_TOKEN", "REGION", "TEAM"]
    environ = {"API_TOKEN": "s3cret", "TEAM": "ml", "REGION": "eu", "HOME": "/root"}
    secret = env_secret("rel-loadgen-env", "ns", names, environ)
    assert secret["metadata"] == {"name": "rel-loadgen-env", "namespace": "ns"}
    assert {key: base64.b64decode(value).decode() for key, value in secret["data"].items()} == {
        "API_TOKEN": "s3cret",
        "TEAM": "ml",
        "REGION": "eu",
    }
    # The plan the pods read keeps the references, never the values.
    values = loadgen_values(plan, "lg:2", "run-1", service_url="http://svc:3000", env_secret_name="x")
    assert b"s3cret" not in b"".join(pod_files(values).values())
    assert '"Authorization":"Bearer ${API_TOKEN}"' in pod_files(values)["load_plan.json"].decode()
    assert env_names(plan_of(scenario())) == []


def test_loadgen_values_refuse_files_too_large_for_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = tmp_path / "big.jsonl"
    bodies.write_text('{"x": "' + "a" * 1000 + '"}\n')
    monkeypatch.setattr(pod_files_module, "MAX_FILES_BYTES", 1000)
    base = scenario()
    base = base.model_copy(update={"payload": base.payload.model_copy(update={"source": "jsonl", "file": bodies})})
    with pytest.raises(
        ConfigError, match=r"^payload\.file: its 1 file\(s\) come to 1010 bytes .*the harness sends at most 1000 bytes"
    ):
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


# --------------------------------------------------------------------------- a generator that cannot start


def generator_pod(name: str, phase: str = "Running", **container: Any) -> dict[str, Any]:
    """A generator pod as the API server lists it, with its one container's `state` (and more) given."""
    status: dict[str, Any] = {"phase": phase}
    if container:
        status["containerStatuses"] = [{"name": "locust", "image": "harness-loadgen:1", **container}]
    return {"metadata": {"name": name, "namespace": "ns"}, "status": status}


def tail_of(pod: str, container: str, previous: bool) -> str:
    return f"last lines of {pod}/{container}"


def test_a_generator_that_cannot_pull_its_image_is_named_at_once() -> None:
    pods = [
        generator_pod("lg-master-x", state={"running": {}}),
        generator_pod(
            "lg-worker-0-y",
            "Pending",
            state={"waiting": {"reason": "ErrImageNeverPull", "message": 'image "harness-loadgen:1" is not present'}},
        ),
    ]
    problem = start_problem(pods, [], [], tail_of, waited_s=1.0)
    assert problem is not None and problem.fatal
    assert "pod lg-worker-0-y cannot pull image harness-loadgen:1 (ErrImageNeverPull" in problem.message


def test_a_generator_that_exits_is_named_with_its_code_and_last_log_lines() -> None:
    crashed = generator_pod("lg-worker-0-y", "Failed", state={"terminated": {"exitCode": 1, "reason": "Error"}})
    problem = start_problem([crashed], [], [], tail_of, waited_s=0.0)
    assert problem is not None and problem.fatal
    assert problem.message == (
        "load generator pod lg-worker-0-y exited with code 1 (Error); "
        "last log lines: last lines of lg-worker-0-y/locust"
    )
    oom = generator_pod("lg-worker-0-z", "Failed", state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    problem = start_problem([oom], [], [], tail_of, waited_s=0.0)
    assert problem is not None and "loadgen_pods.resources.limits.memory" in problem.hint
    finished = generator_pod("lg-worker-0-y", "Succeeded", state={"terminated": {"exitCode": 0}})
    assert start_problem([finished], [], [], tail_of, waited_s=100.0) is None


def test_an_unschedulable_generator_is_named_once_it_has_waited_the_grace() -> None:
    pending = generator_pod("lg-worker-0-y", "Pending")
    pending["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}
    ]
    assert start_problem([pending], [], [], tail_of, waited_s=START_GRACE_S - 1) is None
    problem = start_problem([pending], [], [], tail_of, waited_s=START_GRACE_S)
    assert problem is not None and "pod lg-worker-0-y cannot be scheduled: 0/1 nodes are available" in problem.message
    assert "loadgen_pods" in problem.hint and "node_selector" in problem.hint


def test_pods_the_cluster_refuses_to_create_are_named_from_the_jobs_events() -> None:
    refused = {
        "reason": "FailedCreate",
        "type": "Warning",
        "involvedObject": {"kind": "Job", "name": "lg-worker", "uid": "uid-worker"},
        "message": 'pods "lg-worker-0-abc" is forbidden: exceeded quota: compute, requested: cpu=250m',
    }
    # An earlier run's Job of the same name left its events: not this run's.
    earlier = {**refused, "involvedObject": {"kind": "Job", "name": "lg-worker", "uid": "uid-earlier"}}
    jobs = ["uid-master", "uid-worker"]
    assert start_problem([], [refused], jobs, tail_of, waited_s=10.0) is None
    problem = start_problem([], [earlier, refused], jobs, tail_of, waited_s=START_GRACE_S)
    assert problem is not None
    assert problem.message.startswith("the cluster refuses to create the pods of Job lg-worker: pods ")
    assert "exceeded quota" in problem.message
    assert start_problem([], [earlier], jobs, tail_of, waited_s=START_GRACE_S) is None


class CrashedGenerator:
    """A stand-in for the API server after the generator crashed on its locustfile (a fake: the real crash is
    tested on the cluster, where which poll sees it first depends on timing): the master Job has failed and its
    pod's container exited with code 1."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        assert kind == "Job"
        return {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}

    def list(self, api_version: str, kind: str, namespace: str | None, selector: str = "") -> dict[str, Any]:
        if kind == "Event":
            return {"items": []}
        crashed = generator_pod("lg-master-x", "Failed", state={"terminated": {"exitCode": 1, "reason": "Error"}})
        return {"items": [crashed]}

    def pod_log(self, namespace: str, pod: str, container: str, tail_lines: int, previous: bool) -> str:
        return "Traceback (most recent call last):\nModuleNotFoundError: No module named 'kubernetes'\n"


def test_a_master_job_that_fails_before_the_watcher_looks_is_named_as_a_generator_that_cannot_start(
    tmp_path: Path,
) -> None:
    """The watcher thread and wait() both see a crash; whichever sees it first, the run says the same."""
    load, _ = in_cluster_load(tmp_path, CrashedGenerator())
    load.started_s = time.time()  # started, but its watcher has not looked at the pods yet
    with pytest.raises(LoadError) as raised:
        load.wait(poll_s=0.0)
    assert str(raised.value) == (
        "the in-cluster load generator cannot start: load generator pod lg-master-x exited with code 1 (Error); "
        "last log lines: Traceback (most recent call last): | ModuleNotFoundError: No module named 'kubernetes' "
        "(kubectl logs -n ns lg-master-x)"
    )


# --------------------------------------------------------------------------- a log stream that breaks


class BreakingLogs:
    """A stand-in for the API server's log follows (a fake: the real drop is tested on the cluster): each follow
    gives the next scripted stream, a list of lines that may end in an exception; the pod's container is running
    until the last stream."""

    def __init__(self, streams: list[list[str | Exception]]) -> None:
        self.streams = streams
        self.follows = 0

    def follow_pod_log(self, namespace: str, pod: str, container: str) -> Iterator[str]:
        stream = self.streams[min(self.follows, len(self.streams) - 1)]
        self.follows += 1
        for item in stream:
            if isinstance(item, Exception):
                raise item
            yield item

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        state = {"terminated": {"exitCode": 0}} if self.follows >= len(self.streams) else {"running": {}}
        return {"metadata": {"name": name}, "status": {"containerStatuses": [{"name": "locust", "state": state}]}}


class LoadgenTarget:
    """What InClusterLoad reads of the Kubernetes target, around BreakingLogs."""

    def __init__(self, api: BreakingLogs | CrashedGenerator) -> None:
        self.api = api
        self.namespace = "ns"
        self.run_id = "run-1"
        self.kube_version = None
        self.events: list[Event] = []
        self.on_event = self.events.append
        self.release = "model-service"
        self.run_selector = "harness.dev/run-id=run-1"


def record_line(n: int) -> str:
    return f'harness-interval {{"t_start_s":{10.0 + n},"t_end_s":{11.0 + n},"stage":"s"}}'


def in_cluster_load(tmp_path: Path, api: BreakingLogs | CrashedGenerator) -> tuple[InClusterLoad, LoadgenTarget]:
    """One worker's in-cluster load on the default scenario, reading the API server through `api`."""
    target = LoadgenTarget(api)
    load = InClusterLoad(
        target,  # type: ignore[arg-type]
        plan_of(scenario()),
        tmp_path,
        lambda record: None,
        image="lg:1",
        json_file=tmp_path / "locust.json",
        workers=1,
        poll_s=0.01,
    )
    load.intervals_dir.mkdir()
    return load, target


def follower(tmp_path: Path, streams: list[list[str | Exception]]) -> tuple[InClusterLoad, LoadgenTarget]:
    return in_cluster_load(tmp_path, BreakingLogs(streams))


def test_a_broken_log_stream_is_followed_again_and_no_record_is_lost_or_doubled(tmp_path: Path) -> None:
    lines = ['harness-interval {"test_start_s":1.0,"process":0}'] + [record_line(n) for n in range(5)]
    load, target = follower(
        tmp_path,
        [
            # A line cut short where the stream ended is not a record: it is read whole when followed again.
            ["Locust starting", *lines[:4], lines[4][:30], ProtocolError("Connection broken: IncompleteRead")],
            # The API server closed the stream while the container ran: followed again.
            ["Locust starting", *lines[:5]],
            ["Locust starting", *lines, "Locust stopped"],
        ],
    )
    load._follow("lg-worker-0-x")
    written = (load.intervals_dir / "intervals-lg-worker-0-x.jsonl").read_text().splitlines()
    assert written == [line.removeprefix("harness-interval ") for line in lines]
    assert target.events == [
        LoadgenLogResumed("lg-worker-0-x", "ProtocolError: Connection broken: IncompleteRead", records_read=4),
        LoadgenLogResumed("lg-worker-0-x", "the stream ended while the container ran", records_read=5),
    ]


def test_records_the_log_no_longer_holds_when_followed_again_are_named(tmp_path: Path) -> None:
    """A log rotated by the kubelet while the stream was down starts later than the records read."""
    lines = [record_line(n) for n in range(6)]
    load, target = follower(tmp_path, [[*lines[:2], ProtocolError("Connection broken")], lines[4:]])
    load._follow("lg-worker-0-x")
    warnings = [event for event in target.events if isinstance(event, RunWarning)]
    assert [w.error for w in warnings] == [
        "worker lg-worker-0-x: 2.0 s of its records are missing (its log no longer held them when the stream was "
        "followed again)"
    ]
