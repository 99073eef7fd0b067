"""The LLM example built offline into a container image (`bentoml build`, then the harness's containerize on the
local base image) and served from it: the model fits in the container and streams a completion."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.build import LOCAL_BASE_IMAGE, build_service_image
from harness.config import ServiceConfig
from harness.load.streaming import read_stream
from harness.processes import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LLM = ServiceConfig(path=ROOT / "examples" / "llm", service="service:TinyLLM", endpoint="/v1/completions")
MACHINE_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_BUNDLE = MACHINE_CA_BUNDLE if MACHINE_CA_BUNDLE.is_file() else None
READY_TIMEOUT_S = 180.0


def _ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def test_the_image_serves_a_streamed_completion(tmp_path: Path) -> None:
    built = build_service_image(LLM, LOCAL_BASE_IMAGE, CA_BUNDLE, bentoml_home=tmp_path / "bentoml_home")
    assert built.tag.startswith("tinyllm:")
    name, port = f"harness-test-llm-{uuid.uuid4().hex[:8]}", free_port()
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000", built.tag],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        deadline_s = time.monotonic() + READY_TIMEOUT_S
        while not _ready(port):
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=30)
            assert time.monotonic() < deadline_s, f"not ready in {READY_TIMEOUT_S} s: {logs.stdout[-2000:]}"
            time.sleep(1.0)
        body = {"prompt": "def ", "max_tokens": 64, "ignore_eos": True, "stream": True}
        body["stream_options"] = {"include_usage": True}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        sent_s = time.monotonic()
        connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        reads = []
        while chunk := response.read1(65536):
            reads.append((time.monotonic(), chunk))
        figures = read_stream(sent_s, reads, time.monotonic())
        assert figures.done and figures.output_tokens == 64 and figures.input_tokens == 4
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
