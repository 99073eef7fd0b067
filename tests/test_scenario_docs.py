"""docs/scenario.md and docs/scenario.schema.json are what harness/scenario_docs.py generates from the scenario
models (`python -m harness.scenario_docs` rewrites them), the schema accepts every checked-in scenario and refuses a
misspelt key as validation does, and `harness schema` prints the shipped one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from harness.cli import cli
from harness.config import Scenario
from harness.scenario_docs import scenario_markdown, schema_json

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCENARIOS = sorted((ROOT / "loadtests").glob("*.yaml"))


def test_the_checked_in_reference_is_what_the_models_generate() -> None:
    message = "run `.venv/bin/python -m harness.scenario_docs` to regenerate docs/scenario.md and its schema"
    assert (DOCS / "scenario.md").read_text() == scenario_markdown(), message
    assert (DOCS / "scenario.schema.json").read_text() == schema_json(), message


def test_the_reference_documents_every_key_of_every_model() -> None:
    text = (DOCS / "scenario.md").read_text()
    models = {Scenario}
    seen: set[type] = set()
    while models:
        model = models.pop()
        seen.add(model)
        section = text.split(f"## {model.__name__}\n", 1)[1].split("\n## ", 1)[0]
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in section, (model.__name__, name)
            models |= {inner for inner in _models_in(field.annotation) if inner not in seen}


def _models_in(annotation: object) -> set[type]:
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {model for argument in typing.get_args(annotation) for model in _models_in(argument)}


@pytest.mark.parametrize("path", SCENARIOS, ids=[path.name for path in SCENARIOS])
def test_the_schema_accepts_every_checked_in_scenario(path: Path) -> None:
    schema = json.loads((DOCS / "scenario.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
    assert errors == [], [error.message for error in errors]


def test_the_schema_refuses_what_validation_refuses() -> None:
    schema = json.loads((DOCS / "scenario.schema.json").read_text())
    data = yaml.safe_load((ROOT / "loadtests" / "default.yaml").read_text())
    data["target"]["replicsa"] = 2
    data["stages"][0]["duration_s"] = -1
    messages = sorted(error.message for error in Draft202012Validator(schema).iter_errors(data))
    assert messages == [
        "-1 is less than or equal to the minimum of 0",
        "Additional properties are not allowed ('replicsa' was unexpected)",
    ]


def test_harness_schema_prints_the_shipped_schema() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0 and result.output == (DOCS / "scenario.schema.json").read_text()
