"""harness.targets.helm: rendering through helm-python-sdk (the real Helm engine) and the helm CLI (the same
manifests), install order, and errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import ConfigError, DeployError
from harness.targets.helm import (
    INSTALL_ORDER,
    LOADGEN_CHART,
    MODEL_SERVICE_CHART,
    helm_template_command,
    parse_manifests,
    render_chart,
    sort_for_install,
)


def manifest(kind: str, name: str = "x") -> dict[str, object]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}


def test_sort_for_install_follows_helms_order_and_puts_unknown_kinds_last() -> None:
    shuffled = [
        manifest(k) for k in ("ServiceMonitor", "HorizontalPodAutoscaler", "Deployment", "Service", "Namespace")
    ]
    assert [m["kind"] for m in sort_for_install(shuffled)] == [
        "Namespace",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    ]
    assert INSTALL_ORDER.index("PodDisruptionBudget") < INSTALL_ORDER.index("Deployment")


def test_parse_manifests_drops_empty_documents_and_rejects_non_objects() -> None:
    text = "---\n# Source: x\n\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n"
    assert parse_manifests([text, "", "\n"], "t") == [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}
    ]
    with pytest.raises(DeployError, match="t: rendered a document that is not a Kubernetes object"):
        parse_manifests(["just: a mapping\n"], "t")
    with pytest.raises(DeployError, match="not YAML"):
        parse_manifests(["a: [1\n"], "t")


def test_helm_template_command() -> None:
    assert helm_template_command(
        Path("/c/model-service"), Path("/tmp/v.json"), release="r", namespace="ns", kube_version="v1.33.1"
    ) == [
        "helm",
        "template",
        "r",
        "/c/model-service",
        "--namespace",
        "ns",
        "--values",
        "/tmp/v.json",
        "--kube-version",
        "v1.33.1",
    ]


def test_sdk_render_uses_release_name_and_namespace() -> None:
    manifests = render_chart(MODEL_SERVICE_CHART, {}, release="digits", namespace="team-a", engine="sdk")
    assert [(m["kind"], m["metadata"]["name"], m["metadata"]["namespace"]) for m in manifests] == [
        ("PodDisruptionBudget", "digits-model-service", "team-a"),
        ("Service", "digits-model-service", "team-a"),
        ("Deployment", "digits-model-service", "team-a"),
    ]
    loadgen = render_chart(LOADGEN_CHART, {"workers": 1}, release="lg", namespace="team-a", engine="sdk")
    assert {m["metadata"]["name"] for m in loadgen} == {"lg-loadgen", "lg-loadgen-master", "lg-loadgen-worker"}


def test_render_names_the_schema_and_the_key_on_bad_values() -> None:
    with pytest.raises(ConfigError) as raised:
        render_chart(MODEL_SERVICE_CHART, {"servce": {"port": 80}}, release="r", namespace="n", engine="sdk")
    message = str(raised.value)
    assert "model-service chart: values rejected by" in message and "values.schema.json" in message
    assert "'servce'" in message


def test_render_rejects_a_directory_without_a_chart(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="not a Helm chart"):
        render_chart(tmp_path, {}, release="r", namespace="n")


@pytest.mark.parametrize(
    ("chart", "values"),
    [
        (MODEL_SERVICE_CHART, {}),
        (MODEL_SERVICE_CHART, {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}}),
        (LOADGEN_CHART, {"workers": 2}),
    ],
)
@pytest.mark.integration
def test_the_helm_cli_and_the_sdk_render_the_same_manifests(chart: Path, values: dict[str, object]) -> None:
    # make test builds the CLI (Makefile: $(HELM)) and puts it on PATH; a user without one gets the SDK.
    assert shutil.which("helm") is not None, "helm is not on PATH: run the tests through make test"
    cli = render_chart(chart, values, release="r", namespace="n", engine="cli")
    sdk = render_chart(chart, values, release="r", namespace="n", engine="sdk")
    assert cli == sdk
