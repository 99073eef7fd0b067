"""Where a local image goes in a registry (the push itself is tested against the cluster's registry:
tests/targets/test_kubernetes_cluster_shared.py and test_kubernetes_cluster_docs.py)."""

from __future__ import annotations

import pytest

from harness.build import image_platform
from harness.push import registry_repository


@pytest.mark.parametrize(
    ("local", "registry", "expected"),
    [
        ("digits_classifier:abc123", "127.0.0.1:15000", ("127.0.0.1:15000/digits_classifier", "abc123")),
        ("harness-loadgen:0f1e", "registry.example.com/team/", ("registry.example.com/team/harness-loadgen", "0f1e")),
        ("localhost:5000/team/model", "registry.example.com", ("registry.example.com/model", "latest")),
    ],
)
def test_an_image_keeps_its_name_and_tag_under_the_registry(
    local: str, registry: str, expected: tuple[str, str]
) -> None:
    assert registry_repository(local, registry) == expected


def test_the_platform_of_an_image_as_docker_names_it() -> None:
    assert image_platform({"Os": "linux", "Architecture": "amd64"}) == "linux/amd64"
    assert image_platform({"Os": "linux", "Architecture": "arm64", "Variant": "v8"}) == "linux/arm64/v8"
