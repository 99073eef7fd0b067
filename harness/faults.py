"""Faults of a scenario (stages[].faults), injected while the load runs.

`fault_times` (when, pure) and `choose_replica` (which, pure) decide; `FaultInjector` is the thin thread that
acts on the target at those moments and records what it did as events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.config import Fault, Stage
from harness.errors import HarnessError
from harness.model import EventSink, FaultEnded, FaultInjected, ReplicaInfo
from harness.targets.base import InjectsFaults


@dataclass(frozen=True)
class PlannedFault:
    """A fault at `offset_s` seconds after the load's start."""

    offset_s: float
    stage: str
    fault: Fault


def fault_times(stages: Sequence[Stage]) -> list[PlannedFault]:
    """Every fault of the scenario at its offset from the load's start, in time order."""
    planned = []
    start_s = 0.0
    for stage in stages:
        planned += [PlannedFault(start_s + fault.at_s, stage.name, fault) for fault in stage.faults]
        start_s += stage.duration_s
    return sorted(planned, key=lambda p: p.offset_s)


def choose_replica(replicas: Sequence[ReplicaInfo], nth: int) -> str | None:
    """The nth ready replica, oldest first (by start time, then name); None when fewer are ready."""
    ready = sorted((r for r in replicas if r.ready), key=lambda r: (r.started_at_s or 0.0, r.id))
    return ready[nth - 1].id if len(ready) >= nth else None


class FaultInjector:
    """Injects the planned faults once the load has started; pauses end by themselves after pause_s."""

    def __init__(
        self,
        target: InjectsFaults,
        replicas: Callable[[], list[ReplicaInfo]],
        planned: Sequence[PlannedFault],
        on_event: EventSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.replicas = replicas
        self.planned = list(planned)
        self.on_event = on_event
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused: list[tuple[str, str]] = []

    def start(self, test_start_s: float) -> None:
        if self.planned and self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(test_start_s,), name="faults", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop injecting and resume whatever is still paused."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for stage, replica in self._paused:
            self._resume(stage, replica)

    def _run(self, test_start_s: float) -> None:
        resumes: list[tuple[float, str, str]] = []
        for planned in self.planned:
            while resumes and resumes[0][0] <= test_start_s + planned.offset_s:
                if self._wait_until(resumes[0][0]):
                    return
                _, paused_stage, paused_replica = resumes.pop(0)
                self._resume(paused_stage, paused_replica)
            if self._wait_until(test_start_s + planned.offset_s):
                return
            fault = planned.fault
            replica = choose_replica(self.replicas(), fault.replica)
            if replica is None:
                self.on_event(FaultInjected(planned.stage, fault.action, None, fault.pause_s, "no such ready replica"))
                continue
            try:
                if fault.action == "kill":
                    self.target.kill_replica(replica)
                else:
                    self.target.pause_replica(replica)
                    self._paused.append((planned.stage, replica))
                    assert fault.pause_s is not None  # the schema requires it for a pause
                    resumes.append((self.clock() + fault.pause_s, planned.stage, replica))
                    resumes.sort()
                self.on_event(FaultInjected(planned.stage, fault.action, replica, fault.pause_s))
            except HarnessError as error:
                self.on_event(FaultInjected(planned.stage, fault.action, replica, fault.pause_s, str(error)))
        for at_s, paused_stage, paused_replica in resumes:
            if self._wait_until(at_s):
                return
            self._resume(paused_stage, paused_replica)

    def _resume(self, stage: str, replica: str) -> None:
        if (stage, replica) not in self._paused:
            return
        self._paused.remove((stage, replica))
        try:
            self.target.resume_replica(replica)
        finally:
            self.on_event(FaultEnded(stage, "pause", replica))

    def _wait_until(self, at_s: float) -> bool:
        """Sleep until `at_s`; True when stopped meanwhile."""
        return self._stop.wait(max(0.0, at_s - self.clock()))
