from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from harness.config import TargetConfig, load_scenario
from harness.errors import ConfigError
from harness.targets.kinds import TARGET_KINDS
from harness.targets.registry import target_kind

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_kind_lists_the_valid_ones() -> None:
    scenario = load_scenario(ROOT / "loadtests" / "default.yaml")
    unknown = scenario.model_copy(update={"target": scenario.target.model_copy(update={"kind": "nomad"})})
    with pytest.raises(ConfigError, match="local, external, docker, kubernetes"):
        target_kind(unknown)


def test_capabilities_say_what_the_run_does_per_kind() -> None:
    assert [name for name, kind in TARGET_KINDS.items() if not kind.deploys] == ["external"]
    assert [name for name, kind in TARGET_KINDS.items() if kind.replicas_on_this_machine] == ["local"]
    assert [name for name, kind in TARGET_KINDS.items() if kind.serves_service_dir] == ["local", "docker"]
    assert [name for name, kind in TARGET_KINDS.items() if kind.uses_docker] == ["docker"]
    assert [name for name, kind in TARGET_KINDS.items() if kind.named_image is not None] == ["docker", "kubernetes"]
    assert [name for name, kind in TARGET_KINDS.items() if kind.pause_unavailable is not None] == ["kubernetes"]


def test_the_schema_accepts_exactly_the_registered_kinds() -> None:
    assert set(get_args(TargetConfig.model_fields["kind"].annotation)) == set(TARGET_KINDS)


def test_only_kubernetes_with_loadgen_in_cluster_loads_in_the_cluster() -> None:
    scenario = load_scenario(ROOT / "loadtests" / "default.yaml")
    for name, kind in TARGET_KINDS.items():
        for loadgen in ("host", "in-cluster"):
            changed = scenario.target.kubernetes.model_copy(update={"loadgen": loadgen})
            target = scenario.target.model_copy(update={"kind": name, "kubernetes": changed})
            expected = name == "kubernetes" and loadgen == "in-cluster"
            assert kind.load_in_cluster(scenario.model_copy(update={"target": target})) is expected
