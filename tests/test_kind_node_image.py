"""scripts/kind: the node image reuses the test cluster's builds, and names one kind version everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KIND_DIR = ROOT / "scripts" / "kind"


def requirements(go_mod: Path) -> dict[str, str]:
    """Every module a go.mod requires (direct or indirect) and its version."""
    found: dict[str, str] = {}
    for line in go_mod.read_text().splitlines():
        match = re.match(r"^\s*(?:require\s+)?([\w.\-/~]+\.[\w.\-/~]+)\s+(v[\w.\-+]+)", line)
        if match and not line.lstrip().startswith(("module", "go ")):
            found[match.group(1)] = match.group(2)
    return found


def test_kubeadm_and_kubectl_build_against_the_cluster_builds_module_versions() -> None:
    """Every module the node image's Go build shares with the test cluster's is at the cluster's version, so
    the packages that build compiled come from Go's build cache (only kubeadm's and kubectl's own compile)."""
    cluster = requirements(ROOT / "scripts" / "cluster" / "go.mod")
    kind = requirements(KIND_DIR / "go.mod")
    assert "k8s.io/kubernetes" in cluster and len(cluster) > 100
    differing = {
        path: (cluster[path], kind[path]) for path in cluster.keys() & kind.keys() if cluster[path] != kind[path]
    }
    assert differing == {}
    assert cluster.keys() <= kind.keys(), "the kind module imports every cluster command, so it has their modules"
    tools = (KIND_DIR / "tools.go").read_text()
    for command in re.findall(r'_ "([^"]+)"', (ROOT / "scripts" / "cluster" / "tools.go").read_text()):
        assert f'_ "{command}"' in tools


def test_one_kind_version_everywhere() -> None:
    """The Makefile's kind, the node image's recipes and the nightly's install name the same kind release."""
    makefile = re.search(r"^KIND_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    script = re.search(r'^KIND_VERSION="(\S+)"$', (KIND_DIR / "node-image.sh").read_text(), re.M)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert makefile and script
    assert makefile.group(1) == script.group(1) == job["env"]["KIND_VERSION"]


def test_the_kubernetes_version_is_the_cluster_builds() -> None:
    version = re.compile(r'^K8S_VERSION="(\S+)"$', re.M)
    node = version.search((KIND_DIR / "node-image.sh").read_text())
    cluster = version.search((ROOT / "scripts" / "cluster" / "cluster.sh").read_text())
    assert node and cluster and node.group(1) == cluster.group(1)
    assert f"k8s.io/kubernetes {node.group(1)}" in (KIND_DIR / "go.mod").read_text()
