"""Load from inside the cluster: charts/loadgen (a Locust master Job and N indexed worker Jobs running the
harness locustfile) against the model-service Service, so requests take the cluster's own path (kube-proxy)
instead of a tunnel from the harness's machine.

Each worker prints its per-interval records (HDR histograms) on stdout as it writes them; one thread per
worker pod follows its log through the API server and appends the records to a local intervals file, where
the same IntervalTail as for a local Locust ingests them while the run goes on. The verdict merges the
workers' histograms as it merges local processes'. Locust's own totals come from the master's log.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.errors import ConfigError, HarnessError, LoadError
from harness.load.plan import LoadPlan
from harness.load.runner import IntervalTail
from harness.load.shape import WORKERS_START_WAIT_S
from harness.model import ClientInterval, Event, RunWarning
from harness.targets.helm import LOADGEN_CHART, render_chart
from harness.targets.helm_values import run_id_label, split_image
from harness.targets.kubernetes_api import KubernetesApi

# What the harness locustfile prints before each record in a pod (harness/load/locustfile.py).
INTERVAL_LOG_PREFIX = "harness-interval "
_RESULT_START = "=== harness-loadgen-result "
_RESULT_END = "=== harness-loadgen-end ==="
_CONTAINER = "locust"
# Where charts/loadgen mounts the plan's ConfigMap and the workers' results in a pod.
POD_PLAN_DIR = Path("/etc/harness")
POD_INTERVALS_DIR = Path("/results/intervals")
# A ConfigMap holds at most 1 MiB; leave room for the load plan beside the payload file.
_MAX_PAYLOAD_BYTES = 900 * 1024


@runtime_checkable
class LoadgenCluster(Protocol):
    """What the in-cluster load needs of the Kubernetes target it runs beside (harness.targets.kubernetes)."""

    api: KubernetesApi
    namespace: str
    run_id: str
    kube_version: str | None
    on_event: Callable[[Event], None]

    @property
    def release(self) -> str: ...

    @property
    def run_selector(self) -> str: ...

    @property
    def pull_policy(self) -> str: ...

    def service_url(self) -> str: ...

    def load_image(self, image: str) -> None: ...

    def apply_run_object(self, manifest: dict[str, Any]) -> dict[str, Any]: ...


def pod_plan(plan: LoadPlan, workers: int) -> LoadPlan:
    """The plan as a worker pod runs it: the chart's paths, one process per worker pod."""
    payload = plan.payload
    if payload.source == "jsonl":
        payload = dataclasses.replace(payload, file=str(POD_PLAN_DIR / "payload.jsonl"))
    return dataclasses.replace(
        plan,
        processes=workers,
        endpoints_file=str(POD_PLAN_DIR / "endpoints.json"),
        intervals_dir=str(POD_INTERVALS_DIR),
        payload=payload,
    )


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


def loadgen_values(
    plan: LoadPlan,
    image: str,
    run_id: str,
    *,
    service_url: str,
    workers: int | None = None,
) -> dict[str, Any]:
    """Values for charts/loadgen: the load plan, as its worker pods run it, on `workers` pods."""
    worker_count = workers or plan.processes
    payload_text = ""
    if plan.payload.source == "jsonl":
        assert plan.payload.file is not None
        file = Path(plan.payload.file)
        try:
            payload_text = file.read_text()
        except OSError as error:
            raise ConfigError(f"payload.file '{file}': cannot read ({error.strerror})") from error
        if len(payload_text.encode()) > _MAX_PAYLOAD_BYTES:
            raise ConfigError(
                f"payload.file '{file}' is larger than {_MAX_PAYLOAD_BYTES} bytes, too large for the loadgen chart's "
                "ConfigMap",
                hint="use fewer bodies for in-cluster load, or bake them into the load-generator image",
            )
    return {
        "runId": run_id_label(run_id),
        "image": {**split_image(image), "pullPolicy": "IfNotPresent"},
        "target": {"host": service_url},
        "workers": worker_count,
        "runTimeSeconds": math.ceil(plan.planned_duration_s + WORKERS_START_WAIT_S) + 5,
        "stopTimeoutSeconds": int(plan.request_timeout_s) + 1,
        "users": 0,
        "harnessPlan": pod_plan(plan, worker_count).to_json(),
        "payloadJsonl": payload_text,
    }


class InClusterLoad:
    """A load plan run by `workers` Locust workers in the target's namespace (charts/loadgen)."""

    def __init__(
        self,
        target: LoadgenCluster,
        plan: LoadPlan,
        work_dir: Path,
        on_record: Callable[[ClientInterval], None],
        *,
        image: str,
        json_file: Path,
        workers: int,
        poll_s: float = 1.0,
    ) -> None:
        self.target = target
        self.plan = plan
        self.work_dir = work_dir
        self.image = image
        self.json_file = json_file
        self.workers = workers
        self.poll_s = poll_s
        self.intervals_dir = work_dir / "intervals"
        self.tail = IntervalTail(self.intervals_dir, on_record)
        self.planned_duration_s = plan.planned_duration_s
        self.release = f"{target.release}-loadgen"
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
        # The image reaches the node first (side-loaded, or already there).
        self.target.load_image(self.image)
        values = loadgen_values(
            self.plan,
            self.image,
            self.target.run_id,
            service_url=self.target.service_url(),
            workers=self.workers,
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
        deadline_s = self.started_s + self.planned_duration_s + self.plan.request_timeout_s + 180
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
