"""A service that already runs, given by base URLs: nothing is deployed, started or stopped.

For staging environments, and for testing the harness itself against servers of known behaviour.
"""

from __future__ import annotations

import threading
import time

from harness.config import Scenario
from harness.errors import DeployError
from harness.targets.base import ReplicaInfo, ResourceUse
from harness.targets.local import http_ok


class ExternalTarget:
    """Replicas are the scenario's `target.urls`; readiness is polled, scaling is not possible."""

    name = "external"
    scales_itself = True  # whatever runs the service scales it, not the harness

    def __init__(self, scenario: Scenario, poll_s: float = 1.0) -> None:
        self.urls = [url.rstrip("/") for url in scenario.target.urls]
        self.readiness_path = scenario.service.readiness_path
        self.timeout_s = scenario.target.startup_timeout_s
        self.poll_s = poll_s
        self._started_s = time.time()
        self._ready: dict[str, float | None] = {url: None for url in self.urls}
        self._lock = threading.Lock()
        self._last_check_s = 0.0

    def _check(self) -> None:
        now_s = time.time()
        if now_s - self._last_check_s < self.poll_s:
            return
        self._last_check_s = now_s
        for url in self.urls:
            ok = http_ok(url + self.readiness_path)
            with self._lock:
                if ok and self._ready[url] is None:
                    self._ready[url] = now_s
                elif not ok:
                    self._ready[url] = None

    def start(self, replicas: int) -> None:
        deadline_s = time.time() + self.timeout_s
        while True:
            self._last_check_s = 0.0
            self._check()
            if all(ready is not None for ready in self._ready.values()):
                return
            if time.time() > deadline_s:
                missing = [url for url, ready in self._ready.items() if ready is None]
                raise DeployError(
                    f"external target: {', '.join(missing)} did not answer {self.readiness_path} with 2xx "
                    f"within target.startup_timeout_s={self.timeout_s:g} s",
                    hint="check target.urls and that the service is running",
                )
            time.sleep(0.25)

    def scale(self, replicas: int) -> None:
        raise DeployError("the external target cannot scale replicas (they are not managed by the harness)")

    def desired_replicas(self) -> int:
        return len(self.urls)

    def replicas(self) -> list[ReplicaInfo]:
        self._check()
        with self._lock:
            return [
                ReplicaInfo(
                    id=f"external-{index + 1}",
                    base_url=url,
                    ready=self._ready[url] is not None,
                    started_at_s=self._started_s,
                    ready_at_s=self._ready[url],
                )
                for index, url in enumerate(self.urls)
            ]

    def resource_use(self) -> dict[str, ResourceUse]:
        return {}

    def stop(self) -> None:
        """Nothing to remove: the harness did not deploy these replicas."""
