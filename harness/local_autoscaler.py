"""Drives the pure HPA decision (`harness.autoscaling.decide`) on targets that do not scale themselves.

Every metrics interval it folds the collector's latest per-replica CPU and in-flight requests into a
window; every sync period it turns the window's averages into pod observations (like metrics-server
and a Prometheus adapter's avg_over_time would), asks `decide`, and scales the target.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

from harness.autoscaling import AutoscalerState, CpuSample, PodObservation, ScalingDecision, decide
from harness.config import AutoscalingConfig
from harness.errors import ConfigError
from harness.metrics.collector import CollectorSnapshot
from harness.model import AutoscalerSync, EventSink, RunWarning, ScaleDecision
from harness.targets.base import Target

# Pods metrics the local autoscaler can observe, by the name a scenario (and the HPA) uses, and the collector's
# ReplicaSnapshot field it reads. An LLM engine's vLLM gauges go by the names the test cluster's Prometheus adapter
# gives them (scripts/cluster: `vllm:` becomes `vllm_`, as a custom metric's name cannot hold a colon everywhere).
POD_METRICS: dict[str, str] = {
    "bentoml_service_request_in_progress": "in_progress",
    "vllm_num_requests_running": "engine_running",
    "vllm_num_requests_waiting": "engine_waiting",
    "vllm_kv_cache_usage_perc": "engine_kv_cache_usage",
}


def check_supported(config: AutoscalingConfig) -> None:
    """Reject metrics the local autoscaler cannot observe (it reads each replica's CPU and its BentoML /metrics),
    naming the ones it can."""
    for metric in config.metrics:
        if metric.type not in ("Resource", "Pods") or (metric.resource is not None and metric.resource.name != "cpu"):
            shown = f"Resource '{metric.resource.name}'" if metric.resource is not None else metric.type
            raise ConfigError(
                f"autoscaling.metrics: {shown} metrics are not observed by the local autoscaler (it reads Resource "
                f"cpu and the Pods metrics {', '.join(POD_METRICS)}); a Kubernetes cluster's HPA reads what its "
                "metrics APIs serve"
            )
        if metric.pods is not None and metric.pods.metric.name not in POD_METRICS:
            raise ConfigError(
                f"autoscaling.metrics: Pods metric '{metric.pods.metric.name}' is not observed by the local "
                f"autoscaler (supported: {', '.join(POD_METRICS)})"
            )


class LocalAutoscaler:
    """A background thread playing the HorizontalPodAutoscaler controller for one target."""

    def __init__(
        self,
        config: AutoscalingConfig,
        target: Target,
        latest: Callable[[], CollectorSnapshot],
        *,
        cpu_request_cores: float | None,
        sample_interval_s: float,
        on_event: EventSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_supported(config)
        self.config = config
        self.target = target
        self.latest = latest
        self.cpu_request_cores = cpu_request_cores
        self.sample_interval_s = sample_interval_s
        self.on_event = on_event
        self.clock = clock
        self.state = AutoscalerState()
        self.decisions: list[ScalingDecision] = []
        self._window: dict[str, dict[str, list[float]]] = {}
        self._window_start_s = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="local-autoscaler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        next_sync_s = self.clock() + self.config.sync_period_seconds
        while not self._stop.wait(self.sample_interval_s):
            self.sample()
            if self.clock() >= next_sync_s:
                next_sync_s += self.config.sync_period_seconds
                try:
                    self.sync()
                except Exception as error:  # a failed sync is recorded; the next one may succeed
                    self.on_event(RunWarning("local autoscaler", repr(error)))

    def sample(self) -> None:
        """Fold the collector's latest per-replica figures into the current window."""
        snapshot = self.latest()
        for replica_id, replica in snapshot.replicas.items():
            values = self._window.setdefault(replica_id, {})
            if replica.cpu_cores is not None:
                values.setdefault("cpu", []).append(replica.cpu_cores)
            for field in POD_METRICS.values():
                value = getattr(replica, field)
                if value is not None:
                    values.setdefault(field, []).append(value)

    def observations(self, now_s: float) -> list[PodObservation]:
        pods = []
        window_s = max(now_s - self._window_start_s, 1e-3)
        for replica in self.target.replicas():
            values = self._window.get(replica.id, {})
            cpu = values.get("cpu")
            pod_metrics: dict[str, float | None] = {}
            for name, field in POD_METRICS.items():
                samples = values.get(field)
                pod_metrics[name] = statistics.fmean(samples) if samples else None
            pods.append(
                PodObservation(
                    name=replica.id,
                    ready=replica.ready,
                    ready_transition_s=replica.ready_at_s if replica.ready else replica.started_at_s,
                    started_at_s=replica.started_at_s,
                    cpu=CpuSample(statistics.fmean(cpu), now_s, window_s) if cpu else None,
                    pod_metrics=pod_metrics,
                    phase="Failed" if replica.crashed else "Running",
                )
            )
        return pods

    def sync(self) -> ScalingDecision:
        """One controller sync: decide from the window's averages, scale the target, start a new window."""
        now_s = self.clock()
        current = self.target.desired_replicas()
        decision = decide(
            self.config,
            now_s=now_s,
            current_replicas=current,
            pods=self.observations(now_s),
            cpu_request_cores=self.cpu_request_cores,
            state=self.state,
        )
        self.state = decision.state
        self.decisions.append(decision)
        self._window = {}
        self._window_start_s = now_s

        def record(kind: type[AutoscalerSync] | type[ScaleDecision]) -> AutoscalerSync | ScaleDecision:
            return kind(
                from_replicas=current,
                to_replicas=decision.desired_replicas,
                source="harness",
                reason=decision.reason,
                limited_by=decision.limited_by,
                proposals=decision.proposals,
            )

        self.on_event(record(AutoscalerSync))
        if decision.desired_replicas != current:
            self.target.scale(decision.desired_replicas)
            self.on_event(record(ScaleDecision))
        return decision
