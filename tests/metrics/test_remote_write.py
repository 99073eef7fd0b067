"""harness.metrics.remote_write: the samples each run record stands for (pure), and for real, into Debian's
Prometheus with its remote-write receiver on: the writer's samples queried back, a whole `harness run` whose series
arrive while it runs, and a receiver that is not there, which warns and does not fail the run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from metrics_test_support import http_get, pick_free_port
from test_exporter import StartServer, start_server, system_packages

from harness.analysis.latency import LatencyHistogram
from harness.metrics.dashboard import panel_specs
from harness.metrics.remote_write import CounterState, Point, RemoteWriter, series_of
from harness.model import ClientInterval, ReplicaCount, ReplicaSample, ServerSample

__all__ = ["start_server", "system_packages"]  # pytest fixtures shared with test_exporter

ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness.cli"]
T0_S = 1_760_000_000.0


def client_interval(start_s: float, latencies_s: list[float], errors: dict[str, int] | None = None) -> ClientInterval:
    histogram = LatencyHistogram()
    for latency_s in latencies_s:
        histogram.record_s(latency_s)
    failed = sum((errors or {}).values())
    return ClientInterval(
        t_start_s=T0_S + start_s,
        t_end_s=T0_S + start_s + 1.0,
        process=1,
        stage="steady",
        users=4,
        offered_rps=None,
        scheduled=0,
        requests=len(latencies_s) + failed,
        failures=failed,
        errors=errors or {},
        latency_hdr=histogram.encode(),
    )


def by_series(points: list[Point]) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]] = {}
    for point in points:
        found.setdefault((point.name, point.labels), []).append((point.t_ms, point.value))
    return found


def test_client_intervals_become_counters_from_zero_rates_and_latency_quantiles() -> None:
    counters = CounterState()
    first = series_of(client_interval(0, [0.010] * 99 + [0.100], {"http_400": 3}), counters)
    second = series_of(client_interval(1, [0.020] * 50), counters)
    series = by_series(first + second)
    labels = (("process", "1"), ("stage", "steady"))
    start_ms, end_ms = int(T0_S * 1000), int(T0_S * 1000) + 1000
    assert series[("harness_requests_total", labels)] == [(start_ms, 0.0), (end_ms, 103.0), (end_ms + 1000, 153.0)]
    assert series[("harness_failed_requests_total", (*labels, ("kind", "http_400")))] == [
        (start_ms, 0.0),
        (end_ms, 3.0),
    ]
    assert series[("harness_achieved_rps", labels)] == [(end_ms, 103.0), (end_ms + 1000, 50.0)]
    assert series[("harness_users", (("process", "1"),))] == [(end_ms, 4.0), (end_ms + 1000, 4.0)]
    (p99,) = [v for t, v in series[("harness_request_latency_seconds", (*labels, ("quantile", "0.99")))] if t == end_ms]
    assert p99 == pytest.approx(0.010, rel=0.01)
    (p50,) = series[("harness_request_latency_seconds", (*labels, ("quantile", "0.5")))][1:]
    assert p50 == (end_ms + 1000, pytest.approx(0.020, rel=0.01))
    # An interval without a success has no latency at all, never a 0.
    failed_only = series_of(client_interval(2, [], {"timeout": 5}), counters)
    assert not [p for p in failed_only if p.name == "harness_request_latency_seconds"]


def test_replica_and_server_records_become_gauges() -> None:
    counters = CounterState()
    assert series_of(ReplicaCount(T0_S, desired=3, ready=2), counters) == [
        Point("harness_replicas", (("state", "desired"),), 3, int(T0_S * 1000)),
        Point("harness_replicas", (("state", "ready"),), 2, int(T0_S * 1000)),
    ]
    sample = ReplicaSample(T0_S, "replica-1", True, cpu_cores=0.5, rss_bytes=None)
    assert [(p.name, p.value) for p in series_of(sample, counters)] == [
        ("harness_replica_ready", 1.0),
        ("harness_replica_cpu_cores", 0.5),
    ]
    assert [p.name for p in series_of(ServerSample(T0_S, "replica-1", True, in_progress=4.0), counters)] == [
        "harness_server_in_flight_requests"
    ]
    assert series_of(ServerSample(T0_S, "replica-1", False, error="HTTP 404"), counters) == []


def query(base: str, expression: str, at_s: float | None = None) -> list[dict[str, Any]]:
    parameters = {"query": expression, **({"time": f"{at_s:.3f}"} if at_s is not None else {})}
    status, text = http_get(f"{base}/api/v1/query?{urllib.parse.urlencode(parameters)}")
    assert status == 200, text
    result: list[dict[str, Any]] = json.loads(text)["data"]["result"]
    return result


@pytest.fixture
def prometheus(system_packages: None, start_server: StartServer, tmp_path: Path) -> str:
    """Debian's Prometheus on 127.0.0.1 with its remote-write receiver on and nothing to scrape."""
    port = pick_free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    start_server(
        [
            "/usr/bin/prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--web.enable-remote-write-receiver",
        ],
        base + "/-/ready",
        "prometheus",
    )
    return base


@pytest.mark.integration
def test_the_writers_samples_are_queried_back_from_a_real_prometheus(prometheus: str) -> None:
    warnings: list[str] = []
    now_s = time.time()
    writer = RemoteWriter(
        f"{prometheus}/api/v1/write", {"run_id": "run-rw", "scenario": "s"}, interval_s=60, on_warning=warnings.append
    )
    for second in range(5):
        interval = client_interval(0, [0.010] * 20, {"http_503": 1})
        writer.add(
            ClientInterval(**{**interval.__dict__, "t_start_s": now_s - 6 + second, "t_end_s": now_s - 5 + second})
        )
    writer.add(ReplicaCount(now_s - 1, desired=2, ready=1))
    assert writer.flush() and writer.sent > 0 and warnings == []
    requests = query(prometheus, 'harness_requests_total{run_id="run-rw"}', now_s)
    assert [(r["metric"]["job"], r["metric"]["scenario"], r["value"][1]) for r in requests] == [("harness", "s", "105")]
    failed = 'increase(harness_failed_requests_total{run_id="run-rw",kind="http_503"}[1m])'
    increase = query(prometheus, failed, now_s)
    assert float(increase[0]["value"][1]) == pytest.approx(5, rel=0.25)  # increase() extrapolates at the edges
    ready = query(prometheus, 'harness_replicas{run_id="run-rw",state="ready"}', now_s)
    assert ready[0]["value"][1] == "1"


@pytest.mark.integration
def test_a_receiver_that_is_not_there_warns_once_and_counts_the_rest() -> None:
    warnings: list[str] = []
    writer = RemoteWriter(
        f"http://user:hunter22@127.0.0.1:{pick_free_port()}/api/v1/write",
        {"run_id": "r", "scenario": "s"},
        interval_s=60,
        timeout_s=2,
        on_warning=warnings.append,
    )
    writer.add(ReplicaCount(time.time(), 1, 1))
    assert writer.flush() is False
    writer.add(ReplicaCount(time.time(), 1, 1))
    writer.close()
    assert len(warnings) == 2 and "a send of 2 samples failed" in warnings[0]
    assert "2 send(s) failed, 0 samples did not fit the queue; 0 samples were sent" in warnings[1]
    assert all("hunter22" not in warning and "user:<redacted>@127.0.0.1" in warning for warning in warnings)


@pytest.mark.integration
def test_a_run_sends_its_series_while_it_runs(prometheus: str, tmp_path: Path) -> None:
    port = pick_free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "bench" / "synthetic_server.py"), "--port", str(port)),
            *("--base-ms", "2", "--jitter-ms", "1", "--max-lifetime-s", "300"),
        ]
    )
    scenario = {
        "name": "remote-write",
        "target": {"kind": "external", "urls": [f"http://127.0.0.1:{port}"], "startup_timeout_s": 30},
        "stages": [{"name": "steady", "duration_s": 20, "arrival_rate_rps": 20}],
        "requests": [{"name": "predict", "path": "/predict", "body_template": {"x": 1}}],
        "objectives": [{"metric": "error_rate", "max": 0.5}],
        "metrics": {"remote_write_interval_s": 1},
        "output": {"dir": str(tmp_path / "reports"), "run_id": "rw-run"},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    run = subprocess.Popen(
        [*HARNESS, "run", str(path), "--remote-write", f"{prometheus}/api/v1/write"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The series arrive during the 20 s stage, sent every second: seen while the harness still runs.
        seen_while_running = False
        deadline_s = time.monotonic() + 120
        while run.poll() is None and time.monotonic() < deadline_s:
            if query(prometheus, 'harness_requests_total{run_id="rw-run"}'):
                seen_while_running = run.poll() is None
                break
            time.sleep(0.5)
        stdout, stderr = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
        server.kill()
        server.wait(timeout=10)
    assert run.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert seen_while_running, "no series arrived while the run went on"
    verdict = json.loads((tmp_path / "reports" / "rw-run" / "verdict.json").read_text())
    (stage,) = verdict["stages"]
    assert not [w for w in verdict["warnings"] if "remote" in w], verdict["warnings"]
    # Every request the verdict counts is in the last sample of the counters (the final send at the run's end).
    totals = query(prometheus, 'max_over_time(harness_requests_total{run_id="rw-run",stage="steady"}[10m])')
    assert sum(float(series["value"][1]) for series in totals) == stage["requests"]
    latency = query(prometheus, 'harness_request_latency_seconds{run_id="rw-run",quantile="0.95"}[10m]')
    assert latency and all(0.001 < float(value) < 1.0 for _, value in latency[0]["values"])
    # The shipped dashboard's queries, as Grafana sends them for this run, over the run's time: each one whose
    # series the run sent (an external target sends no replica CPU, memory or in-flight requests) draws something.
    sent = {series["metric"]["__name__"] for series in query(prometheus, 'group by (__name__) ({run_id="rw-run"})')}
    drawn = []
    for spec in panel_specs():
        for panel_query in spec.queries:
            expression = panel_query.expr.replace("$run_id", "rw-run").replace("$__rate_interval", "1m")
            found = query_range(prometheus, expression, verdict_window(verdict))
            if set(re.findall(r"harness_\w+", expression)) <= sent:
                assert found, (spec.title, expression)
                drawn.append(spec.title)
    assert {"Throughput", "Latency", "Users", "Replicas"} <= set(drawn), drawn


def verdict_window(verdict: dict[str, Any]) -> tuple[float, float]:
    stages = verdict["stages"]
    return stages[0]["start_s"], stages[-1]["end_s"] + 10


def query_range(base: str, expression: str, window: tuple[float, float]) -> list[dict[str, Any]]:
    parameters = {"query": expression, "start": f"{window[0]:.3f}", "end": f"{window[1]:.3f}", "step": "1"}
    status, text = http_get(f"{base}/api/v1/query_range?{urllib.parse.urlencode(parameters)}")
    assert status == 200, text
    result: list[dict[str, Any]] = json.loads(text)["data"]["result"]
    return result
