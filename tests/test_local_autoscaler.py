"""The local autoscaler's window of pod metrics: what it reads from the collector for each Pods metric a scenario
may name (in-flight requests, an LLM engine's vLLM gauges), averaged per replica over a sync period."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config import AutoscalingConfig
from harness.errors import ConfigError
from harness.local_autoscaler import POD_METRICS, LocalAutoscaler, check_supported
from harness.metrics.collector import CollectorSnapshot, ReplicaSnapshot
from harness.model import ReplicaInfo


def config(metric: str) -> AutoscalingConfig:
    target = {"type": "AverageValue", "averageValue": "2"}
    return AutoscalingConfig.model_validate(
        {"metrics": [{"type": "Pods", "pods": {"metric": {"name": metric}, "target": target}}]}
    )


def snapshot(waiting: float | None, running: float | None) -> CollectorSnapshot:
    replica = ReplicaSnapshot(
        replica="replica-1",
        ready=True,
        cpu_cores=0.5,
        rss_bytes=None,
        cpu_request_cores=1.0,
        scrape_ok=True,
        in_progress=None,
        requests_total=None,
        requests_rps=None,
        engine_running=running,
        engine_waiting=waiting,
        engine_kv_cache_usage=0.25,
    )
    return CollectorSnapshot(t_s=1.0, desired_replicas=1, ready_replicas=1, replicas={"replica-1": replica})


class OneReplica:
    """Stands in for a target with one ready replica (the autoscaler asks it for its replicas only here)."""

    def replicas(self) -> list[ReplicaInfo]:
        return [
            ReplicaInfo(id="replica-1", base_url="http://127.0.0.1:1", ready=True, started_at_s=0.0, ready_at_s=1.0)
        ]

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the window does not use target.{name}")


def test_the_engine_gauges_are_averaged_per_replica_over_the_window() -> None:
    latest = iter([snapshot(4.0, 1.0), snapshot(None, 1.0), snapshot(8.0, 1.0)])
    autoscaler = LocalAutoscaler(
        config("vllm_num_requests_waiting"),
        OneReplica(),  # type: ignore[arg-type]
        lambda: next(latest),
        cpu_request_cores=1.0,
        sample_interval_s=1.0,
        on_event=lambda event: None,
        clock=lambda: 10.0,
    )
    for _ in range(3):
        autoscaler.sample()
    (pod,) = autoscaler.observations(10.0)
    # A scrape without the gauge is no reading, not a zero.
    assert pod.pod_metrics["vllm_num_requests_waiting"] == 6.0
    assert pod.pod_metrics["vllm_num_requests_running"] == 1.0 and pod.pod_metrics["vllm_kv_cache_usage_perc"] == 0.25
    assert pod.pod_metrics["bentoml_service_request_in_progress"] is None


def test_only_the_metrics_it_observes_are_accepted() -> None:
    for name in POD_METRICS:
        check_supported(config(name))
    with pytest.raises(ConfigError, match=r"'vllm:num_requests_waiting' is not observed .* vllm_num_requests_waiting"):
        check_supported(config("vllm:num_requests_waiting"))
