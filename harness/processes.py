"""Every process the harness starts, in one place: started with a mark, stopped completely, cleaned up when its
owner is gone.

The mark is a set of environment variables every descendant inherits, BentoML's and Locust's workers too:
HARNESS_OWNER (the harness process that started it: host, pid, start time), HARNESS_RUN_ID and, for a
replica, HARNESS_REPLICA. Stopping by mark finds what a walk of the process tree misses: a BentoML worker
whose supervisor was SIGKILLed is re-parented to pid 1, in a session of its own, and keeps serving on the
socket it inherited.

Three layers, so that nothing of a run outlives it:
- `stop_tree` stops one process, its tree and everything else bearing its mark;
- children get a parent-death signal, forked from one thread that lives as long as the harness (the kernel
  sends that signal when the *thread* that forked the child ends, not the process);
- a watchdog process (`RunWatchdog`), in a session of its own, waits on a pipe from the harness; when the
  harness dies, by SIGKILL included, the pipe closes and the watchdog cleans up after the run (`harness.cleanup`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

import psutil

from harness.model import Leftover
from harness.rundir import leftover_to_json

OWNER_ENV = "HARNESS_OWNER"
RUN_ENV = "HARNESS_RUN_ID"
REPLICA_ENV = "HARNESS_REPLICA"
_PR_SET_PDEATHSIG = 1


# --------------------------------------------------------------------------- owners


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def owner_id(pid: int | None = None) -> str:
    """`<host>-<pid>-<start time in centiseconds>`: a process identity that a reused pid does not match.
    Usable as a Kubernetes label value and in a cgroup's name."""
    process = psutil.Process(pid if pid is not None else os.getpid())
    return f"{_host_tag()}-{process.pid}-{round(process.create_time() * 100)}"


def owner_alive(owner: str) -> bool:
    """Whether the owner still runs. An owner on another host, or a mark this harness did not write, counts
    as alive: only what provably belongs to a dead harness of this machine is ever cleaned up."""
    try:
        host, pid, started = owner.split("-")
        if host != _host_tag():
            return True
        process = psutil.Process(int(pid))
        return round(process.create_time() * 100) == int(started) and process.status() != psutil.STATUS_ZOMBIE
    except ValueError:
        return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


# --------------------------------------------------------------------------- ports


# Ports handed out by free_port start here: above the usual fixed service ports, below the ephemeral range.
PORT_FLOOR = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, drawn at random below the kernel's
    ephemeral range. A port is only taken by whoever binds it, and `bentoml serve` binds its port seconds
    after it was chosen; meanwhile the kernel hands ephemeral ports to outgoing connections as source
    ports, and one took a replica's port from bind(0) (`OSError: [Errno 98] Address already in use`)."""
    low = _ephemeral_low()
    # Too few ports below the ephemeral range (a machine that moved it down): the kernel's choice instead.
    tries = 64 if low - PORT_FLOOR >= 1000 else 0
    for _ in range(tries):
        port = random.randrange(PORT_FLOOR, low)
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- starting


def _set_parent_death_signal(signum: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


class _Forker:
    """One thread that forks every child: a parent-death signal fires when the forking thread ends, so
    children forked by a short-lived thread (the autoscaler's, a readiness waiter's) would otherwise be
    signalled long before the harness ends."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="harness-forker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as error:  # handed to the caller, raised there
                future.set_exception(error)

    def call(self, job: Callable[[], Any]) -> Any:
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future.result()


_forker: _Forker | None = None
_forker_lock = threading.Lock()


def _fork_thread() -> _Forker:
    global _forker
    with _forker_lock:
        if _forker is None:
            _forker = _Forker()
        return _forker


def marked_env(
    env: Mapping[str, str], run_id: str, replica: str | None = None, owner: str | None = None
) -> dict[str, str]:
    """`env` with the mark of this harness, the run and (optionally) the replica."""
    marked = dict(env)
    marked[OWNER_ENV] = owner or owner_id()
    marked[RUN_ENV] = run_id
    if replica is not None:
        marked[REPLICA_ENV] = replica
    else:
        marked.pop(REPLICA_ENV, None)
    return marked


def spawn(
    command: Sequence[str],
    *,
    run_id: str,
    replica: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | int | None = None,
    cpus: Sequence[int] | None = None,
    death_signal: int = signal.SIGTERM,
    before_exec: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a marked child in a session of its own (so a terminal's Ctrl-C reaches the harness only, which
    then stops it in order), optionally pinned to `cpus`, signalled with `death_signal` if the harness dies;
    `before_exec` runs in the child just before its command (a replica's mounts)."""
    child_env = marked_env(env if env is not None else os.environ, run_id, replica)
    cpu_set = set(cpus) if cpus else None

    def prepare() -> None:
        _set_parent_death_signal(death_signal)
        if cpu_set:
            os.sched_setaffinity(0, cpu_set)
        if before_exec is not None:
            before_exec()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=child_env,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            start_new_session=True,
            preexec_fn=prepare,
        )

    process: subprocess.Popen[bytes] = _fork_thread().call(start)
    return process


# --------------------------------------------------------------------------- finding and stopping


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (by parent links, whatever their session)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _mark_of(process: psutil.Process) -> dict[str, str] | None:
    try:
        environ = process.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None
    if OWNER_ENV not in environ:
        return None
    return {key: environ.get(key, "") for key in (OWNER_ENV, RUN_ENV, REPLICA_ENV)}


def marked_processes(
    *, owner: str | None = None, run_id: str | None = None, replica: str | None = None
) -> list[tuple[psutil.Process, dict[str, str]]]:
    """Live processes bearing a harness mark that matches every given part, with their marks."""
    found = []
    me = os.getpid()
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        mark = _mark_of(process)
        if mark is None:
            continue
        if owner is not None and mark[OWNER_ENV] != owner:
            continue
        if run_id is not None and mark[RUN_ENV] != run_id:
            continue
        if replica is not None and mark[REPLICA_ENV] != replica:
            continue
        found.append((process, mark))
    return found


def kill_all(processes: Sequence[psutil.Process], timeout_s: float = 5.0) -> list[psutil.Process]:
    """SIGKILL each and wait for them; returns the ones that were still running."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.kill()
            alive.append(process)
    psutil.wait_procs(alive, timeout=timeout_s)
    return alive


def stop_tree(
    process: subprocess.Popen[bytes],
    *,
    grace_s: float = 10.0,
    mark: Mapping[str, str] | None = None,
) -> None:
    """Stop a child completely: SIGTERM to its process group, `grace_s` to exit, then SIGKILL to whatever is
    left of its tree, and of the processes this harness marked with `mark` (run id and replica) when given."""
    tree = process_tree(process.pid)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    leftovers = tree + process_tree(process.pid)
    if mark is not None:
        marked = marked_processes(owner=owner_id(), run_id=mark[RUN_ENV], replica=mark.get(REPLICA_ENV))
        leftovers += [found for found, _ in marked]
    kill_all(leftovers)
    if process.poll() is None:
        process.wait(timeout=5)


# --------------------------------------------------------------------------- the watchdog


class RunWatchdog:
    """A process that outlives the harness to clean up after a run: `harness.cleanup.clean_up_run` runs there
    when the pipe from the harness closes without a `finished` line (SIGKILL, OOM kill, a crash).

    Resources a clean-up must know beyond marked processes and cgroups (a Docker daemon, a cluster namespace)
    are registered as they are created, one JSON line each.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.owner = owner_id()
        read_end, write_end = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness.cleanup", "--watch", run_id, self.owner],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if k not in (OWNER_ENV, RUN_ENV, REPLICA_ENV)},
            )
        finally:
            os.close(read_end)
        self._pipe: IO[str] | None = os.fdopen(write_end, "w")
        self._lock = threading.Lock()

    def register(self, resource: Leftover) -> None:
        """Tell the watchdog about a resource to remove if the harness dies."""
        self._send(leftover_to_json(resource))

    def finish(self) -> None:
        """The run cleaned up after itself: the watchdog cleans up only the run's processes and cgroups (in case a
        worker escaped), not the registered containers or cluster objects, then exits."""
        self._send({"finished": True})
        with self._lock:
            if self._pipe is not None:
                with contextlib.suppress(OSError):
                    self._pipe.close()
                self._pipe = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _send(self, message: dict[str, Any]) -> None:
        with self._lock:
            if self._pipe is None:
                return
            with contextlib.suppress(OSError):
                self._pipe.write(json.dumps(message) + "\n")
                self._pipe.flush()
