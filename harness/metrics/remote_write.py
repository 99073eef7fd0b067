"""Prometheus remote write of the run's series while it runs, so they sit beside the cluster's own in Grafana.

Every record the run writes to its run directory (client intervals, replica counts and samples, /metrics scrapes)
becomes samples stamped with the record's own time (`series_of`, pure), queued, and sent every
`metrics.remote_write_interval_s` by OpenTelemetry's remote-write exporter (protobuf, snappy, HTTP; the
`remote-write` extra). Each series carries `job="harness"`, `run_id` and `scenario`; the names follow the harness's
exporter (`harness_request_latency_seconds`, base units, `_total` for counters), and the Grafana dashboard the
project ships (`harness/metrics/dashboard.py`) reads them. A failed send is a run warning, never a failed run; the
queue is bounded, and what did not fit is counted in the warning.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from harness.analysis.latency import LatencyHistogram
from harness.errors import MetricsError
from harness.model import ClientInterval, ReplicaCount, ReplicaSample, ServerSample
from harness.redact import redact_text, redact_url, url_credentials

JOB: Final = "harness"
QUANTILES: Final = (0.5, 0.95, 0.99)
# Samples waiting to be sent; at 1 s intervals a run makes a few dozen a second, so this is minutes of them.
MAX_QUEUED: Final = 200_000


@dataclass(frozen=True)
class Point:
    """One sample of one series: its metric name, its labels (without the run's), its value, when (ms)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    t_ms: int


class CounterState:
    """Running totals of the counters (`harness_requests_total`, `harness_failed_requests_total`) by series; a
    series starts with a 0 at its first interval's start, so `increase()` counts its first interval too."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def add(
        self, name: str, labels: tuple[tuple[str, str], ...], count: float, start_ms: int, end_ms: int
    ) -> list[Point]:
        key = (name, labels)
        points = []
        if key not in self.totals:
            self.totals[key] = 0.0
            points.append(Point(name, labels, 0.0, start_ms))
        self.totals[key] += count
        points.append(Point(name, labels, self.totals[key], end_ms))
        return points


def _ms(t_s: float) -> int:
    return round(t_s * 1000)


def _interval_points(record: ClientInterval, counters: CounterState) -> list[Point]:
    labels = (("process", str(record.process)), ("stage", record.stage))
    start_ms, end_ms = _ms(record.t_start_s), _ms(record.t_end_s)
    points = counters.add("harness_requests_total", labels, record.requests, start_ms, end_ms)
    for kind, count in sorted(record.errors.items()):
        points += counters.add("harness_failed_requests_total", (*labels, ("kind", kind)), count, start_ms, end_ms)
    length_s = record.t_end_s - record.t_start_s
    if length_s > 0:
        points.append(Point("harness_achieved_rps", labels, record.requests / length_s, end_ms))
    if record.offered_rps is not None:
        points.append(Point("harness_offered_rps", labels, record.offered_rps, end_ms))
    points.append(Point("harness_users", (("process", str(record.process)),), record.users, end_ms))
    histogram = LatencyHistogram.decode(record.latency_hdr)
    for quantile in QUANTILES:
        # An interval without a successful request has no latency: no sample, never a 0.
        value_s = histogram.value_at_percentile_s(quantile * 100) if histogram.count else None
        if value_s is not None:
            name, quantile_labels = "harness_request_latency_seconds", (*labels, ("quantile", f"{quantile:g}"))
            points.append(Point(name, quantile_labels, value_s, end_ms))
    return points


def series_of(record: Any, counters: CounterState) -> list[Point]:
    """The samples one run record stands for (none for records that are not time series)."""
    if isinstance(record, ClientInterval):
        return _interval_points(record, counters)
    if isinstance(record, ReplicaCount):
        at_ms = _ms(record.t_s)
        return [
            Point("harness_replicas", (("state", "desired"),), record.desired, at_ms),
            Point("harness_replicas", (("state", "ready"),), record.ready, at_ms),
        ]
    if isinstance(record, ReplicaSample):
        at_ms, labels = _ms(record.t_s), (("replica", record.replica),)
        points = [Point("harness_replica_ready", labels, float(record.ready), at_ms)]
        if record.cpu_cores is not None:
            points.append(Point("harness_replica_cpu_cores", labels, record.cpu_cores, at_ms))
        if record.rss_bytes is not None:
            points.append(Point("harness_replica_memory_bytes", labels, record.rss_bytes, at_ms))
        return points
    if isinstance(record, ServerSample) and record.ok and record.in_progress is not None:
        return [
            Point(
                "harness_server_in_flight_requests", (("replica", record.replica),), record.in_progress, _ms(record.t_s)
            )
        ]
    return []


def metrics_data(points: Iterable[Point], run_labels: Mapping[str, str]) -> Any:
    """The points as OpenTelemetry MetricsData, one gauge per metric name (counters too: the values are the
    totals, and remote write carries samples, not types), the run's labels as the resource's attributes."""
    from opentelemetry.sdk.metrics.export import (
        Gauge,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    by_name: dict[str, list[Any]] = {}
    for point in points:
        at_ns = point.t_ms * 1_000_000
        by_name.setdefault(point.name, []).append(NumberDataPoint(dict(point.labels), at_ns, at_ns, point.value))
    metrics = [Metric(name, None, "", Gauge(data_points)) for name, data_points in by_name.items()]
    scope = ScopeMetrics(InstrumentationScope("harness"), metrics, "")
    return MetricsData([ResourceMetrics(Resource(dict(run_labels)), [scope], "")])


class RemoteWriter:
    """Queues the samples of the records it is given and sends them every `interval_s` from its own thread."""

    def __init__(
        self,
        url: str,
        run_labels: Mapping[str, str],
        *,
        interval_s: float = 5.0,
        timeout_s: int = 10,
        on_warning: Callable[[str], None] = lambda message: None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        from opentelemetry.exporter.prometheus_remote_write import PrometheusRemoteWriteMetricsExporter

        bare, credentials = url_credentials(url)
        self.url = redact_url(url)
        self._secrets = [credentials[1]] if credentials else []
        auth: dict[str, str] = {"username": credentials[0], "password": credentials[1]} if credentials else {}
        # An empty basic_auth is none (the exporter tests it for truth).
        self._exporter = PrometheusRemoteWriteMetricsExporter(endpoint=bare, timeout=timeout_s, basic_auth=auth)
        self._labels = {"job": JOB, **run_labels}
        self._interval_s = interval_s
        self._on_warning = on_warning
        self._queue: deque[Point] = deque()
        self._max_queued = max_queued
        self._counters = CounterState()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0
        self.failed_sends = 0

    def add(self, record: Any) -> None:
        """Queue the samples of one run record (called by the run directory as it writes each record)."""
        with self._lock:
            for point in series_of(record, self._counters):
                if len(self._queue) >= self._max_queued:
                    self.dropped += 1
                    continue
                self._queue.append(point)

    def flush(self) -> bool:
        """Send what is queued now; False (and a warning) when the receiver did not take it, whose samples are
        then dropped: a later send would carry them out of order."""
        with self._lock:
            points, self._queue = list(self._queue), deque()
        if not points:
            return True
        from opentelemetry.sdk.metrics.export import MetricExportResult

        try:
            result = self._exporter.export(metrics_data(points, self._labels))
        except Exception as error:  # the exporter's own failures must not end the run
            result, reason = MetricExportResult.FAILURE, f"{type(error).__name__}: {error}"
        else:
            reason = "the receiver refused or did not answer"
        if result is MetricExportResult.SUCCESS:
            self.sent += len(points)
            return True
        self.failed_sends += 1
        if self.failed_sends == 1:
            self._on_warning(
                f"metrics.remote_write_url {self.url}: a send of {len(points)} samples failed "
                f"({redact_text(reason, self._secrets)}); the run goes on, later failures are counted at its end"
            )
        return False

    def start(self) -> None:
        """Send every `interval_s` until `close`."""
        if self._thread is not None:
            raise MetricsError("remote write already started")
        self._thread = threading.Thread(target=self._loop, name="harness-remote-write", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval_s)
            self.flush()

    def close(self, timeout_s: float = 15.0) -> None:
        """Send what is left and stop the thread; says what was lost, if anything; idempotent."""
        thread, self._thread = self._thread, None
        self._stopping = True
        self._wake.set()
        if thread is not None:
            thread.join(timeout_s)
        self.flush()
        if self.failed_sends > 1 or self.dropped:
            self._on_warning(
                f"metrics.remote_write_url {self.url}: {self.failed_sends} send(s) failed, {self.dropped} samples did "
                f"not fit the queue; {self.sent} samples were sent"
            )
