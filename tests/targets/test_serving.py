from __future__ import annotations

from pathlib import Path

from harness.config import load_scenario
from harness.processes import free_port
from harness.targets.serving import bentoml_config_options, flatten_config, http_ok

ROOT = Path(__file__).resolve().parents[2]


def test_nested_configuration_becomes_dotted_keys() -> None:
    assert flatten_config({"a": {"b": {"c": 1}, "d": True}, "e": "x"}) == {"a.b.c": 1, "a.d": True, "e": "x"}


def test_config_options_turn_access_logging_off_unless_the_scenario_says_otherwise() -> None:
    scenario = load_scenario(ROOT / "loadtests" / "default.yaml")
    service_class = scenario.service.service.split(":")[-1]
    assert f"services.{service_class}.logging.access.enabled=false" in bentoml_config_options(scenario).split()
    service = scenario.service.model_copy(
        update={"bentoml_config": {"services": {service_class: {"logging": {"access": {"enabled": True}}}}}}
    )
    options = bentoml_config_options(scenario.model_copy(update={"service": service}))
    assert options.split() == [f"services.{service_class}.logging.access.enabled=true"]


def test_a_closed_port_is_not_ok() -> None:
    assert http_ok(f"http://127.0.0.1:{free_port()}/readyz", timeout_s=0.5) is False
