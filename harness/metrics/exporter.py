"""The harness's own Prometheus metrics: a live /metrics endpoint on 127.0.0.1 while a run goes on, and the
final figures of a verdict pushed to a Pushgateway.

Both use private registries, so nothing leaks into (or from) prometheus_client's global registry. A figure
not measured yet is exported as NaN, Prometheus's "no value", never as 0.
"""

from __future__ import annotations

import http.client
import math
import threading
from types import TracebackType
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, start_http_server
from prometheus_client.exposition import basic_auth_handler, default_handler

from harness.errors import MetricsError
from harness.model import Status, Verdict
from harness.redact import redact_text, redact_url, url_credentials

LOOPBACK: Final = "127.0.0.1"
# Numeric encoding of a Status in the pushed verdict's harness_objective_status and harness_run_status.
STATUS_VALUE: Final = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.INCONCLUSIVE: 3}
LIVE_QUANTILES: Final = ("0.5", "0.95", "0.99")


def _value(number: float | None) -> float:
    return math.nan if number is None else float(number)


def quantile_label(q_percent: float) -> str:
    """The Prometheus quantile label of a percentile given in percent: 95 -> "0.95"."""
    return f"{q_percent / 100:g}"


class HarnessExporter:
    """Serves the run's live figures at http://127.0.0.1:PORT/metrics; port 0 picks a free port."""

    def __init__(self, run_id: str, scenario: str, port: int = 0) -> None:
        self.run_id = run_id
        self.scenario = scenario
        self.requested_port = port
        self.registry = CollectorRegistry(auto_describe=True)
        self._offered_rps = Gauge(
            "harness_offered_rps", "Requests per second the load generator is trying to send", registry=self.registry
        )
        self._achieved_rps = Gauge(
            "harness_achieved_rps", "Requests per second completed in the latest interval", registry=self.registry
        )
        self._latency = Gauge(
            "harness_request_latency_seconds",
            "Client-side request latency percentiles over the latest interval",
            ["quantile"],
            registry=self.registry,
        )
        self._replicas = Gauge("harness_replicas", "Replicas desired and ready", ["state"], registry=self.registry)
        self._errors = Counter("harness_errors", "Failed requests since the run started", registry=self.registry)
        self._run_info = Gauge(
            "harness_run_info", "The run being measured", ["run_id", "scenario"], registry=self.registry
        )
        self._run_info.labels(run_id=run_id, scenario=scenario).set(1)
        self.set_offered_rps(None)
        self.set_achieved_rps(None)
        self.set_latency_s(None, None, None)
        self.set_replicas(None, None)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ figures

    def set_offered_rps(self, offered_rps: float | None) -> None:
        self._offered_rps.set(_value(offered_rps))

    def set_achieved_rps(self, achieved_rps: float | None) -> None:
        self._achieved_rps.set(_value(achieved_rps))

    def set_latency_s(self, p50_s: float | None, p95_s: float | None, p99_s: float | None) -> None:
        for quantile, value_s in zip(LIVE_QUANTILES, (p50_s, p95_s, p99_s), strict=True):
            self._latency.labels(quantile=quantile).set(_value(value_s))

    def set_replicas(self, desired: int | None, ready: int | None) -> None:
        self._replicas.labels(state="desired").set(_value(desired))
        self._replicas.labels(state="ready").set(_value(ready))

    def add_errors(self, count: int) -> None:
        """Add failed requests to harness_errors_total (a counter only grows)."""
        if count < 0:
            raise MetricsError(f"harness_errors_total: cannot add a negative count ({count})")
        self._errors.inc(count)

    # ------------------------------------------------------------------ serving

    def start(self) -> int:
        """Start serving on 127.0.0.1 and return the port actually bound."""
        if self._server is not None:
            raise MetricsError("harness exporter already started")
        try:
            self._server, self._thread = start_http_server(self.requested_port, addr=LOOPBACK, registry=self.registry)
        except OSError as error:
            raise MetricsError(
                f"metrics.exporter_port {self.requested_port}: cannot listen on {LOOPBACK} ({error.strerror})",
                hint="choose another port, or 0 for any free port",
            ) from error
        return self.port

    @property
    def port(self) -> int:
        if self._server is None:
            raise MetricsError("harness exporter is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/metrics"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server and join its thread; idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                raise MetricsError(f"harness exporter thread did not stop within {timeout_s:g} s")

    def __enter__(self) -> HarnessExporter:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def verdict_registry(verdict: Verdict) -> CollectorRegistry:
    """The final figures of a verdict as a registry: per-stage throughput, latency and errors, statuses."""
    registry = CollectorRegistry(auto_describe=True)
    run_status = Gauge("harness_run_status", "Run verdict: 0 pass, 1 warn, 2 fail, 3 inconclusive", registry=registry)
    run_status.set(STATUS_VALUE[verdict.status])
    Gauge("harness_run_exit_code", "Exit code of the run", registry=registry).set(verdict.exit_code)
    achieved = Gauge("harness_stage_achieved_rps", "Completed requests per second", ["stage"], registry=registry)
    offered = Gauge("harness_stage_offered_rps", "Offered requests per second", ["stage"], registry=registry)
    latency = Gauge(
        "harness_stage_latency_seconds", "Request latency percentile", ["stage", "quantile"], registry=registry
    )
    errors = Gauge("harness_stage_error_ratio", "Failed requests / requests", ["stage"], registry=registry)
    requests = Gauge("harness_stage_requests", "Completed requests", ["stage"], registry=registry)
    objectives = Gauge(
        "harness_objective_status",
        "Objective status: 0 pass, 1 warn, 2 fail, 3 inconclusive",
        ["objective", "stage"],
        registry=registry,
    )
    # A figure that was not measured is left out rather than pushed as a number.
    for stage in verdict.stages:
        achieved.labels(stage=stage.name).set(stage.achieved_rps)
        requests.labels(stage=stage.name).set(stage.requests)
        if stage.offered_rps is not None:
            offered.labels(stage=stage.name).set(stage.offered_rps)
        if stage.error_rate is not None:
            errors.labels(stage=stage.name).set(stage.error_rate)
        for estimate in stage.latency.values():
            if estimate.value_s is not None:
                latency.labels(stage=stage.name, quantile=quantile_label(estimate.q)).set(estimate.value_s)
    for result in verdict.objectives:
        objectives.labels(objective=result.objective, stage=result.stage or "").set(STATUS_VALUE[result.status])
    return registry


def push_verdict(
    pushgateway_url: str, job: str, run_id: str, verdict: Verdict, *, scenario: str, timeout_s: float = 10.0
) -> None:
    """Push a verdict's final figures to a Pushgateway, grouped by run and scenario; MetricsError on failure.

    Credentials in the URL (`https://user:password@host`) are sent as HTTP basic auth and never shown."""
    url, credentials = url_credentials(pushgateway_url)

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes) -> Any:
        if credentials is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, credentials[0], credentials[1])

    try:
        push_to_gateway(
            url,
            job=job,
            registry=verdict_registry(verdict),
            grouping_key={"run": run_id, "scenario": scenario},
            timeout=timeout_s,
            handler=handler,
        )
    except (OSError, http.client.HTTPException, ValueError) as error:
        shown = redact_text(str(error), [credentials[1]] if credentials else [])
        raise MetricsError(
            f"metrics.pushgateway_url {redact_url(pushgateway_url)}: push failed ({shown})",
            hint="is the Pushgateway running and reachable?",
        ) from error
