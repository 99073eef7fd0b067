"""The Kubernetes target against recorded API responses, through `FakeKubernetesApi` (no API server can run here).

The fixtures in fixtures/kubernetes/ are written in the exact JSON shape the API server returns (PodList,
EventList, HorizontalPodAutoscaler, PodMetricsList, Status, /version); they were not captured from a live
cluster. Covered: rollout-failure diagnosis (image pull, crash loop, unschedulable), HPA status -> run
events, metrics, and cleanup by label (also after a failure, idempotent).
"""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_fakes import CRASH_LOG, IMAGE, POD_1, POD_2, POD_3, FakeClock, FakeKubernetesApi, fixture

from harness.config import AutoscalingConfig, Scenario, load_scenario
from harness.errors import ConfigError, DeployError
from harness.model import Event, ReplicaStopped, ResourceUse, RunEvent
from harness.processes import owner_id
from harness.targets.base import OWNER_LABEL, RUN_LABEL
from harness.targets.kubernetes import (
    HPA_PROBLEM_GRACE_S,
    KubernetesTarget,
    delete_expired_objects,
    delete_objects_of_dead_owners,
)
from harness.targets.kubernetes_objects import EXPIRES_ANNOTATION, expiry_timestamp
from harness.targets.kubernetes_status import parse_time
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "20250301T120000Z-digits-autoscale"
AUTOSCALING = {
    "minReplicas": 2,
    "maxReplicas": 6,
    "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ],
    "behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]},
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}],
        },
    },
}


def scenario(autoscaling: dict[str, Any] | None = AUTOSCALING, **kubernetes: Any) -> Scenario:
    base = load_scenario(ROOT / "loadtests" / "default.yaml")
    target = base.target.model_copy(
        update={
            "kind": "kubernetes",
            # The recorded pods belong to release model-service (by default every run has its own).
            "kubernetes": base.target.kubernetes.model_copy(
                update={"image": IMAGE, "release": "model-service", **kubernetes}
            ),
        }
    )
    output = base.output.model_copy(update={"run_id": RUN_ID})
    section = AutoscalingConfig.model_validate(autoscaling) if autoscaling is not None else None
    return base.model_copy(update={"target": target, "output": output, "autoscaling": section})


class Recorder:
    """The run's event sink: RunEvents stamped with the (fake) clock, as run.py records them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.events: list[RunEvent] = []

    def __call__(self, event: Event) -> None:
        self.events.append(RunEvent(t_s=self.clock(), detail=event))

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def of(self, kind: str) -> list[Any]:
        return [event.detail for event in self.events if event.kind == kind]


def make_target(
    api: FakeKubernetesApi, tmp_path: Path, scenario_: Scenario | None = None, **options: Any
) -> tuple[KubernetesTarget, Recorder, FakeClock]:
    clock = FakeClock()
    recorder = Recorder(clock)
    target = KubernetesTarget(
        scenario_ or scenario(),
        tmp_path,
        on_event=recorder,
        api=api,
        clock=clock,
        sleep=clock.sleep,
        poll_s=options.pop("poll_s", 1.0),
        port_forward=options.pop("port_forward", False),
        **options,
    )
    return target, recorder, clock


# The target's watcher thread takes milliseconds with the fake API, but other lanes of `make test` load the machine,
# and how fast it polls is not what these tests check.
WATCHER_WAIT_S = 60.0


# --------------------------------------------------------------------------- the target, end to end against the fake


def rollout_api(**options: Any) -> FakeKubernetesApi:
    recorded = {
        ("v1", "Pod"): [fixture("pods_starting.json"), fixture("pods_ready.json")],
        ("v1", "Event"): [fixture("events_empty.json")],
        **options.pop("recorded", {}),
    }
    return FakeKubernetesApi(recorded=recorded, **options)


@pytest.mark.integration
def test_start_applies_the_chart_labelled_and_waits_for_ready_pods(tmp_path: Path) -> None:
    api = rollout_api()
    target, recorder, clock = make_target(api, tmp_path)
    started_s = clock.now_s
    try:
        target.start(2)
        assert [call[1] for call in api.calls_named("apply")] == [
            "PodDisruptionBudget",
            "Service",
            "Deployment",
            "HorizontalPodAutoscaler",
        ]
        # Every object expires at the planned end (the rollout budget and the load) plus the margin.
        expires = expiry_timestamp(started_s, 300 + scenario().duration_s + 1800)
        for kind in ("PodDisruptionBudget", "Service", "Deployment", "HorizontalPodAutoscaler"):
            (stored,) = api.stored(kind)
            assert stored["metadata"]["labels"][RUN_LABEL] == RUN_ID
            assert stored["metadata"]["labels"][OWNER_LABEL] == owner_id(), "this harness process owns it"
            assert stored["metadata"]["annotations"] == {EXPIRES_ANNOTATION: expires}
        (namespace,) = api.stored("Namespace")
        assert namespace["metadata"] == {
            "name": "harness",
            "labels": {RUN_LABEL: RUN_ID, OWNER_LABEL: owner_id()},
            "annotations": {EXPIRES_ANNOTATION: expires},
        }
        # minReplicas is 2, so the HPA starts where asked and the harness leaves spec.replicas alone.
        assert api.calls_named("scale") == []
        assert clock.sleeps == 1
        ready = [r for r in target.replicas() if r.ready]
        assert [r.id for r in ready] == [POD_1, POD_2]
        assert ready[0].ready_at_s == parse_time("2025-03-01T12:00:31Z")
        assert recorder.kinds()[:2] == ["namespace_created", "object_applied"]
        assert [d.replica for d in recorder.of("replica_ready")] == [POD_1, POD_2]
        saved = yaml.safe_load_all((tmp_path / "manifests.yaml").read_text())
        assert [m["kind"] for m in saved] == ["PodDisruptionBudget", "Service", "Deployment", "HorizontalPodAutoscaler"]
    finally:
        target.stop()
    assert api.objects == {}
    deleted = [(call[1], call[3]) for call in api.calls_named("delete")]
    assert deleted[-1] == ("Namespace", "harness")
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Deployment"} <= {kind for kind, _ in deleted}
    calls = len(api.calls)
    target.stop()
    assert len(api.calls) == calls, "a second stop() must not touch the cluster"


@pytest.mark.integration
def test_start_scales_the_deployment_when_asked_for_more_than_min_replicas(tmp_path: Path) -> None:
    api = rollout_api(recorded={("v1", "Pod"): [fixture("pods_scaled_up.json")]})
    target, _, _ = make_target(api, tmp_path)
    try:
        target.start(3)
        assert api.calls_named("scale") == [("scale", "harness", "model-service", 3)]
    finally:
        target.stop()


@pytest.mark.integration
def test_without_autoscaling_the_replica_count_is_rendered_and_scale_patches_it(tmp_path: Path) -> None:
    api = rollout_api()
    target, _, _ = make_target(api, tmp_path, scenario(autoscaling=None))
    try:
        target.start(2)
        assert [call[1] for call in api.calls_named("apply")] == ["PodDisruptionBudget", "Service", "Deployment"]
        assert api.stored("Deployment")[0]["spec"]["replicas"] == 2
        target.scale(3)
        assert api.calls_named("scale") == [("scale", "harness", "model-service", 3)]
    finally:
        target.stop()


@pytest.mark.integration
def test_scale_is_refused_while_the_hpa_owns_the_count(tmp_path: Path) -> None:
    api = rollout_api()
    target, _, _ = make_target(api, tmp_path)
    try:
        target.start(2)
        with pytest.raises(DeployError, match="HPA model-service owns the replica count"):
            target.scale(4)
    finally:
        target.stop()


@pytest.mark.integration
def test_image_pull_failure_names_the_cause_and_cleans_up(tmp_path: Path) -> None:
    api = rollout_api(
        recorded={("v1", "Pod"): [fixture("pods_err_image_pull.json"), fixture("pods_image_pull_backoff.json")]}
    )
    target, recorder, _ = make_target(api, tmp_path, scenario(kind_cluster="harness"), kind=None)
    target.kind = None  # the recorded cluster stands in for kind; no kind CLI here
    with pytest.raises(DeployError) as raised:
        target.start(2)
    assert f"cannot pull image {IMAGE} (ImagePullBackOff" in raised.value.message
    assert raised.value.hint is not None and f"kind load docker-image {IMAGE} --name harness" in raised.value.hint
    # ErrImagePull was reported as a warning before it became fatal.
    assert any("ErrImagePull" in d.error for d in recorder.of("warning"))
    target.stop()
    assert api.objects == {}


@pytest.mark.integration
def test_crash_loop_failure_carries_the_last_log_lines(tmp_path: Path) -> None:
    api = rollout_api(
        recorded={("v1", "Pod"): [fixture("pods_crash_loop.json")]},
        logs={(POD_1, True): CRASH_LOG},
    )
    target, _, _ = make_target(api, tmp_path)
    with pytest.raises(DeployError, match=r"CrashLoopBackOff.*FileNotFoundError: \[Errno 2\]"):
        target.start(2)
    assert ("pod_log", POD_1, "model-service", 12, True) in api.calls
    target.stop()
    assert api.objects == {}


@pytest.mark.integration
def test_unschedulable_rollout_times_out_naming_insufficient_cpu(tmp_path: Path) -> None:
    api = rollout_api(
        recorded={
            ("v1", "Pod"): [fixture("pods_pending_insufficient_cpu.json")],
            ("v1", "Event"): [fixture("events_failed_scheduling.json")],
        }
    )
    target, recorder, clock = make_target(api, tmp_path, scenario(rollout_timeout_s=30))
    started_s = clock()
    with pytest.raises(DeployError) as raised:
        target.start(2)
    assert clock() - started_s > 30
    assert "0/2 pods ready after target.kubernetes.rollout_timeout_s=30 s" in raised.value.message
    assert "Insufficient cpu" in raised.value.message
    assert raised.value.hint == "lower resources.requests.cpu (now 500m), or add nodes"
    # Reported once as soon as it was seen, not once per poll.
    assert len([d for d in recorder.of("warning") if "Insufficient cpu" in d.error]) == 1
    target.stop()


@pytest.mark.integration
def test_apply_rejected_by_the_api_server_stops_and_removes_what_was_applied(tmp_path: Path) -> None:
    api = rollout_api(apply_errors={"HorizontalPodAutoscaler": fixture("status_422_invalid.json")})
    target, _, _ = make_target(api, tmp_path)
    with pytest.raises(DeployError, match=r"periodSeconds: Invalid value: 3600: must be less than or equal to 1800"):
        target.start(2)
    assert {kind for kind in ("PodDisruptionBudget", "Service", "Deployment") if api.stored(kind)} == {
        "PodDisruptionBudget",
        "Service",
        "Deployment",
    }
    target.stop()
    assert api.objects == {}


@pytest.mark.integration
def test_an_existing_namespace_is_used_and_kept(tmp_path: Path) -> None:
    api = rollout_api(
        gets={("v1", "Namespace", "harness"): [fixture("namespace_active.json")]},
        recorded={
            ("v1", "Pod"): [fixture("pods_starting.json"), fixture("pods_ready.json"), {"kind": "PodList", "items": []}]
        },
    )
    target, recorder, _ = make_target(api, tmp_path)
    target.start(2)
    target.stop()
    assert api.calls_named("create") == []
    assert "Namespace" not in [call[1] for call in api.calls_named("delete")]
    assert "namespace_created" not in recorder.kinds()


@pytest.mark.integration
def test_a_terminating_namespace_is_waited_for(tmp_path: Path) -> None:
    terminating = fixture("namespace_terminating.json")
    api = rollout_api(gets={("v1", "Namespace", "harness"): [terminating, terminating, None]})
    target, _, clock = make_target(api, tmp_path)
    try:
        target.start(2)
        assert api.calls_named("create") == [("create", "Namespace", "harness")]
        assert clock.sleeps >= 2
    finally:
        target.stop()


@pytest.mark.integration
def test_behavior_tolerance_dropped_by_the_api_server_is_a_warning(tmp_path: Path) -> None:
    section = {**AUTOSCALING, "behavior": {"scaleUp": {"tolerance": 0.02}}}
    api = rollout_api(version="v1.33.1")
    target, recorder, _ = make_target(api, tmp_path, scenario(autoscaling=section))
    try:
        target.start(2)
    finally:
        target.stop()
    (warning,) = [d for d in recorder.of("warning") if "tolerance" in d.error]
    assert "dropped HPA behavior.scaleUp.tolerance" in warning.error
    assert warning.hint == "enable the HPAConfigurableTolerance feature gate"


def test_behavior_tolerance_on_a_131_cluster_is_refused_before_anything_is_applied(tmp_path: Path) -> None:
    section = {**AUTOSCALING, "behavior": {"scaleUp": {"tolerance": 0.02}}}
    api = rollout_api(version="v1.31.4")
    target, _, _ = make_target(api, tmp_path, scenario(autoscaling=section))
    with pytest.raises(ConfigError, match=r"needs Kubernetes >= 1\.33"):
        target.start(2)
    target.stop()
    assert api.calls_named("apply") == [] and api.calls_named("create") == [] and api.calls_named("delete") == []


@pytest.mark.integration
def test_watcher_turns_hpa_status_into_scale_decisions_and_warnings(tmp_path: Path) -> None:
    hpa_sequence = [
        fixture(name)
        for name in (
            "hpa_failed_get_resource_metric.json",
            "hpa_steady_2.json",
            "hpa_scale_up_3.json",
            "hpa_steady_3.json",
            "hpa_scale_down_2.json",
        )
    ]
    api = rollout_api(
        gets={("autoscaling/v2", "HorizontalPodAutoscaler", "model-service"): hpa_sequence},
        recorded={
            ("v1", "Pod"): [
                fixture("pods_starting.json"),
                fixture("pods_ready.json"),
                fixture("pods_scaling_up.json"),
                fixture("pods_scaled_up.json"),
                fixture("pods_scaling_down.json"),
            ],
        },
    )
    target, recorder, _ = make_target(api, tmp_path, poll_s=0.01)
    try:
        target.start(2)
        wait_until(lambda: len(recorder.of("scale_decision")) == 2, "two scale decisions", WATCHER_WAIT_S)
        wait_until(
            lambda: target.desired_replicas() == 2 and len(recorder.of("replica_stopped")) == 1,
            "2 desired replicas and one stopped",
            WATCHER_WAIT_S,
        )
    finally:
        target.stop()
    decisions = recorder.of("scale_decision")
    assert [(d.from_replicas, d.to_replicas) for d in decisions] == [(2, 3), (3, 2)]
    # Missing metrics for one poll right after the start is what every new pod shows: no warning.
    assert [d for d in recorder.of("warning") if "FailedGetResourceMetric" in d.error] == []
    assert [d.replica for d in recorder.of("replica_started")] == [POD_1, POD_2, POD_3]
    assert recorder.of("replica_stopped") == [ReplicaStopped(POD_2, reason="deleted")]


@pytest.mark.integration
def test_an_hpa_that_stays_without_metrics_is_a_warning_with_what_to_install(tmp_path: Path) -> None:
    failing = fixture("hpa_failed_get_resource_metric.json")
    api = rollout_api(gets={("autoscaling/v2", "HorizontalPodAutoscaler", "model-service"): [failing]})
    target, recorder, clock = make_target(api, tmp_path, poll_s=0.01)
    try:
        target.start(2)
        wait_until(
            lambda: len([c for c in api.calls_named("get") if "HorizontalPodAutoscaler" in c]) >= 3,
            "three reads of the HPA",
            WATCHER_WAIT_S,
        )
        assert all("FailedGet" not in d.error for d in recorder.of("warning"))
        clock.now_s += HPA_PROBLEM_GRACE_S
        wait_until(
            lambda: any("FailedGetResourceMetric" in d.error for d in recorder.of("warning")),
            "a FailedGetResourceMetric warning",
            WATCHER_WAIT_S,
        )
    finally:
        target.stop()
    (metrics_warning,) = [d for d in recorder.of("warning") if "FailedGetResourceMetric" in d.error]
    assert "metrics-server" in metrics_warning.hint


@pytest.mark.integration
def test_resource_use_from_pod_metrics_or_none_without_a_metrics_api(tmp_path: Path) -> None:
    api = rollout_api(recorded={("metrics.k8s.io/v1beta1", "PodMetrics"): [fixture("pod_metrics.json")]})
    target, _, _ = make_target(api, tmp_path)
    try:
        target.start(2)
        use = target.resource_use()
        assert use[POD_1].cpu_cores == pytest.approx(0.441123456)
        assert use[POD_2].rss_bytes == 301224 * 1024
    finally:
        target.stop()

    api = rollout_api(not_served={"PodMetrics"})
    target, recorder, _ = make_target(api, tmp_path)
    try:
        target.start(2)
        for _ in range(3):
            assert target.resource_use() == {
                POD_1: ResourceUse(cpu_cores=None, rss_bytes=None),
                POD_2: ResourceUse(cpu_cores=None, rss_bytes=None),
            }
    finally:
        target.stop()
    assert len([d for d in recorder.of("warning") if "metrics.k8s.io is not served" in d.error]) == 1


@pytest.mark.integration
def test_server_samples_through_the_pod_proxy(tmp_path: Path) -> None:
    page = (ROOT / "tests" / "metrics" / "fixtures" / "bentoml_metrics.txt").read_text()
    api = rollout_api(proxy_pages={POD_1: page})
    base = scenario()
    service = base.service.model_copy(update={"endpoint": "/double"})
    target, _, _ = make_target(api, tmp_path, base.model_copy(update={"service": service}))
    try:
        target.start(2)
        first, second = target.server_samples(target.replicas(), 5.0)
    finally:
        target.stop()
    assert ("pod_proxy_get", POD_1, 3000, "/metrics") in api.calls
    assert first.ok and first.replica == POD_1 and first.requests_total == 6.0
    assert not second.ok and second.error is not None and "not found" in second.error


class _Readyz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pod_port() -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 standing in for the pod's port at the far end of the port-forward."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_ready_replicas_get_a_loopback_base_url_through_the_port_forward(tmp_path: Path, pod_port: int) -> None:
    api = rollout_api(port_forward_to=("127.0.0.1", pod_port))
    target, recorder, _ = make_target(api, tmp_path, port_forward=True)
    try:
        target.start(2)
        replicas = target.replicas()
        assert len({r.base_url for r in replicas}) == 2
        for replica in replicas:
            assert replica.base_url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(replica.base_url + "/readyz", timeout=30) as response:
                assert response.read() == b"ok /readyz"
        # One stream per TCP connection; the tunnel's cost was measured through it and named as a warning.
        assert {call[1] for call in api.calls_named("open_port_forward")} == {POD_1, POD_2}
        (tunnel,) = [w for w in recorder.of("warning") if "load goes through port-forwards" in w.error]
        assert "GET /readyz took" in tunnel.error and "load_route: pod-ip" in tunnel.hint
    finally:
        target.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(replicas[0].base_url + "/readyz", timeout=2)


def test_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    api = rollout_api()
    target, _, _ = make_target(api, tmp_path, scenario(image=None))
    target.image = None
    with pytest.raises(DeployError, match="needs an image"):
        target.start(1)
    target.stop()
    assert api.calls == []


@pytest.mark.integration
def test_a_service_monitor_is_applied_when_reading_prometheus_on_an_operator_cluster(tmp_path: Path) -> None:
    api = rollout_api(
        recorded={("monitoring.coreos.com/v1", "ServiceMonitor"): [{"kind": "ServiceMonitorList", "items": []}]}
    )
    target, _, _ = make_target(api, tmp_path, scenario(prometheus_url="http://127.0.0.1:9090"))
    try:
        target.start(2)
        assert "ServiceMonitor" in [call[1] for call in api.calls_named("apply")]
    finally:
        target.stop()
    # Without the Prometheus Operator's CRDs nothing is rendered that the cluster would refuse.
    api = rollout_api(not_served={"ServiceMonitor"})
    target, _, _ = make_target(api, tmp_path, scenario(prometheus_url="http://127.0.0.1:9090"))
    try:
        target.start(2)
        assert "ServiceMonitor" not in [call[1] for call in api.calls_named("apply")]
    finally:
        target.stop()


# --------------------------------------------------------------------------- a cluster shared with others


def test_by_default_each_run_names_its_objects_after_a_release_of_its_own(tmp_path: Path) -> None:
    names = []
    for run_id in ("20250301T120000Z-digits-aaaaaa", "20250301T120000Z-digits-bbbbbb"):
        shared = scenario(release=None).model_copy(
            update={"output": scenario().output.model_copy(update={"run_id": run_id})}
        )
        target, _, _ = make_target(FakeKubernetesApi(), tmp_path / run_id, shared)
        names.append(target.release)
    assert names[0] != names[1] and all(name.startswith("model-service-") for name in names)


@pytest.mark.integration
def test_an_object_of_another_run_is_named_and_never_taken_over(tmp_path: Path) -> None:
    api = rollout_api(gets={("v1", "Namespace", "harness"): [fixture("namespace_active.json")]})
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "model-service",
            "namespace": "harness",
            "labels": {RUN_LABEL: "20250301T115900Z-nightly-c0ffee", OWNER_LABEL: "ci-host-4321-99"},
        },
        "spec": {"replicas": 2},
    }
    api.objects[("apps/v1", "Deployment", "harness", "model-service")] = other
    target, _, _ = make_target(api, tmp_path)
    with pytest.raises(DeployError) as raised:
        target.start(2)
    target.stop()
    assert raised.value.message == (
        "Deployment harness/model-service already exists and belongs to harness run 20250301T115900Z-nightly-c0ffee "
        "(harness process ci-host-4321-99); the harness does not take over objects it did not create"
    )
    assert raised.value.hint is not None and "target.kubernetes.release" in raised.value.hint
    assert ("apply", "Deployment", "model-service") not in api.calls
    # The other run's Deployment is as it was; what this run applied before meeting it is gone.
    assert api.objects == {("apps/v1", "Deployment", "harness", "model-service"): other}


@pytest.mark.integration
def test_a_conflict_the_api_server_reports_is_not_forced(tmp_path: Path) -> None:
    conflict = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas",
        "reason": "Conflict",
        "code": 409,
    }
    api = rollout_api(apply_errors={"Deployment": conflict})
    target, _, _ = make_target(api, tmp_path)
    with pytest.raises(
        DeployError, match=r'another owner\'s fields conflict .*conflict with "kubectl-client-side-apply"'
    ):
        target.start(2)
    target.stop()
    assert api.objects == {}


@pytest.mark.integration
def test_stop_deletes_only_the_kinds_it_applied(tmp_path: Path) -> None:
    api = rollout_api()
    target, _, _ = make_target(api, tmp_path, scenario(autoscaling=None))
    target.start(2)
    target.stop()
    deleted_kinds = {call[1] for call in api.calls_named("delete")}
    swept_kinds = {call[1] for call in api.calls_named("list") if call[3] == target.run_selector}
    assert deleted_kinds == {"PodDisruptionBudget", "Service", "Deployment", "Namespace"}
    # No right on a kind the run never created is needed to clean up its own objects.
    assert swept_kinds == {"PodDisruptionBudget", "Service", "Deployment"}


@pytest.mark.integration
def test_a_namespace_it_created_stays_while_another_run_uses_it(tmp_path: Path) -> None:
    api = rollout_api()
    target, recorder, _ = make_target(api, tmp_path)
    target.start(2)
    # Another run deploys into the namespace this one created.
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "model-service-d4e5f6", "namespace": "harness"},
    }
    theirs["metadata"]["labels"] = {RUN_LABEL: "20250301T120100Z-other-d4e5f6"}
    api.objects[("v1", "Service", "harness", "model-service-d4e5f6")] = theirs
    target.stop()
    assert "Namespace" not in {call[1] for call in api.calls_named("delete")}
    assert list(api.objects.values())[-1] == theirs and len(api.stored("Namespace")) == 1
    (warning,) = [d for d in recorder.of("warning") if "namespace harness" in d.error]
    assert "it holds Service model-service-d4e5f6 of harness run 20250301T120100Z-other-d4e5f6" in warning.error


def test_expired_objects_go_whoever_made_them_and_a_namespace_in_use_stays() -> None:
    now_s = 1_740_830_400.0
    past, future = expiry_timestamp(now_s, -1), expiry_timestamp(now_s, 600)
    api = FakeKubernetesApi()

    def put(kind: str, api_version: str, name: str, namespace: str | None, run: str, expires: str) -> None:
        api.put(api_version, kind, namespace, name, {RUN_LABEL: run}, {EXPIRES_ANNOTATION: expires})

    put("Namespace", "v1", "dead", None, "run-dead", past)
    put("Deployment", "apps/v1", "model-service-1", "dead", "run-dead", past)
    put("Namespace", "v1", "shared", None, "run-dead-too", past)
    put("Service", "v1", "model-service-2", "shared", "run-dead-too", past)
    put("Service", "v1", "model-service-3", "shared", "run-alive", future)
    put("Job", "batch/v1", "loadgen-master", "elsewhere", "run-alive", future)
    lines = delete_expired_objects(api, now_s)
    assert lines == [
        "deleted expired Service shared/model-service-2 (run run-dead-too)",
        "deleted expired Deployment dead/model-service-1 (run run-dead)",
        "deleted expired namespace dead (run run-dead)",
        "kept expired namespace shared: it holds Service model-service-3 of harness run run-alive",
    ]
    assert sorted(name for (_, _, _, name) in api.objects) == ["loadgen-master", "model-service-3", "shared"]
    # In one namespace only, for a user whose rights end there: no namespace is touched.
    put("Service", "v1", "model-service-4", "shared", "run-late", past)
    assert delete_expired_objects(api, now_s, "shared") == [
        "deleted expired Service shared/model-service-4 (run run-late)"
    ]


@pytest.mark.integration
def test_a_dead_harness_namespace_goes_unless_a_live_run_uses_it() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = owner_id(child.pid)
    child.wait()
    api = FakeKubernetesApi()

    def put(kind: str, api_version: str, name: str, namespace: str | None, run: str, owner: str) -> None:
        api.put(api_version, kind, namespace, name, {RUN_LABEL: run, OWNER_LABEL: owner})

    for namespace in ("alone", "shared"):
        put("Namespace", "v1", namespace, None, "run-dead", dead)
        put("Deployment", "apps/v1", "model-service-dead", namespace, "run-dead", dead)
    put("Deployment", "apps/v1", "model-service-live", "shared", "run-live", owner_id())
    lines = delete_objects_of_dead_owners(api)
    assert "deleted Deployment alone/model-service-dead" in lines and "deleted namespace alone" in lines
    assert "kept namespace shared: it holds Deployment model-service-live of harness run run-live " in " ".join(lines)
    assert sorted(name for (_, _, _, name) in api.objects) == ["model-service-live", "shared"]
