"""The external target for real, against bench/synthetic_server.py (not BentoML: no /metrics) on 127.0.0.1: a
scenario without a BentoML project, judged on client-side figures with a note of what was not measured; and https
with a CA made here: verified with the CA bundle, refused in one line without it, unverified only on request, and
a client certificate for a server that requires one (mTLS)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from harness.exit_codes import ExitCode
from harness.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli"]
NOT_MEASURED = "judged on client-side figures; not measured: server-side latency, in-flight requests and batch sizes"
# The synthetic server listens before a run starts and answers /readyz at once on an idle machine; the bound is
# generous because other lanes of `make test` load this one, and a refused TLS handshake must end the run long
# before it (which shows it was not waited out).
STARTUP_TIMEOUT_S = 120
LISTEN_WAIT_S = 60

pytestmark = pytest.mark.integration


class Pki:
    """A CA made for the test, the server's certificate for 127.0.0.1 and a client certificate, as PEM files."""

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        self.ca = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        server = ca.issue_cert("127.0.0.1")
        self.server_cert, self.server_key = directory / "server.pem", directory / "server.key"
        server.private_key_pem.write_to_path(str(self.server_key))
        for index, blob in enumerate(server.cert_chain_pems):
            blob.write_to_path(str(self.server_cert), append=index > 0)
        client = ca.issue_cert("harness-client")
        self.client_cert, self.client_key = directory / "client.pem", directory / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def start_server(*tls: str, scheme: str = "http") -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "bench" / "synthetic_server.py"), "--port", str(port)),
            *("--base-ms", "2", "--jitter-ms", "1", "--max-lifetime-s", "300", *tls),
        ]
    )
    try:
        deadline_s = time.time() + LISTEN_WAIT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None, f"the synthetic server exited with {server.returncode}"
            assert time.time() < deadline_s, f"the synthetic server did not listen within {LISTEN_WAIT_S} s"
            time.sleep(0.2)
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture
def http_server() -> Iterator[str]:
    yield from start_server()


@pytest.fixture
def https_server(pki: Pki) -> Iterator[str]:
    yield from start_server("--certfile", str(pki.server_cert), "--keyfile", str(pki.server_key), scheme="https")


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[str]:
    yield from start_server(
        *("--certfile", str(pki.server_cert), "--keyfile", str(pki.server_key), "--client-ca", str(pki.ca)),
        scheme="https",
    )


def scenario(tmp_path: Path, url: str, **extra: Any) -> Path:
    """An external scenario with no `service:` section at all: nothing to build or serve."""
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"x": [1, 2]}\n{"x": [3, 4]}\n')
    data: dict[str, Any] = {
        "name": "external",
        "target": {"kind": "external", "urls": [url], "startup_timeout_s": STARTUP_TIMEOUT_S},
        "stages": [{"name": "steady", "duration_s": 6, "arrival_rate_rps": 20}],
        "payload": {"source": "jsonl", "file": str(bodies)},
        "objectives": [{"metric": "error_rate", "max": 0.1}, {"metric": "latency_p50_ms", "max": 2000}],
        "output": {"dir": str(tmp_path / "reports")},
        **extra,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, "run", str(path), *options],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def verdict(tmp_path: Path) -> dict[str, Any]:
    (run_dir,) = (tmp_path / "reports").iterdir()
    return dict(json.loads((run_dir / "verdict.json").read_text()))


def steady(found: dict[str, Any]) -> dict[str, Any]:
    return dict(next(stage for stage in found["stages"] if stage["name"] == "steady"))


def test_an_external_service_without_a_project_or_metrics_is_judged_on_client_figures(
    tmp_path: Path, http_server: str
) -> None:
    path = scenario(tmp_path, http_server)
    assert subprocess.run([*HARNESS, "validate", str(path)], capture_output=True, check=False).returncode == 0
    result = run(path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = verdict(tmp_path)
    assert steady(found)["requests"] > 50 and steady(found)["failures"] == 0
    assert {o["status"] for o in found["objectives"]} == {"PASS"}
    notes = [w for w in found["warnings"] if w.startswith("judged on client-side figures")]
    assert notes == [f"{NOT_MEASURED} (no answer from /metrics); replica CPU and memory"], found["warnings"]


def test_https_is_verified_with_the_ca_bundle(tmp_path: Path, pki: Pki, https_server: str) -> None:
    result = run(scenario(tmp_path, https_server), "--tls-ca-bundle", str(pki.ca))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = verdict(tmp_path)
    assert steady(found)["requests"] > 50 and steady(found)["failures"] == 0
    assert not any("TLS" in warning for warning in found["warnings"])
    # /metrics is read over the same verified TLS: the synthetic server answers it 404, not a certificate error.
    (run_dir,) = (tmp_path / "reports").iterdir()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    scrape_errors = {e["detail"]["error"] for e in events if e["kind"] == "scrape_failed"}
    assert scrape_errors and all("HTTP 404" in error for error in scrape_errors), scrape_errors


def test_a_run_without_a_scenario_file_from_flags_and_environment_variables(tmp_path: Path, http_server: str) -> None:
    # As k6 starts: a URL, a rate, a duration, an objective; the output directory from HARNESS_OUT.
    result = subprocess.run(
        [
            *(*HARNESS, "run", "--url", f"{http_server}/predict", "--rate", "20", "--duration", "6s"),
            *("--objective", "error_rate<=0.1", "--body", '{"x": [1, 2]}', "--json"),
        ],
        cwd=tmp_path,
        env={**os.environ, "HARNESS_OUT": str(tmp_path / "reports"), "HARNESS_FAIL_ON": "warn"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["type"] == "result" and last["status"] == "PASS" and last["exit_code"] == 0
    found = verdict(tmp_path)
    load = next(stage for stage in found["stages"] if stage["name"] == "load")
    assert load["requests"] > 50 and load["failures"] == 0
    assert [(o["objective"], o["status"]) for o in found["objectives"]] == [("error_rate <= 0.1", "PASS")]


def test_https_without_the_ca_fails_in_one_line_naming_the_tls_problem(tmp_path: Path, https_server: str) -> None:
    started_s = time.time()
    result = run(scenario(tmp_path, https_server))
    assert result.returncode == ExitCode.INFRASTRUCTURE, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    print(errors)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: external target: TLS with {https_server} failed: "), errors
    assert "certificate" in errors[0] and "target.tls.ca_bundle" in errors[0], errors
    assert time.time() - started_s < STARTUP_TIMEOUT_S, "said at once, not after target.startup_timeout_s"


def test_https_unverified_only_on_request_and_the_verdict_says_so(tmp_path: Path, https_server: str) -> None:
    result = run(scenario(tmp_path, https_server), "--tls-no-verify")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = verdict(tmp_path)
    assert steady(found)["requests"] > 50 and steady(found)["failures"] == 0
    assert any(w.startswith("TLS verification was off (target.tls.verify: false)") for w in found["warnings"])


def test_a_client_certificate_reaches_a_server_that_requires_one(tmp_path: Path, pki: Pki, mtls_server: str) -> None:
    tls = {"ca_bundle": str(pki.ca), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    bodies = tmp_path / "bodies.jsonl"
    path = scenario(tmp_path, mtls_server)
    data = yaml.safe_load(path.read_text())
    data["target"]["tls"] = tls
    # The answers alone are sent over the same TLS, by the harness itself.
    data.pop("payload")
    data["requests"] = [
        {"name": "predict", "path": "/predict", "body_file": str(bodies), "check": {"same_as_alone": True}}
    ]
    data["objectives"].append({"metric": "mismatch_rate", "max": 0.1})
    path.write_text(yaml.safe_dump(data))
    result = run(path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "answers alone: 'predict' sends 2 of 2 sampled bodies" in result.stdout
    found = verdict(tmp_path)
    assert steady(found)["failures"] == 0 and steady(found)["checked"] > 50 and steady(found)["mismatches"] == 0
    # Without it the server closes the connection (TLS 1.3 sends its alert after the handshake): one line at the
    # startup timeout, naming the client certificate.
    without = dict(data, target={**data["target"], "startup_timeout_s": 3, "tls": {"ca_bundle": str(pki.ca)}})
    path.write_text(yaml.safe_dump(without))
    refused = run(path)
    assert refused.returncode == ExitCode.INFRASTRUCTURE, refused.stdout[-2000:] + refused.stderr[-2000:]
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: external target: {mtls_server} did not answer /readyz"), line
    assert "target.tls.client_cert" in line, line
