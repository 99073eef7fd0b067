"""Before a Kubernetes run builds anything: ask the cluster whether the kubeconfig's user may do what the run needs
in its namespace (SelfSubjectAccessReview, one per verb), whether the namespace exists or may be created, and
whether the cluster serves the metrics its HPA would read (API discovery). What to ask is
harness.targets.kubernetes_access's; this module only asks.
"""

from __future__ import annotations

from harness.config import Scenario
from harness.errors import ConfigError, DeployError
from harness.targets.kubernetes_access import (
    METRICS_API_VERSIONS,
    Right,
    judge_metrics,
    metric_needs,
    missing_rights_message,
    rights_needed,
)
from harness.targets.kubernetes_api import ClientKubernetesApi, KubernetesApi, KubernetesApiError


def check_cluster(scenario: Scenario) -> list[str]:
    """Check the scenario's cluster before the build; warnings to show, or DeployError / ConfigError (exit 2) with
    one line naming every missing right, or the metric APIs the cluster does not serve. A kind cluster the run
    creates itself is not asked (the harness is its admin)."""
    config = scenario.target.kubernetes
    if config.kind_cluster is not None:
        return []
    api = ClientKubernetesApi.connect(config.kubeconfig, config.context)
    return check_access(api, scenario) + check_metric_apis(api, scenario)


def check_access(api: KubernetesApi, scenario: Scenario) -> list[str]:
    """Every right the run needs in its namespace, asked of the API server; DeployError naming each missing verb
    (required rights), warnings for the optional ones."""
    namespace = scenario.target.kubernetes.namespace
    missing: dict[Right, list[str]] = {}
    optional: dict[Right, list[str]] = {}
    for right in rights_needed(scenario):
        name = namespace if right.resource == "namespaces" else ""
        denied = [verb for verb in right.verbs if not api.may(verb, right.group, right.resource, namespace, name=name)]
        if denied:
            (missing if right.required else optional)[right] = denied
    if missing:
        raise DeployError(
            missing_rights_message(missing, namespace),
            hint=f"`harness rbac SCENARIO --namespace {namespace}` prints the Role that suffices; ask your cluster's "
            "admin to bind it to you",
        )
    warnings = [
        f"{missing_rights_message({right: verbs}, namespace)}: the run goes on without"
        for right, verbs in optional.items()
    ]
    try:
        exists = api.get("v1", "Namespace", None, namespace) is not None
    except KubernetesApiError as error:
        raise DeployError(f"cannot read namespace {namespace}: {error.message}") from error
    if not exists and not api.may("create", "", "namespaces", None):
        raise DeployError(
            f"namespace {namespace} does not exist and the kubeconfig's user may not create namespaces",
            hint="set target.kubernetes.namespace to a namespace you have rights in, or ask for it to be created",
        )
    return warnings


def check_metric_apis(api: KubernetesApi, scenario: Scenario) -> list[str]:
    """The metrics the scenario's HPA reads, against the metrics APIs the cluster serves (discovery): ConfigError
    naming a metric whose API is not served at all, warnings for metrics not listed yet."""
    autoscaling = scenario.autoscaling
    if autoscaling is None or not autoscaling.enabled:
        return []
    needs = metric_needs(autoscaling.metrics)
    served: dict[str, set[str] | None] = {}
    for group in {need.group for need in needs}:
        listings = [api.served_resources(f"{group}/{version}") for version in METRICS_API_VERSIONS[group]]
        found = [set(listing) for listing in listings if listing is not None]
        served[group] = set[str]().union(*found) if found else None
    errors, warnings = judge_metrics(needs, served)
    if errors:
        raise ConfigError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return warnings
