"""The Kubernetes target on a real cluster (scripts/cluster: a real API server, scheduler, controller manager,
kubelet, containerd, metrics-server, Prometheus and prometheus-adapter on this machine), with the digits image.

Rollout and readiness, /metrics of every pod by each route (pod proxy, Prometheus, port-forward), CPU and
memory from metrics.k8s.io, cleanup by label with the namespace, and the failure paths a user meets first:
a crash loop, an OOM kill, a forbidden service account, no cluster at all (an image that cannot be pulled is
test_kubernetes_cluster_shared.py's).
Each ends in one DeployError naming the cause, and nothing of the run is left in the cluster. A SIGKILLed
harness has its namespace deleted by its watchdog. The runs that drive load (the real HPA, load from inside
the cluster) are in test_kubernetes_cluster_load.py.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from harness.errors import DeployError
from harness.exit_codes import ExitCode
from harness.metrics.promql import PrometheusReplicaMetrics, urllib_fetch
from harness.model import Event
from harness.processes import owner_id
from harness.targets.base import OWNER_LABEL
from harness.targets.kubernetes import KubernetesTarget
from tests.targets.cluster_support import (
    ANSWER_S,
    WAIT_S,
    admin,
    assert_nothing_left,
    cluster_scenario,
    failing_start,
    harness_cleanup,
    harness_run,
    new_namespace,
    post_json,
    run_objects,
    token_kubeconfig,
)
from tests.targets.conftest import DIGITS_DIR, ROOT, RealCluster
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


# --------------------------------------------------------------------------- a healthy rollout


def test_rollout_serves_reports_metrics_by_every_route_and_leaves_nothing(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    events: list[tuple[str, Event]] = []
    scenario = cluster_scenario(cluster, digits_image, new_namespace())
    target = KubernetesTarget(scenario, tmp_path, on_event=lambda event: events.append((event.kind, event)))
    try:
        target.start(2)
        replicas = target.replicas()
        assert len(replicas) == 2 and all(replica.ready for replica in replicas)
        assert [kind for kind, _ in events].count("replica_ready") == 2
        assert any(kind == "image_loaded" for kind, _ in events)

        # Each pod answers through its own port-forward, with real predictions.
        rows = [[0.0] * 64] * 3
        for replica in replicas:
            answer = post_json(replica.base_url + "/classify", {"images": rows})
            assert len(answer["labels"]) == 3

        # The pod proxy route (the default) reads every pod's BentoML counters.
        samples = target.server_samples(replicas, ANSWER_S)
        assert [sample.replica for sample in samples] == [replica.id for replica in replicas]
        assert all(sample.ok for sample in samples), samples
        assert sum(sample.requests_total or 0 for sample in samples) >= 2

        # Prometheus (scraping the annotated pods) reports the same pods.
        prometheus = PrometheusReplicaMetrics(cluster.prometheus_url, urllib_fetch(ANSWER_S), target.namespace)
        names = [replica.id for replica in replicas]
        wait_until(lambda: all(s.ok for s in prometheus.samples(names)), "Prometheus series for both pods", WAIT_S)

        # metrics-server reports CPU and working-set memory per pod.
        def measured() -> bool:
            use = target.resource_use()
            return all(use[name].cpu_cores is not None and (use[name].rss_bytes or 0) > 50e6 for name in names)

        wait_until(measured, "metrics.k8s.io figures for both pods", WAIT_S)
    finally:
        target.stop()
    assert_nothing_left(cluster, target)


def test_restricted_namespace_prometheus_route_pod_ip_load_and_scaling(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    """In a namespace that enforces the "restricted" Pod Security Standard the chart's pods are admitted
    and serve (non-root, read-only root file system, no capabilities, RuntimeDefault seccomp, no token)."""
    api = admin(cluster)
    namespace = new_namespace()
    restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": restricted}})
    scenario = cluster_scenario(
        cluster,
        digits_image,
        namespace,
        target__replicas=1,
        target__kubernetes__metrics_route="prometheus",
        target__kubernetes__prometheus_url=cluster.prometheus_url,
        target__kubernetes__load_route="pod-ip",
    )
    target = KubernetesTarget(scenario, tmp_path)
    try:
        target.start(1)
        target.scale(2)
        wait_until(lambda: sum(r.ready for r in target.replicas()) == 2, "the second pod ready", WAIT_S)
        assert target.desired_replicas() == 2
        # Load goes to the pod IPs (the pod network of a node on this machine), no port-forward.
        for replica in target.replicas():
            assert replica.base_url.startswith("http://10.244.0.")
            assert len(post_json(replica.base_url + "/classify", {"images": [[0.0] * 64]})["labels"]) == 1

        def both_scraped() -> bool:
            return all(sample.ok for sample in target.server_samples(target.replicas(), ANSWER_S))

        wait_until(both_scraped, "both pods in Prometheus", WAIT_S)

        # A kill fault deletes a pod at once; its ReplicaSet replaces it.
        victim = target.replicas()[0].id
        target.kill_replica(victim)
        wait_until(
            lambda: victim not in [r.id for r in target.replicas()] and sum(r.ready for r in target.replicas()) == 2,
            "a replacement pod ready",
            WAIT_S,
        )
        with pytest.raises(DeployError, match="pause is not available"):
            target.pause_replica(target.replicas()[0].id)
    finally:
        target.stop()
        assert run_objects(api, namespace, target.run_label) == []
        api.delete("v1", "Namespace", None, namespace)


# --------------------------------------------------------------------------- failure paths


def test_a_crash_looping_pod_is_named_with_its_log(cluster: RealCluster, digits_image: str, tmp_path: Path) -> None:
    scenario = cluster_scenario(cluster, digits_image, new_namespace(), service__env={"DIGITS_MODEL": "bogus"})
    target = KubernetesTarget(scenario, tmp_path)
    error = failing_start(target)
    assert "CrashLoopBackOff" in str(error)
    assert "DIGITS_MODEL='bogus'" in str(error), "the container's last log lines are in the error"
    assert_nothing_left(cluster, target)


def test_an_out_of_memory_pod_says_to_raise_the_memory_limit(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    scenario = cluster_scenario(
        cluster,
        digits_image,
        new_namespace(),
        resources={"requests": {"cpu": "100m", "memory": "48Mi"}, "limits": {"memory": "48Mi"}},
    )
    target = KubernetesTarget(scenario, tmp_path)
    error = failing_start(target)
    assert "OOMKilled" in str(error)
    assert error.hint is not None and "resources.limits.memory" in error.hint
    assert_nothing_left(cluster, target)


# --------------------------------------------------------------------------- failures that need no pod


def test_a_forbidden_service_account_is_one_error_and_touches_nothing(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    api = admin(cluster)
    account = f"harness-nobody-{uuid.uuid4().hex[:6]}"
    try:
        restricted = token_kubeconfig(cluster, account, "default", tmp_path / "restricted.kubeconfig")
        namespace = new_namespace()
        scenario = cluster_scenario(cluster, digits_image, namespace, target__kubernetes__kubeconfig=str(restricted))
        target = KubernetesTarget(scenario, tmp_path)
        error = failing_start(target)
        assert "forbidden" in str(error).lower() and account in str(error)
        assert api.get("v1", "Namespace", None, namespace) is None
    finally:
        api.delete("v1", "ServiceAccount", "default", account)


def test_no_cluster_at_the_address_is_exit_2_with_one_line(digits_image: str, tmp_path: Path) -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        "current-context": "gone",
    }
    (tmp_path / "gone.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    scenario = {
        "name": "no-cluster",
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {
            "kind": "kubernetes",
            "kubernetes": {"kubeconfig": str(tmp_path / "gone.kubeconfig"), "image": digits_image},
        },
        "stages": [{"name": "s", "duration_s": 1, "users": 1}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    result = harness_run(scenario, tmp_path / "scenario.yaml")
    assert result.returncode == ExitCode.INFRASTRUCTURE, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the Kubernetes API server" in errors[0], result.stderr[-2000:]


# --------------------------------------------------------------------------- a harness that dies


# Cluster-wide cleanup and a killed harness's watchdog, one at a time: `harness cleanup` beside the killed run
# would delete its namespace before the watchdog is seen to.
@pytest.mark.xdist_group("cleanup")
def test_a_sigkilled_harness_has_its_namespace_deleted_by_its_watchdog(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    namespace = new_namespace()
    scenario = {
        "name": "killed-harness",
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {
            "kind": "kubernetes",
            "replicas": 1,
            "kubernetes": {
                "kubeconfig": str(cluster.kubeconfig),
                "node_containerd": str(cluster.containerd),
                "load_route": "pod-ip",
                "image": digits_image,
                "namespace": namespace,
            },
        },
        "stages": [{"name": "long", "duration_s": 300, "users": 1}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "scenario.yaml")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    api = admin(cluster)
    try:
        wait_until(lambda: any((tmp_path / "reports").glob("*/stages.json")), "the load started", 180)
        assert api.get("v1", "Namespace", None, namespace) is not None
    finally:
        harness.kill()
        harness.wait()

    def deleted() -> bool:
        stored = api.get("v1", "Namespace", None, namespace)
        return stored is None or stored.get("status", {}).get("phase") == "Terminating"

    wait_until(deleted, "the namespace's deletion", 15)
    wait_until(lambda: api.get("v1", "Namespace", None, namespace) is None, "the namespace gone", WAIT_S)


# In the watchdog test's group (above).
@pytest.mark.xdist_group("cleanup")
def test_harness_cleanup_deletes_namespaces_of_dead_harnesses_only(cluster: RealCluster) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = owner_id(child.pid)
    child.wait()
    api = admin(cluster)
    left, live = new_namespace(), new_namespace()
    for name, owner in ((left, dead), (live, owner_id())):
        api.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {OWNER_LABEL: owner}}}
        )
    try:
        result = harness_cleanup(cluster)
        assert result.returncode == 0, result.stderr
        assert f"cluster: deleted namespace {left} (a harness that is gone)" in result.stdout
        assert live not in result.stdout
        assert (api.get("v1", "Namespace", None, live) or {}).get("status", {}).get("phase") == "Active"
    finally:
        api.delete("v1", "Namespace", None, live)
        api.delete("v1", "Namespace", None, left)
