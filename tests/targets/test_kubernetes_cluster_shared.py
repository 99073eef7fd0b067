"""A shared cluster on the project's cluster (scripts/cluster): rights asked before anything is built, an object
someone else owns never taken over, expired objects swept whoever made them, an image that cannot be pulled from
the registry named within 60 s, and what the cluster's HPA can read.

Each test waits on the API server at most, except the unpullable image's, which starts one pod. The two runs at
once with a ServiceAccount bound to the Role `harness rbac` prints are docs/cluster.md's steps
(test_kubernetes_cluster_docs.py); a run with generators in the cluster under that Role alone, both images pulled
from the registry, is test_kubernetes_cluster_load.py's requests test.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import ConfigError, DeployError
from harness.exit_codes import ExitCode
from harness.targets.base import OWNER_LABEL, RUN_LABEL
from harness.targets.kubernetes import KubernetesTarget
from harness.targets.kubernetes_access import rights_needed, role_manifests
from harness.targets.kubernetes_objects import EXPIRES_ANNOTATION, expiry_timestamp
from harness.targets.kubernetes_preflight import check_cluster
from tests.targets.cluster_support import (
    WAIT_S,
    admin,
    cluster_scenario,
    harness_cleanup,
    harness_run,
    new_namespace,
    token_kubeconfig,
)
from tests.targets.conftest import DIGITS_DIR, RealCluster
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def namespace_of_its_own(cluster: RealCluster) -> str:
    name = new_namespace()
    admin(cluster).create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


# --------------------------------------------------------------------------- rights, before anything is built


def test_a_missing_verb_is_named_before_the_build_and_nothing_is_created(cluster: RealCluster, tmp_path: Path) -> None:
    api = admin(cluster)
    namespace = namespace_of_its_own(cluster)
    scenario: dict[str, Any] = {
        "name": "missing-verb",
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {"kind": "kubernetes", "kubernetes": {"namespace": namespace, "registry": f"{cluster.registry}/t"}},
        "stages": [{"name": "s", "duration_s": 1, "users": 1}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    try:
        # The Role `harness rbac` would print, less one verb: get on pods/proxy (the default metrics route).
        from harness.config import parse_scenario

        rights = [right for right in rights_needed(parse_scenario(scenario)) if right.resource != "pods/proxy"]
        role, binding = role_manifests(rights, namespace, "harness-run", "harness-ci")
        api.create(role)
        api.create(binding)
        kubeconfig = token_kubeconfig(cluster, "harness-ci", namespace, tmp_path / "ci.kubeconfig")
        scenario["target"]["kubernetes"]["kubeconfig"] = str(kubeconfig)
        result = harness_run(scenario, tmp_path / "scenario.yaml")
        assert result.returncode == ExitCode.INFRASTRUCTURE, result.stderr[-2000:]
        (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert f"in namespace {namespace} the kubeconfig's user may not: get pods/proxy (" in error, error
        assert "harness rbac" in error
        # Nothing was built, pushed or created: no run directory, no object beside the admin's.
        assert not (tmp_path / "reports").exists()
        for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("policy/v1", "PodDisruptionBudget")):
            assert (api.list(api_version, kind, namespace) or {}).get("items") == [], kind
    finally:
        api.delete("v1", "Namespace", None, namespace)


# --------------------------------------------------------------------------- someone else's object


def test_an_object_someone_else_owns_is_named_and_left_as_it_was(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    api = admin(cluster)
    namespace = namespace_of_its_own(cluster)
    release = f"model-service-{uuid.uuid4().hex[:6]}"
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": release, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "c", "image": "theirs:1"}]},
            },
        },
    }
    try:
        before = api.create(theirs)
        scenario = cluster_scenario(cluster, digits_image, namespace, target__kubernetes__release=release)
        target = KubernetesTarget(scenario, tmp_path)
        try:
            with pytest.raises(DeployError) as raised:
                target.start(1)
        finally:
            target.stop()
        message = str(raised.value)
        assert f"Deployment {namespace}/{release} already exists and belongs to field manager(s)" in message, message
        # Its spec and labels are as they were, and the harness wrote none of its fields (its controller did write
        # the status meanwhile).
        after = api.get("apps/v1", "Deployment", namespace, release)
        assert after is not None
        assert (after["spec"], after["metadata"].get("labels")) == (before["spec"], before["metadata"].get("labels"))
        assert after["metadata"]["generation"] == 1
        assert "harness" not in {entry["manager"] for entry in after["metadata"]["managedFields"]}
        # What the run did create before it met the Deployment (its PodDisruptionBudget and Service) is gone.
        for api_version, kind in (("policy/v1", "PodDisruptionBudget"), ("v1", "Service")):
            assert (api.list(api_version, kind, namespace) or {}).get("items") == [], kind
    finally:
        api.delete("v1", "Namespace", None, namespace)


# --------------------------------------------------------------------------- expiry


# With the other cluster-wide cleanup and the watchdog test (tests/targets/test_kubernetes_cluster.py).
@pytest.mark.xdist_group("cleanup")
def test_cleanup_deletes_what_expired_whoever_made_it(cluster: RealCluster) -> None:
    api = admin(cluster)
    now_s = time.time()
    past, future = expiry_timestamp(now_s, -60), expiry_timestamp(now_s, 3600)
    # A run of another machine (its owner looks alive forever from here) that expired, and a live one.
    gone, live = new_namespace(), new_namespace()

    def marked(kind: str, name: str, namespace: str | None, run: str, expires: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {RUN_LABEL: run, OWNER_LABEL: f"elsewhere-1-{run[-4:]}"},
            "annotations": {EXPIRES_ANNOTATION: expires},
        }
        if namespace is not None:
            metadata["namespace"] = namespace
        return {"apiVersion": "v1", "kind": kind, "metadata": metadata}

    try:
        api.create(marked("Namespace", gone, None, f"run-{gone}", past))
        api.create(marked("Namespace", live, None, f"run-{live}", past))
        api.create(marked("ConfigMap", "plan", gone, f"run-{gone}", past))
        # Another run, still going, uses the namespace whose creator expired: the namespace stays for it.
        api.create(
            marked("Service", "model-service-live", live, "run-still-going", future)
            | {"spec": {"ports": [{"port": 80}]}}
        )
        api.create(marked("ConfigMap", "plan", live, f"run-{live}", past))
        result = harness_cleanup(cluster)
        assert result.returncode == 0, result.stderr
        assert f"cluster: deleted expired ConfigMap {gone}/plan (run run-{gone})" in result.stdout
        assert f"cluster: deleted expired namespace {gone} (run run-{gone})" in result.stdout
        assert f"cluster: deleted expired ConfigMap {live}/plan (run run-{live})" in result.stdout
        kept = f"cluster: kept expired namespace {live}: it holds Service model-service-live of harness run "
        assert kept + "run-still-going" in result.stdout
        assert api.get("v1", "Service", live, "model-service-live") is not None
        assert (api.get("v1", "Namespace", None, live) or {}).get("status", {}).get("phase") == "Active"
    finally:
        api.delete("v1", "Namespace", None, gone)
        api.delete("v1", "Namespace", None, live)


# --------------------------------------------------------------------------- the registry


def test_an_image_the_registry_does_not_have_is_named_within_60_s(cluster: RealCluster, tmp_path: Path) -> None:
    namespace = new_namespace()
    missing = f"{cluster.registry}/harness-test/missing@sha256:{'0' * 64}"
    scenario = {
        "name": "unpullable",
        "service": {"path": str(DIGITS_DIR), "service": "service:DigitsClassifier"},
        "target": {
            "kind": "kubernetes",
            "replicas": 1,
            "kubernetes": {"kubeconfig": str(cluster.kubeconfig), "namespace": namespace, "image": missing},
        },
        "stages": [{"name": "s", "duration_s": 1, "users": 1}],
        "output": {"dir": str(tmp_path / "reports")},
    }
    started_s = time.monotonic()
    result = harness_run(scenario, tmp_path / "scenario.yaml")
    elapsed_s = time.monotonic() - started_s
    assert result.returncode == ExitCode.INFRASTRUCTURE, result.stderr[-2000:]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot pull image {missing} (ImagePullBackOff" in error, error
    # The whole run, its start and its cleanup included: the pod's status names the cause at once.
    assert elapsed_s < 60, f"{elapsed_s:.0f} s"
    api = admin(cluster)
    wait_until(lambda: api.get("v1", "Namespace", None, namespace) is None, f"namespace {namespace} gone", WAIT_S)


def test_the_registry_refuses_a_push_without_credentials(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    """With no Docker credentials for the registry, the push fails in one line saying to log in."""
    (tmp_path / "config.json").write_text(yaml.safe_dump({"auths": {}}))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from harness.push import push_image; push_image({digits_image!r}, '{cluster.registry}/harness-test')",
        ],
        env={"PATH": "/usr/bin:/bin", "DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "no basic auth credentials" in result.stderr or "unauthorized" in result.stderr.lower(), result.stderr[
        -2000:
    ]
    assert f"docker login {cluster.registry}" in result.stderr


# --------------------------------------------------------------------------- what the cluster's HPA can read


def test_the_cluster_decides_what_its_hpa_can_read(cluster: RealCluster, digits_image: str) -> None:
    """Memory and a Pods series of the adapter are the cluster's to read (metrics-server, prometheus-adapter); an
    External metric it has no API for is named before anything is built."""
    memory = {
        "type": "Resource",
        "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}},
    }
    in_progress = {
        "type": "Pods",
        "pods": {
            "metric": {"name": "bentoml_service_request_in_progress"},
            "target": {"type": "AverageValue", "averageValue": 4},
        },
    }
    queue = {
        "type": "External",
        "external": {"metric": {"name": "queue_depth"}, "target": {"type": "Value", "value": 3}},
    }
    readable = cluster_scenario(cluster, digits_image, "default", autoscaling={"metrics": [memory, in_progress]})
    warnings = check_cluster(readable)
    # The adapter lists a series only while pods expose it: at most a warning, never a refusal.
    assert all("bentoml_service_request_in_progress" in warning for warning in warnings), warnings
    unreadable = cluster_scenario(cluster, digits_image, "default", autoscaling={"metrics": [memory, queue]})
    with pytest.raises(
        ConfigError, match=r"autoscaling.metrics\[1\] \(External queue_depth\) needs external.metrics.k8s.io"
    ):
        check_cluster(unreadable)
