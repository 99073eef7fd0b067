"""Shared real resources of the target tests: the digits example image and the test cluster."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.build import (
    LOADGEN_DOCKERFILE,
    LOADGEN_REPOSITORY,
    LOCAL_BASE_IMAGE,
    build_service_image,
    build_tool_image,
    prune_images,
)
from harness.config import ServiceConfig

ROOT = Path(__file__).resolve().parents[2]
DIGITS_DIR = ROOT / "examples" / "digits"
MACHINE_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CLUSTER_SCRIPT = ROOT / "scripts" / "cluster" / "cluster.sh"


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[], str]) -> str:
    """A session fixture's value made once for the whole test session, however many xdist workers ask (the cluster
    lane runs two): the first makes it, the others wait and read it. Two workers building the digits example
    would make two bento versions, two images and two imports into the node."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's base directory, shared by its workers and cleared at its start
    made = root / f"{name}.value"
    with (root / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            made.write_text(make())
        return made.read_text()


@pytest.fixture(scope="session")
def digits_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The digits example's image, built for real (Docker's layer cache keeps repeated builds short)."""

    def build() -> str:
        home = tmp_path_factory.mktemp("bentoml_home")
        service = ServiceConfig(path=DIGITS_DIR, service="service:DigitsClassifier")
        ca_bundle = MACHINE_CA_BUNDLE if MACHINE_CA_BUNDLE.is_file() else None
        tag = build_service_image(service, LOCAL_BASE_IMAGE, ca_bundle, bentoml_home=home).tag
        # Every test session builds a new bento version; older test images need not pile up, while the image of
        # a session running beside this one (make test runs the cluster and local lanes at once) stays.
        prune_images(tag, older_than_s=3600)
        return tag

    return once_per_session(tmp_path_factory, "digits_image", build)


@pytest.fixture(scope="session")
def loadgen_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The in-cluster load generator's image, as a run builds it (Docker's cache makes a rebuild short).

    The tests whose runs build it ask for it first: two runs building it at once, with nothing cached (a new
    commit), made two images of the same sources under two ids, and each node import of 600 MB took 30-60 s."""
    ca_bundle = MACHINE_CA_BUNDLE if MACHINE_CA_BUNDLE.is_file() else None
    return once_per_session(
        tmp_path_factory,
        "loadgen_image",
        lambda: build_tool_image(LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, LOCAL_BASE_IMAGE, ca_bundle).tag,
    )


@dataclass(frozen=True)
class RealCluster:
    """The single-node cluster of scripts/cluster/cluster.sh, as the tests reach it, with its image registry
    (Debian's docker-registry, htpasswd user `harness`) and kubectl of its version."""

    kubeconfig: Path
    containerd: Path
    prometheus_url: str
    registry: str = "127.0.0.1:15000"
    registry_user: str = "harness"
    registry_password_file: Path = Path("/var/lib/harness-cluster/registry/auth/password")
    tools: Path = ROOT / ".cluster" / "bin"

    @property
    def registry_password(self) -> str:
        return self.registry_password_file.read_text().strip()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> RealCluster:
    """The real cluster on this machine, started when it is not running (`make test` starts it first)."""

    def start() -> str:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "up"], check=True, timeout=3600)
        return "up"

    once_per_session(tmp_path_factory, "cluster", start)
    return RealCluster(
        kubeconfig=ROOT / ".cluster" / "kubeconfig",
        containerd=Path("/run/harness-cluster/containerd/containerd.sock"),
        prometheus_url="http://127.0.0.1:19090",
    )
