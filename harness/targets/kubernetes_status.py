"""Pure reading of Kubernetes API objects for the Kubernetes target: pod and HPA status as the harness's
replicas and run events, and why a rollout or an HPA is stuck (image pull, crash loop, unschedulable,
missing metrics) with what to do.

Plain dicts in the API server's JSON shape in, plain data out: no client, no clock, so every rule here is
tested against recorded API responses (tests/targets/fixtures/kubernetes/).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.model import (
    Event,
    MetricProposal,
    ReplicaCrashed,
    ReplicaInfo,
    ReplicaReady,
    ReplicaStarted,
    ReplicaStopped,
    ResourceUse,
    ScaleDecision,
)
from harness.quantity import parse_quantity

# Warnings that never keep a pod from becoming ready (a cluster without DNS falls back to the node's).
_BENIGN_POD_WARNINGS = frozenset({"MissingClusterDNS", "DNSConfigForming"})
_IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"})
# ErrImagePull turns into ImagePullBackOff within seconds; waiting for it costs little and rules out a blip.
_FATAL_WAITING_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError"}
)


# --------------------------------------------------------------------------- reading API objects


def parse_time(timestamp: str | None) -> float | None:
    """An API server timestamp (RFC 3339, e.g. "2025-01-01T00:00:00Z") as seconds since the epoch."""
    if not timestamp:
        return None
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def pod_ready(pod: dict[str, Any]) -> bool:
    """Whether a pod counts as ready: condition Ready=True and not being deleted."""
    ready = _condition(pod, "Ready")
    return ready is not None and ready.get("status") == "True" and not pod["metadata"].get("deletionTimestamp")


def container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def pod_crashed(pod: dict[str, Any]) -> bool:
    """A pod whose container is in CrashLoopBackOff, or that failed for good."""
    if (pod.get("status") or {}).get("phase") == "Failed":
        return True
    return any(
        (status.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
        for status in container_statuses(pod)
    )


def restart_count(pod: dict[str, Any]) -> int:
    return sum(int(status.get("restartCount") or 0) for status in container_statuses(pod))


def pod_replica(pod: dict[str, Any], base_url: str) -> ReplicaInfo:
    """A pod as the harness's ReplicaInfo; ready_at_s is when its Ready condition last turned True."""
    status = pod.get("status") or {}
    ready = pod_ready(pod)
    ready_condition = _condition(pod, "Ready") or {}
    started_at_s = parse_time(status.get("startTime")) or parse_time(pod["metadata"].get("creationTimestamp"))
    statuses = container_statuses(pod)
    return ReplicaInfo(
        id=pod["metadata"]["name"],
        base_url=base_url,
        ready=ready,
        started_at_s=started_at_s or 0.0,
        ready_at_s=parse_time(ready_condition.get("lastTransitionTime")) if ready else None,
        container_id=statuses[0].get("containerID") if statuses else None,
        crashed=pod_crashed(pod),
    )


def pod_resource_use(pod_metrics: dict[str, Any]) -> dict[str, ResourceUse]:
    """Per-pod CPU cores and memory from a metrics.k8s.io PodMetricsList (containers summed).

    metrics-server reports the working set, which is what the kubelet evicts on; it stands in for RSS.
    """
    use: dict[str, ResourceUse] = {}
    for item in pod_metrics.get("items") or []:
        containers = item.get("containers") or []
        cpu = [c["usage"]["cpu"] for c in containers if "cpu" in (c.get("usage") or {})]
        memory = [c["usage"]["memory"] for c in containers if "memory" in (c.get("usage") or {})]
        use[item["metadata"]["name"]] = ResourceUse(
            cpu_cores=sum(parse_quantity(q) for q in cpu) if cpu else None,
            rss_bytes=sum(parse_quantity(q) for q in memory) if memory else None,
        )
    return use


# --------------------------------------------------------------------------- diagnosis


@dataclass(frozen=True)
class Problem:
    """Why pods or the HPA are not doing what they should, and what to do about it."""

    cause: str
    message: str
    hint: str
    # Fatal problems end the rollout at once; others are reported if the rollout times out.
    fatal: bool
    pod: str | None = None


LogTail = Callable[[str, str, bool], str]


def _events_for(events: Iterable[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [
        event
        for event in events
        if (event.get("involvedObject") or {}).get("kind") == kind and event["involvedObject"].get("name") == name
    ]


def _unschedulable(pod: dict[str, Any], events: list[dict[str, Any]], requests: dict[str, str]) -> Problem | None:
    name = pod["metadata"]["name"]
    scheduled = _condition(pod, "PodScheduled")
    failed = [e for e in _events_for(events, "Pod", name) if e.get("reason") == "FailedScheduling"]
    if not failed and not (scheduled and scheduled.get("status") == "False"):
        return None
    message = (failed[-1].get("message") if failed else None) or (scheduled or {}).get("message") or "unschedulable"
    hints = []
    for resource in ("cpu", "memory"):
        if f"Insufficient {resource}" in message:
            now = f" (now {requests[resource]})" if resource in requests else ""
            hints.append(f"lower resources.requests.{resource}{now}")
    hint = " or ".join(hints) + ", or add nodes" if hints else "kubectl describe pod " + name
    return Problem("unschedulable", f"pod {name} cannot be scheduled: {message}", hint, fatal=False, pod=name)


def diagnose_pods(
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    log_tail: LogTail,
    *,
    requests: dict[str, str] | None = None,
    kind_cluster: str | None = None,
) -> Problem | None:
    """The most telling reason why pods are not ready, from pod status, events and container logs.

    `log_tail(pod, container, previous)` gives a container's last log lines (the previous, crashed,
    instance when `previous`).
    """
    problems: list[Problem] = []
    for pod in pods:
        name = pod["metadata"]["name"]
        for status in container_statuses(pod):
            waiting = (status.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            container = status.get("name", "")
            if reason in _IMAGE_PULL_REASONS:
                image = status.get("image", "?")
                load = f"kind load docker-image {image} --name {kind_cluster}" if kind_cluster else None
                hint = (
                    (load + " (the image is not on the kind nodes)")
                    if load
                    else (
                        f"kind load docker-image {image} (kind), or push {image} to a registry the cluster pulls from"
                    )
                )
                problems.append(
                    Problem(
                        "image-pull",
                        f"pod {name} cannot pull image {image} ({reason}: {waiting.get('message', '')})",
                        hint,
                        fatal=reason in _FATAL_WAITING_REASONS,
                        pod=name,
                    )
                )
            elif reason == "CrashLoopBackOff":
                terminated = (status.get("lastState") or {}).get("terminated") or {}
                exit_reason = terminated.get("reason", "?")
                hint = "the server exits at startup; fix the cause in the log lines above"
                if exit_reason == "OOMKilled":
                    hint = "the container ran out of memory: raise resources.limits.memory"
                problems.append(
                    Problem(
                        "crash-loop",
                        f"pod {name} container {container} is in CrashLoopBackOff after "
                        f"{status.get('restartCount', 0)} restart(s), last exit {terminated.get('exitCode', '?')} "
                        f"({exit_reason}); last log lines: {log_tail(name, container, True)}",
                        hint,
                        fatal=True,
                        pod=name,
                    )
                )
            elif reason in _FATAL_WAITING_REASONS:
                problems.append(
                    Problem(
                        reason,
                        f"pod {name} container {container}: {reason}: {waiting.get('message', '')}",
                        "kubectl describe pod " + name,
                        fatal=True,
                        pod=name,
                    )
                )
        if (pod.get("status") or {}).get("phase") == "Pending" and not container_statuses(pod):
            problem = _unschedulable(pod, events, requests or {})
            if problem is not None:
                problems.append(problem)
        # A failing startup probe is the model still loading (its budget is target.startup_timeout_s, and the
        # kubelet restarts the container when that runs out): only readiness and liveness failures count.
        unhealthy = [
            e
            for e in _events_for(events, "Pod", name)
            if e.get("reason") == "Unhealthy" and not str(e.get("message", "")).startswith("Startup probe")
        ]
        if unhealthy and not pod_ready(pod):
            problems.append(
                Problem(
                    "probe-failing",
                    f"pod {name} is running but not ready: {unhealthy[-1].get('message', '')}",
                    "raise target.startup_timeout_s if the model loads slowly, or check service.readiness_path",
                    fatal=False,
                    pod=name,
                )
            )
    if not problems:
        return _latest_pod_warning(pods, events)
    # Fatal first, then the order found.
    return sorted(problems, key=lambda p: not p.fatal)[0]


def _latest_pod_warning(pods: list[dict[str, Any]], events: list[dict[str, Any]]) -> Problem | None:
    """The newest Warning event of a pod that is not ready (a sandbox the runtime cannot create, a volume that
    does not mount...): what the kubelet last said, when nothing above explains the wait."""
    waiting = {pod["metadata"]["name"] for pod in pods if not pod_ready(pod)}
    warnings = [
        event
        for event in events
        if event.get("type") == "Warning"
        and (event.get("involvedObject") or {}).get("kind") == "Pod"
        and event["involvedObject"].get("name") in waiting
        and not str(event.get("message", "")).startswith("Startup probe")
        and event.get("reason") not in _BENIGN_POD_WARNINGS
    ]
    if not warnings:
        return None
    latest = max(warnings, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    name = latest["involvedObject"]["name"]
    return Problem(
        str(latest.get("reason") or "warning"),
        f"pod {name}: {latest.get('reason', '')}: {latest.get('message', '')}",
        f"kubectl describe pod {name}",
        fatal=False,
        pod=name,
    )


def diagnose_hpa(hpa: dict[str, Any]) -> Problem | None:
    """Why an HPA cannot scale: ScalingActive=False (a metrics API is missing) or AbleToScale=False."""
    name = hpa["metadata"]["name"]
    active = _condition(hpa, "ScalingActive")
    if active is not None and active.get("status") == "False":
        reason = active.get("reason", "")
        message = f"HPA {name} is not scaling ({reason}): {active.get('message', '')}"
        if reason == "FailedGetResourceMetric":
            hint = "install metrics-server (kind: kubectl apply -f charts/metrics-server/components.yaml)"
        elif reason == "FailedGetPodsMetric":
            hint = "install prometheus-adapter with a rule that serves the Pods metric (charts/README.md)"
        elif reason == "ScalingDisabled":
            hint = "the Deployment was scaled to 0; scale it up or remove the HPA"
        else:
            hint = f"kubectl describe hpa {name}"
        return Problem("hpa-" + (reason or "inactive"), message, hint, fatal=False)
    able = _condition(hpa, "AbleToScale")
    if able is not None and able.get("status") == "False":
        return Problem(
            "hpa-" + able.get("reason", "unable"),
            f"HPA {name} cannot scale ({able.get('reason', '')}): {able.get('message', '')}",
            f"kubectl describe hpa {name}",
            fatal=False,
        )
    return None


def dropped_tolerances(sent_spec: dict[str, Any], stored_spec: dict[str, Any]) -> list[str]:
    """Behavior tolerances the API server dropped (feature gate HPAConfigurableTolerance off), as field paths."""
    dropped = []
    for direction in ("scaleUp", "scaleDown"):
        sent = ((sent_spec.get("behavior") or {}).get(direction) or {}).get("tolerance")
        stored = ((stored_spec.get("behavior") or {}).get(direction) or {}).get("tolerance")
        if sent is not None and stored is None:
            dropped.append(f"behavior.{direction}.tolerance")
    return dropped


# --------------------------------------------------------------------------- status -> run events


def hpa_desired_replicas(hpa: dict[str, Any] | None) -> int | None:
    """The HPA's desired replica count; its current count while it has never computed one (desiredReplicas 0)."""
    status = (hpa or {}).get("status") or {}
    desired = int(status.get("desiredReplicas") or 0)
    if desired > 0:
        return desired
    current = int(status.get("currentReplicas") or 0)
    return current if current > 0 else None


def hpa_events(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[Event]:
    """Run events from one HPA status to the next: a ScaleDecision (from -> to) when the desired count changes,
    with the keys the local autoscaler writes: the controller's reason, its limit, each metric's reading."""
    old = hpa_desired_replicas(previous)
    new = hpa_desired_replicas(current)
    if old is None or new is None or old == new:
        return []
    able = _condition(current, "AbleToScale") or {}
    limited = _condition(current, "ScalingLimited") or {}
    targets = {_metric_key(m): m for m in (current.get("spec") or {}).get("metrics") or [] if m.get("type")}
    proposals = tuple(
        _metric_proposal(m, targets.get(_metric_key(m)))
        for m in (current.get("status") or {}).get("currentMetrics") or []
        if m.get("type")
    )
    decision = ScaleDecision(
        from_replicas=old,
        to_replicas=new,
        source="hpa",
        reason=str(able.get("message") or ""),
        limited_by=str(limited.get("reason")) if limited.get("status") == "True" else None,
        proposals=proposals,
    )
    return [decision]


def _metric_source(metric: dict[str, Any]) -> dict[str, Any]:
    # A MetricSpec or MetricStatus keeps its source under the lower-camel-case type: Resource -> resource.
    kind = str(metric.get("type", ""))
    return dict(metric.get(kind[:1].lower() + kind[1:]) or {})


def _metric_key(metric: dict[str, Any]) -> tuple[str, str | None]:
    source = _metric_source(metric)
    return str(metric.get("type")), source.get("name") or (source.get("metric") or {}).get("name")


def _metric_value(values: dict[str, Any]) -> float | None:
    """Utilization percent when given (as the local autoscaler reports it), else the per-pod or total value."""
    if values.get("averageUtilization") is not None:
        return float(values["averageUtilization"])
    for key in ("averageValue", "value"):
        if values.get(key) is not None:
            return parse_quantity(values[key])
    return None


def _metric_proposal(status: dict[str, Any], spec: dict[str, Any] | None) -> MetricProposal:
    """One HPA metric's reading against its target; the HPA does not say what each metric proposed."""
    _, name = _metric_key(status)
    current = _metric_source(status).get("current") or {}
    target = _metric_source(spec).get("target") or {} if spec is not None else {}
    return MetricProposal(str(name or status.get("type")), _metric_value(current), _metric_value(target), None, "")


def pod_events(previous: dict[str, dict[str, Any]], current: list[dict[str, Any]], log_tail: LogTail) -> list[Event]:
    """Run events between two pod listings: replica_started, replica_ready, replica_crashed, replica_stopped."""
    events: list[Event] = []
    seen = set()
    for pod in current:
        name = pod["metadata"]["name"]
        seen.add(name)
        before = previous.get(name)
        if before is None:
            events.append(ReplicaStarted(name, node=(pod.get("spec") or {}).get("nodeName")))
        if pod["metadata"].get("deletionTimestamp"):
            if before is not None and not before["metadata"].get("deletionTimestamp"):
                events.append(ReplicaStopped(name, reason="deleted"))
            continue
        if pod_ready(pod) and (before is None or not pod_ready(before)):
            replica = pod_replica(pod, "")
            startup_s = None if replica.ready_at_s is None else round(replica.ready_at_s - replica.started_at_s, 3)
            events.append(ReplicaReady(name, startup_s))
        restarts = restart_count(pod)
        if restarts > (restart_count(before) if before else 0) or (
            pod_crashed(pod) and not (before and pod_crashed(before))
        ):
            statuses = container_statuses(pod)
            container = statuses[0].get("name", "") if statuses else ""
            terminated = ((statuses[0].get("lastState") or {}).get("terminated") or {}) if statuses else {}
            events.append(
                ReplicaCrashed(
                    name,
                    exit_code=terminated.get("exitCode"),
                    reason=terminated.get("reason"),
                    restarts=restarts,
                    log_tail=log_tail(name, container, True) if container else "",
                )
            )
    for name, before in previous.items():
        if name not in seen and not before["metadata"].get("deletionTimestamp"):
            events.append(ReplicaStopped(name, reason="gone"))
    return events
