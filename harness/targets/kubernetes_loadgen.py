"""Load from inside the cluster: charts/loadgen (a Locust master Job and N indexed worker Jobs running the
harness locustfile) against the model-service Service, so requests take the cluster's own path (kube-proxy)
instead of a tunnel from the harness's machine.

Each worker prints its per-interval records (HDR histograms) on stdout as it writes them; one thread per
worker pod follows its log through the API server and appends the records to a local intervals file, where
the same IntervalTail as for a local Locust ingests them while the run goes on. The verdict merges the
workers' histograms as it merges local processes'. Locust's own totals come from the master's log.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.config import Scenario
from harness.errors import HarnessError, LoadError
from harness.load.runner import IntervalTail
from harness.load.shape import planned_duration_s
from harness.model import ClientInterval, RunWarning
from harness.targets.helm import LOADGEN_CHART, render_chart
from harness.targets.helm_values import loadgen_values

# What the harness locustfile prints before each record in a pod (harness/load/locustfile.py).
INTERVAL_LOG_PREFIX = "harness-interval "
_RESULT_START = "=== harness-loadgen-result "
_RESULT_END = "=== harness-loadgen-end ==="
_CONTAINER = "locust"


def job_finished(job: dict[str, Any] | None) -> bool | None:
    """True when a Job completed, False when it failed, None while it runs."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return True
        if condition.get("status") == "True" and condition.get("type") in ("Failed", "FailureTarget"):
            return False
    return None


def marked_results(log: str) -> dict[str, str]:
    """The files the loadgen chart's master prints between result markers, by name."""
    results: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in log.splitlines():
        if line.startswith(_RESULT_START) and line.endswith("==="):
            name, lines = line[len(_RESULT_START) : -3].strip(), []
        elif line.endswith(_RESULT_END) and name is not None:
            # A file without a final newline runs into the marker.
            last = line[: -len(_RESULT_END)]
            results[name] = "\n".join(lines + ([last] if last else []))
            name = None
        elif name is not None:
            lines.append(line)
    return results


class InClusterLoad:
    """The scenario's load plan run by `workers` Locust workers in the target's namespace (charts/loadgen)."""

    def __init__(
        self,
        target: Any,
        scenario: Scenario,
        work_dir: Path,
        on_record: Callable[[ClientInterval], None],
        *,
        image: str,
        json_file: Path,
        workers: int,
        poll_s: float = 1.0,
    ) -> None:
        self.target = target
        self.scenario = scenario
        self.work_dir = work_dir
        self.image = image
        self.json_file = json_file
        self.workers = workers
        self.poll_s = poll_s
        self.intervals_dir = work_dir / "intervals"
        self.tail = IntervalTail(self.intervals_dir, on_record)
        self.planned_duration_s = planned_duration_s(scenario)
        self.release = f"{target.config.release}-loadgen"
        self._master_job = f"{self.release}-master"
        self._stop = threading.Event()
        self._followers: dict[str, threading.Thread] = {}
        self._watcher: threading.Thread | None = None
        self._master_log = ""
        self.started_s: float | None = None

    @property
    def _worker_selector(self) -> str:
        return f"{self.target.run_selector},app.kubernetes.io/component=worker"

    def start(self) -> None:
        """Render charts/loadgen for this run and apply it; workers start sending once all have joined."""
        self.intervals_dir.mkdir(parents=True, exist_ok=True)
        values = loadgen_values(
            self.scenario, self.image, self.target.run_id, service_url=self.target.service_url(), workers=self.workers
        )
        values["image"]["pullPolicy"] = self.target.pull_policy
        manifests = render_chart(
            LOADGEN_CHART,
            values,
            release=self.release,
            namespace=self.target.namespace,
            kube_version=self.target.kube_version,
        )
        (self.work_dir / "loadgen-manifests.yaml").write_text(json.dumps(manifests, indent=1))
        for manifest in manifests:
            self.target.apply_run_object(manifest)
        self.started_s = time.time()
        self._watcher = threading.Thread(target=self._follow_workers, name="loadgen-workers", daemon=True)
        self._watcher.start()

    def _follow_workers(self) -> None:
        """Start a log follower for every worker pod as it appears (each one exactly once)."""
        while not self._stop.is_set():
            try:
                listed = self.target.api.list("v1", "Pod", self.target.namespace, self._worker_selector) or {}
            except HarnessError:
                listed = {}
            for pod in listed.get("items") or []:
                name = pod["metadata"]["name"]
                phase = (pod.get("status") or {}).get("phase")
                if name not in self._followers and phase in ("Running", "Succeeded", "Failed"):
                    thread = threading.Thread(target=self._follow, args=(name,), name=f"log-{name}", daemon=True)
                    self._followers[name] = thread
                    thread.start()
            self._stop.wait(self.poll_s)

    def _follow(self, pod: str) -> None:
        out = self.intervals_dir / f"intervals-{pod}.jsonl"
        try:
            with out.open("a", encoding="utf-8") as handle:
                for line in self.target.api.follow_pod_log(self.target.namespace, pod, _CONTAINER):
                    if line.startswith(INTERVAL_LOG_PREFIX):
                        handle.write(line[len(INTERVAL_LOG_PREFIX) :] + "\n")
                        handle.flush()
                    if self._stop.is_set():
                        return
        except HarnessError as error:
            self.target.on_event(RunWarning("loadgen", f"log of worker {pod}: {error}"))

    def _master_result(self) -> bool | None:
        job = self.target.api.get("batch/v1", "Job", self.target.namespace, self._master_job)
        return job_finished(job)

    def wait(self, on_poll: Callable[[], None] | None = None, poll_s: float = 0.5) -> int:
        """Block until the master Job ends, ingesting the workers' records as they arrive."""
        assert self.started_s is not None
        deadline_s = self.started_s + self.planned_duration_s + self.scenario.load.request_timeout_s + 180
        finished: bool | None = None
        last_check_s = 0.0
        while finished is None:
            self.tail.poll()
            if on_poll is not None:
                on_poll()
            if time.time() - last_check_s >= self.poll_s:
                last_check_s = time.time()
                finished = self._master_result()
            if time.time() > deadline_s:
                self.stop()
                raise LoadError(
                    f"the in-cluster load generator did not finish within {deadline_s - self.started_s:.0f} s: "
                    f"{self.log_tail()}",
                    hint=f"kubectl -n {self.target.namespace} logs job/{self._master_job}",
                )
            time.sleep(poll_s)
        for thread in list(self._followers.values()):
            thread.join(timeout=30)
        self._stop.set()
        self.tail.poll()
        self._master_log = self._read_master_log()
        (self.work_dir / "loadgen-master.log").write_text(self._master_log)
        results = marked_results(self._master_log)
        if "locust.json" in results:
            self.json_file.write_text(results["locust.json"])
        if self.tail.test_start_s is None:
            raise LoadError(
                f"the in-cluster load generator sent nothing (master {'completed' if finished else 'failed'}): "
                f"{self.log_tail()}",
                hint=f"kubectl -n {self.target.namespace} logs job/{self._master_job}",
            )
        return 0 if finished else 1

    def _read_master_log(self) -> str:
        listed = self.target.api.list(
            "v1", "Pod", self.target.namespace, f"{self.target.run_selector},app.kubernetes.io/component=master"
        )
        pods = (listed or {}).get("items") or []
        if not pods:
            return ""
        return str(
            self.target.api.pod_log(
                self.target.namespace, pods[0]["metadata"]["name"], _CONTAINER, tail_lines=100000, previous=False
            )
        )

    def log_tail(self, lines: int = 15) -> str:
        text = self._master_log or self._read_master_log()
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith(INTERVAL_LOG_PREFIX)]
        return " | ".join(kept[-lines:]) or "(empty log)"

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop following; the Jobs go with the run's other objects when the target stops (idempotent)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=grace_s)
