"""Fixtures for the metrics tests: real `bentoml serve` replicas of the tiny service, each with its own
BENTOML_HOME (two servers sharing one corrupt each other's /metrics), killed in a finalizer."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from metrics_test_support import (
    TINY_SERVICE_DIR,
    ServedReplica,
    pick_free_port,
    wait_until_http_ok,
)

from harness.processes import stop_tree


@pytest.fixture
def serve_tiny_service(tmp_path: Path) -> Iterator[Callable[[list[str]], list[ServedReplica]]]:
    """Start real `bentoml serve` replicas of the tiny service (in parallel) and wait until they are ready."""
    started: list[ServedReplica] = []

    def start(names: list[str]) -> list[ServedReplica]:
        batch = []
        for name in names:
            home = tmp_path / f"bentoml-home-{name}"
            home.mkdir()
            port = pick_free_port()
            log = tmp_path / f"serve-{name}.log"
            env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
            command = [
                sys.executable, "-m", "bentoml", "serve", "service:TinyService",
                "--host", "127.0.0.1", "--port", str(port),
            ]  # fmt: skip
            with log.open("wb") as handle:
                process = subprocess.Popen(
                    command, cwd=TINY_SERVICE_DIR, env=env, stdout=handle, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            replica = ServedReplica(name=name, port=port, process=process, log=log)
            started.append(replica)
            batch.append(replica)
        for replica in batch:
            try:
                wait_until_http_ok(replica.base_url + "/readyz", 90.0, replica.process)
            except AssertionError as error:
                raise AssertionError(f"{error}\n{replica.log.read_text()[-3000:]}") from error
        return batch

    yield start
    for replica in started:
        stop_tree(replica.process)
