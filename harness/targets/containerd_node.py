"""A Kubernetes node on this machine reached through its containerd socket (the cluster of scripts/cluster):
images built by `harness build` are copied into it with `docker save | ctr import`, as `kind load docker-image`
does for kind nodes, so pods start without a registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.errors import DeployError

# The CRI plugin of containerd keeps Kubernetes' images in this containerd namespace.
K8S_NAMESPACE = "k8s.io"
_TAIL_CHARS = 1500


def normalized_reference(image: str) -> str:
    """An image reference as containerd stores it ("model:1" -> "docker.io/library/model:1")."""
    name, _, _ = image.partition("@")
    first = name.split("/", 1)[0]
    has_registry = "/" in name and ("." in first or ":" in first or first == "localhost")
    if not has_registry:
        image = ("docker.io/library/" if "/" not in name else "docker.io/") + image
    last = image.rsplit("/", 1)[-1]
    return image if (":" in last or "@" in image) else image + ":latest"


def docker_image_id(image: str) -> str:
    """The id (config digest) of a local Docker image; DeployError when Docker does not have it."""
    try:
        inspected = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", image],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        raise DeployError(f"docker image inspect {image}: {error}", hint="bash scripts/docker-setup.sh") from error
    if inspected.returncode != 0:
        raise DeployError(
            f"image {image} is not in the local Docker engine: {inspected.stderr.strip()}",
            hint="build it with `harness build`, or set target.kubernetes.image to an image Docker has",
        )
    return inspected.stdout.strip()


class ContainerdNode:
    """One node's containerd: import images into it; `ctr` is Debian's containerd client."""

    def __init__(self, address: Path, *, timeout_s: float = 900) -> None:
        self.address = address
        self.timeout_s = timeout_s

    def _ctr(self, *args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        command = ["ctr", "--address", str(self.address), "--namespace", K8S_NAMESPACE, *args]
        try:
            return subprocess.run(
                command, stdin=stdin, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except FileNotFoundError as error:
            raise DeployError("ctr: not found on PATH", hint="apt-get install containerd") from error
        except subprocess.TimeoutExpired as error:
            raise DeployError(f"{' '.join(command)}: no answer within {self.timeout_s:g} s") from error

    def image_id(self, image: str) -> str | None:
        """The config digest (Docker's image id) of an image in the node, None when it is not there."""
        listed = self._ctr("images", "list", f"name=={normalized_reference(image)}")
        if listed.returncode != 0:
            raise DeployError(
                f"containerd at {self.address} does not answer: {listed.stderr.strip()[-_TAIL_CHARS:]}",
                hint="start the cluster: make cluster",
            )
        rows = [line.split() for line in listed.stdout.splitlines()[1:] if line.strip()]
        if not rows:
            return None
        manifest = self._ctr("content", "get", rows[0][2])
        if manifest.returncode != 0:
            return None
        try:
            return str(json.loads(manifest.stdout)["config"]["digest"])
        except (ValueError, KeyError, TypeError):
            return None

    @contextlib.contextmanager
    def _importing(self) -> Iterator[None]:
        """Held while one harness checks for and imports an image: another harness side-loading into the same
        node at once (two runs sharing a cluster) waits, then finds the image there, instead of importing the
        same content beside it."""
        digest = hashlib.sha256(str(self.address.resolve()).encode()).hexdigest()[:16]
        lock_file = Path(tempfile.gettempdir()) / f"harness-containerd-import-{digest}.lock"
        with lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, however the block ends
            yield

    def load_image(self, image: str) -> bool:
        """Import a local Docker image unless the node already has it (same id); True when it imported."""
        with self._importing():
            return self._load_image(image)

    def _load_image(self, image: str) -> bool:
        if self.image_id(image) == docker_image_id(image):
            return False
        try:
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError as error:
            raise DeployError("docker: not found on PATH", hint="bash scripts/docker-setup.sh") from error
        try:
            assert save.stdout is not None
            imported = self._ctr("images", "import", "-", stdin=save.stdout.fileno())
        finally:
            if save.stdout is not None:
                save.stdout.close()
            _, save_error = save.communicate(timeout=self.timeout_s)
        if save.returncode != 0:
            raise DeployError(f"docker save {image} failed: {save_error.decode(errors='replace').strip()}")
        if imported.returncode != 0:
            raise DeployError(
                f"importing {image} into containerd at {self.address} failed: {imported.stderr.strip()[-_TAIL_CHARS:]}"
            )
        return True
