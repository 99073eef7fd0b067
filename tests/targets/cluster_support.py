"""What the real-cluster tests share: the cluster's scenario, namespaces, waiting, the admin client, and
`harness run` as a user runs it."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import Scenario, parse_scenario
from harness.errors import DeployError
from harness.targets.base import RUN_LABEL
from harness.targets.kubernetes import KubernetesTarget
from harness.targets.kubernetes_api import ClientKubernetesApi
from tests.targets.conftest import DIGITS_DIR, ROOT, RealCluster
from tests.waiting import wait_until

WAIT_S = 120.0
# The only failure the digits example's valid requests may get in a cluster test: BentoML's adaptive batching
# answers 503 once its queue outgrows max_latency_ms, the true answer of a pod short of CPU on a node that make
# test's other lanes load (7 of 209 requests in one run). Any other status is a bug the tests look for.
LOAD_SHEDDING = frozenset({"http_503"})
# How long one request to a healthy pod (through the API server's proxy, a port-forward or Prometheus) may take:
# generous, since the cluster runs beside the other lanes of `make test` and how fast it answers is not under test.
ANSWER_S = 30.0


def cluster_scenario(cluster: RealCluster, image: str, namespace: str, **changes: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "cluster-target-test",
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {
            "kind": "kubernetes",
            "replicas": 2,
            "startup_timeout_s": 120,
            "kubernetes": {
                "kubeconfig": str(cluster.kubeconfig),
                "node_containerd": str(cluster.containerd),
                "namespace": namespace,
                "image": image,
                "rollout_timeout_s": 150,
            },
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "stages": [{"name": "s", "duration_s": 1, "users": 1}],
    }
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return parse_scenario(data)


def new_namespace() -> str:
    return f"harness-test-{uuid.uuid4().hex[:8]}"


def admin(cluster: RealCluster) -> ClientKubernetesApi:
    return ClientKubernetesApi.connect(cluster.kubeconfig)


def run_objects(api: ClientKubernetesApi, namespace: str, run_label: str) -> list[str]:
    found = []
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "Pod"),
        ("policy/v1", "PodDisruptionBudget"),
    ):
        listed = api.list(api_version, kind, namespace, f"{RUN_LABEL}={run_label}") or {}
        found += [f"{kind}/{item['metadata']['name']}" for item in listed.get("items") or []]
    return found


def assert_nothing_left(cluster: RealCluster, target: KubernetesTarget) -> None:
    """No object of the run remains, and the namespace the target created goes away."""
    api = admin(cluster)
    wait_until(
        lambda: api.get("v1", "Namespace", None, target.namespace) is None, f"namespace {target.namespace} gone", WAIT_S
    )
    assert run_objects(api, target.namespace, target.run_label) == []


def token_kubeconfig(cluster: RealCluster, account: str, namespace: str, path: Path) -> Path:
    """A kubeconfig holding nothing but a 10-minute token of ServiceAccount `account` (created here) of
    `namespace`, as a team's admin hands one to a CI job."""
    from kubernetes import client, config

    api = admin(cluster)
    api.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}})
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
    token = core.create_namespaced_service_account_token(account, namespace, request).status.token
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": account, "user": {"token": token}}]
    kubeconfig["contexts"][0]["context"]["user"] = account
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def registry_auth(cluster: RealCluster) -> str:
    """The `auth` of a Docker config.json entry: base64 of user:password."""
    return base64.b64encode(f"{cluster.registry_user}:{cluster.registry_password}".encode()).decode()


def pull_secret(cluster: RealCluster, namespace: str, name: str = "harness-pull") -> None:
    """A dockerconfigjson Secret of the cluster registry's credentials, as `kubectl create secret docker-registry`."""
    config = {"auths": {cluster.registry: {"auth": registry_auth(cluster)}}}
    admin(cluster).create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": namespace},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
        }
    )


def delete_from_registry(cluster: RealCluster, reference: str) -> None:
    """Delete an image a test pushed (`<registry>/<name>@sha256:...`) from the cluster's registry; its blobs go at
    the registry's next garbage collection (cluster.sh up)."""
    name, digest = reference.removeprefix(f"{cluster.registry}/").split("@")
    credentials = base64.b64encode(f"{cluster.registry_user}:{cluster.registry_password}".encode()).decode()
    request = urllib.request.Request(
        f"http://{cluster.registry}/v2/{name}/manifests/{digest}",
        method="DELETE",
        headers={"Authorization": f"Basic {credentials}"},
    )
    try:
        urllib.request.urlopen(request, timeout=ANSWER_S).close()
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise


def failing_start(target: KubernetesTarget) -> DeployError:
    try:
        with pytest.raises(DeployError) as raised:
            target.start(1)
    finally:
        target.stop()
    return raised.value


def post_json(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=ANSWER_S) as response:
        return json.loads(response.read())


def harness_run(scenario: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    """`harness run` of a scenario written to `path`, as a user runs it."""
    path.write_text(yaml.safe_dump(scenario))
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def harness_cleanup(cluster: RealCluster) -> subprocess.CompletedProcess[str]:
    """`harness cleanup --no-docker --kubeconfig` of the cluster's admin, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "cleanup", "--no-docker", "--kubeconfig", str(cluster.kubeconfig)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_cli(scenario: dict[str, Any], directory: Path, name: str) -> Path:
    """`harness run` of a scenario written under `directory`; its run directory (FAIL and INCONCLUSIVE are
    results here, a harness error is not)."""
    reports = directory / f"reports-{name}"
    result = harness_run({**scenario, "output": {"dir": str(reports)}}, directory / f"{name}.yaml")
    assert result.returncode in (0, 1, 3), result.stderr[-3000:]
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    return run_dir
