"""harness.targets.kind: the kind CLI calls, through `FakeKindRunner` (a fake: kind needs Docker-in-Docker nodes,
which cannot run here), metrics-server installation against `FakeKubernetesApi`, and the nightly workflow."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_fakes import FakeClock, FakeKubernetesApi
from test_kubernetes_target import IMAGE, make_target, rollout_api, scenario

from harness.errors import DeployError
from harness.model import KindClusterUsed
from harness.targets.kind import (
    KIND_CONFIG,
    METRICS_API_SERVICE,
    KindCluster,
    api_service_available,
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


class FakeKindRunner:
    """Answers `kind` commands like the CLI would (exit code, stdout, stderr) and records them."""

    def __init__(self, clusters: list[str], failures: dict[str, str] | None = None) -> None:
        self.clusters = list(clusters)
        self.failures = failures or {}
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
        return subprocess.CompletedProcess(args, 0, stdout, "")


def cluster(runner: FakeKindRunner, **options: Any) -> KindCluster:
    clock = FakeClock()
    return KindCluster("harness", run=runner, clock=clock, sleep=clock.sleep, **options)


def test_creates_a_missing_cluster_from_the_config_and_deletes_it() -> None:
    runner = FakeKindRunner(["other"])
    kind = cluster(runner)
    assert kind.ensure() is True
    assert runner.commands[1] == [
        "kind",
        "create",
        "cluster",
        "--name",
        "harness",
        "--config",
        str(KIND_CONFIG),
        "--wait",
        "180s",
    ]
    kind.delete()
    kind.delete()
    assert runner.commands[-1] == ["kind", "delete", "cluster", "--name", "harness"]
    assert [c[1] for c in runner.commands].count("delete") == 1
    assert runner.clusters == ["other"]


def test_reuses_an_existing_cluster_and_never_deletes_it() -> None:
    runner = FakeKindRunner(["harness"])
    kind = cluster(runner)
    assert kind.ensure() is False
    kind.delete()
    assert runner.commands == [["kind", "get", "clusters"]]


def test_keep_cluster_keeps_a_created_cluster() -> None:
    runner = FakeKindRunner([])
    kind = cluster(runner, keep=True)
    kind.ensure()
    kind.delete()
    assert runner.clusters == ["harness"]


def test_load_image_and_kubeconfig(tmp_path: Path) -> None:
    runner = FakeKindRunner(["harness"])
    kind = cluster(runner)
    kind.load_image(IMAGE)
    assert runner.commands[-1] == ["kind", "load", "docker-image", IMAGE, "--name", "harness"]
    path = kind.write_kubeconfig(tmp_path / "k" / "kubeconfig")
    assert yaml.safe_load(path.read_text())["kind"] == "Config"


def test_a_failing_kind_command_is_a_deploy_error_with_its_output() -> None:
    runner = FakeKindRunner(
        [], failures={"create cluster": "ERROR: failed to create cluster: could not find a log line"}
    )
    with pytest.raises(DeployError, match=r"creating the cluster failed .*could not find a log line"):
        cluster(runner).ensure()


@pytest.mark.absent_program("harness-no-such-kind")
def test_a_missing_binary_is_a_deploy_error() -> None:
    with pytest.raises(DeployError, match="harness-no-such-kind: not found on PATH"):
        run_command(["harness-no-such-kind", "get", "clusters"], 5)


def test_metrics_server_is_applied_and_waited_for() -> None:
    api = FakeKubernetesApi(
        gets={("apiregistration.k8s.io/v1", "APIService", METRICS_API_SERVICE): [UNAVAILABLE, AVAILABLE]}
    )
    kind = cluster(FakeKindRunner(["harness"]))
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
    kind = cluster(runner)
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
    kind = cluster(runner)
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
