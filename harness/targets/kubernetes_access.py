"""What a run on a Kubernetes cluster needs of it, decided from the scenario alone: the rights in its one
namespace (and so the narrowest Role that suffices, `harness rbac`), and the metrics APIs its HPA reads.
harness.targets.kubernetes_preflight asks the cluster for both before anything is built.

Pure: the scenario in, plain data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.config import MetricSpec, Scenario, header_variables

# Every kind the harness applies, once the run is over, is listed and deleted by its run label.
_OWN = ("get", "create", "patch", "list", "delete")


@dataclass(frozen=True)
class Right:
    """Verbs on one resource of one API group ("" is the core group) in the run's namespace, and why the run needs
    them. A right that is not `required` is one the run goes on without, losing what `why` says."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    required: bool = True

    @property
    def shown(self) -> str:
        """The resource as kubectl names it: pods/log, deployments.apps, pods.metrics.k8s.io."""
        kind, slash, sub = self.resource.partition("/")
        return f"{kind}.{self.group}{slash}{sub}" if self.group else self.resource


def rights_needed(scenario: Scenario) -> list[Right]:
    """The rights a run of `scenario` needs in its namespace, by the routes and features it uses."""
    config = scenario.target.kubernetes
    autoscaling = scenario.autoscaling is not None and scenario.autoscaling.enabled
    rights = [
        Right("", "namespaces", ("get",), "see that the namespace exists"),
        Right("", "pods", ("get", "list"), "follow each pod's readiness, restarts and IP"),
        Right("", "pods/log", ("get",), "name a crashing pod's last log lines, keep every pod's log"),
        Right("", "events", ("list",), "name why a pod is not ready (image pull, scheduling, probes)"),
        Right("", "services", _OWN, "the model's Service"),
        Right("apps", "deployments", _OWN, "the model's Deployment"),
        Right("apps", "deployments/scale", ("patch",), "start at the scenario's replica count"),
        Right("policy", "poddisruptionbudgets", _OWN, "the model's PodDisruptionBudget"),
        Right(
            "metrics.k8s.io",
            "pods",
            ("list",),
            "per-pod CPU and memory (the verdict says they are unknown without it)",
            required=False,
        ),
    ]
    if autoscaling:
        rights.append(Right("autoscaling", "horizontalpodautoscalers", _OWN, "the model's HPA"))
    if config.load_route == "port-forward":
        # A port-forward is a websocket GET (authorized as get up to Kubernetes 1.34, as create from 1.35).
        rights.append(Right("", "pods/portforward", ("get", "create"), "send the load through a port-forward per pod"))
    if config.metrics_route == "pod-proxy":
        rights.append(Right("", "pods/proxy", ("get",), "read each pod's /metrics through the API server"))
    if config.prometheus_url is not None:
        rights.append(
            Right(
                "monitoring.coreos.com",
                "servicemonitors",
                _OWN,
                "let a Prometheus Operator scrape the pods (without it, the Prometheus must find them itself)",
                required=False,
            )
        )
    if any(fault.action == "kill" for stage in scenario.stages for fault in stage.faults):
        rights.append(Right("", "pods", ("delete",), "kill a replica (stages[].faults)"))
    if config.loadgen == "in-cluster":
        rights += [
            Right("batch", "jobs", _OWN, "the in-cluster load generator's master and worker Jobs"),
            Right(
                "",
                "configmaps",
                _OWN,
                "the files the generator pods read (the load plan, request bodies, data sets, a locustfile)",
            ),
            Right("", "pods/log", ("get",), "follow each generator pod's records"),
            Right("", "events", ("list",), "name why a generator pod cannot start (a quota, an image pull)"),
        ]
        if header_variables(request.headers for request in scenario.requests or ()):
            rights.append(Right("", "secrets", _OWN, "the request headers' ${NAME} values the generator pods read"))
        if config.loadgen_pods.service_account_name is None:
            rights.append(
                Right("", "serviceaccounts", _OWN, "the generator pods' own service account (no rights, no token)")
            )
    return _merged(rights)


def _merged(rights: Iterable[Right]) -> list[Right]:
    """One right per (group, resource, required): verbs and reasons of repeated entries joined, in order."""
    merged: dict[tuple[str, str, bool], Right] = {}
    for right in rights:
        key = (right.group, right.resource, right.required)
        if key in merged:
            known = merged[key]
            verbs = tuple(dict.fromkeys(known.verbs + right.verbs))
            merged[key] = Right(right.group, right.resource, verbs, f"{known.why}; {right.why}", right.required)
        else:
            merged[key] = right
    return list(merged.values())


def role_manifests(
    rights: Iterable[Right], namespace: str, name: str, service_account: str | None
) -> list[dict[str, Any]]:
    """A Role granting `rights` in `namespace` (one rule per API group and verbs), and with `service_account` a
    RoleBinding of it to that ServiceAccount of the namespace."""
    rules: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for right in rights:
        rules.setdefault((right.group, tuple(sorted(right.verbs))), []).append(right.resource)
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [
            {"apiGroups": [group], "resources": sorted(set(resources)), "verbs": list(verbs)}
            for (group, verbs), resources in sorted(rules.items())
        ],
    }
    if service_account is None:
        return [role]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
    return [role, binding]


def missing_rights_message(missing: Mapping[Right, list[str]], namespace: str) -> str:
    """One line naming each missing verb on each resource, and why the run needs it."""
    parts = [f"{' '.join(verbs)} {right.shown} ({right.why})" for right, verbs in missing.items()]
    return f"in namespace {namespace} the kubeconfig's user may not: " + "; ".join(parts)


# --------------------------------------------------------------------------- what the HPA reads


@dataclass(frozen=True)
class MetricNeed:
    """What one of the HPA's metrics needs of the cluster: an API group serving it, and the resource name under
    which the cluster lists it (None when any listing will do)."""

    index: int
    shown: str
    group: str
    listed_as: str | None


# The API groups of each metric type (the HPA controller's REST clients).
_RESOURCE_METRICS = "metrics.k8s.io"
_CUSTOM_METRICS = "custom.metrics.k8s.io"
_EXTERNAL_METRICS = "external.metrics.k8s.io"
METRICS_API_VERSIONS = {
    _RESOURCE_METRICS: ("v1beta1",),
    _CUSTOM_METRICS: ("v1beta2", "v1beta1"),
    _EXTERNAL_METRICS: ("v1beta1",),
}


def _plural(kind: str) -> str:
    # Discovery lists custom metrics per object resource ("services/requests_per_second"): Kubernetes's plurals.
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


def metric_needs(metrics: Iterable[MetricSpec]) -> list[MetricNeed]:
    """What each HPA metric needs: Resource and ContainerResource metrics.k8s.io (its pods), Pods and Object
    custom.metrics.k8s.io (the metric listed for pods or the described object's resource), External
    external.metrics.k8s.io (the metric listed by name)."""
    needs = []
    for index, metric in enumerate(metrics):
        if metric.resource is not None or metric.container_resource is not None:
            source = metric.resource or metric.container_resource
            assert source is not None
            needs.append(MetricNeed(index, f"{metric.type} {source.name}", _RESOURCE_METRICS, "pods"))
        elif metric.pods is not None:
            name = metric.pods.metric.name
            needs.append(MetricNeed(index, f"Pods {name}", _CUSTOM_METRICS, f"pods/{name}"))
        elif metric.object is not None:
            name = metric.object.metric.name
            listed = f"{_plural(metric.object.described_object.kind)}/{name}"
            needs.append(MetricNeed(index, f"Object {name}", _CUSTOM_METRICS, listed))
        elif metric.external is not None:
            name = metric.external.metric.name
            needs.append(MetricNeed(index, f"External {name}", _EXTERNAL_METRICS, name))
    return needs


def judge_metrics(needs: Iterable[MetricNeed], served: Mapping[str, set[str] | None]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the HPA's metrics against what the cluster serves (`served`: group -> the resource
    names its versions list, None when the group is not served). A group not served is an error: the HPA would
    never get a value. A metric its group does not list is a warning only: an adapter lists the series that exist,
    and the run's pods have not started yet."""
    errors, warnings = [], []
    for need in needs:
        listed = served.get(need.group)
        where = f"autoscaling.metrics[{need.index}] ({need.shown})"
        if listed is None:
            errors.append(
                f"{where} needs {need.group}, which the cluster does not serve (install metrics-server for "
                f"{_RESOURCE_METRICS}, an adapter such as prometheus-adapter or KEDA for the others)"
            )
        elif need.listed_as is not None and need.listed_as not in listed:
            # A series the adapter renamed (a suffix such as _total) is listed under the same resource.
            resource, _, metric = need.listed_as.rpartition("/")
            similar = sorted(n for n in listed if n.startswith(f"{resource}/") and metric[:12] in n.rpartition("/")[2])[
                :3
            ]
            also = f"; it lists {', '.join(similar)}" if similar else ""
            warnings.append(
                f"{where}: {need.group} does not list {need.listed_as} yet (an adapter lists the series that exist; "
                f"the HPA reports FailedGetMetric if the run's pods never expose it){also}"
            )
    return errors, warnings
