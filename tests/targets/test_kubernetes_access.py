"""What a scenario needs of a cluster: the rights of its routes and features, the Role `harness rbac` prints (every
kind the charts render is covered), the one-line message of missing rights, and what each HPA metric needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from harness.cli import cli
from harness.config import AutoscalingConfig, Fault, LoadgenPodsConfig, RequestConfig, Scenario, load_scenario
from harness.load.in_cluster import env_names, env_secret, loadgen_values
from harness.load.plan import build_load_plan
from harness.targets.helm import LOADGEN_CHART, MODEL_SERVICE_CHART, render_chart
from harness.targets.helm_values import model_service_values
from harness.targets.kubernetes_access import (
    MetricNeed,
    Right,
    judge_metrics,
    metric_needs,
    missing_rights_message,
    rights_needed,
    role_manifests,
)

ROOT = Path(__file__).resolve().parents[2]
CPU = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}


def scenario(autoscaling: dict[str, Any] | None = None, faults: bool = False, **kubernetes: Any) -> Scenario:
    base = load_scenario(ROOT / "loadtests" / "cluster.yaml")
    target = base.target.model_copy(update={"kubernetes": base.target.kubernetes.model_copy(update=kubernetes)})
    stages = base.stages
    if faults:
        stages = [stages[0], stages[1].model_copy(update={"faults": [Fault(at_s=1, action="kill")]})]
    section = AutoscalingConfig.model_validate(autoscaling) if autoscaling is not None else None
    return base.model_copy(update={"target": target, "autoscaling": section, "stages": stages})


def granted(rights: list[Right]) -> set[tuple[str, str, str]]:
    return {(right.group, right.resource, verb) for right in rights for verb in right.verbs}


def test_the_routes_decide_the_rights() -> None:
    default = granted(rights_needed(scenario()))
    assert ("", "pods/portforward", "create") in default and ("", "pods/proxy", "get") in default
    assert not {resource for _, resource, _ in default} & {"horizontalpodautoscalers", "jobs", "configmaps"}
    routed = granted(rights_needed(scenario(load_route="pod-ip", metrics_route="port-forward")))
    assert not {resource for _, resource, _ in routed} & {"pods/portforward", "pods/proxy"}
    assert ("autoscaling", "horizontalpodautoscalers", "patch") in granted(rights_needed(scenario({"metrics": [CPU]})))
    in_cluster = granted(rights_needed(scenario(loadgen="in-cluster")))
    assert {("batch", "jobs", "create"), ("", "configmaps", "delete"), ("", "serviceaccounts", "get")} <= in_cluster
    assert ("", "pods", "delete") not in default and ("", "pods", "delete") in granted(
        rights_needed(scenario(faults=True))
    )


def test_only_pod_metrics_are_optional() -> None:
    optional = [
        right for right in rights_needed(scenario(prometheus_url="http://prometheus:9090")) if not right.required
    ]
    assert [right.shown for right in optional] == ["pods.metrics.k8s.io", "servicemonitors.monitoring.coreos.com"]


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"autoscaling": {"metrics": [CPU]}},
        {"prometheus_url": "http://prometheus:9090", "metrics_route": "prometheus"},
    ],
)
def test_every_kind_the_model_chart_renders_is_granted(variant: dict[str, Any]) -> None:
    autoscaling = variant.pop("autoscaling", None)
    chosen = scenario(autoscaling, **variant)
    values = model_service_values(
        chosen, "model:1", "run-1", service_monitor=chosen.target.kubernetes.prometheus_url is not None
    )
    manifests = render_chart(
        MODEL_SERVICE_CHART, values, release="model-service-abc123", namespace="team", engine="sdk"
    )
    rights = {(right.group, right.resource): set(right.verbs) for right in rights_needed(chosen)}
    for manifest in manifests:
        group = manifest["apiVersion"].rpartition("/")[0]
        resource = manifest["kind"].lower() + ("es" if manifest["kind"].endswith("s") else "s")
        # The run reads, applies, lists and deletes every kind it applies.
        assert {"get", "create", "patch", "list", "delete"} <= rights.get((group, resource), set()), manifest["kind"]


@pytest.mark.parametrize("headers_and_account", [False, True])
def test_every_kind_the_loadgen_chart_renders_is_granted(tmp_path: Path, headers_and_account: bool) -> None:
    """The chart's kinds, and the Secret of header variables when the requests name one; no ServiceAccount right
    when the scenario names an existing account."""
    pods = LoadgenPodsConfig(service_account_name="loadgen-runner" if headers_and_account else None)
    chosen = scenario(loadgen="in-cluster", loadgen_pods=pods)
    if headers_and_account:
        request = RequestConfig(
            name="classify", path="/classify", headers={"Authorization": "Bearer ${API_TOKEN}"}, body_template={"x": 1}
        )
        chosen = chosen.model_copy(update={"requests": [request]})
    plan = build_load_plan(chosen, endpoints_file=tmp_path / "endpoints.json", intervals_dir=tmp_path, alone_answers={})
    values = loadgen_values(plan, "loadgen:1", "run-1", service_url="http://10.0.0.1:3000", pods=pods)
    manifests = render_chart(
        LOADGEN_CHART, values, release="model-service-abc123-loadgen", namespace="team", engine="sdk"
    )
    names = env_names(plan)
    if names:
        manifests.append(env_secret("model-service-abc123-loadgen-env", "team", names, {"API_TOKEN": "t"}))
    rights = {(right.group, right.resource): set(right.verbs) for right in rights_needed(chosen)}
    for manifest in manifests:
        group = manifest["apiVersion"].rpartition("/")[0]
        resource = manifest["kind"].lower() + "s"
        assert {"get", "create", "patch", "list", "delete"} <= rights.get((group, resource), set()), manifest["kind"]
    kinds = {manifest["kind"] for manifest in manifests}
    assert ("Secret" in kinds) == headers_and_account == (("", "secrets") in rights)
    assert ("ServiceAccount" in kinds) != headers_and_account
    assert (("", "serviceaccounts") in rights) != headers_and_account
    # The generators' records come from their logs, why one cannot start from the namespace's events.
    assert "get" in rights[("", "pods/log")] and "list" in rights[("", "events")]


def test_the_role_has_one_rule_per_group_and_verbs_and_binds_to_the_account() -> None:
    rights = rights_needed(scenario())
    role, binding = role_manifests(rights, "team-a", "harness-run", "harness-ci")
    assert role["kind"] == "Role" and role["metadata"] == {"name": "harness-run", "namespace": "team-a"}
    rules = {(rule["apiGroups"][0], tuple(rule["verbs"])): rule["resources"] for rule in role["rules"]}
    assert rules[("", ("get",))] == ["namespaces", "pods/log", "pods/proxy"]
    assert rules[("apps", ("create", "delete", "get", "list", "patch"))] == ["deployments"]
    assert granted(rights) == {
        (rule["apiGroups"][0], resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert binding["roleRef"]["name"] == "harness-run"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "harness-ci", "namespace": "team-a"}]
    assert role_manifests(rights, "team-a", "harness-run", None) == [role]


def test_missing_rights_are_one_line_naming_each_verb_and_why() -> None:
    proxy = Right("", "pods/proxy", ("get",), "read each pod's /metrics")
    deployments = Right("apps", "deployments", ("create", "patch"), "the model's Deployment")
    message = missing_rights_message({proxy: ["get"], deployments: ["create", "patch"]}, "team-a")
    assert message == (
        "in namespace team-a the kubeconfig's user may not: get pods/proxy (read each pod's /metrics); "
        "create patch deployments.apps (the model's Deployment)"
    )
    assert "\n" not in message


def test_harness_rbac_prints_the_role_with_its_reasons(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["rbac", str(ROOT / "loadtests" / "cluster.yaml"), "--namespace", "team-a", "--service-account", "ci"]
    )
    assert result.exit_code == 0, result.output
    assert "#   get pods/proxy: read each pod's /metrics through the API server" in result.output
    role, binding = yaml.safe_load_all(result.output)
    assert role["kind"] == "Role" and binding["kind"] == "RoleBinding"
    refused = CliRunner().invoke(cli, ["rbac", str(ROOT / "loadtests" / "default.yaml")])
    assert refused.exit_code == 2 and "a Role is for target.kind kubernetes" in refused.output


# --------------------------------------------------------------------------- metrics APIs


def metrics(*specs: dict[str, Any]) -> list[Any]:
    return list(AutoscalingConfig.model_validate({"metrics": list(specs)}).metrics)


MEMORY = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}}
IN_FLIGHT = {
    "type": "Pods",
    "pods": {"metric": {"name": "bentoml_in_flight"}, "target": {"type": "AverageValue", "averageValue": 4}},
}
OBJECT = {
    "type": "Object",
    "object": {
        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "model"},
        "metric": {"name": "requests_per_second"},
        "target": {"type": "Value", "value": 100},
    },
}
EXTERNAL = {
    "type": "External",
    "external": {"metric": {"name": "queue_depth"}, "target": {"type": "Value", "value": 30}},
}


def test_each_metric_type_needs_its_api() -> None:
    assert metric_needs(metrics(CPU, MEMORY, IN_FLIGHT, OBJECT, EXTERNAL)) == [
        MetricNeed(0, "Resource cpu", "metrics.k8s.io", "pods"),
        MetricNeed(1, "Resource memory", "metrics.k8s.io", "pods"),
        MetricNeed(2, "Pods bentoml_in_flight", "custom.metrics.k8s.io", "pods/bentoml_in_flight"),
        MetricNeed(3, "Object requests_per_second", "custom.metrics.k8s.io", "ingresses/requests_per_second"),
        MetricNeed(4, "External queue_depth", "external.metrics.k8s.io", "queue_depth"),
    ]


def test_an_api_the_cluster_does_not_serve_is_an_error_and_an_unlisted_metric_a_warning() -> None:
    needs = metric_needs(metrics(MEMORY, IN_FLIGHT, EXTERNAL))
    served: dict[str, set[str] | None] = {
        "metrics.k8s.io": {"pods", "nodes"},
        "custom.metrics.k8s.io": {"pods/bentoml_in_flight_total", "namespaces/bentoml_in_flight_total"},
        "external.metrics.k8s.io": None,
    }
    errors, warnings = judge_metrics(needs, served)
    assert errors == [
        "autoscaling.metrics[2] (External queue_depth) needs external.metrics.k8s.io, which the cluster does not "
        "serve (install metrics-server for metrics.k8s.io, an adapter such as prometheus-adapter or KEDA for the "
        "others)"
    ]
    (warning,) = warnings
    assert warning.startswith("autoscaling.metrics[1] (Pods bentoml_in_flight): custom.metrics.k8s.io does not list")
    assert "it lists pods/bentoml_in_flight_total" in warning, "a renamed adapter series is shown"
    assert judge_metrics(metric_needs(metrics(CPU, MEMORY)), served) == ([], [])
