"""A service that already runs, given by base URLs: nothing is deployed, started or stopped.

For staging environments, and for testing the harness itself against servers of known behaviour.
"""

from __future__ import annotations

import threading
import time

from harness.config import Scenario
from harness.errors import DeployError
from harness.model import ReplicaInfo, ResourceUse
from harness.targets.readiness import READINESS_PROBE, Readiness, next_probe_in_s, observe
from harness.targets.serving import http_probe
from harness.tls import context_for, tls_failure


class ExternalTarget:
    """Replicas are the scenario's `target.urls`; readiness is polled, scaling is not possible."""

    name = "external"
    scales_itself = True  # whatever runs the service scales it, not the harness

    def __init__(self, scenario: Scenario, poll_s: float = 0.25) -> None:
        self.urls = [url.rstrip("/") for url in scenario.target.urls]
        self.readiness_path = scenario.service.readiness_path
        self.timeout_s = scenario.target.startup_timeout_s
        self.tls = scenario.target.tls
        self.ssl_context = context_for(self.urls, self.tls)
        # Why each URL's latest probe failed: a TLS failure ends the start at once, any other is told at the timeout.
        self._failures: dict[str, BaseException] = {}
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
            failure = http_probe(url + self.readiness_path, READINESS_PROBE.timeout_s, self.ssl_context)
            with self._lock:
                if failure is None:
                    self._failures.pop(url, None)
                else:
                    self._failures[url] = failure
                state = observe(self._readiness[url], failure is None, now_s)
                self._readiness[url] = state
                self._next_probe_at_s[url] = now_s + next_probe_in_s(state, self.poll_s)

    def start(self, replicas: int) -> None:
        deadline_s = time.time() + self.timeout_s
        while True:
            self._check()
            if all(state.ready for state in self._readiness.values()):
                return
            tls = {url: found for url, failure in self._failures.items() if (found := tls_failure(failure))}
            if tls:
                # A certificate that does not verify will not verify later: say so now, not at the timeout.
                url, failure = next(iter(tls.items()))
                raise DeployError(
                    f"external target: TLS with {url} failed: {_reason(failure)}", hint=_tls_hint(self.tls.verify)
                )
            if time.time() > deadline_s:
                missing = [url for url, state in self._readiness.items() if not state.ready]
                last = self._failures.get(missing[0])
                hint = "check target.urls and that the service is running"
                if missing[0].startswith("https:"):
                    # TLS 1.3 servers that require a client certificate just close the connection.
                    hint += "; a service that requires a client certificate needs target.tls.client_cert"
                raise DeployError(
                    f"external target: {', '.join(missing)} did not answer {self.readiness_path} with 2xx "
                    f"within target.startup_timeout_s={self.timeout_s:g} s"
                    + ("" if last is None else f" (last: {_reason(last)})"),
                    hint=hint,
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


def _reason(failure: BaseException) -> str:
    return str(getattr(failure, "verify_message", None) or getattr(failure, "reason", None) or failure)


def _tls_hint(verify: bool) -> str:
    if not verify:
        return "check target.tls.client_cert and client_key if the service requires a client certificate"
    return (
        "give the CA that signed the service's certificate as target.tls.ca_bundle (or --tls-ca-bundle), or skip "
        "verification with target.tls.verify: false (--tls-no-verify)"
    )
