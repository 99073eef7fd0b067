"""The embedded default target: replicas as `bentoml serve` processes on free 127.0.0.1 ports.

Each replica gets its own BENTOML_HOME (replicas sharing one corrupt each other's /metrics) whose `models`
shows the user's model store (read-only where the harness may mount, as root), runs in the service's own
Python, carries the run's process mark (harness.processes: stopping it stops its workers too, even those whose
parent died) and has a log file in the run directory. Readiness is polled on the readiness path by a background thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.config import Scenario
from harness.errors import DeployError
from harness.metrics.resources import ProcessTreeSampler
from harness.model import (
    EventSink,
    ReplicaCrashed,
    ReplicaInfo,
    ReplicaReady,
    ReplicaStarted,
    ReplicaStopped,
    ReplicaUnready,
    ResourceUse,
)
from harness.processes import REPLICA_ENV, RUN_ENV, free_port, kill_all, marked_processes, spawn, stop_tree
from harness.service_env import bentoml_command, bentoml_env, model_store_home
from harness.targets.base import restart_after_backoff, scale_plan, wait_until_ready
from harness.targets.readiness import READINESS_PROBE, Readiness, next_probe_in_s, observe
from harness.targets.serving import bentoml_config_options, http_ok

# unshare(2) and mount(2) flags, from <sched.h> and <sys/mount.h>.
_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 1
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2
# Seconds a replica removed by a scale-down keeps serving in-flight requests before SIGTERM.
DRAIN_S = 2.0
# How a replica says another process bound its port first (Python's OSError for EADDRINUSE), and how many
# times a replica starts again on a new port for that reason.
PORT_IN_USE = "[Errno 98] Address already in use"
PORT_RETRIES = 3


def attach_model_store(models_dir: Path, store_models: Path) -> None:
    """Make the empty directory `models_dir` show `store_models`: bind-mounted read-only in a mount namespace of
    the calling process alone when the kernel allows it (root), else a symlink, which BentoML only reads.

    Called in a replica's child process before exec, so the mount is gone when the replica is.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    source, target = os.fsencode(store_models), os.fsencode(models_dir)

    def mount(source: bytes | None, target: bytes, flags: int) -> bool:
        return bool(libc.mount(source, target, None, flags, None) == 0)

    # A private "/" first: otherwise the bind mount would propagate back into the harness's namespace.
    private = libc.unshare(_CLONE_NEWNS) == 0 and mount(None, b"/", _MS_REC | _MS_PRIVATE)
    if private and mount(source, target, _MS_BIND | _MS_REC):
        if mount(None, target, _MS_BIND | _MS_REMOUNT | _MS_RDONLY):
            return
        libc.umount2(target, _MNT_DETACH)
    os.rmdir(models_dir)
    os.symlink(store_models, models_dir)


def mounted_read_only(pid: int, path: Path) -> bool:
    """Whether `path` is a read-only mount point in the mount namespace of process `pid`."""
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        # mountinfo(5): field 5 is the mount point (octal escapes for spaces), field 6 its options.
        if len(fields) > 5 and fields[4].encode().decode("unicode_escape") == str(path):
            return "ro" in fields[5].split(",")
    return False


@dataclass
class _Replica:
    id: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    home: Path
    started_at_s: float
    ready_at_s: float | None = None
    ready: bool = False
    stopping: bool = False
    crashed: bool = False
    cpus: tuple[int, ...] | None = None
    # Restarts so far (the back-off doubles with each), whether one is pending, and whether the scenario's
    # fault killed it.
    restarts: int = 0
    restart_pending: bool = False
    fault_killed: bool = False
    # Starts again on a new port because another process bound the chosen one first.
    port_retries: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


ReplicaHook = Callable[[str, int], None]


class LocalTarget:
    """Replicas as local `bentoml serve` processes."""

    name = "local"
    scales_itself = False

    def __init__(
        self,
        scenario: Scenario,
        work_dir: Path,
        *,
        on_event: EventSink | None = None,
        on_replica_started: ReplicaHook | None = None,
        replica_cpus: tuple[int, ...] | None = None,
        poll_s: float = 0.25,
        run_id: str | None = None,
    ) -> None:
        self.scenario = scenario
        # The processes' mark: unique per target, so stopping replica-1 never touches another run's replica-1.
        self.run_id = run_id or f"local-{uuid.uuid4().hex[:12]}"
        self.work_dir = work_dir
        self.on_event: EventSink = on_event or (lambda event: None)
        self.on_replica_started = on_replica_started
        self.replica_cpus = replica_cpus
        self.poll_s = poll_s
        self._replicas: dict[str, _Replica] = {}
        self._samplers: dict[str, ProcessTreeSampler] = {}
        self._desired = 0
        self._counter = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        # start() returned: from then on a crashed replica is restarted rather than a failed start.
        self._started = False
        self.model_store = model_store_home(scenario.service, os.environ) / "models"
        self._bentoml = bentoml_command(scenario.service)

    # ------------------------------------------------------------------ Target protocol

    def start(self, replicas: int) -> None:
        """Start `replicas` replicas and block until all are ready, or raise DeployError with the cause."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.scale(replicas)
        timeout_s = self.scenario.target.startup_timeout_s

        def current() -> list[_Replica]:
            with self._lock:
                return list(self._replicas.values())

        def failure(replica: _Replica) -> DeployError | None:
            if not replica.crashed:
                return None
            return DeployError(
                f"replica {replica.id} exited with code {replica.process.returncode} before it was ready; "
                f"log tail: {self.log_tail(replica.id)}",
                hint=f"full log: {replica.log_path}; models come from the model store {self.model_store} "
                "(service.model_store, else BENTOML_HOME)",
            )

        def timed_out(waiting: list[_Replica]) -> DeployError:
            names = ", ".join(r.id for r in waiting) or "(none started)"
            tail = self.log_tail(waiting[0].id) if waiting else "(no replica)"
            return DeployError(
                f"replica(s) {names} not ready within target.startup_timeout_s={timeout_s:g} s; log tail: {tail}",
                hint="raise target.startup_timeout_s or check the service starts with `bentoml serve`",
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
        """Set the desired replica count; new replicas start now and become ready later."""
        with self._lock:
            self._desired = replicas
            # A crashed replica waiting for its restart still counts, as a restarting container's pod does.
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
                threading.Thread(target=self._drain_and_terminate, args=(replica,), daemon=True).start()

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
                    pid=r.process.pid,
                    cpus=r.cpus,
                    crashed=r.crashed,
                )
                for r in self._replicas.values()
                if not r.stopping
            ]

    def resource_use(self) -> dict[str, ResourceUse]:
        """CPU and RSS of each replica's whole process tree (bentoml serve forks its workers)."""
        with self._lock:
            current = [r for r in self._replicas.values() if not r.stopping]
        usage = {}
        for replica in current:
            sampler = self._samplers.get(replica.id)
            if sampler is None:
                sampler = self._samplers[replica.id] = ProcessTreeSampler(replica.process.pid)
            usage[replica.id] = sampler.sample()
        return usage

    def stop(self) -> None:
        """Stop every replica and its workers; idempotent, safe from any state."""
        self._stop.set()
        with self._lock:
            replicas = list(self._replicas.values())
            self._desired = 0
        for replica in replicas:
            replica.stopping = True
        threads = [threading.Thread(target=self._terminate, args=(r,), daemon=True) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)

    # ------------------------------------------------------------------ internals

    def log_tail(self, replica_id: str, lines: int = 12) -> str:
        replica = self._replicas.get(replica_id)
        if replica is None or not replica.log_path.exists():
            return "(no log)"
        text = replica.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"

    def _spawn(self, replica_id: str | None = None, restarts: int = 0, port_retries: int = 0) -> None:
        if replica_id is None:
            self._counter += 1
            replica_id = f"replica-{self._counter}"
        port = free_port()
        home = self.work_dir / replica_id / "bentoml_home"
        models_dir = home / "models"
        models_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.work_dir / f"{replica_id}.log"
        service = self.scenario.service
        env = bentoml_env(service, os.environ, home)
        env.update(BENTOML_CONFIG_OPTIONS=bentoml_config_options(self.scenario), PYTHONUNBUFFERED="1")
        command = [*self._bentoml, "serve", service.import_string, "--host", "127.0.0.1", "--port", str(port)]
        cpus = self.replica_cpus
        store = self.model_store if self.model_store.is_dir() else None
        try:
            process = spawn(
                command,
                run_id=self.run_id,
                replica=replica_id,
                cwd=service.project_dir,
                env=env,
                stdout=log_path.open("wb"),
                cpus=cpus,
                before_exec=None if store is None else lambda: attach_model_store(models_dir, store),
            )
        except OSError as error:
            raise DeployError(f"cannot start `bentoml serve` for {replica_id}: {error}") from error
        replica = _Replica(
            id=replica_id,
            port=port,
            process=process,
            log_path=log_path,
            home=home,
            started_at_s=time.time(),
            cpus=cpus,
            restarts=restarts,
            port_retries=port_retries,
        )
        self._replicas[replica_id] = replica
        threading.Thread(target=self._probe, args=(replica,), name=f"probe-{replica_id}", daemon=True).start()
        self.on_event(
            ReplicaStarted(
                replica_id,
                pid=process.pid,
                port=port,
                model_store=None if store is None else str(store),
                model_store_read_only=mounted_read_only(process.pid, models_dir),
            )
        )
        if self.on_replica_started is not None:
            self.on_replica_started(replica_id, process.pid)

    def _probe(self, replica: _Replica) -> None:
        """Readiness probing of one replica by the rule of harness.targets.readiness (Kubernetes' probe
        semantics), so one slow answer from a busy replica does not take it out of rotation."""
        readiness_url = replica.base_url + self.scenario.service.readiness_path
        state = Readiness(ready=replica.ready, ready_at_s=replica.ready_at_s)
        while not self._stop.is_set() and not replica.stopping:
            if replica.process.poll() is not None:
                if replica.stopping:
                    return
                # Its workers may outlive it, still serving on the inherited socket.
                kill_all([found for found, _ in marked_processes(run_id=self.run_id, replica=replica.id)])
                if self._lost_its_port(replica):
                    with self._lock:
                        if not replica.stopping and self._replicas.get(replica.id) is replica:
                            self._spawn(replica.id, restarts=replica.restarts, port_retries=replica.port_retries + 1)
                    return
                replica.crashed = True
                replica.ready = False
                self.on_event(
                    ReplicaCrashed(
                        replica.id,
                        exit_code=replica.process.returncode,
                        log_tail=self.log_tail(replica.id),
                        restarts=replica.restarts,
                        injected=replica.fault_killed or None,
                    )
                )
                # Once the target is up, a crash is restarted; before, it is a failed start (start() says why).
                if self._started:
                    self._restart_later(replica)
                return
            ok = http_ok(readiness_url, timeout_s=READINESS_PROBE.timeout_s)
            before, state = state, observe(state, ok, time.time())
            if state.ready_at_s is not None and state.ready and not before.ready and not replica.stopping:
                replica.ready_at_s = state.ready_at_s
                replica.ready = True
                self.on_event(ReplicaReady(replica.id, round(state.ready_at_s - replica.started_at_s, 3)))
            elif before.ready and not state.ready:
                replica.ready = False
                self.on_event(ReplicaUnready(replica.id, state.failures))
            self._stop.wait(next_probe_in_s(state, self.poll_s))

    def _lost_its_port(self, replica: _Replica) -> bool:
        """Whether a replica that exited before it was ever ready did so because another process bound its
        port between free_port() and `bentoml serve`'s bind: the harness's race, not the service's crash,
        so it starts again on a new port (at most PORT_RETRIES times)."""
        if replica.ready_at_s is not None or replica.port_retries >= PORT_RETRIES:
            return False
        return PORT_IN_USE in self.log_tail(replica.id, lines=40)

    def _restart_later(self, replica: _Replica) -> None:
        """Start the replica again after the kubelet's back-off: restart_backoff_s, doubling per restart,
        at most 5 minutes."""
        replica.restart_pending = True

        def restart() -> None:
            with self._lock:
                if replica.stopping or self._replicas.get(replica.id) is not replica:
                    return
                replica.restart_pending = False
                self._spawn(replica.id, restarts=replica.restarts + 1)

        restart_after_backoff(
            self._stop, replica.id, replica.restarts, self.scenario.target.restart_backoff_s, self.on_event, restart
        )

    # ------------------------------------------------------------------ faults (stages[].faults)

    def kill_replica(self, replica_id: str) -> None:
        with self._lock:
            replica = self._replicas.get(replica_id)
        if replica is None or replica.process.poll() is not None:
            raise DeployError(f"replica {replica_id} is not running")
        replica.fault_killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(replica.process.pid, signal.SIGKILL)

    def pause_replica(self, replica_id: str) -> None:
        for process, _ in marked_processes(run_id=self.run_id, replica=replica_id):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()

    def resume_replica(self, replica_id: str) -> None:
        for process, _ in marked_processes(run_id=self.run_id, replica=replica_id):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()

    def _drain_and_terminate(self, replica: _Replica) -> None:
        # Like a preStop hook: leave the load balancer first, let in-flight requests finish, then stop.
        self._stop.wait(DRAIN_S)
        self._terminate(replica)

    def _terminate(self, replica: _Replica, grace_s: float = 10.0) -> None:
        # SIGTERM lets BentoML shut its workers down; the mark finds the ones that left its tree.
        stop_tree(replica.process, grace_s=grace_s, mark={RUN_ENV: self.run_id, REPLICA_ENV: replica.id})
        self.on_event(ReplicaStopped(replica.id, exit_code=replica.process.returncode))
        with self._lock:
            self._replicas.pop(replica.id, None)
            self._samplers.pop(replica.id, None)
        shutil.rmtree(replica.home, ignore_errors=True)
