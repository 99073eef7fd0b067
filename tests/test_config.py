"""Scenario validation: every checked-in scenario loads; mistakes give one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import load_scenario, parse_quantity, parse_scenario
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "loadtests").glob("*.yaml"))


def minimal() -> dict[str, Any]:
    return {
        "name": "t",
        "service": {"path": ".", "service": "service:S"},
        "stages": [{"name": "a", "duration_s": 5, "users": 1}],
    }


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_checked_in_scenario_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.stages
    assert scenario.service.path.is_dir(), "service.path resolves relative to the scenario file"


def test_checked_in_scenarios_exist() -> None:
    assert ROOT / "loadtests" / "default.yaml" in SCENARIOS


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["stages"][0].update(duration_s=-1), "stages[0].duration_s"),
        (lambda d: d["stages"][0].update(users=None), "needs exactly one of users"),
        (lambda d: d["stages"][0].update(arrival_rate_rps=5), "needs exactly one of users"),
        (lambda d: d.update(targt={}), "unknown key 'targt'"),
        (lambda d: d.update(target={"kind": "moon"}), "target.kind"),
        (lambda d: d.update(objectives=[{"metric": "latency_p95", "max": 1}]), "not an objective metric"),
        (lambda d: d.update(objectives=[{"metric": "error_rate"}]), "exactly one of max or min"),
        (lambda d: d.update(objectives=[{"metric": "error_rate", "max": 1, "stages": ["zz"]}]), "stage 'zz'"),
        (lambda d: d.update(resources={"requests": {"cpu": "lots"}}), "not a Kubernetes quantity"),
        (lambda d: d.update(target={"kind": "external"}), "needs target.urls"),
        (lambda d: d.update(target={"kind": "external", "urls": ["http://10.0.0.1:3000"]}), "loopback"),
        (lambda d: d["stages"].append(dict(d["stages"][0])), "repeated: a"),
        (lambda d: d.pop("service"), "field 'service' is required"),
        (
            lambda d: d.update(
                autoscaling={
                    "minReplicas": 3,
                    "maxReplicas": 2,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                        }
                    ],
                }
            ),
            "maxReplicas (2) is below minReplicas (3)",
        ),
        (
            lambda d: d.update(autoscaling={"metrics": [{"type": "Pods"}]}),
            "needs a pods: section",
        ),
    ],
)
def test_invalid_scenarios_name_the_field(mutate: Any, expected: str) -> None:
    data = minimal()
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, "s.yaml")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("s.yaml")
    assert "\n" not in message


def test_overrides_are_applied_then_validated(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    scenario = load_scenario(path, {"target.replicas": 3, "stages": [{"name": "b", "duration_s": 2, "users": 4}]})
    assert scenario.target.replicas == 3
    assert [s.name for s in scenario.stages] == ["b"]
    with pytest.raises(ConfigError, match=r"target\.replicas"):
        load_scenario(path, {"target.replicas": 0})


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_scenario(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(broken)


def test_autoscaling_section_uses_hpa_field_names() -> None:
    data = minimal()
    data["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [
            {
                "type": "Pods",
                "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "500m"}},
            }
        ],
        "behavior": {
            "scaleDown": {
                "stabilizationWindowSeconds": 30,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 10}],
            }
        },
    }
    scenario = parse_scenario(data)
    assert scenario.autoscaling is not None
    dumped = scenario.autoscaling.model_dump(by_alias=True, exclude_none=True)
    assert dumped["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert dumped["maxReplicas"] == 3


@pytest.mark.parametrize(
    ("text", "value"), [("500m", 0.5), ("2", 2.0), ("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1.5", 1.5), (3, 3.0)]
)
def test_parse_quantity(text: str | int, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)
