"""Real-process helpers for the metrics tests: free ports, HTTP without proxies, process groups, and the
tiny BentoML service in fixtures/tiny_service."""

from __future__ import annotations

import base64
import contextlib
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.processes import free_port, process_tree
from harness.redact import url_credentials

TINY_SERVICE_DIR = Path(__file__).parent / "fixtures" / "tiny_service"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


pick_free_port = free_port

# How long a request to a healthy local server may take before a test gives up on it: generous, since other
# lanes of `make test` load the machine and how fast a server answers is not what these tests check.
HEALTHY_ANSWER_S = 30.0


def http_get(url: str, timeout_s: float = HEALTHY_ANSWER_S) -> tuple[int, str]:
    """GET `url`; credentials in it (`http://user:password@host/`) go as HTTP basic auth."""
    bare, credentials = url_credentials(url)
    request = urllib.request.Request(bare)
    if credentials is not None:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with _NO_PROXY.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def http_post_json(url: str, body: bytes, timeout_s: float = HEALTHY_ANSWER_S) -> int:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    with _NO_PROXY.open(request, timeout=timeout_s) as response:
        response.read()
        return int(response.status)


def wait_until_http_ok(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `process` exits."""
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before {url} answered")
        try:
            # Up to 10 s an attempt (within the wait): a server that is up but slow to answer on a loaded machine
            # is waited for, not given up on after a fixed 2 s per attempt.
            status, _ = http_get(url, timeout_s=max(1.0, min(10.0, deadline - time.monotonic())))
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except OSError as error:
            last_error = str(error)
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout_s} s (last: {last_error})")


def kill_tree(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> list[psutil.Process]:
    """Signal a process and every descendant, as a crash would take them; BentoML starts its workers in their
    own sessions, so a process group signal would leave them serving. Returns the processes signalled."""
    tree = process_tree(process.pid)
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(sig)
    return tree


@dataclass
class ServedReplica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
