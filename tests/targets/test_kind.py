"""harness.targets.kind: the kind and docker commands it runs, through `FakeKindRunner` (a fake standing for the
CLIs; test_kind_cluster.py runs kind for real), its pure decisions (load path by image store, supported versions,
the NodePort of the kind config, leaked clusters), metrics-server against `FakeKubernetesApi`, and the nightly
workflow's shape."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_fakes import FakeClock, FakeKubernetesApi
from test_kubernetes_target import IMAGE, make_target, rollout_api, scenario

from harness import cleanup
from harness.errors import DeployError
from harness.model import KindClusterUsed, Leftover
from harness.processes import owner_id
from harness.targets import kind as kind_module
from harness.targets.kind import (
    KIND_CONFIG,
    METRICS_API_SERVICE,
    KindCluster,
    KindConfig,
    api_service_available,
    chart_min_version,
    check_version,
    cluster_owner,
    leaked_clusters,
    load_method,
    metrics_server_manifests,
    run_command,
)

ROOT = Path(__file__).resolve().parents[2]
AVAILABLE = {"status": {"conditions": [{"type": "Available", "status": "True", "reason": "Passed"}]}}
UNAVAILABLE = {
    "status": {
        "conditions": [
            {
                "type": "Available",
                "status": "False",
                "reason": "MissingEndpoints",
                "message": 'endpoints for service/metrics-server in "kube-system" have no addresses with port '
                'name "https"',
            }
        ]
    }
}
CLASSIC_STORE = '[["Backing Filesystem","extfs"],["Supports d_type","true"]]|20.10.24+dfsg1'


@pytest.fixture(autouse=True)
def owners_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The machine-wide owner records, here in a directory of the test's own."""
    directory = tmp_path / "owners"
    monkeypatch.setattr(kind_module, "OWNERS_DIR", directory)
    return directory


class FakeKindRunner:
    """Answers `kind` and `docker` commands like the CLIs would (exit code, stdout, stderr) and records them."""

    def __init__(
        self, clusters: list[str], failures: dict[str, str] | None = None, docker_info: str = CLASSIC_STORE
    ) -> None:
        self.clusters = list(clusters)
        self.failures = failures or {}
        self.docker_info = docker_info
        self.version = "v1.34.4"
        self.ports = "127.0.0.1:41234\n"
        # Node containers the Docker daemon shows only after `kind delete` (a killed `kind create`'s last one):
        # each list is what one `docker ps` finds.
        self.late_nodes: list[list[str]] = []
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        args = list(command)
        self.commands.append(args)
        verb = " ".join(args[1:3])
        if verb in self.failures:
            return subprocess.CompletedProcess(args, 1, "", self.failures[verb])
        stdout = ""
        if verb == "get clusters":
            stdout = "".join(f"{name}\n" for name in self.clusters)
        elif verb == "create cluster":
            self.clusters.append(args[args.index("--name") + 1])
        elif verb == "delete cluster":
            self.clusters.remove(args[args.index("--name") + 1])
        elif verb == "get kubeconfig":
            stdout = "apiVersion: v1\nkind: Config\n"
        elif args[:2] == ["docker", "info"]:
            stdout = self.docker_info
        elif args[:2] == ["docker", "exec"] or args[:2] == ["docker", "run"]:
            stdout = self.version
        elif args[:2] == ["docker", "port"]:
            stdout = self.ports
        elif args[:3] == ["docker", "image", "inspect"]:
            stdout = "linux/amd64\n"
        elif args[:2] == ["docker", "ps"]:
            stdout = "".join(f"{node}\n" for node in (self.late_nodes.pop(0) if self.late_nodes else []))
        return subprocess.CompletedProcess(args, 0, stdout, "")

    def named(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.commands if c[: len(prefix)] == list(prefix)]


def cluster(runner: FakeKindRunner, tmp_path: Path | None = None, **options: Any) -> KindCluster:
    clock = FakeClock()
    kubeconfig = (tmp_path or Path("/nonexistent")) / ".cluster" / "kind-harness.kubeconfig"
    return KindCluster("harness", kubeconfig=kubeconfig, run=runner, clock=clock, sleep=clock.sleep, **options)


def test_creates_a_missing_cluster_with_its_own_kubeconfig_and_deletes_it(tmp_path: Path) -> None:
    runner = FakeKindRunner(["other"])
    registered: list[Leftover] = []
    kind = cluster(runner, tmp_path, node_image="harness.local/kind-node:v1.34.4-x", on_create=registered.append)
    assert kind.ensure() is True
    kubeconfig = str(tmp_path / ".cluster" / "kind-harness.kubeconfig")
    assert runner.commands[1] == [
        "kind",
        "create",
        "cluster",
        "--name",
        "harness",
        "--config",
        str(KIND_CONFIG),
        "--kubeconfig",
        kubeconfig,
        "--wait",
        "180s",
        "--image",
        "harness.local/kind-node:v1.34.4-x",
    ]
    # The watchdog knew the cluster before kind started creating it, and the owner is recorded.
    assert registered == [kind.leftover_resource()] and registered[0].kind == "kind"
    assert (cluster_owner("harness") or {}).get("owner") == owner_id()
    kind.delete()
    kind.delete()
    assert runner.named("kind", "delete") == [
        ["kind", "delete", "cluster", "--name", "harness", "--kubeconfig", kubeconfig]
    ]
    assert runner.named("docker", "rm") == []
    assert runner.clusters == ["other"] and cluster_owner("harness") is None


def test_reuses_an_existing_cluster_and_never_deletes_it(tmp_path: Path) -> None:
    runner = FakeKindRunner(["harness"])
    registered: list[Leftover] = []
    kind = cluster(runner, tmp_path, on_create=registered.append)
    assert kind.ensure() is False
    kind.delete()
    assert [c[1:3] for c in runner.commands] == [["get", "clusters"], ["get", "kubeconfig"]]
    assert kind.kubeconfig.read_text().startswith("apiVersion: v1") and kind.kubeconfig.stat().st_mode & 0o077 == 0
    assert registered == [] and runner.clusters == ["harness"]


@pytest.mark.integration
def test_a_cluster_left_by_a_harness_that_is_gone_is_deleted_and_created_anew(tmp_path: Path, owners_dir: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    gone = f"{owner_id().split('-')[0]}-{child.pid}-1"
    owners_dir.mkdir()
    (owners_dir / "harness.json").write_text(f'{{"owner": "{gone}", "run_id": "old"}}')
    assert [(run_id, leaked.cluster) for run_id, leaked in leaked_clusters(set())] == [("old", "harness")]
    assert leaked_clusters({"old"}) == [], "a run whose watchdog still runs is its watchdog's to sweep"
    runner = FakeKindRunner(["harness"])
    kind = cluster(runner, tmp_path)
    assert kind.ensure() is True
    assert [c[1:3] for c in runner.commands] == [["get", "clusters"], ["delete", "cluster"], ["create", "cluster"]]
    assert (cluster_owner("harness") or {}).get("owner") == owner_id()


@pytest.mark.integration
def test_a_cluster_of_a_harness_still_running_is_not_taken(tmp_path: Path, owners_dir: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        owners_dir.mkdir()
        (owners_dir / "harness.json").write_text(f'{{"owner": "{owner_id(sleeper.pid)}", "run_id": "other-run"}}')
        with pytest.raises(DeployError, match="created by run other-run of a harness that is still running"):
            cluster(FakeKindRunner(["harness"]), tmp_path).ensure()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_keep_cluster_keeps_a_created_cluster_and_hands_it_to_the_user(tmp_path: Path) -> None:
    runner = FakeKindRunner([])
    kind = cluster(runner, tmp_path, keep=True)
    kind.ensure()
    kind.delete()
    assert runner.clusters == ["harness"] and cluster_owner("harness") is None


def test_load_path_follows_dockers_image_store(tmp_path: Path) -> None:
    runner = FakeKindRunner(["harness"])
    cluster(runner, tmp_path).load_image(IMAGE)
    assert runner.commands[-1] == ["kind", "load", "docker-image", IMAGE, "--name", "harness"]
    containerd = '[["driver-type","io.containerd.snapshotter.v1"]]|29.1.3'
    runner = FakeKindRunner(["harness"], docker_info=containerd)
    cluster(runner, tmp_path).load_image(IMAGE)
    save = runner.named("docker", "image", "save")[0]
    assert save[:5] == ["docker", "image", "save", "--platform", "linux/amd64"] and save[-1] == IMAGE
    assert runner.commands[-1][:3] == ["kind", "load", "image-archive"]


def test_load_method() -> None:
    assert load_method('[["Backing Filesystem","extfs"]]', "20.10.24") == "docker-image"
    assert load_method('[["driver-type","io.containerd.snapshotter.v1"]]', "28.0.1") == "image-archive"
    with pytest.raises(DeployError, match=r"Docker 27.5.1 stores images in containerd.*kind issue 3795"):
        load_method('[["driver-type","io.containerd.snapshotter.v1"]]', "27.5.1")


def test_versions_the_charts_support() -> None:
    minimum = chart_min_version()
    assert minimum == (1, 30)
    check_version("v1.34.4\n", "kind cluster x", minimum)
    with pytest.raises(DeployError, match=r"kind cluster x runs Kubernetes v1.29.2; the charts need >= 1.30"):
        check_version("v1.29.2", "kind cluster x", minimum)
    with pytest.raises(DeployError, match="is not of the form"):
        check_version("latest", "kind cluster x", minimum)


def test_the_kind_config_publishes_a_node_port_on_loopback(tmp_path: Path) -> None:
    assert KindConfig.read().node_port == 30080
    other = tmp_path / "kind.yaml"
    other.write_text("kind: Cluster\nnodes:\n  - role: control-plane\n")
    assert KindConfig.read(other).node_port is None


def test_preflight_of_an_existing_cluster(tmp_path: Path) -> None:
    runner = FakeKindRunner(["harness"])
    cluster(runner, tmp_path).preflight(node_port=30080)
    assert runner.named("docker", "exec") == [["docker", "exec", "harness-control-plane", "cat", "/kind/version"]]
    assert runner.named("docker", "port") == [["docker", "port", "harness-control-plane", "30080/tcp"]]
    runner.version = "v1.28.0"
    with pytest.raises(DeployError, match=r"kind cluster harness runs Kubernetes v1.28.0"):
        cluster(runner, tmp_path).preflight(node_port=None)
    runner.version, runner.ports = "v1.34.4", ""
    with pytest.raises(DeployError, match=r"publishes NodePort 30080 on no 127.0.0.1 port"):
        cluster(runner, tmp_path).preflight(node_port=30080)


def test_preflight_of_a_cluster_to_create_reads_the_node_image(tmp_path: Path) -> None:
    runner = FakeKindRunner([])
    cluster(runner, tmp_path, node_image="img:1").preflight(node_port=30080)
    assert runner.named("docker", "run") == [
        ["docker", "run", "--rm", "--privileged", "--entrypoint", "cat", "img:1", "/kind/version"]
    ]
    runner = FakeKindRunner([], failures={"image inspect": "Error: No such image: img:1"})
    with pytest.raises(DeployError, match=r"finding node image img:1 on this machine.*No such image"):
        cluster(runner, tmp_path, node_image="img:1").preflight(node_port=None)


def test_preflight_names_dockers_reason_when_it_cannot_run_a_privileged_node(tmp_path: Path) -> None:
    """Docker's error on this machine before scripts/docker-setup.sh installed its runtime (the capability bounding
    set lacks CAP_SYS_RESOURCE, which --privileged asks for), as kind's nodes would meet it."""
    refusal = (
        "docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create "
        "failed: unable to start container process: unable to apply caps: operation not permitted: unknown."
    )
    runner = FakeKindRunner([], failures={"run --rm": refusal})
    with pytest.raises(DeployError, match=r"cannot run kind's node img:1 as a privileged container: .*apply caps"):
        cluster(runner, tmp_path, node_image="img:1").preflight(node_port=None)


def test_preflight_needs_kind_and_docker(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="running kind failed"):
        cluster(FakeKindRunner([], failures={"version": "boom"}), tmp_path).preflight(node_port=None)
    runner = FakeKindRunner([], failures={"info --format": "Cannot connect to the Docker daemon"})
    with pytest.raises(DeployError, match=r"asking the Docker daemon.*Cannot connect"):
        cluster(runner, tmp_path).preflight(node_port=None)


def test_a_failing_kind_command_is_a_deploy_error_with_its_output(tmp_path: Path) -> None:
    runner = FakeKindRunner(
        [], failures={"create cluster": "ERROR: failed to create cluster: could not find a log line"}
    )
    with pytest.raises(DeployError, match=r"creating the cluster failed .*could not find a log line"):
        cluster(runner, tmp_path).ensure()


@pytest.mark.absent_program("harness-no-such-kind")
def test_a_missing_binary_is_a_deploy_error() -> None:
    with pytest.raises(DeployError, match="harness-no-such-kind: not found on PATH"):
        run_command(["harness-no-such-kind", "get", "clusters"], 5)


def test_metrics_server_is_applied_and_waited_for(tmp_path: Path) -> None:
    api = FakeKubernetesApi(
        gets={("apiregistration.k8s.io/v1", "APIService", METRICS_API_SERVICE): [UNAVAILABLE, AVAILABLE]}
    )
    kind = cluster(FakeKindRunner(["harness"]), tmp_path)
    kind.install_metrics_server(api)
    applied = [call[1] for call in api.calls_named("apply")]
    assert applied == [m["kind"] for m in metrics_server_manifests()]
    assert applied[-1] == "APIService" and "Deployment" in applied
    assert len(api.calls_named("get")) == 2


def test_metrics_server_that_never_becomes_available_times_out() -> None:
    api = FakeKubernetesApi(gets={("apiregistration.k8s.io/v1", "APIService", METRICS_API_SERVICE): [UNAVAILABLE]})
    with pytest.raises(DeployError, match="metrics-server in kind cluster harness not available within 30 s"):
        cluster(FakeKindRunner(["harness"])).install_metrics_server(api, timeout_s=30)


def test_api_service_available() -> None:
    assert api_service_available(AVAILABLE) and not api_service_available(UNAVAILABLE)
    assert not api_service_available(None)


@pytest.mark.integration
def test_kubernetes_target_prepares_and_removes_its_kind_cluster(tmp_path: Path) -> None:
    runner = FakeKindRunner([])
    kind = cluster(runner, tmp_path)
    api = rollout_api(gets={("apiregistration.k8s.io/v1", "APIService", METRICS_API_SERVICE): [AVAILABLE]})
    target, recorder, _ = make_target(api, tmp_path, scenario(kind_cluster="harness"), kind=kind)
    target.start(2)
    assert recorder.of("kind_cluster") == [KindClusterUsed("harness", created=True)]
    assert ["kind", "load", "docker-image", IMAGE, "--name", "harness"] in runner.commands
    assert "APIService" in [call[1] for call in api.calls_named("apply")]
    target.stop()
    assert runner.clusters == []


def test_kubernetes_target_deletes_a_cluster_it_created_even_when_start_fails(tmp_path: Path) -> None:
    runner = FakeKindRunner(
        [], failures={"load docker-image": 'ERROR: image: "digits-classifier:20250301" not present locally'}
    )
    kind = cluster(runner, tmp_path)
    target, _, _ = make_target(FakeKubernetesApi(), tmp_path, scenario(kind_cluster="harness"), kind=kind)
    with pytest.raises(DeployError, match="not present locally"):
        target.start(2)
    target.stop()
    assert runner.clusters == []


def test_nightly_workflow_runs_the_kind_loadtest_and_compares_with_last_night() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    # PyYAML reads the bare key `on` as True.
    triggers = workflow.get("on", workflow.get(True))
    assert "schedule" in triggers
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "make loadtest TARGET=kind" in runs
    assert "harness compare" in runs
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert any(u.startswith("actions/download-artifact@") for u in uses)


@pytest.mark.integration
def test_the_watchdog_of_a_dead_harness_deletes_the_kind_cluster_it_registered(
    tmp_path: Path, owners_dir: Path
) -> None:
    """harness.cleanup.watch with a kind resource and no `finished` line (the harness died): the registered kind
    binary is run to delete the cluster, and the owner record goes. The binary is a recording script (a fake
    standing for kind, whose nodes cannot start on the development machine)."""
    log = tmp_path / "kind.log"
    fake_kind = tmp_path / "kind"
    fake_kind.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake_kind.chmod(0o755)
    owners_dir.mkdir()
    (owners_dir / "harness.json").write_text('{"owner": "x-1-1", "run_id": "r"}')
    resource = {"kind": "kind", "cluster": "harness", "kubeconfig": "/k", "kind_binary": str(fake_kind)}
    lines = cleanup.watch("r", owner_id(), [json.dumps(resource) + "\n"])
    assert log.read_text().split() == ["delete", "cluster", "--name", "harness", "--kubeconfig", "/k"]
    assert lines == ["run r: deleted kind cluster harness"] and cluster_owner("harness") is None
    log.unlink()
    cleanup.watch("r", owner_id(), [json.dumps(resource) + "\n", '{"finished": true}\n'])
    assert not log.exists(), "a run that finished deleted its own cluster, or kept it"


def test_a_node_container_that_shows_up_after_kind_delete_is_removed(tmp_path: Path) -> None:
    """A harness interrupted while `kind create` runs: the Docker daemon may finish creating the node after
    `kind delete` looked. Removed by its kind label, and looked for until three looks in a row find none."""
    runner = FakeKindRunner([])
    kind = cluster(runner, tmp_path)
    kind.ensure()
    runner.late_nodes = [[], ["abc123"], [], [], []]
    kind.delete()
    assert runner.named("docker", "rm") == [["docker", "rm", "-f", "-v", "abc123"]]
    assert runner.named("docker", "ps")[0] == ["docker", "ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster=harness"]
    assert len(runner.named("docker", "ps")) == 5
