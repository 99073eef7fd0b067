"""What the run asks a cluster before it builds anything, against `FakeKubernetesApi` (the real cluster's answers
are in test_kubernetes_cluster_shared.py and test_kubernetes_cluster_docs.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes_fakes import FakeKubernetesApi, fixture

from harness.config import AutoscalingConfig, Scenario, load_scenario
from harness.errors import ConfigError, DeployError
from harness.targets.kubernetes_preflight import check_access, check_metric_apis

ROOT = Path(__file__).resolve().parents[2]


def scenario(metrics: list[dict[str, Any]] | None = None) -> Scenario:
    base = load_scenario(ROOT / "loadtests" / "cluster.yaml")
    target = base.target.model_copy(
        update={"kubernetes": base.target.kubernetes.model_copy(update={"namespace": "team-a"})}
    )
    section = AutoscalingConfig.model_validate({"metrics": metrics}) if metrics else None
    return base.model_copy(update={"target": target, "autoscaling": section})


def existing_namespace(**options: Any) -> FakeKubernetesApi:
    return FakeKubernetesApi(gets={("v1", "Namespace", "team-a"): [fixture("namespace_active.json")]}, **options)


def test_every_needed_verb_is_asked_in_the_namespace() -> None:
    api = existing_namespace()
    assert check_access(api, scenario()) == []
    asked = {call[1:] for call in api.calls_named("may")}
    assert ("get", "", "pods/proxy", "team-a") in asked and ("create", "", "pods/portforward", "team-a") in asked
    assert all(namespace == "team-a" for *_, namespace in asked)


def test_each_missing_verb_is_named_on_one_line() -> None:
    api = existing_namespace(denied={("get", "", "pods/proxy"), ("delete", "apps", "deployments")})
    with pytest.raises(DeployError) as raised:
        check_access(api, scenario())
    assert raised.value.message == (
        "in namespace team-a the kubeconfig's user may not: delete deployments.apps (the model's Deployment); "
        "get pods/proxy (read each pod's /metrics through the API server)"
    )
    assert raised.value.hint is not None and "harness rbac SCENARIO --namespace team-a" in raised.value.hint
    assert api.calls_named("apply") == [] and api.calls_named("create") == []


def test_a_missing_optional_right_is_a_warning() -> None:
    warnings = check_access(existing_namespace(denied={("list", "metrics.k8s.io", "pods")}), scenario())
    assert warnings == [
        "in namespace team-a the kubeconfig's user may not: list pods.metrics.k8s.io (per-pod CPU and memory (the "
        "verdict says they are unknown without it)): the run goes on without"
    ]


def test_a_namespace_that_does_not_exist_needs_the_right_to_create_one() -> None:
    assert check_access(FakeKubernetesApi(), scenario()) == []
    with pytest.raises(DeployError, match="namespace team-a does not exist and the kubeconfig's user may not create"):
        check_access(FakeKubernetesApi(denied={("create", "", "namespaces")}), scenario())


CPU = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
EXTERNAL = {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": 3}}}
IN_FLIGHT = {
    "type": "Pods",
    "pods": {"metric": {"name": "bentoml_in_flight"}, "target": {"type": "AverageValue", "averageValue": 4}},
}


def test_the_metrics_apis_come_from_discovery_of_every_served_version() -> None:
    api = FakeKubernetesApi(
        served={
            "metrics.k8s.io/v1beta1": ("nodes", "pods"),
            "custom.metrics.k8s.io/v1beta1": ("pods/bentoml_in_flight",),
        }
    )
    assert check_metric_apis(api, scenario([CPU, IN_FLIGHT])) == []
    asked = [call[1] for call in api.calls_named("served_resources")]
    assert sorted(asked) == ["custom.metrics.k8s.io/v1beta1", "custom.metrics.k8s.io/v1beta2", "metrics.k8s.io/v1beta1"]
    with pytest.raises(ConfigError, match=r"autoscaling.metrics\[1\] \(External queue\) needs external.metrics.k8s.io"):
        check_metric_apis(api, scenario([CPU, EXTERNAL]))
    assert check_metric_apis(FakeKubernetesApi(), scenario()) == [], "no HPA, nothing asked"
