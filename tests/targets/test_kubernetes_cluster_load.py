"""The real-cluster runs that drive load (scripts/cluster): loadtests/autoscale.yaml under the chart's real HPA,
fed by metrics-server and prometheus-adapter, scaling a load step out and back in; and load from inside the
cluster (charts/loadgen): one and two workers agreeing, the scenario's requests (checks, answers alone, bad
input, a secret header, a data set over 1 MiB) with every log stream cut mid-load, the user's own locustfile,
and generators that cannot start.

Apart from test_kubernetes_cluster.py, whose tests mostly wait on the API server and the kubelet, since these
each keep pods busy for up to a few minutes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import parse_scenario
from harness.errors import LoadError
from harness.load.in_cluster import InClusterLoad
from harness.load.plan import build_load_plan
from harness.load.pod_files import PART_BYTES
from harness.targets.base import RUN_LABEL
from harness.targets.kubernetes import CLEANUP_KINDS, KubernetesTarget
from harness.targets.kubernetes_access import rights_needed, role_manifests
from harness.targets.kubernetes_api import ClientKubernetesApi
from tests.targets.cluster_support import (
    LOAD_SHEDDING,
    WAIT_S,
    admin,
    cluster_scenario,
    delete_from_registry,
    new_namespace,
    pull_secret,
    registry_auth,
    run_cli,
    token_kubeconfig,
)
from tests.targets.conftest import DIGITS_DIR, ROOT, RealCluster
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


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


@pytest.mark.usefixtures("loadgen_image")  # built once before any run builds it: see conftest
@pytest.mark.parametrize("workers", [1, 2])
def test_in_cluster_generators_stream_their_records_and_agree_with_one(
    cluster: RealCluster, digits_image: str, tmp_path: Path, workers: int
) -> None:
    """charts/loadgen in the cluster: every worker's interval records reach the run directory, Locust's own
    totals agree with them, and the verdict is the one the merged records give, with one worker or two. (Whether
    the objectives pass is not asserted: a pod short of CPU on a loaded node answers 503s, a true result.)"""
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
    # The verdict judges what the workers' records add up to.
    verdict = json.loads((run_dir / "verdict.json").read_text())
    measured = {o["metric"]: o["measured"] for o in verdict["objectives"] if o["stage"] == "open-20"}
    failures = sum(r["failures"] for r in stage)
    assert measured == {
        "error_rate": pytest.approx(failures / requests),
        "throughput_rps": pytest.approx(requests / 12.0),
    }, (measured, requests, failures)
    assert {o["status"] for o in verdict["objectives"]} <= {"PASS", "WARN", "FAIL"}


# --------------------------------------------------------------------------- the real HPA


# Not beside the LLM test (make test runs the cluster lane two tests at a time): both time the HPA on a loaded
# node, and this one's four replicas request one of the node's two cores.
@pytest.mark.xdist_group("hpa-timing")
def test_autoscale_scenario_scales_out_and_back_in_under_the_real_hpa(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    """loadtests/autoscale.yaml as `make loadtest TARGET=cluster` runs it, with shorter stages: the chart's HPA,
    fed by metrics-server (CPU) and prometheus-adapter (in-flight requests), scales 1 -> >= 3 under the step
    and back in after it."""
    data = yaml.safe_load((ROOT / "loadtests" / "autoscale.yaml").read_text())
    data["service"]["path"] = str(DIGITS_DIR)
    # Shorter than the nightly's stages, still a few of the controller's 15 s sync periods each: the
    # step long enough to reach 3-4 ready pods (3 were ready 26 s into it beside other tests, the 4th at
    # 40 s), the cool-down long enough for the 20 s stabilization (the first scale-in came 45 s into it).
    durations_s = {"baseline": 15, "step-up": 60, "cool-down": 70}
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


# --------------------------------------------------------------------------- the scenario's own traffic in the cluster


class ConnectionCutter:
    """A TCP relay in front of the API server that can cut every connection through it at once: what a network
    blip does to the harness's log follows (and to every other connection it has open then)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.live: set[socket.socket] = set()
        self.cuts = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, name="cutter-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=10)
            server.settimeout(None)
            with self.lock:
                self.live |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with self.lock:
                self.live.discard(sock)

    def cut(self) -> int:
        """Close every connection open now; returns how many sockets were cut."""
        with self.lock:
            cut = list(self.live)
        self._drop(*cut)
        self.cuts += 1
        return len(cut)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()


def kubeconfig_through(kubeconfig: Path, port: int, path: Path) -> Path:
    """A kubeconfig of the cluster with its API server reached at 127.0.0.1:`port` (its certificate names the IP)."""
    config = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return path


def digits_rows(path: Path) -> Path:
    """The digits data set as rows, padded past 1 MiB so that it travels as two ConfigMaps."""
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    path.write_text(
        "".join(
            json.dumps({"pixels": [float(p) for p in row], "label": int(label), "note": "n" * 400}) + "\n"
            for row, label in zip(pixels, labels, strict=True)
        )
    )
    assert path.stat().st_size > PART_BYTES
    return path


def in_cluster_scenario(cluster: RealCluster, digits_image: str, name: str, **sections: Any) -> dict[str, Any]:
    return {
        "name": name,
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {
            "kind": "kubernetes",
            "replicas": 1,
            "startup_timeout_s": 240,
            "kubernetes": {
                "kubeconfig": str(cluster.kubeconfig),
                "node_containerd": str(cluster.containerd),
                "image": digits_image,
                "namespace": new_namespace(),
                "loadgen": "in-cluster",
                "loadgen_workers": 1,
            },
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "build": {"base_image": "harness-python:bookworm", "ca_bundle": "/etc/ssl/certs/ca-certificates.crt"},
        **sections,
    }


def worker_records_printed(api: ClientKubernetesApi, namespace: str) -> list[int]:
    """How many interval records each running worker pod has printed so far."""
    listed = api.list("v1", "Pod", namespace, "app.kubernetes.io/component=worker") or {}
    counts = []
    for pod in listed.get("items") or []:
        if (pod.get("status") or {}).get("phase") != "Running":
            continue
        log = api.pod_log(namespace, pod["metadata"]["name"], "locust", tail_lines=1000, previous=False)
        counts.append(sum(line.startswith("harness-interval ") for line in log.splitlines()))
    return counts


@pytest.mark.usefixtures("loadgen_image")  # built once before any run builds it: see conftest
def test_in_cluster_requests_checks_answers_alone_bad_input_and_a_dropped_log_stream(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    """requests: with a data set over 1 MiB, a header whose value is a secret of the harness's environment, a
    check of status, a field and the answer alone, and the bad-input mix, sent by two workers in the cluster. The
    harness reaches the API server through a relay that cuts every connection once both workers have printed
    records: their log streams break mid-load, are followed again, and no record is lost or doubled.

    As a CI job on a team's cluster runs it: with nothing but a ServiceAccount bound to the Role `harness rbac`
    prints for the scenario, in a namespace an admin made, the service's and the generators' images pushed to the
    cluster's registry and pulled by digest with a pull secret (side-loading off)."""
    token = f"harness-test-{uuid.uuid4().hex[:12]}"
    data = in_cluster_scenario(
        cluster,
        digits_image,
        "in-cluster-requests",
        stages=[{"name": "open-20", "duration_s": 12, "arrival_rate_rps": 20, "arrival": "constant"}],
        requests=[
            {
                "name": "classify",
                "weight": 3,
                "path": "/classify",
                # The digits service answers 415 to another media type: a 200 shows the value reached the pods.
                "headers": {"Content-Type": "${DIGITS_CONTENT_TYPE}"},
                "body_template": {"images": ["{{pixels}}"]},
                "dataset": str(digits_rows(tmp_path / "digits.jsonl")),
                "check": {
                    "status": [200],
                    "fields": [{"field": "labels.0", "among": list(range(10))}],
                    "same_as_alone": {"field": "labels.0", "bodies": 30},
                },
            },
            {"name": "live", "method": "GET", "path": "/livez"},
        ],
        payload={"malformed_fraction": 0.1},
        objectives=[
            {"metric": "error_rate", "max": 0.05},
            {"metric": "mismatch_rate", "max": 0.05},
            {"metric": "bad_input_5xx_rate", "max": 0.05},
        ],
    )
    kubernetes = data["target"]["kubernetes"]
    kubernetes["loadgen_workers"] = 2
    del kubernetes["node_containerd"]
    # A repository of this test's own: the images it deletes at its end are no other test's.
    kubernetes |= {"registry": f"{cluster.registry}/harness-test-requests", "image_pull_secrets": ["harness-pull"]}
    namespace = kubernetes["namespace"]
    api = admin(cluster)
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    pushed: list[str] = []
    try:
        pull_secret(cluster, namespace)
        env = {**os.environ, "DIGITS_CONTENT_TYPE": f"application/json; x-harness-test={token}"}
        for manifest in role_manifests(rights_needed(parse_scenario(data)), namespace, "run", "harness-ci"):
            api.create(manifest)
        account = token_kubeconfig(cluster, "harness-ci", namespace, tmp_path / "ci.kubeconfig")
        # `docker login` into credentials of this test's own, as a user's ~/.docker/config.json holds them.
        (tmp_path / "docker").mkdir()
        (tmp_path / "docker" / "config.json").write_text(
            json.dumps({"auths": {cluster.registry: {"auth": registry_auth(cluster)}}})
        )
        env["DOCKER_CONFIG"] = str(tmp_path / "docker")
        clusters = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"]
        server = urllib.parse.urlsplit(clusters[0]["cluster"]["server"])
        cutter = ConnectionCutter((server.hostname or "127.0.0.1", server.port or 443))
        kubernetes["kubeconfig"] = str(kubeconfig_through(account, cutter.port, tmp_path / "kubeconfig"))
        reports = tmp_path / "reports"
        path = tmp_path / "requests.yaml"
        path.write_text(yaml.safe_dump({**data, "output": {"dir": str(reports)}}))
        with subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "run", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as run:
            try:
                wait_until(
                    lambda: len(counts := worker_records_printed(api, namespace)) == 2 and min(counts) >= 3,
                    "both workers printing records",
                    300,
                )
                assert cutter.cut() > 0
                output, _ = run.communicate(timeout=300)
            finally:
                run.kill()
                cutter.close()
        assert run.returncode in (0, 1, 3), output[-3000:]
        (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        pushed = sorted(event["detail"]["reference"] for event in events if event["kind"] == "image_pushed")
        assert_deployed_from_the_registry(cluster, api, namespace, run_dir, events, pushed)
        assert_requests_in_cluster(run_dir, events, token)
    finally:
        api.delete("v1", "Namespace", None, namespace)
        for reference in pushed:
            delete_from_registry(cluster, reference)
    wait_until(lambda: api.get("v1", "Namespace", None, namespace) is None, f"namespace {namespace} gone", WAIT_S)


def assert_deployed_from_the_registry(
    cluster: RealCluster,
    api: ClientKubernetesApi,
    namespace: str,
    run_dir: Path,
    events: list[dict[str, Any]],
    pushed: list[str],
) -> None:
    """Both images went to the registry and both kinds of pods pulled them by digest with the pull secret; the
    run's objects are gone and the namespace it did not create is kept."""
    repositories = [reference.split("@")[0] for reference in pushed]
    expected = [f"{cluster.registry}/harness-test-requests/{name}" for name in ("digits_classifier", "harness-loadgen")]
    assert repositories == expected, pushed
    kinds = [event["kind"] for event in events]
    assert "image_loaded" not in kinds and "namespace_created" not in kinds
    service_manifests = (run_dir / "work" / "replicas" / "manifests.yaml").read_text()
    loadgen_manifests = (run_dir / "work" / "load" / "loadgen-manifests.yaml").read_text()
    for reference, manifests in zip(pushed, (service_manifests, loadgen_manifests), strict=True):
        assert reference in manifests and "harness-pull" in manifests, manifests[:2000]
    assert run_objects_left(api, namespace) == []
    assert api.get("v1", "Namespace", None, namespace) is not None


def assert_requests_in_cluster(run_dir: Path, events: list[dict[str, Any]], token: str) -> None:
    """What the requests test asserts of the run directory."""
    resumed = [event["detail"] for event in events if event["kind"] == "loadgen_log_resumed"]
    assert len({detail["pod"] for detail in resumed}) == 2 and all(d["records_read"] >= 1 for d in resumed), resumed
    records = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]
    assert {record["process"] for record in records} == {0, 1}
    for process in (0, 1):
        # Each worker's intervals follow one another without a gap: none was lost across the break.
        windows = sorted({(r["t_start_s"], r["t_end_s"]) for r in records if r["process"] == process})
        assert all(after[0] == before[1] for before, after in itertools.pairwise(windows)), windows
    # Locust's own count agrees with the records' (bad input is kept apart from the traffic in both).
    totals = json.loads((run_dir / "locust.json").read_text())
    locust_traffic = sum(e["num_requests"] for e in totals if "[malformed" not in e["name"])
    assert locust_traffic == pytest.approx(sum(r["requests"] for r in records), abs=4)
    assert {e["name"] for e in totals} >= {"classify", "live"}
    # Every classify answer was checked (status, field, answer alone) and agreed; bad input met 4xx, never 5xx.
    # How many were answered is the machine's: one make test had 126 of 154 shed (503) by a pod short of CPU.
    classify = next(e for e in totals if e["name"] == "classify")
    checked = sum(r["checked"] for r in records)
    # (Within the 4 requests Locust's count and the records' may differ by, above.)
    assert checked > 0 and checked == pytest.approx(classify["num_requests"] - classify["num_failures"], abs=4)
    assert sum(r["mismatches"] for r in records) == 0
    assert sum(r["bad_inputs"] for r in records) > 0 and sum(r["bad_input_5xx"] for r in records) == 0
    # A header value lost on the way would have every classify answered 415; load shedding is allowed, so
    # error_rate is not asserted.
    errors: Counter[str] = Counter()
    for record in records:
        errors.update(record["errors"])
    assert set(errors) <= LOAD_SHEDDING, errors
    verdict = json.loads((run_dir / "verdict.json").read_text())
    judged = [o for o in verdict["objectives"] if o["metric"] != "error_rate"]
    assert {o["metric"] for o in judged} == {"mismatch_rate", "bad_input_5xx_rate"}, verdict["objectives"]
    assert {o["status"] for o in judged} <= {"PASS", "WARN"}, verdict["objectives"]
    # The header's value went to the pods as a Secret and nowhere into the run directory.
    assert not [p for p in run_dir.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]


def run_objects_left(api: ClientKubernetesApi, namespace: str) -> list[str]:
    """Objects the harness labels with a run that are still in `namespace`."""
    found = []
    for api_version, kind in (*CLEANUP_KINDS, ("v1", "Pod")):
        listed = api.list(api_version, kind, namespace, RUN_LABEL) or {}
        found += [f"{kind}/{item['metadata']['name']}" for item in listed.get("items") or []]
    return found


USERS_LOCUSTFILE = """
from locust import FastHttpUser, constant, task

IMAGE = [0.0] * 64


class Classifier(FastHttpUser):
    wait_time = constant(0.05)

    @task
    def classify(self):
        body = {"images": [IMAGE]}
        with self.client.post("/classify", json=body, name="user-classify", catch_response=True) as answer:
            if answer.status_code != 200 or "labels" not in answer.text:
                answer.failure(f"unexpected answer {answer.status_code}")
"""


@pytest.mark.usefixtures("loadgen_image")  # built once before any run builds it: see conftest
def test_in_cluster_runs_the_users_own_locustfile(cluster: RealCluster, digits_image: str, tmp_path: Path) -> None:
    """load.locustfile in the cluster: the user's class, delivered as a ConfigMap, sends the users stage's load and
    its requests are recorded like the harness's own."""
    locustfile = tmp_path / "users.py"
    locustfile.write_text(USERS_LOCUSTFILE)
    data = in_cluster_scenario(
        cluster,
        digits_image,
        "in-cluster-locustfile",
        stages=[{"name": "users-4", "duration_s": 8, "users": 4, "spawn_rate": 4}],
        load={"locustfile": str(locustfile)},
        objectives=[{"metric": "error_rate", "max": 0.05}],
    )
    run_dir = run_cli(data, tmp_path, "locustfile")
    records = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]
    stage = [record for record in records if record["stage"] == "users-4"]
    assert sum(r["requests"] for r in stage) > 20
    assert {kind for r in stage for kind in r["errors"]} <= LOAD_SHEDDING, [r["errors"] for r in stage]
    totals = json.loads((run_dir / "locust.json").read_text())
    assert {e["name"] for e in totals if e["num_requests"]} == {"user-classify"}


# --------------------------------------------------------------------------- generators that cannot start


class NoModelTarget(KubernetesTarget):
    """The Kubernetes target with no model deployed (these generators never get to send): its namespace, image
    side-loading (an image this machine does not have is left to the node, which has none either) and cleanup."""

    def service_url(self) -> str:
        return "http://127.0.0.1:9"

    def load_image(self, image: str) -> None:
        if ":no-such-image" not in image:
            super().load_image(image)


@pytest.mark.parametrize("case", ["pull", "crash", "refused", "unschedulable"])
def test_a_generator_that_cannot_start_is_named_within_a_minute_and_nothing_is_left(
    cluster: RealCluster, digits_image: str, loadgen_image: str, tmp_path: Path, case: str
) -> None:
    """In a namespace whose ResourceQuota admits only pods with requests and limits (the defaults have them): an
    image the node cannot pull, a locustfile that crashes in the pod (it imports a package the generator's image
    lacks), workers beyond the quota and pods no node accepts. Each ends the load with LoadError (exit 4) naming
    the pod or Job and the cause, the image and crash at once, the others after the start grace, and the run's
    cleanup leaves nothing of it in the namespace."""
    crashing = tmp_path / "crashing.py"
    crashing.write_text("import kubernetes  # installed beside the harness, not in the generator's image\n")
    image, pods, locustfile, cause = {
        "pull": (loadgen_image.split(":")[0] + ":no-such-image", {}, None, "ErrImageNeverPull"),
        "crash": (loadgen_image, {}, crashing, "exited with code 1"),
        "refused": (
            loadgen_image,
            {"resources": {"requests": {"cpu": "3", "memory": "256Mi"}, "limits": {"cpu": "3", "memory": "512Mi"}}},
            None,
            "exceeded quota",
        ),
        "unschedulable": (
            loadgen_image,
            {"node_selector": {"harness.dev/no-such-pool": "none"}},
            None,
            "cannot be scheduled",
        ),
    }[case]
    api = admin(cluster)
    namespace = new_namespace()
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    # A quota on requests and limits: pods that set neither (BestEffort) are refused, the defaults are admitted.
    hard = {"requests.cpu": "2", "requests.memory": "4Gi", "limits.cpu": "4", "limits.memory": "8Gi"}
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "compute", "namespace": namespace},
            "spec": {"hard": hard},
        }
    )
    try:
        scenario = cluster_scenario(
            cluster,
            digits_image,
            namespace,
            target__kubernetes__loadgen="in-cluster",
            target__kubernetes__loadgen_pods=pods,
            stages=[{"name": "s", "duration_s": 5, "users": 1}],
            **({"load": {"locustfile": str(locustfile)}} if locustfile else {}),
        )
        target = NoModelTarget(scenario, tmp_path / case, run_id=f"cannot-start-{case}")
        (tmp_path / case).mkdir()
        plan = build_load_plan(scenario, endpoints_file=tmp_path / "e.json", intervals_dir=tmp_path / "i")
        load = InClusterLoad(
            target,
            plan,
            tmp_path / case,
            lambda record: None,
            image=image,
            json_file=tmp_path / "l.json",
            workers=1,
            pods=scenario.target.kubernetes.loadgen_pods,
            start_grace_s=5,
        )
        started_s = time.monotonic()
        try:
            load.start()
            with pytest.raises(LoadError) as raised:
                load.wait()
            named_s = time.monotonic() - started_s
        finally:
            load.stop()
            target.stop()
        message = str(raised.value)
        assert message.startswith("the in-cluster load generator cannot start: ") and cause in message, message
        assert "\n" not in message and named_s < 60, (case, named_s)
        if case == "crash":
            assert "ModuleNotFoundError: No module named 'kubernetes'" in message, message
        assert run_objects_left(api, namespace) == [], case
    finally:
        api.delete("v1", "Namespace", None, namespace)
