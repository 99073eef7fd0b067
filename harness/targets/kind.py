"""kind (Kubernetes in Docker) clusters for the Kubernetes target: create or reuse one from charts/kind-config.yaml,
side-load the service image, install metrics-server, and delete the cluster afterwards unless kept.

The `kind` CLI does the cluster work; metrics-server is applied through the Kubernetes API like the chart,
so no kubectl is needed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.errors import DeployError
from harness.targets.helm import CHARTS_DIR
from harness.targets.kubernetes_api import KubernetesApi

KIND_CONFIG = CHARTS_DIR / "kind-config.yaml"
METRICS_SERVER_MANIFEST = CHARTS_DIR / "metrics-server" / "components.yaml"
METRICS_API_SERVICE = "v1beta1.metrics.k8s.io"
_TAIL_CHARS = 1500

Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def run_command(command: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; DeployError when it cannot start or times out."""
    try:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as error:
        raise DeployError(
            f"{command[0]}: not found on PATH",
            hint="install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) and Docker",
        ) from error
    except subprocess.TimeoutExpired as error:
        raise DeployError(f"{' '.join(command)}: no answer within {timeout_s:g} s") from error


def metrics_server_manifests(path: Path = METRICS_SERVER_MANIFEST) -> list[dict[str, Any]]:
    """The metrics-server objects to apply, from the checked-in manifest."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def api_service_available(api_service: dict[str, Any] | None) -> bool:
    """Whether an APIService reports condition Available=True (its backend answers)."""
    conditions = ((api_service or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


class KindCluster:
    """One kind cluster: created (or reused when it exists), given the image and metrics-server, deleted at the end."""

    def __init__(
        self,
        name: str,
        *,
        config: Path = KIND_CONFIG,
        keep: bool = False,
        run: Runner = run_command,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.config = config
        self.keep = keep
        self._run = run
        self._clock = clock
        self._sleep = sleep
        self.created = False

    def _kind(self, *args: str, timeout_s: float = 120, what: str) -> str:
        command = ["kind", *args]
        result = self._run(command, timeout_s)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-_TAIL_CHARS:]
            raise DeployError(f"kind cluster {self.name}: {what} failed ({' '.join(command)}): {output}")
        return result.stdout

    def exists(self) -> bool:
        clusters = self._kind("get", "clusters", what="listing clusters").split()
        return self.name in clusters

    def ensure(self) -> bool:
        """Create the cluster unless it exists; True when this call created it."""
        if self.exists():
            return False
        self._kind(
            "create",
            "cluster",
            "--name",
            self.name,
            "--config",
            str(self.config),
            "--wait",
            "180s",
            timeout_s=600,
            what="creating the cluster",
        )
        self.created = True
        return True

    def write_kubeconfig(self, path: Path) -> Path:
        """Write the cluster's kubeconfig to `path` (the user's ~/.kube/config is left alone)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._kind("get", "kubeconfig", "--name", self.name, what="reading the kubeconfig"))
        return path

    def load_image(self, image: str) -> None:
        """Copy a local Docker image onto every node, so pods start without a registry."""
        self._kind("load", "docker-image", image, "--name", self.name, timeout_s=900, what=f"loading image {image}")

    def install_metrics_server(self, api: KubernetesApi, timeout_s: float = 180) -> None:
        """Apply metrics-server (with --kubelet-insecure-tls) and wait until metrics.k8s.io answers."""
        for manifest in metrics_server_manifests():
            api.apply(manifest)
        deadline_s = self._clock() + timeout_s
        while not api_service_available(api.get("apiregistration.k8s.io/v1", "APIService", None, METRICS_API_SERVICE)):
            if self._clock() > deadline_s:
                raise DeployError(
                    f"metrics-server in kind cluster {self.name} not available within {timeout_s:g} s",
                    hint="kubectl -n kube-system logs deploy/metrics-server",
                )
            self._sleep(2.0)

    def delete(self) -> None:
        """Delete the cluster if this object created it and it is not to be kept; idempotent."""
        if not self.created or self.keep:
            return
        self._kind("delete", "cluster", "--name", self.name, timeout_s=300, what="deleting the cluster")
        self.created = False
