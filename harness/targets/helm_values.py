"""The one mapping from a scenario to charts/model-service's values (charts/loadgen's are harness.load.in_cluster's).

Pure functions: the scenario's resources, replicas, service settings and its `autoscaling:` section
(HPA autoscaling/v2 field names) become chart values; the charts' values.schema.json checks them again
when they are rendered. The local autoscaler's controller flags (syncPeriodSeconds, the top-level
tolerance, cpuInitializationPeriodSeconds, initialReadinessDelaySeconds) are not HPA spec fields and
never reach the HPA.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

from harness.config import AutoscalingConfig, ResourceAmounts, Resources, Scenario
from harness.errors import ConfigError
from harness.service_env import container_env
from harness.targets.serving import CONTAINER_PORT, bentoml_config_options

# Chart keys of the HPA spec that come from the scenario's autoscaling: section unchanged.
HPA_SPEC_FIELDS = ("minReplicas", "maxReplicas", "metrics", "behavior")
# Kubernetes label values: at most 63 characters, alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_KUBE_VERSION = re.compile(r"^v?(\d+)\.(\d+)")
# The chart's startup probe period (charts/model-service/values.yaml, kept equal by a test); failureThreshold is
# derived from target.startup_timeout_s.
STARTUP_PROBE_PERIOD_S = 2

ToleranceSupport = Literal["unsupported", "feature-gate", "default-on"]


def run_id_label(run_id: str) -> str:
    """The run id as a Kubernetes label value: unchanged when valid, else shortened with a hash suffix."""
    if _LABEL_VALUE.match(run_id):
        return run_id
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)[:54].strip("-_.")
    return f"{stem}-{digest}" if stem else f"run-{digest}"


def parse_kube_version(version: str) -> tuple[int, int]:
    """(major, minor) of a Kubernetes version such as "v1.33.1" or "1.31"."""
    match = _KUBE_VERSION.match(version.strip())
    if not match:
        raise ConfigError(f"Kubernetes version '{version}' is not of the form v1.33 or 1.33.2")
    return int(match.group(1)), int(match.group(2))


def hpa_tolerance_support(kube_version: str) -> ToleranceSupport:
    """Whether HPA behavior.scaleUp/scaleDown.tolerance exists on this Kubernetes version.

    KEP-4951: alpha in 1.33 and 1.34 (feature gate HPAConfigurableTolerance, off by default: the API
    server silently drops the field), beta and on by default from 1.35.
    """
    version = parse_kube_version(kube_version)
    if version < (1, 33):
        return "unsupported"
    return "feature-gate" if version < (1, 35) else "default-on"


def format_quantity(value: str | int | float) -> str:
    """A Kubernetes quantity as a string; floats in plain decimal form (never 1e-05)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def split_image(image: str) -> dict[str, str]:
    """An image reference as the chart's image.repository / image.tag / image.digest."""
    if not image or any(c.isspace() for c in image):
        raise ConfigError(f"image '{image}' is not an image reference (expected e.g. model-service:abc123)")
    if "@" in image:
        repository, digest = image.split("@", 1)
        return {"repository": repository, "tag": "", "digest": digest}
    # A colon after the last slash is the tag; one before it is a registry port (localhost:5000/x).
    name_start = image.rfind("/") + 1
    colon = image.rfind(":")
    if colon > name_start:
        return {"repository": image[:colon], "tag": image[colon + 1 :], "digest": ""}
    return {"repository": image, "tag": "latest", "digest": ""}


def pull_secret_refs(names: Iterable[str]) -> list[dict[str, str]]:
    """A pod spec's imagePullSecrets for Secrets named `names`, each once (both charts take the same value)."""
    return [{"name": name} for name in dict.fromkeys(names)]


def _amounts(amounts: ResourceAmounts) -> dict[str, str]:
    values = {"cpu": amounts.cpu, "memory": amounts.memory}
    return {name: format_quantity(value) for name, value in values.items() if value is not None}


def resources_values(resources: Resources) -> dict[str, dict[str, str]]:
    """A container's `resources` (requests and limits that are set) from the scenario's quantities."""
    return {
        kind: amounts
        for kind, amounts in (("requests", _amounts(resources.requests)), ("limits", _amounts(resources.limits)))
        if amounts
    }


def hpa_spec(autoscaling: AutoscalingConfig, kube_version: str | None = None) -> dict[str, Any]:
    """minReplicas, maxReplicas, metrics and behavior of the HPA, in the HPA's own spelling.

    With `kube_version` below 1.33, a behavior tolerance is a ConfigError: the field does not exist there.
    """
    dumped = autoscaling.model_dump(by_alias=True, exclude_none=True, mode="json")
    spec: dict[str, Any] = {field: dumped[field] for field in HPA_SPEC_FIELDS if field in dumped}
    behavior = spec.get("behavior") or {}
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior.get(direction) or {}
        if "tolerance" in rules:
            rules["tolerance"] = format_quantity(rules["tolerance"])
            if kube_version is not None and hpa_tolerance_support(kube_version) == "unsupported":
                raise ConfigError(
                    f"autoscaling.behavior.{direction}.tolerance needs Kubernetes >= 1.33 (feature gate "
                    f"HPAConfigurableTolerance); the cluster runs {kube_version}",
                    hint="remove it, or use the top-level autoscaling.tolerance (local autoscaler only)",
                )
    for metric in spec.get("metrics", []):
        source = metric.get(metric["type"][0].lower() + metric["type"][1:]) or {}
        target = source.get("target") or {}
        for key in ("averageValue", "value"):
            if key in target:
                target[key] = format_quantity(target[key])
    if not spec.get("behavior"):
        spec.pop("behavior", None)
    return spec


def model_service_values(
    scenario: Scenario,
    image: str,
    run_id: str,
    *,
    kube_version: str | None = None,
    service_monitor: bool = False,
    pull_policy: Literal["IfNotPresent", "Never", "Always"] = "IfNotPresent",
    image_pull_secrets: Sequence[str] = (),
    node_port: int | None = None,
) -> dict[str, Any]:
    """Values for charts/model-service from a scenario; `kube_version` gates version-specific HPA fields,
    `service_monitor` renders a Prometheus Operator ServiceMonitor, `image_pull_secrets` names the Secrets the pods
    pull their image with, `node_port` makes the Service a NodePort."""
    service = scenario.service
    autoscaling = scenario.autoscaling
    values: dict[str, Any] = {
        "runId": run_id_label(run_id),
        "image": {**split_image(image), "pullPolicy": pull_policy},
        "imagePullSecrets": pull_secret_refs(image_pull_secrets),
        "replicaCount": scenario.target.replicas,
        # The common scrape annotations: a Prometheus with pod discovery (scripts/cluster's) finds the pods.
        "podAnnotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(CONTAINER_PORT),
            "prometheus.io/path": service.metrics_path,
        },
        "resources": resources_values(scenario.resources),
        "env": container_env(service),
        "bentomlConfigOptions": bentoml_config_options(scenario),
        # Only what the scenario decides; the probes' timings are the chart's (values.yaml), which Helm merges in.
        "probes": {
            "readinessPath": service.readiness_path,
            "startup": {
                "failureThreshold": max(1, math.ceil(scenario.target.startup_timeout_s / STARTUP_PROBE_PERIOD_S)),
            },
        },
        "serviceMonitor": {"enabled": service_monitor, "path": service.metrics_path},
    }
    if node_port is not None:
        values["service"] = {"nodePort": node_port}
    if autoscaling is not None and autoscaling.enabled:
        values["autoscaling"] = {"enabled": True, **hpa_spec(autoscaling, kube_version)}
    else:
        values["autoscaling"] = {"enabled": False}
    return values
