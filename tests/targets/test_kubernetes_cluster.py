"""The Kubernetes target on a real cluster (scripts/cluster: a real API server, scheduler, controller manager,
kubelet, containerd, metrics-server, Prometheus and prometheus-adapter on this machine), with the digits image.

Rollout and readiness, /metrics of every pod by each route (pod proxy, Prometheus, port-forward), CPU and
memory from metrics.k8s.io, cleanup by label with the namespace, and the failure paths a user meets first:
an image the node does not have, a crash loop, an OOM kill, a forbidden service account, no cluster at all.
Each ends in one DeployError naming the cause, and nothing of the run is left in the cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import Scenario, parse_scenario
from harness.errors import DeployError
from harness.metrics.promql import PrometheusReplicaMetrics, urllib_fetch
from harness.model import Event
from harness.processes import owner_id
from harness.targets.base import OWNER_LABEL, RUN_LABEL
from harness.targets.kubernetes import KubernetesTarget
from harness.targets.kubernetes_api import ClientKubernetesApi
from tests.targets.conftest import DIGITS_DIR, ROOT, RealCluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# make test runs this module on two pytest-xdist workers (--dist loadgroup), each taking one group whole: the
# real-HPA run, which mostly waits for the controller's 15 s syncs, with the short API-only tests, on one; the
# other pod runs on the other. About 4.5 min each, instead of 9 one after the other.
WITH_THE_REAL_HPA = pytest.mark.xdist_group("with-the-real-hpa")
WITH_THE_OTHER_POD_RUNS = pytest.mark.xdist_group("with-the-other-pod-runs")

WAIT_S = 120.0


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


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline_s, f"{what} not within {timeout_s:g} s"
        time.sleep(1.0)


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
    wait_for(lambda: api.get("v1", "Namespace", None, target.namespace) is None, f"namespace {target.namespace} gone")
    assert run_objects(api, target.namespace, target.run_label) == []


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
    with urllib.request.urlopen(request, timeout=30) as response:
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


def run_cli(scenario: dict[str, Any], directory: Path, name: str) -> Path:
    """`harness run` of a scenario written under `directory`; its run directory (FAIL and INCONCLUSIVE are
    results here, a harness error is not)."""
    reports = directory / f"reports-{name}"
    result = harness_run({**scenario, "output": {"dir": str(reports)}}, directory / f"{name}.yaml")
    assert result.returncode in (0, 1, 3), result.stderr[-3000:]
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    return run_dir


# --------------------------------------------------------------------------- a healthy rollout


@WITH_THE_OTHER_POD_RUNS
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


@WITH_THE_OTHER_POD_RUNS
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


@WITH_THE_OTHER_POD_RUNS
def test_an_image_the_node_does_not_have_is_named(cluster: RealCluster, tmp_path: Path) -> None:
    # Not side-loaded, so the kubelet pulls; every registry is a closed loopback port on the test cluster.
    scenario = cluster_scenario(
        cluster, "harness-no-such-image:1", new_namespace(), target__kubernetes__node_containerd=None
    )
    target = KubernetesTarget(scenario, tmp_path)
    error = failing_start(target)
    assert "cannot pull image" in str(error) and "harness-no-such-image:1" in str(error)
    assert_nothing_left(cluster, target)


@WITH_THE_OTHER_POD_RUNS
def test_a_crash_looping_pod_is_named_with_its_log(cluster: RealCluster, digits_image: str, tmp_path: Path) -> None:
    scenario = cluster_scenario(cluster, digits_image, new_namespace(), service__env={"DIGITS_MODEL": "bogus"})
    target = KubernetesTarget(scenario, tmp_path)
    error = failing_start(target)
    assert "CrashLoopBackOff" in str(error)
    assert "DIGITS_MODEL='bogus'" in str(error), "the container's last log lines are in the error"
    assert_nothing_left(cluster, target)


@WITH_THE_OTHER_POD_RUNS
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


@WITH_THE_REAL_HPA
def test_a_forbidden_service_account_is_one_error_and_touches_nothing(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    api = admin(cluster)
    account = f"harness-nobody-{uuid.uuid4().hex[:6]}"
    api.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": "default"}})
    try:
        from kubernetes import client, config

        core = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
        token = core.create_namespaced_service_account_token(account, "default", request).status.token
        kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
        kubeconfig["users"] = [{"name": account, "user": {"token": token}}]
        kubeconfig["contexts"][0]["context"]["user"] = account
        restricted = tmp_path / "restricted.kubeconfig"
        restricted.write_text(yaml.safe_dump(kubeconfig))
        namespace = new_namespace()
        scenario = cluster_scenario(cluster, digits_image, namespace, target__kubernetes__kubeconfig=str(restricted))
        target = KubernetesTarget(scenario, tmp_path)
        error = failing_start(target)
        assert "forbidden" in str(error).lower() and account in str(error)
        assert api.get("v1", "Namespace", None, namespace) is None
    finally:
        api.delete("v1", "ServiceAccount", "default", account)


@WITH_THE_REAL_HPA
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
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the Kubernetes API server" in errors[0], result.stderr[-2000:]


# --------------------------------------------------------------------------- the real HPA


@WITH_THE_REAL_HPA
def test_autoscale_scenario_scales_out_and_back_in_under_the_real_hpa(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    """loadtests/autoscale.yaml as `make loadtest TARGET=cluster` runs it, with shorter stages: the chart's HPA,
    fed by metrics-server (CPU) and prometheus-adapter (in-flight requests), scales 1 -> >= 3 under the step
    and back in after it."""
    data = yaml.safe_load((ROOT / "loadtests" / "autoscale.yaml").read_text())
    data["service"]["path"] = str(DIGITS_DIR)
    # Shorter than the nightly's stages, still a few of the controller's 15 s sync periods each: the
    # step long enough to reach 3-4 ready pods, the cool-down long enough for the 20 s stabilization.
    durations_s = {"baseline": 15, "step-up": 80, "cool-down": 70}
    for stage in data["stages"]:
        stage["duration_s"] = durations_s[stage["name"]]
    data["target"]["kind"] = "kubernetes"
    data["target"]["kubernetes"] = {
        "kubeconfig": str(cluster.kubeconfig),
        "node_containerd": str(cluster.containerd),
        "load_route": "pod-ip",
        "image": digits_image,
        "namespace": new_namespace(),
    }
    # FAIL is a possible truth here (503s while new pods start); a harness error is not.
    run_dir = run_cli(data, tmp_path, "autoscale")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    counts = [json.loads(line) for line in (run_dir / "replica_counts.jsonl").read_text().splitlines()]
    stages = {s["name"]: s for s in json.loads((run_dir / "stages.json").read_text())}
    decisions = [e["detail"] for e in events if e["kind"] == "scale_decision"]
    assert decisions and all(d["source"] == "hpa" for d in decisions)
    assert max(c["desired"] for c in counts) >= 3 and max(c["ready"] for c in counts) >= 3, decisions
    peak_s = max(c["t_s"] for c in counts if c["desired"] == max(c["desired"] for c in counts))
    assert peak_s < stages["cool-down"]["end_s"]
    assert counts[-1]["desired"] < max(c["desired"] for c in counts), "the HPA scaled back in during the cool-down"
    # Both metrics reached the controller: CPU from metrics-server, in-flight requests from prometheus-adapter.
    seen = {p["metric"] for d in decisions for p in d["proposals"]}
    assert {"cpu", "bentoml_service_request_in_progress"} <= seen, decisions
    verdict = json.loads((run_dir / "verdict.json").read_text())
    (step,) = [s for s in verdict["autoscaling"] if s["stage"] == "step-up"]
    assert step["first_scale_up_decision_s"] is not None and step["first_scale_up_decision_s"] <= 45


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


@WITH_THE_OTHER_POD_RUNS
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


# --------------------------------------------------------------------------- a harness that dies


@WITH_THE_REAL_HPA
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
        wait_for(lambda: any((tmp_path / "reports").glob("*/stages.json")), "the load started", 180)
        assert api.get("v1", "Namespace", None, namespace) is not None
    finally:
        harness.kill()
        harness.wait()

    def deleted() -> bool:
        stored = api.get("v1", "Namespace", None, namespace)
        return stored is None or stored.get("status", {}).get("phase") == "Terminating"

    wait_for(deleted, "the namespace's deletion", 15)
    wait_for(lambda: api.get("v1", "Namespace", None, namespace) is None, "the namespace gone", WAIT_S)


@WITH_THE_REAL_HPA
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
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli", "cleanup", "--no-docker", "--kubeconfig", str(cluster.kubeconfig)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert f"cluster: deleted namespace {left} (a harness that is gone)" in result.stdout
        assert live not in result.stdout
        assert (api.get("v1", "Namespace", None, live) or {}).get("status", {}).get("phase") == "Active"
    finally:
        api.delete("v1", "Namespace", None, live)
        api.delete("v1", "Namespace", None, left)
