"""The Kubernetes target: the model-service chart applied to a cluster, scaled by its HorizontalPodAutoscaler.

`start` renders charts/model-service from the scenario (harness.targets.helm_values) under the run's own release
name, creates the namespace when missing, server-side-applies every manifest labelled harness.dev/run-id=<run> and
annotated with its expiry, and waits for the rollout; when it fails it names the cause (image pull, crash loop,
unschedulable) with what to do. An object of the same name that another run or person owns is never taken over:
the run names its owner and stops.
A watcher thread turns pod and HPA status into run events (replica started/ready/stopped/crashed,
scale_decision from -> to). Reading that status is pure and lives in harness.targets.kubernetes_status.
Load and /metrics reach each pod through a port-forward (the API server's pods/portforward, as
`kubectl port-forward`) on a 127.0.0.1 port, so the harness's local load generator and scraper work
unchanged; `server_samples` reads /metrics through the API server's pod proxy or a Prometheus instead.
`stop` deletes everything of the kinds it applied labelled with the run, also after a failure, and the namespace
when it created it and nobody else's objects are in it.
"""

from __future__ import annotations

import contextlib
import http.client
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.config import Scenario
from harness.errors import DeployError, HarnessError
from harness.metrics.scrape import parse_bentoml_metrics
from harness.model import (
    EventSink,
    ImageLoaded,
    KindClusterUsed,
    Leftover,
    NamespaceCreated,
    ObjectApplied,
    ReplicaInfo,
    ResourceUse,
    RunWarning,
    ServerSample,
)
from harness.processes import owner_alive, owner_id
from harness.redact import redact_manifests
from harness.targets.base import OWNER_LABEL, RUN_LABEL
from harness.targets.containerd_node import ContainerdNode
from harness.targets.helm import MODEL_SERVICE_CHART, render_chart
from harness.targets.helm_values import hpa_tolerance_support, model_service_values, run_id_label
from harness.targets.kind import KindCluster, KindConfig
from harness.targets.kubernetes_api import (
    ClientKubernetesApi,
    KubernetesApi,
    KubernetesApiError,
    PortForwardRelay,
    SocketLike,
)
from harness.targets.kubernetes_objects import (
    default_release,
    describe_owner,
    expired,
    expiry_timestamp,
    mark,
    run_of,
)
from harness.targets.kubernetes_status import (
    Problem,
    container_statuses,
    diagnose_hpa,
    diagnose_pods,
    dropped_tolerances,
    hpa_desired_replicas,
    hpa_events,
    pod_events,
    pod_ready,
    pod_replica,
    pod_resource_use,
)
from harness.targets.serving import CONTAINER_PORT

_LOG_TAIL_LINES = 12
# Kinds the charts render and the in-cluster load's Secret; the clean-up of a dead run deletes every object of these
# kinds labelled with it (stop() deletes the kinds this run applied).
CLEANUP_KINDS = (
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
)
# What keeps a namespace the harness created from being deleted: anyone's workloads and Services.
_NAMESPACE_USER_KINDS = (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job"), ("v1", "Service"))
# Two metrics-server resolutions plus two HPA syncs (15 s each): how long an HPA may report missing metrics
# for new pods before it is a problem worth a warning.
HPA_PROBLEM_GRACE_S = 60.0
# --------------------------------------------------------------------------- the target


@dataclass
class _State:
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    hpa: dict[str, Any] | None = None
    deployment_replicas: int | None = None
    relays: dict[str, PortForwardRelay] = field(default_factory=dict)


class KubernetesTarget:
    """Replicas as pods of the model-service chart on a Kubernetes cluster, scaled by the chart's HPA."""

    name = "kubernetes"
    # The HPA scales (or, without autoscaling, the replica count is fixed): never the local autoscaler.
    scales_itself = True

    def __init__(
        self,
        scenario: Scenario,
        work_dir: Path,
        *,
        on_event: EventSink | None = None,
        run_id: str | None = None,
        image: str | None = None,
        api: KubernetesApi | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 1.0,
        port_forward: bool = True,
        prometheus_fetch: Callable[[str], bytes] | None = None,
        kind: KindCluster | None = None,
        register: Callable[[Leftover], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.config = scenario.target.kubernetes
        self.namespace = self.config.namespace
        self.work_dir = work_dir
        self.on_event: EventSink = on_event or (lambda event: None)
        self.run_id = run_id or scenario.output.run_id or f"run-{int(clock())}"
        self.run_label = run_id_label(self.run_id)
        # The release names every object of the run: its own unless the scenario names one.
        self._release = self.config.release or default_release(self.run_id)
        self.image_pull_secrets = list(self.config.image_pull_secrets)
        self.image = image or self.config.image or scenario.target.docker.image
        self.poll_s = poll_s
        # Load reaches pods through port-forwards (any cluster), at their pod IPs (the pod network is routable
        # from here: a node on this machine, or the harness running inside the cluster), or through the
        # Service's NodePort that a kind cluster publishes on 127.0.0.1.
        self.port_forward = port_forward and self.config.load_route == "port-forward"
        self._api = api
        self._clock = clock
        self._sleep = sleep
        self._prometheus_fetch = prometheus_fetch
        if kind is None and self.config.kind_cluster:
            kind = KindCluster(
                self.config.kind_cluster,
                kubeconfig=self.config.kubeconfig,
                node_image=self.config.kind_node_image,
                keep=self.config.keep_cluster,
                run_id=self.run_id,
                on_create=register,
            )
        self.kind = kind
        self._node_port_url: str | None = None
        self._state = _State()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._created_namespace = False
        self._touched_cluster = False
        # (apiVersion, kind) of every object applied, in order: stop() deletes those kinds only, so a run needs
        # no right on a kind it never created.
        self._applied_kinds: list[tuple[str, str]] = []
        self._expires_at = self._expiry()
        self._deployment: str | None = None
        self._hpa_name: str | None = None
        self._pod_selector: str | None = None
        self._desired = 0
        self._warned: set[str] = set()
        self._hpa_problem_since: tuple[str, float] | None = None
        self.kube_version: str | None = None
        self.manifests: list[dict[str, Any]] = []

    @property
    def api(self) -> KubernetesApi:
        if self._api is None:
            self._api = ClientKubernetesApi.connect(self.kubeconfig, self.config.context)
        return self._api

    def kill_replica(self, replica_id: str) -> None:
        """Delete the pod at once (grace period 0): its ReplicaSet starts a new one, as after a node loss."""
        if not self.api.delete("v1", "Pod", self.namespace, replica_id, grace_period_s=0):
            raise DeployError(f"pod {replica_id} is not there to kill")

    def pause_replica(self, replica_id: str) -> None:
        raise DeployError("pause is not available on the kubernetes target (the API cannot freeze a pod)")

    def resume_replica(self, replica_id: str) -> None:
        raise DeployError("pause is not available on the kubernetes target (the API cannot freeze a pod)")

    def leftover_resource(self) -> Leftover:
        return Leftover(
            kind="kubernetes",
            kubeconfig=str(self.kubeconfig) if self.kubeconfig else None,
            context=self.config.context,
            namespace=self.namespace,
        )

    @property
    def kubeconfig(self) -> Path | None:
        """The cluster's kubeconfig file: the kind cluster's own, else the configured one (None: the default)."""
        return self.kind.kubeconfig if self.kind is not None else self.config.kubeconfig

    @property
    def run_selector(self) -> str:
        return f"{RUN_LABEL}={self.run_label}"

    # ------------------------------------------------------------------ Target protocol

    def start(self, replicas: int) -> None:
        """Render and apply the chart, then block until `replicas` pods are ready or raise DeployError."""
        if not self.image:
            raise DeployError(
                "the kubernetes target needs an image: set target.kubernetes.image (built by `harness build`)"
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._expires_at = self._expiry()
        if self.kind is not None:
            self._prepare_kind(self.kind)
        self.load_image(self.image)
        if self.kind is not None:
            self.kind.install_metrics_server(self.api)
        self.kube_version = self.api.server_version()
        # With a Prometheus to read, let a Prometheus Operator (when the cluster has one) scrape the pods.
        service_monitor = bool(self.config.prometheus_url) and (
            self.api.list("monitoring.coreos.com/v1", "ServiceMonitor", self.namespace) is not None
        )
        values = model_service_values(
            self.scenario,
            self.image,
            self.run_id,
            kube_version=self.kube_version,
            service_monitor=service_monitor,
            pull_policy=self.pull_policy,
            image_pull_secrets=self.image_pull_secrets,
            node_port=KindConfig.read(self.kind.config).node_port if self.kind and self._node_port_url else None,
        )
        autoscaling = values["autoscaling"]
        if not autoscaling["enabled"]:
            values["replicaCount"] = replicas
        self.manifests = render_chart(
            MODEL_SERVICE_CHART,
            values,
            release=self.release,
            namespace=self.namespace,
            kube_version=self.kube_version,
        )
        kept = redact_manifests(self.manifests, self.scenario.service.env)
        (self.work_dir / "manifests.yaml").write_text(yaml.safe_dump_all(kept, sort_keys=False))
        deployment = next(m for m in self.manifests if m["kind"] == "Deployment")
        self._deployment = deployment["metadata"]["name"]
        self._hpa_name = next(
            (m["metadata"]["name"] for m in self.manifests if m["kind"] == "HorizontalPodAutoscaler"), None
        )
        selector = dict(deployment["spec"]["selector"]["matchLabels"])
        selector[RUN_LABEL] = self.run_label
        self._pod_selector = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        self._desired = replicas

        self._ensure_namespace()
        for manifest in self.manifests:
            stored = self.apply_run_object(manifest)
            if manifest["kind"] == "HorizontalPodAutoscaler":
                self._check_tolerance(manifest, stored)
        if self._hpa_name is not None and replicas != autoscaling["minReplicas"]:
            # The HPA takes over from this count; the chart renders no `replicas` so it never fights the HPA.
            self.api.scale(self.namespace, self._deployment, replicas)
        self._wait_for_rollout(replicas)
        if self.port_forward and self.config.loadgen == "host":
            self._report_tunnel_cost()
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="kubernetes-target-watch", daemon=True)
        self._watcher.start()

    def _report_tunnel_cost(self, requests: int = 20) -> None:
        """Time the readiness path through one pod's port-forward (a new connection, then requests on it):
        what the tunnel adds to every latency the run measures, named in the verdict's warnings."""
        ready = [replica for replica in self.replicas() if replica.ready and replica.base_url]
        if not ready:
            return
        address = ready[0].base_url.removeprefix("http://")
        path = self.scenario.service.readiness_path
        connection = http.client.HTTPConnection(address, timeout=10)
        round_trips_s: list[float] = []
        try:
            started_s = time.perf_counter()
            for _ in range(requests):
                connection.request("GET", path)
                connection.getresponse().read()
                round_trips_s.append(time.perf_counter() - started_s)
                started_s = time.perf_counter()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        if len(round_trips_s) < 2:
            return
        self.on_event(
            RunWarning(
                "kubernetes",
                f"load goes through port-forwards (API server and kubelet relay every connection): "
                f"GET {path} took {round_trips_s[0] * 1000:.1f} ms with a new connection and "
                f"{statistics.median(round_trips_s[1:]) * 1000:.1f} ms median on an open one; every latency "
                "measured includes that",
                hint="target.kubernetes.load_route: pod-ip where the pod network is routable, or "
                "target.kubernetes.loadgen: in-cluster",
            )
        )

    @property
    def pull_policy(self) -> Literal["Never", "IfNotPresent"]:
        """A side-loaded image is on the node or nowhere: never try a registry for it."""
        return "Never" if (self.kind is not None or self.config.node_containerd is not None) else "IfNotPresent"

    def load_image(self, image: str) -> None:
        """Put a locally built image on the cluster's node when this machine can (a kind cluster, or a node's
        containerd socket); any other cluster pulls it from its registry."""
        started_s = self._clock()
        if self.kind is not None:
            self.kind.load_image(image)
            node, imported = f"kind cluster {self.kind.name}", True
        elif self.config.node_containerd is not None:
            node = str(self.config.node_containerd)
            imported = ContainerdNode(self.config.node_containerd).load_image(image)
        else:
            return
        self.on_event(ImageLoaded(image, node, imported, round(self._clock() - started_s, 1)))

    def apply_run_object(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply one object labelled with the run and its expiry (stop() deletes it with the others);
        an object of that name that is not the run's is never taken over: DeployError naming its owner."""
        mark(manifest, self.run_label, owner_id(), self._expires_at)
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        name = manifest["metadata"]["name"]
        where = f"{kind} {self.namespace}/{name}"
        hint = "set another target.kubernetes.release (by default every run has its own) or target.kubernetes.namespace"
        existing = self.api.get(api_version, kind, self.namespace, name)
        if existing is not None and run_of(existing) != self.run_label:
            raise DeployError(
                f"{where} already exists and belongs to {describe_owner(existing)}; the harness does not take over "
                "objects it did not create",
                hint=hint,
            )
        if (api_version, kind) not in self._applied_kinds:
            self._applied_kinds.append((api_version, kind))
        self._touched_cluster = True
        try:
            stored = self.api.apply(manifest)
        except KubernetesApiError as error:
            if error.status != 409:
                raise
            # Created by someone else between the check above and the apply.
            raise DeployError(
                f"{where}: another owner's fields conflict with the run's ({error.message})", hint=hint
            ) from error
        self.on_event(ObjectApplied(kind, name))
        return stored

    @property
    def release(self) -> str:
        """The Helm release name of the run's model-service chart (charts/loadgen's is derived from it)."""
        return self._release

    def _expiry(self) -> str:
        """When the run's objects may be deleted by anyone: the rollout, the load, then the scenario's margin."""
        lifetime_s = self.config.rollout_timeout_s + self.scenario.duration_s + self.config.expiry_margin_s
        return expiry_timestamp(self._clock(), lifetime_s)

    def service_url(self) -> str:
        """The model-service Service's in-cluster URL (its cluster IP: no cluster DNS needed)."""
        service = next(m for m in self.manifests if m["kind"] == "Service")
        stored = self.api.get("v1", "Service", self.namespace, service["metadata"]["name"])
        cluster_ip = ((stored or {}).get("spec") or {}).get("clusterIP")
        if not cluster_ip:
            raise DeployError(f"the model-service Service in namespace {self.namespace} has no cluster IP")
        return f"http://{cluster_ip}:{service['spec']['ports'][0]['port']}"

    def scale(self, replicas: int) -> None:
        """Set the Deployment's replicas; with an HPA the HPA owns the count and this is an error."""
        if self._hpa_name is not None:
            raise DeployError(
                f"HPA {self._hpa_name} owns the replica count of Deployment {self._deployment}; "
                "the harness does not scale it"
            )
        if self._deployment is None:
            raise DeployError("the kubernetes target is not started")
        self.api.scale(self.namespace, self._deployment, replicas)
        self._desired = replicas

    def desired_replicas(self) -> int:
        """The HPA's desiredReplicas, else the Deployment's replicas, as of the watcher's last poll."""
        with self._lock:
            desired = hpa_desired_replicas(self._state.hpa)
            if desired is not None:
                return desired
            if self._state.deployment_replicas is not None:
                return self._state.deployment_replicas
            return self._desired

    def replicas(self) -> list[ReplicaInfo]:
        with self._lock:
            return [
                pod_replica(pod, self._base_url(name, pod))
                for name, pod in sorted(self._state.pods.items())
                if not pod["metadata"].get("deletionTimestamp")
            ]

    def _base_url(self, name: str, pod: dict[str, Any]) -> str:
        if self.config.load_route == "node-port":
            return self._node_port_url or ""
        if self.config.load_route == "pod-ip":
            pod_ip = (pod.get("status") or {}).get("podIP")
            return f"http://{pod_ip}:{CONTAINER_PORT}" if pod_ip else ""
        relay = self._state.relays.get(name)
        return relay.base_url if relay is not None else ""

    def resource_use(self) -> dict[str, ResourceUse]:
        """CPU and memory per pod from metrics.k8s.io; None values when no metrics API is served."""
        with self._lock:
            names = list(self._state.pods)
        try:
            metrics = self.api.list("metrics.k8s.io/v1beta1", "PodMetrics", self.namespace, self._pod_selector)
        except HarnessError as error:
            self._warn_once("pod-metrics", f"reading pod metrics failed: {error}", "kubectl top pods")
            metrics = None
        if metrics is None:
            self._warn_once(
                "no-metrics-api",
                "metrics.k8s.io is not served: per-pod CPU and memory are unknown",
                "install metrics-server (kind: charts/metrics-server/components.yaml)",
            )
            return {name: ResourceUse(cpu_cores=None, rss_bytes=None) for name in names}
        use = pod_resource_use(metrics)
        return {name: use.get(name, ResourceUse(cpu_cores=None, rss_bytes=None)) for name in names}

    def stop(self) -> None:
        """Delete every object labelled with the run (and the namespace if this target created it); idempotent."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=self.poll_s + 10)
            self._watcher = None
        with self._lock:
            relays = list(self._state.relays.values())
            self._state.relays.clear()
        for relay in relays:
            relay.stop()
        try:
            if self._touched_cluster:
                self._delete_run_objects()
        finally:
            # Deleting a cluster this run created removes whatever the object deletion could not.
            if self.kind is not None:
                self.kind.delete()

    def _delete_run_objects(self) -> None:
        self._save_logs()
        _, failures = delete_run_objects(self.api, self.namespace, self.run_selector, self._applied_kinds)
        users = (
            namespace_users(self.api, self.namespace, lambda item: run_of(item) == self.run_label)
            if self._created_namespace
            else []
        )
        if self._created_namespace and not users:
            try:
                self.api.delete("v1", "Namespace", None, self.namespace)
                self._created_namespace = False
            except HarnessError as error:
                failures.append(f"Namespace {self.namespace}: {error}")
        else:
            if users:
                self.on_event(
                    RunWarning(
                        "kubernetes",
                        f"namespace {self.namespace}, which this run created, is left: it holds {users[0]}"
                        + (f" and {len(users) - 1} more object(s)" if len(users) > 1 else ""),
                        hint=f"`harness cleanup --kubeconfig` deletes it after it expires ({self._expires_at}) "
                        "once nobody's objects are in it",
                    )
                )
            self._wait_for_pods_gone()
        if failures:
            raise DeployError(
                "could not delete every object of the run: " + "; ".join(failures),
                hint=f"kubectl delete all,hpa,pdb -n {self.namespace} -l {self.run_selector}",
            )
        self._touched_cluster = False

    # ------------------------------------------------------------------ metrics through the API server

    def metrics_text(self, replica_id: str, timeout_s: float = 5.0) -> str:
        """A pod's /metrics page through the API server's pod proxy."""
        return self.api.pod_proxy_get(
            self.namespace, replica_id, CONTAINER_PORT, self.scenario.service.metrics_path, timeout_s=timeout_s
        )

    def server_samples(self, replicas: Sequence[ReplicaInfo], timeout_s: float) -> list[ServerSample] | None:
        """One ServerSample per pod by target.kubernetes.metrics_route: the pod proxy or Prometheus; None for
        the port-forward route, which the collector scrapes like any replica's base URL."""
        endpoints = {self.scenario.service.endpoint}
        route = self.config.metrics_route
        if route == "prometheus":
            from harness.metrics.promql import PrometheusReplicaMetrics, urllib_fetch

            assert self.config.prometheus_url is not None  # the scenario schema requires it for this route
            source = PrometheusReplicaMetrics(
                self.config.prometheus_url, self._prometheus_fetch or urllib_fetch(timeout_s), self.namespace
            )
            return source.samples([replica.id for replica in replicas], endpoints=endpoints)
        if route == "port-forward":
            return None
        samples = []
        for replica in replicas:
            try:
                text = self.metrics_text(replica.id, timeout_s)
                samples.append(parse_bentoml_metrics(text, self._clock(), replica.id, endpoints=endpoints))
            except HarnessError as error:
                samples.append(ServerSample(t_s=self._clock(), replica=replica.id, ok=False, error=str(error)))
        return samples

    # ------------------------------------------------------------------ internals

    def _prepare_kind(self, kind: KindCluster) -> None:
        """Create or reuse the kind cluster, and find the 127.0.0.1 port of its NodePort when the load goes
        there (the image and metrics-server follow)."""
        created = kind.ensure()
        self.on_event(KindClusterUsed(kind.name, created))
        if self.config.load_route == "node-port":
            node_port = KindConfig.read(kind.config).node_port
            if node_port is None:
                raise DeployError(
                    f"{kind.config} publishes no NodePort on 127.0.0.1 (nodes[].extraPortMappings)",
                    hint="add one, or set target.kubernetes.load_route: port-forward",
                )
            self._node_port_url = f"http://127.0.0.1:{kind.host_port(node_port)}"

    def _warn_once(self, key: str, message: str, hint: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.on_event(RunWarning("kubernetes", message, hint))

    def _log_tail(self, pod: str, container: str, previous: bool) -> str:
        try:
            text = self.api.pod_log(self.namespace, pod, container, tail_lines=_LOG_TAIL_LINES, previous=previous)
        except HarnessError as error:
            return f"(log unavailable: {error})"
        kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return " | ".join(kept[-_LOG_TAIL_LINES:]) or "(empty log)"

    def _ensure_namespace(self) -> None:
        deadline_s = self._clock() + self.config.rollout_timeout_s
        while True:
            namespace = self.api.get("v1", "Namespace", None, self.namespace)
            if namespace is None:
                manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
                self.api.create(mark(manifest, self.run_label, owner_id(), self._expires_at))
                self._created_namespace = True
                self._touched_cluster = True
                self.on_event(NamespaceCreated(self.namespace))
                return
            if (namespace.get("status") or {}).get("phase") != "Terminating":
                return
            # A namespace deleted by an earlier run accepts no new objects until it is gone.
            if self._clock() > deadline_s:
                raise DeployError(
                    f"namespace {self.namespace} is still terminating after "
                    f"target.kubernetes.rollout_timeout_s={self.config.rollout_timeout_s:g} s",
                    hint=f"kubectl get namespace {self.namespace} -o yaml (look for finalizers)",
                )
            self._sleep(self.poll_s)

    def _check_tolerance(self, sent: dict[str, Any], stored: dict[str, Any]) -> None:
        dropped = dropped_tolerances(sent.get("spec") or {}, stored.get("spec") or {})
        if dropped and self.kube_version is not None:
            support = hpa_tolerance_support(self.kube_version)
            self.on_event(
                RunWarning(
                    "kubernetes",
                    f"the API server ({self.kube_version}) dropped HPA {', '.join(dropped)}: the HPA uses the "
                    "cluster-wide tolerance instead",
                    hint="enable the HPAConfigurableTolerance feature gate"
                    if support == "feature-gate"
                    else "upgrade the cluster",
                )
            )

    def _list_pods(self) -> list[dict[str, Any]]:
        listed = self.api.list("v1", "Pod", self.namespace, self._pod_selector)
        return list((listed or {}).get("items") or [])

    def _requests(self) -> dict[str, str]:
        requests = self.scenario.resources.requests
        return {k: str(v) for k, v in (("cpu", requests.cpu), ("memory", requests.memory)) if v is not None}

    def _wait_for_rollout(self, replicas: int) -> None:
        timeout_s = self.config.rollout_timeout_s
        deadline_s = self._clock() + timeout_s
        while True:
            pods = self._list_pods()
            self._update_pods(pods, emit=True)
            ready = [pod for pod in pods if pod_ready(pod)]
            if len(ready) >= replicas:
                return
            events = list((self.api.list("v1", "Event", self.namespace) or {}).get("items") or [])
            problem = diagnose_pods(
                pods, events, self._log_tail, requests=self._requests(), kind_cluster=self.config.kind_cluster
            )
            if problem is not None and problem.fatal:
                raise DeployError(problem.message, hint=problem.hint)
            if problem is not None:
                self._warn_once(problem.cause, problem.message, problem.hint)
            if self._clock() > deadline_s:
                hpa = (
                    self.api.get("autoscaling/v2", "HorizontalPodAutoscaler", self.namespace, self._hpa_name)
                    if (self._hpa_name)
                    else None
                )
                problem = problem or (diagnose_hpa(hpa) if hpa else None)
                cause = problem.message if problem else "no pod reported a cause"
                raise DeployError(
                    f"Deployment {self._deployment}: {len(ready)}/{replicas} pods ready after "
                    f"target.kubernetes.rollout_timeout_s={timeout_s:g} s; {cause}",
                    hint=problem.hint
                    if problem
                    else f"kubectl describe pods -n {self.namespace} -l {self._pod_selector}",
                )
            self._sleep(self.poll_s)

    def _update_pods(self, pods: list[dict[str, Any]], *, emit: bool) -> None:
        with self._lock:
            previous = dict(self._state.pods)
            self._state.pods = {pod["metadata"]["name"]: pod for pod in pods}
        if emit:
            for event in pod_events(previous, pods, self._log_tail):
                self.on_event(event)
        if self.port_forward:
            self._sync_relays(pods)

    def _sync_relays(self, pods: list[dict[str, Any]]) -> None:
        # A terminating pod leaves the load at once (replicas() drops it) but keeps its relay until it is gone:
        # requests still in flight through it finish while the pod drains (preStop, then SIGTERM).
        live = {pod["metadata"]["name"] for pod in pods}
        with self._lock:
            gone = [name for name in self._state.relays if name not in live]
            stale = [self._state.relays.pop(name) for name in gone]
            for name in sorted(live - set(self._state.relays)):
                relay = PortForwardRelay(self._port_forward_to(name), name)
                relay.start()
                self._state.relays[name] = relay
        for relay in stale:
            relay.stop()

    def _port_forward_to(self, pod: str) -> Callable[[], SocketLike]:
        return lambda: self.api.open_port_forward(self.namespace, pod, CONTAINER_PORT)

    def _watch(self) -> None:
        """Poll pods and the HPA until stopped, turning status changes into run events."""
        while not self._stop.is_set():
            try:
                self._update_pods(self._list_pods(), emit=True)
                if self._hpa_name is not None:
                    hpa = self.api.get("autoscaling/v2", "HorizontalPodAutoscaler", self.namespace, self._hpa_name)
                    if hpa is not None:
                        with self._lock:
                            previous = self._state.hpa
                            self._state.hpa = hpa
                        for event in hpa_events(previous, hpa):
                            self.on_event(event)
                        self._note_hpa_problem(diagnose_hpa(hpa))
                elif self._deployment is not None:
                    deployment = self.api.get("apps/v1", "Deployment", self.namespace, self._deployment)
                    with self._lock:
                        self._state.deployment_replicas = (
                            int((deployment or {}).get("spec", {}).get("replicas", 0)) if deployment else None
                        )
            except HarnessError as error:
                self._warn_once(f"watch:{error}", f"watching the cluster failed: {error}", "check the API server")
            self._stop.wait(self.poll_s)

    def _note_hpa_problem(self, problem: Problem | None) -> None:
        """Warn about an HPA that cannot scale once the problem has lasted HPA_PROBLEM_GRACE_S: right after a
        pod starts, metrics-server has no sample of it yet and the HPA says so for a sync or two."""
        now_s = self._clock()
        if problem is None:
            self._hpa_problem_since = None
            return
        if self._hpa_problem_since is None or self._hpa_problem_since[0] != problem.cause:
            self._hpa_problem_since = (problem.cause, now_s)
        if now_s - self._hpa_problem_since[1] >= HPA_PROBLEM_GRACE_S:
            self._warn_once(problem.cause, problem.message, problem.hint)

    def _save_logs(self) -> None:
        with self._lock:
            pods = list(self._state.pods.values())
        for pod in pods:
            for status in container_statuses(pod):
                with contextlib.suppress(HarnessError, OSError):
                    text = self.api.pod_log(
                        self.namespace, pod["metadata"]["name"], status["name"], tail_lines=2000, previous=False
                    )
                    (self.work_dir / f"{pod['metadata']['name']}.log").write_text(text)

    def _wait_for_pods_gone(self, timeout_s: float = 60.0) -> None:
        deadline_s = self._clock() + timeout_s
        while self._clock() < deadline_s:
            try:
                listed = self.api.list("v1", "Pod", self.namespace, self.run_selector)
            except HarnessError:
                return
            if not (listed or {}).get("items"):
                return
            self._sleep(min(self.poll_s, 1.0))
        self.on_event(
            RunWarning("kubernetes", f"pods labelled {self.run_selector} still terminating after {timeout_s:g} s")
        )


# --------------------------------------------------------------------------- leftovers (harness.cleanup)


def delete_run_objects(
    api: KubernetesApi, namespace: str, selector: str, kinds: Sequence[tuple[str, str]] = CLEANUP_KINDS
) -> tuple[list[str], list[str]]:
    """Delete every object of `kinds` (later kinds first: HPAs before Deployments) matching `selector` in
    `namespace`: (deleted, failures)."""
    deleted, failures = [], []
    ordered = kinds if kinds is CLEANUP_KINDS else list(reversed(kinds))
    for api_version, kind in ordered:
        try:
            listed = api.list(api_version, kind, namespace, selector)
            for item in (listed or {}).get("items") or []:
                api.delete(api_version, kind, namespace, item["metadata"]["name"])
                deleted.append(f"{kind} {namespace}/{item['metadata']['name']}")
        except HarnessError as error:
            failures.append(f"{kind}: {error}")
    return deleted, failures


def namespace_users(api: KubernetesApi, namespace: str, leaving: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Anyone's workloads and Services in `namespace` but those `leaving` says are going: what keeps a namespace
    the harness created from being deleted with them. One description per object."""
    users = []
    for api_version, kind in _NAMESPACE_USER_KINDS:
        listed = api.list(api_version, kind, namespace) or {}
        for item in listed.get("items") or []:
            if not item["metadata"].get("deletionTimestamp") and not leaving(item):
                users.append(f"{kind} {item['metadata']['name']} of {describe_owner(item)}")
    return users


def delete_expired_objects(api: KubernetesApi, now_s: float, namespace: str | None = None) -> list[str]:
    """Every object of the harness's kinds (in `namespace`, or in every namespace) whose expiry has passed,
    whichever run or machine made it; then the expired namespaces the harness created that nobody else's objects
    are in. One line per thing deleted or kept."""
    lines = []
    gone_runs: set[str] = set()
    for api_version, kind in CLEANUP_KINDS:
        try:
            listed = api.list(api_version, kind, namespace, RUN_LABEL) or {}
        except HarnessError as error:
            lines.append(f"could not list {kind}: {error}")
            continue
        for item in listed.get("items") or []:
            if not expired(item, now_s):
                continue
            metadata = item["metadata"]
            api.delete(api_version, kind, metadata["namespace"], metadata["name"])
            gone_runs.add(str(run_of(item)))
            lines.append(f"deleted expired {kind} {metadata['namespace']}/{metadata['name']} (run {run_of(item)})")
    if namespace is not None:
        return lines
    for stored in (api.list("v1", "Namespace", None, RUN_LABEL) or {}).get("items") or []:
        name = stored["metadata"]["name"]
        if not expired(stored, now_s) or (stored.get("status") or {}).get("phase") == "Terminating":
            continue
        users = namespace_users(api, name, _of_runs(gone_runs | {str(run_of(stored))}))
        if users:
            lines.append(f"kept expired namespace {name}: it holds {users[0]}")
            continue
        api.delete("v1", "Namespace", None, name)
        lines.append(f"deleted expired namespace {name} (run {run_of(stored)})")
    return lines


def _of_runs(runs: set[str]) -> Callable[[dict[str, Any]], bool]:
    return lambda item: run_of(item) in runs


def delete_run_objects_of(resource: Leftover, run_id: str) -> list[str]:
    """A dead run's objects, as its watchdog registered the cluster: the run's objects, then the namespace when the
    run created it (labelled with the run) and nobody else's objects are in it. One line per thing deleted or not."""
    kubeconfig = resource.kubeconfig
    api = ClientKubernetesApi.connect(Path(kubeconfig) if kubeconfig else None, resource.context)
    namespace = str(resource.namespace)
    run_label = run_id_label(run_id)
    deleted, failures = delete_run_objects(api, namespace, f"{RUN_LABEL}={run_label}")
    lines = [f"deleted {name}" for name in deleted] + [f"could not delete {failure}" for failure in failures]
    stored = api.get("v1", "Namespace", None, namespace)
    if stored is not None and run_of(stored) == run_label:
        lines.append(_delete_namespace_unless_used(api, namespace, _of_runs({run_label})))
    return lines


def _delete_namespace_unless_used(api: KubernetesApi, namespace: str, leaving: Callable[[dict[str, Any]], bool]) -> str:
    users = namespace_users(api, namespace, leaving)
    if users:
        return f"kept namespace {namespace}: it holds {users[0]}"
    api.delete("v1", "Namespace", None, namespace)
    return f"deleted namespace {namespace}"


def _of_dead_owner(item: dict[str, Any]) -> bool:
    labels = (item.get("metadata") or {}).get("labels") or {}
    return OWNER_LABEL in labels and not owner_alive(labels[OWNER_LABEL])


def delete_objects_of_dead_owners(api: KubernetesApi) -> list[str]:
    """Objects labelled by a harness of this machine that no longer runs, then the namespaces such a harness created
    that nobody else's objects are in."""
    lines = []
    for deployment in (api.list("apps/v1", "Deployment", None, OWNER_LABEL) or {}).get("items") or []:
        metadata = deployment["metadata"]
        labels = metadata.get("labels") or {}
        if not _of_dead_owner(deployment) or RUN_LABEL not in labels:
            continue
        deleted, failures = delete_run_objects(api, metadata["namespace"], f"{RUN_LABEL}={labels[RUN_LABEL]}")
        lines += [f"deleted {name}" for name in deleted] + [f"could not delete {failure}" for failure in failures]
    for namespace in (api.list("v1", "Namespace", None, OWNER_LABEL) or {}).get("items") or []:
        if _of_dead_owner(namespace) and namespace.get("status", {}).get("phase") != "Terminating":
            lines.append(_delete_namespace_unless_used(api, namespace["metadata"]["name"], _of_dead_owner))
    return lines
