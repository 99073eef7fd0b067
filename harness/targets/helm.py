"""Render the harness's Helm charts into Kubernetes manifests (a list of dicts, in Helm's install order).

With a `helm` binary on PATH this runs `helm template`; without one it uses the same Helm engine
through helm-python-sdk (`helm_python`, Helm's Go SDK behind a C ABI), so rendering and the charts'
values.schema.json checks need no binary. helm-python-sdk is the optional `helm` extra (244 MB): with
neither it nor a binary, rendering fails saying how to get one. The
Kubernetes target applies the result itself (server-side apply), so no Helm release state is kept in
the cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import ConfigError, DeployError
from harness.extras import install_command
from harness.resources import data_path

CHARTS_DIR = data_path("charts")
MODEL_SERVICE_CHART = CHARTS_DIR / "model-service"
LOADGEN_CHART = CHARTS_DIR / "loadgen"

Engine = Literal["auto", "cli", "sdk"]

# Helm's InstallOrder (pkg/release/util/kind_sorter.go); kinds not listed go last.
INSTALL_ORDER = (
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
_SCHEMA_FAILURE = "don't meet the specifications of the schema"
_TIMEOUT_S = 120


def sort_for_install(manifests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifests in the order Helm installs them (Services before Deployments, HPAs after them)."""
    rank = {kind: index for index, kind in enumerate(INSTALL_ORDER)}
    return sorted(
        manifests,
        key=lambda m: (rank.get(m.get("kind", ""), len(rank)), m.get("kind", ""), m["metadata"]["name"]),
    )


def parse_manifests(documents: Iterable[str], source: str) -> list[dict[str, Any]]:
    """Kubernetes objects from rendered YAML text; empty documents (disabled templates) are dropped."""
    manifests: list[dict[str, Any]] = []
    for text in documents:
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            raise DeployError(f"{source}: rendered a manifest that is not YAML ({error})".replace("\n", " ")) from error
        for document in loaded:
            if document is None:
                continue
            if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
                raise DeployError(f"{source}: rendered a document that is not a Kubernetes object: {document!r:.200}")
            manifests.append(document)
    return manifests


def helm_template_command(
    chart_dir: Path, values_file: Path, *, release: str, namespace: str, kube_version: str | None = None
) -> list[str]:
    """The `helm template` command line that renders a chart with one values file."""
    command = ["helm", "template", release, str(chart_dir), "--namespace", namespace, "--values", str(values_file)]
    if kube_version is not None:
        command += ["--kube-version", kube_version]
    return command


def _values_error(chart_dir: Path, message: str) -> ConfigError:
    detail = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    return ConfigError(
        f"{chart_dir.name} chart: values rejected by {chart_dir / 'values.schema.json'}: {detail}",
        hint="check the key's spelling and type against the chart's values.yaml",
    )


def _render_cli(
    chart_dir: Path, values: dict[str, Any], release: str, namespace: str, kube_version: str | None
) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="harness-helm-") as tmp:
        # JSON is YAML, and keeps numbers and strings exactly as given.
        values_file = Path(tmp) / "values.json"
        values_file.write_text(json.dumps(values))
        command = helm_template_command(
            chart_dir, values_file, release=release, namespace=namespace, kube_version=kube_version
        )
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DeployError(f"{' '.join(command[:3])}: could not run ({error})") from error
    if result.returncode != 0:
        if _SCHEMA_FAILURE in result.stderr:
            raise _values_error(chart_dir, result.stderr)
        raise DeployError(f"helm template {chart_dir.name} failed: {result.stderr.strip()[-2000:]}")
    return [result.stdout]


HELM_MISSING_HINT = f"put a helm binary on PATH, or install the helm extra: {install_command('helm')}"


def _render_sdk(chart_dir: Path, values: dict[str, Any], release: str, namespace: str) -> list[str]:
    try:
        import helm_python
    except ImportError as error:
        raise DeployError(
            f"cannot render the {chart_dir.name} chart: no helm binary on PATH and helm-python-sdk is not installed",
            hint=HELM_MISSING_HINT,
        ) from error

    try:
        with helm_python.Chart.load(str(chart_dir)) as chart:
            rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    except helm_python.HelmValuesError as error:
        raise _values_error(chart_dir, str(error)) from error
    except helm_python.HelmError as error:
        raise DeployError(f"rendering the {chart_dir.name} chart failed: {error}") from error
    # NOTES.txt is shown to a person after install, not applied.
    return [text for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")]


def render_chart(
    chart_dir: Path,
    values: dict[str, Any],
    *,
    release: str,
    namespace: str,
    kube_version: str | None = None,
    engine: Engine = "auto",
) -> list[dict[str, Any]]:
    """Render a chart with `values` into manifests in install order.

    engine "auto" uses the helm CLI when it is on PATH, else helm-python-sdk; `kube_version` reaches
    only the CLI (`--kube-version`), the SDK renders for Helm's default version.
    """
    if not (chart_dir / "Chart.yaml").is_file():
        raise DeployError(f"{chart_dir}: not a Helm chart (no Chart.yaml)")
    use_cli = engine == "cli" or (engine == "auto" and shutil.which("helm") is not None)
    if use_cli:
        documents = _render_cli(chart_dir, values, release, namespace, kube_version)
    else:
        documents = _render_sdk(chart_dir, values, release, namespace)
    return sort_for_install(parse_manifests(documents, f"{chart_dir.name} chart"))
