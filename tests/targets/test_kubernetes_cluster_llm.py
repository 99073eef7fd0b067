"""loadtests/llm.yaml on the test cluster (scripts/cluster): the tiny LLM's pod streams completions and chats to two
load generator pods in the cluster (charts/loadgen; the chats' data set of conversations reaches them as a
ConfigMap), whose streamed figures merge into one verdict, and its engine's queue (vLLM's vllm:num_requests_waiting
in /metrics) reaches the chart's HPA through the cluster's Prometheus and prometheus-adapter as
vllm_num_requests_waiting, on which the HPA scales out when the engine cannot keep up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.build import LOCAL_BASE_IMAGE, build_service_image
from harness.config import ServiceConfig
from tests.targets.cluster_support import new_namespace, run_cli
from tests.targets.conftest import ROOT, RealCluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

LLM = ROOT / "examples" / "llm"
MACHINE_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def llm_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The LLM example's image, built offline for real (Docker's layer cache keeps repeated builds short)."""
    service = ServiceConfig(path=LLM, service="service:TinyLLM", endpoint="/v1/completions")
    ca_bundle = MACHINE_CA_BUNDLE if MACHINE_CA_BUNDLE.is_file() else None
    home = tmp_path_factory.mktemp("llm_bentoml_home")
    return build_service_image(service, LOCAL_BASE_IMAGE, ca_bundle, bentoml_home=home).tag


# Not beside the autoscale test (make test runs the cluster lane two tests at a time): both time the HPA on a
# loaded node.
@pytest.mark.usefixtures("loadgen_image")  # built once before any run builds it: see conftest
@pytest.mark.xdist_group("hpa-timing")
def test_the_llm_scenario_streams_and_its_engine_queue_scales_the_hpa(
    cluster: RealCluster, llm_image: str, tmp_path: Path
) -> None:
    data: dict[str, Any] = yaml.safe_load((ROOT / "loadtests" / "llm.yaml").read_text())
    data["service"]["path"] = str(LLM)
    # One sequence at a time: about 10 requests/s of 48 tokens, so 16 requests/s keep a queue.
    data["service"]["env"] = {"LLM_MAX_RUNNING": "1"}
    # The HPA scales on the engine's queue, not CPU: a small request leaves the node's 2 cores room for the test
    # beside this one (two replicas and three generator pods request 0.95 of a core).
    data["resources"] = {"requests": {"cpu": "200m", "memory": "512Mi"}}
    data["requests"][1]["openai"]["prompts"] = str(ROOT / "loadtests" / "llm-prompts.jsonl")
    data["target"] = {
        "kind": "kubernetes",
        "replicas": 1,
        "startup_timeout_s": 240,
        "kubernetes": {
            "kubeconfig": str(cluster.kubeconfig),
            "node_containerd": str(cluster.containerd),
            # The harness scrapes each pod's /metrics at its pod IP.
            "load_route": "pod-ip",
            "image": llm_image,
            "namespace": new_namespace(),
            # Locust in the cluster, streaming like the harness's own generator (the same locustfile).
            "loadgen": "in-cluster",
            "loadgen_workers": 2,
        },
    }
    # The generator pods' image is built offline too, from the machine's base image and CA bundle.
    data["build"] = {"base_image": LOCAL_BASE_IMAGE, "ca_bundle": str(MACHINE_CA_BUNDLE)}
    data["stages"] = [
        {"name": "warmup", "duration_s": 5, "arrival_rate_rps": 2, "judged": False},
        # Two of the HPA's 15 s syncs after Prometheus (5 s scrapes) and the adapter have seen the queue.
        {"name": "overload", "duration_s": 50, "arrival_rate_rps": 16},
    ]
    queue = {"name": "vllm_num_requests_waiting"}
    data["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 2,
        "metrics": [
            {"type": "Pods", "pods": {"metric": queue, "target": {"type": "AverageValue", "averageValue": "2"}}}
        ],
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
    }
    run_dir = run_cli(data, tmp_path, "llm")

    verdict = json.loads((run_dir / "verdict.json").read_text())
    overload = next(stage for stage in verdict["stages"] if stage["name"] == "overload")
    assert overload["streamed"] > 100 and set(overload["by_request"]) == {"complete", "chat"}
    assert overload["ttft"]["p50"]["value_s"] > overload["itl"]["p50"]["value_s"] > 0
    # Both generator pods streamed both requests; their histograms merged (counts add up across the pods).
    records = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]
    in_stage = [r for r in records if r["stage"] == "overload"]
    assert {r["process"] for r in in_stage if r["streamed"]} == {0, 1}
    assert overload["streamed"] == sum(r["streamed"] for r in in_stage)
    chats = sum(r["by_request"]["chat"]["streamed"] for r in in_stage if "chat" in r["by_request"])
    assert chats == overload["by_request"]["chat"]["streamed"] > 10, "chats from the data set the pods were sent"
    samples = [json.loads(line) for line in (run_dir / "server_samples.jsonl").read_text().splitlines()]
    queued = [s["engine_waiting"] for s in samples if s["ok"] and s["engine_waiting"] is not None]
    assert queued and max(queued) > 2, "the engine's queue grew beyond what one running sequence serves"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    decisions = [e["detail"] for e in events if e["kind"] == "scale_decision" and e["detail"]["source"] == "hpa"]
    assert decisions and decisions[0]["to"] == 2, [e for e in events if e["kind"] in ("scale_decision", "warning")]
    (reading,) = [p for p in decisions[0]["proposals"] if p["metric"] == "vllm_num_requests_waiting"]
    assert reading["current"] is not None and reading["current"] > 2 and reading["target"] == 2
