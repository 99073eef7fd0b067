"""The harness's own metrics: the live exporter scraped over HTTP, by a real Prometheus server, and verdicts
pushed to a real Pushgateway."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from metrics_test_support import http_get, pick_free_port, wait_until_http_ok
from prometheus_client.parser import text_string_to_metric_families

from harness.errors import MetricsError
from harness.metrics.exporter import HarnessExporter, push_verdict
from harness.model import ObjectiveResult, PercentileEstimate, StageResult, Status, Verdict
from harness.processes import stop_tree

ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = http_get(url)
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_serves_the_figures_set_and_stops_cleanly() -> None:
    exporter = HarnessExporter(run_id="run-1", scenario="digits-default", port=0)
    port = exporter.start()
    thread = exporter._thread
    try:
        assert port > 0 and exporter.url == f"http://127.0.0.1:{port}/metrics"
        values = scrape(exporter.url)
        # Nothing measured yet: NaN, Prometheus's "no value", not 0.
        assert math.isnan(values[key("harness_achieved_rps")])
        assert math.isnan(values[key("harness_replicas", state="ready")])
        assert values[key("harness_errors_total")] == 0.0

        exporter.set_offered_rps(60.0)
        exporter.set_achieved_rps(57.5)
        exporter.set_latency_s(0.012, 0.080, None)
        exporter.set_replicas(desired=3, ready=2)
        exporter.add_errors(4)
        exporter.add_errors(3)
        values = scrape(exporter.url)
    finally:
        exporter.stop()

    assert values[key("harness_offered_rps")] == 60.0
    assert values[key("harness_achieved_rps")] == 57.5
    assert values[key("harness_request_latency_seconds", quantile="0.5")] == 0.012
    assert values[key("harness_request_latency_seconds", quantile="0.95")] == 0.080
    assert math.isnan(values[key("harness_request_latency_seconds", quantile="0.99")])
    assert values[key("harness_replicas", state="desired")] == 3.0
    assert values[key("harness_replicas", state="ready")] == 2.0
    assert values[key("harness_errors_total")] == 7.0
    assert values[key("harness_run_info", run_id="run-1", scenario="digits-default")] == 1.0

    assert thread is not None and not thread.is_alive()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    exporter.stop()  # idempotent


def test_two_exporters_keep_their_own_figures() -> None:
    with HarnessExporter("a", "s") as first, HarnessExporter("b", "s") as second:
        first.set_achieved_rps(1.0)
        second.set_achieved_rps(2.0)
        assert scrape(first.url)[key("harness_achieved_rps")] == 1.0
        assert scrape(second.url)[key("harness_achieved_rps")] == 2.0


def test_a_busy_port_is_a_metrics_error_naming_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(MetricsError, match=f"exporter_port {port}"):
            HarnessExporter("r", "s", port=port).start()


def test_errors_only_grow() -> None:
    with pytest.raises(MetricsError, match="negative"):
        HarnessExporter("r", "s").add_errors(-1)


# --------------------------------------------------------------------------- real Prometheus and Pushgateway


@pytest.fixture(scope="module")
def system_packages() -> None:
    """Debian's prometheus and pushgateway, installed by the same script `make test` uses."""
    subprocess.run(
        [str(ROOT / "scripts" / "install-system-packages.sh"), "prometheus", "prometheus-pushgateway"],
        check=True,
        timeout=600,
    )


StartServer = Callable[[list[str], str, str], None]
# Waits on a real Prometheus or Pushgateway: generous, since other lanes of `make test` load the machine and
# how fast these servers start or first scrape is not what the tests check.
SERVER_WAIT_S = 90.0


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """start(command, ready_url, name): run a server binary until `ready_url` answers; stopped in a finalizer."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], ready_url: str, name: str) -> None:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        try:
            wait_until_http_ok(ready_url, SERVER_WAIT_S, process)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log.read_text()[-3000:]}") from error

    yield start
    for process in started:
        stop_tree(process)


@pytest.mark.integration
def test_a_real_prometheus_scrapes_the_exporter(
    system_packages: None, start_server: StartServer, tmp_path: Path
) -> None:
    with HarnessExporter("run-prom", "digits-default") as exporter:
        exporter.set_achieved_rps(123.25)
        exporter.set_replicas(desired=4, ready=3)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "harness", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
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

        def query(promql: str) -> list[dict[str, object]]:
            status, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
            assert status == 200, body
            result: list[dict[str, object]] = json.loads(body)["data"]["result"]
            return result

        deadline = time.monotonic() + SERVER_WAIT_S
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline and not result:
            result = query("harness_achieved_rps")
            time.sleep(0.5)
        assert result, f"Prometheus did not return harness_achieved_rps within {SERVER_WAIT_S:g} s"
        sample = result[0]
        assert isinstance(sample["value"], list) and float(sample["value"][1]) == 123.25
        assert isinstance(sample["metric"], dict) and sample["metric"]["job"] == "harness"
        ready = query('harness_replicas{state="ready"}')
        assert float(ready[0]["value"][1]) == 3.0  # type: ignore[index]
        info = query("harness_run_info")
        assert info[0]["metric"]["run_id"] == "run-prom"  # type: ignore[index]


def _verdict() -> Verdict:
    def stage(name: str, rps: float, p95_s: float | None, p99_s: float | None, error_rate: float | None) -> StageResult:
        return StageResult(
            name=name,
            judged=True,
            start_s=0.0,
            end_s=30.0,
            duration_s=30.0,
            offered_users=None,
            offered_rps=60.0,
            achieved_rps=rps,
            requests=int(rps * 30),
            failures=0,
            error_rate=error_rate,
            errors={},
            latency={
                "p95": PercentileEstimate(95, p95_s, None, None, 1800, 0.95),
                "p99": PercentileEstimate(99, p99_s, None, None, 1800, 0.95),
            },
            dropped=0,
            replicas_min=2,
            replicas_max=2,
            loadgen_cpu_max_cores=0.3,
        )

    objective = ObjectiveResult(
        objective="latency_p95_ms <= 250",
        metric="latency_p95_ms",
        stage="users-8",
        status=Status.FAIL,
        threshold=250.0,
        bound="max",
        measured=310.0,
        ci_low=290.0,
        ci_high=330.0,
        reason="p95 above 250 ms",
    )
    return Verdict(
        status=Status.FAIL,
        exit_code=1,
        objectives=[objective],
        stages=[stage("users-4", 41.5, 0.120, 0.2, 0.0), stage("users-8", 58.25, 0.310, None, 0.002)],
    )


@pytest.mark.integration
def test_push_verdict_to_a_real_pushgateway(system_packages: None, start_server: StartServer) -> None:
    port = pick_free_port()
    base = f"http://127.0.0.1:{port}"
    start_server(
        ["/usr/bin/prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"], base + "/-/ready", "pushgateway"
    )
    push_verdict(base, "harness", "run-42", _verdict(), scenario="digits-default")

    values = scrape(base + "/metrics")
    # The Pushgateway adds an empty instance label to pushed series.
    group = {"job": "harness", "run": "run-42", "scenario": "digits-default", "instance": ""}
    assert values[key("harness_run_status", **group)] == 2.0
    assert values[key("harness_run_exit_code", **group)] == 1.0
    assert values[key("harness_stage_achieved_rps", stage="users-4", **group)] == 41.5
    assert values[key("harness_stage_achieved_rps", stage="users-8", **group)] == 58.25
    assert values[key("harness_stage_latency_seconds", stage="users-4", quantile="0.95", **group)] == 0.120
    assert values[key("harness_stage_latency_seconds", stage="users-4", quantile="0.99", **group)] == 0.2
    assert values[key("harness_stage_latency_seconds", stage="users-8", quantile="0.95", **group)] == 0.310
    # Not measured: left out rather than pushed as a number.
    assert key("harness_stage_latency_seconds", stage="users-8", quantile="0.99", **group) not in values
    assert values[key("harness_stage_error_ratio", stage="users-8", **group)] == 0.002
    assert values[key("harness_objective_status", objective="latency_p95_ms <= 250", stage="users-8", **group)] == 2.0


def test_push_to_an_unreachable_gateway_names_the_url() -> None:
    url = f"http://127.0.0.1:{pick_free_port()}"
    with pytest.raises(MetricsError, match=url.replace(".", r"\.")):
        push_verdict(url, "harness", "run-1", _verdict(), scenario="s", timeout_s=2.0)


@pytest.mark.integration
def test_credentials_in_the_pushgateway_url_authenticate_and_are_never_shown(
    system_packages: None, start_server: StartServer, tmp_path: Path
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Debian's libxcrypt hashes bcrypt, the Pushgateway's basic-auth format

        hashed = crypt.crypt("s3cret-pass", crypt.mksalt(crypt.METHOD_BLOWFISH))
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  pusher: '{hashed}'\n")
    port = pick_free_port()
    start_server(
        [
            "/usr/bin/prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={config}",
        ],
        f"http://pusher:s3cret-pass@127.0.0.1:{port}/-/ready",
        "pushgateway with basic auth",
    )
    push_verdict(f"http://pusher:s3cret-pass@127.0.0.1:{port}", "harness", "run-7", _verdict(), scenario="s")
    with pytest.raises(MetricsError) as refused:
        push_verdict(f"http://pusher:wrong-pass@127.0.0.1:{port}", "harness", "run-8", _verdict(), scenario="s")
    assert "401" in str(refused.value) and "wrong-pass" not in str(refused.value)
    assert f"http://pusher:<redacted>@127.0.0.1:{port}" in str(refused.value)
