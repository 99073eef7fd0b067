"""Load from inside the cluster: charts/loadgen (a Locust master Job and N indexed worker Jobs running the
harness locustfile) against the model-service Service, so requests take the cluster's own path (kube-proxy)
instead of a tunnel from the harness's machine.

The plan and every file it reads reach the pods as ConfigMaps (harness.load.pod_files); the environment variables
that request headers name, as a Secret created here and never written to the run directory. Each worker prints
its per-interval records (HDR histograms) on stdout as it writes them; one thread per worker pod follows its log
through the API server, again from its start when the stream breaks (skipping the records already read), and
appends the records to a local intervals file, where the same IntervalTail as for a local Locust ingests them
while the run goes on. Until the load starts, the pods' status is watched: a generator that cannot start
(image pull, unschedulable, crash) ends the run with its reason. The verdict merges the workers' histograms as
it merges local processes'. Locust's own totals come from the master's log.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from harness.config import LoadgenPodsConfig, header_variables
from harness.errors import HarnessError, LoadError
from harness.load.plan import LoadPlan
from harness.load.pod_files import (
    ENDPOINTS_FILE,
    PLAN_FILE,
    configmap_parts,
    pod_plan,
    read_plan_files,
)
from harness.load.runner import IntervalTail
from harness.load.shape import WORKERS_START_WAIT_S
from harness.model import ClientInterval, Event, LoadgenLogResumed, RunWarning
from harness.targets.helm import LOADGEN_CHART, render_chart
from harness.targets.helm_values import pull_secret_refs, resources_values, run_id_label, split_image
from harness.targets.kubernetes_api import KubernetesApi
from harness.targets.kubernetes_status import LogTail, Problem, container_statuses, diagnose_pods

# What the harness locustfile prints before each record in a pod (harness/load/locustfile.py).
INTERVAL_LOG_PREFIX = "harness-interval "
_RESULT_START = "=== harness-loadgen-result "
_RESULT_END = "=== harness-loadgen-end ==="
_CONTAINER = "locust"
# A generator pod that cannot start for a reason that may pass (unschedulable: a node may be added; a quota
# refusal: another run may end) is given this long; one that cannot pull its image or crashed, none.
START_GRACE_S = 45.0
_LOG_TAIL_LINES = 3
# File parts up to this size stay readable in the run's copy of the manifests (the load plan, usually).
_KEPT_PART_BYTES = 64 * 1024


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


def env_names(plan: LoadPlan) -> list[str]:
    """The environment variables the plan's request headers name (`${NAME}`), which the pods must have."""
    return header_variables(request.headers for request in plan.requests or ())


def env_secret(name: str, namespace: str, names: Iterable[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """A Secret holding exactly `names` from `environ` (preflight has checked they are set)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {key: base64.b64encode(environ[key].encode()).decode() for key in names},
    }


def loadgen_values(
    plan: LoadPlan,
    image: str,
    run_id: str,
    *,
    service_url: str,
    workers: int | None = None,
    pods: LoadgenPodsConfig | None = None,
    pull_secrets: Sequence[str] = (),
    env_secret_name: str = "",
) -> dict[str, Any]:
    """Values for charts/loadgen: the load plan, as its worker pods run it, on `workers` pods, with every file it
    reads; the pods' resources and placement from `pods`; their image pulled with the Secrets `pull_secrets`."""
    worker_count = workers or plan.processes
    pods = pods or LoadgenPodsConfig()
    files = {
        PLAN_FILE: pod_plan(plan, worker_count).to_json().encode(),
        ENDPOINTS_FILE: json.dumps([service_url]).encode(),
        **read_plan_files(plan),
    }
    return {
        "runId": run_id_label(run_id),
        "image": {**split_image(image), "pullPolicy": "IfNotPresent"},
        "target": {"host": service_url},
        "workers": worker_count,
        "runTimeSeconds": math.ceil(plan.planned_duration_s + WORKERS_START_WAIT_S) + 5,
        "stopTimeoutSeconds": int(plan.request_timeout_s) + 1,
        "users": 0,
        "harnessFiles": configmap_parts(files),
        "envSecret": env_secret_name,
        "resources": {
            "master": resources_values(pods.master_resources),
            "worker": resources_values(pods.resources),
        },
        "imagePullSecrets": pull_secret_refs(pull_secrets),
        "nodeSelector": dict(pods.node_selector),
        "tolerations": [toleration.model_dump(by_alias=True, exclude_none=True) for toleration in pods.tolerations],
        "serviceAccountName": pods.service_account_name or "",
    }


def _exit_problem(pod: dict[str, Any], log_tail: LogTail) -> Problem | None:
    """A generator pod whose container ended with an error (restartPolicy Never: no CrashLoopBackOff)."""
    name = pod["metadata"]["name"]
    for status in container_statuses(pod):
        terminated = (status.get("state") or {}).get("terminated") or {}
        code = terminated.get("exitCode")
        if code is None or code == 0:
            continue
        reason = terminated.get("reason") or "Error"
        hint = f"kubectl logs -n {pod['metadata'].get('namespace', '')} {name}"
        if reason == "OOMKilled":
            hint = "raise target.kubernetes.loadgen_pods.resources.limits.memory (data sets are held in memory)"
        return Problem(
            "loadgen-exited",
            f"load generator pod {name} exited with code {code} ({reason}); last log lines: "
            f"{log_tail(name, status.get('name', _CONTAINER), False)}",
            hint,
            fatal=True,
            pod=name,
        )
    return None


def _creation_refused(events: list[dict[str, Any]], jobs: Iterable[str]) -> Problem | None:
    """A Job whose pods the API server refuses to create (a ResourceQuota, a LimitRange, an admission policy).
    Jobs are known by uid: an earlier run's Job of the same name may have left events."""
    uids = set(jobs)
    refused = [
        event
        for event in events
        if event.get("reason") == "FailedCreate"
        and (event.get("involvedObject") or {}).get("kind") == "Job"
        and event["involvedObject"].get("uid") in uids
    ]
    if not refused:
        return None
    latest = refused[-1]
    job = latest["involvedObject"]["name"]
    return Problem(
        "loadgen-refused",
        f"the cluster refuses to create the pods of Job {job}: {latest.get('message', '')}",
        "set target.kubernetes.loadgen_pods.resources within the namespace's ResourceQuota and LimitRange",
        fatal=False,
    )


def start_problem(
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    jobs: Iterable[str],
    log_tail: LogTail,
    *,
    waited_s: float,
    grace_s: float = START_GRACE_S,
) -> Problem | None:
    """Why the generator pods have not started, when it is worth ending the run for: a problem that will not pass
    at once (image pull, crash), another once the pods have waited `grace_s` (unschedulable, refused, a warning).
    `jobs` are the uids of the generator's Jobs."""
    problems = [problem for pod in pods if (problem := _exit_problem(pod, log_tail)) is not None]
    diagnosed = diagnose_pods(pods, events, log_tail)
    if diagnosed is not None and diagnosed.cause == "unschedulable":
        diagnosed = dataclasses.replace(
            diagnosed,
            hint="lower target.kubernetes.loadgen_pods.resources.requests, or match its node_selector and "
            "tolerations to the cluster's nodes",
        )
    refused = _creation_refused(events, jobs)
    problems += [problem for problem in (diagnosed, refused) if problem is not None]
    for problem in sorted(problems, key=lambda p: not p.fatal):
        if problem.fatal or waited_s >= grace_s:
            return problem
    return None


def _complete(record: str) -> dict[str, Any] | None:
    """A record line as JSON; None for a line cut short (a stream that ended mid-line: read whole again later)."""
    try:
        item = json.loads(record)
    except json.JSONDecodeError:
        return None
    return item if isinstance(item, dict) else None


def _is_worker(pod: dict[str, Any]) -> bool:
    return (pod["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "worker"


def _summarised(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the run directory keeps it: large file parts by size, not content (data sets can be large)."""
    kept = dict(manifest)
    for field, decode in (("data", str.encode), ("binaryData", base64.b64decode)):
        if field in manifest:
            kept[field] = {
                key: value if len(value) <= _KEPT_PART_BYTES else f"<{len(decode(value))} bytes>"
                for key, value in manifest[field].items()
            }
    return kept


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
        pods: LoadgenPodsConfig | None = None,
        pull_secrets: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        poll_s: float = 1.0,
        start_grace_s: float = START_GRACE_S,
    ) -> None:
        self.target = target
        self.plan = plan
        self.work_dir = work_dir
        self.image = image
        self.json_file = json_file
        self.workers = workers
        self.pods = pods or LoadgenPodsConfig()
        # The Secrets the pods pull their image with (target.kubernetes.image_pull_secrets, as the model's pods).
        self.pull_secrets = tuple(pull_secrets)
        # Where the header variables' values come from (the harness's own environment).
        self.environ = os.environ if environ is None else environ
        self.poll_s = poll_s
        self.start_grace_s = start_grace_s
        self.intervals_dir = work_dir / "intervals"
        self.tail = IntervalTail(self.intervals_dir, on_record)
        self.planned_duration_s = plan.planned_duration_s
        self.release = f"{target.release}-loadgen"
        self._master_job = f"{self.release}-master"
        # The uids of the Jobs this run applied.
        self._jobs: list[str] = []
        self._stop = threading.Event()
        self._followers: dict[str, threading.Thread] = {}
        self._watcher: threading.Thread | None = None
        self._master_log = ""
        self._failure: LoadError | None = None
        self._failed_pods: set[str] = set()
        self.started_s: float | None = None

    @property
    def _pod_selector(self) -> str:
        return f"{self.target.run_selector},app.kubernetes.io/instance={self.release}"

    def start(self) -> None:
        """Render charts/loadgen for this run and apply it; workers start sending once all have joined."""
        self.intervals_dir.mkdir(parents=True, exist_ok=True)
        # The image reaches the node first (side-loaded, or already there).
        self.target.load_image(self.image)
        secret_name = ""
        names = env_names(self.plan)
        if names:
            secret_name = f"{self.release}-env"
            self.target.apply_run_object(env_secret(secret_name, self.target.namespace, names, self.environ))
        values = loadgen_values(
            self.plan,
            self.image,
            self.target.run_id,
            service_url=self.target.service_url(),
            workers=self.workers,
            pods=self.pods,
            pull_secrets=self.pull_secrets,
            env_secret_name=secret_name,
        )
        values["image"]["pullPolicy"] = self.target.pull_policy
        manifests = render_chart(
            LOADGEN_CHART,
            values,
            release=self.release,
            namespace=self.target.namespace,
            kube_version=self.target.kube_version,
        )
        kept = [_summarised(manifest) for manifest in manifests]
        (self.work_dir / "loadgen-manifests.yaml").write_text(json.dumps(kept, indent=1))
        self.started_s = time.time()
        for manifest in manifests:
            stored = self.target.apply_run_object(manifest)
            if manifest["kind"] == "Job":
                self._jobs.append(str((stored.get("metadata") or {}).get("uid")))
        self._watcher = threading.Thread(target=self._watch, name="loadgen-pods", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """Follow every worker pod's log as it appears (each with one thread), and until the load starts name a
        generator that cannot start."""
        assert self.started_s is not None
        while not self._stop.is_set():
            pods = self._pods()
            for pod in pods:
                name = pod["metadata"]["name"]
                phase = (pod.get("status") or {}).get("phase")
                if _is_worker(pod) and name not in self._followers and phase in ("Running", "Succeeded", "Failed"):
                    thread = threading.Thread(target=self._follow, args=(name,), name=f"log-{name}", daemon=True)
                    self._followers[name] = thread
                    thread.start()
            if self.tail.test_start_s is None:
                self._check_start(pods)
            else:
                self._note_failed_workers(pods)
            self._stop.wait(self.poll_s)

    def _pods(self) -> list[dict[str, Any]]:
        """The generator's pods; none when the API server did not answer this time (the next poll asks again)."""
        try:
            listed = self.target.api.list("v1", "Pod", self.target.namespace, self._pod_selector) or {}
        except HarnessError:
            return []
        return list(listed.get("items") or [])

    def _check_start(self, pods: list[dict[str, Any]]) -> None:
        running = [pod for pod in pods if (pod.get("status") or {}).get("phase") == "Running"]
        if len(running) == len(pods) == self.workers + 1:
            return
        assert self.started_s is not None
        failure = self._start_failure(pods, waited_s=time.time() - self.started_s)
        if failure is not None:
            self._failure = failure
            self._stop.set()

    def _start_failure(self, pods: list[dict[str, Any]], *, waited_s: float) -> LoadError | None:
        """Why the generator cannot start, as the run's error; None while nothing says so (yet)."""
        try:
            events = list((self.target.api.list("v1", "Event", self.target.namespace) or {}).get("items") or [])
        except HarnessError:
            events = []
        problem = start_problem(pods, events, self._jobs, self._log_tail, waited_s=waited_s, grace_s=self.start_grace_s)
        if problem is None:
            return None
        return LoadError(f"the in-cluster load generator cannot start: {problem.message}", hint=problem.hint)

    def _note_failed_workers(self, pods: list[dict[str, Any]]) -> None:
        """A worker that fails once the load runs stops sending its share of the arrivals: the report says so."""
        for pod in pods:
            name = pod["metadata"]["name"]
            if not _is_worker(pod) or name in self._failed_pods:
                continue
            problem = _exit_problem(pod, self._log_tail)
            if problem is not None:
                self._failed_pods.add(name)
                self.target.on_event(RunWarning("loadgen", problem.message, problem.hint))

    def _log_tail(self, pod: str, container: str, previous: bool) -> str:
        try:
            text = self.target.api.pod_log(
                self.target.namespace, pod, container, tail_lines=4 * _LOG_TAIL_LINES, previous=previous
            )
        except HarnessError as error:
            return f"(log unavailable: {error})"
        # Not Python's markers under a traceback's code (^^^^): the last lines say what went wrong.
        kept = [
            line.strip()
            for line in text.splitlines()
            if line.strip(" ^~\t") and not line.startswith(INTERVAL_LOG_PREFIX)
        ]
        return " | ".join(kept[-_LOG_TAIL_LINES:]) or "(empty log)"

    def _follow(self, pod: str) -> None:
        """Append a worker's records to its intervals file as it prints them; when the stream breaks before the
        container has ended, follow it again from the start and skip the records already written."""
        out = self.intervals_dir / f"intervals-{pod}.jsonl"
        seen: set[str] = set()
        # Where this worker's last interval ended: a record starting later means the log lost some in between.
        last_end_s: float | None = None
        with out.open("a", encoding="utf-8") as handle:
            while not self._stop.is_set():
                cause = "the stream ended while the container ran"
                try:
                    for line in self.target.api.follow_pod_log(self.target.namespace, pod, _CONTAINER):
                        record = line[len(INTERVAL_LOG_PREFIX) :] if line.startswith(INTERVAL_LOG_PREFIX) else None
                        item = _complete(record) if record is not None and record not in seen else None
                        if record is not None and item is not None:
                            seen.add(record)
                            handle.write(record + "\n")
                            handle.flush()
                            last_end_s = self._note_gap(pod, last_end_s, item)
                        if self._stop.is_set():
                            return
                # urllib3 raises its own errors from inside a broken stream, not only HarnessErrors.
                except Exception as error:
                    cause = f"{type(error).__name__}: {error}"
                    state = self._pod_state(pod)
                else:
                    state = self._pod_state(pod)
                    if state in ("ended", "gone"):
                        return
                if state == "gone":
                    self.target.on_event(RunWarning("loadgen", f"log of worker {pod}: {cause}; the pod is gone"))
                    return
                # Ended or not, the rest of its log is read again from the start.
                self.target.on_event(LoadgenLogResumed(pod, cause[:300], records_read=len(seen)))
                self._stop.wait(min(self.poll_s, 1.0))

    def _note_gap(self, pod: str, last_end_s: float | None, item: dict[str, Any]) -> float | None:
        """Warn when a worker's record starts after its previous one ended; returns where this one ends."""
        if "t_start_s" not in item:
            return last_end_s  # the process's start or calibration, not an interval
        start_s, end_s = float(item["t_start_s"]), float(item["t_end_s"])
        if last_end_s is not None and start_s > last_end_s:
            self.target.on_event(
                RunWarning(
                    "loadgen",
                    f"worker {pod}: {start_s - last_end_s:.1f} s of its records are missing (its log no longer held "
                    "them when the stream was followed again)",
                )
            )
        return end_s if last_end_s is None else max(last_end_s, end_s)

    def _pod_state(self, pod: str) -> Literal["running", "ended", "gone", "unknown"]:
        """Whether a pod's container has ended (all its log is written), the pod is gone, or neither is known."""
        try:
            stored = self.target.api.get("v1", "Pod", self.target.namespace, pod)
        except HarnessError:
            return "unknown"
        if stored is None:
            return "gone"
        ended = any(
            status.get("name") == _CONTAINER and (status.get("state") or {}).get("terminated")
            for status in container_statuses(stored)
        )
        return "ended" if ended else "running"

    def _master_result(self) -> bool | None:
        try:
            job = self.target.api.get("batch/v1", "Job", self.target.namespace, self._master_job)
        except HarnessError:
            return None  # asked again at the next poll; the run's deadline bounds the wait
        return job_finished(job)

    def wait(self, on_poll: Callable[[], None] | None = None, poll_s: float = 0.5) -> int:
        """Block until the master Job ends, ingesting the workers' records as they arrive."""
        assert self.started_s is not None
        deadline_s = self.started_s + self.planned_duration_s + self.plan.request_timeout_s + 180
        finished: bool | None = None
        last_check_s = 0.0
        while finished is None:
            if self._failure is not None:
                self.stop()
                raise self._failure
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
        for pod, thread in self._followers.items():
            if thread.is_alive():
                self.target.on_event(
                    RunWarning("loadgen", f"log of worker {pod} not read to its end within 30 s of the load's end")
                )
        self._stop.set()
        self.tail.poll()
        self._master_log = self._read_master_log()
        (self.work_dir / "loadgen-master.log").write_text(self._master_log)
        results = marked_results(self._master_log)
        if "locust.json" in results:
            self.json_file.write_text(results["locust.json"])
        if self.tail.test_start_s is None:
            # The master Job can end before the watcher's next look at the pods: the same diagnosis is made here,
            # so which of the two sees a crashed generator first does not change what the run says.
            raise (
                self._failure
                or self._start_failure(self._pods(), waited_s=math.inf)
                or LoadError(
                    f"the in-cluster load generator sent nothing (master {'completed' if finished else 'failed'}): "
                    f"{self.log_tail()}",
                    hint=f"kubectl -n {self.target.namespace} logs job/{self._master_job}",
                )
            )
        return 0 if finished else 1

    def _read_master_log(self) -> str:
        listed = self.target.api.list(
            "v1", "Pod", self.target.namespace, f"{self._pod_selector},app.kubernetes.io/component=master"
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
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=grace_s)
