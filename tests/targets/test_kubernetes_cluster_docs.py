"""docs/cluster.md, "Run on your cluster", run as written on the project's cluster (scripts/cluster): every shell
block in order, in one bash, with this test's values in place of the page's first block.

An admin makes a namespace, a ServiceAccount bound to the Role `harness rbac` prints, a pull secret for the
cluster's registry (Debian's docker-registry with htpasswd), and a kubeconfig holding only that ServiceAccount's
token; then two runs start at once in the shared namespace with that kubeconfig, each pushing the image to the
registry with Docker credentials of this test's own (DOCKER_CONFIG) and deploying it by digest with the pull
secret, side-loading off. Both must end in a verdict, each touching only its own objects.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.targets.cluster_support import WAIT_S, admin, delete_from_registry, new_namespace
from tests.targets.conftest import ROOT, RealCluster
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

DOC = ROOT / "docs" / "cluster.md"
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def doc_blocks() -> list[str]:
    return _BLOCK.findall(DOC.read_text())


def test_the_page_starts_with_the_values_a_user_sets() -> None:
    blocks = doc_blocks()
    assert len(blocks) >= 5 and blocks[0].startswith("# Your values.")
    for name in ("KUBECONFIG", "NAMESPACE", "REGISTRY", "REGISTRY_USER", "REGISTRY_PASSWORD", "IMAGE", "REPORTS"):
        assert re.search(rf"^(export )?{name}=", blocks[0], re.MULTILINE), name


def test_run_on_your_cluster_as_the_page_says(cluster: RealCluster, digits_image: str, tmp_path: Path) -> None:
    namespace = new_namespace()
    reports = tmp_path / "reports"
    values = "\n".join(
        [
            f"export KUBECONFIG={cluster.kubeconfig}",
            f"export PATH={cluster.tools}:{Path(sys.executable).parent}:$PATH",
            f"export DOCKER_CONFIG={tmp_path / 'docker-config'}",
            f"NAMESPACE={namespace}",
            # A repository of this test's own: another test deleting the same image from its own cannot touch it.
            f"REGISTRY={cluster.registry}/harness-test-docs",
            f"REGISTRY_USER={cluster.registry_user}",
            f'REGISTRY_PASSWORD="$(cat {cluster.registry_password_file})"',
            f"IMAGE={digits_image}",
            f"REPORTS={reports}",
        ]
    )
    # The page's paths are relative to a checkout: the test works in a folder of its own that links to this one's.
    for name in ("loadtests", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    script = "\n".join(["set -euo pipefail", values, *doc_blocks()[1:]])
    api = admin(cluster)
    try:
        result = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
        )
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("first", "second")}
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # A verdict (0, 1 or 3) from both runs, never a harness error.
        assert not re.search(r"run: exit [245]", result.stdout), result.stdout + "\n".join(logs.values())
    finally:
        api.delete("v1", "Namespace", None, namespace)
    wait_until(lambda: api.get("v1", "Namespace", None, namespace) is None, f"namespace {namespace} gone", WAIT_S)

    run_dirs = sorted(path for path in reports.iterdir() if path.is_dir())
    assert len(run_dirs) == 2, logs
    applied: list[set[str]] = []
    for run_dir in run_dirs:
        metadata = json.loads((run_dir / "metadata.json").read_text())
        assert metadata["error"] is None and (run_dir / "verdict.json").is_file(), metadata
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        kinds = [event["kind"] for event in events]
        # Pulled from the registry by digest, never side-loaded.
        (pushed,) = [event["detail"] for event in events if event["kind"] == "image_pushed"]
        expected = rf"{cluster.registry}/harness-test-docs/digits_classifier@sha256:[0-9a-f]{{64}}"
        assert re.fullmatch(expected, pushed["reference"]), pushed
        assert "image_loaded" not in kinds and "namespace_created" not in kinds
        manifests = (run_dir / "work" / "replicas" / "manifests.yaml").read_text()
        assert f"image: {pushed['reference']}" in manifests and "name: harness-pull" in manifests
        # No replica of either run stopped while the load ran: the other run took nothing over.
        load_ended_s = metadata["load_ended_s"]
        stopped = [event for event in events if event["kind"] == "replica_stopped" and event["t_s"] < load_ended_s]
        assert stopped == [], stopped
        applied.append({event["detail"]["name"] for event in events if event["kind"] == "object_applied"})
    first, second = applied
    assert first and second and not first & second, applied
    delete_from_registry(cluster, pushed["reference"])
