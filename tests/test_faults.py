"""Faults of a scenario: when and which replica (pure), the injector's order of actions, and what the
analysis makes of the records (errors while a fault lasted, time to recover, objectives held)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.analysis.faults import fault_impacts, fault_line
from harness.config import parse_scenario
from harness.errors import ConfigError, DeployError
from harness.faults import FaultInjector, choose_replica, fault_times
from harness.model import (
    ClientInterval,
    FaultEnded,
    FaultImpact,
    FaultInjected,
    ObjectiveResult,
    ReplicaCrashed,
    ReplicaInfo,
    ReplicaReady,
    ReplicaUnready,
    RunEvent,
    StageWindow,
    Status,
)
from harness.targets.base import MAX_RESTART_BACKOFF_S, restart_backoff_s


def scenario(stages: list[dict[str, Any]], kind: str = "local") -> Any:
    target: dict[str, Any] = {"kind": kind}
    if kind == "external":
        target["urls"] = ["http://127.0.0.1:1"]
    return parse_scenario({"name": "f", "service": {"path": ".", "service": "s:S"}, "target": target, "stages": stages})


def stage(name: str, duration_s: float, faults: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "duration_s": duration_s, "users": 1, "faults": faults}


# --------------------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    ("faults", "kind", "expected"),
    [
        ([{"at_s": 1, "action": "pause"}], "local", "a pause fault needs pause_s"),
        ([{"at_s": 1, "action": "kill", "pause_s": 3}], "local", "pause_s only applies to pause faults"),
        ([{"at_s": 10, "action": "kill"}], "local", "a fault at_s=10 falls after the stage ends"),
        ([{"at_s": 1, "action": "kill"}], "external", "the external target's replicas are not the harness's"),
        ([{"at_s": 1, "action": "pause", "pause_s": 2}], "kubernetes", "pause is not available on the kubernetes"),
        ([{"at_s": 1, "action": "explode"}], "local", r"stages\[0\]\.faults\[0\]\.action"),
    ],
)
def test_a_fault_the_target_cannot_have_is_refused_naming_the_field(
    faults: list[dict[str, Any]], kind: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        scenario([stage("a", 10, faults)], kind)


def test_faults_happen_at_their_offset_from_the_load_start_in_time_order() -> None:
    loaded = scenario(
        [
            stage("warm", 10, []),
            stage("a", 20, [{"at_s": 15, "action": "kill"}, {"at_s": 2, "action": "pause", "pause_s": 3}]),
            stage("b", 5, [{"at_s": 0, "action": "kill", "replica": 2}]),
        ]
    )
    planned = fault_times(loaded.stages)
    assert [(p.offset_s, p.stage, p.fault.action) for p in planned] == [
        (12.0, "a", "pause"),
        (25.0, "a", "kill"),
        (30.0, "b", "kill"),
    ]


def info(name: str, started_s: float, ready: bool = True) -> ReplicaInfo:
    return ReplicaInfo(id=name, base_url="http://127.0.0.1:1", ready=ready, started_at_s=started_s)


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=6), st.integers(1, 7))
def test_the_nth_ready_replica_is_the_nth_oldest_ready_one(replicas: list[tuple[float, bool]], nth: int) -> None:
    infos = [info(f"r-{i}", started, ready) for i, (started, ready) in enumerate(replicas)]
    chosen = choose_replica(infos, nth)
    ready = sorted((r for r in infos if r.ready), key=lambda r: (r.started_at_s, r.id))
    assert chosen == (ready[nth - 1].id if nth <= len(ready) else None)


# --------------------------------------------------------------------------- the injector


class RecordingTarget:
    """Stands in for a target at the injector's boundary: records what it was asked to do (the real local,
    Docker and Kubernetes actions run in the integration tests)."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse

    def kill_replica(self, replica_id: str) -> None:
        if self.refuse:
            raise DeployError("the platform refused")
        self.calls.append(("kill", replica_id))

    def pause_replica(self, replica_id: str) -> None:
        self.calls.append(("pause", replica_id))

    def resume_replica(self, replica_id: str) -> None:
        self.calls.append(("resume", replica_id))


class FakeClock:
    """Time that moves only when the injector waits, so the order of actions is exact."""

    def __init__(self) -> None:
        self.now_s = 1000.0


def run_injector(target: RecordingTarget, stages: list[dict[str, Any]]) -> list[Any]:
    events: list[Any] = []
    clock = FakeClock()
    injector = FaultInjector(
        target,
        lambda: [info("replica-1", 1.0), info("replica-2", 2.0)],
        fault_times(scenario(stages).stages),
        events.append,
        clock=lambda: clock.now_s,
    )

    def wait(timeout_s: float | None = None) -> bool:
        clock.now_s += timeout_s or 0.0
        return False

    injector._stop.wait = wait  # type: ignore[method-assign]
    injector.start(clock.now_s)
    assert injector._thread is not None
    injector._thread.join(10)
    injector.stop()
    return events


def test_the_injector_kills_pauses_and_resumes_in_time_order_and_records_each() -> None:
    target = RecordingTarget()
    events = run_injector(
        target,
        [
            stage(
                "a", 30, [{"at_s": 5, "action": "pause", "replica": 2, "pause_s": 10}, {"at_s": 8, "action": "kill"}]
            ),
            stage("b", 30, [{"at_s": 1, "action": "kill", "replica": 3}]),
        ],
    )
    assert target.calls == [("pause", "replica-2"), ("kill", "replica-1"), ("resume", "replica-2")]
    assert events == [
        FaultInjected("a", "pause", "replica-2", 10.0),
        FaultInjected("a", "kill", "replica-1"),
        FaultEnded("a", "pause", "replica-2"),
        FaultInjected("b", "kill", None, None, "no such ready replica"),
    ]


def test_a_refused_fault_is_recorded_with_the_reason() -> None:
    events = run_injector(RecordingTarget(refuse=True), [stage("a", 30, [{"at_s": 5, "action": "kill"}])])
    assert events == [FaultInjected("a", "kill", "replica-1", None, "the platform refused")]


# --------------------------------------------------------------------------- the analysis


WINDOW = StageWindow(name="steady", start_s=100.0, end_s=160.0, judged=True, users=None, arrival_rate_rps=20.0)


def interval(start_s: float, requests: int, failures: int) -> ClientInterval:
    return ClientInterval(
        t_start_s=start_s,
        t_end_s=start_s + 1.0,
        process=0,
        stage="steady",
        users=0,
        offered_rps=20.0,
        scheduled=requests,
        requests=requests,
        failures=failures,
        errors={},
        latency_hdr="",
    )


INTERVALS = [interval(100.0 + i, 20, 5 if 110 <= 100 + i < 114 else 0) for i in range(60)]


def objective(stage: str, status: Status) -> ObjectiveResult:
    return ObjectiveResult("error_rate <= 0.05", "error_rate", stage, status, 0.05, "max", 0.01, None, None, "")


def test_a_killed_replica_counts_its_errors_until_it_is_ready_again() -> None:
    events = [
        RunEvent(110.0, FaultInjected("steady", "kill", "replica-1")),
        RunEvent(110.2, ReplicaCrashed("replica-1", exit_code=-9, injected=True)),
        RunEvent(112.0, ReplicaReady("replica-2", 1.0)),  # another replica's readiness does not end it
        RunEvent(124.5, ReplicaReady("replica-1", 12.0)),
    ]
    held = [objective("steady", Status.PASS)]
    (impact,) = fault_impacts([WINDOW], INTERVALS, events, held)
    assert impact == FaultImpact("steady", "kill", "replica-1", 10.0, 15 * 20, 4 * 5, 14.5, True)
    assert fault_line(impact) == (
        "kill replica-1 at 10.0 s into 'steady': 20 of 300 requests failed (6.7%) while it lasted; "
        "recovered in 14.5 s; objectives held"
    )


def test_a_killed_pod_recovers_when_its_replacement_is_ready() -> None:
    events = [
        RunEvent(110.0, FaultInjected("steady", "kill", "pod-a")),
        RunEvent(130.0, ReplicaReady("pod-b", 9.0)),
    ]
    (impact,) = fault_impacts([WINDOW], INTERVALS, events)
    assert impact.recovered_s == 20.0 and impact.objectives_held is None


def test_a_pause_recovers_when_resumed_or_when_ready_again_after_going_unready() -> None:
    short = [
        RunEvent(110.0, FaultInjected("steady", "pause", "replica-2", 2.0)),
        RunEvent(112.0, FaultEnded("steady", "pause", "replica-2")),
    ]
    assert fault_impacts([WINDOW], INTERVALS, short)[0].recovered_s == 2.0
    long = [
        RunEvent(110.0, FaultInjected("steady", "pause", "replica-2", 8.0)),
        RunEvent(113.0, ReplicaUnready("replica-2", 3)),
        RunEvent(118.0, FaultEnded("steady", "pause", "replica-2")),
        RunEvent(119.0, ReplicaReady("replica-2", None)),
    ]
    failed = [objective("steady", Status.FAIL)]
    (impact,) = fault_impacts([WINDOW], INTERVALS, long, failed)
    assert impact.recovered_s == 9.0 and impact.objectives_held is False


def test_a_fault_never_recovered_counts_until_the_stage_ends() -> None:
    (impact,) = fault_impacts([WINDOW], INTERVALS, [RunEvent(150.0, FaultInjected("steady", "kill", "replica-1"))])
    assert impact.recovered_s is None and impact.requests == 10 * 20
    assert "not recovered by the end" in fault_line(impact)


@given(st.floats(min_value=0.1, max_value=300), st.integers(min_value=0, max_value=100))
def test_the_restart_back_off_doubles_from_its_start_up_to_five_minutes(initial_s: float, restarts: int) -> None:
    backoff_s = restart_backoff_s(initial_s, restarts)
    assert backoff_s == min(MAX_RESTART_BACKOFF_S, initial_s * 2.0**restarts)
    assert restart_backoff_s(initial_s, 0) == initial_s
    assert backoff_s <= restart_backoff_s(initial_s, restarts + 1) <= MAX_RESTART_BACKOFF_S
