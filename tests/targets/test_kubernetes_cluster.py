"""The Kubernetes target on a real cluster (scripts/cluster: a real API server, scheduler, controller manager,
kubelet, containerd, metrics-server, Prometheus and prometheus-adapter on this machine), with the digits image.

Rollout and readiness, /metrics of every pod by each route (pod proxy, Prometheus, port-forward), CPU and
memory from metrics.k8s.io, cleanup by label with the namespace, load from inside the cluster, and the pod
failures a user meets first: an image the node does not have, a crash loop, an OOM kill. Each ends in one
DeployError naming the cause, and nothing of the run is left in the cluster. The real HPA, and the failures
that need no pod, are in test_kubernetes_cluster_hpa.py, which make test runs beside this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import DeployError
from harness.metrics.promql import PrometheusReplicaMetrics, urllib_fetch
from harness.model import Event
from harness.targets.kubernetes import KubernetesTarget
from tests.targets.cluster_support import (
    admin,
    assert_nothing_left,
    cluster_scenario,
    failing_start,
    new_namespace,
    post_json,
    run_cli,
    run_objects,
    wait_for,
)
from tests.targets.conftest import DIGITS_DIR, RealCluster

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
        samples = target.server_samples(replicas, 5.0)
        assert [sample.replica for sample in samples] == [replica.id for replica in replicas]
        assert all(sample.ok for sample in samples), samples
        assert sum(sample.requests_total or 0 for sample in samples) >= 2

        # Prometheus (scraping the annotated pods) reports the same pods.
        prometheus = PrometheusReplicaMetrics(cluster.prometheus_url, urllib_fetch(5.0), target.namespace)
        names = [replica.id for replica in replicas]
        wait_for(lambda: all(s.ok for s in prometheus.samples(names)), "Prometheus series for both pods", 60)

        # metrics-server reports CPU and working-set memory per pod.
        def measured() -> bool:
            use = target.resource_use()
            return all(use[name].cpu_cores is not None and (use[name].rss_bytes or 0) > 50e6 for name in names)

        wait_for(measured, "metrics.k8s.io figures for both pods", 90)
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
        wait_for(lambda: sum(r.ready for r in target.replicas()) == 2, "the second pod ready")
        assert target.desired_replicas() == 2
        # Load goes to the pod IPs (the pod network of a node on this machine), no port-forward.
        for replica in target.replicas():
            assert replica.base_url.startswith("http://10.244.0.")
            assert len(post_json(replica.base_url + "/classify", {"images": [[0.0] * 64]})["labels"]) == 1

        def both_scraped() -> bool:
            return all(sample.ok for sample in target.server_samples(target.replicas(), 5.0))

        wait_for(both_scraped, "both pods in Prometheus", 60)

        # A kill fault deletes a pod at once; its ReplicaSet replaces it.
        victim = target.replicas()[0].id
        target.kill_replica(victim)
        wait_for(
            lambda: victim not in [r.id for r in target.replicas()] and sum(r.ready for r in target.replicas()) == 2,
            "a replacement pod ready",
        )
        with pytest.raises(DeployError, match="pause is not available"):
            target.pause_replica(target.replicas()[0].id)
    finally:
        target.stop()
        assert run_objects(api, namespace, target.run_label) == []
        api.delete("v1", "Namespace", None, namespace)


# --------------------------------------------------------------------------- failure paths


def test_an_image_the_node_does_not_have_is_named(cluster: RealCluster, tmp_path: Path) -> None:
    # Not side-loaded, so the kubelet pulls; every registry is a closed loopback port on the test cluster.
    scenario = cluster_scenario(
        cluster, "harness-no-such-image:1", new_namespace(), target__kubernetes__node_containerd=None
    )
    target = KubernetesTarget(scenario, tmp_path)
    error = failing_start(target)
    assert "cannot pull image" in str(error) and "harness-no-such-image:1" in str(error)
    assert_nothing_left(cluster, target)


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


# --------------------------------------------------------------------------- load from inside the cluster


def run_in_cluster(cluster: RealCluster, digits_image: str, tmp_path: Path, workers: int) -> Path:
    """One in-cluster run in a namespace that enforces the "restricted" Pod Security Standard: the loadgen
    chart's pods (own service account, no token, non-root, read-only root) are admitted as the model's are."""
    api = admin(cluster)
    namespace = new_namespace()
    restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": restricted}})
    try:
        return run_restricted_in_cluster(cluster, digits_image, tmp_path, workers, namespace)
    finally:
        api.delete("v1", "Namespace", None, namespace)


def run_restricted_in_cluster(
    cluster: RealCluster, digits_image: str, tmp_path: Path, workers: int, namespace: str
) -> Path:
    scenario = {
        "name": f"in-cluster-{workers}",
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {
            "kind": "kubernetes",
            "replicas": 1,
            "kubernetes": {
                "kubeconfig": str(cluster.kubeconfig),
                "node_containerd": str(cluster.containerd),
                "image": digits_image,
                "namespace": namespace,
                "loadgen": "in-cluster",
                "loadgen_workers": workers,
            },
        },
        "build": {"base_image": "harness-python:bookworm", "ca_bundle": "/etc/ssl/certs/ca-certificates.crt"},
        "stages": [{"name": "open-20", "duration_s": 12, "arrival_rate_rps": 20, "arrival": "constant"}],
        "objectives": [{"metric": "error_rate", "max": 0.05}, {"metric": "throughput_rps", "min": 10}],
    }
    return run_cli(scenario, tmp_path, f"in-cluster-{workers}")


def test_in_cluster_generators_stream_their_records_and_agree_with_one(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    """charts/loadgen in the cluster: every worker's interval records reach the run directory, Locust's own
    totals agree with them, and two workers give the verdict one gives on the same open-model load."""
    verdicts = {}
    for workers in (1, 2):
        run_dir = run_in_cluster(cluster, digits_image, tmp_path, workers)
        records = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]
        assert {record["process"] for record in records} == set(range(workers))
        stage = [record for record in records if record["stage"] == "open-20"]
        requests, scheduled = sum(r["requests"] for r in stage), sum(r["scheduled"] for r in stage)
        # Every arrival the workers scheduled was sent and answered (or counted as dropped).
        assert requests == pytest.approx(scheduled, abs=workers * 2), (requests, scheduled)
        # A constant 20 rps for 12 s is 240 arrivals, split over the workers. A worker that sees the stage
        # start late on a loaded machine schedules only the rest of it (84 and 194 seen beside other tests).
        assert 0 < scheduled <= 240 + workers, scheduled
        totals = json.loads((run_dir / "locust.json").read_text())
        locust_requests = sum(entry["num_requests"] for entry in totals if entry.get("name") != "Aggregated")
        assert locust_requests == pytest.approx(sum(r["requests"] for r in records), abs=workers * 2)
        verdict = json.loads((run_dir / "verdict.json").read_text())
        verdicts[workers] = {(o["objective"], o["stage"]): o["status"] for o in verdict["objectives"]}
    assert verdicts[1] == verdicts[2] and set(verdicts[1].values()) == {"PASS"}, verdicts
