"""The Helm charts rendered by the real Helm engine (helm-python-sdk, Helm's Go SDK) and every manifest validated
against the Kubernetes API schemas of two minor versions (kubernetes-validate, strict: unknown fields fail).

Values come from harness/targets/helm_values.py for the chart defaults and for every scenario in loadtests/;
the rendered output is pinned by golden files in tests/targets/golden/ (regenerate: HARNESS_UPDATE_GOLDEN=1).
No Kubernetes API server can run here: this is rendering, schema validation and the HPA contract only.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.config import AutoscalingConfig, LoadgenPodsConfig, RequestConfig, Scenario, load_scenario
from harness.errors import ConfigError
from harness.load.bodies import relocate
from harness.load.in_cluster import loadgen_values
from harness.load.plan import LoadPlan, build_load_plan
from harness.load.pod_files import POD_INPUTS_DIR, pod_plan
from harness.load.requests import ready_requests
from harness.quantity import parse_quantity
from harness.targets.base import RUN_LABEL
from harness.targets.helm import LOADGEN_CHART, MODEL_SERVICE_CHART, render_chart
from harness.targets.helm_values import STARTUP_PROBE_PERIOD_S, model_service_values, resources_values
from harness.targets.serving import CONTAINER_PORT
from tests.load.test_pod_files import joined

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = sorted((ROOT / "loadtests").glob("*.yaml"))
# Two supported minor versions: one without HPA behavior tolerance, one with it (alpha).
KUBE_VERSIONS = ("1.31", "1.33")
# Custom resources have no schema in the Kubernetes API (only their CRD has), so these are not validated.
CRD_KINDS = {"ServiceMonitor"}
IMAGE = "digits-classifier:20250301"
RUN_ID = "20250301T120000Z-test"
SERVICE_URL = "http://model-service.harness.svc.cluster.local:3000"

AUTOSCALING = {
    "minReplicas": 2,
    "maxReplicas": 6,
    "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "bentoml_service_request_in_progress"},
                "target": {"type": "AverageValue", "averageValue": "4"},
            },
        },
    ],
    "behavior": {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 2, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}],
        },
    },
    # Controller flags for the local autoscaler: never HPA fields.
    "syncPeriodSeconds": 5,
    "tolerance": 0.05,
    "cpuInitializationPeriodSeconds": 60,
    "initialReadinessDelaySeconds": 10,
}


def with_autoscaling(scenario: Scenario, section: dict[str, Any]) -> Scenario:
    return scenario.model_copy(update={"autoscaling": AutoscalingConfig.model_validate(section)})


def default_scenario() -> Scenario:
    return load_scenario(ROOT / "loadtests" / "default.yaml")


def tolerance_section() -> dict[str, Any]:
    section: dict[str, Any] = yaml.safe_load(yaml.safe_dump(AUTOSCALING))
    section["behavior"]["scaleUp"]["tolerance"] = 0.02
    section["behavior"]["scaleDown"]["tolerance"] = "0.05"
    return section


def render_model_service(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    return render_chart(MODEL_SERVICE_CHART, values or {}, release="model-service", namespace="harness", engine="sdk")


def render_loadgen(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    return render_chart(LOADGEN_CHART, values or {}, release="loadgen", namespace="harness", engine="sdk")


def plan_of(scenario: Scenario) -> LoadPlan:
    return build_load_plan(scenario, endpoints_file=Path("/run/endpoints.json"), intervals_dir=Path("/run/intervals"))


def validate_all(manifests: list[dict[str, Any]], kube_version: str) -> list[str]:
    """Validate every manifest strictly; returns the kinds validated."""
    validated = []
    for manifest in manifests:
        if manifest["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(manifest, kube_version, strict=True)
        validated.append(manifest["kind"])
    return validated


def check_golden(name: str, manifests: list[dict[str, Any]]) -> None:
    path = GOLDEN / f"{name}.yaml"
    text = yaml.safe_dump_all(manifests, sort_keys=False)
    if os.environ.get("HARNESS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with HARNESS_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{path} differs from the rendered chart; review, then HARNESS_UPDATE_GOLDEN=1"


def quantities_as_numbers(node: Any) -> Any:
    """Quantities compared by value: the chart writes "4" where a scenario may say 4."""
    if isinstance(node, dict):
        return {
            key: parse_quantity(value)
            if key in ("averageValue", "value", "tolerance")
            else quantities_as_numbers(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [quantities_as_numbers(item) for item in node]
    return node


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


# --------------------------------------------------------------------------- model-service chart


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_model_service_defaults_render_to_valid_manifests(kube_version: str) -> None:
    manifests = render_model_service(None)
    assert validate_all(manifests, kube_version) == ["PodDisruptionBudget", "Service", "Deployment"]
    check_golden("model-service-chart-defaults", manifests)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_model_service_from_each_loadtest_scenario(path: Path, kube_version: str) -> None:
    scenario = load_scenario(path)
    manifests = render_model_service(model_service_values(scenario, IMAGE, RUN_ID, kube_version=kube_version))
    validated = validate_all(manifests, kube_version)
    assert "Deployment" in validated and "Service" in validated
    deployment = by_kind(manifests, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    requests = scenario.resources.requests
    assert container.get("resources", {}).get("requests", {}) == {
        key: str(value) for key, value in (("cpu", requests.cpu), ("memory", requests.memory)) if value is not None
    }
    env = {item["name"]: item["value"] for item in container["env"]}
    assert "logging.access.enabled=false" in env["BENTOML_CONFIG_OPTIONS"]
    assert container["readinessProbe"]["httpGet"]["path"] == scenario.service.readiness_path
    autoscaled = scenario.autoscaling is not None and scenario.autoscaling.enabled
    assert ("replicas" in deployment["spec"]) is not autoscaled
    if not autoscaled:
        assert deployment["spec"]["replicas"] == scenario.target.replicas
    else:
        assert scenario.autoscaling is not None
        section = scenario.autoscaling.model_dump(by_alias=True, exclude_none=True, mode="json")
        hpa = by_kind(manifests, "HorizontalPodAutoscaler")["spec"]
        for key in ("minReplicas", "maxReplicas", "metrics", "behavior"):
            assert quantities_as_numbers(hpa.get(key)) == quantities_as_numbers(section.get(key)), key
    for manifest in manifests:
        assert manifest["metadata"]["labels"]["harness.dev/run-id"] == RUN_ID
        assert manifest["metadata"]["namespace"] == "harness"
    check_golden(f"model-service-{path.stem}", manifests)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_autoscaled_scenario_renders_an_hpa_equal_to_the_autoscaling_section(kube_version: str) -> None:
    scenario = with_autoscaling(default_scenario(), AUTOSCALING)
    manifests = render_model_service(model_service_values(scenario, IMAGE, RUN_ID, kube_version=kube_version))
    assert validate_all(manifests, kube_version) == [
        "PodDisruptionBudget",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
    ]
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model-service"}
    expected = {key: AUTOSCALING[key] for key in ("minReplicas", "maxReplicas", "metrics", "behavior")}
    # Field by field: the HPA spec is the section's HPA fields and nothing else.
    assert set(hpa["spec"]) == {"scaleTargetRef", *expected}
    for key, value in expected.items():
        assert hpa["spec"][key] == value, key
    # The Deployment leaves the replica count to the HPA.
    assert "replicas" not in by_kind(manifests, "Deployment")["spec"]
    check_golden("model-service-autoscaling", manifests)


def test_behavior_tolerance_renders_on_133_and_is_refused_below() -> None:
    scenario = with_autoscaling(default_scenario(), tolerance_section())
    manifests = render_model_service(model_service_values(scenario, IMAGE, RUN_ID, kube_version="v1.33.1"))
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"]["scaleUp"]["tolerance"] == "0.02"
    assert hpa["spec"]["behavior"]["scaleDown"]["tolerance"] == "0.05"
    assert validate_all(manifests, "1.33")[-1] == "HorizontalPodAutoscaler"
    # The same HPA is invalid for 1.31, whose API has no tolerance field: the validation is strict.
    with pytest.raises(kubernetes_validate.ValidationError, match="tolerance"):
        kubernetes_validate.validate(hpa, "1.31", strict=True)
    with pytest.raises(ConfigError, match=r"behavior\.scaleUp\.tolerance needs Kubernetes >= 1\.33"):
        model_service_values(scenario, IMAGE, RUN_ID, kube_version="v1.31.4")


def test_service_monitor_is_off_by_default_and_renders_when_enabled() -> None:
    assert "ServiceMonitor" not in {m["kind"] for m in render_model_service(None)}
    values = model_service_values(default_scenario(), IMAGE, RUN_ID)
    values["serviceMonitor"]["enabled"] = True
    manifests = render_model_service(values)
    monitor = by_kind(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
        "honorLabels": True,
    }
    assert monitor["spec"]["podTargetLabels"] == ["harness.dev/run-id"]
    # Everything else still validates; only the custom resource is skipped.
    assert validate_all(manifests, "1.33") == ["PodDisruptionBudget", "Service", "Deployment"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda v: v.update(replicaCont=3), "additional properties 'replicaCont' not allowed"),
        (lambda v: v["autoscaling"].update(minReplica=2), "additional properties 'minReplica' not allowed"),
        (lambda v: v["autoscaling"].update(syncPeriodSeconds=15), "additional properties 'syncPeriodSeconds'"),
        (lambda v: v["image"].update(pullPolicy="Sometimes"), "/image/pullPolicy"),
        (lambda v: v["resources"]["requests"].update(cpu="half"), "/resources/requests/cpu"),
        (
            lambda v: v["autoscaling"]["metrics"][0]["resource"]["target"].update(averageUtilisation=50),
            "additional properties 'averageUtilisation' not allowed",
        ),
    ],
    ids=["top-level", "autoscaling", "controller-flag", "enum", "quantity", "metric-target"],
)
def test_values_schema_rejects_misspelt_or_invalid_values(change: Any, expected: str) -> None:
    values = model_service_values(with_autoscaling(default_scenario(), AUTOSCALING), IMAGE, RUN_ID)
    change(values)
    with pytest.raises(ConfigError, match=r"values rejected by .*values\.schema\.json") as raised:
        render_model_service(values)
    assert expected in str(raised.value)


def test_hpa_behavior_is_rendered_only_when_the_scenario_has_one() -> None:
    section = {key: value for key, value in AUTOSCALING.items() if key != "behavior"}
    manifests = render_model_service(model_service_values(with_autoscaling(default_scenario(), section), IMAGE, RUN_ID))
    assert "behavior" not in by_kind(manifests, "HorizontalPodAutoscaler")["spec"]


def test_disabled_autoscaling_renders_no_hpa_and_fixed_replicas() -> None:
    section = dict(AUTOSCALING, enabled=False)
    scenario = with_autoscaling(default_scenario(), section)
    manifests = render_model_service(model_service_values(scenario, IMAGE, RUN_ID))
    assert "HorizontalPodAutoscaler" not in {m["kind"] for m in manifests}
    assert by_kind(manifests, "Deployment")["spec"]["replicas"] == scenario.target.replicas


def test_every_object_of_both_charts_carries_the_harness_run_label() -> None:
    scenario = default_scenario()
    rendered = [
        *render_model_service(model_service_values(scenario, IMAGE, RUN_ID)),
        *render_loadgen({"runId": RUN_ID}),
    ]
    assert {manifest["metadata"]["labels"].get(RUN_LABEL) for manifest in rendered} == {RUN_ID}


def test_deployment_has_probes_and_graceful_termination() -> None:
    spec = by_kind(render_model_service(None), "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["args"] == ["serve", "--port", "3000"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    # The preStop sleep must fit inside the grace period, leaving time for BentoML to drain.
    assert spec["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_the_charts_container_port_is_the_one_the_harness_reaches_replicas_on() -> None:
    assert yaml.safe_load((MODEL_SERVICE_CHART / "values.yaml").read_text())["containerPort"] == CONTAINER_PORT


def test_probe_timings_are_the_charts_and_the_startup_threshold_the_scenarios() -> None:
    chart_probes = yaml.safe_load((MODEL_SERVICE_CHART / "values.yaml").read_text())["probes"]
    assert chart_probes["startup"]["periodSeconds"] == STARTUP_PROBE_PERIOD_S
    base = default_scenario()
    scenario = base.model_copy(update={"target": base.target.model_copy(update={"startup_timeout_s": 61})})
    values = model_service_values(scenario, IMAGE, RUN_ID)
    container = by_kind(render_model_service(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for probe, timing in (("readinessProbe", "readiness"), ("livenessProbe", "liveness"), ("startupProbe", "startup")):
        expected = {**chart_probes[timing], **({"failureThreshold": 31} if timing == "startup" else {})}
        assert {key: container[probe][key] for key in expected} == expected


# --------------------------------------------------------------------------- loadgen chart


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_loadgen_defaults_render_to_valid_manifests(kube_version: str) -> None:
    manifests = render_loadgen(None)
    assert validate_all(manifests, kube_version) == ["ServiceAccount", "Service", "Job", "Job"]
    check_golden("loadgen-chart-defaults", manifests)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_loadgen_from_each_loadtest_scenario(path: Path, kube_version: str) -> None:
    scenario = load_scenario(path)
    values = loadgen_values(plan_of(scenario), "harness-loadgen:1", RUN_ID, service_url=SERVICE_URL, workers=3)
    manifests = render_loadgen(values)
    assert validate_all(manifests, kube_version) == ["ServiceAccount", "ConfigMap", "Service", "Job", "Job"]
    master = next(m for m in manifests if m["metadata"]["name"] == "loadgen-master" and m["kind"] == "Job")
    worker = next(m for m in manifests if m["metadata"]["name"] == "loadgen-worker")
    args = master["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--expect-workers=3" in args and f"--host={SERVICE_URL}" in args and "--headless" in args
    assert f"--run-time={values['runTimeSeconds']}s" in args
    assert worker["spec"]["completions"] == worker["spec"]["parallelism"] == 3
    assert "--master-host=$(LOADGEN_MASTER_SERVICE_HOST)" in worker["spec"]["template"]["spec"]["containers"][0]["args"]
    # Both Jobs end on their own, and are bounded if they do not; their pods run under an account of their
    # own with no token, as the "restricted" Pod Security Standard wants them.
    account = by_kind(manifests, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for job in (master, worker):
        assert job["spec"]["activeDeadlineSeconds"] >= values["runTimeSeconds"]
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["serviceAccountName"] == account["metadata"]["name"] and pod["automountServiceAccountToken"] is False
        assert (
            pod["securityContext"]["runAsNonRoot"]
            and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        )
        container = pod["containers"][0]["securityContext"]
        assert container["readOnlyRootFilesystem"] and container["capabilities"]["drop"] == ["ALL"]
        # Not BestEffort: requests and limits of CPU and memory, so a ResourceQuota admits the pods.
        resources = pod["containers"][0]["resources"]
        assert {kind: set(resources[kind]) for kind in ("requests", "limits")} == {
            "requests": {"cpu", "memory"},
            "limits": {"cpu", "memory"},
        }
    files = files_in_pods(manifests)
    plan = json.loads(files["load_plan.json"])
    assert plan["processes"] == 3
    assert [stage["name"] for stage in plan["stages"]] == [stage.name for stage in scenario.stages]
    assert plan["endpoints_file"] == "/etc/harness/endpoints.json"
    assert json.loads(files["endpoints.json"]) == [SERVICE_URL]
    check_golden(f"loadgen-{path.stem}", manifests)


def files_in_pods(manifests: list[dict[str, Any]]) -> dict[str, bytes]:
    """The files charts/loadgen's pods read from /etc/harness, joined from the parts in its ConfigMaps as the pods'
    shell joins them, and checked to be mounted in both Jobs' pods."""
    configmaps = [
        m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith("loadgen-files")
    ]
    for job in (m for m in manifests if m["kind"] == "Job"):
        pod = job["spec"]["template"]["spec"]
        (parts,) = [volume for volume in pod["volumes"] if volume["name"] == "harness-parts"]
        assert [source["configMap"]["name"] for source in parts["projected"]["sources"]] == [
            configmap["metadata"]["name"] for configmap in configmaps
        ]
        script = pod["containers"][0]["command"][2]
        assert 'cat /etc/harness-parts/"$name".[0-9][0-9][0-9][0-9] > /etc/harness/"$name"' in script
    return joined(configmaps)


@pytest.mark.integration  # runs the pods' start script with /bin/sh
def test_loadgen_pods_lay_out_the_files_of_an_upload_as_the_harness_reads_them(tmp_path: Path) -> None:
    """loadtests/digits-images.yaml with the in-cluster generator: the workers' own start script, run here by
    /bin/sh on the parts as the kubelet writes a projected volume's keys, joins the PNGs and their data set and lays
    them out so that the pods' plan prepares the harness's bodies byte for byte."""
    plan = plan_of(load_scenario(ROOT / "loadtests" / "digits-images.yaml"))
    manifests = render_loadgen(loadgen_values(plan, "harness-loadgen:1", RUN_ID, service_url=SERVICE_URL, workers=2))
    etc = tmp_path / "etc"
    (etc / "harness").mkdir(parents=True)
    (etc / "harness-parts").mkdir()
    for configmap in (m for m in manifests if m["kind"] == "ConfigMap"):
        for key, text in (configmap.get("data") or {}).items():
            (etc / "harness-parts" / key).write_bytes(text.encode())
        for key, value in (configmap.get("binaryData") or {}).items():
            (etc / "harness-parts" / key).write_bytes(base64.b64decode(value))
    worker = next(m for m in manifests if m["metadata"]["name"] == "loadgen-worker")
    script = worker["spec"]["template"]["spec"]["containers"][0]["command"][2]
    start = script[: script.index("exec locust")].replace("/etc/", f"{etc}/").replace("/results", f"{tmp_path}/results")
    subprocess.run(["/bin/sh", "-c", start], check=True, timeout=60)
    in_pod = LoadPlan.from_json((etc / "harness" / "load_plan.json").read_text())
    assert in_pod.requests is not None and plan.requests is not None
    (request,) = in_pod.requests
    assert request.dataset == POD_INPUTS_DIR / "0" / "labels.jsonl"
    assert sorted(path.name for path in (etc / "harness" / "inputs" / "0").iterdir())[:2] == ["0000.png", "0005.png"]
    here = relocate(request, POD_INPUTS_DIR / "0", etc / "harness" / "inputs" / "0")
    (pods,) = ready_requests([here], {})
    (harness,) = ready_requests(plan.requests, {})
    assert len(pods.bodies) == 100 and [b.body for b in pods.bodies] == [b.body for b in harness.bodies]
    assert pods.headers == harness.headers


def test_loadgen_jsonl_payload_goes_to_the_pods(tmp_path: Path) -> None:
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"x": [1, 2]}\n{"x": [3, 4]}\n')
    scenario = default_scenario()
    scenario = scenario.model_copy(
        update={"payload": scenario.payload.model_copy(update={"source": "jsonl", "file": bodies})}
    )
    files = files_in_pods(
        render_loadgen(loadgen_values(plan_of(scenario), "harness-loadgen:1", RUN_ID, service_url=SERVICE_URL))
    )
    assert files["0-bodies.jsonl"] == bodies.read_bytes()
    assert json.loads(files["load_plan.json"])["payload"] == {
        "source": "jsonl",
        "file": "/etc/harness/0-bodies.jsonl",
        "batch_rows": 1,
        "malformed_fraction": 0,
    }


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_loadgen_requests_with_a_large_data_set_a_secret_and_placement(tmp_path: Path, kube_version: str) -> None:
    """requests: with a data set over 1 MiB (two ConfigMaps), header variables from a Secret, and the pods placed
    as the scenario says: every manifest valid."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"x": {n}, "pad": "{"p" * 300}"}}\n' for n in range(4000)))
    scenario = default_scenario().model_copy(
        update={
            "requests": [
                RequestConfig(
                    name="predict",
                    path="/predict",
                    headers={"Authorization": "Bearer ${API_TOKEN}"},
                    body_template={"x": "{{x}}"},
                    dataset=rows,
                )
            ]
        }
    )
    pods = LoadgenPodsConfig.model_validate(
        {
            "node_selector": {"pool": "loadgen"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}],
            "service_account_name": "loadgen-runner",
        }
    )
    values = loadgen_values(
        plan_of(scenario),
        "harness-loadgen:1",
        RUN_ID,
        service_url=SERVICE_URL,
        pods=pods,
        pull_secrets=["team-registry"],
        env_secret_name="lg-env",
    )
    manifests = render_loadgen(values)
    # The plan's ConfigMap and two parts of the data set; no account of the chart's own when the scenario names one.
    assert validate_all(manifests, kube_version) == ["ConfigMap", "ConfigMap", "ConfigMap", "Service", "Job", "Job"]
    files = files_in_pods(manifests)
    assert files["0-rows.jsonl"] == rows.read_bytes()
    assert json.loads(files["load_plan.json"])["requests"][0]["dataset"] == "/etc/harness/0-rows.jsonl"
    for job in (m for m in manifests if m["kind"] == "Job"):
        pod = job["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "loadgen-runner"
        assert pod["nodeSelector"] == {"pool": "loadgen"}
        assert pod["tolerations"] == [
            {"key": "dedicated", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
        ]
        assert pod["imagePullSecrets"] == [{"name": "team-registry"}]
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "lg-env"}}]


def test_the_loadgen_charts_default_resources_are_the_scenarios() -> None:
    chart = yaml.safe_load((LOADGEN_CHART / "values.yaml").read_text())["resources"]
    defaults = LoadgenPodsConfig()
    assert chart == {
        "master": resources_values(defaults.master_resources),
        "worker": resources_values(defaults.resources),
    }


def test_loadgen_schema_rejects_a_misspelt_key() -> None:
    with pytest.raises(ConfigError, match="additional properties 'worker' not allowed"):
        render_loadgen({"worker": 3})


# --------------------------------------------------------------------------- kind support files


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_metrics_server_manifest_is_valid_and_trusts_kind_kubelets(kube_version: str) -> None:
    manifests = [
        m for m in yaml.safe_load_all((ROOT / "charts" / "metrics-server" / "components.yaml").read_text()) if m
    ]
    assert validate_all(manifests, kube_version)[-1] == "APIService"
    container = by_kind(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--kubelet-insecure-tls" in container["args"]
    assert by_kind(manifests, "APIService")["metadata"]["name"] == "v1beta1.metrics.k8s.io"


def test_kind_config_is_one_node_publishing_a_node_port_on_loopback() -> None:
    config = yaml.safe_load((ROOT / "charts" / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]
    (mapping,) = config["nodes"][0]["extraPortMappings"]
    assert mapping["listenAddress"] == "127.0.0.1" and 30000 <= mapping["containerPort"] <= 32767


def test_a_node_port_makes_the_service_a_node_port_service() -> None:
    scenario = load_scenario(ROOT / "loadtests" / "default.yaml")
    service = by_kind(render_model_service(model_service_values(scenario, IMAGE, RUN_ID, node_port=30080)), "Service")
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == 30080
    service = by_kind(render_model_service(model_service_values(scenario, IMAGE, RUN_ID)), "Service")
    assert service["spec"]["type"] == "ClusterIP" and "nodePort" not in service["spec"]["ports"][0]


def test_the_plan_a_worker_pod_reads_is_the_harness_plan_with_the_pods_paths() -> None:
    """The plan crosses the chart as the harness wrote it (a JSON file: Helm drops null values of objects, and
    an absent `requests` once crashed every in-cluster master)."""
    scenario = load_scenario(ROOT / "loadtests" / "default.yaml")
    plan = plan_of(scenario)
    values = loadgen_values(plan, "harness-loadgen:1", RUN_ID, service_url=SERVICE_URL, workers=2)
    in_pod = LoadPlan.from_json(files_in_pods(render_loadgen(values))["load_plan.json"].decode())
    assert in_pod == pod_plan(plan, 2)
    assert (in_pod.processes, in_pod.endpoints_file, in_pod.intervals_dir) == (
        2,
        "/etc/harness/endpoints.json",
        "/results/intervals",
    )
    assert in_pod.stages == plan.stages and in_pod.requests is None and in_pod.user_locustfile is None
