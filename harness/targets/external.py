"""A service that already runs, given by base URLs: nothing is deployed, started or stopped.

For staging environments, and for testing the harness itself against servers of known behaviour.
"""

from __future__ import annotations

import threading
import time

from harness.config import Scenario
from harness.errors import DeployError
from harness.targets.base import ReplicaInfo, ResourceUse
from harness.targets.readiness import READINESS_PROBE, Readiness, next_probe_in_s, observe
from harness.targets.serving import http_ok


class ExternalTarget:
    """Replicas are the scenario's `target.urls`; readiness is polled, scaling is not possible."""

    name = "external"
    scales_itself = True  # whatever runs the service scales it, not the harness

    def __init__(self, scenario: Scenario, poll_s: float = 0.25) -> None:
        self.urls = [url.rstrip("/") for url in scenario.target.urls]
        self.readiness_path = scenario.service.readiness_path
        self.timeout_s = scenario.target.startup_timeout_s
        # Probing before a URL is first ready; after, the readiness rule's period.
        self.poll_s = poll_s
        self._started_s = time.time()
        self._readiness = {url: Readiness() for url in self.urls}
        self._next_probe_at_s = dict.fromkeys(self.urls, 0.0)
        self._lock = threading.Lock()

    def _check(self) -> None:
        """Probe the URLs whose probe is due, by the rule of harness.targets.readiness."""
        for url in self.urls:
            now_s = time.time()
            if now_s < self._next_probe_at_s[url]:
                continue
            ok = http_ok(url + self.readiness_path, timeout_s=READINESS_PROBE.timeout_s)
            with self._lock:
                state = observe(self._readiness[url], ok, now_s)
                self._readiness[url] = state
                self._next_probe_at_s[url] = now_s + next_probe_in_s(state, self.poll_s)

    def start(self, replicas: int) -> None:
        deadline_s = time.time() + self.timeout_s
        while True:
            self._check()
            if all(state.ready for state in self._readiness.values()):
                return
            if time.time() > deadline_s:
                missing = [url for url, state in self._readiness.items() if not state.ready]
                raise DeployError(
                    f"external target: {', '.join(missing)} did not answer {self.readiness_path} with 2xx "
                    f"within target.startup_timeout_s={self.timeout_s:g} s",
                    hint="check target.urls and that the service is running",
                )
            time.sleep(self.poll_s)

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
                    ready=self._readiness[url].ready,
                    started_at_s=self._started_s,
                    ready_at_s=self._readiness[url].ready_at_s,
                )
                for index, url in enumerate(self.urls)
            ]

    def resource_use(self) -> dict[str, ResourceUse]:
        return {}

    def stop(self) -> None:
        """Nothing to remove: the harness did not deploy these replicas."""
