"""The real HPA on the real cluster (scripts/cluster), and what a harness meets around it: the chart's HPA
fed by metrics-server and prometheus-adapter scaling a load step out and back in, a harness SIGKILLed mid-run
whose watchdog deletes its namespace, `harness cleanup` of dead harnesses' namespaces, a forbidden service
account and no cluster at all.

make test runs this file and test_kubernetes_cluster.py on two pytest-xdist workers (--dist loadfile): the
real-HPA run mostly waits for the controller's 15 s syncs, so it goes beside the other pod runs rather than
after them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from harness.processes import owner_id
from harness.targets.base import OWNER_LABEL
from harness.targets.kubernetes import KubernetesTarget
from tests.targets.cluster_support import (
    WAIT_S,
    admin,
    cluster_scenario,
    failing_start,
    harness_run,
    new_namespace,
    run_cli,
    wait_for,
)
from tests.targets.conftest import DIGITS_DIR, ROOT, RealCluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


# --------------------------------------------------------------------------- failures that need no pod


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


# --------------------------------------------------------------------------- a harness that dies


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
