"""harness.targets.helm_values: the scenario -> chart values mapping, with unit and property tests."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.config import AutoscalingConfig, Scenario, load_scenario
from harness.errors import ConfigError
from harness.quantity import parse_quantity
from harness.targets.helm_values import (
    HPA_SPEC_FIELDS,
    format_quantity,
    hpa_spec,
    hpa_tolerance_support,
    model_service_values,
    parse_kube_version,
    run_id_label,
    split_image,
)

ROOT = Path(__file__).resolve().parents[2]
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
CPU_METRIC = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
}


def scenario(**changes: Any) -> Scenario:
    return load_scenario(ROOT / "loadtests" / "default.yaml").model_copy(update=changes)


# --------------------------------------------------------------------------- small pure functions


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("digits:abc", ("digits", "abc", "")),
        ("digits", ("digits", "latest", "")),
        ("localhost:5000/team/digits:v1", ("localhost:5000/team/digits", "v1", "")),
        ("localhost:5000/team/digits", ("localhost:5000/team/digits", "latest", "")),
        ("ghcr.io/a/b@sha256:" + "ab" * 32, ("ghcr.io/a/b", "", "sha256:" + "ab" * 32)),
    ],
)
def test_split_image(image: str, expected: tuple[str, str, str]) -> None:
    assert tuple(split_image(image).values()) == expected


@pytest.mark.parametrize("image", ["", "has space:1"])
def test_split_image_rejects_non_references(image: str) -> None:
    with pytest.raises(ConfigError, match="not an image reference"):
        split_image(image)


@given(
    st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?(/[a-z0-9]+){0,2}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
def test_split_image_round_trips_repository_and_tag(repository: str, tag: str) -> None:
    parts = split_image(f"{repository}:{tag}")
    assert (parts["repository"], parts["tag"]) == (repository, tag)


@given(st.text(min_size=1, max_size=120))
def test_run_id_label_is_always_a_valid_label_value(run_id: str) -> None:
    label = run_id_label(run_id)
    assert LABEL_VALUE.match(label)
    # Distinct invalid ids stay distinct (the hash suffix), valid ids are kept as they are.
    if LABEL_VALUE.match(run_id):
        assert label == run_id


def test_run_id_label_shortens_long_ids_keeping_them_apart() -> None:
    first, second = run_id_label("x" * 70 + "a"), run_id_label("x" * 70 + "b")
    assert len(first) <= 63 and first != second


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1.31.4", "unsupported"),
        ("1.32", "unsupported"),
        ("v1.33.1", "feature-gate"),
        ("1.34.0", "feature-gate"),
        ("v1.35.0", "default-on"),
        ("v1.36.2+k3s1", "default-on"),
    ],
)
def test_hpa_tolerance_support_by_version(version: str, expected: str) -> None:
    assert hpa_tolerance_support(version) == expected


def test_parse_kube_version_rejects_garbage() -> None:
    assert parse_kube_version("v1.33.1-gke.100") == (1, 33)
    with pytest.raises(ConfigError, match="not of the form"):
        parse_kube_version("latest")


@given(st.one_of(st.integers(0, 10**9), st.floats(0, 1e6, allow_nan=False, allow_infinity=False)))
def test_format_quantity_is_a_plain_decimal_of_the_same_value(value: float) -> None:
    text = format_quantity(value)
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", text), text
    assert Decimal(text) == (Decimal(repr(value)) if isinstance(value, float) else Decimal(value))


def test_format_quantity_keeps_strings() -> None:
    assert format_quantity("500m") == "500m"
    assert format_quantity(1e-05) == "0.00001"


# --------------------------------------------------------------------------- the HPA spec


metric_targets = st.one_of(
    st.builds(lambda n: {"type": "Utilization", "averageUtilization": n}, st.integers(1, 200)),
    st.builds(lambda n: {"type": "AverageValue", "averageValue": n}, st.sampled_from(["4", "500m", 2, 0.5])),
)
rules = st.fixed_dictionaries(
    {},
    optional={
        "stabilizationWindowSeconds": st.integers(0, 3600),
        "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
        "policies": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["Pods", "Percent"]),
                    "value": st.integers(1, 100),
                    "periodSeconds": st.integers(1, 1800),
                }
            ),
            min_size=1,
            max_size=3,
        ),
        "tolerance": st.sampled_from([0.05, "0.1", 0]),
    },
)


@given(
    min_replicas=st.integers(1, 5),
    extra=st.integers(0, 10),
    target=metric_targets,
    behavior=st.fixed_dictionaries({}, optional={"scaleUp": rules, "scaleDown": rules}),
    sync_s=st.floats(1, 60),
)
def test_hpa_spec_is_the_section_without_controller_flags(
    min_replicas: int, extra: int, target: dict[str, Any], behavior: dict[str, Any], sync_s: float
) -> None:
    metric = (
        {"type": "Resource", "resource": {"name": "cpu", "target": target}}
        if target["type"] == "Utilization"
        else {"type": "Pods", "pods": {"metric": {"name": "inflight"}, "target": target}}
    )
    section = {
        "minReplicas": min_replicas,
        "maxReplicas": min_replicas + extra,
        "metrics": [metric],
        "behavior": behavior,
        "syncPeriodSeconds": sync_s,
        "tolerance": 0.2,
    }
    spec = hpa_spec(AutoscalingConfig.model_validate(section), kube_version="v1.35.0")
    assert set(spec) <= set(HPA_SPEC_FIELDS)
    assert (spec["minReplicas"], spec["maxReplicas"]) == (min_replicas, min_replicas + extra)
    rendered_target = spec["metrics"][0][str(metric["type"]).lower()]["target"]
    for key, value in target.items():
        if key == "averageValue":
            assert isinstance(rendered_target[key], str)
            assert parse_quantity(rendered_target[key]) == pytest.approx(parse_quantity(value))
        else:
            assert rendered_target[key] == value
    for direction, given_rules in behavior.items():
        for key, value in given_rules.items():
            got = spec["behavior"][direction][key]
            if key == "tolerance":
                assert parse_quantity(got) == parse_quantity(value)
            else:
                assert got == value
    # An empty behavior is no behavior; empty rules ({"scaleUp": {}}) are kept as written.
    assert ("behavior" in spec) == bool(behavior)


def test_behavior_tolerance_is_refused_below_133_and_kept_without_a_version() -> None:
    section = AutoscalingConfig.model_validate(
        {"metrics": [CPU_METRIC], "behavior": {"scaleDown": {"tolerance": 0.05}}}
    )
    assert hpa_spec(section)["behavior"]["scaleDown"]["tolerance"] == "0.05"
    assert hpa_spec(section, "v1.34.0")["behavior"]["scaleDown"]["tolerance"] == "0.05"
    with pytest.raises(ConfigError, match=r"scaleDown\.tolerance needs Kubernetes >= 1\.33.*v1\.32\.0"):
        hpa_spec(section, "v1.32.0")


# --------------------------------------------------------------------------- whole values


def test_model_service_values_carry_resources_env_and_config() -> None:
    base = scenario()
    service = base.service.model_copy(
        update={"env": {"OMP_NUM_THREADS": "1"}, "bentoml_config": {"services": {"DigitsClassifier": {"workers": 2}}}}
    )
    target = base.target.model_copy(update={"replicas": 3, "startup_timeout_s": 61})
    values = model_service_values(base.model_copy(update={"service": service, "target": target}), "d:1", "run-1")
    assert values["runId"] == "run-1"
    assert values["image"] == {"repository": "d", "tag": "1", "digest": "", "pullPolicy": "IfNotPresent"}
    assert values["replicaCount"] == 3
    assert values["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    assert values["env"] == {"OMP_NUM_THREADS": "1"}
    assert values["bentomlConfigOptions"] == (
        "services.DigitsClassifier.logging.access.enabled=false services.DigitsClassifier.workers=2"
    )
    # 61 s of startup at a 2 s period: 31 probes.
    assert values["probes"]["startup"]["failureThreshold"] == 31
    assert values["autoscaling"] == {"enabled": False}


def test_model_service_values_with_autoscaling_use_hpa_names() -> None:
    section = AutoscalingConfig.model_validate({"minReplicas": 2, "maxReplicas": 5, "metrics": [CPU_METRIC]})
    values = model_service_values(scenario(autoscaling=section), "d:1", "run-1")
    assert values["autoscaling"] == {"enabled": True, "minReplicas": 2, "maxReplicas": 5, "metrics": [CPU_METRIC]}
