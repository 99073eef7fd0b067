"""The impact of injected faults (stages[].faults), from a run's records: pure."""

from __future__ import annotations

from collections.abc import Sequence

from harness.model import (
    ClientInterval,
    FaultEnded,
    FaultImpact,
    FaultInjected,
    ObjectiveResult,
    ReplicaReady,
    ReplicaUnready,
    RunEvent,
    StageWindow,
    Status,
)


def _recovered_at(fault_t_s: float, fault: FaultInjected, events: Sequence[RunEvent]) -> float | None:
    """When the hit replica served again: a killed one's next readiness (a restarted process keeps its
    name; a Kubernetes replacement pod has a new one, so any readiness counts there); a paused one when it
    was resumed, or its next readiness if it went unready meanwhile."""
    later = sorted((e for e in events if e.t_s >= fault_t_s), key=lambda e: e.t_s)
    if fault.action == "kill":
        names = {e.detail.replica for e in later if isinstance(e.detail, ReplicaReady)}
        same = fault.replica in names
        return next(
            (
                e.t_s
                for e in later
                if isinstance(e.detail, ReplicaReady) and (not same or e.detail.replica == fault.replica)
            ),
            None,
        )
    ended = next((e.t_s for e in later if isinstance(e.detail, FaultEnded) and e.detail.replica == fault.replica), None)
    if ended is None:
        return None
    went_unready = any(
        isinstance(e.detail, ReplicaUnready) and e.detail.replica == fault.replica and e.t_s <= ended for e in later
    )
    if not went_unready:
        return ended
    return next(
        (e.t_s for e in later if isinstance(e.detail, ReplicaReady) and e.detail.replica == fault.replica), None
    )


def fault_impacts(
    windows: Sequence[StageWindow],
    intervals: Sequence[ClientInterval],
    events: Sequence[RunEvent],
    objectives: Sequence[ObjectiveResult] = (),
) -> list[FaultImpact]:
    """One FaultImpact per injected fault, in time order. Requests and failures count the client intervals
    whose middle falls between the fault and its recovery (or the stage's end)."""
    by_name = {window.name: window for window in windows}
    impacts = []
    for event in sorted(events, key=lambda e: e.t_s):
        fault = event.detail
        if not isinstance(fault, FaultInjected):
            continue
        window = by_name.get(fault.stage)
        stage_start_s = window.start_s if window else event.t_s
        stage_results = [o for o in objectives if o.stage == fault.stage]
        held = None if not stage_results else all(o.status != Status.FAIL for o in stage_results)
        if fault.error is not None:
            impacts.append(
                FaultImpact(
                    fault.stage, fault.action, fault.replica, event.t_s - stage_start_s, 0, 0, None, held, fault.error
                )
            )
            continue
        recovered_t_s = _recovered_at(event.t_s, fault, events)
        until_s = recovered_t_s if recovered_t_s is not None else (window.end_s if window else event.t_s)
        during = [i for i in intervals if event.t_s <= (i.t_start_s + i.t_end_s) / 2 <= until_s]
        impacts.append(
            FaultImpact(
                stage=fault.stage,
                action=fault.action,
                replica=fault.replica,
                at_s=event.t_s - stage_start_s,
                requests=sum(i.requests for i in during),
                failures=sum(i.failures for i in during),
                recovered_s=None if recovered_t_s is None else recovered_t_s - event.t_s,
                objectives_held=held,
            )
        )
    return impacts


def fault_line(impact: FaultImpact) -> str:
    """One sentence for the reports."""
    head = f"{impact.action} {impact.replica or 'a replica'} at {impact.at_s:.1f} s into '{impact.stage}'"
    if impact.error is not None:
        return f"{head}: not injected ({impact.error})"
    share = f" ({impact.failures / impact.requests:.1%})" if impact.requests else ""
    recovered = (
        f"recovered in {impact.recovered_s:.1f} s" if impact.recovered_s is not None else "not recovered by the end"
    )
    held = {True: "objectives held", False: "objectives failed", None: "no objective on the stage"}[
        impact.objectives_held
    ]
    return f"{head}: {impact.failures} of {impact.requests} requests failed{share} while it lasted; {recovered}; {held}"
