"""The run's metrics loop: every interval, scrape each ready replica's /metrics, read the target's resource
use and replica counts, append them to the run directory, and keep the latest snapshot in memory.

A replica that vanishes mid-scrape is recorded (`ServerSample(ok=False)` plus one "scrape_failed" event
per replica) and never stops the loop. Replicas not yet ready are not scraped: they are not serving.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from harness.errors import HarnessError, MetricsError
from harness.metrics.scrape import scrape_replica
from harness.model import (
    Event,
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
from harness.targets.base import ReadsServerMetrics, Target


@dataclass(frozen=True)
class ReplicaSnapshot:
    """One replica as of the collector's latest tick."""

    replica: str
    ready: bool
    cpu_cores: float | None
    rss_bytes: float | None
    cpu_request_cores: float | None
    # None when the replica was not scraped (not ready) in that tick.
    scrape_ok: bool | None
    in_progress: float | None
    requests_total: float | None
    # An LLM engine's gauges (ServerSample.engine_*), where the replica exports them.
    engine_running: float | None
    engine_waiting: float | None
    engine_kv_cache_usage: float | None
    # Completed requests per second between this replica's two latest successful scrapes.
    requests_rps: float | None


@dataclass(frozen=True)
class CollectorSnapshot:
    """The latest tick, for the autoscaler and live progress; all None/empty before the first tick."""

    t_s: float | None = None
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    replicas: dict[str, ReplicaSnapshot] = field(default_factory=dict)


class MetricsCollector:
    """Background thread sampling a target every `interval_s` seconds into a run directory."""

    def __init__(
        self,
        target: Target,
        run_dir: RunDirectory,
        interval_s: float,
        metrics_path: str,
        clock: Callable[[], float] = time.time,
        *,
        cpu_request_cores: float | None = None,
        scrape_timeout_s: float | None = None,
        endpoints: Collection[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if interval_s <= 0:
            raise MetricsError(f"metrics.interval_s must be positive, got {interval_s}")
        self.target = target
        self.run_dir = run_dir
        self.interval_s = interval_s
        self.metrics_path = metrics_path
        # How https replicas (the external target) are checked.
        self.ssl_context = ssl_context
        self.cpu_request_cores = cpu_request_cores
        # A hung replica must not stretch a tick far beyond the interval.
        self.scrape_timeout_s = scrape_timeout_s if scrape_timeout_s is not None else min(max(interval_s, 0.5), 5.0)
        self.endpoints = endpoints
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._latest = CollectorSnapshot()
        self._last_ok: dict[str, ServerSample] = {}
        self._reported_failures: set[str] = set()
        self._reported_errors: set[str] = set()
        self._failure: BaseException | None = None
        self.ticks = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background thread; the first tick happens at once."""
        if self._thread is not None:
            raise MetricsError("metrics collector already started")
        self._thread = threading.Thread(target=self._run, name="metrics-collector", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop and join the thread (bounded); re-raise as MetricsError anything that broke the loop."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s if timeout_s is not None else self.interval_s + 2 * self.scrape_timeout_s + 5.0)
            if thread.is_alive():
                self._record_event(RunWarning("metrics collector", "did not stop in time"))
        failure = self.failure
        if failure is not None:
            raise failure

    @property
    def failure(self) -> HarnessError | None:
        """What stopped the collection loop, if anything did (the run stops on it, never collects on silently)."""
        if self._failure is None:
            return None
        if isinstance(self._failure, HarnessError):
            return self._failure
        return MetricsError(f"metrics collector stopped on an unexpected error: {self._failure!r}")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def latest(self) -> CollectorSnapshot:
        """The most recent tick's figures (thread-safe; the snapshot is immutable)."""
        with self._lock:
            return self._latest

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        next_tick_s = time.monotonic()
        try:
            while not self._stop.is_set():
                self.tick()
                # Fixed schedule; ticks missed because a scrape was slow are skipped, not bunched.
                next_tick_s += self.interval_s
                now_s = time.monotonic()
                if next_tick_s < now_s:
                    next_tick_s = now_s + self.interval_s - (now_s - next_tick_s) % self.interval_s
                self._stop.wait(next_tick_s - now_s)
        except Exception as error:
            # A background thread cannot raise to the run; stop() re-raises it.
            self._failure = error

    def tick(self) -> None:
        """Collect once: replica list, resource use, a scrape per ready replica, counts."""
        t_s = self._clock()
        try:
            replicas = self.target.replicas()
            desired = self.target.desired_replicas()
        except (HarnessError, OSError) as error:
            self._record_error("target.replicas", error)
            return
        try:
            resources = self.target.resource_use()
        except (HarnessError, OSError) as error:
            self._record_error("target.resource_use", error)
            resources = {}

        servers = self._server_samples([replica for replica in replicas if replica.ready])
        snapshots: dict[str, ReplicaSnapshot] = {}
        for replica in replicas:
            use = resources.get(replica.id, ResourceUse(cpu_cores=None, rss_bytes=None))
            self.run_dir.append(
                ReplicaSample(
                    t_s=t_s,
                    replica=replica.id,
                    ready=replica.ready,
                    cpu_cores=use.cpu_cores,
                    rss_bytes=use.rss_bytes,
                    cpu_request_cores=self.cpu_request_cores,
                    cpus=replica.cpus,
                )
            )
            snapshots[replica.id] = self._snapshot(replica, use, servers.get(replica.id))

        ready = sum(1 for replica in replicas if replica.ready)
        self.run_dir.append(ReplicaCount(t_s=t_s, desired=desired, ready=ready))
        with self._lock:
            self._latest = CollectorSnapshot(
                t_s=t_s, desired_replicas=desired, ready_replicas=ready, replicas=snapshots
            )
            self.ticks += 1

    def _server_samples(self, ready: list[ReplicaInfo]) -> dict[str, ServerSample]:
        """One sample per ready replica: through the target when it reads metrics itself, else over HTTP."""
        samples: list[ServerSample] | None = None
        sources = {replica.id: f"{self.target.name} metrics route" for replica in ready}
        if isinstance(self.target, ReadsServerMetrics):
            try:
                samples = self.target.server_samples(ready, self.scrape_timeout_s)
            except (HarnessError, OSError) as error:
                self._record_error("target.server_samples", error)
                return {}
        if samples is None:
            samples = [self._scrape(replica) for replica in ready]
            sources = {replica.id: replica.base_url.rstrip("/") + self.metrics_path for replica in ready}
        for sample in samples:
            self.run_dir.append(sample)
            if not sample.ok and sample.replica not in self._reported_failures:
                self._reported_failures.add(sample.replica)
                self._record_event(ScrapeFailed(sample.replica, sources.get(sample.replica, ""), sample.error))
        return {sample.replica: sample for sample in samples}

    def _scrape(self, replica: ReplicaInfo) -> ServerSample:
        url = replica.base_url.rstrip("/") + self.metrics_path
        return scrape_replica(
            url, replica.id, self.scrape_timeout_s, self._clock, endpoints=self.endpoints, ssl_context=self.ssl_context
        )

    def _snapshot(self, replica: ReplicaInfo, use: ResourceUse, server: ServerSample | None) -> ReplicaSnapshot:
        requests_rps: float | None = None
        if server is not None and server.ok:
            previous = self._last_ok.get(replica.id)
            if (
                previous is not None
                and previous.requests_total is not None
                and server.requests_total is not None
                # A restarted replica resets its counters; no rate across a reset.
                and server.requests_total >= previous.requests_total
                and server.t_s > previous.t_s
            ):
                requests_rps = (server.requests_total - previous.requests_total) / (server.t_s - previous.t_s)
            self._last_ok[replica.id] = server
        return ReplicaSnapshot(
            replica=replica.id,
            ready=replica.ready,
            cpu_cores=use.cpu_cores,
            rss_bytes=use.rss_bytes,
            cpu_request_cores=self.cpu_request_cores,
            scrape_ok=None if server is None else server.ok,
            in_progress=None if server is None else server.in_progress,
            requests_total=None if server is None else server.requests_total,
            engine_running=None if server is None else server.engine_running,
            engine_waiting=None if server is None else server.engine_waiting,
            engine_kv_cache_usage=None if server is None else server.engine_kv_cache_usage,
            requests_rps=requests_rps,
        )

    def _record_error(self, source: str, error: Exception) -> None:
        # Once per distinct message, so a target that stays broken does not flood the event log.
        key = f"{source}: {error}"
        if key not in self._reported_errors:
            self._reported_errors.add(key)
            self._record_event(RunWarning(f"metrics collector ({source})", str(error)))

    def _record_event(self, event: Event) -> None:
        self.run_dir.append(RunEvent(t_s=self._clock(), detail=event))
