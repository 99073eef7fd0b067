"""Parsing BentoML's /metrics (a page captured from a real `bentoml serve`) and scraping it over HTTP."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from metrics_test_support import HEALTHY_ANSWER_S
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from harness.errors import MetricsError
from harness.metrics.scrape import is_api_endpoint, parse_bentoml_metrics, scrape_replica

FIXTURE = Path(__file__).parent / "fixtures" / "bentoml_metrics.txt"

# The fixture was captured from the tiny service (fixtures/tiny_service) after: 3 POST /echo (200),
# 1 POST /echo with a bad body (400), 6 concurrent POST /double (200, adaptively batched), GET /readyz,
# /livez and /healthz once each, and 3 POST /slow still in flight while /metrics was read.
ECHO_DURATION_SUMS_S = (0.03686897800071165, 0.0018937660006486112)
DOUBLE_DURATION_SUM_S = 0.022034937999706017


def test_parses_the_captured_page_summing_only_api_endpoints() -> None:
    sample = parse_bentoml_metrics(FIXTURE.read_text(), 1000.0, "r1")
    assert sample.ok and sample.error is None
    assert (sample.t_s, sample.replica) == (1000.0, "r1")
    # /echo 3 + 1 (the 400 counts: it was served) + /double 6; /readyz, /livez, /healthz are left out.
    assert sample.requests_total == 10.0
    assert sample.duration_count == 10.0
    assert sample.duration_sum_s == pytest.approx(sum(ECHO_DURATION_SUMS_S) + DOUBLE_DURATION_SUM_S)
    assert sample.in_progress == 3.0
    assert sample.batch_size_sum == 6.0
    assert sample.batch_size_count == 6.0


def test_endpoints_restrict_the_sums() -> None:
    sample = parse_bentoml_metrics(FIXTURE.read_text(), 0.0, "r1", endpoints={"/echo"})
    assert sample.requests_total == 4.0
    assert sample.duration_count == 4.0
    assert sample.duration_sum_s == pytest.approx(sum(ECHO_DURATION_SUMS_S))
    assert sample.in_progress == 0.0
    # /echo is not batchable: no batch-size series for it, so None rather than 0.
    assert sample.batch_size_sum is None and sample.batch_size_count is None


def test_missing_series_are_none_not_zero() -> None:
    text = "\n".join(
        line
        for line in FIXTURE.read_text().splitlines()
        if not line.startswith(("bentoml_service_request_duration", "bentoml_service_adaptive_batch_size"))
    )
    sample = parse_bentoml_metrics(text, 0.0, "r1")
    assert sample.requests_total == 10.0
    assert sample.duration_sum_s is None and sample.duration_count is None
    assert sample.batch_size_sum is None and sample.batch_size_count is None


def test_only_infrastructure_series_count_as_missing() -> None:
    text = (
        "# TYPE bentoml_service_request_in_progress gauge\n"
        'bentoml_service_request_in_progress{endpoint="/readyz"} 1.0\n'
        "# TYPE bentoml_service_request_total counter\n"
        'bentoml_service_request_total{endpoint="/metrics",http_response_code="200"} 7.0\n'
    )
    sample = parse_bentoml_metrics(text, 0.0, "r1")
    assert sample.requests_total is None
    assert sample.in_progress is None


def test_an_empty_page_is_all_none() -> None:
    sample = parse_bentoml_metrics("", 0.0, "r1")
    assert sample.ok
    assert all(
        value is None
        for value in (
            sample.requests_total,
            sample.in_progress,
            sample.duration_sum_s,
            sample.duration_count,
            sample.batch_size_sum,
            sample.batch_size_count,
        )
    )


def test_garbage_raises_metrics_error_naming_the_replica() -> None:
    with pytest.raises(MetricsError, match="replica r7"):
        parse_bentoml_metrics("this is { not prometheus\n", 0.0, "r7")


@pytest.mark.parametrize(
    ("endpoint", "api"),
    [
        ("/classify", True),
        ("/v1/classify", True),
        ("/readyz", False),
        ("/livez", False),
        ("/healthz", False),
        ("/metrics", False),
        ("/v1/readyz", False),
        ("/docs.json", False),
        ("/schema.json", False),
        ("/", False),
        ("/static_content/index.css", False),
    ],
)
def test_is_api_endpoint(endpoint: str, api: bool) -> None:
    assert is_api_endpoint(endpoint) is api


_ENDPOINTS = st.sampled_from(["/classify", "/echo", "/v1/predict", "/readyz", "/livez", "/metrics", "/healthz"])


@given(
    st.dictionaries(
        st.tuples(_ENDPOINTS, st.sampled_from(["200", "400", "500", "503"])),
        st.integers(min_value=0, max_value=10**6),
        max_size=12,
    ),
    st.dictionaries(_ENDPOINTS, st.integers(min_value=0, max_value=500), max_size=7),
)
def test_sums_equal_the_api_label_sets_of_any_exposition(
    totals: dict[tuple[str, str], int], in_progress: dict[str, int]
) -> None:
    registry = CollectorRegistry()
    counter = Counter(
        "bentoml_service_request", "", ["endpoint", "http_response_code"], registry=registry
    )  # exposed as ..._total
    gauge = Gauge("bentoml_service_request_in_progress", "", ["endpoint"], registry=registry)
    for (endpoint, code), value in totals.items():
        counter.labels(endpoint=endpoint, http_response_code=code).inc(value)
    for endpoint, value in in_progress.items():
        gauge.labels(endpoint=endpoint).set(value)

    sample = parse_bentoml_metrics(generate_latest(registry).decode(), 0.0, "r")

    api_totals = [value for (endpoint, _), value in totals.items() if is_api_endpoint(endpoint)]
    api_in_progress = [value for endpoint, value in in_progress.items() if is_api_endpoint(endpoint)]
    assert sample.requests_total == (float(sum(api_totals)) if api_totals else None)
    assert sample.in_progress == (float(sum(api_in_progress)) if api_in_progress else None)


# --------------------------------------------------------------------------- over HTTP


class _Handler(BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def serving(status: int, body: bytes) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"status": status, "body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_scrape_reads_a_live_page() -> None:
    with serving(200, FIXTURE.read_bytes()) as url:
        sample = scrape_replica(url, "r1", timeout_s=HEALTHY_ANSWER_S, now=lambda: 42.0)
    assert sample.ok, sample.error
    assert sample.t_s == 42.0
    assert sample.requests_total == 10.0
    assert sample.in_progress == 3.0


def test_scrape_of_an_http_error_is_not_ok() -> None:
    with serving(503, b"busy") as url:
        sample = scrape_replica(url, "r1", timeout_s=HEALTHY_ANSWER_S)
    assert not sample.ok
    assert sample.error is not None and "HTTP 503" in sample.error and url in sample.error
    assert sample.requests_total is None


def test_scrape_of_garbage_is_not_ok() -> None:
    with serving(200, b"\xff\xfe not utf-8 {{{") as url:
        sample = scrape_replica(url, "r1", timeout_s=HEALTHY_ANSWER_S)
    assert not sample.ok
    assert sample.error is not None and url in sample.error


def test_scrape_of_a_vanished_replica_is_not_ok_and_does_not_raise() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    sample = scrape_replica(f"http://127.0.0.1:{port}/metrics", "gone", timeout_s=2.0, now=lambda: 7.0)
    assert not sample.ok
    assert (sample.replica, sample.t_s) == ("gone", 7.0)
    assert sample.error is not None and "refused" in sample.error.lower()


def test_scrape_of_a_hung_replica_times_out() -> None:
    with socket.socket() as listener:
        # Accepts connections into the backlog but never answers.
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        sample = scrape_replica(f"http://127.0.0.1:{port}/metrics", "hung", timeout_s=0.5)
    assert not sample.ok
    assert sample.error is not None and "timed out" in sample.error.lower()


def test_scrape_rejects_a_non_http_url() -> None:
    sample = scrape_replica("file:///etc/passwd", "r1", timeout_s=1.0)
    assert not sample.ok
    assert sample.error is not None and "not an http" in sample.error
    assert not math.isnan(sample.t_s)


def test_an_llm_engines_vllm_gauges_are_read_whatever_their_labels() -> None:
    page = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a"} 3\n'
        'vllm:num_requests_running{model_name="b"} 1\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="a"} 7\n'
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        'vllm:gpu_cache_usage_perc{model_name="a"} 0.4\n'
        'vllm:gpu_cache_usage_perc{model_name="b"} 0.7\n'
    )
    sample = parse_bentoml_metrics(FIXTURE.read_text() + page, 0.0, "r1")
    # Requests add up over models; the KV cache's use is the fullest one's (vLLM before 0.9 named it gpu_...).
    assert (sample.engine_running, sample.engine_waiting, sample.engine_kv_cache_usage) == (4.0, 7.0, 0.7)
    assert sample.requests_total == 10.0, "the engine's series do not change BentoML's"
    plain = parse_bentoml_metrics(FIXTURE.read_text(), 0.0, "r1")
    assert (plain.engine_running, plain.engine_waiting, plain.engine_kv_cache_usage) == (None, None, None)
