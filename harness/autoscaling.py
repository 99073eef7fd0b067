"""The Kubernetes autoscaling/v2 HorizontalPodAutoscaler algorithm (kube-controller-manager v1.34) as a pure function.

One `decide` call is one controller sync; the caller supplies the clock and carries `AutoscalerState` between calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Literal

from harness.config import (
    AutoscalingConfig,
    HPAScalingPolicy,
    HPAScalingRules,
    MetricSpec,
)
from harness.errors import ConfigError
from harness.model import MetricProposal
from harness.quantity import parse_quantity

# kube-controller-manager --horizontal-pod-autoscaler-downscale-stabilization; AutoscalingConfig has no field for it.
DOWNSCALE_STABILIZATION_S = 300.0

# What capped the desired replica count (None: nothing did).
LIMIT_MAX_REPLICAS = "maxReplicas"
LIMIT_MIN_REPLICAS = "minReplicas"
LIMIT_SCALE_UP_POLICY = "scaleUp policy"
LIMIT_SCALE_DOWN_POLICY = "scaleDown policy"
LIMIT_SCALE_UP_DISABLED = "scaleUp disabled"
LIMIT_SCALE_DOWN_DISABLED = "scaleDown disabled"
LIMIT_SCALE_UP_STABILIZATION = "scaleUp stabilization window"
LIMIT_SCALE_DOWN_STABILIZATION = "scaleDown stabilization window"

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
SelectPolicy = Literal["Max", "Min", "Disabled"]


# --------------------------------------------------------------------------- public data


@dataclass(frozen=True)
class CpuSample:
    """One resource-metrics CPU sample of a pod: mean usage over [timestamp_s - window_s, timestamp_s]."""

    usage_cores: float
    timestamp_s: float
    window_s: float


@dataclass(frozen=True)
class PodObservation:
    """What the controller sees of one pod of the scale target at sync time (all times on the `now_s` clock)."""

    name: str
    ready: bool  # status of the pod's Ready condition
    ready_transition_s: float | None  # lastTransitionTime of the Ready condition; None: no Ready condition yet
    started_at_s: float | None  # status.startTime; None: not started
    cpu: CpuSample | None = None  # None: the resource metrics API has no sample for this pod
    pod_metrics: Mapping[str, float | None] = field(default_factory=dict)  # Pods metric name -> value; None: missing
    phase: PodPhase = "Running"
    deleting: bool = False  # deletionTimestamp is set


@dataclass(frozen=True)
class Recommendation:
    """An unstabilised desired replica count, kept for the stabilization windows."""

    time_s: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A rescale the controller made; replica_change is the absolute size of the change."""

    time_s: float
    replica_change: int
    outdated: bool = False  # older than the direction's longest policy period: the slot may be reused


@dataclass(frozen=True)
class AutoscalerState:
    """The controller's in-memory history for one HPA; start with `AutoscalerState()`."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()


@dataclass(frozen=True)
class ScalingDecision:
    """The outcome of one sync: the replica count to set, why, and the state to pass to the next sync."""

    time_s: float
    current_replicas: int
    desired_replicas: int
    proposals: tuple[MetricProposal, ...]
    limited_by: str | None
    reason: str
    state: AutoscalerState


# --------------------------------------------------------------------------- behavior resolution


@dataclass(frozen=True)
class _Policy:
    type: Literal["Pods", "Percent"]
    value: int
    period_s: int


@dataclass(frozen=True)
class _Rules:
    stabilization_window_s: float
    select_policy: SelectPolicy
    policies: tuple[_Policy, ...]


@dataclass(frozen=True)
class _Tolerances:
    scale_down: float
    scale_up: float

    def is_within(self, usage_ratio: float) -> bool:
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


# API-server defaults (pkg/apis/autoscaling/v2/defaults.go), applied per field when `behavior:` is present.
_DEFAULT_SCALE_UP = _Rules(0.0, "Max", (_Policy("Pods", 4, 15), _Policy("Percent", 100, 15)))
_DEFAULT_SCALE_DOWN = _Rules(DOWNSCALE_STABILIZATION_S, "Max", (_Policy("Percent", 100, 15),))


def _resolve_rules(rules: HPAScalingRules | None, default: _Rules, where: str) -> _Rules:
    if rules is None:
        return default
    policies = default.policies
    if rules.policies is not None:
        if not rules.policies:
            raise ConfigError(f"{where}.policies is empty; Kubernetes requires at least one policy (or omit the key)")
        policies = tuple(_policy(p) for p in rules.policies)
    return _Rules(
        stabilization_window_s=(
            default.stabilization_window_s
            if rules.stabilization_window_seconds is None
            else float(rules.stabilization_window_seconds)
        ),
        select_policy=default.select_policy if rules.select_policy is None else rules.select_policy,
        policies=policies,
    )


def _policy(policy: HPAScalingPolicy) -> _Policy:
    return _Policy(policy.type, policy.value, policy.period_seconds)


def _tolerances(config: AutoscalingConfig) -> _Tolerances:
    # tolerancesForHpa: the controller flag for both directions, overridden per direction by behavior.*.tolerance.
    down = up = config.tolerance
    behavior = config.behavior
    if behavior is not None:
        if behavior.scale_down is not None and behavior.scale_down.tolerance is not None:
            down = parse_quantity(behavior.scale_down.tolerance)
        if behavior.scale_up is not None and behavior.scale_up.tolerance is not None:
            up = parse_quantity(behavior.scale_up.tolerance)
    return _Tolerances(scale_down=down, scale_up=up)


# --------------------------------------------------------------------------- replica calculator


def _milli(value: float) -> int:
    """resource.Quantity.MilliValue(): the value in thousandths, rounded up (via nano units to drop float noise)."""
    nano = round(value * 1e9)
    return -((-nano) // 1_000_000)


def _go_div(numerator: int, denominator: int) -> int:
    """Go integer division, which truncates toward zero."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator >= 0) else -quotient


_NO_METRICS = "did not receive metrics for targeted pods (pods might be unready)"


class _MetricError(Exception):
    """A metric that cannot produce a replica count this sync (HPA: an invalid metric)."""


@dataclass(frozen=True)
class _Groups:
    ready_count: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def _group_pods(
    pods: Sequence[PodObservation],
    has_metric: AbstractSet[str],
    cpu_samples: Mapping[str, CpuSample] | None,
    now_s: float,
    config: AutoscalingConfig,
) -> _Groups:
    """groupPods: readiness only matters for CPU; other metrics only set aside Pending pods."""
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        if pod.name not in has_metric:
            missing.add(pod.name)
            continue
        if cpu_samples is not None:
            sample = cpu_samples[pod.name]
            if pod.ready_transition_s is None or pod.started_at_s is None:
                is_unready = True
            elif pod.started_at_s + config.cpu_initialization_period_seconds > now_s:
                # Still initialising: count only a Ready pod whose whole sample window came after it turned Ready.
                is_unready = (not pod.ready) or sample.timestamp_s < pod.ready_transition_s + sample.window_s
            else:
                # Ignore a pod that went unready soon after start and has never been Ready since.
                is_unready = (not pod.ready) and (
                    pod.started_at_s + config.initial_readiness_delay_seconds > pod.ready_transition_s
                )
            if is_unready:
                unready.add(pod.name)
                continue
        ready_count += 1
    return _Groups(ready_count, frozenset(unready), frozenset(missing), frozenset(ignored))


@dataclass(frozen=True)
class _Calculation:
    replicas: int
    current: int  # the reported metric value (before assumptions for missing/unready pods), milli or percent
    held_because: str | None = None  # why replicas stayed at the current count


def _utilization_ratio(
    metrics: Mapping[str, int], requests_milli: Mapping[str, int], target_percent: int
) -> tuple[float, int]:
    metrics_total = 0
    requests_total = 0
    for name, value in metrics.items():
        if name in requests_milli:
            metrics_total += value
            requests_total += requests_milli[name]
    if requests_total == 0:
        raise _MetricError("no metrics returned matched known pods")
    utilization = _go_div(metrics_total * 100, requests_total)
    return utilization / target_percent, utilization


def _usage_ratio(metrics: Mapping[str, int], target_milli: int) -> tuple[float, int]:
    usage = _go_div(sum(metrics.values()), len(metrics))
    return usage / target_milli, usage


def _calculate(
    metrics: dict[str, int],
    groups: _Groups,
    current_replicas: int,
    tolerances: _Tolerances,
    ratio_of: Callable[[Mapping[str, int]], tuple[float, int]],
    fallback_of: Callable[[str], int],
) -> _Calculation:
    """The shared body of GetResourceReplicas and calcPlainMetricReplicas."""
    for name in groups.ignored | groups.unready:
        metrics.pop(name, None)
    if not metrics:
        raise _MetricError(_NO_METRICS)
    usage_ratio, current = ratio_of(metrics)

    scale_up_with_unready = bool(groups.unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.is_within(usage_ratio):
            return _Calculation(current_replicas, current, "within tolerance")
        return _Calculation(math.ceil(usage_ratio * groups.ready_count), current)

    if groups.missing:
        if usage_ratio < 1.0:
            for name in groups.missing:
                metrics[name] = fallback_of(name)
        elif usage_ratio > 1.0:
            for name in groups.missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in groups.unready:
            metrics[name] = 0

    new_ratio, _ = ratio_of(metrics)
    reverses = (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio)
    if tolerances.is_within(new_ratio) or reverses:
        why = "within tolerance" if tolerances.is_within(new_ratio) else "direction reverses"
        return _Calculation(current_replicas, current, f"{why} once missing/unready pods are assumed at 0%/100%")
    new_replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (new_ratio > 1.0 and new_replicas < current_replicas):
        return _Calculation(current_replicas, current, "counting missing/unready pods reverses the direction")
    return _Calculation(new_replicas, current)


def _cpu_proposal(
    spec: MetricSpec,
    *,
    pods: Sequence[PodObservation],
    current_replicas: int,
    cpu_request_cores: float | None,
    tolerances: _Tolerances,
    now_s: float,
    config: AutoscalingConfig,
) -> MetricProposal:
    """GetResourceReplicas (Utilization target) or GetRawResourceReplicas (AverageValue target) for CPU."""
    assert spec.resource is not None
    target = spec.resource.target
    # An AverageValue target wins over a Utilization one, as in computeStatusForResourceMetricGeneric.
    if target.average_value is not None:
        utilization = False
        target_number = _milli(parse_quantity(target.average_value))
        target_value = target_number / 1000
    elif target.average_utilization is not None:
        utilization = True
        target_number = target.average_utilization
        target_value = float(target_number)
    else:
        reason = "invalid resource metric source: neither an average utilization target nor an average value target"
        return MetricProposal("cpu", None, None, None, reason)

    def invalid(reason: str) -> MetricProposal:
        return MetricProposal("cpu", None, target_value, None, reason)

    if not pods:
        return invalid("no pods returned by selector while calculating replica count")
    samples = {pod.name: pod.cpu for pod in pods if pod.cpu is not None}
    metrics = {name: _milli(sample.usage_cores) for name, sample in samples.items()}
    groups = _group_pods(pods, samples.keys(), samples, now_s, config)
    ratio_of: Callable[[Mapping[str, int]], tuple[float, int]]
    fallback_of: Callable[[str], int]
    if utilization:
        # The request is read after the "no metrics" check, as in GetResourceReplicas.
        if not metrics.keys() - groups.ignored - groups.unready:
            return invalid(_NO_METRICS)
        if cpu_request_cores is None:
            return invalid("missing request for cpu")
        requests = {pod.name: _milli(cpu_request_cores) for pod in pods}

        def ratio_of(m: Mapping[str, int]) -> tuple[float, int]:
            return _utilization_ratio(m, requests, target_number)

        def fallback_of(name: str) -> int:
            # A pod missing metrics on a scale-down uses its whole request, or the target if that is above 100%.
            return _go_div(requests[name] * max(100, target_number), 100)

    else:

        def ratio_of(m: Mapping[str, int]) -> tuple[float, int]:
            return _usage_ratio(m, target_number)

        def fallback_of(name: str) -> int:
            return target_number

    try:
        calc = _calculate(metrics, groups, current_replicas, tolerances, ratio_of, fallback_of)
    except _MetricError as error:
        return invalid(str(error))
    current = float(calc.current) if utilization else calc.current / 1000
    return MetricProposal("cpu", current, target_value, calc.replicas, _proposal_reason(calc, current_replicas))


def _pods_proposal(
    spec: MetricSpec,
    *,
    pods: Sequence[PodObservation],
    current_replicas: int,
    tolerances: _Tolerances,
    now_s: float,
    config: AutoscalingConfig,
) -> MetricProposal:
    """GetMetricReplicas: a per-pod custom metric averaged over the pods against an AverageValue target."""
    assert spec.pods is not None
    name = spec.pods.metric.name
    target = spec.pods.target
    if target.type != "AverageValue" or target.average_value is None:
        return MetricProposal(
            name, None, None, None, f"a Pods metric needs target type AverageValue, not {target.type}"
        )
    target_milli = _milli(parse_quantity(target.average_value))
    if not pods:
        return MetricProposal(
            name, None, target_milli / 1000, None, "no pods returned by selector while calculating replica count"
        )
    metrics = {pod.name: _milli(value) for pod in pods if (value := pod.pod_metrics.get(name)) is not None}
    groups = _group_pods(pods, metrics.keys(), None, now_s, config)
    try:
        calc = _calculate(
            metrics,
            groups,
            current_replicas,
            tolerances,
            lambda m: _usage_ratio(m, target_milli),
            lambda _pod: target_milli,  # a pod missing metrics on a scale-down is at exactly the target
        )
    except _MetricError as error:
        return MetricProposal(name, None, target_milli / 1000, None, f"unable to get metric {name}: {error}")
    return MetricProposal(
        name, calc.current / 1000, target_milli / 1000, calc.replicas, _proposal_reason(calc, current_replicas)
    )


def _proposal_reason(calc: _Calculation, current_replicas: int) -> str:
    if calc.held_because is not None:
        return calc.held_because
    if calc.replicas > current_replicas:
        return "above target"
    if calc.replicas < current_replicas:
        return "below target"
    return "at target"


def _proposals(
    config: AutoscalingConfig,
    *,
    pods: Sequence[PodObservation],
    current_replicas: int,
    cpu_request_cores: float | None,
    tolerances: _Tolerances,
    now_s: float,
) -> tuple[MetricProposal, ...]:
    proposals: list[MetricProposal] = []
    for spec in config.metrics:
        if spec.type == "Resource" and spec.resource is not None and spec.resource.name == "cpu":
            proposals.append(
                _cpu_proposal(
                    spec,
                    pods=pods,
                    current_replicas=current_replicas,
                    cpu_request_cores=cpu_request_cores,
                    tolerances=tolerances,
                    now_s=now_s,
                    config=config,
                )
            )
        elif spec.type == "Pods" and spec.pods is not None:
            proposals.append(
                _pods_proposal(
                    spec,
                    pods=pods,
                    current_replicas=current_replicas,
                    tolerances=tolerances,
                    now_s=now_s,
                    config=config,
                )
            )
        else:
            resource = spec.resource.name if spec.resource is not None else spec.type
            proposals.append(
                MetricProposal(
                    resource, None, None, None, f"unable to get metrics for resource {resource}: not observed"
                )
            )
    return tuple(proposals)


# --------------------------------------------------------------------------- normalisation (horizontal.go)


def _stabilize_legacy(
    recommendations: tuple[Recommendation, ...], now_s: float, desired: int
) -> tuple[int, tuple[Recommendation, ...]]:
    """stabilizeRecommendation (no `behavior:`): the highest recommendation within the downscale window."""
    cutoff = now_s - DOWNSCALE_STABILIZATION_S
    highest = desired
    old_index: int | None = None
    for index, rec in enumerate(recommendations):
        if rec.time_s < cutoff:
            old_index = index
        elif rec.replicas > highest:
            highest = rec.replicas
    return highest, _record(recommendations, old_index, Recommendation(now_s, desired))


def _stabilize_with_behaviors(
    recommendations: tuple[Recommendation, ...],
    now_s: float,
    current: int,
    desired: int,
    up: _Rules,
    down: _Rules,
) -> tuple[int, tuple[Recommendation, ...]]:
    """stabilizeRecommendationWithBehaviors: scale up to the window's lowest, down to the window's highest."""
    up_cutoff = now_s - up.stabilization_window_s
    down_cutoff = now_s - down.stabilization_window_s
    up_recommendation = desired
    down_recommendation = desired
    old_index: int | None = None
    for index, rec in enumerate(recommendations):
        if rec.time_s > up_cutoff:
            up_recommendation = min(rec.replicas, up_recommendation)
        if rec.time_s > down_cutoff:
            down_recommendation = max(rec.replicas, down_recommendation)
        if rec.time_s < up_cutoff and rec.time_s < down_cutoff:
            old_index = index
    recommendation = max(current, up_recommendation)
    recommendation = min(recommendation, down_recommendation)
    return recommendation, _record(recommendations, old_index, Recommendation(now_s, desired))


def _record(
    recommendations: tuple[Recommendation, ...], old_index: int | None, new: Recommendation
) -> tuple[Recommendation, ...]:
    # The controller overwrites one expired slot instead of growing the list.
    if old_index is None:
        return (*recommendations, new)
    return (*recommendations[:old_index], new, *recommendations[old_index + 1 :])


def _change_in_period(events: tuple[ScaleEvent, ...], now_s: float, period_s: float) -> int:
    cutoff = now_s - period_s
    return sum(event.replica_change for event in events if event.time_s > cutoff)


def _scale_up_limit(current: int, state: AutoscalerState, now_s: float, rules: _Rules) -> int:
    """calculateScaleUpLimitWithScalingRules: the most replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current
    proposals: list[int] = []
    for policy in rules.policies:
        added = _change_in_period(state.scale_up_events, now_s, policy.period_s)
        removed = _change_in_period(state.scale_down_events, now_s, policy.period_s)
        period_start = current - added + removed
        if policy.type == "Pods":
            proposals.append(period_start + policy.value)
        else:
            # Rounded up so that a small percentage still allows adding a pod.
            proposals.append(math.ceil(period_start * (1 + policy.value / 100)))
    return min(proposals) if rules.select_policy == "Min" else max(proposals)


def _scale_down_limit(current: int, state: AutoscalerState, now_s: float, rules: _Rules) -> int:
    """calculateScaleDownLimitWithBehaviors: the fewest replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current
    proposals: list[int] = []
    for policy in rules.policies:
        added = _change_in_period(state.scale_up_events, now_s, policy.period_s)
        removed = _change_in_period(state.scale_down_events, now_s, policy.period_s)
        period_start = current - added + removed
        if policy.type == "Pods":
            proposals.append(period_start - policy.value)
        else:
            proposals.append(int(period_start * (1 - policy.value / 100)))
    # For scaling down, the smallest change ("Min") is the highest replica count.
    return max(proposals) if rules.select_policy == "Min" else min(proposals)


def _limit_with_behavior_rate(
    current: int,
    desired: int,
    config: AutoscalingConfig,
    state: AutoscalerState,
    now_s: float,
    up: _Rules,
    down: _Rules,
) -> tuple[int, str | None]:
    """convertDesiredReplicasWithBehaviorRate."""
    if desired > current:
        limit = max(_scale_up_limit(current, state, now_s, up), current)
        if config.max_replicas > limit:
            allowed = limit
            why = LIMIT_SCALE_UP_DISABLED if up.select_policy == "Disabled" else LIMIT_SCALE_UP_POLICY
        else:
            allowed, why = config.max_replicas, LIMIT_MAX_REPLICAS
        if desired > allowed:
            return allowed, why
    elif desired < current:
        limit = min(_scale_down_limit(current, state, now_s, down), current)
        if config.min_replicas < limit:
            allowed = limit
            why = LIMIT_SCALE_DOWN_DISABLED if down.select_policy == "Disabled" else LIMIT_SCALE_DOWN_POLICY
        else:
            allowed, why = config.min_replicas, LIMIT_MIN_REPLICAS
        if desired < allowed:
            return allowed, why
    return desired, None


def _limit_legacy(current: int, desired: int, config: AutoscalingConfig) -> tuple[int, str | None]:
    """convertDesiredReplicasWithRules (no `behavior:`): at most double, or 4, per sync; within min/max."""
    scale_up_limit = int(max(2.0 * current, 4.0))
    if config.max_replicas > scale_up_limit:
        maximum, why = scale_up_limit, LIMIT_SCALE_UP_POLICY
    else:
        maximum, why = config.max_replicas, LIMIT_MAX_REPLICAS
    if desired < config.min_replicas:
        return config.min_replicas, LIMIT_MIN_REPLICAS
    if desired > maximum:
        return maximum, why
    return desired, None


def _store_event(events: tuple[ScaleEvent, ...], rules: _Rules, now_s: float, change: int) -> tuple[ScaleEvent, ...]:
    """storeScaleEvent: mark events older than the longest policy period outdated and reuse the last such slot."""
    longest_period_s = max((policy.period_s for policy in rules.policies), default=0)
    cutoff = now_s - longest_period_s
    marked = tuple(replace(event, outdated=True) if event.time_s < cutoff else event for event in events)
    old_index: int | None = None
    for index, event in enumerate(marked):
        if event.outdated:
            old_index = index
    new = ScaleEvent(now_s, change)
    if old_index is None:
        return (*marked, new)
    return (*marked[:old_index], new, *marked[old_index + 1 :])


# --------------------------------------------------------------------------- the sync


def decide(
    config: AutoscalingConfig,
    *,
    now_s: float,
    current_replicas: int,
    pods: Sequence[PodObservation],
    cpu_request_cores: float | None,
    state: AutoscalerState,
) -> ScalingDecision:
    """Run one HPA controller sync: current replicas (the target's spec.replicas) and pod observations -> decision."""
    behavior = config.behavior
    up = down = None
    if behavior is not None:
        up = _resolve_rules(behavior.scale_up, _DEFAULT_SCALE_UP, "autoscaling.behavior.scaleUp")
        down = _resolve_rules(behavior.scale_down, _DEFAULT_SCALE_DOWN, "autoscaling.behavior.scaleDown")
    if not state.recommendations:
        state = replace(state, recommendations=(Recommendation(now_s, current_replicas),))

    def unchanged(reason: str, proposals: tuple[MetricProposal, ...] = ()) -> ScalingDecision:
        return ScalingDecision(now_s, current_replicas, current_replicas, proposals, None, reason, state)

    if not config.enabled:
        return unchanged("autoscaling.enabled is false")
    if current_replicas == 0:
        return unchanged("scaling is disabled since the replica count of the target is zero")

    proposals: tuple[MetricProposal, ...] = ()
    limited_by: str | None = None
    if current_replicas > config.max_replicas:
        desired, limited_by = config.max_replicas, LIMIT_MAX_REPLICAS
        reason = "Current number of replicas above Spec.MaxReplicas"
    elif current_replicas < config.min_replicas:
        desired, limited_by = config.min_replicas, LIMIT_MIN_REPLICAS
        reason = "Current number of replicas below Spec.MinReplicas"
    else:
        proposals = _proposals(
            config,
            pods=pods,
            current_replicas=current_replicas,
            cpu_request_cores=cpu_request_cores,
            tolerances=_tolerances(config),
            now_s=now_s,
        )
        metric_desired = max((p.replicas for p in proposals if p.replicas is not None), default=0)
        invalid = [p for p in proposals if p.replicas is None]
        # With an invalid metric, only scale up: the missing metric might have asked for more.
        if len(invalid) == len(proposals) or (invalid and metric_desired < current_replicas):
            first = invalid[0]
            return unchanged(
                f"invalid metrics ({len(invalid)} invalid out of {len(proposals)}), first error is: "
                f"{first.metric}: {first.reason}",
                proposals,
            )
        prenormalized = metric_desired
        if prenormalized > current_replicas:
            top = next(p for p in proposals if p.replicas == metric_desired)
            reason = f"{top.metric} above target"
        elif prenormalized < current_replicas:
            reason = "All metrics below target"
        else:
            reason = "All metrics within tolerance of target"

        if up is None or down is None:
            stabilized, recommendations = _stabilize_legacy(state.recommendations, now_s, prenormalized)
            state = replace(state, recommendations=recommendations)
            desired, limited_by = _limit_legacy(current_replicas, stabilized, config)
        else:
            stabilized, recommendations = _stabilize_with_behaviors(
                state.recommendations, now_s, current_replicas, prenormalized, up, down
            )
            state = replace(state, recommendations=recommendations)
            desired, limited_by = _limit_with_behavior_rate(
                current_replicas, stabilized, config, state, now_s, up, down
            )
        if limited_by is None and stabilized != prenormalized:
            # Without `behavior:` only the scale-down window exists (it keeps the highest recent recommendation).
            scaling_up = prenormalized >= current_replicas and up is not None
            limited_by = LIMIT_SCALE_UP_STABILIZATION if scaling_up else LIMIT_SCALE_DOWN_STABILIZATION

    if desired != current_replicas and up is not None and down is not None:
        if desired > current_replicas:
            state = replace(
                state,
                scale_up_events=_store_event(state.scale_up_events, up, now_s, desired - current_replicas),
            )
        else:
            state = replace(
                state,
                scale_down_events=_store_event(state.scale_down_events, down, now_s, current_replicas - desired),
            )
    return ScalingDecision(now_s, current_replicas, desired, proposals, limited_by, reason, state)
