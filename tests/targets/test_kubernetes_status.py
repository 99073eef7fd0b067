"""Pure reading of Kubernetes API objects (harness.targets.kubernetes_status) against recorded API responses:
pod and HPA status as replicas and run events, and rollout-failure diagnosis (image pull, crash loop,
unschedulable, failing probes, a missing metrics API).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_fakes import CRASH_LOG, IMAGE, POD_1, POD_2, POD_3, fixture, no_logs, pods

from harness.model import Event, MetricProposal, ReplicaCrashed, ReplicaReady, ResourceUse, ScaleDecision, to_json_dict
from harness.targets.kubernetes_status import (
    diagnose_hpa,
    diagnose_pods,
    dropped_tolerances,
    hpa_desired_replicas,
    hpa_events,
    parse_time,
    pod_events,
    pod_replica,
    pod_resource_use,
)

# --------------------------------------------------------------------------- reading API objects


def test_pod_replica_from_a_ready_pod() -> None:
    replica = pod_replica(pods("pods_ready.json")[0], "http://127.0.0.1:4000")
    assert replica.id == POD_1 and replica.ready and not replica.crashed
    assert replica.started_at_s == parse_time("2025-03-01T12:00:07Z")
    assert replica.ready_at_s == parse_time("2025-03-01T12:00:31Z")
    assert replica.container_id is not None and replica.container_id.startswith("containerd://")


def test_pod_replica_not_ready_has_no_ready_time_and_terminating_is_not_ready() -> None:
    assert pod_replica(pods("pods_starting.json")[0], "").ready_at_s is None
    terminating = pods("pods_scaling_down.json")[1]
    assert terminating["metadata"]["deletionTimestamp"]
    assert not pod_replica(terminating, "").ready


def test_pod_resource_use_sums_containers_from_pod_metrics() -> None:
    use = pod_resource_use(fixture("pod_metrics.json"))
    assert use[POD_1].cpu_cores == pytest.approx(0.441123456)
    assert use[POD_1].rss_bytes == 318712 * 1024
    assert use[POD_2] == ResourceUse(cpu_cores=0.0, rss_bytes=301224 * 1024)


# --------------------------------------------------------------------------- diagnosis


def test_image_pull_backoff_is_fatal_with_a_kind_load_hint() -> None:
    problem = diagnose_pods(pods("pods_image_pull_backoff.json"), [], no_logs, kind_cluster="harness")
    assert problem is not None and problem.fatal and problem.cause == "image-pull"
    assert f"cannot pull image {IMAGE} (ImagePullBackOff" in problem.message
    assert problem.hint.startswith(f"kind load docker-image {IMAGE} --name harness")


def test_err_image_pull_alone_is_reported_but_not_yet_fatal() -> None:
    problem = diagnose_pods(pods("pods_err_image_pull.json"), [], no_logs)
    assert problem is not None and not problem.fatal
    assert "ErrImagePull" in problem.message and "pull access denied" in problem.message
    assert "push" in problem.hint and "kind load docker-image" in problem.hint


def test_crash_loop_is_fatal_and_quotes_the_previous_containers_log() -> None:
    asked: list[tuple[str, str, bool]] = []

    def log_tail(pod: str, container: str, previous: bool) -> str:
        asked.append((pod, container, previous))
        return " | ".join(CRASH_LOG.strip().splitlines()[-3:])

    problem = diagnose_pods(pods("pods_crash_loop.json"), [], log_tail)
    assert problem is not None and problem.fatal and problem.cause == "crash-loop"
    assert asked == [(POD_1, "model-service", True)]
    assert "CrashLoopBackOff after 3 restart(s), last exit 1 (Error)" in problem.message
    assert "FileNotFoundError: [Errno 2] No such file or directory: 'model.joblib'" in problem.message


def test_oom_killed_crash_loop_hints_at_the_memory_limit() -> None:
    problem = diagnose_pods(pods("pods_oom_killed.json"), [], lambda *_: "(empty log)")
    assert problem is not None and "last exit 137 (OOMKilled)" in problem.message
    assert "resources.limits.memory" in problem.hint


def test_unschedulable_for_cpu_hints_at_the_cpu_request() -> None:
    problem = diagnose_pods(
        pods("pods_pending_insufficient_cpu.json"),
        fixture("events_failed_scheduling.json")["items"],
        no_logs,
        requests={"cpu": "500m", "memory": "512Mi"},
    )
    assert problem is not None and not problem.fatal and problem.cause == "unschedulable"
    assert "0/2 nodes are available: 2 Insufficient cpu" in problem.message
    assert problem.hint == "lower resources.requests.cpu (now 500m), or add nodes"


def test_healthy_pods_have_no_problem() -> None:
    assert diagnose_pods(pods("pods_ready.json"), fixture("events_empty.json")["items"], no_logs) is None


def test_hpa_without_resource_metrics_asks_for_metrics_server() -> None:
    problem = diagnose_hpa(fixture("hpa_failed_get_resource_metric.json"))
    assert problem is not None and problem.cause == "hpa-FailedGetResourceMetric"
    assert "unable to fetch metrics from resource metrics API" in problem.message
    assert "metrics-server" in problem.hint
    assert diagnose_hpa(fixture("hpa_steady_2.json")) is None


def test_dropped_tolerances() -> None:
    sent = {"behavior": {"scaleUp": {"tolerance": "0.05"}, "scaleDown": {"tolerance": "0.1"}}}
    assert dropped_tolerances(sent, {"behavior": {"scaleUp": {"tolerance": "50m"}, "scaleDown": {}}}) == [
        "behavior.scaleDown.tolerance"
    ]
    assert dropped_tolerances({}, {}) == []


# --------------------------------------------------------------------------- status -> events


def test_hpa_status_sequence_becomes_scale_decisions() -> None:
    sequence = [
        "hpa_failed_get_resource_metric.json",
        "hpa_steady_2.json",
        "hpa_scale_up_3.json",
        "hpa_steady_3.json",
        "hpa_scale_down_2.json",
    ]
    events: list[Event] = []
    previous = None
    for name in sequence:
        current = fixture(name)
        events += hpa_events(previous, current)
        previous = current
    assert events == [
        ScaleDecision(
            2,
            3,
            source="hpa",
            reason="the HPA controller was able to update the target scale to 3",
            limited_by=None,
            # As the local autoscaler writes it: utilization percent against the target's.
            proposals=(MetricProposal("cpu", 88.0, 60.0, None, ""),),
        ),
        ScaleDecision(
            3,
            2,
            source="hpa",
            reason="the HPA controller was able to update the target scale to 2",
            limited_by=None,
            proposals=(MetricProposal("cpu", 9.0, 60.0, None, ""),),
        ),
    ]


def test_an_hpa_decision_has_the_keys_of_a_local_one() -> None:
    (hpa,) = hpa_events(fixture("hpa_steady_2.json"), fixture("hpa_scale_up_3.json"))
    local = ScaleDecision(2, 3, source="harness", reason="cpu above target", limited_by="maxReplicas")
    assert to_json_dict(hpa).keys() == to_json_dict(local).keys()


def test_hpa_that_never_computed_reports_its_current_count() -> None:
    assert hpa_desired_replicas(fixture("hpa_failed_get_resource_metric.json")) == 2
    assert hpa_desired_replicas(fixture("hpa_scale_up_3.json")) == 3
    assert hpa_desired_replicas(None) is None


def test_pod_listings_become_replica_events() -> None:
    listings = [
        "pods_starting.json",
        "pods_ready.json",
        "pods_scaling_up.json",
        "pods_scaled_up.json",
        "pods_scaling_down.json",
    ]
    previous: dict[str, dict[str, Any]] = {}
    events = []
    for name in listings:
        current = pods(name)
        events += pod_events(previous, current, no_logs)
        previous = {pod["metadata"]["name"]: pod for pod in current}
    events += pod_events(
        previous, [p for p in pods("pods_scaling_down.json") if p["metadata"]["name"] != POD_2], no_logs
    )
    assert [(event.kind, getattr(event, "replica", None)) for event in events] == [
        ("replica_started", POD_1),
        ("replica_started", POD_2),
        ("replica_ready", POD_1),
        ("replica_ready", POD_2),
        ("replica_started", POD_3),
        ("replica_ready", POD_3),
        ("replica_stopped", POD_2),
    ]
    assert events[2] == ReplicaReady(POD_1, 24.0) and events[5] == ReplicaReady(POD_3, 27.0)


def test_restart_becomes_replica_crashed_with_log_tail() -> None:
    before = {POD_1: pods("pods_ready.json")[0]}
    events = pod_events(before, pods("pods_crash_loop.json"), lambda pod, container, previous: f"{pod}:{previous}")
    (crashed,) = [event for event in events if isinstance(event, ReplicaCrashed)]
    assert crashed == ReplicaCrashed(POD_1, exit_code=1, reason="Error", restarts=3, log_tail=f"{POD_1}:True")


def unhealthy(pod: str, message: str) -> dict[str, Any]:
    return {
        "type": "Warning",
        "reason": "Unhealthy",
        "message": message,
        "involvedObject": {"kind": "Pod", "name": pod},
        "lastTimestamp": "2025-03-01T12:00:05Z",
    }


def test_a_failing_startup_probe_is_the_model_loading_not_a_problem() -> None:
    starting = pods("pods_starting.json")
    name = starting[0]["metadata"]["name"]
    loading = [unhealthy(name, "Startup probe failed: Get http://10.244.0.5:3000/readyz: connection refused")]
    assert diagnose_pods(starting, loading, no_logs) is None
    failing = [unhealthy(name, "Readiness probe failed: HTTP probe failed with statuscode: 503")]
    problem = diagnose_pods(starting, failing, no_logs)
    assert problem is not None and problem.cause == "probe-failing" and "503" in problem.message


def test_without_a_known_cause_the_latest_pod_warning_is_named_but_not_dns_fallbacks() -> None:
    starting = pods("pods_starting.json")
    name = starting[0]["metadata"]["name"]
    sandbox = {
        "type": "Warning",
        "reason": "FailedCreatePodSandBox",
        "message": "Failed to create pod sandbox: runc create failed",
        "involvedObject": {"kind": "Pod", "name": name},
        "lastTimestamp": "2025-03-01T12:00:03Z",
    }
    dns = {
        **sandbox,
        "reason": "MissingClusterDNS",
        "message": "no ClusterDNS",
        "lastTimestamp": "2025-03-01T12:00:09Z",
    }
    problem = diagnose_pods(starting, [sandbox, dns], no_logs)
    assert problem is not None and not problem.fatal
    assert problem.cause == "FailedCreatePodSandBox" and "runc create failed" in problem.message
    assert diagnose_pods(starting, [dns], no_logs) is None
