"""The one small protocol every target implements: start N replicas, report them, scale, stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from harness.errors import DeployError
from harness.model import EventSink, Leftover, ReplicaInfo, ReplicaRestarting, ResourceUse, ServerSample

R = TypeVar("R")

# Every object a run creates (containers, Kubernetes objects) carries this label with the run's id, so stop()
# and a later run find all of them by one selector. The charts spell it too (templates/_helpers.tpl).
RUN_LABEL = "harness.dev/run-id"
# The harness process that created the object (harness.processes.owner_id): `harness cleanup` removes what
# harnesses of this machine that are gone left behind, containers and cluster objects alike.
OWNER_LABEL = "harness.dev/owner"


class Target(Protocol):
    """A place where replicas of the service run.

    `start` blocks until the initial replicas are ready (or raises DeployError with the cause);
    `scale` only changes the desired count and returns at once; new replicas show up in
    `replicas()` and become ready later. `stop` is idempotent and removes everything the target
    created, also after a failure or an interrupt.
    """

    name: str
    # True when something other than the harness scales the replicas (a Kubernetes HPA).
    scales_itself: bool

    def start(self, replicas: int) -> None: ...

    def scale(self, replicas: int) -> None: ...

    def desired_replicas(self) -> int: ...

    def replicas(self) -> list[ReplicaInfo]: ...

    def resource_use(self) -> dict[str, ResourceUse]: ...

    def stop(self) -> None: ...


@runtime_checkable
class ReadsServerMetrics(Protocol):
    """A target that reads its replicas' /metrics itself (a Kubernetes pod proxy or a Prometheus), instead of
    the collector scraping each replica's base URL."""

    def server_samples(self, replicas: Sequence[ReplicaInfo], timeout_s: float) -> list[ServerSample] | None:
        """One ServerSample per replica given, failed ones with ok=False and the error; None when the
        replicas' base URLs are the route after all (the collector scrapes them as for any target)."""
        ...


@runtime_checkable
class InjectsFaults(Protocol):
    """A target whose replicas the harness can kill or freeze (stages[].faults)."""

    def kill_replica(self, replica_id: str) -> None:
        """Kill the replica at once (SIGKILL, not a graceful stop); its platform restarts it."""
        ...

    def pause_replica(self, replica_id: str) -> None:
        """Freeze every process of the replica (it keeps its connections and answers nothing)."""
        ...

    def resume_replica(self, replica_id: str) -> None:
        """Undo pause_replica."""
        ...


@runtime_checkable
class LeavesResources(Protocol):
    """A target whose replicas live outside the harness's processes (containers, cluster objects): what a
    clean-up needs to remove them if the harness dies (harness.cleanup, via the run's watchdog)."""

    def leftover_resource(self) -> Leftover:
        """What of it harness.cleanup must remove should the harness die."""
        ...


# The kubelet's cap on a crash-looping container's restart back-off.
MAX_RESTART_BACKOFF_S = 300.0


def restart_backoff_s(initial_s: float, restarts: int) -> float:
    """How long a crashed replica waits before its next start, as the kubelet does: `initial_s` doubled per
    restart so far, at most 5 minutes."""
    return min(MAX_RESTART_BACKOFF_S, initial_s * 2.0 ** min(restarts, 32))


def restart_after_backoff(
    stop: threading.Event,
    replica: str,
    restarts: int,
    initial_s: float,
    on_event: EventSink,
    start: Callable[[], None],
) -> None:
    """Record that a crashed replica will restart, then call `start` after the back-off (in a thread of its
    own), unless `stop` is set first."""
    backoff_s = restart_backoff_s(initial_s, restarts)
    on_event(ReplicaRestarting(replica, backoff_s=backoff_s, restarts=restarts + 1))

    def wait_then_start() -> None:
        if not stop.wait(backoff_s):
            start()

    threading.Thread(target=wait_then_start, name=f"restart-{replica}", daemon=True).start()


def scale_plan(alive: Sequence[tuple[str, float]], desired: int) -> tuple[int, list[str]]:
    """For replicas `(id, started_at_s)` alive now: how many to start and which ids to remove to reach
    `desired`. The newest go first on a scale-down: the oldest replicas are warm."""
    newest_first = sorted(alive, key=lambda item: item[1], reverse=True)
    surplus = max(0, len(alive) - desired)
    return max(0, desired - len(alive)), [replica_id for replica_id, _ in newest_first[:surplus]]


def wait_until_ready(
    current: Callable[[], Sequence[R]],
    *,
    count: int,
    timeout_s: float,
    poll_s: float,
    ready: Callable[[R], bool],
    failure: Callable[[R], DeployError | None],
    timed_out: Callable[[list[R]], DeployError],
) -> None:
    """Block until `count` replicas exist and all are ready; raise the first replica's `failure`, or
    `timed_out(not-ready replicas)` after `timeout_s`. The start-up wait every target shares."""
    deadline_s = time.time() + timeout_s
    while True:
        replicas = list(current())
        for replica in replicas:
            error = failure(replica)
            if error is not None:
                raise error
        if len(replicas) >= count and all(ready(replica) for replica in replicas):
            return
        if time.time() > deadline_s:
            raise timed_out([replica for replica in replicas if not ready(replica)])
        time.sleep(poll_s)
