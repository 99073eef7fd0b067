"""The Docker target: pure helpers (resource options, CPU and memory from stats), then real containers of the
digits example image: requests, CPU limit, scaling, crash reporting, and nothing left behind."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.config import Resources, Scenario, parse_scenario
from harness.errors import DeployError
from harness.model import ContainersRemoved, Event, ReplicaCrashed, ReplicaRestarting, ReplicaStarted
from harness.processes import owner_id
from harness.targets.base import OWNER_LABEL, RUN_LABEL
from harness.targets.docker import (
    DockerTarget,
    container_resources,
    cpu_cores_between,
    labelled_containers,
    memory_in_use_bytes,
)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DIGITS_DIR = ROOT / "examples" / "digits"
MACHINE_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REQUEST_TIMEOUT_S = 30.0
# A container's start (a BentoML server held to half a core) and its removal: generous, since other lanes of
# `make test` load the machine and how fast a replica starts is not what these tests check.
WAIT_S = 240.0


def scenario(**target: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "docker-target-test",
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {"kind": "docker", "replicas": 2, "startup_timeout_s": WAIT_S, **target},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "768Mi"}},
        "stages": [{"name": "s", "duration_s": 1, "users": 1}],
    }
    return parse_scenario(data)


# --------------------------------------------------------------------------- pure helpers


def test_container_resources_prefer_limits_then_requests() -> None:
    assert container_resources(scenario()) == {
        "nano_cpus": 500_000_000,
        "mem_limit": 768 * 2**20,
        "memswap_limit": 768 * 2**20,
    }
    requests_only = scenario().model_copy(
        update={"resources": Resources.model_validate({"requests": {"cpu": "1.5", "memory": "1Gi"}})}
    )
    assert container_resources(requests_only) == {
        "nano_cpus": 1_500_000_000,
        "mem_limit": 2**30,
        "memswap_limit": 2**30,
    }
    unlimited = scenario().model_copy(update={"resources": Resources()})
    assert container_resources(unlimited) == {}


def cpu_sample(used_ns: int, system_ns: int, online_cpus: int = 2) -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": used_ns}, "system_cpu_usage": system_ns, "online_cpus": online_cpus}


def test_cpu_cores_between_two_samples() -> None:
    # 0.5 s of CPU while the 2-CPU system accumulated 2 s (1 s of wall time): half a core.
    assert cpu_cores_between(cpu_sample(0, 0), cpu_sample(500_000_000, 2_000_000_000)) == pytest.approx(0.5)
    # No system time passed, a counter went backwards (container restarted), or a field is missing: unknown.
    assert cpu_cores_between(cpu_sample(0, 10), cpu_sample(5, 10)) is None
    assert cpu_cores_between(cpu_sample(10, 0), cpu_sample(5, 10)) is None
    assert cpu_cores_between({}, cpu_sample(5, 10)) is None


@given(
    start_used=st.integers(0, 10**15),
    start_system=st.integers(0, 10**15),
    used_delta=st.integers(0, 10**12),
    system_delta=st.integers(1, 10**12),
    online_cpus=st.integers(1, 256),
)
def test_cpu_cores_between_is_the_share_of_the_machine(
    start_used: int, start_system: int, used_delta: int, system_delta: int, online_cpus: int
) -> None:
    cores = cpu_cores_between(
        cpu_sample(start_used, start_system, online_cpus),
        cpu_sample(start_used + used_delta, start_system + system_delta, online_cpus),
    )
    assert cores == pytest.approx(used_delta / system_delta * online_cpus)
    if used_delta <= system_delta:
        assert cores is not None and 0.0 <= cores <= online_cpus + 1e-9


def test_memory_in_use_excludes_the_page_cache() -> None:
    assert memory_in_use_bytes({"usage": 1000, "stats": {"total_cache": 300, "cache": 100}}) == 700
    assert memory_in_use_bytes({"usage": 1000, "stats": {"inactive_file": 400}}) == 600  # cgroup v2
    assert memory_in_use_bytes({"usage": 1000}) == 1000
    assert memory_in_use_bytes({}) is None


# --------------------------------------------------------------------------- real containers


@pytest.fixture
def client() -> Iterator[Any]:
    client = docker.from_env()
    yield client
    client.close()


def labelled(client: Any, run_id: str) -> list[Any]:
    return labelled_containers(client, f"{RUN_LABEL}={run_id}")


def classify(base_url: str, rows: int) -> list[int]:
    image = [float((i * 7) % 17) for i in range(64)]
    body = json.dumps({"images": [image] * rows}).encode()
    request = urllib.request.Request(
        f"{base_url}/classify", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        assert response.status == 200
        labels: list[int] = json.loads(response.read())["labels"]
    return labels


@pytest.mark.integration
def test_replicas_serve_are_limited_scale_and_are_removed(digits_image: str, client: Any, tmp_path: Path) -> None:
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    events: list[tuple[str, Event]] = []
    target = DockerTarget(
        scenario(),
        tmp_path,
        image=digits_image,
        run_id=run_id,
        on_event=lambda event: events.append((event.kind, event)),
    )
    try:
        started_s = time.monotonic()
        target.start(2)
        print(f"2 docker replicas ready in {time.monotonic() - started_s:.1f} s")
        replicas = target.replicas()
        assert [r.id for r in replicas] == ["replica-1", "replica-2"]
        assert all(r.ready and r.container_id for r in replicas)
        for replica in replicas:
            assert replica.base_url.startswith("http://127.0.0.1:")
            for rows in (1, 3, 5):
                labels = classify(replica.base_url, rows)
                assert len(labels) == rows and all(0 <= label <= 9 for label in labels)

        containers = labelled(client, run_id)
        assert len(containers) == 2
        for container in containers:
            host_config = container.attrs["HostConfig"]
            assert host_config["NanoCpus"] == 500_000_000
            assert host_config["Memory"] == 768 * 2**20
            bindings = host_config["PortBindings"]["3000/tcp"]
            assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]

        first = target.resource_use()
        assert set(first) == {"replica-1", "replica-2"}
        assert all(use.cpu_cores is None for use in first.values())  # no earlier sample yet
        for _ in range(5):
            classify(replicas[0].base_url, 64)
        second = target.resource_use()
        for use in second.values():
            assert use.cpu_cores is not None and 0.0 <= use.cpu_cores <= 2.0
            assert use.rss_bytes is not None and 30 * 2**20 < use.rss_bytes < 768 * 2**20
        busy = second["replica-1"].cpu_cores
        assert busy is not None and busy > 0.0

        target.scale(1)  # returns at once; the newest replica goes
        assert target.desired_replicas() == 1
        assert [r.id for r in target.replicas()] == ["replica-1"]
        wait_until(lambda: len(labelled(client, run_id)) == 1, "the scaled-down container to be removed", WAIT_S)
        assert (tmp_path / "replica-2.log").exists()
        classify(replicas[0].base_url, 1)

        target.scale(2)
        wait_until(
            lambda: len(target.replicas()) == 2 and all(r.ready for r in target.replicas()), "2 ready replicas", WAIT_S
        )
        assert sorted(r.id for r in target.replicas()) == ["replica-1", "replica-3"]
        classify(next(r for r in target.replicas() if r.id == "replica-3").base_url, 2)
    finally:
        target.stop()
    assert labelled(client, run_id) == []
    target.stop()  # idempotent
    kinds = [kind for kind, _ in events]
    assert kinds.count("replica_started") == 3 and kinds.count("replica_ready") == 3
    assert kinds.count("replica_stopped") == 3


@pytest.mark.integration
def test_container_that_exits_at_start_is_a_deploy_error_with_its_log(
    digits_image: str, client: Any, tmp_path: Path
) -> None:
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    broken = scenario(replicas=1)
    broken = broken.model_copy(
        update={"service": broken.service.model_copy(update={"env": {"DIGITS_MODEL": "no-such-model"}})}
    )
    target = DockerTarget(broken, tmp_path, image=digits_image, run_id=run_id)
    try:
        with pytest.raises(DeployError) as raised:
            target.start(1)
        message = str(raised.value)
        assert f"harness-{run_id}-replica-1" in message
        assert "exited with code" in message
        assert "no-such-model" in message  # from the service's own error, in the log tail
    finally:
        target.stop()
    assert labelled(client, run_id) == []


@pytest.mark.integration
def test_host_network_replica_and_leftovers_of_a_crashed_run(digits_image: str, client: Any, tmp_path: Path) -> None:
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    # A run that died without stop(): its container is still there, under the same run id.
    crashed = DockerTarget(scenario(replicas=1), tmp_path / "crashed", image=digits_image, run_id=run_id)
    crashed.start(1)
    assert len(labelled(client, run_id)) == 1

    events: list[tuple[str, Event]] = []
    target = DockerTarget(
        scenario(replicas=1, docker={"network": "host"}),
        tmp_path / "again",
        image=digits_image,
        run_id=run_id,
        on_event=lambda event: events.append((event.kind, event)),
    )
    try:
        target.start(1)
        removed = [d for k, d in events if k == "containers_removed"]
        assert removed == [ContainersRemoved("left by an earlier run", (f"harness-{run_id}-replica-1",))]
        (container,) = labelled(client, run_id)
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
        (replica,) = target.replicas()
        assert len(classify(replica.base_url, 2)) == 2
    finally:
        target.stop()
    assert labelled(client, run_id) == []


@pytest.mark.integration
def test_missing_image_is_a_deploy_error(tmp_path: Path) -> None:
    target = DockerTarget(scenario(), tmp_path, image="harness-test/no-such-image:0", run_id="test-missing-image")
    with pytest.raises(DeployError, match="harness-test/no-such-image:0"):
        target.start(1)
    target.stop()


@pytest.mark.integration
def test_harness_cleanup_removes_containers_of_dead_harnesses_only(digits_image: str, client: Any) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = owner_id(child.pid)
    child.wait()
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    left = client.containers.create(
        digits_image, name=f"harness-{run_id}-left", labels={RUN_LABEL: run_id, OWNER_LABEL: dead}
    )
    live = client.containers.create(
        digits_image, name=f"harness-{run_id}-live", labels={RUN_LABEL: run_id, OWNER_LABEL: owner_id()}
    )
    try:
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli", "cleanup"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert f"removed container harness-{run_id}-left of a harness that is gone" in result.stdout
        assert [c.name for c in labelled(client, run_id)] == [f"harness-{run_id}-live"]
    finally:
        for container in (left, live):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.mark.integration
def test_a_killed_container_restarts_after_its_back_off_and_a_paused_one_resumes(
    digits_image: str, client: Any, tmp_path: Path
) -> None:
    events: list[Any] = []
    target = DockerTarget(
        scenario(replicas=1, restart_backoff_s=1),
        tmp_path,
        image=digits_image,
        run_id=f"test-{uuid.uuid4().hex[:8]}",
        on_event=events.append,
    )
    try:
        target.start(1)
        (replica,) = target.replicas()
        target.pause_replica(replica.id)
        (container,) = labelled(client, target.run_id)
        container.reload()
        assert container.attrs["State"]["Paused"] is True
        target.resume_replica(replica.id)
        assert len(classify(replica.base_url, 1)) == 1, "it serves again once resumed"

        target.kill_replica(replica.id)
        deadline_s = time.monotonic() + WAIT_S
        while not (any(isinstance(e, ReplicaStarted) for e in events[1:]) and target.replicas()[0].ready):
            assert time.monotonic() < deadline_s, events
            time.sleep(0.5)
        crash = next(e for e in events if isinstance(e, ReplicaCrashed))
        assert crash.injected is True and crash.exit_code == 137
        restarting = next(e for e in events if isinstance(e, ReplicaRestarting))
        assert (restarting.backoff_s, restarting.restarts) == (1.0, 1)
        assert [c.name for c in labelled(client, target.run_id)] == [container.name], "the same container again"
        assert len(classify(target.replicas()[0].base_url, 1)) == 1
    finally:
        target.stop()
    assert labelled(client, target.run_id) == []
