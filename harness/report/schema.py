"""Validation of verdict.json against its published JSON Schema (docs/verdict.schema.json, draft 2020-12).

CI systems and dashboards read verdict.json; the schema is the contract, and the report renderers check
every verdict against it before trusting it.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from harness.errors import ReportError
from harness.resources import data_path

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_PATH = data_path("verdict.schema.json")


@cache
def verdict_schema() -> dict[str, Any]:
    """The verdict JSON Schema (docs/verdict.schema.json, shipped as package data), read once."""
    try:
        schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(
            f"{SCHEMA_PATH}: the verdict schema is missing",
            hint="reinstall the harness: its package data is incomplete",
        ) from error
    from jsonschema import Draft202012Validator  # imported when first used: it is slow to import

    Draft202012Validator.check_schema(schema)
    return schema


@cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(verdict_schema())


def _describe(error: ValidationError) -> str:
    # An anyOf [object, null] failure only says "not valid under any of the given schemas" (or "not of
    # type 'null'"); the deepest error inside its branches names the real problem.
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return f"{error.json_path}: {error.message}"


def validate_verdict(data: Any, source: str = "verdict.json") -> None:
    """Raise ReportError naming the JSON path (e.g. $.objectives[0].status) of the first problem in `data`.

    "First" is the validator's order: the schema's keywords and properties in the order they are written.
    """
    errors = _validator().iter_errors(data)
    first = next(errors, None)
    if first is None:
        return
    raise ReportError(f"{source}: does not match docs/verdict.schema.json at {_describe(first)}")
