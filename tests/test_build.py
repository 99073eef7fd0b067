"""Building the service: the Dockerfile patch as a pure function, then real `bentoml build` and `docker build`
of the digits example (reused when already built), the load generator image, and the errors users see."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

import docker
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.build import (
    BASE_IMAGE_LABEL,
    IMAGE_LABEL,
    LOCAL_BASE_IMAGE,
    build_bento,
    build_tool_image,
    containerize,
    patch_containerfile,
    prune_images,
)
from harness.config import ServiceConfig
from harness.errors import BuildError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ServiceConfig(path=ROOT / "examples" / "digits", service="service:DigitsClassifier")
MACHINE_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_BUNDLE = MACHINE_CA_BUNDLE if MACHINE_CA_BUNDLE.is_file() else None

# The lines of BentoML 1.4's generated Dockerfile that the patch touches, around ones it must keep.
GENERATED = """\
# Block SETUP_BENTO_BASE_IMAGE
FROM python:3.11-slim AS base-container

ENV LANG=C.UTF-8
COPY --chown=bentoml:bentoml ./env/docker ./env/docker/
RUN apt-get update && apt-get install -q -y --no-install-recommends --allow-remove-essential \
ca-certificates gnupg2 bash build-essential git
RUN uv venv --python 3.11 /app/.venv
{extra}
COPY --chown=bentoml:bentoml . ./
ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]
"""


def test_patch_replaces_the_base_image_and_adds_the_ca_bundle_for_installs_only() -> None:
    patched = patch_containerfile(GENERATED.format(extra=""), "harness-python:bookworm", with_ca_bundle=True)
    lines = patched.splitlines()
    from_index = lines.index("FROM harness-python:bookworm AS base-container")
    assert "python:3.11-slim" not in patched
    ca_lines = lines[from_index + 1 : from_index + 6]
    assert ca_lines[0].startswith("COPY harness-ca-bundle.crt ")
    assert {line.split("=")[0] for line in ca_lines[1:]} == {
        "ARG PIP_CERT",
        "ARG SSL_CERT_FILE",
        "ARG REQUESTS_CA_BUNDLE",
        "ARG UV_NATIVE_TLS",
    }
    assert not re.search(r"^ENV .*(CERT|CA_BUNDLE)", patched, re.MULTILINE)  # nothing leaks into the runtime


def test_patch_keeps_the_bentos_base_image_and_installs_no_compiler() -> None:
    patched = patch_containerfile(GENERATED.format(extra=""), None, with_ca_bundle=False)
    assert "FROM python:3.11-slim AS base-container" in patched
    assert "harness-ca-bundle" not in patched
    assert "build-essential" not in patched and "gnupg2" not in patched
    apt_line = next(line for line in patched.splitlines() if "apt-get" in line)
    # Nothing is fetched when the base has both packages; otherwise the apt lists are not kept.
    assert apt_line.startswith("RUN dpkg -s ca-certificates bash >/dev/null 2>&1 || {")
    assert "rm -rf /var/lib/apt/lists/*" in apt_line


def test_patch_keeps_apt_lists_for_a_later_system_packages_line() -> None:
    system_packages = "RUN apt-get install -q -y -o Dpkg::Options::=--force-confdef libgomp1"
    patched = patch_containerfile(GENERATED.format(extra=system_packages), None, with_ca_bundle=False)
    apt_lines = [line for line in patched.splitlines() if "apt-get" in line]
    assert apt_lines == [
        "RUN apt-get update && apt-get install -q -y --no-install-recommends --allow-remove-essential "
        "ca-certificates bash",
        system_packages,
    ]


def test_patch_rejects_an_unknown_template() -> None:
    with pytest.raises(BuildError, match="FROM <image> AS base-container"):
        patch_containerfile("FROM python:3.11-slim\nRUN true\n", "harness-python:bookworm", with_ca_bundle=False)


@given(
    image=st.from_regex(r"[a-z0-9]{1,12}(/[a-z0-9-]{1,12})?(:[a-z0-9.]{1,8})?", fullmatch=True),
    with_ca_bundle=st.booleans(),
)
def test_patch_only_touches_the_from_and_apt_lines(image: str, with_ca_bundle: bool) -> None:
    original = GENERATED.format(extra="RUN echo kept").splitlines()
    patched = patch_containerfile("\n".join(original), image, with_ca_bundle=with_ca_bundle).splitlines()
    assert [line for line in patched if line.startswith("FROM ")] == [f"FROM {image} AS base-container"]
    untouched = [line for line in original if not line.startswith(("FROM ", "RUN apt-get"))]
    kept = [line for line in patched if line in untouched]
    assert kept == untouched  # every other line survives, in order


# --------------------------------------------------------------------------- real builds


# Exclusive: its prune removes every other digits image, which a session running beside it may be using.
@pytest.mark.integration
@pytest.mark.machine_wide
def test_build_and_containerize_the_digits_example(tmp_path: Path) -> None:
    started_s = time.monotonic()
    bento_tag = build_bento(DIGITS, tmp_path / "bentoml_home")
    bento_s = time.monotonic() - started_s
    assert re.fullmatch(r"digits_classifier:[a-z0-9]+", bento_tag)

    built = containerize(bento_tag, LOCAL_BASE_IMAGE, CA_BUNDLE, bentoml_home=tmp_path / "bentoml_home")
    print(
        f"bento built in {bento_s:.1f} s; image {built.tag}: {built.size_bytes / 1e6:.0f} MB in {built.build_s:.1f} s"
    )
    assert built.tag == bento_tag and not built.reused
    # Python, BentoML, numpy, scipy and scikit-learn, but no compiler toolchain.
    assert 300e6 < built.size_bytes < 900e6
    client = docker.from_env()
    try:
        image = client.images.get(built.tag)
        assert image.labels[IMAGE_LABEL] == bento_tag
        assert image.labels[BASE_IMAGE_LABEL] == LOCAL_BASE_IMAGE
        # The CA bundle was used by the installs but is not set for the service at run time.
        environment = " ".join(image.attrs["Config"]["Env"])
        assert "PIP_CERT" not in environment and "SSL_CERT_FILE" not in environment
        version = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "bentoml", built.tag, "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "1.4." in version.stdout

        again = containerize(bento_tag, LOCAL_BASE_IMAGE, CA_BUNDLE, bentoml_home=tmp_path / "bentoml_home")
        assert again.reused and again.build_s == 0.0 and again.tag == built.tag
        assert again.size_bytes == built.size_bytes
        prune_images(built.tag)
        assert [tag for image in client.images.list(name="digits_classifier") for tag in image.tags] == [built.tag]
    finally:
        client.close()


@pytest.mark.integration
def test_a_base_image_that_does_not_exist_is_named(tmp_path: Path) -> None:
    bento_tag = build_bento(DIGITS, tmp_path / "bentoml_home")
    with pytest.raises(BuildError) as raised:
        containerize(
            bento_tag,
            "harness-test/no-such-base:0",
            image_tag="harness-test/bad-base:0",
            bentoml_home=tmp_path / "bentoml_home",
        )
    message = str(raised.value)
    assert "base image 'harness-test/no-such-base:0'" in message
    assert "FROM harness-test/no-such-base:0" in message  # the log tail shows the failing step
    assert "scripts/docker-setup.sh" in message


@pytest.mark.integration
def test_a_failing_bentoml_build_shows_its_output(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "bentofile.yaml").write_text('service: "missing_module:Nothing"\n')
    with pytest.raises(BuildError) as raised:
        build_bento(ServiceConfig(path=project, service="missing_module:Nothing"), tmp_path / "bentoml_home")
    message = str(raised.value)
    assert f"bentoml build in {project} failed" in message
    assert "missing_module" in message


def test_a_missing_ca_bundle_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="--ca-bundle"):
        containerize("digits_classifier:any", LOCAL_BASE_IMAGE, tmp_path / "absent.pem")


def test_the_load_generator_image_builds_on_bentomls_base_image_by_default() -> None:
    """No image of scripts/docker-setup.sh is needed: the default base is the one BentoML's own Dockerfiles use."""
    from bentoml._internal.container.frontend.dockerfile import CONTAINER_METADATA

    bentoml_default = CONTAINER_METADATA["debian"]["python"]["image"].format(spec_version="3.11")
    dockerfile = (ROOT / "dockerfiles" / "loadgen.Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={bentoml_default}\n" in dockerfile
    # A base image whose user is not root (a team's own) still gets its packages installed.
    assert dockerfile.index("USER root") < dockerfile.index("RUN ")


@pytest.mark.integration
def test_the_load_generator_image_runs_locust() -> None:
    # No registry is reachable here: the local base image stands in for BentoML's python:3.11-slim.
    dockerfile = ROOT / "dockerfiles" / "loadgen.Dockerfile"
    built = build_tool_image(dockerfile, "harness-loadgen", LOCAL_BASE_IMAGE, CA_BUNDLE)
    print(f"loadgen image: {built.size_bytes / 1e6:.0f} MB in {built.build_s:.1f} s")
    again = build_tool_image(dockerfile, "harness-loadgen", LOCAL_BASE_IMAGE, CA_BUNDLE)
    assert again.tag == built.tag, "the same sources give the same tag"
    tags = [tag for image in docker.from_env().images.list("harness-loadgen") for tag in image.tags]
    assert built.tag in tags and not [tag for tag in tags if "building" in tag], tags
    version = subprocess.run(
        ["docker", "run", "--rm", built.tag, "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.startswith("locust 2.")
    assert built.size_bytes < 800e6


@pytest.mark.integration
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the local base image is this machine's platform")
def test_an_image_built_for_another_platform_than_asked_is_refused_and_not_kept() -> None:
    """Docker 20.10's builder uses a local base image of another platform without a word: the image is checked."""
    dockerfile = ROOT / "dockerfiles" / "loadgen.Dockerfile"
    with pytest.raises(BuildError, match=r"was built for linux/amd64, not build\.platform linux/arm64"):
        build_tool_image(dockerfile, "harness-loadgen", LOCAL_BASE_IMAGE, CA_BUNDLE, platform="linux/arm64")
    tags = [tag for image in docker.from_env().images.list("harness-loadgen") for tag in image.tags]
    assert f"harness-loadgen:building-{os.getpid()}" not in tags
    built = build_tool_image(dockerfile, "harness-loadgen", LOCAL_BASE_IMAGE, CA_BUNDLE, platform="linux/amd64")
    assert docker.from_env().images.get(built.tag).attrs["Architecture"] == "amd64"
