"""The Docker target: replicas as containers of the service's image, each labelled with the run id.

Containers get the scenario's CPU and memory (limits, else requests) and listen on 127.0.0.1 only: a
published port in "publish" mode, BentoML's own port on the host network in "host" mode. The label
`harness.dev/run-id=<run>` lets `stop()` remove every container of the run, even ones this process lost
track of, and lets a later run remove what a crashed one left behind.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from harness.config import Scenario
from harness.errors import DeployError
from harness.model import (
    ContainersRemoved,
    EventSink,
    Leftover,
    ReplicaCrashed,
    ReplicaInfo,
    ReplicaReady,
    ReplicaStarted,
    ReplicaStopped,
    ReplicaUnready,
    ResourceUse,
)
from harness.processes import free_port, owner_alive, owner_id
from harness.service_env import container_env
from harness.targets.base import OWNER_LABEL, RUN_LABEL, restart_after_backoff, scale_plan, wait_until_ready
from harness.targets.readiness import READINESS_PROBE, Readiness, next_probe_in_s, observe
from harness.targets.serving import CONTAINER_PORT, bentoml_config_options, http_ok

REPLICA_LABEL = "harness.replica"
_LOG_TAIL_LINES = 12


def container_resources(scenario: Scenario) -> dict[str, int]:
    """docker run resource options from the scenario: limits, else requests; nothing when neither is set."""
    resources = scenario.resources
    cpu_cores = resources.limits.cpu_cores or resources.requests.cpu_cores
    memory_bytes = resources.limits.memory_bytes or resources.requests.memory_bytes
    options: dict[str, int] = {}
    if cpu_cores is not None:
        options["nano_cpus"] = round(cpu_cores * 1e9)
    if memory_bytes is not None:
        # Same swap limit: a replica over its memory is killed, as on Kubernetes, instead of swapping.
        options["mem_limit"] = options["memswap_limit"] = round(memory_bytes)
    return options


def cpu_cores_between(previous: dict[str, Any], current: dict[str, Any]) -> float | None:
    """Cores used between two `docker stats` samples: container CPU time over system CPU time x online CPUs."""
    try:
        used_ns = current["cpu_usage"]["total_usage"] - previous["cpu_usage"]["total_usage"]
        system_ns = current["system_cpu_usage"] - previous["system_cpu_usage"]
        online_cpus = current.get("online_cpus") or len(current["cpu_usage"].get("percpu_usage") or [])
    except (KeyError, TypeError):
        return None
    if system_ns <= 0 or used_ns < 0 or not online_cpus:
        return None
    return float(used_ns) / float(system_ns) * float(online_cpus)


def memory_in_use_bytes(memory_stats: dict[str, Any]) -> float | None:
    """Memory use without the page cache, as `docker stats` shows it (cgroup v1 `cache`, v2 `inactive_file`)."""
    usage = memory_stats.get("usage")
    stats = memory_stats.get("stats") or {}
    if usage is None:
        return None
    for key in ("total_cache", "cache", "inactive_file"):
        if key in stats:
            return float(max(usage - stats[key], 0))
    return float(usage)


def docker_client() -> Any:
    """A client of the local Docker daemon, or DeployError saying how to start one."""
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        raise DeployError(
            f"cannot reach the Docker daemon: {error}", hint="run `make docker-setup` (scripts/docker-setup.sh)"
        ) from error
    return client


def labelled_containers(client: Any, label: str) -> list[Any]:
    """The containers (running or not) bearing `label` ("key" or "key=value"). docker-py lists ids, then
    inspects each: a container removed in between (another run's clean-up, a scale-in) raises NotFound, so
    the listing is taken again, a few times at most."""
    for _ in range(4):
        with contextlib.suppress(NotFound):
            return list(client.containers.list(all=True, filters={"label": label}))
    return list(client.containers.list(all=True, filters={"label": label}))  # a fifth time, NotFound let through


def remove_run_containers(client: Any, run_id: str | None = None) -> list[str]:
    """Force-remove the containers of one run (every harness run when run_id is None); returns their names."""
    label = RUN_LABEL if run_id is None else f"{RUN_LABEL}={run_id}"
    removed: list[str] = []
    for container in labelled_containers(client, label):
        with contextlib.suppress(NotFound):
            container.remove(force=True)
            removed.append(container.name)
    return removed


def remove_containers_of_dead_owners(client: Any) -> list[str]:
    """Force-remove the harness containers whose owner no longer runs on this machine; returns their names."""
    removed: list[str] = []
    for container in labelled_containers(client, OWNER_LABEL):
        if owner_alive(container.labels.get(OWNER_LABEL, "")):
            continue
        with contextlib.suppress(NotFound):
            container.remove(force=True)
            removed.append(container.name)
    return removed


@dataclass
class _Replica:
    id: str
    name: str
    port: int
    started_at_s: float
    container: Any = None
    ready_at_s: float | None = None
    ready: bool = False
    # What the probes say (harness.targets.readiness), and when the next one is due.
    readiness: Readiness = field(default_factory=Readiness)
    next_probe_at_s: float = 0.0
    stopping: bool = False
    crashed: bool = False
    exit_code: int | None = None
    error: str | None = None
    # As in harness.targets.local: restarts so far, one pending, and whether the scenario's fault killed it.
    restarts: int = 0
    restart_pending: bool = False
    fault_killed: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class DockerTarget:
    """Replicas as Docker containers of one image, on this machine's daemon."""

    name = "docker"
    scales_itself = False

    def __init__(
        self,
        scenario: Scenario,
        work_dir: Path,
        *,
        image: str | None = None,
        run_id: str | None = None,
        on_event: EventSink | None = None,
        client: Any = None,
        poll_s: float = 0.25,
        stop_timeout_s: int = 10,
    ) -> None:
        self.scenario = scenario
        self.work_dir = work_dir
        self.image = image or scenario.target.docker.image
        self.run_id = run_id or scenario.output.run_id or f"run-{uuid.uuid4().hex[:12]}"
        self.on_event: EventSink = on_event or (lambda event: None)
        self.poll_s = poll_s
        self.stop_timeout_s = stop_timeout_s
        self._client = client
        self._replicas: dict[str, _Replica] = {}
        self._desired = 0
        self._counter = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        # start() returned: from then on a crashed container is restarted rather than a failed start.
        self._started = False
        self._watcher: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._cpu_samples: dict[str, dict[str, Any]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    # ------------------------------------------------------------------ Target protocol

    def leftover_resource(self) -> Leftover:
        return Leftover(kind="docker")

    def start(self, replicas: int) -> None:
        """Start `replicas` containers and block until all are ready, or raise DeployError with the cause."""
        if self.image is None:
            raise DeployError(
                "the docker target needs an image: set target.docker.image or build one first (harness.build)"
            )
        try:
            self.client.images.get(self.image)
            leftovers = remove_run_containers(self.client, self.run_id)
        except ImageNotFound as error:
            raise DeployError(
                f"image '{self.image}' does not exist on the local Docker daemon",
                hint="build it (harness.build.containerize) or fix target.docker.image",
            ) from error
        except DockerException as error:
            raise DeployError(f"the Docker daemon refused a request: {error}") from error
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if leftovers:
            self.on_event(ContainersRemoved("left by an earlier run", tuple(leftovers)))
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="docker-target-readiness", daemon=True)
        self._watcher.start()
        self.scale(replicas)
        timeout_s = self.scenario.target.startup_timeout_s

        def current() -> list[_Replica]:
            with self._lock:
                return [r for r in self._replicas.values() if not r.stopping]

        def failure(replica: _Replica) -> DeployError | None:
            if not (replica.crashed or replica.error is not None):
                return None
            cause = replica.error or f"exited with code {replica.exit_code}"
            return DeployError(
                f"container {replica.name} ({self.image}) {cause} before it was ready; "
                f"log tail: {self.log_tail(replica.id)}",
                hint=f"docker logs {replica.name} (kept until the target stops); full log in {self.work_dir}",
            )

        def timed_out(waiting: list[_Replica]) -> DeployError:
            if not waiting:
                return DeployError(f"only {len(current())} of {replicas} containers exist after {timeout_s:g} s")
            names = ", ".join(r.name for r in waiting)
            return DeployError(
                f"container(s) {names} not ready on {self.scenario.service.readiness_path} within "
                f"target.startup_timeout_s={timeout_s:g} s; log tail of {waiting[0].name}: "
                f"{self.log_tail(waiting[0].id)}",
                hint="raise target.startup_timeout_s or check the image starts: docker run IMAGE",
            )

        wait_until_ready(
            current,
            count=replicas,
            timeout_s=timeout_s,
            poll_s=self.poll_s,
            ready=lambda r: r.ready,
            failure=failure,
            timed_out=timed_out,
        )
        self._started = True

    def scale(self, replicas: int) -> None:
        """Set the desired replica count; containers are created and removed in background threads."""
        with self._lock:
            self._desired = replicas
            # A crashed container waiting for its restart still counts, as a restarting container's pod does.
            alive = {
                r.id: r for r in self._replicas.values() if not r.stopping and (not r.crashed or r.restart_pending)
            }
            to_start, to_remove = scale_plan([(r.id, r.started_at_s) for r in alive.values()], replicas)
            for _ in range(to_start):
                self._spawn()
            for replica_id in to_remove:
                replica = alive[replica_id]
                replica.stopping = True
                replica.ready = False
                self._in_background(self._remove, replica, self.stop_timeout_s)

    def desired_replicas(self) -> int:
        return self._desired

    def replicas(self) -> list[ReplicaInfo]:
        with self._lock:
            return [
                ReplicaInfo(
                    id=r.id,
                    base_url=r.base_url,
                    ready=r.ready,
                    started_at_s=r.started_at_s,
                    ready_at_s=r.ready_at_s,
                    container_id=None if r.container is None else r.container.id,
                    crashed=r.crashed,
                )
                for r in self._replicas.values()
                if not r.stopping
            ]

    def resource_use(self) -> dict[str, ResourceUse]:
        """CPU cores since the previous call (None on the first) and memory, from one-shot container stats."""
        with self._lock:
            running = [
                (r.id, r.container) for r in self._replicas.values() if r.container is not None and not r.stopping
            ]
        use: dict[str, ResourceUse] = {}
        for replica_id, container in running:
            try:
                # one_shot: a single sample in milliseconds instead of docker's two samples a second apart.
                stats = container.stats(stream=False, one_shot=True)
            except (APIError, NotFound):
                continue
            cpu_stats = stats.get("cpu_stats") or {}
            previous = self._cpu_samples.get(replica_id)
            self._cpu_samples[replica_id] = cpu_stats
            use[replica_id] = ResourceUse(
                cpu_cores=None if previous is None else cpu_cores_between(previous, cpu_stats),
                rss_bytes=memory_in_use_bytes(stats.get("memory_stats") or {}),
            )
        return use

    def stop(self) -> None:
        """Remove every container of this run (by label, so also ones created before a failure); idempotent."""
        self._stop.set()
        with self._lock:
            self._desired = 0
            replicas = list(self._replicas.values())
            workers = list(self._workers)
            for replica in replicas:
                replica.stopping = True
                replica.ready = False
        # Creations in flight finish first, so no container appears after the removal below.
        for worker in workers:
            worker.join(timeout=60)
        removers = [threading.Thread(target=self._remove, args=(r, 0), daemon=True) for r in replicas]
        for remover in removers:
            remover.start()
        for remover in removers:
            remover.join(timeout=30)
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self._client is None:
            return
        try:
            remove_run_containers(self.client, self.run_id)
        except DockerException as error:
            raise DeployError(
                f"could not remove the containers labelled {RUN_LABEL}={self.run_id}: {error}",
                hint=f"docker rm -f $(docker ps -aq --filter label={RUN_LABEL}={self.run_id})",
            ) from error

    # ------------------------------------------------------------------ internals

    def log_tail(self, replica_id: str, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines a replica's container wrote, joined on one line."""
        replica = self._replicas.get(replica_id)
        if replica is None:
            return "(no such replica)"
        text = ""
        if replica.container is not None:
            with contextlib.suppress(APIError, NotFound):
                text = replica.container.logs(tail=lines).decode(errors="replace")
        log_path = self.work_dir / f"{replica.id}.log"
        if not text and log_path.exists():
            text = log_path.read_text(errors="replace")
        kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return " | ".join(kept[-lines:]) or "(empty log)"

    def _in_background(self, function: Callable[..., None], *args: Any) -> None:
        worker = threading.Thread(target=function, args=args, daemon=True)
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()

    def _spawn(self) -> None:
        self._counter += 1
        replica_id = f"replica-{self._counter}"
        replica = _Replica(
            id=replica_id,
            name=f"harness-{self.run_id}-{replica_id}",
            port=free_port(),
            started_at_s=time.time(),
        )
        self._replicas[replica_id] = replica
        self._in_background(self._create, replica)

    def _run_options(self, replica: _Replica) -> dict[str, Any]:
        service = self.scenario.service
        environment = container_env(service)
        environment.update(
            BENTOML_CONFIG_OPTIONS=bentoml_config_options(self.scenario),
            BENTOML_DO_NOT_TRACK="true",
            PYTHONUNBUFFERED="1",
        )
        options: dict[str, Any] = {
            "name": replica.name,
            "detach": True,
            "labels": {RUN_LABEL: self.run_id, REPLICA_LABEL: replica.id, OWNER_LABEL: owner_id()},
            "environment": environment,
            **container_resources(self.scenario),
        }
        if self.scenario.target.docker.network == "host":
            environment.update(BENTOML_HOST="127.0.0.1", BENTOML_PORT=str(replica.port))
            options["network_mode"] = "host"
        else:
            environment["BENTOML_PORT"] = str(CONTAINER_PORT)
            options["ports"] = {f"{CONTAINER_PORT}/tcp": ("127.0.0.1", replica.port)}
        return options

    def _create(self, replica: _Replica) -> None:
        try:
            container = self.client.containers.run(self.image, **self._run_options(replica))
        except (DockerException, DeployError) as error:
            with self._lock:
                replica.error = f"could not be started: {error}"
                if not replica.stopping:
                    replica.crashed = True
            self.on_event(ReplicaCrashed(replica.id, container=replica.name, error=str(error)))
            return
        with self._lock:
            replica.container = container
            stopping = replica.stopping
        self.on_event(ReplicaStarted(replica.id, port=replica.port, container=replica.name, container_id=container.id))
        if stopping:
            self._remove(replica, 0)

    def _watch(self) -> None:
        """Poll readiness and notice exited containers until stopped."""
        readiness_path = self.scenario.service.readiness_path
        while not self._stop.is_set():
            with self._lock:
                current = [r for r in self._replicas.values() if not r.stopping and r.container is not None]
            for replica in current:
                container = replica.container  # _remove may clear it meanwhile
                if replica.crashed or container is None:
                    continue
                try:
                    container.reload()
                    state = container.attrs["State"]
                except (APIError, NotFound):
                    state = {"Status": "removed", "ExitCode": None}
                if state["Status"] in ("exited", "dead", "removed") and not replica.stopping:
                    replica.crashed = True
                    replica.ready = False
                    replica.exit_code = state.get("ExitCode")
                    self.on_event(
                        ReplicaCrashed(
                            replica.id,
                            exit_code=replica.exit_code,
                            oom_killed=state.get("OOMKilled"),
                            restarts=replica.restarts,
                            container=replica.name,
                            log_tail=self.log_tail(replica.id),
                            injected=replica.fault_killed or None,
                        )
                    )
                    if self._started and state["Status"] != "removed":
                        self._restart_later(replica)
                    continue
                now_s = time.time()
                if now_s < replica.next_probe_at_s:
                    continue
                ok = http_ok(replica.base_url + readiness_path, timeout_s=READINESS_PROBE.timeout_s)
                before, state = replica.readiness, observe(replica.readiness, ok, now_s)
                replica.readiness = state
                replica.next_probe_at_s = now_s + next_probe_in_s(state, self.poll_s)
                if state.ready_at_s is not None and state.ready and not before.ready and not replica.stopping:
                    replica.ready_at_s = state.ready_at_s
                    self.on_event(ReplicaReady(replica.id, round(state.ready_at_s - replica.started_at_s, 3)))
                elif before.ready and not state.ready:
                    self.on_event(ReplicaUnready(replica.id, state.failures))
                replica.ready = state.ready and not replica.stopping
            self._stop.wait(self.poll_s)

    def _restart_later(self, replica: _Replica) -> None:
        """Start the exited container again after the kubelet's back-off (restart_backoff_s, doubling per
        restart, at most 5 minutes): same name, port and log, as a container restarts in its pod."""
        replica.restart_pending = True

        def restart() -> None:
            with self._lock:
                container = replica.container
                if replica.stopping or container is None:
                    return
            try:
                container.start()
            except (APIError, NotFound) as error:
                self.on_event(ReplicaCrashed(replica.id, container=replica.name, error=f"restart failed: {error}"))
                return
            with self._lock:
                replica.restarts += 1
                replica.restart_pending = False
                replica.fault_killed = False
                replica.started_at_s = time.time()
                replica.ready_at_s = None
                replica.readiness = Readiness()
                replica.next_probe_at_s = 0.0
                replica.crashed = False
            self.on_event(
                ReplicaStarted(replica.id, port=replica.port, container=replica.name, container_id=container.id)
            )

        restart_after_backoff(
            self._stop, replica.id, replica.restarts, self.scenario.target.restart_backoff_s, self.on_event, restart
        )

    # ------------------------------------------------------------------ faults (stages[].faults)

    def _container_of(self, replica_id: str) -> Any:
        with self._lock:
            replica = self._replicas.get(replica_id)
        if replica is None or replica.container is None:
            raise DeployError(f"replica {replica_id} has no container")
        return replica, replica.container

    def kill_replica(self, replica_id: str) -> None:
        replica, container = self._container_of(replica_id)
        replica.fault_killed = True
        try:
            container.kill()  # SIGKILL
        except (APIError, NotFound) as error:
            raise DeployError(f"docker kill {replica.name}: {error}") from error

    def pause_replica(self, replica_id: str) -> None:
        replica, container = self._container_of(replica_id)
        try:
            container.pause()
        except (APIError, NotFound) as error:
            raise DeployError(f"docker pause {replica.name}: {error}") from error

    def resume_replica(self, replica_id: str) -> None:
        replica, container = self._container_of(replica_id)
        try:
            container.unpause()
        except (APIError, NotFound) as error:
            raise DeployError(f"docker unpause {replica.name}: {error}") from error

    def _remove(self, replica: _Replica, grace_s: int) -> None:
        """Stop (SIGTERM, then SIGKILL after grace_s), keep the log in the work dir, remove the container."""
        with self._lock:
            container = replica.container
            replica.container = None
        if container is None:
            return  # not created yet: _create removes it when it sees `stopping`
        with contextlib.suppress(APIError, NotFound, OSError):
            if grace_s > 0:
                container.stop(timeout=grace_s)
            (self.work_dir / f"{replica.id}.log").write_bytes(container.logs())
        with contextlib.suppress(APIError, NotFound):
            container.remove(force=True)
        self.on_event(ReplicaStopped(replica.id, container=replica.name))
        with self._lock:
            self._replicas.pop(replica.id, None)
        self._cpu_samples.pop(replica.id, None)
