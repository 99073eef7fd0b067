"""Images through a registry (target.kubernetes.registry): an image of the local Docker daemon tagged into the
registry, pushed with the user's Docker credentials (~/.docker/config.json or $DOCKER_CONFIG, credential helpers
included, as `docker push` uses them), and named by the digest the registry answered, which the pods then pull.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from harness.build import docker_client
from harness.errors import BuildError
from harness.targets.helm_values import split_image

_TAIL_LINES = 6


@dataclass(frozen=True)
class PushedImage:
    """A local image as the cluster pulls it: `<registry>/<repository>@sha256:...`."""

    local: str
    reference: str
    push_s: float


def registry_repository(local_image: str, registry: str) -> tuple[str, str]:
    """(repository in the registry, tag) for a local image: its repository's last path element under `registry`,
    with its tag (`latest` when it has none)."""
    parts = split_image(local_image)
    return f"{registry.rstrip('/')}/{parts['repository'].rsplit('/', 1)[-1]}", parts["tag"] or "latest"


def push_image(local_image: str, registry: str, *, timeout_s: float = 1800) -> PushedImage:
    """Push `local_image` from the local Docker daemon to `registry`; the reference by digest the cluster pulls.

    The registry's tag is removed from the local daemon afterwards (the image and its own tag stay).
    """
    from docker.errors import APIError, ImageNotFound

    client = docker_client()
    try:
        image = client.images.get(local_image)
    except ImageNotFound as missing:
        raise BuildError(
            f"image '{local_image}' is not in the local Docker daemon, so it cannot be pushed to {registry}",
            hint="build it (`harness build`), or name an image the cluster can already pull and unset "
            "target.kubernetes.registry",
        ) from missing
    repository, tag = registry_repository(local_image, registry)
    started_s = time.monotonic()
    image.tag(repository, tag)
    log: list[str] = []
    digest: str | None = None
    failure: str | None = None
    try:
        for line in client.api.push(repository, tag, stream=True, decode=True):
            if "error" in line:
                failure = str(line.get("errorDetail", {}).get("message") or line["error"]).strip()
            digest = (line.get("aux") or {}).get("Digest") or digest
            if line.get("status"):
                log.append(f"{line.get('id', '')} {line['status']}".strip())
    except APIError as error:
        failure = str(error.explanation or error)
    finally:
        # A tag still used by a container stays.
        with contextlib.suppress(APIError):
            client.images.remove(f"{repository}:{tag}", noprune=True)
    if failure is not None or digest is None:
        reason = failure or "the registry answered no digest"
        raise BuildError(
            f"pushing image '{local_image}' to {repository}:{tag} failed: {reason}"
            f" (last steps: {' | '.join(log[-_TAIL_LINES:]) or 'none'})",
            hint=f"`docker login {registry.split('/', 1)[0]}` (the harness pushes with your Docker credentials), "
            "and check target.kubernetes.registry",
        )
    return PushedImage(local=local_image, reference=f"{repository}@{digest}", push_s=time.monotonic() - started_s)
