"""Fixture starting real `bentoml serve` processes on free ports, each with its own BENTOML_HOME (two servers
sharing one corrupt each other's /metrics), and stopping each completely afterwards
(harness.processes.stop_tree)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.processes import free_port, stop_tree

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class ServedBento:
    """One running `bentoml serve` process group and where to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    startup_s: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _is_ready(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_bentoml_serve(
    service_dir: Path,
    service: str,
    home_dir: Path,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> ServedBento:
    """Run `bentoml serve SERVICE` in `service_dir` on a free port and return once /readyz answers 200."""
    home_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {**os.environ, "BENTOML_HOME": str(home_dir), "BENTOML_DO_NOT_TRACK": "True", **(env or {})}
    command = [sys.executable, "-m", "bentoml", "serve", service, "--host", "127.0.0.1", "--port", str(port)]
    started_s = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=service_dir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = ServedBento(process=process, port=port, log_path=log_path, startup_s=0.0)
    deadline_s = started_s + ready_timeout_s
    # Up to 10 s a probe (within the wait): a server that is up but slow to answer on a loaded machine is waited
    # for, not given up on after a fixed 2 s per probe.
    while not _is_ready(served.base_url + "/readyz", max(1.0, min(10.0, deadline_s - time.monotonic()))):
        if process.poll() is not None or time.monotonic() > deadline_s:
            stop_tree(process, grace_s=STOP_TIMEOUT_S)
            reason = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
            raise AssertionError(
                f"bentoml serve {service} in {service_dir} {reason} before /readyz answered 200 "
                f"(waited {time.monotonic() - started_s:.1f}s); log tail:\n{served.log_text()[-LOG_TAIL_CHARS:]}"
            )
        time.sleep(0.1)
    return ServedBento(process=process, port=port, log_path=log_path, startup_s=time.monotonic() - started_s)


@dataclass
class BentoServers:
    """Starts servers under one temporary directory and remembers them so that all get stopped."""

    root_dir: Path
    started: list[ServedBento] = field(default_factory=list)

    def start(self, service_dir: Path, service: str, *, env: Mapping[str, str] | None = None) -> ServedBento:
        index = len(self.started)
        served = start_bentoml_serve(
            service_dir,
            service,
            self.root_dir / f"bentoml-home-{index}",
            self.root_dir / f"serve-{index}.log",
            env=env,
        )
        self.started.append(served)
        return served

    def stop_all(self) -> None:
        for served in self.started:
            stop_tree(served.process, grace_s=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def bentoml_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BentoServers]:
    """Start real `bentoml serve` processes with `.start(dir, "module:Class", env=...)`; all stop after the module."""
    servers = BentoServers(tmp_path_factory.mktemp("bentoml-serve"))
    try:
        yield servers
    finally:
        servers.stop_all()
