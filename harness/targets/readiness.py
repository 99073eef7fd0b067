"""The readiness rule of every target that probes its own replicas, with Kubernetes' probe semantics.

One successful probe makes a replica ready; `failure_threshold` consecutive failed probes, each bounded by
`timeout_s`, make it unready; probes are `period_s` apart. Pure: the caller probes and passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ProbeRule:
    """How a replica is probed: Kubernetes' defaults (timeoutSeconds 1, failureThreshold 3), period shortened.

    The rule is one; its timings are per deployment, as in Kubernetes. The model-service chart's readiness
    probe (charts/model-service/values.yaml) allows 5 s per probe every 2 s, since the kubelet's probes of a
    quarter-core pod under a load step took over 1 s and an unready pod leaves the HPA without its CPU. Here
    the shorter timeout and period let a killed or paused replica leave the load balancing sooner (the fault
    stages time its recovery); a replica too slow to answer in 1 s is unready, as under Kubernetes' defaults.
    """

    timeout_s: float = 1.0
    failure_threshold: int = 3
    period_s: float = 1.0


READINESS_PROBE = ProbeRule()


@dataclass(frozen=True)
class Readiness:
    """What the probes so far say about one replica."""

    ready: bool = False
    # Failed probes since the last success.
    failures: int = 0
    # When a probe first succeeded; kept when the replica later turns unready.
    ready_at_s: float | None = None

    @property
    def became_ready_once(self) -> bool:
        return self.ready_at_s is not None


def observe(state: Readiness, ok: bool, now_s: float, rule: ProbeRule = READINESS_PROBE) -> Readiness:
    """The replica's readiness after one probe that succeeded (`ok`) or failed at `now_s`."""
    if ok:
        return Readiness(ready=True, failures=0, ready_at_s=state.ready_at_s if state.became_ready_once else now_s)
    failures = state.failures + 1
    return replace(state, failures=failures, ready=state.ready and failures < rule.failure_threshold)


def next_probe_in_s(state: Readiness, startup_poll_s: float, rule: ProbeRule = READINESS_PROBE) -> float:
    """Seconds until the next probe: `startup_poll_s` until the replica was first ready (which keeps startup
    times precise), then the rule's period, as a kubelet probes."""
    return startup_poll_s if not state.became_ready_once else rule.period_s
