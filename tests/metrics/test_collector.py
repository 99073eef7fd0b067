"""MetricsCollector against real `bentoml serve` replicas, including one killed mid-run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from metrics_test_support import ServedReplica, http_get, http_post_json, kill_tree

from harness.errors import DeployError, MetricsError
from harness.metrics.collector import CollectorSnapshot, MetricsCollector
from harness.metrics.resources import ProcessTreeSampler
from harness.model import (
    ReplicaCount,
    ReplicaInfo,
    ReplicaSample,
    ResourceUse,
    RunEvent,
    RunWarning,
    ScrapeFailed,
    ServerSample,
)
from harness.rundir import RunDirectory
from tests.waiting import wait_until


class ProcessTargetDouble:
    """Test double of the Target protocol wrapping real `bentoml serve` processes.

    Readiness is what the last readiness probe saw, as with a real target whose probe runs periodically:
    a replica killed between two probes is still listed as ready until `probe()` runs again.
    """

    name = "test-double"
    scales_itself = False

    def __init__(self, served: list[ServedReplica]) -> None:
        self.served = {replica.name: replica for replica in served}
        self.started_at_s = time.time()
        self.ready = {name: True for name in self.served}
        self.samplers = {name: ProcessTreeSampler(replica.process.pid) for name, replica in self.served.items()}
        self.desired = len(served)

    def start(self, replicas: int) -> None:
        self.desired = replicas

    def scale(self, replicas: int) -> None:
        self.desired = replicas

    def desired_replicas(self) -> int:
        return self.desired

    def replicas(self) -> list[ReplicaInfo]:
        return [
            ReplicaInfo(
                id=name,
                base_url=replica.base_url,
                ready=self.ready[name],
                started_at_s=self.started_at_s,
                pid=replica.process.pid,
                cpus=(0, 1),
            )
            for name, replica in self.served.items()
        ]

    def resource_use(self) -> dict[str, ResourceUse]:
        return {name: sampler.sample() for name, sampler in self.samplers.items()}

    def probe(self) -> None:
        for name, replica in self.served.items():
            try:
                self.ready[name] = http_get(replica.base_url + "/readyz", timeout_s=30.0)[0] == 200
            except OSError:
                self.ready[name] = False

    def stop(self) -> None:
        return


def wait_ticks(collector: MetricsCollector, ticks: int) -> None:
    target = collector.ticks + ticks
    wait_until(lambda: collector.ticks >= target, f"{ticks} collector ticks", 60.0)


@pytest.mark.integration
def test_collects_real_replicas_and_survives_one_being_killed(
    serve_tiny_service: Callable[[list[str]], list[ServedReplica]], tmp_path: Path
) -> None:
    served = serve_tiny_service(["a", "b"])
    target = ProcessTargetDouble(served)
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    # What is under test is the killed replica (refused at once), not whether the healthy one answers a scrape
    # within a tight bound while other lanes load the machine: a generous timeout, and no assertion that every
    # scrape of `a` succeeded.
    collector = MetricsCollector(target, run_dir, 0.2, "/metrics", cpu_request_cores=0.5, scrape_timeout_s=10.0)
    assert collector.latest() == CollectorSnapshot()
    collector.start()
    try:
        for _ in range(5):
            assert http_post_json(served[0].base_url + "/echo", b'{"text": "hello"}') == 200
        wait_until(
            lambda: (
                (collector.latest().replicas.get("a") is not None)
                and (collector.latest().replicas["a"].requests_total or 0) >= 5
            ),
            "replica a's 5 requests to show in a scrape",
            10.0,
        )
        wait_ticks(collector, 2)
        snapshot = collector.latest()
        assert (snapshot.desired_replicas, snapshot.ready_replicas) == (2, 2)
        for name in ("a", "b"):
            replica = snapshot.replicas[name]
            assert replica.ready and replica.scrape_ok
            assert replica.cpu_cores is not None and replica.rss_bytes is not None and replica.rss_bytes > 0
            assert replica.cpu_request_cores == 0.5
            assert replica.requests_rps is not None
        assert snapshot.replicas["a"].requests_total == 5.0
        # BentoML creates an endpoint's in-progress gauge on its first request: measured zero on a, missing on b.
        assert snapshot.replicas["a"].in_progress == 0.0
        assert snapshot.replicas["b"].in_progress is None
        # The request counters exist (at 0) from the start.
        assert snapshot.replicas["b"].requests_total == 0.0

        kill_tree(served[1].process)
        killed_at_s = time.time()
        wait_until(lambda: collector.latest().replicas["b"].scrape_ok is False, "a failed scrape of b", 30.0)
        wait_ticks(collector, 3)
        assert collector.running
        # The collection goes on: the healthy replica is still scraped after the kill.
        ticks_after_kill = collector.ticks
        wait_until(
            lambda: collector.ticks > ticks_after_kill and bool(collector.latest().replicas["a"].scrape_ok),
            "a scrape of a after b was killed",
            60.0,
        )

        # The probe notices; b is listed unready and no longer scraped.
        target.probe()
        wait_ticks(collector, 2)
        snapshot = collector.latest()
        assert (snapshot.desired_replicas, snapshot.ready_replicas) == (2, 1)
        assert not snapshot.replicas["b"].ready and snapshot.replicas["b"].scrape_ok is None
        assert snapshot.replicas["b"].cpu_cores is None
    finally:
        collector.stop()
        run_dir.close()
    assert not collector.running
    ticks = collector.ticks
    time.sleep(0.5)
    assert collector.ticks == ticks

    server = run_dir.read_records(ServerSample)
    a_after = [s for s in server if s.replica == "a" and s.t_s > killed_at_s]
    b_after = [s for s in server if s.replica == "b" and s.t_s > killed_at_s]
    assert any(s.ok for s in a_after)
    assert b_after and all(not s.ok for s in b_after)
    assert all(s.error and "127.0.0.1" in s.error and s.requests_total is None for s in b_after)
    assert any(s.ok and s.replica == "b" for s in server)
    a_ok = [s for s in server if s.replica == "a" and s.ok]
    assert a_ok[-1].requests_total == 5.0 and a_ok[-1].duration_count == 5.0

    events = run_dir.read_records(RunEvent)
    failures = [e.detail for e in events if isinstance(e.detail, ScrapeFailed)]
    # b's failure is reported once, with its URL (a scrape of `a` that a loaded machine let time out may show too).
    (b_failure,) = [f for f in failures if f.replica == "b"]
    assert b_failure.url == served[1].base_url + "/metrics"

    samples = run_dir.read_records(ReplicaSample)
    assert {s.replica for s in samples} == {"a", "b"}
    assert all(s.cpu_request_cores == 0.5 and s.cpus == (0, 1) for s in samples)
    assert samples[-1].replica == "b" and not samples[-1].ready and samples[-1].cpu_cores is None

    counts = run_dir.read_records(ReplicaCount)
    assert counts[0].ready == 2 and counts[-1] == ReplicaCount(t_s=counts[-1].t_s, desired=2, ready=1)
    assert len(counts) == ticks


class _BrokenTarget:
    """Test double whose replica listing fails like an unreachable Kubernetes API, or has a bug."""

    name = "broken"
    scales_itself = False

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def start(self, replicas: int) -> None:
        return

    def scale(self, replicas: int) -> None:
        return

    def desired_replicas(self) -> int:
        return 1

    def replicas(self) -> list[ReplicaInfo]:
        self.calls += 1
        raise self.error

    def resource_use(self) -> dict[str, ResourceUse]:
        return {}

    def stop(self) -> None:
        return


def test_a_failing_target_is_recorded_once_and_collection_goes_on(tmp_path: Path) -> None:
    target = _BrokenTarget(DeployError("kubernetes API unreachable"))
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    collector = MetricsCollector(target, run_dir, 0.1, "/metrics")
    collector.start()
    wait_until(lambda: target.calls >= 4, "four ticks", 10.0)
    assert collector.running
    collector.stop()
    run_dir.close()
    events = run_dir.read_records(RunEvent)
    (warning,) = [e.detail for e in events]
    assert isinstance(warning, RunWarning) and "kubernetes API unreachable" in warning.error


def test_an_unexpected_error_ends_the_loop_and_surfaces_at_stop(tmp_path: Path) -> None:
    target = _BrokenTarget(RuntimeError("bug in a target"))
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    collector = MetricsCollector(target, run_dir, 0.1, "/metrics")
    collector.start()
    wait_until(lambda: not collector.running, "the loop to end", 10.0)
    with pytest.raises(MetricsError, match="bug in a target"):
        collector.stop()
    run_dir.close()
