"""harness.run's build step: the images a run builds before deploying, chosen by the target kind's capabilities."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

import harness.run
from harness.build import LOADGEN_DOCKERFILE, BuiltImage
from harness.config import Scenario, load_scenario
from harness.model import ImageBuilt, RunEvent
from harness.push import PushedImage
from harness.run import Run, RunImages

ROOT = Path(__file__).resolve().parents[1]


def scenario_on(tmp_path: Path, kind: str, **target: dict[str, Any]) -> Scenario:
    base = load_scenario(ROOT / "loadtests" / "default.yaml")
    changed = base.target.model_copy(update={"kind": kind})
    for section, fields in target.items():
        changed = changed.model_copy(update={section: getattr(changed, section).model_copy(update=fields)})
    output = base.output.model_copy(update={"dir": tmp_path, "run_id": "build-step"})
    return base.model_copy(update={"target": changed, "output": output})


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the build step asked build.py to build, with every build replaced by a fake image."""
    asked: list[str] = []

    def service_image(service: Any, base_image: str | None, ca_bundle: Path | None, **options: Any) -> BuiltImage:
        asked.append("service")
        return BuiltImage(tag="digits:built", size_bytes=1, build_s=0.0)

    def tool_image(
        dockerfile: Path, repository: str, base_image: str | None, ca_bundle: Path | None, **options: Any
    ) -> BuiltImage:
        asked.append(dockerfile.name)
        return BuiltImage(tag=f"{repository}:built", size_bytes=1, build_s=0.0)

    monkeypatch.setattr(harness.run, "build_service_image", service_image)
    monkeypatch.setattr(harness.run, "build_tool_image", tool_image)
    return asked


def build(scenario: Scenario) -> tuple[RunImages, list[ImageBuilt]]:
    run = Run(scenario)
    run.run_dir.create()
    try:
        images = run._build()
    finally:
        run.run_dir.close()
    events = [event.detail for event in run.run_dir.read_records(RunEvent)]
    return images, [event for event in events if isinstance(event, ImageBuilt)]


@pytest.mark.parametrize("kind", ["local", "external"])
def test_targets_without_images_build_nothing(tmp_path: Path, builds: list[str], kind: str) -> None:
    assert build(scenario_on(tmp_path, kind)) == (RunImages(), [])
    assert builds == []


def test_an_image_the_scenario_names_is_used_as_it_is(tmp_path: Path, builds: list[str]) -> None:
    images, built = build(scenario_on(tmp_path, "docker", docker={"image": "mine:1"}))
    assert images == RunImages(service="mine:1") and built == [] and builds == []
    images, _ = build(scenario_on(tmp_path / "k", "kubernetes", docker={"image": "mine:1"}))
    assert images.service == "mine:1", "kubernetes falls back on target.docker.image"


@pytest.mark.parametrize("kind", ["docker", "kubernetes"])
def test_without_a_named_image_the_service_image_is_built_first(tmp_path: Path, builds: list[str], kind: str) -> None:
    images, built = build(scenario_on(tmp_path, kind, docker={"image": None}, kubernetes={"image": None}))
    assert images == RunImages(service="digits:built") and builds == ["service"]
    assert [event.image for event in built] == ["digits:built"]


def test_in_cluster_load_builds_the_load_generator_image(tmp_path: Path, builds: list[str]) -> None:
    scenario = scenario_on(tmp_path, "kubernetes", kubernetes={"image": "mine:1", "loadgen": "in-cluster"})
    images, built = build(scenario)
    assert images == RunImages(service="mine:1", loadgen="harness-loadgen:built")
    assert builds == [LOADGEN_DOCKERFILE.name] and [event.image for event in built] == ["harness-loadgen:built"]


def test_run_ids_of_one_scenario_started_in_the_same_second_differ(tmp_path: Path) -> None:
    scenario = scenario_on(tmp_path, "local")
    now = dt.datetime(2026, 11, 30, 18, 6, 6, tzinfo=dt.UTC)
    assert harness.run.new_run_id(scenario, now, suffix="a1b2c3") == f"20261130T180606Z-{scenario.name}-a1b2c3"
    first, second = (harness.run.new_run_id(scenario, now) for _ in range(2))
    assert first != second and re.fullmatch(rf"20261130T180606Z-{scenario.name}-[0-9a-f]{{6}}", first), first


def test_with_a_registry_every_image_is_pushed_and_deployed_by_digest(
    tmp_path: Path, builds: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pushed: list[tuple[str, str]] = []

    def push(image: str, registry: str) -> PushedImage:
        pushed.append((image, registry))
        return PushedImage(local=image, reference=f"{registry}/{image.split(':')[0]}@sha256:{'a' * 64}", push_s=1.0)

    monkeypatch.setattr(harness.run, "push_image", push)
    registry = "registry.example.com/team"
    scenario = scenario_on(
        tmp_path, "kubernetes", kubernetes={"image": None, "loadgen": "in-cluster", "registry": registry}
    )
    images, _ = build(scenario)
    assert pushed == [("digits:built", registry), ("harness-loadgen:built", registry)]
    assert images == RunImages(
        service=f"{registry}/digits@sha256:{'a' * 64}", loadgen=f"{registry}/harness-loadgen@sha256:{'a' * 64}"
    )
