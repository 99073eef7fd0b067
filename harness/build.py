"""Build the service under test: `bentoml build` into a bento, then a container image of that bento.

The image is built from BentoML's own generated Dockerfile, patched in a copy of the bento (never in the
user's project or bento store): an optional base-image override, an optional CA bundle for pip/uv behind
a TLS-inspecting proxy, and a slimmer system-package line (see `_slim_system_packages`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import extras
from harness.config import ServiceConfig
from harness.errors import BuildError
from harness.resources import DATA_DIR, data_path, package_dir
from harness.service_env import bentoml_command, bentoml_env, model_store_home

# The image every bento container starts from on a machine without a registry (scripts/docker-setup.sh).
LOCAL_BASE_IMAGE = "harness-python:bookworm"
IMAGE_LABEL = "harness.bento"
BASE_IMAGE_LABEL = "harness.base-image"
PLATFORM_LABEL = "harness.platform"
_CA_IN_CONTEXT = "harness-ca-bundle.crt"
_CA_IN_IMAGE = "/usr/local/share/harness/bento-ca-bundle.crt"
_DOCKERFILE = "harness.Dockerfile"
_TAIL_LINES = 15

# BentoML renders exactly one stage: `FROM <image> AS base-container`.
_FROM_LINE = re.compile(r"^FROM[ \t]+(?P<image>\S+)[ \t]+AS[ \t]+base-container[ \t]*$", re.IGNORECASE | re.MULTILINE)
# BentoML's default Debian setup line: a compiler, git and gnupg add about 250 MB to every image.
_DEFAULT_APT_LINE = re.compile(
    r"^RUN apt-get update && apt-get install (?P<flags>[^\n]*?)ca-certificates gnupg2 bash build-essential git[ \t]*$",
    re.MULTILINE,
)

# The build context as `bentoml containerize` makes it: the bento, and its models copied from the model store
# into models/ and hf-models/ (the bento in the store only names them), where the image's BentoML looks.
_CONTEXT_SCRIPT = """
import shutil, sys
from pathlib import Path
import bentoml
from _bentoml_sdk.models import BentoModel, HuggingFaceModel
tag, dockerfile, context = sys.argv[1], sys.argv[2], Path(sys.argv[3])
bento = bentoml.get(tag)
bentoml.container.get_containerfile(tag, output_path=dockerfile, enable_buildkit=False)
shutil.copytree(bento.path, context, symlinks=True)
for model in bento.info.all_models:
    if model.registry == "huggingface":
        HuggingFaceModel.from_info(model).resolve(context / "hf-models")
    else:
        BentoModel.from_info(model).resolve(context / "models")
"""


@dataclass(frozen=True)
class BuiltImage:
    """A container image of a bento: its tag, size, and how long building it took (0 when reused)."""

    tag: str
    size_bytes: int
    build_s: float
    reused: bool = False


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    plain = _ANSI_ESCAPE.sub("", text)
    kept = [line.rstrip() for line in plain.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def _bentoml_env(bentoml_home: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    # Offline `bentoml build` needs uv, which lives next to this interpreter in the venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["BENTOML_DO_NOT_TRACK"] = "true"
    if bentoml_home is not None:
        env["BENTOML_HOME"] = str(bentoml_home)
    return env


def build_bento(service: ServiceConfig, bentoml_home: Path | None = None, *, timeout_s: float = 600) -> str:
    """Run `bentoml build` in the service directory, in the service's Python, and return the new bento's tag.

    The bento is built in `bentoml_home` (default: the service's model store home), whose models it includes.
    """
    if not service.project_dir.is_dir():
        raise BuildError(f"service.path '{service.path}': no such directory (expected a BentoML project)")
    home = bentoml_home or model_store_home(service, os.environ)
    home.mkdir(parents=True, exist_ok=True)
    command = [*bentoml_command(service), "build", "--output", "tag"]
    try:
        result = subprocess.run(
            command,
            cwd=service.project_dir,
            env=bentoml_env(service, os.environ, home),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        # TimeoutExpired may carry bytes even when text=True was asked for.
        raw = error.stdout or ""
        output = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        raise BuildError(
            f"bentoml build in {service.path} did not finish within {timeout_s:g} s; output tail: {_tail(output)}"
        ) from error
    output = result.stdout + result.stderr
    match = re.search(r"__tag__:(\S+)", result.stdout)
    if result.returncode != 0 or match is None:
        raise BuildError(
            f"bentoml build in {service.path} failed (exit code {result.returncode}); output tail: {_tail(output)}",
            hint="run `bentoml build` in that directory to see the whole output",
        )
    return match.group(1)


def image_tag_for(bento_tag: str) -> str:
    """The image tag for a bento: the bento tag itself (name:version), lower-cased as Docker requires."""
    return bento_tag.lower()


def patch_containerfile(dockerfile: str, base_image: str | None, with_ca_bundle: bool) -> str:
    """BentoML's generated Dockerfile with the base image replaced, the CA bundle used by installs, fewer packages."""
    match = _FROM_LINE.search(dockerfile)
    if match is None:
        raise BuildError(
            "BentoML's generated Dockerfile has no 'FROM <image> AS base-container' line; "
            "this BentoML version renders an unexpected template"
        )
    from_line = f"FROM {base_image or match.group('image')} AS base-container"
    if with_ca_bundle:
        # ARG, not ENV: the bundle is used by the install steps only and is not part of the runtime environment.
        from_line += "\n" + "\n".join(
            [
                f"COPY {_CA_IN_CONTEXT} {_CA_IN_IMAGE}",
                f"ARG PIP_CERT={_CA_IN_IMAGE}",
                f"ARG SSL_CERT_FILE={_CA_IN_IMAGE}",
                f"ARG REQUESTS_CA_BUNDLE={_CA_IN_IMAGE}",
                "ARG UV_NATIVE_TLS=true",
            ]
        )
    patched = dockerfile[: match.start()] + from_line + dockerfile[match.end() :]
    return _slim_system_packages(patched)


def _slim_system_packages(dockerfile: str) -> str:
    # Only what the image really needs (bash runs the entrypoint, ca-certificates lets uv reach PyPI). A service
    # that needs a compiler or git lists build-essential or git under docker.system_packages in its bentofile:
    # those are separate install lines, left alone. Without such lines the apt lists are not kept in the image,
    # and nothing is fetched at all when the base image has both packages (harness-python does).
    match = _DEFAULT_APT_LINE.search(dockerfile)
    if match is None:
        return dockerfile
    install = f"apt-get update && apt-get install {match.group('flags')}ca-certificates bash"
    if "apt-get install" in dockerfile[match.end() :]:
        line = f"RUN {install}"
    else:
        line = f"RUN dpkg -s ca-certificates bash >/dev/null 2>&1 || {{ {install} && rm -rf /var/lib/apt/lists/*; }}"
    return dockerfile[: match.start()] + line + dockerfile[match.end() :]


def docker_client() -> Any:
    extras.require("docker", "building a container image")
    import docker  # imported here: the docker package must never be imported in a Locust process
    from docker.errors import DockerException

    try:
        return docker.from_env()
    except DockerException as error:
        raise BuildError(
            f"cannot reach the Docker daemon: {error}", hint="run scripts/docker-setup.sh (or `make docker-setup`)"
        ) from error


def _image(client: Any, tag: str) -> Any:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag)
    except ImageNotFound:
        return None


def _build_context(bento_tag: str, output: Path, context: Path, bentoml_home: Path | None) -> None:
    """Write BentoML's Dockerfile for the bento to `output`, and the bento with its models to `context`."""
    result = subprocess.run(
        [sys.executable, "-c", _CONTEXT_SCRIPT, bento_tag, str(output), str(context)],
        env=_bentoml_env(bentoml_home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or not output.exists():
        raise BuildError(
            f"cannot generate the Dockerfile and build context for bento '{bento_tag}' (exit code "
            f"{result.returncode}); output tail: {_tail(result.stdout + result.stderr)}",
            hint="check the bento and its models exist: `bentoml list` and `bentoml models list` with the same "
            "BENTOML_HOME",
        )


def _docker_build(
    client: Any,
    context: Path,
    dockerfile: str,
    tag: str,
    labels: dict[str, str],
    timeout_s: float,
    build_args: dict[str, str] | None = None,
    platform: str | None = None,
) -> tuple[str | None, str]:
    """Run one `docker build --network host` (for `platform` when given); returns (error or None, the build log)."""
    from docker.errors import DockerException

    log: list[str] = []
    try:
        # The low-level API streams the log, which error messages need. This is the classic builder:
        # Debian's docker.io has no BuildKit (buildx) plugin.
        for chunk in client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
            labels=labels,
            buildargs=build_args or {},
            timeout=timeout_s,
            **({"platform": platform} if platform else {}),
        ):
            if "stream" in chunk:
                log.append(str(chunk["stream"]))
            if "error" in chunk:
                return str(chunk["error"]).strip(), "".join(log)
    except DockerException as error:
        return str(error).strip(), "".join(log)
    return None, "".join(log)


def _built(client: Any, tag: str, started_s: float, log: str, platform: str | None = None) -> BuiltImage:
    from docker.errors import DockerException

    image = _image(client, tag)
    if image is None:
        raise BuildError(f"docker build reported success but image '{tag}' does not exist; log tail: {_tail(log)}")
    if platform is not None and image_platform(image.attrs) != platform:
        # Not kept under the tag: a later build for the same platform would reuse it.
        with contextlib.suppress(DockerException):
            client.images.remove(tag, noprune=True)
        raise BuildError(
            f"image '{tag}' was built for {image_platform(image.attrs)}, not build.platform {platform}: its base image "
            f"is not available for {platform}",
            hint=f"use a base image published for {platform} (build.base_image)",
        )
    return BuiltImage(tag=tag, size_bytes=int(image.attrs["Size"]), build_s=time.monotonic() - started_s)


def image_platform(attrs: dict[str, Any]) -> str:
    """An image's platform as Docker names it (linux/amd64, linux/arm64/v8), from its inspect attributes."""
    parts = [attrs.get("Os") or "?", attrs.get("Architecture") or "?"]
    return "/".join(parts + ([attrs["Variant"]] if attrs.get("Variant") else []))


def _check_ca_bundle(ca_bundle: Path | None) -> None:
    if ca_bundle is not None and not ca_bundle.is_file():
        raise BuildError(f"--ca-bundle '{ca_bundle}': no such file (expected a PEM bundle of CA certificates)")


def containerize(
    bento_tag: str,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    image_tag: str | None = None,
    *,
    bentoml_home: Path | None = None,
    reuse: bool = True,
    timeout_s: float = 1800,
    platform: str | None = None,
) -> BuiltImage:
    """Build a container image of a bento (`docker build --network host`, for `platform` when given); reuse one of
    the same bento, base and platform."""
    tag = image_tag or image_tag_for(bento_tag)
    _check_ca_bundle(ca_bundle)
    client = docker_client()
    # The same bento on the same base gives the same image; a different --base-image or platform must rebuild.
    labels = {IMAGE_LABEL: bento_tag, BASE_IMAGE_LABEL: base_image or "", PLATFORM_LABEL: platform or ""}
    existing = _image(client, tag)
    if reuse and existing is not None and all(existing.labels.get(k) == v for k, v in labels.items()):
        return BuiltImage(tag=tag, size_bytes=int(existing.attrs["Size"]), build_s=0.0, reused=True)
    started_s = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="harness-build-") as scratch:
        generated = Path(scratch) / "generated.Dockerfile"
        context = Path(scratch) / "context"
        _build_context(bento_tag, generated, context, bentoml_home)
        if ca_bundle is not None:
            shutil.copyfile(ca_bundle, context / _CA_IN_CONTEXT)
        (context / _DOCKERFILE).write_text(
            patch_containerfile(generated.read_text(), base_image, with_ca_bundle=ca_bundle is not None)
        )
        error, log = _docker_build(client, context, _DOCKERFILE, tag, labels, timeout_s, platform=platform)
    if error is not None:
        shown_base = base_image or "the bento's own base image"
        raise BuildError(
            f"docker build of image '{tag}' for bento '{bento_tag}' from base image '{shown_base}' failed: "
            f"{error}; log tail: {_tail(log)}",
            hint=f"the base image must exist locally or be pullable; `bash scripts/docker-setup.sh` builds "
            f"{LOCAL_BASE_IMAGE}",
        )
    return _built(client, tag, started_s, log, platform)


def build_service_image(
    service: ServiceConfig,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    image_tag: str | None = None,
    *,
    bentoml_home: Path | None = None,
    platform: str | None = None,
) -> BuiltImage:
    """The service's container image: `bentoml build` in `bentoml_home` (default: the service's model store
    home), then `containerize` of that bento, which reuses an image of the same bento, base and platform."""
    home = bentoml_home or model_store_home(service, os.environ)
    bento_tag = build_bento(service, home)
    return containerize(bento_tag, base_image, ca_bundle, image_tag, bentoml_home=home, platform=platform)


# The in-cluster load generator's image (charts/loadgen runs it).
LOADGEN_DOCKERFILE = data_path("dockerfiles", "loadgen.Dockerfile")
# The package data no image of the harness needs (charts, schemas): left out of the build context.
_TOOL_IMAGE_IGNORED = ("__pycache__", "*.pyc", DATA_DIR)
LOADGEN_REPOSITORY = "harness-loadgen"


def build_tool_image(
    dockerfile: Path,
    repository: str,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    *,
    timeout_s: float = 1800,
    platform: str | None = None,
) -> BuiltImage:
    """Build the harness's own image (dockerfiles/loadgen.Dockerfile) from the installed package, on `base_image`
    (default: the Dockerfile's, BentoML's own base image) for `platform` (default: the Docker daemon's).

    The context holds only the package's modules (`harness/`, from a clone or a wheel alike) and `ca-bundle.crt`
    (empty when no bundle is given), so no virtualenv or report is ever sent to the daemon. The image is tagged
    `repository:<its id>`: the same sources give the same tag, so a node that already holds it (a second
    run, a second night) is not sent it again.
    """
    _check_ca_bundle(ca_bundle)
    if not dockerfile.is_file():
        raise BuildError(f"{dockerfile}: no such Dockerfile")
    tag = f"{repository}:building-{os.getpid()}"
    client = docker_client()
    started_s = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="harness-image-") as scratch:
        context = Path(scratch)
        shutil.copytree(package_dir(), context / "harness", ignore=shutil.ignore_patterns(*_TOOL_IMAGE_IGNORED))
        (context / "ca-bundle.crt").write_bytes(ca_bundle.read_bytes() if ca_bundle is not None else b"")
        shutil.copyfile(dockerfile, context / "Dockerfile")
        build_args = {"BASE_IMAGE": base_image} if base_image else None
        error, log = _docker_build(client, context, "Dockerfile", tag, {}, timeout_s, build_args, platform)
    if error is not None:
        raise BuildError(
            f"docker build of image '{tag}' from {dockerfile.name} (base image "
            f"'{base_image or 'the Dockerfile default'}') failed: {error}; log tail: {_tail(log)}",
            hint=f"the base image must exist locally or be pullable; `bash scripts/docker-setup.sh` builds "
            f"{LOCAL_BASE_IMAGE}",
        )
    built = _built(client, tag, started_s, log, platform)
    image = client.images.get(tag)
    content_tag = image.id.removeprefix("sha256:")[:16]
    image.tag(repository, content_tag)
    client.images.remove(tag, noprune=True)  # the building tag only; the image keeps its content tag
    return replace(built, tag=f"{repository}:{content_tag}")


def prune_images(keep_tag: str, older_than_s: float = 0.0) -> list[str]:
    """Remove the other harness-built images of keep_tag's repository (older bento versions) created more than
    `older_than_s` ago (a build running beside this one keeps its image); returns their tags.

    Only the tags go: layers `keep_tag` shares with them stay, so Docker's build cache is kept.
    """
    from docker.errors import APIError

    repository = keep_tag.rsplit(":", 1)[0]
    client = docker_client()
    removed: list[str] = []
    for image in client.images.list(name=repository, filters={"label": IMAGE_LABEL}):
        # Docker writes nanoseconds ("...T09:04:57.242711865Z"); fromisoformat takes at most microseconds.
        created = re.sub(r"(\.\d{6})\d+", r"\1", image.attrs["Created"]).replace("Z", "+00:00")
        created_s = dt.datetime.fromisoformat(created).timestamp()
        if time.time() - created_s < older_than_s:
            continue
        for tag in image.tags:
            if tag != keep_tag and tag.rsplit(":", 1)[0] == repository:
                try:
                    client.images.remove(tag, noprune=False)
                except APIError:
                    continue  # still used by a container: keep it
                removed.append(tag)
    return removed
