"""harness.metrics.promql: the generated PromQL (pinned by a golden file; HARNESS_UPDATE_GOLDEN=1 rewrites it),
parsing of Prometheus API answers, and ServerSamples through an injected fetch (recorded answers)."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from metrics_test_support import HEALTHY_ANSWER_S, pick_free_port
from test_exporter import SERVER_WAIT_S, StartServer, start_server, system_packages

from harness.errors import MetricsError
from harness.metrics.promql import PrometheusReplicaMetrics, parse_vector, query_url, replica_queries, urllib_fetch
from harness.metrics.scrape import parse_bentoml_metrics

__all__ = ["start_server", "system_packages"]  # pytest fixtures shared with test_exporter

GOLDEN = Path(__file__).parent / "golden" / "promql_replica_queries.txt"
PODS = ["model-service-6d4cf56db6-2xk9p", "model-service-6d4cf56db6-q8v4m"]


def vector(*samples: tuple[dict[str, str], float, str]) -> bytes:
    """A Prometheus instant-query answer, as /api/v1/query returns it."""
    return json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": labels, "value": [t_s, value]} for labels, t_s, value in samples],
            },
        }
    ).encode()


def test_generated_promql_matches_the_golden_file() -> None:
    sections = []
    for title, endpoints in (("endpoints {/classify}", {"/classify"}), ("every API route", None)):
        queries = replica_queries("harness", PODS, endpoints=endpoints)
        sections.append(f"# {title}\n" + "".join(f"{field}: {promql}\n" for field, promql in queries.items()))
    sections.append(
        "# other label names, a route with regex characters\n"
        + "".join(
            f"{field}: {promql}\n"
            for field, promql in replica_queries(
                "ml",
                ["p-1"],
                endpoints={"/v1/predict.json"},
                namespace_label="kubernetes_namespace",
                pod_label="kubernetes_pod_name",
            ).items()
        )
    )
    text = "\n".join(sections)
    if os.environ.get("HARNESS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_queries_need_pods() -> None:
    with pytest.raises(MetricsError, match="at least one pod"):
        replica_queries("harness", [])


def test_query_url_encodes_the_expression() -> None:
    url = query_url("http://127.0.0.1:9090/", 'sum by (pod) (x{a="b"})', 1740830400.5)
    parsed = urllib.parse.urlsplit(url)
    assert parsed.path == "/api/v1/query"
    assert urllib.parse.parse_qs(parsed.query) == {"query": ['sum by (pod) (x{a="b"})'], "time": ["1740830400.500"]}


@given(
    st.lists(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True), min_size=1, max_size=5, unique=True)
)
def test_pod_regex_is_an_exact_alternation(pods: list[str]) -> None:
    promql = replica_queries("ns", pods)["in_progress"]
    inside = promql.split('pod=~"', 1)[1].split('"', 1)[0]
    assert sorted(inside.split("|")) == sorted(pods)


def test_parse_vector() -> None:
    body = vector(({"pod": PODS[0]}, 1740830400.123, "42"), ({"pod": PODS[1]}, 1740830400.123, "NaN"))
    parsed = parse_vector(body, "pod")
    assert parsed[PODS[0]] == (1740830400.123, 42.0)
    assert parsed[PODS[1]][1] != parsed[PODS[1]][1]  # NaN stays NaN: Prometheus's own "no value"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"status":"error","errorType":"bad_data","error":"1:15: parse error: unexpected \\"}\\""}', "bad_data"),
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "expected an instant vector"),
    ],
)
def test_parse_vector_errors(body: bytes, match: str) -> None:
    with pytest.raises(MetricsError, match=match):
        parse_vector(body, "pod")


class RecordedPrometheus:
    """An injected fetch answering each query with a recorded answer, keyed by the series it asks for."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["query"][0]
        for series, answer in self.answers.items():
            if f"({series}{{" in query:
                return answer
        return vector()


def test_samples_per_pod_with_missing_series_as_none() -> None:
    fetch = RecordedPrometheus(
        {
            "bentoml_service_request_total": vector(({"pod": PODS[0]}, 100.0, "1234"), ({"pod": PODS[1]}, 100.0, "77")),
            "bentoml_service_request_in_progress": vector(({"pod": PODS[0]}, 100.0, "3")),
        }
    )
    source = PrometheusReplicaMetrics("http://127.0.0.1:9090", fetch, "harness", clock=lambda: 101.0)
    first, second = source.samples(PODS, endpoints={"/classify"})
    assert len(fetch.urls) == 9 and all("time=101.000" in url for url in fetch.urls)
    assert first.ok and first.requests_total == 1234 and first.in_progress == 3 and first.t_s == 100.0
    assert first.duration_sum_s is None and first.batch_size_count is None
    assert second.ok and second.requests_total == 77 and second.in_progress is None


def test_a_pod_without_series_is_not_ok_and_an_error_answer_fails_every_pod() -> None:
    fetch = RecordedPrometheus({"bentoml_service_request_total": vector(({"pod": PODS[0]}, 5.0, "1"))})
    samples = PrometheusReplicaMetrics("http://127.0.0.1:9090", fetch, "harness", clock=lambda: 6.0).samples(PODS)
    assert samples[0].ok and not samples[1].ok
    assert samples[1].error == f"no series for pod {PODS[1]} in Prometheus"

    def failing(url: str) -> bytes:
        return b'{"status":"error","errorType":"unavailable","error":"TSDB not ready"}'

    failed = PrometheusReplicaMetrics("http://127.0.0.1:9090", failing, "harness", clock=lambda: 6.0).samples(PODS)
    assert [s.ok for s in failed] == [False, False]
    assert all(s.error is not None and "TSDB not ready" in s.error for s in failed)
    assert PrometheusReplicaMetrics("http://x", failing, "harness").samples([]) == []


# --------------------------------------------------------------------------- a real Prometheus


class _MetricsPage(http.server.BaseHTTPRequestHandler):
    page = (Path(__file__).parent / "fixtures" / "bentoml_metrics.txt").read_bytes()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_a_real_prometheus_answers_the_generated_queries(
    system_packages: None, start_server: StartServer, tmp_path: Path
) -> None:
    """Debian's Prometheus scrapes a recorded BentoML /metrics page as two pods, labelled as a ServiceMonitor
    with honorLabels would; the generated PromQL must give what parsing the page directly gives."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricsPage) for _ in PODS]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "model-service",
                            "honor_labels": True,
                            "static_configs": [
                                {
                                    "targets": [f"127.0.0.1:{server.server_address[1]}"],
                                    "labels": {"namespace": "harness", "pod": pod},
                                }
                                for server, pod in zip(servers, PODS, strict=True)
                            ],
                        }
                    ],
                }
            )
        )
        port = pick_free_port()
        base = f"http://127.0.0.1:{port}"
        start_server(
            [
                "/usr/bin/prometheus",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            ],
            base + "/-/ready",
            "prometheus",
        )
        source = PrometheusReplicaMetrics(base, urllib_fetch(HEALTHY_ANSWER_S), "harness")
        deadline_s = time.monotonic() + SERVER_WAIT_S
        samples = source.samples(PODS, endpoints={"/double"})
        while not all(sample.ok for sample in samples) and time.monotonic() < deadline_s:
            time.sleep(0.5)
            samples = source.samples(PODS, endpoints={"/double"})
        expected = parse_bentoml_metrics(_MetricsPage.page.decode(), 0.0, "page", endpoints={"/double"})
        for sample, pod in zip(samples, PODS, strict=True):
            assert sample.ok, sample.error
            assert sample.replica == pod
            for field in (
                "requests_total",
                "in_progress",
                "duration_sum_s",
                "duration_count",
                "batch_size_sum",
                "batch_size_count",
            ):
                assert getattr(sample, field) == pytest.approx(getattr(expected, field)), field
        # A syntax error in PromQL comes back as a MetricsError naming Prometheus's complaint.
        with pytest.raises(MetricsError, match="bad_data"):
            parse_vector(urllib_fetch(HEALTHY_ANSWER_S)(query_url(base, "sum by (pod (x)")), "pod")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
